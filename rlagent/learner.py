"""The learner: one DeepSpeed engine per rank, GRPO updates, weights out for the engines.

``Learner`` is a plain class; ``rlagent.actors`` runs one per rank as a Ray actor.
"""
from __future__ import annotations

import math
import os
import resource
import time
from pathlib import Path
from typing import Any

import torch

from rlagent.algos import clipped_policy_loss, kl_k3
from rlagent.config import Config
from rlagent.logprobs import token_logprobs
from rlagent.records import TrainBatch

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def zero_stage(cfg: Config) -> int:
    """ZeRO stage: as configured, or 0 on one rank (partitioning only adds overhead there)."""
    stage = cfg.learner.zero_stage
    return (0 if cfg.learner.num_ranks == 1 else 2) if stage == "auto" else int(stage)


def deepspeed_config(cfg: Config) -> dict[str, Any]:
    """A real DeepSpeed config from the run config.

    Gradient accumulation is ours (``managed_gradient_accumulation: false``): every
    micro-batch calls backward, and one ``step()`` per training step reduces and updates.
    torch's AdamW: DeepSpeed's fused CPU Adam would compile for ~100 s on first use.
    """
    return {
        "train_micro_batch_size_per_gpu": cfg.learner.micro_batch_size,
        "gradient_accumulation_steps": 1,
        "managed_gradient_accumulation": False,
        "gradient_clipping": cfg.learner.grad_clip,
        "optimizer": {"type": "AdamW", "params": {
            "lr": cfg.learner.lr, "weight_decay": cfg.learner.weight_decay,
            "betas": [0.9, 0.999], "eps": 1e-8, "torch_adam": True}},
        "zero_optimization": {"stage": zero_stage(cfg)},
        "bf16": {"enabled": cfg.model.dtype == "bfloat16"},
        "fp16": {"enabled": cfg.model.dtype == "float16"},
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }


def _load_model(path: str, dtype: str) -> torch.nn.Module:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=_DTYPES[dtype])


class Learner:
    """One data-parallel rank: policy (and optional frozen reference), GRPO updates."""

    def __init__(self, cfg: Config, model_path: str, rank: int):
        self.cfg, self.rank, self.model_path = cfg, rank, model_path
        self.world = cfg.learner.num_ranks

    def rendezvous_address(self) -> tuple[str, int]:
        """Rank 0's node address and a free port there: where the ranks meet."""
        import ray

        return ray.util.get_node_ip_address(), _free_port()

    def setup(self, master_addr: str, master_port: int) -> None:
        """Join the process group and build the DeepSpeed engine (all ranks at once)."""
        os.environ.update(RANK=str(self.rank), LOCAL_RANK="0", WORLD_SIZE=str(self.world),
                          MASTER_ADDR=master_addr, MASTER_PORT=str(master_port))
        cfg, model_path = self.cfg, self.model_path
        torch.set_num_threads(cfg.learner.threads)
        torch.manual_seed(cfg.run.seed + self.rank)
        import deepspeed

        on_gpu = torch.cuda.is_available()
        if not on_gpu:
            # The shared-memory collective JIT-compiles for 60-110 s; gloo does the job here.
            deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
        deepspeed.init_distributed(dist_backend="nccl" if on_gpu else "gloo")
        model = _load_model(model_path, cfg.model.dtype)
        self.engine, *_ = deepspeed.initialize(model=model, model_parameters=model.parameters(),
                                               config=deepspeed_config(cfg))
        self.device = self.engine.device
        self.ref = None
        if cfg.algo.kl_coef > 0:
            self.ref = _load_model(model_path, cfg.model.dtype).to(self.device).eval()
            self.ref.requires_grad_(False)

    # ------------------------------------------------------------ training
    def train_step(self, batch: TrainBatch) -> dict[str, float]:
        """One update on this rank's share of the batch (rows rank, rank + world, ...)."""
        t0 = time.perf_counter()
        rows = list(range(self.rank, len(batch), self.world))
        mbs = self.cfg.learner.micro_batch_size
        total_tokens = self._all_sum(torch.tensor([float(sum(sum(batch.loss_mask[r]) for r in rows))]))[0]
        sums = torch.zeros(7, dtype=torch.float64)  # loss, kl, entropy, clipped, gap, approx_kl, tokens
        self.engine.train()
        # Every rank runs the same number of backward passes (ZeRO reduces inside them).
        n_micro = math.ceil(math.ceil(len(batch) / self.world) / mbs)
        for i in range(n_micro):
            sums += self._micro_step(batch, rows[i * mbs:(i + 1) * mbs], max(float(total_tokens), 1.0))
        grad_norm = self._grad_norm() if zero_stage(self.cfg) == 0 else None
        self.engine.step()
        if grad_norm is None:  # ZeRO-1/2/3 compute the global norm inside step()
            grad_norm = float(self.engine.get_global_grad_norm() or 0.0)
        sums = self._all_sum(sums)
        n = max(float(sums[6]), 1.0)
        metrics = {
            "loss/policy": float(sums[0]) / n, "entropy": float(sums[2]) / n,
            "clip_fraction": float(sums[3]) / n, "train/logprob_gap": float(sums[4]) / n,
            "approx_kl": float(sums[5]) / n, "grad_norm": grad_norm,
            "lr": self.engine.get_lr()[0], "train/tokens": float(sums[6]),
            "timing/learner_compute_s": time.perf_counter() - t0,
            "memory/learner_peak_gb": _peak_rss_gb(),
        }
        if self.ref is not None:
            metrics["kl"] = float(sums[1]) / n
        return metrics

    def _micro_step(self, batch: TrainBatch, rows: list[int], total_tokens: float) -> torch.Tensor:
        sums = torch.zeros(7, dtype=torch.float64)
        if not any(sum(batch.loss_mask[r]) for r in rows):
            # Nothing to learn here, but the other ranks run a forward and backward (which
            # are collectives under ZeRO): take part with a one-token row and a zero loss.
            ids = torch.tensor([[batch.pad_id, batch.pad_id]], device=self.device)
            logits = self.engine.module(input_ids=ids).logits
            self.engine.backward(logits.sum() * 0.0, scale_wrt_gas=False)
            return sums
        width = max(batch.lengths[r] for r in rows)
        dev = self.device
        ids = torch.tensor([batch.input_ids[r][:width] for r in rows], device=dev)
        attn = (torch.arange(width)[None, :] < torch.tensor([batch.lengths[r] for r in rows])[:, None]).long().to(dev)
        mask = torch.tensor([batch.loss_mask[r][:width] for r in rows], device=dev)
        sel = mask[:, 1:].bool()
        old = torch.tensor([batch.old_logprobs[r][:width] for r in rows], device=dev)[:, 1:][sel]
        adv = torch.tensor([batch.advantages[r] for r in rows], device=dev)[:, None].expand(-1, width - 1)[sel]
        temp = self.cfg.rollout.temperature
        chunk = self.cfg.learner.logprob_chunk
        logp, entropy = token_logprobs(self.engine.module, ids, attn, mask, chunk, temp)
        tok_loss, clipped = clipped_policy_loss(logp, old, adv, self.cfg.algo.clip_low,
                                                self.cfg.algo.clip_high)
        kl = torch.zeros_like(logp)
        if self.ref is not None:
            with torch.no_grad():
                ref_logp, _ = token_logprobs(self.ref, ids, attn, mask, chunk, temp)
            kl = kl_k3(logp, ref_logp)
            tok_loss = tok_loss + self.cfg.algo.kl_coef * kl
        # Token-mean over the whole step's batch (all ranks): each micro-batch adds its share.
        self.engine.backward(tok_loss.sum() / total_tokens * self.world, scale_wrt_gas=False)
        d = (logp - old).detach()
        sums += torch.tensor([
            float(tok_loss.detach().sum() - self.cfg.algo.kl_coef * kl.detach().sum()),
            float(kl.detach().sum()), float(entropy.sum()), float(clipped.sum()),
            float(d.abs().sum()), float((-d).sum()), float(logp.numel())], dtype=torch.float64)
        return sums

    def _grad_norm(self) -> float:
        """ZeRO-0 gradient norm before clipping, read off the whole gradients (this rank's,
        before the all-reduce, when several ranks run)."""
        norms = [p.grad.detach().float().norm() for p in self.engine.module.parameters()
                 if p.grad is not None]
        return float(torch.stack(norms).norm()) if norms else 0.0

    def _all_sum(self, t: torch.Tensor) -> torch.Tensor:
        if self.world == 1:
            return t
        import torch.distributed as dist

        out = t.to(self.device)
        dist.all_reduce(out)
        return out.cpu()

    # ------------------------------------------------------------ weights out
    def named_weights(self) -> list[tuple[str, torch.Tensor]]:
        """Full weights under Hugging Face names, on CPU, from rank 0 (others return []).

        Called on every rank, so that a stage that partitions parameters can gather them.
        """
        if self.rank != 0:
            return []
        return [(k, v.detach().cpu()) for k, v in self.engine.module.state_dict().items()]

    def score(self, sequences: list[list[int]], start: int) -> list[list[float]]:
        """Logprobs of each sequence's tokens from ``start`` on, under the current weights.

        Every rank must call it (a ZeRO-3 forward gathers parameters from all ranks).
        """
        out = []
        self.engine.eval()
        with torch.no_grad():
            for seq in sequences:
                ids = torch.tensor([seq], device=self.device)
                mask = torch.zeros_like(ids)
                mask[:, start:] = 1
                lp, _ = token_logprobs(self.engine.module, ids, torch.ones_like(ids), mask,
                                       self.cfg.learner.logprob_chunk, 1.0)
                out.append(lp.cpu().tolist())
        return out

    def save(self, path: str) -> str:
        """A Hugging Face model directory that ``model.path`` can start a new run from."""
        from transformers import AutoTokenizer

        weights = dict(self.named_weights())
        if self.rank != 0:
            return path
        tmp = Path(path).with_name(Path(path).name + ".tmp")
        model = self.engine.module
        model.save_pretrained(tmp, state_dict=weights)
        AutoTokenizer.from_pretrained(self.model_path).save_pretrained(tmp)
        if Path(path).exists():
            import shutil

            shutil.rmtree(path)
        tmp.rename(path)  # a crash mid-write never leaves a half checkpoint under the real name
        return path


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20

