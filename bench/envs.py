"""Env throughput: episodes per second of each built-in env under a scripted policy, at 1, 8 and
32 concurrent episodes, and the memory one env instance costs.

    OMP_NUM_THREADS=1 .venv/bin/python bench/envs.py [--envs calculator,search,tool,textworld,web]

Each env runs in a fresh process (``--worker NAME``), so imports, caches and browsers of one
env never count against another. In it, for each concurrency N:

1. the pool grows to N env instances (``gymnasium.make``, reused across episodes as the
   rollout runner reuses them) and plays one untimed batch of N episodes (warm-up: browser
   start, page and game loads, index build);
2. the memory of the process tree is read (RSS and PSS, the worker and every descendant:
   for Web-v0 the Chromium processes);
3. a fixed number of episodes is played in lockstep batches of N (as the episode runner played
   them before it gave every episode its own coroutine): all N resets, then one turn of every
   live episode at a time, each env call in its own thread of a pool of N. The scripted
   replies cost next to nothing, so the time is the envs'.

A level is skipped when the measured memory per instance says it would take the process tree
past ``--memory-budget-gib`` (Web-v0 at 32: one Chromium per instance). Prints a Markdown table
for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import gc
import json
import os
import random
import re
import subprocess
import sys
import time
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
GAMES = REPO / "tests" / "fixtures" / "textworld"
LEVELS = (1, 8, 32)
# Timed episodes per concurrency level (a multiple of 32, so every batch is full).
EPISODES = {"calculator": 8192, "search": 2048, "tool": 128, "textworld": 256, "web": 64}
MIB = 2**20

# A scripted policy is a generator: it gets the task and the first observation, yields a reply,
# and is sent the next observation after each step.
Policy = Generator[str, str, None]


# --- Calculator-v0: compute the expression with the tool, answer the result ------------------
def calculator_setup() -> tuple[str, dict, list[dict], Callable[..., Policy]]:
    from rlagent.envs.calculator import generate_task

    rng = random.Random(0)
    tasks = [generate_task(rng, d) for d in range(1, 6) for _ in range(64)]

    def policy(task: dict, obs: str) -> Policy:
        obs = yield f"<calc>{task['expression']}</calc>"
        yield f"<answer>{re.fullmatch(r'<result>(.*)</result>', obs).group(1)}</answer>"

    return "rlagent/Calculator-v0", {}, tasks, policy


# --- Search-v0: search each entity on the gold path, then answer -----------------------------
def search_setup() -> tuple[str, dict, list[dict], Callable[..., Policy]]:
    from rlagent.envs.search import SearchEnv
    from rlagent.envs.search.sources import load_passages

    rng = random.Random(0)
    tasks = [SearchEnv.generate_task(rng, d) for d in SearchEnv.difficulties for _ in range(32)]
    titles = {p.id: p.title for p in load_passages(None, 0, 200)}

    def policy(task: dict, obs: str) -> Policy:
        # The queries of the tests' scripted agent (the start entity, then the entity each
        # result names), taken from the gold documents' titles instead of read from the text.
        for doc_id in task["gold_doc_ids"]:
            yield f"Looking up.<search>{titles[doc_id]}</search>"
        yield f"<answer>{task['answer']}</answer>"

    return "rlagent/Search-v0", {}, tasks, policy


# --- Tool-v0: one tool call that computes the answer (as in tests/unit/test_tool_env.py) ----------
def _tool_call(task: dict) -> str:
    meta, name = task["entry"]["metadata"], task["dataset"]
    if name == "chain_sum":
        return f"<calc>{meta['expression']}</calc>"
    if name == "basic_arithmetic":  # exact rational arithmetic: "/" must not turn into floats
        return (
            "<python>\nimport re\nfrom fractions import Fraction\n"
            f"expr = {meta['expression']!r}\n"
            "print(eval(re.sub(r'\\d+', lambda m: f'Fraction({m.group()})', expr)))\n"
            "</python>"
        )
    return f"<python>import math; print(math.{name}(*{meta['numbers']}))</python>"  # gcd, lcm


TOOL_OUTPUT = re.compile(r"<output>\n(.*)\n</output>", re.DOTALL)


def tool_setup() -> tuple[str, dict, list[dict], Callable[..., Policy]]:
    from rlagent.envs.tool import ToolEnv

    rng = random.Random(0)
    tasks = [ToolEnv.generate_task(rng, d) for d in ToolEnv.difficulties for _ in range(13)]

    def policy(task: dict, obs: str) -> Policy:
        obs = yield "Let me compute. " + _tool_call(task)
        yield f"<answer>{TOOL_OUTPUT.fullmatch(obs).group(1)}</answer>"

    return "rlagent/Tool-v0", {}, tasks, policy


# --- TextWorld-v0: the game's walkthrough -----------------------------------------------------
def textworld_setup() -> tuple[str, dict, list[dict], Callable[..., Policy]]:
    game = "simple_dense.z8"  # one game: switching games reloads it (~0.3 s), see the notes
    walkthrough = json.loads((GAMES / game).with_suffix(".json").read_text())["metadata"]["walkthrough"]
    tasks = [{"id": "textworld/simple_dense", "prompt": "", "game": game}]

    def policy(task: dict, obs: str) -> Policy:
        for command in walkthrough:
            yield f"<command>{command}</command>"

    return "rlagent/TextWorld-v0", {"games_dir": str(GAMES)}, tasks, policy


# --- Web-v0: the tests' scripted agent, which reads only the observation ----------------------
WEB_TASKS = (
    "click-button",
    "click-link",
    "focus-text",
    "enter-text",
    "click-checkboxes",
    "click-option",
    "login-user",
)


def _elements(observation: str) -> list[dict]:
    out = []
    for line in observation.split("\nPage:\n", 1)[1].splitlines():
        if m := re.match(r'\s*\[(-?\d+)\] (\S+)(?: "(.*?)")?', line):
            out.append({"ref": int(m.group(1)), "tag": m.group(2), "text": m.group(3), "line": line})
        elif t := re.fullmatch(r'\s*"(.*)"', line):
            out.append({"ref": None, "tag": "t", "text": t.group(1), "line": line})
    return out


def _ref(elements: list[dict], text=None, tag=None, typeable=False) -> int:
    for e in elements:
        if (
            e["ref"] is not None
            and (text is None or e["text"] == text)
            and (tag is None or e["tag"] == tag)
            and (not typeable or "(type)" in e["line"])
        ):
            return e["ref"]
    raise ValueError(f"no element text={text} tag={tag}")


def web_replies(observation: str) -> list[str]:
    utterance = re.search(r"^Task: (.*)$", observation, re.M).group(1)
    els = _elements(observation)
    if m := re.fullmatch(r'Click on the "(.+)" button\.', utterance):
        return [f"click({_ref(els, m.group(1), 'button')})"]
    if m := re.fullmatch(r'Click on the link "(.+)"\.', utterance):
        return [f"click({_ref(els, m.group(1))})"]
    if utterance == "Focus into the textbox.":
        return [f"click({_ref(els, typeable=True)})"]
    if m := re.fullmatch(r'Enter "(.+)" into the text field and press Submit\.', utterance):
        return [
            f'type({_ref(els, typeable=True)}, "{m.group(1)}")',
            f"click({_ref(els, 'Submit', 'button')})",
        ]
    if m := re.fullmatch(r"Select (.*) and click Submit\.", utterance):
        words = [] if m.group(1) == "nothing" else m.group(1).split(", ")
        labels = {
            nxt["text"]: e["ref"]
            for e, nxt in zip(els, els[1:])
            if e["tag"] in ("input_checkbox", "input_radio") and nxt["ref"] is None
        }
        return [
            "\n".join([*(f"click({labels[w]})" for w in words), f"click({_ref(els, 'Submit', 'button')})"])
        ]
    if m := re.fullmatch(
        r'Enter the username "(.+)" and the password "(.+)" into the text '
        r'fields and press login\.',
        utterance,
    ):
        user, password = _ref(els, tag="input_text"), _ref(els, tag="input_password")
        return [
            f"type({user}, {m.group(1)!r}) type({password}, {m.group(2)!r})",
            f"click({_ref(els, 'Login', 'button')})",
        ]
    raise ValueError(f"the scripted agent cannot do: {utterance}")


def web_setup() -> tuple[str, dict, list[dict], Callable[..., Policy]]:
    rng = random.Random(0)
    tasks = [
        {"id": f"web-{t}", "prompt": "", "task": t, "seed": rng.randrange(2**31)}
        for _ in range(10)
        for t in WEB_TASKS
    ]

    def policy(task: dict, obs: str) -> Policy:
        for reply in web_replies(obs):
            obs = yield reply

    return "rlagent/Web-v0", {}, tasks, policy


SETUPS = {
    "calculator": calculator_setup,
    "search": search_setup,
    "tool": tool_setup,
    "textworld": textworld_setup,
    "web": web_setup,
}


# --- measuring --------------------------------------------------------------------------------
def tree_memory() -> tuple[float, float, float]:
    """(RSS, PSS) in MiB, summed over this process and all its descendants, and the machine's
    memory in use (total - available; other jobs move it too)."""
    import psutil

    rss = pss = 0
    me = psutil.Process()
    for p in [me, *me.children(recursive=True)]:
        try:
            m = p.memory_full_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        rss, pss = rss + m.rss, pss + m.pss
    vm = psutil.virtual_memory()
    return rss / MIB, pss / MIB, (vm.total - vm.available) / MIB


def play_batch(
    pool: cf.ThreadPoolExecutor, envs: list, tasks: list[dict], policy: Callable[..., Policy]
) -> tuple[int, int]:
    """One episode per env, in lockstep; returns (successes, env steps)."""
    resets = pool.map(lambda et: et[0].reset(options={"task": et[1]})[0], zip(envs, tasks))
    policies = [policy(t, obs) for t, obs in zip(tasks, resets)]
    replies = [next(p) for p in policies]
    live, wins, steps = list(range(len(envs))), 0, 0
    while live:
        results = list(pool.map(lambda i: envs[i].step(replies[i]), live))
        steps += len(live)
        still = []
        for i, (obs, reward, terminated, truncated, _) in zip(live, results):
            if terminated or truncated:
                wins += reward > 0
            else:
                replies[i] = policies[i].send(obs)
                still.append(i)
        live = still
    return wins, steps


def worker(name: str, episodes: int, levels: list[int], budget_mib: float) -> dict[str, Any]:
    import gymnasium

    from rlagent.tasks import env_class

    env_id, kwargs, tasks, policy = SETUPS[name]()
    env_class(env_id)  # import the env's module now: its imports are not an instance's memory
    gc.collect()
    base = tree_memory()
    envs: list = []
    memory: dict[int, tuple[float, float, float]] = {}
    out: dict[str, Any] = {
        "env": name,
        "env_id": env_id,
        "episodes": episodes,
        "rate": {},
        "success": {},
        "steps_per_episode": None,
        "skipped": {},
    }
    draw = iter(range(10**9))
    for n in levels:
        if len(memory) >= 2:
            (n0, m0), (n1, m1) = sorted(memory.items())[:2]
            per = (m1[1] - m0[1]) / (n1 - n0)
            projected = m1[1] + per * (n - n1)
            if projected > budget_mib:
                out["skipped"][n] = f"projected PSS {projected / 1024:.1f} GiB > budget"
                continue
        with cf.ThreadPoolExecutor(max_workers=n, thread_name_prefix="env") as pool:
            new = n - len(envs)
            envs += pool.map(lambda _: gymnasium.make(env_id, **kwargs), range(new))
            play_batch(pool, envs, [tasks[next(draw) % len(tasks)] for _ in envs], policy)
            gc.collect()
            memory[n] = tree_memory()
            wins = steps = 0
            start = time.perf_counter()
            for _ in range(episodes // n):
                w, s = play_batch(pool, envs, [tasks[next(draw) % len(tasks)] for _ in envs], policy)
                wins, steps = wins + w, steps + s
            elapsed = time.perf_counter() - start
        out["rate"][n] = episodes / elapsed
        out["success"][n] = wins / episodes
        out["steps_per_episode"] = steps / episodes
        print(
            f"{name}: {n} concurrent: {episodes / elapsed:.1f} episodes/s, "
            f"success {wins / episodes:.2f}, tree RSS {memory[n][0]:.0f} MiB",
            file=sys.stderr,
        )
    first = min(memory)
    last = max(memory)
    out["first_mib"] = [memory[first][i] - base[i] for i in range(3)]
    out["further_mib"] = (
        [(memory[last][i] - memory[first][i]) / (last - first) for i in range(3)] if last > first else None
    )
    out["tree_mib"] = {n: [round(x) for x in m] for n, m in memory.items()}
    if name == "tool":
        out["isolation"] = envs[0].unwrapped.sandbox.isolation
    for env in envs:
        env.close()
    return out


# --- the table --------------------------------------------------------------------------------
def _mib(m: list[float]) -> str:
    """RSS / PSS in MiB: one decimal below 10, so that small envs do not read 0."""
    return " / ".join(f"{x:.1f}" if abs(x) < 10 else f"{x:.0f}" for x in m)


def table(results: list[dict], levels: list[int]) -> str:
    head = (
        "| env | steps/episode | "
        + " | ".join(f"{n} concurrent (ep/s)" for n in levels)
        + " | success | first instance MiB (RSS / PSS) | each further instance MiB (RSS / PSS) |"
    )
    rows = [head, "|" + "---|" * (len(levels) + 5)]
    for r in results:
        rates = [f"{r['rate'][str(n)]:.1f}" if str(n) in r["rate"] else "not run" for n in levels]
        success = min(r["success"].values())
        further = r["further_mib"]
        rows.append(
            f"| {r['env_id']} | {r['steps_per_episode']:.2f} | {' | '.join(rates)} | "
            f"{success:.0%} | {_mib(r['first_mib'][:2])} | "
            + (f"{_mib(further[:2])} |" if further else "– |")
        )
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--envs", default=",".join(SETUPS), help="comma-separated: " + ", ".join(SETUPS))
    ap.add_argument("--levels", default=",".join(map(str, LEVELS)), help="concurrent episodes")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply the episode counts")
    ap.add_argument(
        "--memory-budget-gib",
        type=float,
        default=12.0,
        help="skip a level whose projected process-tree PSS exceeds this",
    )
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--episodes", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    if args.worker:
        result = worker(args.worker, args.episodes, levels, args.memory_budget_gib * 1024)
        print(json.dumps(result))
        return
    env = {
        **os.environ,
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    results = []
    for name in args.envs.split(","):
        episodes = max(max(levels), round(EPISODES[name] * args.scale / max(levels)) * max(levels))
        start = time.perf_counter()
        proc = subprocess.run(
            [
                sys.executable,
                __file__,
                "--worker",
                name,
                "--episodes",
                str(episodes),
                "--levels",
                args.levels,
                "--memory-budget-gib",
                str(args.memory_budget_gib),
            ],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
            check=True,
        )
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(f"{name}: {time.perf_counter() - start:.0f} s in all", file=sys.stderr)
    print(table(results, levels))
    for r in results:
        extra = {k: r[k] for k in ("episodes", "skipped", "isolation", "tree_mib") if r.get(k)}
        print(f"- {r['env_id']}: {extra}")


if __name__ == "__main__":
    main()
