"""Learning results: held-out success before and after GRPO training, with plots.

    .venv/bin/python bench/results.py calculator [--out results] [--eval-n 100] [key=value ...]
    .venv/bin/python bench/results.py search
    .venv/bin/python bench/results.py web
    .venv/bin/python bench/results.py calculator --plot-only

Each experiment is the config ``launch/configs/results/<name>.yaml``; ``key=value`` overrides
go to training and evaluation alike. Stages, each skipped when its output exists, so a killed
invocation continues where it stopped (training resumes from its latest checkpoint):

1. ``OUT/<name>/heldout.jsonl``: ``rlagent tasks`` with the held-out seed (never trained on);
2. ``OUT/<name>/eval/base``: ``rlagent eval`` of the untrained model, greedy;
3. ``OUT/<name>/run``: ``rlagent train`` (its ``metrics.jsonl`` holds the reward curve);
4. ``OUT/<name>/eval/final``, and ``eval/step_N`` for kept checkpoints every ``--eval-every``
   steps;
5. ``OUT/<name>/summary.json`` and ``OUT/<name>/<name>.png``: reward and held-out success
   against steps and against wall-clock minutes. A Markdown table goes to stdout.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RLAGENT = str(Path(sys.executable).parent / "rlagent")
HELDOUT_SEED = 1_000_000


def config_of(name: str) -> Path:
    path = REPO / "launch" / "configs" / "results" / f"{name}.yaml"
    if not path.exists():
        sys.exit(f"no experiment {name!r}: {path} does not exist")
    return path


def sh(*cmd: str) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=REPO, check=True)


def heldout(cfg: Path, exp: Path, n: int, overrides: list[str]) -> Path:
    tasks = exp / "heldout.jsonl"
    if not tasks.exists():
        sh(
            RLAGENT,
            "tasks",
            str(cfg),
            *overrides,
            "--n",
            str(n),
            "--seed",
            str(HELDOUT_SEED),
            "--out",
            str(tasks),
        )
    return tasks


def train(cfg: Path, exp: Path, overrides: list[str]) -> Path:
    run = exp / "run"
    if (run / "checkpoints" / "final").exists():
        return run
    where = [f"run.output_dir={exp}", "run.name=run"]
    if (run / "checkpoints" / "latest").exists():
        where.append(f"resume={run}")
    sh(RLAGENT, "train", str(cfg), *overrides, *where)
    return run


def checkpoints(run: Path) -> list[tuple[str, Path, int | None]]:
    """(tag, checkpoint, step) for every kept step checkpoint, then the final model."""
    found = []
    for d in sorted((run / "checkpoints").glob("step_*")):
        if (d / "model").exists():
            found.append((d.name, d, int(d.name.split("_")[1])))
    final = run / "checkpoints" / "final"
    if final.exists():
        found.append(("final", final, None))
    return found


def evaluate(cfg: Path, exp: Path, tasks: Path, tag: str, checkpoint: str, overrides: list[str]) -> dict:
    out = exp / "eval" / tag
    if not (out / "eval.json").exists():
        sh(
            RLAGENT,
            "eval",
            str(cfg),
            *overrides,
            f"tasks={tasks}",
            f"checkpoint={checkpoint}",
            "temperature=0",
            "samples=1",
            f"out={out}",
        )
    return json.loads((out / "eval.json").read_text())


def curve(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in open(run / "metrics.jsonl")]
    minutes = 0.0
    for r in rows:
        minutes += r["timing/step_s"] / 60
        r["minutes"] = minutes
    return rows


def success(report: dict) -> float:
    return report["metrics"]["success/rate"]


def plot(name: str, rows: list[dict], evals: dict[int, float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in rows]
    reward = [r["reward/mean"] for r in rows]
    smooth = [
        sum(reward[max(0, i - 4) : i + 1]) / len(reward[max(0, i - 4) : i + 1]) for i in range(len(reward))
    ]
    minute_at = {r["step"]: r["minutes"] for r in rows} | {0: 0.0}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, xs, ex, label in (
        (axes[0], steps, list(evals), "training step"),
        (
            axes[1],
            [r["minutes"] for r in rows],
            [minute_at[s] for s in evals],
            "wall-clock minutes (training)",
        ),
    ):
        ax.plot(xs, reward, color="0.75", lw=1, label="reward/mean (training batch)")
        ax.plot(xs, smooth, color="C0", lw=2, label="reward/mean, mean of 5 steps")
        ax.plot(
            ex,
            list(evals.values()),
            "o--",
            color="C3",
            lw=1,
            ms=7,
            label="held-out success (greedy), at the evaluated checkpoints",
        )
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("reward / success rate")
    axes[0].legend(loc="best", fontsize=8)
    fig.suptitle(f"{name}: SmolLM2-135M-Instruct, GRPO on CPU")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("name", help="experiment: launch/configs/results/<name>.yaml")
    ap.add_argument("--out", default="results", help="parent folder of the experiment's outputs")
    ap.add_argument("--eval-n", type=int, default=100, help="held-out tasks")
    ap.add_argument(
        "--eval-every",
        type=int,
        default=20,
        help="also evaluate the kept checkpoints of steps that are multiples of this",
    )
    ap.add_argument("--plot-only", action="store_true", help="summarise what exists; run nothing")
    ap.add_argument("overrides", nargs="*", help="dotted.key=value for training and evaluation")
    a = ap.parse_args()
    if any("=" not in o for o in a.overrides):
        sys.exit("overrides are dotted.key=value")
    cfg = config_of(a.name)
    exp = (Path(a.out) / a.name).resolve()
    exp.mkdir(parents=True, exist_ok=True)
    tasks, run = exp / "heldout.jsonl", exp / "run"
    reports: dict[str, dict] = {}
    if not a.plot_only:
        tasks = heldout(cfg, exp, a.eval_n, a.overrides)
        evaluate(cfg, exp, tasks, "base", "base", a.overrides)
        run = train(cfg, exp, a.overrides)
        last = curve(run)[-1]["step"]
        for tag, ckpt, step in checkpoints(run):
            if step is None or (step % a.eval_every == 0 and step != last):
                evaluate(cfg, exp, tasks, tag, str(ckpt), a.overrides)
    for d in sorted((exp / "eval").glob("*/eval.json")):
        reports[d.parent.name] = json.loads(d.read_text())
    rows = curve(run)
    last = rows[-1]["step"]
    evals = {0: success(reports["base"])} if "base" in reports else {}
    for tag in reports:
        m = re.fullmatch(r"step_(\d+)", tag)
        if m:
            evals[int(m.group(1))] = success(reports[tag])
    if "final" in reports:
        evals[last] = success(reports["final"])
    evals = dict(sorted(evals.items()))
    plot(a.name, rows, evals, exp / f"{a.name}.png")
    summary = {
        "config": str(cfg.relative_to(REPO)),
        "overrides": a.overrides,
        "steps": last,
        "train_minutes": rows[-1]["minutes"],
        "heldout_tasks": sum(1 for _ in open(tasks)),
        "heldout_success": evals,
        "reports": reports,
    }
    (exp / "summary.json").write_text(json.dumps(summary, indent=1))
    print(
        f"\n{a.name}: {last} steps, {rows[-1]['minutes']:.0f} min of training; plot {exp / f'{a.name}.png'}\n"
    )
    table(reports, evals, rows, last)


def table(reports: dict[str, dict], evals: dict[int, float], rows: list[dict], last: int) -> None:
    """Markdown: one row per evaluated checkpoint, with success per difficulty."""
    levels = sorted(
        {
            k.split("/")[1]
            for r in reports.values()
            for k in r["metrics"]
            if re.fullmatch(r"success/d\d+/rate", k)
        }
    )
    minute_at = {r["step"]: r["minutes"] for r in rows} | {0: 0.0}
    print(
        "| checkpoint | step | training min | held-out success | "
        + " | ".join(levels)
        + " | turns | reward |"
    )
    print("|---" * (6 + len(levels)) + "|")
    for step in evals:
        tag = (
            "base" if step == 0 else ("final" if step == last and "final" in reports else f"step_{step:05d}")
        )
        m = reports[tag]["metrics"]
        per = " | ".join(f"{m.get(f'success/{d}/rate', float('nan')):.2f}" for d in levels)
        print(
            f"| {tag} | {step} | {minute_at.get(step, 0.0):.0f} "
            f"| **{m['success/rate']:.3f}** ({m['success/successes']:.0f}/{m['success/scored']:.0f}) "
            f"| {per} | {m['episode/turns_mean']:.2f} | {m['reward/mean']:.3f} |"
        )


if __name__ == "__main__":
    main()
