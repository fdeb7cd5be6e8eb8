"""From scored episodes to one padded training batch (pure: no Ray, no model)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from rlagent.algos import grpo_advantages
from rlagent.config import AlgoConfig
from rlagent.records import Episode, TrainBatch


@dataclass
class BatchStats:
    episodes: int
    invalid: int                 # episodes without a usable reward (a weighted plugin failed)
    zero_variance_groups: float  # share of groups whose rewards were all equal (no signal)
    advantage_mean: float
    advantage_std: float


def build_batch(episodes: list[Episode], algo: AlgoConfig, pad_id: int) -> tuple[TrainBatch, BatchStats]:
    """Advantages per episode and right-padded token rows.

    An episode whose reward is None keeps its row with an all-zero loss mask, so the
    batch shape does not depend on failures and the episode contributes no gradient.
    """
    valid = torch.tensor([e.reward is not None for e in episodes])
    rewards = torch.tensor([e.reward if e.reward is not None else 0.0 for e in episodes])
    groups = torch.tensor([e.group for e in episodes])
    adv = grpo_advantages(rewards, groups, valid, normalize_std=algo.normalize_std)

    # An episode whose env failed at reset has no tokens: it becomes one pad token, so the
    # row never has an empty attention mask.
    lengths = [max(len(e.token_ids), 1) for e in episodes]
    width = max(lengths)
    ids, masks, old = [], [], []
    for e, ok in zip(episodes, valid.tolist()):
        pad = width - len(e.token_ids)
        ids.append(e.token_ids + [pad_id] * pad)
        masks.append((e.loss_mask if ok else [0] * len(e.loss_mask)) + [0] * pad)
        old.append(e.logprobs + [0.0] * pad)

    flat = [(int(g), r) for g, r, ok in zip(groups, rewards.tolist(), valid.tolist()) if ok]
    by_group: dict[int, set[float]] = {}
    for g, r in flat:
        by_group.setdefault(g, set()).add(r)
    zero_var = sum(len(v) == 1 for v in by_group.values()) / max(len(by_group), 1)
    used = adv[valid]
    stats = BatchStats(
        episodes=len(episodes), invalid=int((~valid).sum()), zero_variance_groups=zero_var,
        advantage_mean=float(used.mean()) if len(used) else 0.0,
        advantage_std=float(used.std()) if len(used) > 1 else 0.0)
    return TrainBatch(ids, masks, old, adv.tolist(), lengths, pad_id), stats
