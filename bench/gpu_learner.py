"""The rlagent learner on one CUDA GPU: DeepSpeed ZeRO stages 0-2, fp32 and bf16, gradient
checkpointing off and on, on a synthetic GRPO batch of 8 prompts x 4 completions x 64 tokens
(the shape of bench/learner_step.py).

    python bench/gpu_learner.py [--steps 4] [--random-from DIR] [--only NAME ...] [--set KEY=VALUE ...]

``--random-from DIR``: build the model from DIR's config.json with random weights (tokenizer
files copied from DIR), e.g. the directory ``python -m rlagent.model_source`` prints with only its
config and tokenizer files: the same shapes cost the same compute. Without it the real
SmolLM2-135M-Instruct is loaded (``rlagent.model_source.resolve_model``).

The learner is built as in a run (``Learner(cfg, model, 0).setup(...)``, no Ray): it picks
CUDA and NCCL by itself when a GPU is visible. The completions are random tokens; their
"sampling" logprobs are the learner's own under the initial weights (what an engine with the
same weights reports), and every group has reward signal. Each configuration runs in a fresh
process. Per configuration: the step time (mean of the steps after the first), the GPU memory
after set-up and at peak (``torch.cuda.memory_allocated`` / ``max_memory_allocated``, GiB),
whether loss and gradient norm stayed finite, and the share of weight elements (as the
engines would receive them) that changed over the steps. Per dtype, the sender side of the
weight sync that runs without an engine: listing the tensors (``Learner.weight_metas``) and
copying them to host memory (``Learner.named_weights``, what the object-store transport
sends). Prints JSON per configuration, then Markdown tables.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PROMPTS, GROUP, NEW_TOKENS = 8, 4, 64
SHORT = {"bfloat16": "bf16", "float32": "fp32"}

# name -> config overrides; every row trains the same batch with GRPO unless it says otherwise.
ROWS: dict[str, list[str]] = {}
for _dtype in ("bfloat16", "float32"):
    for _ckpt in ("false", "true"):
        for _stage in (0, 1, 2):
            if _dtype == "float32" and _ckpt == "true" and _stage > 0:
                continue
            ROWS[f"zero{_stage}-{_dtype}-ckpt{_ckpt}"] = [
                f"learner.zero_stage={_stage}",
                f"model.dtype={_dtype}",
                f"learner.gradient_checkpointing={_ckpt}",
            ]
_BF16 = ["learner.zero_stage=0", "model.dtype=bfloat16"]
ROWS["zero0-bfloat16-reference"] = [*_BF16, "algo.kl_coef=0.001"]
ROWS["zero0-bfloat16-ppo"] = [*_BF16, "algo.name=ppo"]
ROWS["zero0-bfloat16-lora"] = [*_BF16, "learner.lora_rank=8", "learner.lr=1e-5"]


def random_model(src: Path, dst: Path) -> Path:
    """SmolLM2's architecture from ``src``'s config.json with seeded random weights (fp32)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(src))
    model.save_pretrained(dst)
    for f in src.iterdir():
        if f.is_file() and f.suffix not in (".safetensors", ".bin") and f.name != "config.json":
            shutil.copy(f, dst / f.name)
    return dst


def rows_of(model: str, vocab: int) -> tuple[list[list[int]], list[list[int]]]:
    """8 chat prompts and 4 random 64-token completions for each."""
    import torch
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model)
    rng = random.Random(0)
    texts = [
        f"What is {rng.randint(10, 99)} + {rng.randint(10, 99)} * {rng.randint(2, 9)}? "
        "Think, then put the number in <answer></answer>."
        for _ in range(PROMPTS)
    ]
    prompts = [
        list(
            tok.apply_chat_template(
                [{"role": "user", "content": t}], add_generation_prompt=True, tokenize=True
            )["input_ids"]
        )
        for t in texts
    ]
    gen = torch.Generator().manual_seed(1)
    completions = torch.randint(100, vocab, (PROMPTS * GROUP, NEW_TOKENS), generator=gen).tolist()
    return [prompts[i // GROUP] for i in range(PROMPTS * GROUP)], completions


def one(model: str, name: str, steps: int, extra: list[str] = ()) -> dict:
    """One configuration, in this process (``extra``: more overrides)."""
    import torch

    from rlagent.config import load_config
    from rlagent.learner.worker import Learner
    from rlagent.records import TrainBatch
    from rlagent.remote import free_port

    assert torch.cuda.is_available(), "this bench needs a CUDA GPU"
    cfg = load_config(
        None,
        [
            f"algo.group_size={GROUP}",
            f"algo.tasks_per_step={PROMPTS}",
            "learner.micro_batch_size=8",
            "learner.num_gpus=1",
            *ROWS[name],
            *extra,
        ],
    )
    t0 = time.perf_counter()
    learner = Learner(cfg, model, 0)
    learner.setup("127.0.0.1", free_port())
    setup_s = time.perf_counter() - t0
    static_gb = torch.cuda.memory_allocated() / 2**30

    prompts, completions = rows_of(model, learner.engine.module.config.vocab_size)
    seqs = [p + c for p, c in zip(prompts, completions)]
    sampling = [learner.score([s], len(p))[0] for s, p in zip(seqs, prompts)]
    width = max(len(s) for s in seqs)
    ids, masks, olds = [], [], []
    for s, p, lp in zip(seqs, prompts, sampling):
        pad = width - len(s)
        ids.append(s + [0] * pad)
        masks.append([0] * len(p) + [1] * NEW_TOKENS + [0] * pad)
        olds.append([0.0] * len(p) + lp + [0.0] * pad)
    rewards = [float(i % 3 == 0) for i in range(len(seqs))]  # every group has signal
    batch = TrainBatch(
        ids,
        masks,
        olds,
        [len(s) for s in seqs],
        0,
        rewards=rewards,
        valid=[True] * len(seqs),
        groups=[i // GROUP for i in range(len(seqs))],
    )

    before = {k: v.clone() for k, v in learner.named_weights()}
    torch.cuda.reset_peak_memory_stats()
    times, metrics = [], []
    for _ in range(steps):
        torch.cuda.synchronize()
        t = time.perf_counter()
        metrics.append(learner.train_step(batch))
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    peak_gb = torch.cuda.max_memory_allocated() / 2**30

    after = dict(learner.named_weights())
    changed = sum(int((after[k] != v).sum()) for k, v in before.items())
    total = sum(v.numel() for v in before.values())
    max_diff = max(float((after[k].float() - v.float()).abs().max()) for k, v in before.items())

    # The sender side of a weight sync, without an engine to receive.
    metas_s, host_s = [], []
    for _ in range(3):
        torch.cuda.synchronize()
        t = time.perf_counter()
        metas = learner.weight_metas()
        metas_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        named = learner.named_weights()
        host_s.append(time.perf_counter() - t)
    sent = [m for m in metas if m[3] is None]  # a tied LM head is sent once
    nbytes = sum(math.prod(m[1]) * getattr(torch, m[2]).itemsize for m in sent)

    import deepspeed

    later = times[1:] if len(times) > 1 else times
    return {
        "name": name,
        "overrides": [*ROWS[name], *extra],
        "device": str(learner.device),
        "prompt_once": getattr(cfg.learner, "share_prompt", False) and not cfg.learner.gradient_checkpointing,
        "gpu": torch.cuda.get_device_name(),
        "accelerator": deepspeed.get_accelerator()._name,
        "DS_ACCELERATOR": os.environ.get("DS_ACCELERATOR"),
        "backend": torch.distributed.get_backend(),
        "optimizer": type(learner.engine.optimizer).__name__,
        "param_dtype": str(next(learner.engine.module.parameters()).dtype),
        "setup_s": setup_s,
        "step_s": times,
        "step_mean_s": statistics.mean(later),
        "static_gb": static_gb,
        "peak_gb": peak_gb,
        "loss": [m["loss/policy"] for m in metrics],
        "grad_norm": [m["grad_norm"] for m in metrics],
        "loss_value": [m.get("loss/value") for m in metrics],
        "finite": all(math.isfinite(m["loss/policy"]) and math.isfinite(m["grad_norm"]) for m in metrics),
        "changed_share": changed / total,
        "max_abs_change": max_diff,
        "tensors_sent": len(sent),
        "bytes_sent": nbytes,
        "host_tensors": len(named),
        "weight_metas_s": statistics.median(metas_s),
        "named_weights_s": statistics.median(host_s),
    }


def table(results: list[dict]) -> str:
    lines = [
        "| ZeRO | dtype | grad ckpt | prompt once | variant | step s | GPU GiB after set-up "
        "| peak GPU GiB | loss, grad norm finite | grad norm (step 1) | weights changed |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['name']} | failed: {r['error']} ||||||||||")
            continue
        o = dict(x.split("=", 1) for x in r["overrides"])
        variant = (
            "reference (kl 0.001)"
            if "algo.kl_coef" in o
            else "ppo (critic)"
            if "algo.name" in o
            else "LoRA r=8, lr 1e-5"
            if "learner.lora_rank" in o
            else "grpo"
        )
        lines.append(
            f"| {o['learner.zero_stage']} | {SHORT[o['model.dtype']]} "
            f"| {'on' if o.get('learner.gradient_checkpointing') == 'true' else 'off'} "
            f"| {'yes' if r.get('prompt_once') else 'no'} | {variant} "
            f"| {r['step_mean_s']:.3f} | {r['static_gb']:.2f} | {r['peak_gb']:.2f} "
            f"| {'yes' if r['finite'] else 'NO'} | {r['grad_norm'][0]:.3g} "
            f"| {100 * r['changed_share']:.1f}% (max {r['max_abs_change']:.1e}) |"
        )
    lines += [
        "",
        "| dtype | tensors sent | MB | weight_metas s | named_weights (GPU -> host) s |",
        "|---|---|---|---|---|",
    ]
    seen = set()
    for r in results:
        if "error" in r or r["param_dtype"] in seen or "learner.lora_rank=8" in r["overrides"]:
            continue
        seen.add(r["param_dtype"])
        lines.append(
            f"| {SHORT[r['param_dtype'].removeprefix('torch.')]} | {r['tensors_sent']} "
            f"| {r['bytes_sent'] / 1e6:.0f} | {r['weight_metas_s']:.4f} "
            f"| {r['named_weights_s']:.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--random-from", type=Path, help="config + tokenizer directory: random weights")
    ap.add_argument("--only", nargs="*", default=list(ROWS), choices=list(ROWS))
    ap.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="more config overrides for every configuration",
    )
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--timeout-s", type=float, default=180.0, help="per configuration")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # child: run one configuration
    ap.add_argument("--model", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(one(a.model, a.one, a.steps, a.set)))
        return
    tmp = Path(tempfile.mkdtemp(prefix="rlagent-gpu-bench-"))
    if a.random_from:
        model = str(random_model(a.random_from, tmp / "model"))
    else:
        from rlagent.model_source import resolve_model

        model = resolve_model("SmolLM2-135M-Instruct")
    env = {
        **os.environ,
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    results = []
    for name in a.only:
        cmd = [
            sys.executable,
            __file__,
            "--one",
            name,
            "--model",
            model,
            "--steps",
            str(a.steps),
            "--set",
            *a.set,
        ]
        try:
            out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=a.timeout_s)
            if out.returncode:
                err = out.stderr.strip().splitlines()
                print(out.stderr[-4000:], file=sys.stderr)
                results.append({"name": name, "error": err[-1] if err else f"exit {out.returncode}"})
            else:
                results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        except subprocess.TimeoutExpired:
            results.append({"name": name, "error": f"timed out after {a.timeout_s:.0f} s"})
        print(json.dumps(results[-1]), flush=True)
        if a.json:
            a.json.write_text(json.dumps(results, indent=1))
    shutil.rmtree(tmp, ignore_errors=True)
    print(table(results))


if __name__ == "__main__":
    main()
