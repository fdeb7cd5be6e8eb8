"""Algorithms as pure tensor functions: advantages, policy and value losses, KL, batch shaping.

Shapes: B = episodes, T = token positions. ``mask`` [B, T] is 1 on tokens the policy
generated (the only ones trained on); observation and padding positions are 0. Every
estimator is registered by name in ``ESTIMATORS`` (the config's ``algo.name``).
``docs/algorithms.md`` gives the formula behind each function.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch


# --------------------------------------------------------------------- outcome advantages
def grpo_advantages(
    rewards: torch.Tensor,
    groups: torch.Tensor,
    valid: torch.Tensor,
    normalize_std: bool = True,
    eps: float = 1e-6,
) -> torch.Tensor:
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


def rloo_advantages(rewards: torch.Tensor, groups: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """REINFORCE leave-one-out: ``r_i - mean_{j != i} r_j`` over the valid episodes of a group.

    Equal to ``n / (n - 1) * (r_i - mean)``; a group with fewer than two valid episodes gets 0.
    """
    adv = torch.zeros_like(rewards, dtype=torch.float32)
    for g in torch.unique(groups):
        idx = (groups == g) & valid
        n = int(idx.sum())
        if n < 2:
            continue
        r = rewards[idx].float()
        adv[idx] = r - (r.sum() - r) / (n - 1)
    return adv


def whiten(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``(x - mean) / (std + eps)`` over the masked positions (population std); 0 elsewhere.

    All-equal masked values give exactly 0, as in ``grpo_advantages``: float rounding
    leaves ``x - mean`` at ~1e-8, the size of eps, which the division would blow up into
    one-sign advantages of order 1.
    """
    m = mask.to(x.dtype)
    picked = x[mask.bool()]
    if picked.numel() == 0 or picked.max() == picked.min():
        return torch.zeros_like(x)
    n = m.sum().clamp(min=1)
    mean = (x * m).sum() / n
    var = (((x - mean) * m) ** 2).sum() / n
    return (x - mean) / (var.sqrt() + eps) * m


# --------------------------------------------------------------------- token-level returns
def token_rewards(
    mask: torch.Tensor, outcome: torch.Tensor, kl: torch.Tensor | None = None, kl_coef: float = 0.0
) -> torch.Tensor:
    """Per-token rewards [B, T]: ``-kl_coef * kl`` on every policy token, plus the episode's
    outcome reward on its last policy token. A row without policy tokens gets nothing."""
    m = mask.float()
    out = torch.zeros_like(m) if kl is None else -kl_coef * kl.float() * m
    has = m.sum(1) > 0
    last = (m * torch.arange(1, m.shape[1] + 1, device=m.device)).argmax(1)
    rows = torch.nonzero(has)[:, 0]
    out[rows, last[rows]] += outcome.float()[rows]
    return out


def _compact(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Index of each row's policy tokens packed to the left: (rows, cols, step) with
    ``step`` the token's order among its row's policy tokens."""
    rows, cols = torch.nonzero(mask, as_tuple=True)
    counts = mask.long().sum(1)
    starts = torch.cumsum(counts, 0) - counts
    step = torch.arange(rows.numel(), device=mask.device) - starts[rows]
    return rows, cols, step


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0, lam: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over each row's policy tokens, in order.

    Observation and padding positions are skipped, not steps: the token after a policy
    token's turn is the first policy token of the next turn. delta_t = r_t + gamma V_{t+1}
    - V_t (V after the last token is 0); A_t = delta_t + gamma lam A_{t+1}; returns = A + V.
    Returns (advantages, returns), both [B, T] and 0 off the mask.
    """
    rows, cols, step = _compact(mask.bool())
    B, L = mask.shape[0], int(step.max()) + 1 if step.numel() else 0
    r = torch.zeros(B, L + 1, dtype=torch.float32, device=mask.device)
    v = torch.zeros(B, L + 1, dtype=torch.float32, device=mask.device)
    r[rows, step] = rewards[rows, cols].float()
    v[rows, step] = values[rows, cols].float()
    valid = torch.zeros(B, L + 1, dtype=torch.bool, device=mask.device)
    valid[rows, step] = True
    adv = torch.zeros(B, L + 1, dtype=torch.float32, device=mask.device)
    for t in range(L - 1, -1, -1):
        next_v = v[:, t + 1] * valid[:, t + 1]
        delta = r[:, t] + gamma * next_v - v[:, t]
        adv[:, t] = (delta + gamma * lam * adv[:, t + 1]) * valid[:, t]
    out_adv = torch.zeros_like(mask, dtype=torch.float32)
    out_adv[rows, cols] = adv[rows, step]
    out_ret = torch.zeros_like(out_adv)
    out_ret[rows, cols] = adv[rows, step] + v[rows, step]
    return out_adv, out_ret


def discounted_returns(rewards: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0) -> torch.Tensor:
    """Reward-to-go ``G_t = r_t + gamma G_{t+1}`` over each row's policy tokens (GAE with
    V = 0 and lambda = 1)."""
    return gae(rewards, torch.zeros_like(rewards, dtype=torch.float32), mask, gamma, 1.0)[0]


# --------------------------------------------------------------------- the estimator registry
@dataclass
class AdvantageInputs:
    """What an estimator may use. Token tensors are [B, T]; episode tensors [B]."""

    rewards: torch.Tensor  # [B] scalar reward per episode (0 where not valid)
    groups: torch.Tensor  # [B]
    valid: torch.Tensor  # [B] bool
    mask: torch.Tensor  # [B, T]
    kl: torch.Tensor | None = None  # [B, T] per-token KL to the reference (reward-penalty mode)
    kl_coef: float = 0.0
    values: torch.Tensor | None = None  # [B, T] critic values (PPO)
    gamma: float = 1.0
    lam: float = 1.0


def _outcome(inp: AdvantageInputs) -> torch.Tensor:
    """The scalar reward minus the KL penalty summed over the episode (reward-penalty mode)."""
    if inp.kl is None:
        return inp.rewards.float()
    return inp.rewards.float() - inp.kl_coef * (inp.kl.float() * inp.mask).sum(1)


def _broadcast(adv: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return adv[:, None] * mask.float()


Advantages = tuple[torch.Tensor, torch.Tensor | None]  # token advantages [B, T], value targets or None


def _grpo(inp: AdvantageInputs, normalize_std: bool = True) -> Advantages:
    return _broadcast(grpo_advantages(_outcome(inp), inp.groups, inp.valid, normalize_std), inp.mask), None


def _rloo(inp: AdvantageInputs) -> Advantages:
    return _broadcast(rloo_advantages(_outcome(inp), inp.groups, inp.valid), inp.mask), None


def _reinforce_pp(inp: AdvantageInputs) -> Advantages:
    """REINFORCE++: per-token reward-to-go (outcome at the end, KL penalty per token),
    whitened over every policy token of the batch."""
    mask = inp.mask * inp.valid[:, None]
    returns = discounted_returns(token_rewards(mask, inp.rewards, inp.kl, inp.kl_coef), mask, inp.gamma)
    return whiten(returns, mask), None


def _ppo(inp: AdvantageInputs) -> Advantages:
    """GAE from the critic's values; advantages whitened over the batch, returns kept raw."""
    if inp.values is None:
        raise ValueError("ppo needs critic values")
    mask = inp.mask * inp.valid[:, None]
    adv, ret = gae(
        token_rewards(mask, inp.rewards, inp.kl, inp.kl_coef), inp.values, mask, inp.gamma, inp.lam
    )
    return whiten(adv, mask), ret


Estimator = Callable[[AdvantageInputs], Advantages]
ESTIMATORS: dict[str, Estimator] = {
    "grpo": _grpo,
    "dr_grpo": lambda inp: _grpo(inp, normalize_std=False),
    "rloo": _rloo,
    "reinforce_pp": _reinforce_pp,
    "ppo": _ppo,
}
"""name -> estimator returning (token advantages [B, T], value targets [B, T] or None)."""


# --------------------------------------------------------------------- losses
def clipped_policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    adv: torch.Tensor,
    clip_low: float,
    clip_high: float,
    dual_clip: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token PPO/GRPO surrogate loss and whether each token was clipped.

    loss = max(-ratio * A, -clip(ratio, 1 - low, 1 + high) * A); with ``dual_clip`` c > 1,
    tokens with A < 0 are further bounded by -c * A (dual-clip PPO), so a huge ratio on a
    bad token cannot blow up the update.
    """
    ratio = torch.exp(logp - old_logp)
    unclipped = -ratio * adv
    clipped = -torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high) * adv
    loss = torch.maximum(unclipped, clipped)
    was_clipped = clipped > unclipped
    if dual_clip is not None:
        bound = -dual_clip * adv
        dual = (adv < 0) & (loss > bound)
        loss = torch.where(dual, bound, loss)
        was_clipped = was_clipped | dual
    return loss, was_clipped.detach()


def kl_penalty(logp: torch.Tensor, ref_logp: torch.Tensor, estimator: str = "k3") -> torch.Tensor:
    """Per-token estimate of KL(pi || ref) on tokens sampled from pi (Schulman's k1, k2, k3).

    d = logp - ref_logp; k1 = d (unbiased, can be negative), k2 = d^2 / 2,
    k3 = e^-d + d - 1 (unbiased and never negative).
    """
    d = logp - ref_logp
    if estimator == "k1":
        return d
    if estimator == "k2":
        return 0.5 * d * d
    if estimator == "k3":
        return torch.exp(-d) + d - 1.0
    raise ValueError(f"unknown KL estimator {estimator!r} (k1, k2, k3)")


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    return kl_penalty(logp, ref_logp, "k3")


def value_loss(
    values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, clip: float | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token clipped value loss ``0.5 * max((V - R)^2, (V_old + clip(V - V_old) - R)^2)``
    and whether the clipped term was the larger one."""
    plain = (values - returns) ** 2
    if clip is None:
        return 0.5 * plain, torch.zeros_like(plain, dtype=torch.bool)
    v_clip = old_values + torch.clamp(values - old_values, -clip, clip)
    clipped = (v_clip - returns) ** 2
    return 0.5 * torch.maximum(plain, clipped), (clipped > plain).detach()


def truncated_is_weights(train_logp: torch.Tensor, sampling_logp: torch.Tensor, cap: float) -> torch.Tensor:
    """Truncated importance weights ``min(pi_train / pi_sampling, cap)`` (no gradient):
    corrects for the engine sampling from slightly different numbers (or stale weights)
    than the learner trains."""
    return torch.clamp(torch.exp(train_logp - sampling_logp), max=cap).detach()


# --------------------------------------------------------------------- the policy loss
@dataclass
class PolicyInputs:
    """One micro-batch's trained tokens, flat [N] (row-major over the mask)."""

    logp: torch.Tensor  # current logprobs (with gradient)
    old: torch.Tensor  # behaviour policy's logprobs: the ratio's denominator
    sampling: torch.Tensor  # the engine's sampling logprobs (TIS corrects towards them)
    advantages: torch.Tensor
    weights: torch.Tensor  # aggregation weights (``shaping.loss_weights``): loss = sum(w * l)
    entropy: torch.Tensor  # per-token entropy (with gradient when a bonus is on)
    ref: torch.Tensor | None = None  # reference logprobs (KL as a loss term)


@dataclass
class PolicyTerms:
    """What ``clip_loss`` adds up: the loss to backpropagate and its parts, summed over the
    tokens (so micro-batches and ranks add up)."""

    loss: torch.Tensor  # scalar, with gradient
    policy: float  # the aggregated surrogate term alone
    kl: float  # sum of the per-token KL estimates (0: no KL term)
    entropy: float  # sum of the per-token entropies
    clipped: float  # tokens whose ratio (or dual) clip was active
    capped: float  # tokens whose TIS weight hit the cap


def clip_loss(
    inp: PolicyInputs,
    clip_low: float,
    clip_high: float,
    dual_clip: float | None = None,
    tis_cap: float | None = None,
    kl_coef: float = 0.0,
    kl_estimator: str = "k3",
    entropy_coef: float = 0.0,
) -> PolicyTerms:
    """The PPO/GRPO clipped surrogate with its optional terms, per token t:

    l_t = w_TIS * clip_surrogate(ratio_t, A_t) + kl_coef * KL_t - entropy_coef * H_t,
    loss = sum_t weight_t * l_t; ratio_t = pi / pi_old, w_TIS = min(pi_old / pi_sampling, cap)
    (no gradient), KL_t = ``kl_penalty(logp, ref)`` when ``inp.ref`` is given.
    """
    tok, clipped = clipped_policy_loss(inp.logp, inp.old, inp.advantages, clip_low, clip_high, dual_clip)
    capped = 0.0
    if tis_cap is not None:
        tok = tok * truncated_is_weights(inp.old, inp.sampling, tis_cap)
        capped = float((inp.old - inp.sampling > math.log(tis_cap)).sum())
    policy = (tok * inp.weights).sum()
    loss = policy - (entropy_coef * inp.entropy * inp.weights).sum()
    kl = torch.zeros(())
    if inp.ref is not None and kl_coef > 0:
        kl_tok = kl_penalty(inp.logp, inp.ref, kl_estimator)
        loss = loss + (kl_coef * kl_tok * inp.weights).sum()
        kl = kl_tok.detach().sum()
    return PolicyTerms(
        loss,
        float(policy.detach()),
        float(kl),
        float(inp.entropy.detach().sum()),
        float(clipped.sum()),
        capped,
    )


PolicyLoss = Callable[..., PolicyTerms]
POLICY_LOSSES: dict[str, PolicyLoss] = {"clip": clip_loss}
"""name (``algo.policy_loss``) -> per-micro-batch loss from ``PolicyInputs``."""
