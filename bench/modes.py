"""Sync against one step off against async (partial rollouts: syncs land mid-generation):
steps per hour and reward, the same config and seed, one mode after the other in one session.

    .venv/bin/python bench/modes.py web --steps 12 [--out DIR] [key=value ...]
    .venv/bin/python bench/modes.py launch/configs/bench/calculator-latency.yaml --steps 12

NAME is an experiment config, ``launch/configs/results/<name>.yaml``, or a config's path. Each mode trains
``--steps`` steps into ``OUT/<mode>`` (a mode whose ``metrics.jsonl`` already has them is not
run again). The overlapped modes give the engine and the learner one core each
(``--split-threads``); sync lets them take turns on all of them. Prints a Markdown table:
seconds per step (mean of steps 2..N: step 1 has the warm-up), steps per hour, its ratio to
sync, the mean reward over the last half of the steps, and staleness.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RLAGENT = str(Path(sys.executable).parent / "rlagent")
MODES = {
    "sync": ["rollout.mode=sync"],
    "one_step_off": ["rollout.mode=one_step_off"],
    "async": ["rollout.mode=async", "rollout.async_buffer=1", "rollout.max_staleness=2"],
}


def rows_of(run: Path) -> list[dict]:
    path = run / "metrics.jsonl"
    return [json.loads(line) for line in open(path)] if path.exists() else []


def train(
    cfg: Path, out: Path, mode: str, steps: int, threads: list[str], overrides: list[str]
) -> list[dict]:
    run = out / mode
    if len(rows_of(run)) < steps:
        cmd = [
            RLAGENT,
            "train",
            str(cfg),
            f"run.output_dir={out}",
            f"run.name={mode}",
            f"run.steps={steps}",
            "run.save_every=0",
            *MODES[mode],
            *(threads if mode != "sync" else []),
            *overrides,
        ]
        print("+", " ".join(cmd), flush=True)
        subprocess.run(cmd, cwd=REPO, check=True)
    return rows_of(run)[:steps]


def summary(mode: str, rows: list[dict]) -> dict:
    later = rows[1:]
    step_s = sum(r["timing/step_s"] for r in later) / len(later)
    half = rows[len(rows) // 2 :]
    return {
        "mode": mode,
        "step_s": step_s,
        "steps_per_hour": 3600 / step_s,
        "reward_last_half": sum(r["reward/mean"] for r in half) / len(half),
        "reward_first_half": sum(r["reward/mean"] for r in rows[: len(rows) // 2]) / (len(rows) // 2),
        "rollout_wait_s": sum(r["timing/rollout_wait_s"] for r in later) / len(later),
        "rollout_s": sum(r["timing/rollout_s"] for r in later) / len(later),
        "train_s": sum(r["timing/train_s"] for r in later) / len(later),
        "sync_s": sum(r["timing/sync_s"] for r in later) / len(later),
        "staleness_mean": sum(r.get("staleness/mean", 0.0) for r in rows) / len(rows),
        "mixed_version_episodes": sum(r.get("staleness/mixed_version_episodes", 0.0) for r in rows),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("name", help="experiment: launch/configs/results/<name>.yaml")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--out", default="modes")
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    ap.add_argument(
        "--split-threads",
        default="rollout.engine_threads=1 learner.threads=1",
        help="overrides for the overlapped modes",
    )
    ap.add_argument("overrides", nargs="*", help="dotted.key=value for every mode")
    a = ap.parse_args()
    cfg = (
        Path(a.name)
        if a.name.endswith(".yaml")
        else REPO / "launch" / "configs" / "results" / f"{a.name}.yaml"
    )
    if not cfg.exists():
        sys.exit(f"no experiment {a.name!r}: {cfg} does not exist")
    out = (Path(a.out) / cfg.stem).resolve()
    results = [summary(m, train(cfg, out, m, a.steps, a.split_threads.split(), a.overrides)) for m in a.modes]
    (out / "modes.json").write_text(json.dumps(results, indent=1))
    base = next((r for r in results if r["mode"] == "sync"), results[0])
    print(f"\n{a.steps} steps each; seconds per step: mean of steps 2-{a.steps}\n")
    print(
        "| mode | s/step | steps/hour | vs sync | rollout s | waited for rollouts s | train s | sync s "
        "| reward, first half | reward, last half | staleness mean | mixed-version episodes |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['mode']} | {r['step_s']:.1f} | {r['steps_per_hour']:.0f} | "
            f"{r['steps_per_hour'] / base['steps_per_hour']:.2f}x | {r['rollout_s']:.1f} | "
            f"{r['rollout_wait_s']:.1f} | {r['train_s']:.1f} | {r['sync_s']:.1f} | "
            f"{r['reward_first_half']:.3f} | {r['reward_last_half']:.3f} | "
            f"{r['staleness_mean']:.2f} | {r['mixed_version_episodes']:.0f} |"
        )


if __name__ == "__main__":
    main()
