"""Rollout throughput of the agent loop: episodes per minute through the real rollout pool (a
Ray rollout worker with its vLLM engine, the reward service scoring), against the floor.

    .venv/bin/python bench/agent_loop.py calculator --episodes 16 64 128 [--new-tokens 32]
    .venv/bin/python bench/agent_loop.py web --episodes 16
    .venv/bin/python bench/agent_loop.py calculator --latency 0 --turns 1 --episodes 32  # efficiency
    .venv/bin/python bench/agent_loop.py calculator --latency 0 --turns 1 --episodes 32 --agent  # endpoint
    .venv/bin/python bench/agent_loop.py --summary docs/data/agent_loop.jsonl  # speed-ups, 95% CIs

``calculator``: ``rlagent/Calculator-v0`` (difficulties 1-2), ``--turns`` (3) turns of at most
``--new-tokens`` new tokens, each env step behind the latency wrapper (``--latency MEAN P99``,
lognormal, default 1 s and 6 s; ``--latency 0``: none). ``web``: ``rlagent/Web-v0`` on the six
MiniWoB++ tasks of ``launch/configs/results/web.yaml`` (real Chromium, no added latency). The
same tasks (seeded) for every run; each size plays once to warm up, then ``--reps`` timed
rounds of ``pool.run``; episodes/min = episodes / median wall time.

The floor (agent loop only: it reads the turns' recorded times) is the longer of
- generation: the same requests (each turn's prompt ids and its number of generated tokens)
  on a bare ``AsyncLLM`` in this process, as many at once as the loop may run
  (``rollout.max_concurrent_episodes``, here the episode count): its wall time;
- the slowest episode's own chain of generations and env steps, end to end, as recorded.
Also reported: that chain with each generation as long as it takes alone on the bare engine
(a strict lower bound no batch can reach).
``efficiency`` = floor / wall. With ``--latency 0`` and single-turn tasks the generation floor
is the whole story: the loop's tokens/s against bare ``AsyncLLM.generate`` on the same requests.

``--agent``: the same episodes played by an agent with its own loop (``play_env`` below: the
env in the agent, the model through the rollout worker's OpenAI-compatible endpoint and the
``openai`` client), for the endpoint's tokens/s against the in-process loop's.

The script uses only the pool's public API (``RolloutPool.run``), so it also measures the
lockstep runner of an earlier commit: run it from a worktree of that commit with this file
and ``envs/latency.py`` copied in (``--no-floor``). Prints Markdown rows and writes JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
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
    if getattr(a, "agent", False):
        over += ["agent.entrypoint=bench.agent_loop:play_env"]
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


@functools.cache
def _client(base_url: str):
    """One client per process: a new one loads its TLS certificates (~30 ms of CPU)."""
    import openai

    return openai.OpenAI(base_url=base_url, api_key="per-session", max_retries=0)


def play_env(task: dict, session) -> None:
    """An agent that plays the task's env as the in-process loop does, through the endpoint:
    the same system prompt and observations, one call per turn, the reply as the action. The
    config's reward plugins score what it recorded (it returns None)."""
    import gymnasium

    import rlagent.envs  # noqa: F401  (registers the env ids)

    client = _client(session.base_url).with_options(api_key=session.api_key)
    env = gymnasium.make(task["env"], max_turns=task["bench_turns"])
    try:
        observation, _ = env.reset(options={"task": task, "episode_id": session.episode_id})
        system = [{"role": "system", "content": task["bench_system"]}] if task.get("bench_system") else []
        messages, done = [*system, {"role": "user", "content": observation}], False
        while not done:
            reply = client.chat.completions.create(model=session.model, messages=messages).choices[0]
            observation, _, terminated, truncated, _ = env.step(reply.message.content or "")
            done = terminated or truncated
            messages += [{"role": "assistant", "content": reply.message.content or ""}]
            messages += [{"role": "user", "content": observation}]
    finally:
        env.close()


def tasks_for(env: str, cfg, n_tasks: int, seed: int):
    from rlagent.records import Task

    rng = random.Random(seed)
    if env == "web":
        from rlagent.curriculum import make_sampler

        return make_sampler(cfg).sample(n_tasks)
    from rlagent.envs.calculator import generate_task

    extra = {"bench_turns": cfg.rollout.max_turns, "bench_system": cfg.env.system_prompt}  # for play_env
    return [Task.from_dict(generate_task(rng, 1 + i % 2) | extra) for i in range(n_tasks)]


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
    played = runs[min(range(len(walls)), key=lambda k: abs(walls[k] - wall))]  # the floor's rollout
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
    """The floors a rollout of ``played`` cannot beat: generation (the same requests on a
    bare engine, as many at once as the loop may run), and the slowest episode's own chain
    (its generations and env steps end to end, as recorded; ``alone``: with each generation
    as long as it takes on the bare engine with no batch to share, a strict lower bound)."""
    requests = []
    for e in played:
        for t in e.turns:
            start, end = t.span
            if end > start:
                requests.append((e.token_ids[:start], end - start))
    cap = (
        cfg.rollout.max_concurrent_episodes
        if hasattr(cfg.rollout, "max_concurrent_episodes")
        else len(played)
    )
    gen_s, tokens, alone = asyncio.run(bare_generate(requests, model, cfg, cap))

    def chain(e) -> float:
        return sum((t.generate_end - t.generate_start) + (t.env_end - t.env_start) for t in e.turns)

    def chain_alone(e) -> float:
        return sum(t.env_end - t.env_start + alone(t.span[1] - t.span[0]) for t in e.turns)

    return {
        "bare_tokens_per_s": tokens / gen_s,
        "loop_generated": tokens,
        "generation_floor_s": gen_s,
        "chain_floor_s": max(chain(e) for e in played),
        "chain_alone_s": max(chain_alone(e) for e in played),
        "floor_s": max(gen_s, max(chain(e) for e in played)),
    }


async def bare_generate(requests: list[tuple[list[int], int]], model: str, cfg, cap: int):
    """``requests`` on a fresh ``AsyncLLM`` (each exactly its token count), at most ``cap`` at
    once: wall seconds and tokens, after a warm-up round; and the time one request of n
    tokens takes alone (a linear fit of 8 and 32 tokens)."""
    from rlagent.rollout.engine import AsyncEngine

    engine = AsyncEngine(model, seed=0, max_model_len=cfg.rollout.max_episode_tokens + 1, max_num_seqs=cap)
    await engine.start()
    slots = asyncio.Semaphore(cap)
    try:

        async def one(prompt: list[int], n: int) -> int:
            async with slots:
                g = await engine.generate(prompt, n, temperature=1.0, ignore_eos=True)
            return len(g.token_ids)

        await asyncio.gather(*(one(p, n) for p, n in requests[:8]))
        t0 = time.perf_counter()
        tokens = sum(await asyncio.gather(*(one(p, n) for p, n in requests)))
        wall = time.perf_counter() - t0
        prompt = requests[0][0]
        single = {}
        for n in (8, 32):
            runs = []
            for _ in range(3):
                t = time.perf_counter()
                await one(prompt, n)
                runs.append(time.perf_counter() - t)
            single[n] = statistics.median(runs)
        per_token = (single[32] - single[8]) / 24
        fixed = single[8] - 8 * per_token
        return wall, tokens, lambda n: fixed + n * per_token if n else 0.0
    finally:
        engine.shutdown()


def summarize(path: Path, seed: int = 0) -> None:
    """Agent loop against lockstep per setting, every timed round of every run pooled: the
    ratio of median wall times with a 95% bootstrap interval (rounds resampled on both sides)."""
    rows = [json.loads(line) for line in path.open()]
    key = lambda r: (r["env"], r["episodes"], r["new_tokens"], tuple(r["latency"]), r.get("turns_max", 3))  # noqa: E731
    walls: dict[tuple, dict[str, list[float]]] = {}
    for r in rows:
        side = "lockstep" if r["label"].startswith("lockstep") else "loop"
        walls.setdefault(key(r), {}).setdefault(side, []).extend(r["walls"])
    rng = random.Random(seed)
    print("| env | episodes | new tokens | lockstep s (n) | agent loop s (n) | speed-up [95% CI] |")
    print("|---|---|---|---|---|---|")
    for (env, n, tokens, _, _), sides in sorted(walls.items()):
        if set(sides) != {"loop", "lockstep"}:
            continue
        old, new = sides["lockstep"], sides["loop"]
        boot = sorted(
            statistics.median(rng.choices(old, k=len(old))) / statistics.median(rng.choices(new, k=len(new)))
            for _ in range(10000)
        )
        ratio = statistics.median(old) / statistics.median(new)
        print(
            f"| {env} | {n} | {tokens} | {statistics.median(old):.1f} ({len(old)}) | "
            f"{statistics.median(new):.1f} ({len(new)}) | "
            f"**{ratio:.2f}x** [{boot[250]:.2f}, {boot[9750]:.2f}] |"
        )


def main() -> None:
    if sys.argv[1:2] == ["--summary"]:
        summarize(Path(sys.argv[2]))
        return
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
    ap.add_argument("--agent", action="store_true", help="play through the endpoint (play_env)")
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
        "| floor s (generation, chain, chain alone) | efficiency |"
    )
    print("|---|---|---|---|---|---|---|")
    with remote.ray_session(None, num_cpus=4):
        for n in a.episodes:
            row = measure(a.env, n, a) | {"label": label, "commit": commit, "loadavg": os.getloadavg()[0]}
            with a.out.open("a") as f:
                f.write(json.dumps(row) + "\n")
            fl = (
                f"{row['floor_s']:.1f} ({row['generation_floor_s']:.1f}, {row['chain_floor_s']:.1f}, "
                f"{row['chain_alone_s']:.1f})"
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
