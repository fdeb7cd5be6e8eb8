"""The timeline of one step's rollout in ``rlagent view``: one row per episode, its turns'
generation and env-step phases as coloured bars on a shared time axis (seconds since the
rollout began), so a user sees where the time went: waiting on the engine, on the env, or on
the slowest episode. Built from the times every turn records (``Turn.generate_start`` ...);
rollouts written before those existed have none, and get no timeline.
"""

from __future__ import annotations

import html
from typing import Any

ROW_H, BAR_H, LEFT, WIDTH = 10, 7, 36, 640
PHASES = (("generate", "gen"), ("env", "env"))  # (record prefix, CSS class)


def _phases(ep: dict[str, Any]) -> list[tuple[str, float, float, int]]:
    """(class, start, end, turn) of every phase an episode recorded (none from a line that is
    not a well-formed episode: the page says so elsewhere)."""
    out: list[tuple[str, float, float, int]] = []
    turns = ep.get("turns") if isinstance(ep, dict) else None
    for i, turn in enumerate(turns if isinstance(turns, list) else []):
        if not isinstance(turn, dict):
            continue
        for prefix, cls in PHASES:
            start, end = turn.get(f"{prefix}_start"), turn.get(f"{prefix}_end")
            if isinstance(start, (int, float)) and isinstance(end, (int, float)) and end > start >= 0:
                out.append((cls, float(start), float(end), i + 1))
    return out


def timeline(episodes: list[dict[str, Any]]) -> str:
    """An SVG timeline of ``episodes`` (empty when none recorded its times)."""
    rows = [_phases(ep) for ep in episodes]
    end = max((e for row in rows for _, _, e, _ in row), default=0.0)
    if end <= 0:
        return ""
    scale = (WIDTH - LEFT - 4) / end
    height = ROW_H * len(rows) + 16
    bars = []
    for r, row in enumerate(rows):
        y = 2 + r * ROW_H
        bars.append(f'<text x="{LEFT - 4}" y="{y + BAR_H}" class="lbl">{r}</text>')
        for cls, a, b, turn in row:
            x, w = LEFT + a * scale, max((b - a) * scale, 0.5)
            tip = f"episode {r}, turn {turn}: {cls} {a:.2f}-{b:.2f} s ({b - a:.2f} s)"
            bars.append(
                f'<rect class="{cls}" x="{x:.1f}" y="{y}" width="{w:.1f}" height="{BAR_H}">'
                f"<title>{html.escape(tip)}</title></rect>"
            )
    ticks = []
    step = _tick(end)
    t = 0.0
    while t <= end + 1e-9:
        x = LEFT + t * scale
        ticks.append(f'<text x="{x:.1f}" y="{height - 2}" class="tick">{t:g}s</text>')
        t += step
    return (
        f'<details class="timeline"><summary>timeline: generation <span class="key gen"></span> '
        f'env step <span class="key env"></span>, {end:.1f} s</summary>'
        f'<svg width="{WIDTH}" height="{height}" role="img" aria-label="rollout timeline">'
        f"{''.join(bars)}{''.join(ticks)}</svg></details>"
    )


def _tick(end: float) -> float:
    """A round tick spacing that gives 4-10 ticks over ``end`` seconds."""
    for step in (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 3600):
        if end / step <= 10:
            return float(step)
    return end / 10


TIMELINE_CSS = """
.timeline svg{display:block;margin:.3em 0;background:#fafafa;border:1px solid #ddd}
.timeline rect.gen,.timeline .key.gen{fill:#3b6fd6;background:#3b6fd6}
.timeline rect.env,.timeline .key.env{fill:#e08a1e;background:#e08a1e}
.timeline .key{display:inline-block;width:.9em;height:.7em;vertical-align:middle}
.timeline text{font-size:8px;fill:#666}.timeline text.lbl{text-anchor:end}
"""
