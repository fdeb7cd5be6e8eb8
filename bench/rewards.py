"""The reward service's cost: a cheap rule plugin against the LLM judge.

    PYTHONPATH=. .venv/bin/python bench/rewards.py [--episodes 256 --judge-episodes 64 --reps 3]

Both run through the real ``RewardService`` as a Ray actor (``max_concurrency=CONCURRENCY``,
as ``rlagent.scoring.service.start_reward_service`` starts it), fed with realistic synthetic
``rlagent/Calculator-v0`` episodes (tool calls, results, right and wrong answers):

1. **throughput**: every episode submitted at once; episodes scored per second.
2. **added latency per step**: a 16-episode step whose episodes finish as a rollout ends
   them -- in three waves (after turns 1, 2 and 3, ``--wave-s`` apart) or all at once --
   each submitted the moment it finishes, as ``RolloutWorker.run`` does. The latency is the
   time from the last episode finishing to the last score back: what the step waits for.

The judge's first call starts its engine; that is timed separately and left out. Prints a
Markdown table for docs/benchmarks.md.

The service's actor imports rlagent from this checkout (``PYTHONPATH`` in Ray's runtime env)
and, where the installed package lacks a plugin this checkout's pyproject.toml registers,
takes that entry point from the pyproject (so the bench runs before a reinstall).
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from rlagent.episode_view import EpisodeView

REPO = Path(__file__).resolve().parent.parent
STEP_EPISODES = 16


# --- realistic episodes -------------------------------------------------------------------
def calculator_episode(rng: random.Random, group: int) -> Any:
    """One Calculator episode in one of four shapes (tool + right answer, a guess, an invalid
    first turn, an arithmetic slip after the tool); texts as a small instruct model writes them."""
    from rlagent.envs.calculator import INSTRUCTIONS, INVALID_ACTION, generate_task
    from rlagent.records import Episode, Task, Turn

    task = Task.from_dict(generate_task(rng, rng.choice([1, 2, 3])))
    expr, ans = task.fields["expression"], task.answer
    slip = ans + rng.choice([-10, -2, -1, 1, 3, 10])
    calc = (
        f"To solve this, I will use the calculator on the whole expression. <calc>{expr}</calc>",
        f"<result>{ans}</result>",
    )
    shapes = [
        [calc, (f"The calculator returned {ans}, so the answer is <answer>{ans}</answer>", None)],
        [(f"Let me work it out in my head: {expr} comes to about {slip}. <answer>{slip}</answer>", None)],
        [
            ("First, I need to understand the question and the order of operations.", INVALID_ACTION),
            calc,
            (f"So {expr} = {ans}. <answer>{ans}</answer>", None),
        ],
        [calc, (f"The result is {ans}, and I double-check it gives {slip}. <answer>{slip}</answer>", None)],
    ]
    pairs = shapes[group % len(shapes)]
    messages = [{"role": "user", "content": f"{INSTRUCTIONS}\nQuestion: {task.prompt}"}]
    turns, pos, ids = [], 60, list(rng.choices(range(49152), k=60))
    for i, (action, observation) in enumerate(pairs):
        n = 20 + len(action) // 4  # ~4 characters a token
        turns.append(
            Turn(
                action=action,
                observation=observation,
                env_reward=0.0,
                info={"invalid_action": observation == INVALID_ACTION, "tool_calls": i},
                span=(pos, pos + n),
                finish_reason="stop",
            )
        )
        messages.append({"role": "assistant", "content": action})
        obs_n = 0 if observation is None else 10
        if observation is not None:
            messages.append({"role": "user", "content": observation})
        ids += rng.choices(range(49152), k=n + obs_n)
        pos += n + obs_n
    mask = [0] * len(ids)
    for t in turns:
        mask[t.span[0] : t.span[1]] = [1] * (t.span[1] - t.span[0])
    return Episode(
        task=task,
        group=group,
        messages=messages,
        token_ids=ids,
        loss_mask=mask,
        logprobs=[-0.7 * m for m in mask],
        prompt_len=60,
        turns=turns,
        termination="terminated",
        policy_version=0,
    )


# --- the service as a Ray actor -----------------------------------------------------------
def repo_entry_points() -> dict[str, Any]:
    from importlib.metadata import EntryPoint

    import tomllib

    from rlagent.scoring.service import GROUP

    with open(REPO / "pyproject.toml", "rb") as f:
        table = tomllib.load(f)["project"]["entry-points"][GROUP]
    return {name: EntryPoint(name=name, value=value, group=GROUP) for name, value in table.items()}


def start_service(spec_name: str, kwargs: dict[str, Any], timeout_s: float) -> Any:
    import ray

    from rlagent.config import RewardSpec
    from rlagent.scoring.service import CONCURRENCY, RewardService

    class BenchRewardService(RewardService):
        def __init__(self, specs: list[RewardSpec], timeout_s: float):
            import rlagent.scoring.service as service

            installed = service.discover()  # this process only: installed plugins win
            service.discover = lambda: {**repo_entry_points(), **installed}
            super().__init__(specs, timeout_s)

        def torch_threads(self) -> int:
            import torch

            return torch.get_num_threads()

        def batches(self) -> tuple[int, int]:
            """(engine calls, prompts in them) summed over plugins that batch."""
            plugins = self.plugins.values()
            return (
                sum(getattr(p, "engine_calls", 0) for p in plugins),
                sum(getattr(p, "prompts_judged", 0) for p in plugins),
            )

        def close(self) -> None:
            for plugin in self.plugins.values():
                if hasattr(plugin, "close"):
                    plugin.close()

    handle = (
        ray.remote(BenchRewardService)
        .options(num_cpus=0.2, max_concurrency=CONCURRENCY)
        .remote([RewardSpec(spec_name, 1.0, kwargs)], timeout_s)
    )
    ray.get(handle.__ray_ready__.remote(), timeout=300)
    return handle


def throughput(svc: Any, episodes: list[Any]) -> tuple[float, int]:
    import ray

    t0 = time.perf_counter()
    scored = ray.get([svc.score.remote(EpisodeView.of(e)) for e in episodes], timeout=1800)
    elapsed = time.perf_counter() - t0
    return len(episodes) / elapsed, sum(bool(s.errors) for s in scored)


def step_latency(svc: Any, episodes: list[Any], waves: list[int], wave_s: float) -> float:
    """Submit ``waves[k]`` episodes at ``k * wave_s``; seconds from the last one to all scores."""
    import ray

    refs, start, it = [], time.perf_counter(), iter(episodes)
    for k, n in enumerate(waves):
        time.sleep(max(0.0, start + k * wave_s - time.perf_counter()))
        refs += [svc.score.remote(EpisodeView.of(next(it))) for _ in range(n)]
    last = time.perf_counter()
    scored = ray.get(refs, timeout=600)
    assert not any(e.reward_errors for e in scored), [e.reward_errors for e in scored]
    return time.perf_counter() - last


def measure(name: str, kwargs: dict[str, Any], n_throughput: int, reps: int, wave_s: float) -> dict[str, Any]:
    import ray

    rng = random.Random(0)
    svc = start_service(name, kwargs, timeout_s=120.0)
    t0 = time.perf_counter()
    first = EpisodeView.of(calculator_episode(rng, 0))
    ray.get(svc.score.remote(first), timeout=600)  # the judge starts here
    first_s = time.perf_counter() - t0
    calls0, prompts0 = ray.get(svc.batches.remote())
    eps_per_s, errors = throughput(svc, [calculator_episode(rng, g) for g in range(n_throughput)])
    calls1, prompts1 = ray.get(svc.batches.remote())
    burst, waves = [], []
    for _ in range(reps):
        step = [calculator_episode(rng, g) for g in range(STEP_EPISODES)]
        waves.append(step_latency(svc, step, [4, 6, 6], wave_s))
        step = [calculator_episode(rng, g) for g in range(STEP_EPISODES)]
        burst.append(step_latency(svc, step, [STEP_EPISODES], 0.0))
    calls2, prompts2 = ray.get(svc.batches.remote())
    threads = ray.get(svc.torch_threads.remote())
    ray.get(svc.close.remote(), timeout=120)
    ray.kill(svc)
    return {
        "first_s": first_s,
        "eps_per_s": eps_per_s,
        "errors": errors,
        "n": n_throughput,
        "waves": waves,
        "burst": burst,
        "threads": threads,
        "batch_throughput": (prompts1 - prompts0) / max(calls1 - calls0, 1),
        "batch_steps": (prompts2 - prompts1) / max(calls2 - calls1, 1),
    }


def fmt(xs: list[float]) -> str:
    return f"{statistics.median(xs):.3f} ({min(xs):.3f}-{max(xs):.3f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--episodes", type=int, default=256, help="throughput episodes, cheap plugin")
    ap.add_argument("--judge-episodes", type=int, default=64, help="throughput episodes, judge")
    ap.add_argument("--reps", type=int, default=3, help="16-episode steps per pattern")
    ap.add_argument("--wave-s", type=float, default=3.0, help="seconds between finishing waves")
    args = ap.parse_args()

    import ray

    temp = tempfile.mkdtemp(prefix="rlbench-", dir="/tmp")
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        _temp_dir=temp,
        runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}},
    )
    try:
        rows = [
            ("outcome (NumericMatchReward)", measure("outcome", {}, args.episodes, args.reps, args.wave_s)),
            (
                "judge (JudgeReward, SmolLM2-135M, max_batch 8)",
                measure("judge", {}, args.judge_episodes, args.reps, args.wave_s),
            ),
        ]
    finally:
        ray.shutdown()
    print(
        "| plugin | first call s | throughput episodes/s | added latency, 3 waves s | "
        "added latency, 16 at once s |"
    )
    print("|---|---|---|---|---|")
    for label, r in rows:
        print(
            f"| {label} | {r['first_s']:.2f} | {r['eps_per_s']:.1f} ({r['n']} episodes, "
            f"{r['errors']} errors) | {fmt(r['waves'])} | {fmt(r['burst'])} |"
        )
    judge = rows[1][1]
    print(
        f"\njudge: mean prompts per engine call {judge['batch_throughput']:.1f} (throughput), "
        f"{judge['batch_steps']:.1f} (steps); torch threads in the service actor: {judge['threads']}"
    )


if __name__ == "__main__":
    main()
