"""One learner step on SmolLM2-135M, 8 prompts x 4 completions x 64 tokens: rlagent against
TRL's GRPOTrainer, run one after the other on the same machine.

    .venv/bin/pip install trl==1.16.0          # the peer (not a dependency of rlagent)
    .venv/bin/python bench/learner_step.py [--steps 3]

1. ``batch``: the 32 completions are sampled once by vLLM (exactly 64 tokens each) and
   saved with their sampling logprobs.
2. ``ours``: a fresh process builds the rlagent learner (DeepSpeed) and trains on that
   batch ``--steps`` times, with and without gradient checkpointing.
3. ``trl``: a fresh process runs GRPOTrainer on the same 8 prompts (4 completions each,
   forced to 64 tokens, no reference model, its default settings otherwise). TRL generates
   inside its step; the generation time is measured and taken out for the "learner" column.
Each process reports its peak RSS (``ru_maxrss``: the model, optimizer state and
activations; for TRL also its generation). Prints a Markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PROMPTS, GROUP, NEW_TOKENS, THREADS = 8, 4, 64, 2


def prompts() -> list[str]:
    import random

    from rlagent.envs.calculator import generate_task

    rng = random.Random(0)
    return [generate_task(rng, 2)["prompt"] for _ in range(PROMPTS)]


def peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def make_batch(model: str, out: Path) -> None:
    from transformers import AutoTokenizer
    from vllm import LLM, SamplingParams

    tok = AutoTokenizer.from_pretrained(model)
    ids = [
        list(
            tok.apply_chat_template(
                [{"role": "user", "content": p}], add_generation_prompt=True, tokenize=True
            )["input_ids"]
        )
        for p in prompts()
    ]
    llm = LLM(
        model=model,
        dtype="float32",
        seed=0,
        max_model_len=512,
        enforce_eager=True,
        logprobs_mode="processed_logprobs",
    )
    params = SamplingParams(
        n=GROUP, max_tokens=NEW_TOKENS, min_tokens=NEW_TOKENS, temperature=1.0, logprobs=0, ignore_eos=True
    )
    rows = []
    for p, o in zip(ids, llm.generate([{"prompt_token_ids": x} for x in ids], params, use_tqdm=False)):
        for c in o.outputs:
            lps = [float(s[t].logprob) for t, s in zip(c.token_ids, c.logprobs)]
            rows.append({"prompt": p, "completion": list(c.token_ids), "logprobs": lps})
    out.write_text(json.dumps(rows))
    llm.llm_engine.engine_core.shutdown()


def ours(model: str, batch_file: Path, steps: int, checkpointing: bool) -> dict:
    import torch

    from rlagent.config import load_config
    from rlagent.learner.worker import Learner
    from rlagent.records import TrainBatch
    from rlagent.remote import free_port

    torch.set_num_threads(THREADS)
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    rows = json.loads(batch_file.read_text())
    cfg = load_config(
        None,
        [
            f"algo.group_size={GROUP}",
            f"algo.tasks_per_step={PROMPTS}",
            "learner.micro_batch_size=8",
            f"learner.threads={THREADS}",
            f"learner.gradient_checkpointing={str(checkpointing).lower()}",
        ],
    )
    learner = Learner(cfg, model, 0)
    learner.setup("127.0.0.1", free_port())
    width = max(len(r["prompt"]) + len(r["completion"]) for r in rows)
    ids, masks, olds, lengths = [], [], [], []
    for r in rows:
        n_p, n_c = len(r["prompt"]), len(r["completion"])
        pad = width - n_p - n_c
        ids.append(r["prompt"] + r["completion"] + [0] * pad)
        masks.append([0] * n_p + [1] * n_c + [0] * pad)
        olds.append([0.0] * n_p + r["logprobs"] + [0.0] * pad)
        lengths.append(n_p + n_c)
    rewards = [float(i % 3 == 0) for i in range(len(rows))]  # every group has signal
    batch = TrainBatch(
        ids,
        masks,
        olds,
        lengths,
        0,
        rewards=rewards,
        valid=[True] * len(rows),
        groups=[i // GROUP for i in range(len(rows))],
    )
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        learner.train_step(batch)
        times.append(time.perf_counter() - t0)
    return {"step_s": times, "peak_gb": peak_gb(), "tokens": sum(sum(m) for m in masks)}


def trl(model: str, steps: int) -> dict:
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    torch.set_num_threads(THREADS)
    data = Dataset.from_list([{"prompt": [{"role": "user", "content": p}]} for p in prompts()] * steps)

    def reward(completions, **_):
        return [float(i % 3 == 0) for i in range(len(completions))]

    step_times, gen_times, lengths = [], [], []

    class Clock(TrainerCallback):
        def on_step_begin(self, *a, **k):
            self.t0 = time.perf_counter()

        def on_step_end(self, *a, **k):
            step_times.append(time.perf_counter() - self.t0)

    out = tempfile.mkdtemp(prefix="trl-bench-")
    args = GRPOConfig(
        output_dir=out,
        per_device_train_batch_size=PROMPTS * GROUP,
        num_generations=GROUP,
        max_completion_length=NEW_TOKENS,
        generation_kwargs={"min_new_tokens": NEW_TOKENS},
        learning_rate=1e-6,
        beta=0.0,
        max_steps=steps,
        logging_steps=1,
        report_to="none",
        use_cpu=True,
        bf16=False,
        save_strategy="no",
        temperature=1.0,
        seed=0,
    )
    trainer = GRPOTrainer(model=model, reward_funcs=reward, args=args, train_dataset=data)
    generate = trainer._generate_and_score_completions

    def timed(*a, **k):
        t0 = time.perf_counter()
        result = generate(*a, **k)
        gen_times.append(time.perf_counter() - t0)
        lengths.append(float(result["completion_mask"].sum(1).float().mean()))
        return result

    trainer._generate_and_score_completions = timed
    trainer.add_callback(Clock())
    trainer.train()
    return {
        "step_s": step_times,
        "generate_s": gen_times,
        "peak_gb": peak_gb(),
        "completion_len": lengths,
        "gradient_checkpointing": args.gradient_checkpointing,
        "loss_type": args.loss_type,
    }


def run(*argv: str) -> dict:
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(THREADS),
        "TOKENIZERS_PARALLELISM": "false",
        "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "VLLM_CPU_OMP_THREADS_BIND": "0-1",
        "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
    }
    out = subprocess.run([sys.executable, __file__, *argv], env=env, capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"{' '.join(argv)} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("role", nargs="?", default="all", choices=["all", "batch", "ours", "trl"])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--checkpointing", action="store_true")
    ap.add_argument("--batch-file", default="/tmp/rlagent-bench-batch.json")
    a = ap.parse_args()
    from rlagent.model_source import resolve_model

    model = resolve_model("SmolLM2-135M-Instruct")
    batch_file = Path(a.batch_file)
    if a.role == "batch":
        make_batch(model, batch_file)
        print(json.dumps({"ok": True}))
    elif a.role == "ours":
        print(json.dumps(ours(model, batch_file, a.steps, a.checkpointing)))
    elif a.role == "trl":
        print(json.dumps(trl(model, a.steps)))
    else:
        run("batch", "--batch-file", str(batch_file))
        plain = run("ours", "--steps", str(a.steps), "--batch-file", str(batch_file))
        ckpt = run("ours", "--checkpointing", "--steps", str(a.steps), "--batch-file", str(batch_file))
        peer = run("trl", "--steps", str(a.steps))
        # Step 1 warms up (allocator, first backward): the mean is over the later steps.
        later = lambda xs: xs[1:] if len(xs) > 1 else xs
        trl_learn = [s - g for s, g in zip(peer["step_s"], peer["generate_s"])]
        print(json.dumps({"ours": plain, "ours_ckpt": ckpt, "trl": peer}), file=sys.stderr)
        print(
            f"| | learner step (s) | whole step (s) | peak RSS (GB) |\n|---|---|---|---|\n"
            f"| rlagent learner | {mean(later(plain['step_s'])):.1f} | – | {plain['peak_gb']:.2f} |\n"
            f"| rlagent learner, gradient checkpointing | {mean(later(ckpt['step_s'])):.1f} | – "
            f"| {ckpt['peak_gb']:.2f} |\n"
            f"| TRL 1.16 GRPOTrainer (gradient checkpointing on, its default) | "
            f"{mean(later(trl_learn)):.1f} | {mean(later(peer['step_s'])):.1f} | {peer['peak_gb']:.2f} |"
        )
        print(
            f"\npolicy tokens per step: ours {plain['tokens']}, TRL mean completion length "
            f"{mean(peer['completion_len']):.1f} x {PROMPTS * GROUP}"
        )


if __name__ == "__main__":
    main()
