"""The learner: one DeepSpeed engine per rank (policy, optional critic and reference), updates
by the configured algorithm, weights out for the engines.

``Learner`` is a plain class; ``rlagent.actors`` runs one per rank as a Ray actor. Token
tensors here are aligned to targets: column t of a ``[B, T-1]`` tensor is about token t+1,
predicted from the prefix up to t.
"""
from __future__ import annotations

import math
import os
import resource
import time
from pathlib import Path

import torch

from rlagent import algos
from rlagent.batch import batch_advantages, target_tensors
from rlagent.config import Config
from rlagent.logprobs import shared_token_logprobs, token_logprobs
from rlagent.models import (
    ValueModel,
    deepspeed_config,
    hf_weights,
    load_policy,
    load_reference,
    merged_state_dict,
    scheduler,
    zero_stage,
)
from rlagent.records import TrainBatch

# Metric sums per mini-batch pass: summed over micro-batches and ranks, then normalised.
_SUMS = ("loss/policy", "kl", "entropy", "clip_fraction", "tokens", "gap", "gap_tokens",
         "approx_kl", "loss/value", "value/clip_fraction", "tis_capped")


class Learner:
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
        import ray

        return ray.util.get_node_ip_address(), _free_port()

    def setup(self, master_addr: str, master_port: int) -> None:
        """Join the process group and build the DeepSpeed engines (all ranks at once)."""
        os.environ.update(RANK=str(self.rank), LOCAL_RANK="0", WORLD_SIZE=str(self.world),
                          MASTER_ADDR=master_addr, MASTER_PORT=str(master_port))
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
            model=model, model_parameters=params, config=deepspeed_config(cfg, cfg.learner.lr),
            lr_scheduler=scheduler(cfg))
        _undo_state_warmup(self.engine)
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
                model=critic, model_parameters=critic.parameters(),
                config=deepspeed_config(cfg, cfg.learner.critic_lr), lr_scheduler=scheduler(cfg))
            _undo_state_warmup(self.critic)

    # ------------------------------------------------------------ one training step
    def train_step(self, batch: TrainBatch) -> dict[str, float]:
        """Advantages for the whole batch, then epochs x mini-batches of updates on this
        rank's share of each mini-batch (rows i, i + world, ...)."""
        t0 = time.perf_counter()
        cfg, algo = self.cfg, self.cfg.algo
        t = target_tensors(batch)
        self._groups = batch.groups
        pre = self._precompute(t, self._grouped(list(range(len(batch))), batch.groups))
        adv, returns = self._advantages(batch, t, pre)
        gen = torch.Generator().manual_seed(cfg.run.seed * 1_000_003 + self.updates)
        self.updates += 1
        sums = dict.fromkeys(_SUMS, 0.0)
        grad_norms: list[float] = []
        for epoch in range(algo.epochs):
            order = torch.randperm(len(batch), generator=gen).tolist()
            size = math.ceil(len(batch) / algo.mini_batches)
            for m in range(algo.mini_batches):
                rows = self._grouped(order[m * size:(m + 1) * size], batch.groups)
                first = epoch == 0 and m == 0
                part = self._update(rows, t, pre, adv, returns, measure_gap=first)
                grad_norms.append(part.pop("grad_norm"))
                for k, v in part.items():
                    sums[k] += v
        return self._metrics(sums, grad_norms, adv, t, pre, t0)

    def _grouped(self, rows: list[int], groups: list[int]) -> list[int]:
        """``rows`` with each group's episodes next to each other (stable), so that a
        micro-batch holds whole groups and their shared prompt runs once. The gradient is
        summed over the mini-batch, so the order within it does not change the update."""
        if self._logprobs is token_logprobs or not groups:
            return rows
        return sorted(rows, key=lambda r: groups[r])

    def _micro(self, rows: list[int]):
        """This rank's share of ``rows`` (``rank_shares``) in micro-batches; every rank
        yields the same count (collectives under ZeRO need every rank in every
        forward/backward)."""
        shares = rank_shares(rows, self._groups, self.world)
        mine, mbs = shares[self.rank], self.cfg.learner.micro_batch_size
        for i in range(math.ceil(max(len(s) for s in shares) / mbs)):
            yield mine[i * mbs:(i + 1) * mbs]

    def _inputs(self, t: dict[str, torch.Tensor], rows: list[int]):
        width = int(t["attn"][rows].sum(1).max())
        dev = self.device
        ids = t["ids"][rows, :width].to(dev)
        attn = t["attn"][rows, :width].to(dev)
        mask = t["mask"][rows, :width - 1]
        full_mask = torch.nn.functional.pad(mask, (1, 0)).to(dev)  # token_logprobs' layout
        return ids, attn, mask, full_mask, width

    @torch.no_grad()
    def _precompute(self, t: dict[str, torch.Tensor], order: list[int]) -> dict[str, torch.Tensor]:
        """Before any update: the learner's own logprobs (old_logprobs: recompute), the
        reference's (KL on) and the critic's values (ppo), for the whole batch."""
        cfg = self.cfg
        want_old = cfg.algo.old_logprobs == "recompute"
        want_ref = cfg.algo.kl_coef > 0
        want_val = self.critic is not None
        out = {k: torch.zeros_like(t["mask"]) for k, on in
               (("old", want_old), ("ref", want_ref), ("values", want_val)) if on}
        if not out:
            return out
        temp, chunk, top_p = cfg.rollout.temperature, cfg.learner.logprob_chunk, cfg.rollout.top_p
        self.engine.eval()
        for rows in self._micro(order):
            if not rows:
                continue
            ids, attn, m, full, w = self._inputs(t, rows)
            sel = m.bool()
            idx = torch.tensor(rows)[:, None].expand(-1, w - 1)[sel], sel.nonzero()[:, 1]
            if want_old:
                out["old"][idx] = self._logprobs(self.engine.module, ids, attn, full, chunk, temp,
                                                 top_p=top_p)[0].cpu()
            if want_ref:
                out["ref"][idx] = self._ref_logprobs(ids, attn, full).cpu()
            if want_val:
                out["values"][idx] = self.critic.module(ids, attn)[:, :-1][sel.to(self.device)].cpu()
        return {k: self._all_sum(v) for k, v in out.items()}

    def _ref_logprobs(self, ids, attn, full) -> torch.Tensor:
        r, chunk = self.cfg.rollout, self.cfg.learner.logprob_chunk
        temp, top_p = r.temperature, r.top_p
        with torch.no_grad():
            if self.lora:
                with self.engine.module.disable_adapter():
                    return self._logprobs(self.engine.module, ids, attn, full, chunk, temp, top_p=top_p)[0]
            return self._logprobs(self.ref, ids, attn, full, chunk, temp, top_p=top_p)[0]

    def _advantages(self, batch: TrainBatch, t, pre) -> tuple[torch.Tensor, torch.Tensor | None]:
        return batch_advantages(batch, self.cfg.algo, t["mask"], pre.get("old", t["sampling"]),
                                pre.get("ref"), pre.get("values"))

    def _update(self, rows, t, pre, adv, returns, measure_gap: bool) -> dict[str, float]:
        """One optimizer step (policy, and critic for ppo) on the mini-batch ``rows``."""
        mask = t["mask"][rows]
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

    def _policy_micro(self, rows, t, pre, adv, totals, measure_gap) -> dict[str, float]:
        cfg, algo = self.cfg, self.cfg.algo
        if not rows or not t["mask"][rows].any():
            return self._idle_backward(self.engine)
        ids, attn, m, full, w = self._inputs(t, rows)
        sel = m.bool()
        pick = lambda x: x[rows, :w - 1][sel].to(self.device)  # noqa: E731 - flat targets
        sampling = pick(t["sampling"])
        old = pick(pre["old"]) if "old" in pre else sampling
        logp, entropy = self._logprobs(self.engine.module, ids, attn, full, cfg.learner.logprob_chunk,
                                       cfg.rollout.temperature, entropy_grad=algo.entropy_coef > 0,
                                       top_p=cfg.rollout.top_p)
        tok_loss, clipped = algos.clipped_policy_loss(logp, old, pick(adv), algo.clip_low,
                                                      algo.clip_high, algo.dual_clip)
        capped = 0.0
        if algo.tis_cap is not None:
            tok_loss = tok_loss * algos.truncated_is_weights(old, sampling, algo.tis_cap)
            capped = float((old - sampling > math.log(algo.tis_cap)).sum())
        weights = algos.loss_weights(m, algo.loss_agg, *totals)[sel].to(self.device)
        policy = (tok_loss * weights).sum()
        kl = torch.zeros_like(logp)
        if "ref" in pre and algo.kl_mode == "loss":
            kl = algos.kl_penalty(logp, pick(pre["ref"]), algo.kl_estimator_used)
        loss = policy + (algo.kl_coef * kl * weights).sum() - (algo.entropy_coef * entropy * weights).sum()
        # DeepSpeed averages gradients over ranks; the weights already divide by the whole
        # mini-batch, so each rank's share is scaled back up by the world size.
        self.engine.backward(loss * self.world, scale_wrt_gas=False)
        d = (logp - old).detach()
        gap = (logp.detach() - sampling).abs()
        return {"loss/policy": float(policy.detach()), "kl": float(kl.detach().sum()),
                "entropy": float(entropy.detach().sum()), "clip_fraction": float(clipped.sum()),
                "tokens": float(logp.numel()), "approx_kl": float((-d).sum()),
                "gap": float(gap.sum()) if measure_gap else 0.0,
                "gap_tokens": float(logp.numel()) if measure_gap else 0.0, "tis_capped": capped}

    def _critic_micro(self, rows, t, pre, returns, total_tokens) -> dict[str, float]:
        if not rows or not t["mask"][rows].any():
            return self._idle_backward(self.critic, critic=True)
        ids, attn, m, _, w = self._inputs(t, rows)
        sel = m.bool()
        dsel = sel.to(self.device)
        values = self.critic.module(ids, attn)[:, :-1][dsel]
        old = pre["values"][rows, :w - 1][sel].to(self.device)
        ret = returns[rows, :w - 1][sel].to(self.device)
        loss, clipped = algos.value_loss(values, old, ret, self.cfg.algo.value_clip)
        self.critic.backward(loss.sum() / max(total_tokens, 1.0) * self.world, scale_wrt_gas=False)
        return {"loss/value": float(loss.detach().sum()) / max(total_tokens, 1.0),
                "value/clip_fraction": float(clipped.sum())}

    def _idle_backward(self, engine, critic: bool = False) -> dict[str, float]:
        """Nothing to learn in this micro-batch, but the other ranks run a forward and
        backward (collectives under ZeRO): take part with a two-token row and a zero loss."""
        ids = torch.full((1, 2), 0, device=self.device)
        out = engine.module(ids, torch.ones_like(ids)) if critic else engine.module(input_ids=ids).logits
        engine.backward(out.sum() * 0.0, scale_wrt_gas=False)
        return {}

    def _metrics(self, sums, grad_norms, adv, t, pre, t0) -> dict[str, float]:
        mask = t["mask"]
        s = self._all_sum(torch.tensor([sums[k] for k in _SUMS], dtype=torch.float64))
        s = dict(zip(_SUMS, s.tolist()))
        n = max(s["tokens"], 1.0)
        steps = self.cfg.algo.epochs * self.cfg.algo.mini_batches
        used = adv[mask.bool()]
        out = {
            "loss/policy": s["loss/policy"] / steps, "entropy": s["entropy"] / n,
            "clip_fraction": s["clip_fraction"] / n, "approx_kl": s["approx_kl"] / n,
            "train/logprob_gap": s["gap"] / max(s["gap_tokens"], 1.0),
            "grad_norm": sum(grad_norms) / len(grad_norms), "lr": self.engine.get_lr()[0],
            "advantage/mean": float(used.mean()) if used.numel() else 0.0,
            "advantage/std": float(used.std()) if used.numel() > 1 else 0.0,
            "train/tokens": s["tokens"] / self.cfg.algo.epochs,
            "timing/learner_compute_s": time.perf_counter() - t0,
            "memory/learner_peak_gb": _peak_rss_gb(),
        }
        if self.cfg.algo.kl_coef > 0:
            out["kl"] = s["kl"] / n if self.cfg.algo.kl_mode == "loss" else self._reward_kl(t, pre)
        if "old" in pre:  # learner vs engine on the same tokens, before any update
            m = mask.bool()
            out["train/logprob_gap"] = float((pre["old"] - t["sampling"])[m].abs().mean()) if m.any() else 0.0
        if self.cfg.algo.tis_cap is not None:
            out["tis/capped_fraction"] = s["tis_capped"] / n
        if self.critic is not None:
            out["loss/value"] = s["loss/value"] / steps
            out["value/clip_fraction"] = s["value/clip_fraction"] / n
            out["value/mean"] = float(pre["values"][mask.bool()].mean()) if mask.any() else 0.0
        return out

    def _reward_kl(self, t, pre) -> float:
        """Reward mode: the mean per-token KL the penalty subtracted (at pi_old, before the update)."""
        m = t["mask"].bool()
        if not m.any():
            return 0.0
        old = pre.get("old", t["sampling"])
        return float(algos.kl_penalty(old, pre["ref"], self.cfg.algo.kl_estimator_used)[m].mean())

    def _grad_norm(self, engine) -> float:
        """ZeRO-0 gradient norm before clipping (of the reduced gradient: the same on every rank)."""
        norms = [p.grad.detach().float().norm() for p in engine.module.parameters()
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
        """Full weights under Hugging Face names (LoRA merged), on CPU, from rank 0 (others
        return []). Called on every rank, so that a stage that partitions parameters can
        gather them."""
        if self.rank != 0:
            return []
        return list(merged_state_dict(self.engine.module).items())

    def open_weight_group(self, world_size: int, timeout_s: float) -> dict:
        """Rank 0: serve a new weight-update group's rendezvous (``rlagent.weight_transport``)
        and return its address; ``join_weight_group`` then waits for the engines."""
        import dataclasses

        import ray

        from rlagent.weight_transport import open_store

        self.close_weight_group()
        self._weight_store, self._weight_address = open_store(
            ray.util.get_node_ip_address(), world_size, timeout_s, self.device)
        return dataclasses.asdict(self._weight_address)

    def join_weight_group(self) -> None:
        from rlagent.weight_transport import WeightGroup

        self._weight_group = WeightGroup(self._weight_address, 0, self.device, self._weight_store)

    def close_weight_group(self) -> None:
        if self._weight_group is not None:
            self._weight_group.close()
            self._weight_group = None

    def weight_metas(self) -> list[list]:
        """Rank 0: name, shape and dtype of every tensor ``send_weights`` sends, in order."""
        from rlagent.weight_transport import describe

        with hf_weights(self.engine.module) as weights:
            return [meta.wire() for meta in describe(weights)]

    def send_weights(self) -> int:
        """Rank 0: broadcast the full weights (LoRA merged) to the weight-update group, from
        where they live (GPU memory on GPU); returns the bytes sent. ZeRO stages 0-2 keep
        full weights on every rank, so the other ranks take no part."""
        if self._weight_group is None:
            raise RuntimeError("send_weights before the weight-update group was formed")
        with hf_weights(self.engine.module) as weights:
            return self._weight_group.send(weights)

    def score(self, sequences: list[list[int]], start: int) -> list[list[float]]:
        """Logprobs of each sequence's tokens from ``start`` on, under the current weights."""
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

    def training_state(self) -> dict:
        """What ``save_state`` writes, as CPU tensors, for checks: the weights, the optimizer's
        state (AdamW moments and step counts), the LR schedule's state and the update count."""
        def cpu(x):
            if isinstance(x, torch.Tensor):
                return x.detach().cpu().clone()
            if isinstance(x, dict):
                return {k: cpu(v) for k, v in x.items()}
            if isinstance(x, (list, tuple)):
                return type(x)(cpu(v) for v in x)
            return x

        return cpu({"weights": dict(self.engine.module.state_dict()),
                    "optimizer": self.engine.optimizer.state_dict(),
                    "lr_schedule": self.engine.lr_scheduler.state_dict(), "updates": self.updates})

    def save_state(self, path: str) -> None:
        """The full training state (weights, optimizer, LR schedule; the critic's too) as a
        DeepSpeed checkpoint under ``path``; every rank writes its shard."""
        client = {"updates": self.updates}
        self.engine.save_checkpoint(str(Path(path) / "policy"), tag="state", client_state=client)
        if self.critic is not None:
            self.critic.save_checkpoint(str(Path(path) / "critic"), tag="state")

    def load_state(self, path: str) -> int:
        """Restore what ``save_state`` wrote; returns the number of updates so far."""
        loaded, client = self.engine.load_checkpoint(str(Path(path) / "policy"), tag="state")
        if loaded is None:
            raise FileNotFoundError(f"no learner state in {path}/policy")
        if self.critic is not None:
            loaded, _ = self.critic.load_checkpoint(str(Path(path) / "critic"), tag="state")
            if loaded is None:
                raise FileNotFoundError(f"no critic state in {path}/critic")
        self.updates = int(client.get("updates", 0))
        return self.updates

    def save(self, path: str) -> str:
        """A Hugging Face model directory that ``model.path`` can start a new run from."""
        from transformers import AutoTokenizer

        weights = dict(self.named_weights())
        if self.rank != 0:
            return path
        tmp = Path(path).with_name(Path(path).name + ".tmp")
        model = self.engine.module
        model = model.get_base_model() if self.lora else model
        model.save_pretrained(tmp, state_dict=weights)
        AutoTokenizer.from_pretrained(self.model_path).save_pretrained(tmp)
        if Path(path).exists():
            import shutil

            shutil.rmtree(path)
        tmp.rename(path)  # a crash mid-write never leaves a half checkpoint under the real name
        return path


def rank_shares(rows: list[int], groups: list[int], world: int) -> list[list[int]]:
    """``rows`` split over ``world`` ranks with every group's rows on one rank (so its shared
    prompt runs once, and the group's tokens are never split): whole groups, largest first,
    each to the rank holding the fewest rows so far. Within a share the rows keep their
    order in ``rows``. Every rank computes the same split. Without group ids (``groups``
    empty) each row is its own group."""
    if world == 1:
        return [list(rows)]
    by_group: dict[int, list[int]] = {}
    for r in rows:
        by_group.setdefault(groups[r] if groups else -1 - r, []).append(r)
    owner: dict[int, int] = {}
    sizes = [0] * world
    for g in sorted(by_group, key=lambda g: -len(by_group[g])):  # stable: first seen first
        rank = sizes.index(min(sizes))
        owner[g], sizes[rank] = rank, sizes[rank] + len(by_group[g])
    shares: list[list[int]] = [[] for _ in range(world)]
    for r in rows:
        shares[owner[groups[r] if groups else -1 - r]].append(r)
    return shares


def _undo_state_warmup(engine) -> None:
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


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
