"""A run at a glance: ``rlagent plot RUN_DIR`` draws its curves (reward, success and time per
step against the step) to ``RUN_DIR/curves.png``; ``summary`` is what the trainer prints
when a run ends (first -> last, where everything is)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

CURVES = "curves.png"
TIMING = ("timing/rollout_s", "timing/train_s", "timing/sync_s", "timing/step_s")


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The rows of ``RUN_DIR/metrics.jsonl``, one per step (the last row of a step that a
    resumed run logged again)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir}: no metrics.jsonl (not a run directory, or no step ended yet)")
    rows: dict[int, dict[str, Any]] = {}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{n}: not a JSON line ({err.msg})") from err
            rows[int(row["step"])] = row
    return [rows[s] for s in sorted(rows)]


def _series(rows: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    pairs = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), (int, float))]
    pairs = [(s, v) for s, v in pairs if math.isfinite(v)]
    return [s for s, _ in pairs], [v for _, v in pairs]


def plot(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Draw reward (total and per component), success and seconds per step (rollout, train,
    sync, the whole step) against the step; returns the PNG's path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(run_dir)
    path = Path(out) if out is not None else Path(run_dir) / CURVES
    fig, (reward, success, timing) = plt.subplots(1, 3, figsize=(13, 3.6), constrained_layout=True)
    components = sorted(
        {k for r in rows for k in r if k.startswith("reward/") and k.endswith("/mean") and k != "reward/mean"}
    )
    reward.plot(*_series(rows, "reward/mean"), "o-", color="black", label="total")
    for key in components:
        reward.plot(*_series(rows, key), ".-", alpha=0.7, label=key.split("/")[1])
    reward.set_title("reward (batch mean)")
    reward.legend(fontsize=7)
    success.plot(*_series(rows, "success/rate"), "o-", color="tab:green")
    success.set_ylim(-0.02, 1.02)
    success.set_title("success (batch)")
    for key in TIMING:
        steps, values = _series(rows, key)
        if steps:
            timing.plot(steps, values, ".-", label=key.split("/")[1].removesuffix("_s"))
    timing.set_title("seconds per step")
    timing.legend(fontsize=7)
    for ax in (reward, success, timing):
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.suptitle(Path(run_dir).resolve().name, fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _first_last(rows: list[dict[str, Any]], key: str, n: int = 2) -> tuple[float, float] | None:
    """Mean of ``key`` over the first ``n`` and the last ``n`` steps that logged it."""
    values = _series(rows, key)[1]
    if not values:
        return None
    k = min(n, len(values))
    return sum(values[:k]) / k, sum(values[-k:]) / k


def summary(run_dir: Path, places: dict[str, str]) -> list[str]:
    """The end-of-run lines: reward, success and tool calls per episode (the first two steps'
    mean -> the last two's), seconds per step, then ``places`` (what -> where)."""
    rows = read_metrics(run_dir)
    if not rows:
        return []
    lines = []
    for label, key, fmt in (
        ("reward", "reward/mean", ".3f"),
        ("success", "success/rate", ".2f"),
        ("tool calls", "info/tool_calls", ".2f"),
    ):
        got = _first_last(rows, key)
        if got is not None:
            lines.append(f"{label + ':':12s}{got[0]:{fmt}} -> {got[1]:{fmt}}  (first two steps -> last two)")
    step = _series(rows, "timing/step_s")[1]
    if step:
        parts = []
        for key in ("timing/rollout_s", "timing/train_s", "timing/sync_s"):
            values = _series(rows, key)[1]
            if values:
                parts.append(f"{key.split('/')[1].removesuffix('_s')} {sum(values) / len(values):.1f}")
        lines.append(
            f"{'per step:':12s}{sum(step) / len(step):.1f} s over {len(step)} steps ({', '.join(parts)})"
        )
    lines += [f"{what + ':':12s}{where}" for what, where in places.items()]
    return lines


def finish_run(run_dir: Path, log: Path | None = None) -> list[str]:
    """What a finished run leaves for its user: ``curves.png`` and the summary lines, with the
    command that writes the rollout viewer's page (it loads the tokenizer: seconds, so it is
    not written unasked). A figure that cannot be drawn is said, never an error."""
    places = {"run dir": str(run_dir)}
    try:
        places["curves"] = str(plot(run_dir))
    except Exception as err:  # noqa: BLE001 - the run itself is done and saved
        places["curves"] = f"not drawn ({type(err).__name__}: {err}); rlagent plot {run_dir}"
    if any((run_dir / "rollouts").glob("step_*.jsonl")):
        places["viewer"] = f"rlagent view {run_dir} --open"
    runs = sorted((run_dir / "wandb").glob("*run-*"), key=lambda p: p.stat().st_mtime)
    if runs:
        w = runs[-1]
        places["W&B"] = f"{w} (upload: wandb sync {w})" if w.name.startswith("offline-") else str(w)
    if log is not None:
        places["log"] = f"{log} (library warnings and the actors' output; --verbose shows them here)"
    return summary(run_dir, places)
