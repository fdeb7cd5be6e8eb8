"""``rlagent view RUN_DIR``: one static HTML page to browse a run's rollouts.

The page is a single file (inline CSS and a little vanilla JS, nothing fetched) written next
to the run: ``RUN_DIR/view.html``. It lists each step's episodes with their reward and reward
components, filters and sorts them by reward and task id, and on expand shows the transcript
turn by turn and the token strip: every token id the episode holds, the ones the policy
generated (``loss_mask`` 1, the tokens trained on) highlighted and shaded by their sampling
probability.

Everything from the run is untrusted text (model output, env observations, plugin errors):
it is HTML-escaped here, in Python, before it reaches the page. Episode details are kept as
inert ``<script type="text/x-rlagent-episode">`` blocks and turned into DOM only when the
episode is opened, so a page with thousands of episodes opens fast. Such a block can never be
closed early: escaped text holds no ``<``, and our own markup never spells ``</script``.
"""

from __future__ import annotations

import html
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from rlagent.viewer_assets import PAGE_CSS, PAGE_JS
from rlagent.viewer_data import (
    MAX_EPISODES_PER_STEP,
    StepRollouts,
    TokenText,
    load_tokenizer,
    read_config,
    read_metrics,
    read_rollouts,
    rollout_files,
)
from rlagent.viewer_timeline import TIMELINE_CSS, timeline

# Sampling probability floors of the shade classes s0 (confident) .. s4 (surprising).
SHADE_FLOORS = (0.9, 0.5, 0.2, 0.05)
SNIPPET_CHARS = 120


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


# ---------------------------------------------------------------- reading the run


def _num(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return esc(value)
    return f"{value:.4g}" if math.isfinite(value) else esc(value)


def _component(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, list):  # a process reward: one score per turn
        return "[" + ", ".join(_num(v) for v in value) + "]"
    return _num(value)


def _reward_class(reward: Any) -> str:
    if not isinstance(reward, (int, float)):
        return "none"
    return "pos" if reward > 0 else "zero"


def _chips(ep: dict[str, Any]) -> str:
    errors = ep.get("reward_errors") or {}
    parts = []
    for name, value in (ep.get("rewards") or {}).items():
        if name in errors:
            continue
        parts.append(f'<span class="chip">{esc(name)} {_component(value)}</span>')
    for name in errors:
        parts.append(f'<span class="chip err">{esc(name)} error</span>')
    return "".join(parts)


def _snippet(text: Any) -> str:
    text = " ".join(str(text or "").split())
    return text if len(text) <= SNIPPET_CHARS else text[: SNIPPET_CHARS - 1] + "…"


def episode_row(step: int, index: int, ep: dict[str, Any]) -> str:
    """The one-line summary of an episode; its details come from its template on expand."""
    task = ep.get("task") or {}
    reward = ep.get("reward")
    turns = ep.get("turns") or []
    last = turns[-1].get("action", "") if turns else ""
    has_errors = "1" if ep.get("reward_errors") or reward is None else "0"
    reward_text = _num(reward) if reward is not None else "none"
    return (
        f'<details class="ep" data-i="{index}" data-task="{esc(task.get("id", ""))}" '
        f'data-reward="{esc("" if reward is None else reward)}" data-errors="{has_errors}">'
        f'<summary><span class="r {_reward_class(reward)}">{reward_text}</span>'
        f'<span class="tid">{esc(task.get("id", "?"))}</span>{_chips(ep)}'
        f'<span class="meta">{esc(ep.get("termination", "?"))} · v{esc(ep.get("policy_version", "?"))}'
        f' · {len(turns)} turn{"s" if len(turns) != 1 else ""}'
        f' · {sum(ep.get("loss_mask") or [])}/{len(ep.get("token_ids") or [])} tok</span>'
        f'<span class="last">{esc(_snippet(last))}</span></summary>'
        f'<div class="body" data-src="ep-{step}-{index}"></div></details>'
    )


def episode_detail(ep: dict[str, Any], decode: Callable[[int], str]) -> str:
    task = ep.get("task") or {}
    facts = {
        "task": task.get("id"),
        "env": task.get("env"),
        "difficulty": task.get("difficulty"),
        "answer": task.get("answer"),
        "group": ep.get("group"),
        "termination": ep.get("termination"),
        "policy version": ep.get("policy_version"),
        "prompt tokens": ep.get("prompt_len"),
    }
    dl = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in facts.items() if v is not None)
    parts = [
        f'<dl class="facts">{dl}</dl>',
        _reward_table(ep),
        f'<h4>Prompt</h4><pre class="prompt">{esc(task.get("prompt", ""))}</pre>',
        _context_messages(ep),
        _turns(ep),
        _token_strip(ep, decode),
    ]
    return "".join(parts)


def _reward_table(ep: dict[str, Any]) -> str:
    rewards, errors = ep.get("rewards") or {}, ep.get("reward_errors") or {}
    latency = ep.get("reward_latency") or {}
    rows = []
    for name in list(rewards) + [n for n in errors if n not in rewards]:
        value = (
            f'<td class="err">{esc(errors[name])}</td>'
            if name in errors
            else f"<td>{_component(rewards.get(name))}</td>"
        )
        seconds = latency.get(name)
        ms = f"{seconds * 1000:.1f} ms" if isinstance(seconds, (int, float)) else ""
        rows.append(f"<tr><th>{esc(name)}</th>{value}<td class='lat'>{ms}</td></tr>")
    total = ep.get("reward")
    total_cell = (
        _num(total) if total is not None else '<span class="err">none (a weighted component failed)</span>'
    )
    return (
        f'<table class="rewards"><tr><th>reward</th><td><b>{total_cell}</b></td><td></td></tr>'
        f'{"".join(rows)}</table>'
    )


def _context_messages(ep: dict[str, Any]) -> str:
    """The messages before the first reply: system prompt and the env's first observation."""
    out = []
    for m in ep.get("messages") or []:
        if m.get("role") == "assistant":
            break
        out.append(
            f'<div class="msg"><span class="role">{esc(m.get("role", "?"))}</span>'
            f'<pre>{esc(m.get("content", ""))}</pre></div>'
        )
    return "<h4>Context</h4>" + "".join(out) if out else ""


def _turns(ep: dict[str, Any]) -> str:
    per_turn = {k: v for k, v in (ep.get("rewards") or {}).items() if isinstance(v, list)}
    out = []
    for n, turn in enumerate(ep.get("turns") or []):
        extra = "".join(f" · {esc(k)} {_num(v[n])}" for k, v in per_turn.items() if n < len(v))
        info = json.dumps(turn.get("info") or {}, default=str)
        obs = turn.get("observation")
        out.append(
            f'<div class="turn"><div class="th">turn {n + 1} · {esc(turn.get("finish_reason", "?"))}'
            f' · env reward {_num(turn.get("env_reward"))}{extra}</div>'
            f'<div class="msg act"><span class="role">action</span><pre>{esc(turn.get("action", ""))}'
            f'</pre></div><div class="info">info {esc(info)}</div>'
            + (
                ""
                if obs is None
                else f'<div class="msg obs"><span class="role">observation</span><pre>{esc(obs)}</pre></div>'
            )
            + "</div>"
        )
    return "<h4>Turns</h4>" + "".join(out) if out else ""


def _shade(logprob: float) -> int:
    p = math.exp(min(logprob, 0.0))
    return next((k for k, floor in enumerate(SHADE_FLOORS) if p >= floor), len(SHADE_FLOORS))


def _token_strip(ep: dict[str, Any], decode: Callable[[int], str]) -> str:
    """One element per token id: ``<b>`` where loss_mask is 1 (trained on), ``<i>`` elsewhere."""
    ids = ep.get("token_ids") or []
    mask, logprobs = ep.get("loss_mask") or [], ep.get("logprobs") or []
    out = []
    for t, token_id in enumerate(ids):
        text = esc(decode(token_id)).replace("\n", "↵\n")
        if t < len(mask) and mask[t]:
            lp = logprobs[t] if t < len(logprobs) and isinstance(logprobs[t], (int, float)) else 0.0
            out.append(f'<b class="s{_shade(lp)}" title="id {esc(token_id)} logprob {lp:.2f}">{text}</b>')
        else:
            out.append(f'<i title="id {esc(token_id)}">{text}</i>')
    note = (
        ""
        if len(mask) == len(ids)
        else f'<p class="err">loss_mask has {len(mask)} entries for {len(ids)} tokens</p>'
    )
    return (
        f"<h4>Tokens <small>{sum(mask)} trained on (highlighted) of {len(ids)}</small></h4>"
        f'{note}<div class="toks">{"".join(out)}</div>'
    )


# ---------------------------------------------------------------- the page


def _sparkline(metrics: dict[int, dict[str, Any]], width: int = 320, height: int = 48) -> str:
    points = [(s, m.get("reward/mean")) for s, m in sorted(metrics.items())]
    points = [(s, v) for s, v in points if isinstance(v, (int, float)) and math.isfinite(v)]
    if not points:
        return ""
    lo, hi = min(v for _, v in points), max(v for _, v in points)
    span, n = (hi - lo) or 1.0, max(len(points) - 1, 1)
    xy = [
        (4 + (width - 8) * i / n, height - 4 - (height - 8) * (v - lo) / span)
        for i, (_, v) in enumerate(points)
    ]
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in xy)
    dots = "".join(
        f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" data-step="{s}">'
        f"<title>step {s}: reward/mean {v:.4g}</title></circle>"
        for (x, y), (s, v) in zip(xy, points)
    )
    return (
        f'<div class="spark"><svg width="{width}" height="{height}" role="img" '
        f'aria-label="reward/mean per step"><polyline points="{line}"/>{dots}</svg>'
        f"<small>reward/mean {lo:.3g} … {hi:.3g}</small></div>"
    )


def _step_metrics(row: dict[str, Any] | None) -> str:
    if not row:
        return ""
    keys = [k for k in row if k.startswith("reward/")] + [
        k for k in ("episode/turns_mean", "episode/generated_tokens_mean", "policy_version") if k in row
    ]
    cells = "".join(f"<span><b>{esc(k)}</b> {_num(row[k])}</span>" for k in keys)
    return f'<div class="metrics">{cells}</div>'


def step_section(
    step: int, rollouts: StepRollouts | None, metrics: dict[str, Any] | None, decode: Callable[[int], str]
) -> str:
    head = f'<section class="step" data-step="{step}" hidden>{_step_metrics(metrics)}'
    if rollouts is None:
        return head + '<p class="note">No rollouts saved for this step.</p></section>'
    notes = []
    if rollouts.total > len(rollouts.episodes) + rollouts.bad_lines:
        notes.append(
            f"Showing the first {len(rollouts.episodes)} of {rollouts.total} episodes "
            f"(rlagent view --max-episodes N shows more)."
        )
    if rollouts.bad_lines:
        notes.append(f"{rollouts.bad_lines} line(s) of the rollout file were not episodes.")
    rows, templates = [], []
    for i, ep in enumerate(rollouts.episodes):
        try:
            row, detail = episode_row(step, i, ep), episode_detail(ep, decode)
        except (AttributeError, KeyError, TypeError, ValueError) as err:  # a malformed line
            row = (
                f'<details class="ep" data-i="{i}" data-task="" data-reward="" data-errors="1">'
                f'<summary><span class="r none">?</span>episode {i} could not be shown: '
                f'{esc(type(err).__name__)}: {esc(err)}</summary><div class="body" '
                f'data-src="ep-{step}-{i}"></div></details>'
            )
            detail = ""
        rows.append(row)
        templates.append(f'<script type="text/x-rlagent-episode" id="ep-{step}-{i}">{detail}</script>')
    note_html = "".join(f'<p class="note">{esc(n)}</p>' for n in notes)
    return (
        f"{head}{note_html}{timeline(rollouts.episodes)}"
        f'<p class="count"></p><div class="eps">{"".join(rows)}</div>'
        f'{"".join(templates)}</section>'
    )


def _header(run_dir: Path, config: dict[str, Any], token_note: str) -> str:
    model = (config.get("model") or {}).get("path", "?")
    env = (config.get("env") or {}).get("id", "?")
    algo = (config.get("algo") or {}).get("name", "?")
    note = f'<p class="note">{esc(token_note)}; token ids are shown instead.</p>' if token_note else ""
    return (
        f"<header><h1>{esc(run_dir.name)}</h1><p class='sub'>model {esc(model)} · env "
        f"{esc(env)} · {esc(algo)} · {esc(run_dir)}</p>{note}</header>"
    )


def _controls(steps: list[int]) -> str:
    options = "".join(f'<option value="{s}">step {s}</option>' for s in steps)
    return (
        '<nav class="controls"><button id="prev" title="previous step">◀</button>'
        f'<select id="step">{options}</select><button id="next" title="next step">▶</button>'
        '<input id="task" list="task-ids" placeholder="task id contains…" size="22">'
        '<select id="rfilter"><option value="all">all rewards</option>'
        '<option value="pos">reward &gt; 0</option><option value="zero">reward ≤ 0</option>'
        '<option value="none">no reward / errors</option></select>'
        '<select id="sort"><option value="order">file order</option>'
        '<option value="desc">reward high → low</option><option value="asc">reward low → high</option>'
        '<option value="task">task id</option></select></nav>'
    )


_LEGEND = (
    '<p class="legend">Tokens: <i>prompt / observation</i> <b class="s0">p≥0.9</b>'
    '<b class="s1">≥0.5</b><b class="s2">≥0.2</b><b class="s3">≥0.05</b>'
    '<b class="s4">&lt;0.05</b> trained-on tokens, shaded by sampling probability '
    "(hover a token for its id and logprob).</p>"
)


def write_page(
    f: TextIO,
    run_dir: Path,
    config: dict[str, Any],
    max_episodes: int,
    decode: Callable[[int], str],
    token_note: str,
) -> None:
    """Write the page step by step: only one step's episodes are in memory at a time."""
    metrics, files = read_metrics(run_dir), rollout_files(run_dir)
    steps = sorted(set(files) | set(metrics))
    f.write(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'\">"
        f"<title>{esc(run_dir.name)} · rlagent view</title>"
        f"<style>{PAGE_CSS}{TIMELINE_CSS}</style></head><body>"
        f"{_header(run_dir, config, token_note)}<div class='top'>{_controls(steps)}"
        f"{_sparkline(metrics)}</div>{_LEGEND}"
    )
    if not steps:
        f.write('<p class="note">This run has no metrics and no saved rollouts yet.</p>')
    f.write("<main>")
    task_ids: set[str] = set()
    for step in steps:
        rollouts = read_rollouts(step, files[step], max_episodes) if step in files else None
        f.write(step_section(step, rollouts, metrics.get(step), decode))
        if rollouts is not None and len(task_ids) < 2000:
            task_ids.update(str((ep.get("task") or {}).get("id", "")) for ep in rollouts.episodes)
    datalist = "".join(f'<option value="{esc(t)}">' for t in sorted(task_ids))
    f.write(f'</main><datalist id="task-ids">{datalist}</datalist><script>{PAGE_JS}</script></body></html>')


def render(
    run_dir: str | Path,
    out: str | Path | None = None,
    tokenizer: Any = None,
    max_episodes: int = MAX_EPISODES_PER_STEP,
) -> Path:
    """Write the run's rollout viewer to ``out`` (default ``RUN_DIR/view.html``); return its path.

    ``tokenizer``: anything with ``decode(list[int]) -> str``; None loads the run's own
    (``model.path`` in its ``config.yaml``). When none can be loaded, tokens show as ids.
    """
    run_dir = Path(run_dir).resolve()
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: not a run directory")
    config = read_config(run_dir)
    token_note = ""
    if tokenizer is None:
        tokenizer, token_note = load_tokenizer(config)
        if token_note:
            print(f"[rlagent] view: {token_note}; showing token ids", file=sys.stderr)
    path = Path(out) if out is not None else run_dir / "view.html"
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        write_page(f, run_dir, config, max_episodes, TokenText(tokenizer), token_note)
    tmp.replace(path)  # a reader never sees half a page
    return path
