"""Algorithms as pure tensor functions: advantages, policy loss, KL.

Shapes: B = episodes, T = tokens. ``mask`` is 1 on tokens the policy generated.
"""
from __future__ import annotations

import torch


def grpo_advantages(rewards: torch.Tensor, groups: torch.Tensor, valid: torch.Tensor,
                    normalize_std: bool = True, eps: float = 1e-6) -> torch.Tensor:
    """Group-relative advantages: ``(r - mean_group) / (std_group + eps)``.

    rewards [B], groups [B] (episodes of one task share an id), valid [B] bool (False:
    the reward could not be computed; excluded from the group statistics, advantage 0).
    A group with fewer than two valid episodes, or all-equal rewards, carries no signal:
    its advantages are 0. ``normalize_std=False`` gives Dr. GRPO (no division by std).
    std is the unbiased sample std (n - 1), as in the GRPO paper's implementation.
    """
    adv = torch.zeros_like(rewards, dtype=torch.float32)
    for g in torch.unique(groups):
        idx = (groups == g) & valid
        if idx.sum() < 2:
            continue
        r = rewards[idx].float()
        if r.max() == r.min():  # exactly no signal (float rounding would leave ~1e-8 / ~1e-8)
            continue
        centred = r - r.mean()
        adv[idx] = centred / (r.std() + eps) if normalize_std else centred
    return adv


def clipped_policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, adv: torch.Tensor,
                        clip_low: float, clip_high: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token PPO/GRPO surrogate loss and whether each token was clipped.

    logp, old_logp [N] (current policy, behaviour policy), adv [N] (episode advantage
    broadcast to its tokens). loss = -min(ratio * A, clip(ratio, 1 - low, 1 + high) * A).
    """
    ratio = torch.exp(logp - old_logp)
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high) * adv
    loss = -torch.minimum(unclipped, clipped)
    return loss, (clipped < unclipped).detach()


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimate of KL(pi || ref) on tokens sampled from pi: e^d - d - 1, d = ref - logp.

    Unbiased and never negative (Schulman, "Approximating KL divergence").
    """
    d = ref_logp - logp
    return torch.exp(d) - d - 1.0


def masked_sum(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum()


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of x over positions where mask is 1 (0 when the mask is empty)."""
    return (x * mask).sum() / mask.sum().clamp(min=1)
