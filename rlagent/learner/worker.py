"""The learner: one DeepSpeed engine per rank (policy, optional critic and reference), updated
by the configured estimator and policy loss (``rlagent.algos``).

``Learner`` is a plain class; ``rlagent.learner.group`` runs one per rank as a Ray actor.
Token tensors are aligned to targets (``rlagent.learner.tensors``).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator

import torch

from rlagent import algos, shaping
from rlagent.config import Config
from rlagent.learner.logprobs import shared_token_logprobs, token_logprobs
from rlagent.learner.models import (
    ValueModel,
    deepspeed_config,
    load_policy,
    load_reference,
    scheduler,
    undo_state_warmup,
    zero_stage,
)
from rlagent.learner.state import LearnerState
from rlagent.learner.tensors import Precomputed, TargetTensors, batch_advantages, rank_shares, target_tensors
from rlagent.records import TrainBatch
from rlagent.remote import free_port, node_address, peak_rss_gb

# Metric sums per mini-batch pass: summed over micro-batches and ranks, then normalised.
_SUMS = (
    "loss/policy",
    "kl",
    "entropy",
    "clip_fraction",
    "tokens",
    "gap",
    "gap_tokens",
    "approx_kl",
    "loss/value",
    "value/clip_fraction",
    "tis_capped",
)


class Learner(LearnerState):
    """One data-parallel rank."""

    def __init__(self, cfg: Config, model_path: str, rank: int):
        self.cfg, self.rank, self.model_path = cfg, rank, model_path
        self.world = cfg.learner.num_ranks
        self.updates = 0  # train_step calls so far: seeds the mini-batch shuffle
        self._weight_group = None  # rank 0, collective weight transport: the group to the engines
        self._groups: list[int] = []  # the current batch's group ids (ranks keep groups whole)
        share = cfg.learner.share_prompt
        if share == "auto":
            share = not torch.cuda.is_available()
        share = share and not cfg.learner.gradient_checkpointing
        self._logprobs = shared_token_logprobs if share else token_logprobs

    def rendezvous_address(self) -> tuple[str, int]:
        """Rank 0's node address and a free port there: where the ranks meet."""
        return node_address(), free_port()

    def setup(self, master_addr: str, master_port: int) -> None:
        """Join the process group and build the DeepSpeed engines (all ranks at once)."""
        os.environ.update(
            RANK=str(self.rank),
            LOCAL_RANK="0",
            WORLD_SIZE=str(self.world),
            MASTER_ADDR=master_addr,
            MASTER_PORT=str(master_port),
        )
        cfg = self.cfg
        torch.set_num_threads(cfg.learner.threads)
        torch.manual_seed(cfg.run.seed + self.rank)
        import deepspeed

        on_gpu = torch.cuda.is_available()
        if not on_gpu:
            # The shared-memory collective JIT-compiles for 60-110 s; gloo does the job here.
            deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
        deepspeed.init_distributed(dist_backend="nccl" if on_gpu else "gloo")
        model = load_policy(cfg, self.model_path)
        params = [p for p in model.parameters() if p.requires_grad]
        self.engine, *_ = deepspeed.initialize(
            model=model,
            model_parameters=params,
            config=deepspeed_config(cfg, cfg.learner.lr),
            lr_scheduler=scheduler(cfg),
        )
        undo_state_warmup(self.engine)
        if zero_stage(cfg) == 0 and self.world > 1:
            # ZeRO-0 reduces the gradients inside step(), after the point where the norm can
            # be read: the learner reduces them itself (once), then step() must not again.
            self.engine.enable_backward_allreduce = False
        self.device = self.engine.device
        self.lora = cfg.learner.lora_rank > 0
        self.ref = None  # with LoRA the reference is the base model: adapters switched off
        if cfg.algo.kl_coef > 0 and not self.lora:
            self.ref = load_reference(cfg, self.model_path).to(self.device)
        self.critic = None
        if cfg.algo.name == "ppo":
            critic = ValueModel(cfg, self.model_path)
            self.critic, *_ = deepspeed.initialize(
                model=critic,
                model_parameters=critic.parameters(),
                config=deepspeed_config(cfg, cfg.learner.critic_lr),
                lr_scheduler=scheduler(cfg),
            )
            undo_state_warmup(self.critic)

    # ------------------------------------------------------------ one training step
    def train_step(self, batch: TrainBatch) -> dict[str, float]:
        """Advantages for the whole batch, then epochs x mini-batches of updates on this
        rank's share of each mini-batch (``rank_shares``: whole groups per rank)."""
        t0 = time.perf_counter()
        algo = self.cfg.algo
        t = target_tensors(batch)
        self._groups = batch.groups
        pre = self._precompute(t, self._grouped(list(range(len(batch)))))
        adv, returns = batch_advantages(batch, algo, t.mask, pre.behaviour(t), pre.ref, pre.values)
        gen = torch.Generator().manual_seed(self.cfg.run.seed * 1_000_003 + self.updates)
        self.updates += 1
        sums = dict.fromkeys(_SUMS, 0.0)
        grad_norms: list[float] = []
        for epoch in range(algo.epochs):
            order = torch.randperm(len(batch), generator=gen).tolist()
            size = math.ceil(len(batch) / algo.mini_batches)
            for m in range(algo.mini_batches):
                rows = self._grouped(order[m * size : (m + 1) * size])
                part = self._update(rows, t, pre, adv, returns, measure_gap=epoch == 0 and m == 0)
                grad_norms.append(part.pop("grad_norm"))
                for k, v in part.items():
                    sums[k] += v
        return self._metrics(sums, grad_norms, adv, t, pre, t0)

    def _grouped(self, rows: list[int]) -> list[int]:
        """``rows`` with each group's episodes next to each other (stable), so that a
        micro-batch holds whole groups and their shared prompt runs once. The gradient is
        summed over the mini-batch, so the order within it does not change the update."""
        if self._logprobs is token_logprobs or not self._groups:
            return rows
        return sorted(rows, key=lambda r: self._groups[r])

    def _micro(self, rows: list[int]) -> Iterator[list[int]]:
        """This rank's share of ``rows`` in micro-batches; every rank yields the same count
        (collectives under ZeRO need every rank in every forward/backward)."""
        shares = rank_shares(rows, self._groups, self.world)
        mine, mbs = shares[self.rank], self.cfg.learner.micro_batch_size
        for i in range(math.ceil(max(len(s) for s in shares) / mbs)):
            yield mine[i * mbs : (i + 1) * mbs]

    def _inputs(self, t: TargetTensors, rows: list[int]):
        """ids and attention [n, W] on the device, the target mask [n, W-1] and its
        left-padded twin in ``token_logprobs``' layout, and W (the rows' longest)."""
        width = int(t.attn[rows].sum(1).max())
        ids = t.ids[rows, :width].to(self.device)
        attn = t.attn[rows, :width].to(self.device)
        mask = t.mask[rows, : width - 1]
        return ids, attn, mask, torch.nn.functional.pad(mask, (1, 0)).to(self.device), width

    def _token_logprobs(self, model, ids, attn, full, entropy_grad: bool = False):
        r = self.cfg.rollout  # the distribution the engine sampled from
        return self._logprobs(
            model,
            ids,
            attn,
            full,
            self.cfg.learner.logprob_chunk,
            r.temperature,
            entropy_grad=entropy_grad,
            top_p=r.top_p,
        )

    @torch.no_grad()
    def _precompute(self, t: TargetTensors, order: list[int]) -> Precomputed:
        """Before any update: the learner's own logprobs (old_logprobs: recompute), the
        reference's (KL on) and the critic's values (ppo), for the whole batch."""
        algo = self.cfg.algo
        out = Precomputed(
            *(
                torch.zeros_like(t.mask) if on else None
                for on in (algo.old_logprobs == "recompute", algo.kl_coef > 0, self.critic is not None)
            )
        )
        if out.old is None and out.ref is None and out.values is None:
            return out
        self.engine.eval()
        for rows in self._micro(order):
            if not rows:
                continue
            ids, attn, m, full, w = self._inputs(t, rows)
            sel = m.bool()
            idx = torch.tensor(rows)[:, None].expand(-1, w - 1)[sel], sel.nonzero()[:, 1]
            if out.old is not None:
                out.old[idx] = self._token_logprobs(self.engine.module, ids, attn, full)[0].cpu()
            if out.ref is not None:
                out.ref[idx] = self._ref_logprobs(ids, attn, full).cpu()
            if out.values is not None:
                out.values[idx] = self.critic.module(ids, attn)[:, :-1][sel.to(self.device)].cpu()
        return Precomputed(*(None if x is None else self._all_sum(x) for x in (out.old, out.ref, out.values)))

    def _ref_logprobs(self, ids, attn, full) -> torch.Tensor:
        if self.lora:
            with self.engine.module.disable_adapter():
                return self._token_logprobs(self.engine.module, ids, attn, full)[0]
        return self._token_logprobs(self.ref, ids, attn, full)[0]

    def _update(
        self, rows, t: TargetTensors, pre: Precomputed, adv, returns, measure_gap: bool
    ) -> dict[str, float]:
        """One optimizer step (policy, and critic for ppo) on the mini-batch ``rows``."""
        mask = t.mask[rows]
        totals = float(mask.sum()), float((mask.sum(1) > 0).sum())
        sums = dict.fromkeys(_SUMS, 0.0)
        self.engine.train()
        for micro in self._micro(rows):
            for k, v in self._policy_micro(micro, t, pre, adv, totals, measure_gap).items():
                sums[k] += v
        grad_norm = None
        if zero_stage(self.cfg) == 0:  # the norm of the reduced gradient, before clipping
            if self.world > 1:  # averaged over the ranks, as step() would (it no longer does)
                self.engine.buffered_allreduce_fallback()
            grad_norm = self._grad_norm(self.engine)
        self.engine.step()
        if grad_norm is None:  # ZeRO-1/2 compute the global norm inside step()
            grad_norm = float(self.engine.get_global_grad_norm() or 0.0)
        if self.critic is not None:
            self.critic.train()
            for micro in self._micro(rows):
                for k, v in self._critic_micro(micro, t, pre, returns, totals[0]).items():
                    sums[k] += v
            self.critic.step()
        return {**sums, "grad_norm": grad_norm}

    def _policy_micro(
        self, rows, t: TargetTensors, pre: Precomputed, adv, totals, measure_gap
    ) -> dict[str, float]:
        algo = self.cfg.algo
        if not rows or not t.mask[rows].any():
            return self._idle_backward(self.engine)
        ids, attn, m, full, w = self._inputs(t, rows)
        sel = m.bool()

        def pick(x: torch.Tensor) -> torch.Tensor:  # the micro-batch's trained tokens, flat
            return x[rows, : w - 1][sel].to(self.device)

        sampling = pick(t.sampling)
        logp, entropy = self._token_logprobs(
            self.engine.module, ids, attn, full, entropy_grad=algo.entropy_coef > 0
        )
        inputs = algos.PolicyInputs(
            logp=logp,
            old=pick(pre.behaviour(t)),
            sampling=sampling,
            advantages=pick(adv),
            weights=shaping.loss_weights(m, algo.loss_agg, *totals)[sel].to(self.device),
            entropy=entropy,
            ref=pick(pre.ref) if pre.ref is not None and algo.kl_mode == "loss" else None,
        )
        terms = algos.POLICY_LOSSES[algo.policy_loss](
            inputs,
            algo.clip_low,
            algo.clip_high,
            algo.dual_clip,
            algo.tis_cap,
            algo.kl_coef,
            algo.kl_estimator_used,
            algo.entropy_coef,
        )
        # DeepSpeed averages gradients over ranks; the weights already divide by the whole
        # mini-batch, so each rank's share is scaled back up by the world size.
        self.engine.backward(terms.loss * self.world, scale_wrt_gas=False)
        gap = (logp.detach() - sampling).abs()
        return {
            "loss/policy": terms.policy,
            "kl": terms.kl,
            "entropy": terms.entropy,
            "clip_fraction": terms.clipped,
            "tokens": float(logp.numel()),
            "approx_kl": float((inputs.old - logp.detach()).sum()),
            "tis_capped": terms.capped,
            "gap": float(gap.sum()) if measure_gap else 0.0,
            "gap_tokens": float(logp.numel()) if measure_gap else 0.0,
        }

    def _critic_micro(
        self, rows, t: TargetTensors, pre: Precomputed, returns, total_tokens
    ) -> dict[str, float]:
        if not rows or not t.mask[rows].any():
            return self._idle_backward(self.critic, critic=True)
        ids, attn, m, _, w = self._inputs(t, rows)
        sel = m.bool()
        values = self.critic.module(ids, attn)[:, :-1][sel.to(self.device)]
        old = pre.values[rows, : w - 1][sel].to(self.device)
        ret = returns[rows, : w - 1][sel].to(self.device)
        loss, clipped = algos.value_loss(values, old, ret, self.cfg.algo.value_clip)
        self.critic.backward(loss.sum() / max(total_tokens, 1.0) * self.world, scale_wrt_gas=False)
        return {
            "loss/value": float(loss.detach().sum()) / max(total_tokens, 1.0),
            "value/clip_fraction": float(clipped.sum()),
        }

    def _idle_backward(self, engine, critic: bool = False) -> dict[str, float]:
        """Nothing to learn in this micro-batch, but the other ranks run a forward and
        backward (collectives under ZeRO): take part with a two-token row and a zero loss."""
        ids = torch.full((1, 2), 0, device=self.device)
        out = engine.module(ids, torch.ones_like(ids)) if critic else engine.module(input_ids=ids).logits
        engine.backward(out.sum() * 0.0, scale_wrt_gas=False)
        return {}

    def _metrics(self, sums, grad_norms, adv, t: TargetTensors, pre: Precomputed, t0) -> dict[str, float]:
        algo = self.cfg.algo
        s = dict(
            zip(_SUMS, self._all_sum(torch.tensor([sums[k] for k in _SUMS], dtype=torch.float64)).tolist())
        )
        n, steps, m = max(s["tokens"], 1.0), algo.epochs * algo.mini_batches, t.mask.bool()
        used = adv[m]
        out = {
            "loss/policy": s["loss/policy"] / steps,
            "entropy": s["entropy"] / n,
            "clip_fraction": s["clip_fraction"] / n,
            "approx_kl": s["approx_kl"] / n,
            "train/logprob_gap": s["gap"] / max(s["gap_tokens"], 1.0),
            "grad_norm": sum(grad_norms) / len(grad_norms),
            "lr": self.engine.get_lr()[0],
            "advantage/mean": float(used.mean()) if used.numel() else 0.0,
            "advantage/std": float(used.std()) if used.numel() > 1 else 0.0,
            "train/tokens": s["tokens"] / algo.epochs,
            "timing/learner_compute_s": time.perf_counter() - t0,
            "memory/learner_peak_gb": peak_rss_gb(),
        }
        if algo.kl_coef > 0 and algo.kl_mode == "loss":
            out["kl"] = s["kl"] / n
        elif algo.kl_coef > 0:  # reward mode: the KL the penalty subtracted, at pi_old
            kl = algos.kl_penalty(pre.behaviour(t), pre.ref, algo.kl_estimator_used)
            out["kl"] = float(kl[m].mean()) if m.any() else 0.0
        if pre.old is not None:  # learner vs engine on the same tokens, before any update
            out["train/logprob_gap"] = float((pre.old - t.sampling)[m].abs().mean()) if m.any() else 0.0
        if algo.tis_cap is not None:
            out["tis/capped_fraction"] = s["tis_capped"] / n
        if self.critic is not None:
            out["loss/value"] = s["loss/value"] / steps
            out["value/clip_fraction"] = s["value/clip_fraction"] / n
            out["value/mean"] = float(pre.values[m].mean()) if m.any() else 0.0
        return out

    def _grad_norm(self, engine) -> float:
        """ZeRO-0 gradient norm before clipping (of the reduced gradient: the same on every rank)."""
        norms = [p.grad.detach().float().norm() for p in engine.module.parameters() if p.grad is not None]
        return float(torch.stack(norms).norm()) if norms else 0.0

    def _all_sum(self, t: torch.Tensor) -> torch.Tensor:
        if self.world == 1:
            return t
        import torch.distributed as dist

        out = t.to(self.device)
        dist.all_reduce(out)
        return out.cpu()
