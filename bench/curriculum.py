"""Steps (and wall time) to master the hardest level: ladder curriculum against uniform.

    .venv/bin/python bench/curriculum.py [--steps 60] [--seeds 1 2] [--samplers ...] [key=value ...]

Task family: ``rlagent/Echo-v0`` with difficulty = number of turns (1 to 4), rewarded only
for a fully correct episode (``env_success``: sparse, as agentic tasks are). Policy: the
tiny randomly initialised model of the tests (``rlagent.testing.make_tiny_model``), trained
with GRPO by the real trainer (Ray, vLLM, DeepSpeed). Each sampler trains for ``--steps`` steps; a run has
mastered level 4 at the first step where the latest 32 level-4 episodes (read back from the
rollout files) succeed at least 80% of the time. Prints a Markdown table for
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections import deque
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

HARDEST, WINDOW, TARGET = 4, 32, 0.8


def config(model: Path, out: Path, sampler: str, seed: int, steps: int) -> list[str]:
    return [
        f"run.name={sampler}-{seed}",
        f"run.output_dir={out}",
        f"run.steps={steps}",
        f"run.seed={seed}",
        f"model.path={model}",
        "env.id=rlagent/Echo-v0",
        "env.kwargs={}",
        "data.difficulties=[1, 2, 3, 4]",
        f"curriculum.name={sampler}",
        "rollout.max_new_tokens=2",
        "rollout.max_episode_tokens=96",
        "rollout.max_turns=4",
        "rollout.kv_cache_gib=1",
        "algo.group_size=8",
        "algo.tasks_per_step=8",
        "learner.lr=0.01",
        "learner.micro_batch_size=64",
        "rewards.components=[{name: env_success, weight: 1.0}]",
        "tracking.wandb_mode=disabled",
        "tracking.table_episodes=0",
    ]


def mastered_at(run_dir: Path) -> tuple[int | None, list[float]]:
    """First step whose latest WINDOW hardest-level episodes succeed >= TARGET; and the
    hardest-level success rate per step (NaN where the step had none)."""
    recent: deque[bool] = deque(maxlen=WINDOW)
    first, per_step = None, []
    for path in sorted((run_dir / "rollouts").glob("step_*.jsonl")):
        wins = []
        with open(path) as f:
            for line in f:
                e = json.loads(line)
                if e["task"]["difficulty"] == HARDEST:
                    wins.append(bool(e["turns"] and e["turns"][-1]["info"].get("success")))
        recent.extend(wins)
        per_step.append(sum(wins) / len(wins) if wins else float("nan"))
        if first is None and len(recent) == WINDOW and sum(recent) / WINDOW >= TARGET:
            first = int(path.stem.split("_")[1])
    return first, per_step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1])
    ap.add_argument("--samplers", nargs="+", default=["uniform", "ladder"])
    ap.add_argument("overrides", nargs="*", help="dotted.key=value for both runs")
    args = ap.parse_args()

    import ray

    from rlagent.config import load_config
    from rlagent.testing import make_tiny_model
    from rlagent.trainer import train

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        model = make_tiny_model(Path(tmp) / "tiny")
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            for seed in args.seeds:
                for name in args.samplers:
                    cfg = load_config(
                        None, config(model, Path(tmp) / "runs", name, seed, args.steps) + args.overrides
                    )
                    t0 = time.perf_counter()
                    run_dir = train(cfg)
                    wall = time.perf_counter() - t0
                    with open(run_dir / "metrics.jsonl") as f:
                        rows = [json.loads(line) for line in f]
                    step_s = [r["timing/step_s"] for r in rows]
                    first, per_step = mastered_at(run_dir)
                    # wall time to mastery: the steps' own times (no start-up), up to that step
                    to_first = sum(step_s[:first]) if first else None
                    results.append(
                        {
                            "sampler": name,
                            "seed": seed,
                            "first": first,
                            "to_first_s": to_first,
                            "run_s": wall,
                            "step_s": statistics.median(step_s),
                            "levels": [r.get("curriculum/level") for r in rows],
                            "hardest": per_step,
                        }
                    )
                    print(json.dumps(results[-1]), flush=True)
        finally:
            ray.shutdown()
    print(table(results, args.steps))


def table(results: list[dict], steps: int) -> str:
    lines = [
        f"| sampler | seed | steps to {TARGET:.0%} at level {HARDEST} | wall time to it | "
        f"median step | level-{HARDEST} success, last step |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        first = r["first"] if r["first"] else f"not in {steps}"
        wall = f"{r['to_first_s'] / 60:.1f} min" if r["to_first_s"] else "-"
        last = next((x for x in reversed(r["hardest"]) if x == x), float("nan"))
        lines.append(
            f"| {r['sampler']} | {r['seed']} | {first} | {wall} | {r['step_s']:.1f} s | {last:.2f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
