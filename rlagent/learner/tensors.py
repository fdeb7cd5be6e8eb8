"""The learner's side of a batch: tensors aligned to targets, the advantages, and which rows
each rank trains (pure: no DeepSpeed, no Ray).

Column t of a ``[B, T-1]`` tensor is about token t+1, predicted from the prefix up to t.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rlagent import algos
from rlagent.config import AlgoConfig
from rlagent.records import TrainBatch


@dataclass
class TargetTensors:
    """A ``TrainBatch`` as tensors."""

    ids: torch.Tensor  # [B, T] token ids, right-padded
    attn: torch.Tensor  # [B, T] 1 on real tokens
    mask: torch.Tensor  # [B, T-1] 1 where the target token is trained on (the policy's)
    sampling: torch.Tensor  # [B, T-1] the engine's sampling logprob of each target token


@dataclass
class Precomputed:
    """Before any update, for the whole batch ([B, T-1], 0 off the mask); None: not needed."""

    old: torch.Tensor | None = None  # the learner's own logprobs (old_logprobs: recompute)
    ref: torch.Tensor | None = None  # the reference's logprobs (kl_coef > 0)
    values: torch.Tensor | None = None  # the critic's values (ppo)

    def behaviour(self, t: TargetTensors) -> torch.Tensor:
        """The ratio's denominator: recomputed logprobs, else the engine's."""
        return self.old if self.old is not None else t.sampling


def target_tensors(batch: TrainBatch) -> TargetTensors:
    ids = torch.tensor(batch.input_ids)
    attn = (torch.arange(ids.shape[1])[None, :] < torch.tensor(batch.lengths)[:, None]).long()
    return TargetTensors(
        ids,
        attn,
        torch.tensor(batch.loss_mask)[:, 1:].float(),
        torch.tensor(batch.old_logprobs, dtype=torch.float32)[:, 1:],
    )


def batch_advantages(
    batch: TrainBatch,
    algo: AlgoConfig,
    mask: torch.Tensor,
    old: torch.Tensor,
    ref: torch.Tensor | None = None,
    values: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Token advantages [B, T-1] (and value targets for ppo) by ``algo.name``.

    ``old``: the behaviour policy's logprobs; ``ref``: the reference's (used here only when
    the KL is a reward penalty); ``values``: the critic's. Given ``batch.advantages``
    replace the estimator; turn-level advantages are added on top. Computed in the learner
    because the estimators may need the reference's logprobs and the critic's values.
    """
    if batch.advantages is not None:
        adv, returns = torch.tensor(batch.advantages, dtype=torch.float32)[:, None] * mask, None
    else:
        kl = None
        if ref is not None and algo.kl_mode == "reward":
            kl = algos.kl_penalty(old, ref, algo.kl_estimator_used) * mask
        inp = algos.AdvantageInputs(
            rewards=torch.tensor(batch.rewards, dtype=torch.float32),
            groups=torch.tensor(batch.groups),
            valid=torch.tensor(batch.valid, dtype=torch.bool),
            mask=mask,
            kl=kl,
            kl_coef=algo.kl_coef,
            values=values,
            gamma=algo.gamma,
            lam=algo.lam,
        )
        adv, returns = algos.ESTIMATORS[algo.name](inp)
    if batch.extra_advantages is not None:
        adv = adv + torch.tensor(batch.extra_advantages, dtype=torch.float32)[:, 1:] * mask
    return adv, returns


def rank_shares(rows: list[int], groups: list[int], world: int) -> list[list[int]]:
    """``rows`` split over ``world`` ranks with every group's rows on one rank (so its shared
    prompt runs once, and the group's tokens are never split): whole groups, largest first,
    each to the rank holding the fewest rows so far. Within a share the rows keep their
    order in ``rows``. Every rank computes the same split. Without group ids (``groups``
    empty) each row is its own group.

    >>> rank_shares([0, 1, 2, 3, 4], [0, 0, 1, 1, 1], 2)
    [[2, 3, 4], [0, 1]]
    """
    if world == 1:
        return [list(rows)]
    key = (lambda r: groups[r]) if groups else (lambda r: -1 - r)
    by_group: dict[int, list[int]] = {}
    for r in rows:
        by_group.setdefault(key(r), []).append(r)
    owner: dict[int, int] = {}
    sizes = [0] * world
    for g in sorted(by_group, key=lambda g: -len(by_group[g])):  # stable: first seen first
        rank = sizes.index(min(sizes))
        owner[g], sizes[rank] = rank, sizes[rank] + len(by_group[g])
    shares: list[list[int]] = [[] for _ in range(world)]
    for r in rows:
        shares[owner[key(r)]].append(r)
    return shares
