"""Time per step (rollout / train / sync) and peak memory of the quickstart.

    .venv/bin/python bench/quickstart.py [--steps 5] [dotted.key=value ...]

Runs ``rlagent train launch/configs/quickstart.yaml`` as a user would, samples the summed
RSS of the whole process tree (driver, Ray, engine, learner, W&B) every 0.5 s, and prints a
Markdown table for docs/benchmarks.md. Step 1 includes one-off warm-up and is reported apart.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

from proctree import watch_peak

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    cmd = [
        str(Path(sys.executable).parent / "rlagent"),
        "train",
        "launch/configs/quickstart.yaml",
        f"run.steps={args.steps}",
        "run.name=bench-quickstart",
        *args.overrides,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    t0 = time.time()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
    peak = watch_peak(proc)
    out = proc.stdout.read()
    assert proc.wait() == 0, out[-3000:]
    wall = time.time() - t0
    run_dir = Path(re.search(r"\[rlagent\] done: (\S+)", out).group(1))
    rows = [json.loads(l) for l in open(run_dir / "metrics.jsonl")]
    steady = rows[1:] or rows

    def mean(key: str) -> float:
        return statistics.mean(r[key] for r in steady)

    print(f"command: {' '.join(['python bench/quickstart.py', f'--steps {args.steps}', *args.overrides])}")
    print(f"run dir: {run_dir}; wall {wall:.0f} s for {len(rows)} steps (start-up included)\n")
    print(
        "| step 1 (warm-up) s | step s | rollout s | train s | sync s | gen tokens/s "
        "| learner peak GB | rollout actor peak GB | process tree peak RSS GB |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    print(
        f"| {rows[0]['timing/step_s']:.1f} | {mean('timing/step_s'):.1f} "
        f"| {mean('timing/rollout_s'):.1f} | {mean('timing/train_s'):.1f} "
        f"| {mean('timing/sync_s'):.2f} | {mean('throughput/tokens_per_s'):.0f} "
        f"| {max(r['memory/learner_peak_gb'] for r in rows):.2f} "
        f"| {max(r['memory/rollout_peak_gb'] for r in rows):.2f} | {peak[0]:.2f} |"
    )


if __name__ == "__main__":
    main()
