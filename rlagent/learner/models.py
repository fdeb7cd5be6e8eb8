"""The learner's models and their DeepSpeed setup: policy (optionally LoRA), critic, schedule."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import Any

import torch

from rlagent.config import Config

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def zero_stage(cfg: Config) -> int:
    """ZeRO stage: as configured, or 0 on one rank (partitioning only adds overhead there)."""
    stage = cfg.learner.zero_stage
    return (0 if cfg.learner.num_ranks == 1 else 2) if stage == "auto" else int(stage)


def optimizer_steps(cfg: Config) -> int:
    """Optimizer steps in the whole run: steps x epochs x mini-batches."""
    return cfg.run.steps * cfg.algo.epochs * cfg.algo.mini_batches


def lr_factor(step: int, total: int, warmup: int, schedule: str, min_ratio: float) -> float:
    """Multiplier of the base learning rate at optimizer step ``step`` (0-based).

    Warmup rises linearly, (step + 1) / warmup, so the first step already learns; then
    ``constant`` stays at 1, ``linear`` falls to ``min_ratio`` at ``total``, ``cosine``
    follows half a cosine down to ``min_ratio``.
    """
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(max((step - warmup) / max(total - warmup, 1), 0.0), 1.0)
    if schedule == "linear":
        return 1.0 - (1.0 - min_ratio) * progress
    if schedule == "cosine":
        return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"unknown lr schedule {schedule!r}")


def scheduler(cfg: Config) -> Callable[[torch.optim.Optimizer], Any]:
    """A callable DeepSpeed applies to its optimizer; stepped once per optimizer step."""
    c, total = cfg.learner, optimizer_steps(cfg)
    return lambda opt: torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, total, c.warmup_steps, c.lr_schedule, c.min_lr_ratio)
    )


def deepspeed_config(cfg: Config, lr: float) -> dict[str, Any]:
    """A real DeepSpeed config from the run config.

    Gradient accumulation is ours (``managed_gradient_accumulation: false``): every
    micro-batch calls backward, and one ``step()`` per mini-batch reduces and updates.
    torch's AdamW: DeepSpeed's fused CPU Adam would compile for ~100 s on first use.
    """
    zero: dict[str, Any] = {"stage": zero_stage(cfg)}
    if cfg.learner.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
    return {
        "train_micro_batch_size_per_gpu": cfg.learner.micro_batch_size,
        "gradient_accumulation_steps": 1,
        "managed_gradient_accumulation": False,
        "gradient_clipping": cfg.learner.grad_clip,
        "optimizer": {
            "type": "AdamW",
            "params": {
                "lr": lr,
                "weight_decay": cfg.learner.weight_decay,
                "betas": [0.9, 0.999],
                "eps": 1e-8,
                "torch_adam": not cfg.learner.offload_optimizer,
            },
        },
        "zero_optimization": zero,
        "bf16": {"enabled": cfg.model.dtype == "bfloat16"},
        "fp16": {"enabled": cfg.model.dtype == "float16"},
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }


def load_policy(cfg: Config, path: str) -> torch.nn.Module:
    """The causal LM to train; with ``learner.lora_rank`` > 0, wrapped in PEFT LoRA adapters."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, dtype=DTYPES[cfg.model.dtype])
    if cfg.learner.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    if cfg.learner.lora_rank > 0:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(
            model,
            LoraConfig(
                r=cfg.learner.lora_rank,
                lora_alpha=cfg.learner.lora_alpha,
                lora_dropout=cfg.learner.lora_dropout,
                target_modules=list(cfg.learner.lora_targets),
                task_type="CAUSAL_LM",
            ),
        )
        if cfg.learner.gradient_checkpointing:
            model.enable_input_require_grads()  # checkpointed blocks need a grad-requiring input
    return model


def load_reference(cfg: Config, path: str) -> torch.nn.Module:
    from transformers import AutoModelForCausalLM

    ref = AutoModelForCausalLM.from_pretrained(path, dtype=DTYPES[cfg.model.dtype]).eval()
    return ref.requires_grad_(False)


@contextlib.contextmanager
def hf_weights(model: torch.nn.Module) -> Iterator[dict[str, torch.Tensor]]:
    """The weights under Hugging Face names, on the model's device, LoRA adapters merged into
    their base weights while the block runs (the tensors are the live ones: copy to keep)."""
    if not hasattr(model, "merge_adapter"):
        yield {k: v.detach() for k, v in model.state_dict().items()}
        return
    model.merge_adapter()
    try:
        yield {
            k.removeprefix("base_model.model.").replace(".base_layer.", "."): v.detach()
            for k, v in model.state_dict().items()
            if "lora_" not in k
        }
    finally:
        model.unmerge_adapter()


def merged_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Weights under Hugging Face names, on CPU; LoRA adapters merged into their base weights."""
    lora = hasattr(model, "merge_adapter")
    with hf_weights(model) as weights:
        return {k: v.cpu().clone() if lora else v.cpu() for k, v in weights.items()}


class ValueModel(torch.nn.Module):
    """The critic: the policy's transformer body with a scalar head, one value per position.

    The head starts at zero, so the first values are 0 and the first value targets are the
    plain returns.
    """

    def __init__(self, cfg: Config, path: str):
        super().__init__()
        from transformers import AutoModel

        self.body = AutoModel.from_pretrained(path, dtype=DTYPES[cfg.model.dtype])
        if cfg.learner.gradient_checkpointing:
            self.body.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.head = torch.nn.Linear(self.body.config.hidden_size, 1, dtype=DTYPES[cfg.model.dtype])
        torch.nn.init.zeros_(self.head.weight)
        torch.nn.init.zeros_(self.head.bias)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.body(
            input_ids=input_ids, attention_mask=attention_mask, use_cache=False
        ).last_hidden_state
        return self.head(hidden).squeeze(-1).float()  # [B, T]


def undo_state_warmup(engine: Any) -> None:
    """DeepSpeed's ``FP16_UnfusedOptimizer`` (bf16/fp16 without ZeRO) creates the optimizer
    state with one step on zero gradients. AdamW's step count then starts at 1, so the first
    real update is 0.74x the learning rate, and weight decay shrinks the weights once. Undo
    both: drop that state (AdamW makes it afresh at the first real step) and copy the
    untouched half-precision weights back into the fp32 master copies."""
    from deepspeed.runtime.fp16.unfused_optimizer import FP16_UnfusedOptimizer

    opt = engine.optimizer
    if not isinstance(opt, FP16_UnfusedOptimizer):
        return
    opt.optimizer.state.clear()
    with torch.no_grad():
        for half, full in zip(opt.fp16_groups, opt.fp32_groups):
            for h, f in zip(half, full):
                f.copy_(h.float())
