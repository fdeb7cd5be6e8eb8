"""Rollout throughput of the agent loop: episodes per minute through the real rollout pool (a
Ray rollout worker with its vLLM engine, the reward service scoring), against the floor.

    .venv/bin/python bench/agent_loop.py calculator --episodes 16 64 128 [--new-tokens 32]
    .venv/bin/python bench/agent_loop.py web --episodes 16
    .venv/bin/python bench/agent_loop.py calculator --latency 0 --turns 1 --episodes 32  # efficiency

``calculator``: ``rlagent/Calculator-v0`` (difficulties 1-2), ``--turns`` (3) turns of at most
``--new-tokens`` new tokens, each env step behind the latency wrapper (``--latency MEAN P99``,
lognormal, default 1 s and 6 s; ``--latency 0``: none). ``web``: ``rlagent/Web-v0`` on the six
MiniWoB++ tasks of ``launch/configs/results/web.yaml`` (real Chromium, no added latency). The
same tasks (seeded) for every run; each size plays once to warm up, then ``--reps`` timed
rounds of ``pool.run``; episodes/min = episodes / median wall time.

The floor (agent loop only: it reads the turns' recorded times) is the longer of
- generation: the same requests (each turn's prompt ids and its number of generated tokens),
  all at once on a bare ``AsyncLLM`` in this process, at its tokens/s;
- the longest episode's own chain of generations and env steps.
``efficiency`` = floor / wall. With ``--latency 0`` and single-turn tasks the generation floor
is the whole story: the loop's tokens/s against bare ``AsyncLLM.generate`` on the same requests.

The script uses only the pool's public API (``RolloutPool.run``), so it also measures the
lockstep runner of an earlier commit: run it from a worktree of that commit with this file
and ``envs/latency.py`` copied in (``--no-floor``). Prints Markdown rows and writes JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path.cwd()


def config(env: str, a: argparse.Namespace, episodes: int):
    from rlagent.config import load_config
    from rlagent.stage_config import RolloutConfig

    group = 4
    over = [
        f"algo.group_size={group}",
        f"algo.tasks_per_step={episodes // group}",
        "rollout.temperature=1.0",
        "rollout.kv_cache_gib=2",
        f"rollout.step_timeout_s={a.step_timeout}",
        "tracking.wandb_mode=disabled",
        f"run.seed={a.seed}",
    ]
    if hasattr(RolloutConfig(), "max_concurrent_episodes"):
        over.append(f"rollout.max_concurrent_episodes={episodes}")
    if env == "web":
        return load_config(REPO / "launch/configs/results/web.yaml", over)
    over += [
        f"rollout.max_new_tokens={a.new_tokens}",
        f"rollout.max_turns={a.turns}",
        "rollout.max_episode_tokens=1024",
    ]
    if a.latency[0] > 0:
        mean, p99 = a.latency
        inner = (
            f"{{env_id: rlagent/Calculator-v0, max_turns: {a.turns}, "
            f"mean_s: {mean}, p99_s: {p99}, seed: {a.seed}}}"
        )
        over += ["env.id=rlagent.envs.latency:rlagent/Latency-v0", f"env.kwargs={inner}"]
    else:
        over += [f"env.kwargs={{max_turns: {a.turns}}}"]
    return load_config(REPO / "launch/configs/results/calculator.yaml", over)


def tasks_for(env: str, cfg, n_tasks: int, seed: int):
    from rlagent.records import Task

    rng = random.Random(seed)
    if env == "web":
        from rlagent.curriculum import make_sampler

        return make_sampler(cfg).sample(n_tasks)
    from rlagent.envs.calculator import generate_task

    return [Task.from_dict(generate_task(rng, 1 + i % 2)) for i in range(n_tasks)]


def measure(env: str, episodes: int, a: argparse.Namespace) -> dict:
    from rlagent.model_source import resolve_model
    from rlagent.rollout.pool import RolloutPool
    from rlagent.scoring.service import start_reward_service

    cfg = config(env, a, episodes)
    model = resolve_model(cfg.model.path)
    tasks = tasks_for(env, cfg, episodes // cfg.algo.group_size, a.seed)
    pool = RolloutPool(cfg, model, start_reward_service(cfg.rewards))
    walls, runs = [], []
    try:
        pool.run(tasks, cfg.algo.group_size)  # warm-up: engine, envs (browsers), reward service
        for _ in range(a.reps):
            t0 = time.perf_counter()
            played = pool.run(tasks, cfg.algo.group_size)
            walls.append(time.perf_counter() - t0)
            runs.append(played)
    finally:
        pool.shutdown()
    wall = statistics.median(walls)
    played = runs[walls.index(wall)]
    row = {
        "env": env,
        "episodes": episodes,
        "new_tokens": a.new_tokens,
        "turns_max": a.turns,
        "latency": a.latency,
        "walls": walls,
        "wall_s": wall,
        "episodes_per_min": 60 * episodes / wall,
        "generated_tokens": sum(e.num_generated for e in played),
        "turns": sum(len(e.turns) for e in played),
        "env_failures": sum(e.termination in ("env_error", "env_timeout") for e in played),
    }
    if not a.no_floor:
        row |= floor(played, model, cfg)
        row["efficiency"] = row["floor_s"] / wall
    return row


def floor(played: list, model: str, cfg) -> dict:
    """The generation floor (the same requests on a bare engine) and the longest chain."""
    requests = []
    for e in played:
        for t in e.turns:
            start, end = t.span
            if end > start:
                requests.append((e.token_ids[:start], end - start))
    chain = max(
        sum((t.generate_end - t.generate_start) + (t.env_end - t.env_start) for t in e.turns) for e in played
    )
    gen_s, tokens = asyncio.run(bare_generate(requests, model, cfg))
    rate = tokens / gen_s
    return {
        "bare_tokens_per_s": rate,
        "loop_generated": tokens,
        "generation_floor_s": tokens / rate,
        "chain_floor_s": chain,
        "floor_s": max(tokens / rate, chain),
    }


async def bare_generate(requests: list[tuple[list[int], int]], model: str, cfg) -> tuple[float, int]:
    """All ``requests`` at once on a fresh ``AsyncLLM`` (each exactly its token count): wall
    seconds and tokens, after a warm-up round."""
    from rlagent.rollout.engine import AsyncEngine

    engine = AsyncEngine(
        model, seed=0, max_model_len=cfg.rollout.max_episode_tokens + 1, max_num_seqs=max(len(requests), 1)
    )
    await engine.start()
    try:

        async def one(prompt: list[int], n: int) -> int:
            g = await engine.generate(prompt, n, temperature=1.0, ignore_eos=True)
            return len(g.token_ids)

        await asyncio.gather(*(one(p, n) for p, n in requests[:8]))
        t0 = time.perf_counter()
        tokens = sum(await asyncio.gather(*(one(p, n) for p, n in requests)))
        return time.perf_counter() - t0, tokens
    finally:
        engine.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("env", choices=["calculator", "web"])
    ap.add_argument("--episodes", type=int, nargs="+", default=[16, 64, 128])
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--turns", type=int, default=3, help="calculator: most turns an episode plays")
    ap.add_argument("--latency", type=float, nargs="+", default=[1.0, 6.0], help="MEAN P99 seconds, or 0")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--step-timeout", type=float, default=60.0)
    ap.add_argument("--no-floor", action="store_true", help="skip the floor (an older commit's runner)")
    ap.add_argument("--label", default="", help="the row's name (e.g. the commit)")
    ap.add_argument("--out", type=Path, default=Path("bench/out/agent_loop.jsonl"))
    a = ap.parse_args()
    if len(a.latency) == 1:
        a.latency = [a.latency[0], a.latency[0]]
    from rlagent import remote
    from rlagent.rollout.engine import engine_env

    os.environ.update(engine_env(2, 2))  # the floor's bare engine, in this process (before vLLM loads)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    label = a.label or commit
    a.out.parent.mkdir(parents=True, exist_ok=True)
    print(f"command: python bench/agent_loop.py {' '.join(sys.argv[1:])}  (commit {commit})", flush=True)
    print(
        "| runner | episodes | new tokens | wall s (reps) | episodes/min "
        "| floor s (gen, chain) | efficiency |"
    )
    print("|---|---|---|---|---|---|---|")
    with remote.ray_session(None, num_cpus=4):
        for n in a.episodes:
            row = measure(a.env, n, a) | {"label": label, "commit": commit, "loadavg": os.getloadavg()[0]}
            with a.out.open("a") as f:
                f.write(json.dumps(row) + "\n")
            fl = (
                f"{row['floor_s']:.1f} ({row['generation_floor_s']:.1f}, {row['chain_floor_s']:.1f})"
                if "floor_s" in row
                else "-"
            )
            eff = f"{row['efficiency']:.0%}" if "efficiency" in row else "-"
            walls = ", ".join(f"{w:.1f}" for w in row["walls"])
            print(
                f"| {label} | {n} | {a.new_tokens} | {row['wall_s']:.1f} ({walls}) "
                f"| {row['episodes_per_min']:.0f} | {fl} | {eff} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
