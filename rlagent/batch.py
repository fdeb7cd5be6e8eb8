"""From scored episodes to one padded training batch (pure: no Ray, no model).

Runs in the driver. The advantages are computed in the learner (``rlagent.learner.tensors``):
the estimators may need the reference's logprobs and the critic's values, which live there.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rlagent.config import Config
from rlagent.records import Episode, TrainBatch
from rlagent.scoring.combine import split_process
from rlagent.shaping import informative_groups, overlong_penalty, turn_advantages


@dataclass
class BatchStats:
    episodes: int
    invalid: int  # episodes without a usable reward (a weighted plugin failed)
    zero_variance_groups: float  # share of groups whose rewards were all equal (no signal)
    overlong_penalty: float  # mean overlong penalty per valid episode


@dataclass
class Shaped:
    """What the estimator learns from, per episode (the one place it is computed)."""

    rewards: list[float | None]  # [B] scalar reward after the process split and the
    #   overlong penalty; None where the episode has no usable reward
    turns: list[list[float]]  # [B][turns] weighted process scores (turn-level credit)
    penalty: list[float]  # [B] overlong penalty added to each valid reward


def shaped_rewards(episodes: list[Episode], cfg: Config) -> Shaped:
    """The rewards the estimator sees: with ``algo.turn_level_coef`` the per-turn process
    scores leave the scalar (they become turn advantages), then DAPO's overlong penalty."""
    algo = cfg.algo
    turn_level = algo.turn_level_coef > 0
    split = [split_process(e, cfg.rewards.components) if turn_level else (e.reward, []) for e in episodes]
    max_len = algo.overlong_max_tokens or cfg.rollout.max_new_tokens * cfg.rollout.max_turns
    penalty = overlong_penalty(
        torch.tensor([e.num_generated for e in episodes]), max_len, algo.overlong_buffer, algo.overlong_factor
    ).tolist()
    rewards = [None if r is None else r + p for (r, _), p in zip(split, penalty)]
    return Shaped(rewards, [t for _, t in split], penalty)


def groups_with_signal(episodes: list[Episode], shaped: Shaped, turn_level: bool) -> set[int]:
    """Groups whose shaped rewards are not all equal, or (turn-level credit) whose turns'
    process returns are not: the ones a group estimator gets a non-zero advantage from.
    Dynamic sampling and ``batch/zero_variance_groups`` judge by this."""
    groups = [e.group for e in episodes]
    out = informative_groups(shaped.rewards, groups)
    if turn_level:
        valid = [r is not None for r in shaped.rewards]
        for g, adv in zip(groups, turn_advantages(shaped.turns, groups, valid)):
            if any(a != 0 for a in adv):
                out.add(g)
    return out


def build_batch(episodes: list[Episode], cfg: Config, pad_id: int) -> tuple[TrainBatch, BatchStats]:
    """Rewards (shaped), groups and right-padded token rows.

    An episode whose reward is None keeps its row with an all-zero loss mask, so the
    batch shape does not depend on failures and the episode contributes no gradient.
    """
    algo = cfg.algo
    turn_level = algo.turn_level_coef > 0
    shaped = shaped_rewards(episodes, cfg)
    valid = [r is not None for r in shaped.rewards]
    rewards = [r if r is not None else 0.0 for r in shaped.rewards]
    groups = [e.group for e in episodes]

    # An episode whose env failed at reset has no tokens: it becomes one pad token, so the
    # row never has an empty attention mask.
    lengths = [max(len(e.token_ids), 1) for e in episodes]
    width = max(lengths)
    ids, masks, old = [], [], []
    for e, ok in zip(episodes, valid):
        pad = width - len(e.token_ids)
        ids.append(e.token_ids + [pad_id] * pad)
        masks.append((e.loss_mask if ok else [0] * len(e.loss_mask)) + [0] * pad)
        old.append(e.logprobs + [0.0] * pad)

    extra = None
    if turn_level:
        per_turn = turn_advantages(shaped.turns, groups, valid)
        extra = [[0.0] * width for _ in episodes]
        for row, (e, adv) in enumerate(zip(episodes, per_turn)):
            for turn, a in zip(e.turns, adv):
                for pos in range(*turn.span):
                    extra[row][pos] = algo.turn_level_coef * a

    with_reward = [g for g, ok in zip(groups, valid) if ok]
    informative = groups_with_signal(episodes, shaped, turn_level)
    n_groups = len(set(with_reward))
    stats = BatchStats(
        episodes=len(episodes),
        invalid=valid.count(False),
        zero_variance_groups=(n_groups - len(informative)) / max(n_groups, 1),
        overlong_penalty=sum(p for p, ok in zip(shaped.penalty, valid) if ok) / max(sum(valid), 1),
    )
    batch = TrainBatch(
        ids, masks, old, lengths, pad_id, rewards=rewards, valid=valid, groups=groups, extra_advantages=extra
    )
    return batch, stats
