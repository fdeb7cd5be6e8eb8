"""Advantages, policy loss, KL and masks, checked against numbers worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from rlagent.algos import clipped_policy_loss, grpo_advantages, kl_k3
from rlagent.shaping import masked_mean, masked_sum


def adv(rewards, groups, valid=None, **kw) -> list[float]:
    valid = [True] * len(rewards) if valid is None else valid
    return grpo_advantages(
        torch.tensor(rewards, dtype=torch.float32), torch.tensor(groups), torch.tensor(valid), **kw
    ).tolist()


# rewards [1, 0, 0, 1]: mean 0.5, deviations ±0.5, sum of squares 1.0,
# sample variance 1/(4-1) = 1/3, std sqrt(1/3) = 0.57735, advantages ±0.5/0.57735 = ±0.86603
A = 0.5 / math.sqrt(1 / 3)


def test_one_group_by_hand():
    assert pytest.approx(0.866025, abs=1e-6) == A
    assert adv([1, 0, 0, 1], [0, 0, 0, 0]) == pytest.approx([A, -A, -A, A], abs=1e-5)


def test_two_groups_interleaved():
    # group 7: [1, 0, 0, 1] as above.
    # group 3: [2, 4, 6]: mean 4, deviations -2, 0, 2, variance (4+0+4)/2 = 4, std 2 -> -1, 0, 1
    rewards = [1, 2, 0, 4, 0, 6, 1]
    groups = [7, 3, 7, 3, 7, 3, 7]
    assert adv(rewards, groups) == pytest.approx([A, -1, -A, 0, -A, 1, A], abs=1e-5)


def test_dr_grpo_only_centres():
    # normalize_std=False: group 0 -> r - 0.5, group 1 -> r - 4
    got = adv([1, 0, 0, 1, 2, 4, 6], [0, 0, 0, 0, 1, 1, 1], normalize_std=False)
    assert got == pytest.approx([0.5, -0.5, -0.5, 0.5, -2, 0, 2], abs=1e-6)


def test_group_of_one_has_no_signal():
    # group 0 has one episode -> 0. group 1: [1, 0], mean 0.5, variance (0.25+0.25)/1 = 0.5,
    # std 0.70711, advantages ±0.5/0.70711 = ±0.70711
    assert adv([5.0, 1, 0], [0, 1, 1]) == pytest.approx([0, 0.707107, -0.707107], abs=1e-5)


def test_all_equal_rewards_give_zero():
    assert adv([1, 1, 1, 1, 0, 1], [0, 0, 0, 0, 1, 1]) == pytest.approx(
        [0, 0, 0, 0, -0.707107, 0.707107], abs=1e-5
    )
    assert adv([3, 3], [0, 0], normalize_std=False) == [0, 0]


@pytest.mark.parametrize("value, n", [(0.9, 3), (0.1, 8), (0.3, 6), (0.7, 16)])
def test_all_equal_non_dyadic_rewards_give_zero(value, n):
    # e.g. a 0.1-weighted format reward that every sample of a task earned: the group
    # carries no signal. Rounding in the float32 mean must not be blown up by 1/(std+eps)
    # (std ~ 1e-8 is far below eps) into advantages of a few percent.
    got = adv([value] * n, [0] * n)
    assert max(abs(a) for a in got) < 1e-6, got


def test_invalid_episodes_excluded_and_zero():
    # The reward 100 is invalid: the stats are those of [1, 0, 0, 1] -> ±0.86603.
    got = adv([1, 0, 100, 0, 1], [0] * 5, valid=[True, True, False, True, True])
    assert got == pytest.approx([A, -A, 0, -A, A], abs=1e-5)
    # Group 1 keeps a single valid episode: no group to compare with -> both 0.
    got = adv([1, 0, 1, 0], [0, 0, 1, 1], valid=[True, True, True, False])
    assert got == pytest.approx([0.707107, -0.707107, 0, 0], abs=1e-5)


def test_advantages_are_float32_for_integer_rewards():
    out = grpo_advantages(torch.tensor([1, 0]), torch.tensor([0, 0]), torch.tensor([True, True]))
    assert out.dtype == torch.float32
    assert out.tolist() == pytest.approx([0.707107, -0.707107], abs=1e-5)


# ---------------------------------------------------------------- clipped loss
# clip_low 0.2, clip_high 0.28 (DAPO clip-higher): the ratio is clipped to [0.8, 1.28].
# loss = -min(ratio * A, clip(ratio) * A); clipped flag: the clipped term was the smaller one.
CASES = [  # ratio, A, loss, clipped
    (1.10, 1.0, -1.10, False),  # inside: -1.1
    (1.25, 1.0, -1.25, False),  # above 1 + clip_low but below 1 + clip_high: still inside
    (1.50, 1.0, -1.28, True),  # min(1.5, 1.28) = 1.28
    (0.50, 1.0, -0.50, False),  # min(0.5, 0.8) = 0.5: a worse ratio is never clipped away
    (0.90, -1.0, 0.90, False),  # inside: -(-0.9)
    (0.50, -1.0, 0.80, True),  # min(-0.5, -0.8) = -0.8
    (0.75, -2.0, 1.60, True),  # min(-1.5, 0.8 * -2 = -1.6) = -1.6
    (1.50, -1.0, 1.50, False),  # min(-1.5, -1.28) = -1.5
    (3.00, 0.0, 0.00, False),  # no advantage, no loss
]


def test_clipped_policy_loss_by_hand():
    ratio, a, want_loss, want_clip = (list(c) for c in zip(*CASES))
    old = torch.full((len(CASES),), -2.0)
    logp = old + torch.log(torch.tensor(ratio))
    loss, clipped = clipped_policy_loss(logp, old, torch.tensor(a), clip_low=0.2, clip_high=0.28)
    assert loss.tolist() == pytest.approx(want_loss, abs=1e-5)
    assert clipped.tolist() == want_clip
    assert clipped.dtype == torch.bool


def test_symmetric_clip_clips_where_asymmetric_does_not():
    # ratio 1.25 with A=1: clip_high 0.2 -> min(1.25, 1.2) = 1.2, clipped
    logp = torch.log(torch.tensor([1.25]))
    loss, clipped = clipped_policy_loss(logp, torch.zeros(1), torch.ones(1), 0.2, 0.2)
    assert loss.item() == pytest.approx(-1.2, abs=1e-6) and clipped.tolist() == [True]


def test_clipped_tokens_get_no_gradient():
    # d loss / d logp = -A * ratio where the unclipped term is used, 0 where clipped.
    # ratios 1.1, 1.5, 0.5 with A=1 -> gradients -1.1, 0, -0.5
    logp = torch.log(torch.tensor([1.1, 1.5, 0.5])).requires_grad_()
    loss, _ = clipped_policy_loss(logp, torch.zeros(3), torch.ones(3), 0.2, 0.28)
    loss.sum().backward()
    assert logp.grad.tolist() == pytest.approx([-1.1, 0.0, -0.5], abs=1e-5)


# ---------------------------------------------------------------- KL and masks


def test_kl_k3_zero_when_equal():
    x = torch.tensor([-0.1, -2.0, -7.5])
    assert kl_k3(x, x.clone()).tolist() == [0.0, 0.0, 0.0]


def test_kl_k3_by_hand():
    # d = ref - logp. d = -1: e^-1 + 1 - 1 = 0.367879; d = 1: e - 1 - 1 = 0.718282
    got = kl_k3(torch.tensor([-1.0, -2.0]), torch.tensor([-2.0, -1.0]))
    assert got.tolist() == pytest.approx([0.367879, 0.718282], abs=1e-6)


def test_kl_k3_is_unbiased():
    # pi = [0.5, 0.5], ref = [0.25, 0.75]. E_pi[k3] = KL(pi || ref)
    # = 0.5 ln(0.5/0.25) + 0.5 ln(0.5/0.75) = 0.5 * 0.693147 - 0.5 * 0.405465 = 0.143841
    pi, ref = torch.tensor([0.5, 0.5]), torch.tensor([0.25, 0.75])
    expected = (pi * kl_k3(pi.log(), ref.log())).sum()
    assert expected.item() == pytest.approx(0.143841, abs=1e-6)


def test_masked_mean_and_sum():
    x = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 100.0]])
    mask = torch.tensor([[1, 0, 1], [1, 1, 0]])
    # (1 + 3 + 4 + 5) / 4 = 3.25; sum 13
    assert masked_mean(x, mask).item() == pytest.approx(3.25)
    assert masked_sum(x, mask).item() == pytest.approx(13.0)


def test_masked_mean_of_empty_mask_is_zero():
    out = masked_mean(torch.tensor([1.0, 2.0]), torch.zeros(2))
    assert out.item() == 0.0 and not torch.isnan(out)
