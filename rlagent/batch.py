"""From scored episodes to one padded training batch (pure: no Ray, no model)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from rlagent import algos
from rlagent.algos import informative_groups, overlong_penalty, turn_advantages
from rlagent.config import AlgoConfig, Config
from rlagent.records import Episode, TrainBatch
from rlagent.reward_service import scalar


@dataclass
class BatchStats:
    episodes: int
    invalid: int                 # episodes without a usable reward (a weighted plugin failed)
    zero_variance_groups: float  # share of groups whose rewards were all equal (no signal)
    overlong_penalty: float      # mean overlong penalty per valid episode


def split_process(episode: Episode, cfg: Config) -> tuple[float | None, list[float]]:
    """(scalar reward without the per-turn components, weighted per-turn reward sums).

    Components whose score is a list (process rewards) leave the episode's total and
    become one reward per assistant turn; an unscored turn counts 0.
    """
    turns = [0.0] * len(episode.turns)
    if episode.reward is None:
        return None, turns
    total = episode.reward
    for spec in cfg.rewards.components:
        value = episode.rewards.get(spec.name)
        if spec.weight == 0 or not isinstance(value, list):
            continue
        total -= spec.weight * (scalar(value) or 0.0)
        for k, v in enumerate(value[:len(turns)]):
            turns[k] += spec.weight * (v or 0.0)
    return total, turns


@dataclass
class Shaped:
    """What the estimator learns from, per episode (the one place it is computed)."""

    rewards: list[float | None]     # [B] scalar reward after the process split and the
    #   overlong penalty; None where the episode has no usable reward
    turns: list[list[float]]        # [B][turns] weighted process scores (turn-level credit)
    penalty: list[float]            # [B] overlong penalty added to each valid reward


def shaped_rewards(episodes: list[Episode], cfg: Config) -> Shaped:
    """The rewards the estimator sees: with ``algo.turn_level_coef`` the per-turn process
    scores leave the scalar (they become turn advantages), then DAPO's overlong penalty."""
    algo = cfg.algo
    turn_level = algo.turn_level_coef > 0
    split = [split_process(e, cfg) if turn_level else (e.reward, []) for e in episodes]
    max_len = algo.overlong_max_tokens or cfg.rollout.max_new_tokens * cfg.rollout.max_turns
    penalty = overlong_penalty(torch.tensor([e.num_generated for e in episodes]), max_len,
                               algo.overlong_buffer, algo.overlong_factor).tolist()
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
        episodes=len(episodes), invalid=valid.count(False),
        zero_variance_groups=(n_groups - len(informative)) / max(n_groups, 1),
        overlong_penalty=sum(p for p, ok in zip(shaped.penalty, valid) if ok) / max(sum(valid), 1))
    batch = TrainBatch(ids, masks, old, lengths, pad_id, rewards=rewards, valid=valid,
                       groups=groups, extra_advantages=extra)
    return batch, stats


def target_tensors(batch: TrainBatch) -> dict[str, torch.Tensor]:
    """The batch as tensors; token tensors aligned to targets ([B, T-1]: column t is about
    token t+1, predicted from the prefix up to t)."""
    ids = torch.tensor(batch.input_ids)
    attn = (torch.arange(ids.shape[1])[None, :] < torch.tensor(batch.lengths)[:, None]).long()
    return {"ids": ids, "attn": attn,
            "mask": torch.tensor(batch.loss_mask)[:, 1:].float(),
            "sampling": torch.tensor(batch.old_logprobs, dtype=torch.float32)[:, 1:]}


def batch_advantages(batch: TrainBatch, algo: AlgoConfig, mask: torch.Tensor, old: torch.Tensor,
                     ref: torch.Tensor | None = None, values: torch.Tensor | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Token advantages [B, T-1] (and value targets for ppo) by ``algo.name``.

    ``old``: the behaviour policy's logprobs; ``ref``: the reference's (used here only when
    the KL is a reward penalty); ``values``: the critic's. Given ``batch.advantages``
    replace the estimator; turn-level advantages are added on top.
    """
    if batch.advantages is not None:
        adv, returns = torch.tensor(batch.advantages, dtype=torch.float32)[:, None] * mask, None
    else:
        kl = None
        if ref is not None and algo.kl_mode == "reward":
            kl = algos.kl_penalty(old, ref, algo.kl_estimator_used) * mask
        inp = algos.AdvantageInputs(
            rewards=torch.tensor(batch.rewards, dtype=torch.float32),
            groups=torch.tensor(batch.groups), valid=torch.tensor(batch.valid, dtype=torch.bool),
            mask=mask, kl=kl, kl_coef=algo.kl_coef, values=values, gamma=algo.gamma, lam=algo.lam)
        adv, returns = algos.ESTIMATORS[algo.name](inp)
    if batch.extra_advantages is not None:
        adv = adv + torch.tensor(batch.extra_advantages, dtype=torch.float32)[:, 1:] * mask
    return adv, returns
