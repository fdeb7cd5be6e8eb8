"""How a batch is weighed and shaped, beside the estimators (pure tensor functions):
loss aggregation across micro-batches and ranks, DAPO's soft overlong penalty and its
dynamic-sampling test for a group's signal, and turn-level credit from per-turn (process)
rewards. ``docs/algorithms.md`` gives the formulas.
"""

from __future__ import annotations

import torch


def turn_advantages(
    turn_rewards: list[list[float]], groups: list[int], valid: list[bool], eps: float = 1e-6
) -> list[list[float]]:
    """Turn-level credit from per-turn (process) rewards.

    Each turn's return is the sum of its own and later turns' rewards; returns are then
    normalised over all turns of the valid episodes of a group (mean 0, std 1, population
    std). A group whose turn returns are all equal gets 0.
    """
    returns = [[sum(r[k:]) for k in range(len(r))] for r in turn_rewards]
    out = [[0.0] * len(r) for r in turn_rewards]
    for g in set(groups):
        members = [i for i, (gi, ok) in enumerate(zip(groups, valid)) if gi == g and ok]
        vals = [x for i in members for x in returns[i]]
        if len(vals) < 2 or max(vals) == min(vals):
            continue
        mean = sum(vals) / len(vals)
        std = (sum((x - mean) ** 2 for x in vals) / len(vals)) ** 0.5
        for i in members:
            out[i] = [(x - mean) / (std + eps) for x in returns[i]]
    return out


# --------------------------------------------------------------------- aggregation
LOSS_AGGREGATIONS = ("token-mean", "seq-mean-token-sum", "seq-mean-token-mean")


def loss_weights(mask: torch.Tensor, mode: str, total_tokens: float, total_seqs: float) -> torch.Tensor:
    """Per-token weights w [B, T] with loss = sum(w * token_loss), for a batch of which these
    rows are a part (``total_tokens`` / ``total_seqs``: policy tokens / episodes with any
    policy token in the whole batch, across micro-batches and ranks).

    token-mean: 1 / total_tokens. seq-mean-token-sum: 1 / total_seqs.
    seq-mean-token-mean: 1 / (total_seqs * tokens in the row).
    """
    m = mask.float()
    if mode == "token-mean":
        return m / max(total_tokens, 1.0)
    if mode == "seq-mean-token-sum":
        return m / max(total_seqs, 1.0)
    if mode == "seq-mean-token-mean":
        return m / m.sum(1, keepdim=True).clamp(min=1) / max(total_seqs, 1.0)
    raise ValueError(f"unknown loss aggregation {mode!r} {LOSS_AGGREGATIONS}")


def aggregate(token_loss: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    """One batch's scalar loss from per-token losses [B, T]."""
    m = mask.float()
    seqs = float((m.sum(1) > 0).sum())
    return (token_loss * loss_weights(m, mode, float(m.sum()), seqs)).sum()


def masked_sum(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum()


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of x over positions where mask is 1 (0 when the mask is empty)."""
    return (x * mask).sum() / mask.sum().clamp(min=1)


# --------------------------------------------------------------------- batch shaping
def overlong_penalty(lengths: torch.Tensor, max_len: int, buffer: int, factor: float = 1.0) -> torch.Tensor:
    """DAPO's soft overlong punishment [B]: 0 up to ``max_len - buffer`` generated tokens,
    then falling linearly to ``-factor`` at ``max_len`` (and ``-factor`` beyond)."""
    if buffer <= 0:
        return torch.zeros_like(lengths, dtype=torch.float32)
    over = (lengths.float() - (max_len - buffer)).clamp(min=0) / buffer
    return -factor * over.clamp(max=1.0)


def informative_groups(rewards: list[float | None], groups: list[int]) -> set[int]:
    """Groups whose valid rewards are not all equal (at least two of them): the only ones
    with a non-zero GRPO signal. DAPO's dynamic sampling keeps these."""
    seen: dict[int, set[float]] = {}
    count: dict[int, int] = {}
    for r, g in zip(rewards, groups):
        if r is not None:
            seen.setdefault(g, set()).add(r)
            count[g] = count.get(g, 0) + 1
    return {g for g, vals in seen.items() if len(vals) > 1 and count[g] >= 2}
