"""The GRPO family and PPO pieces, each against numbers worked out by hand (arithmetic in
the comments), with masks, padding and edge cases."""

from __future__ import annotations

import math
import typing

import pytest
import torch

from rlagent import algos, shaping
from rlagent.config import AlgoConfig
from rlagent.learner.models import lr_factor

T = torch.tensor


def close(got: torch.Tensor, want, atol: float = 1e-6) -> bool:
    return torch.allclose(got.float(), torch.tensor(want, dtype=torch.float32), atol=atol)


def test_registry_covers_every_configurable_name():
    names = typing.get_args(typing.get_type_hints(AlgoConfig)["name"])
    assert set(algos.ESTIMATORS) == set(names)


# ---------------------------------------------------------------- RLOO
def test_rloo_by_hand():
    # group 0 [1, 0, 0, 1]: 1 - (0 + 0 + 1) / 3 = 2/3; 0 - (1 + 0 + 1) / 3 = -2/3
    # group 1 [3, 5]: 3 - 5 = -2; 5 - 3 = 2.  group 2 has one episode: 0.
    got = algos.rloo_advantages(T([1.0, 0, 0, 1, 3, 5, 7]), T([0, 0, 0, 0, 1, 1, 2]), T([True] * 7))
    assert got.tolist() == pytest.approx([2 / 3, -2 / 3, -2 / 3, 2 / 3, -2, 2, 0], abs=1e-6)


def test_rloo_leaves_out_invalid_and_equals_scaled_centring():
    # valid [1, 0, 1]: 1 - 0.5 = 0.5, 0 - 1 = -1, 0.5; the invalid 9 gets 0.
    # n / (n - 1) * (r - mean): 3/2 * (1 - 2/3) = 0.5, 3/2 * (0 - 2/3) = -1
    got = algos.rloo_advantages(T([1.0, 9, 0, 1]), T([0, 0, 0, 0]), T([True, False, True, True]))
    assert got.tolist() == pytest.approx([0.5, 0, -1, 0.5], abs=1e-6)
    assert algos.rloo_advantages(T([2.0, 2]), T([0, 0]), T([True, True])).tolist() == [0, 0]


# ---------------------------------------------------------------- whitening, token rewards
def test_whiten_ignores_masked_positions():
    # masked values [1, 2, 3]: mean 2, population variance (1 + 0 + 1) / 3, std 0.816497
    got = algos.whiten(T([[1.0, 2], [3, 100]]), T([[1, 1], [1, 0]]))
    assert close(got, [[-1.224745, 0], [1.224745, 0]], 1e-5)


@pytest.mark.parametrize("value, n", [(0.1, 37), (0.3, 100), (0.7, 256)])
def test_whiten_of_all_equal_values_is_zero(value, n):
    # REINFORCE++ with gamma 1 and no KL: when every valid episode earns the same reward
    # (e.g. a 0.1 format credit), every policy token's return is that value. In float32
    # x - mean is then a rounding residue of ~1e-8, the size of eps, and dividing by
    # std + eps would turn it into one-sign advantages of 0.6-0.9. No spread: no signal.
    x = torch.full((1, n), value)
    got = algos.whiten(x, torch.ones(1, n))
    assert got.abs().max() == 0, got
    inp = algos.AdvantageInputs(
        rewards=T([value, value]), groups=T([0, 1]), valid=T([True, True]), mask=torch.ones(2, n)
    )
    adv, _ = algos.ESTIMATORS["reinforce_pp"](inp)
    assert adv.abs().max() == 0, adv


def test_token_rewards_put_the_outcome_on_the_last_policy_token():
    mask = T([[0, 1, 1, 0], [1, 0, 1, 1], [0, 0, 0, 0]])
    kl = T([[0.1, 0.2, 0.3, 0.4], [0.5, 0.5, 0.5, 0.5], [1.0, 1, 1, 1]])
    # row 0: -0.1 * 0.2 = -0.02 at 1; 2 - 0.1 * 0.3 = 1.97 at 2 (its last policy token)
    # row 1: -0.05 at 0 and 2; -1 - 0.05 = -1.05 at 3.  row 2 (empty response): nothing.
    got = algos.token_rewards(mask, T([2.0, -1, 5]), kl, kl_coef=0.1)
    assert close(got, [[0, -0.02, 1.97, 0], [-0.05, 0, -0.05, -1.05], [0, 0, 0, 0]], 1e-6)


# ---------------------------------------------------------------- returns and GAE
def test_discounted_returns_by_hand():
    # gamma 0.9 over [1, 0, 2]: G2 = 2, G1 = 0.9 * 2 = 1.8, G0 = 1 + 0.9 * 1.8 = 2.62
    got = algos.discounted_returns(T([[1.0, 0, 2]]), T([[1, 1, 1]]), gamma=0.9)
    assert close(got, [[2.62, 1.8, 2.0]], 1e-6)


MASK = T([[1, 1, 0, 1, 0]])  # an observation token at 2, padding at 4
REWARDS = T([[0.0, 0, 0, 1, 0]])  # outcome 1 on the last policy token
VALUES = T([[0.5, 0.6, 9.0, 0.8, 7.0]])  # 9 and 7 sit off the mask and must be ignored


def test_gae_skips_observation_tokens():
    # policy tokens: r = [0, 0, 1], V = [0.5, 0.6, 0.8]; gamma 0.5, lambda 0.5 (gl = 0.25)
    # delta2 = 1 - 0.8 = 0.2                 A2 = 0.2
    # delta1 = 0 + 0.5 * 0.8 - 0.6 = -0.2    A1 = -0.2 + 0.25 * 0.2 = -0.15
    # delta0 = 0 + 0.5 * 0.6 - 0.5 = -0.2    A0 = -0.2 + 0.25 * -0.15 = -0.2375
    # returns = A + V = [0.2625, 0.45, 1.0]
    adv, ret = algos.gae(REWARDS, VALUES, MASK, gamma=0.5, lam=0.5)
    assert close(adv, [[-0.2375, -0.15, 0, 0.2, 0]], 1e-6)
    assert close(ret, [[0.2625, 0.45, 0, 1.0, 0]], 1e-6)


def test_gae_with_lambda_1_gamma_1_is_returns_minus_values():
    # by hand: returns-to-go [1, 1, 1] minus V [0.5, 0.6, 0.8] = [0.5, 0.4, 0.2]
    adv, ret = algos.gae(REWARDS, VALUES, MASK, gamma=1.0, lam=1.0)
    assert close(adv, [[0.5, 0.4, 0, 0.2, 0]], 1e-6)
    assert close(ret, [[1, 1, 0, 1, 0]], 1e-6)
    # and on random rewards, values and masks, row by row
    g = torch.Generator().manual_seed(0)
    r, v = torch.randn(6, 9, generator=g), torch.randn(6, 9, generator=g)
    mask = (torch.rand(6, 9, generator=g) > 0.3).long()
    mask[5] = 0  # an empty response
    adv, _ = algos.gae(r, v, mask, 1.0, 1.0)
    want = (algos.discounted_returns(r, mask) - v) * mask
    assert torch.allclose(adv, want, atol=1e-5)


def test_gae_of_empty_batch_rows_is_zero():
    adv, ret = algos.gae(torch.ones(2, 3), torch.ones(2, 3), torch.zeros(2, 3))
    assert adv.abs().sum() == 0 and ret.abs().sum() == 0


# ---------------------------------------------------------------- turn-level credit
def test_turn_advantages_by_hand():
    # group 0: episode a turn rewards [1, 0] -> returns [1, 0]; b [0, 0, 1] -> [1, 1, 1]
    #   all turn returns [1, 0, 1, 1, 1]: mean 0.8, population var (4 * 0.04 + 0.64) / 5 = 0.16
    #   std 0.4 -> a: [0.5, -2], b: [0.5, 0.5, 0.5]
    # group 1: c [2, 2] -> returns [4, 2], mean 3, std 1 -> [1, -1]; d is not valid -> 0
    got = shaping.turn_advantages([[1, 0], [0, 0, 1], [2, 2], [5]], [0, 0, 1, 1], [True, True, True, False])
    assert got[0] == pytest.approx([0.5, -2], abs=1e-5)
    assert got[1] == pytest.approx([0.5, 0.5, 0.5], abs=1e-5)
    assert got[2] == pytest.approx([1, -1], abs=1e-5) and got[3] == [0.0]
    # returns [1, 1] and [1, 1]: all equal, no signal
    assert shaping.turn_advantages([[0, 1], [0, 1]], [0, 0], [True, True]) == [[0, 0], [0, 0]]


# ---------------------------------------------------------------- estimators on a batch
def test_reinforce_pp_whitens_returns_over_tokens():
    # rewards [1, 0]; row 0 has 2 policy tokens, row 1 one (plus padding): token returns
    # [1, 1, 0], mean 2/3, population std sqrt(2/9) = 0.471405 -> [0.707107, 0.707107, -1.414214]
    inp = algos.AdvantageInputs(
        rewards=T([1.0, 0]), groups=T([0, 1]), valid=T([True, True]), mask=T([[1, 1, 0], [0, 1, 0]])
    )
    adv, returns = algos.ESTIMATORS["reinforce_pp"](inp)
    assert close(adv, [[0.707107, 0.707107, 0], [0, -1.414214, 0]], 1e-5)
    assert returns is None


def test_grpo_with_kl_in_the_reward():
    # k1 KL summed per episode: row 0 0.5 + 0.5 = 1, row 1 0; coef 0.5 -> rewards [1 - 0.5, 1]
    # group [0.5, 1]: mean 0.75, sample std 0.353553 -> [-0.707107, 0.707107] on every token
    mask = T([[1.0, 1], [1, 0]])
    inp = algos.AdvantageInputs(
        rewards=T([1.0, 1]),
        groups=T([0, 0]),
        valid=T([True, True]),
        mask=mask,
        kl=T([[0.5, 0.5], [0, 9]]) * mask,
        kl_coef=0.5,
    )
    adv, _ = algos.ESTIMATORS["grpo"](inp)
    assert close(adv, [[-0.707107, -0.707107], [0.707107, 0]], 1e-5)


def test_ppo_estimator_whitens_gae_and_keeps_raw_returns():
    inp = algos.AdvantageInputs(rewards=T([1.0]), groups=T([0]), valid=T([True]), mask=MASK, values=VALUES)
    adv, ret = algos.ESTIMATORS["ppo"](inp)
    # raw GAE [0.5, 0.4, 0.2] (see above): mean 11/30, pop std 0.124722
    # -> [1.069045, 0.267261, -1.336306]; returns [1, 1, 1]
    assert close(adv, [[1.069045, 0.267261, 0, -1.336306, 0]], 1e-5)
    assert close(ret, [[1, 1, 0, 1, 0]], 1e-6)
    with pytest.raises(ValueError, match="critic"):
        algos.ESTIMATORS["ppo"](algos.AdvantageInputs(T([1.0]), T([0]), T([True]), MASK))


# ---------------------------------------------------------------- losses
def test_dual_clip_bounds_negative_advantages():
    # clip 0.2 / 0.2, dual clip 3:
    # ratio 5, A -1: max(5, 1.2) = 5 > 3 -> 3 (dual-clipped)
    # ratio 5, A +1: max(-5, -1.2) = -1.2 (ordinary clip; dual clip only for A < 0)
    # ratio 0.5, A -1: max(0.5, 0.8) = 0.8 < 3 -> 0.8 (ordinary clip)
    # ratio 1, A -2: 2 < 6 -> 2, not clipped
    ratio = T([5.0, 5, 0.5, 1])
    loss, clipped = algos.clipped_policy_loss(
        ratio.log(), torch.zeros(4), T([-1.0, 1, -1, -2]), 0.2, 0.2, dual_clip=3.0
    )
    assert loss.tolist() == pytest.approx([3, -1.2, 0.8, 2], abs=1e-5)
    assert clipped.tolist() == [True, True, True, False]


def test_kl_estimators_by_hand():
    # logp -1, ref -1.5: d = 0.5. k1 = 0.5, k2 = 0.125, k3 = e^-0.5 + 0.5 - 1 = 0.106531
    lp, ref = T([-1.0]), T([-1.5])
    assert algos.kl_penalty(lp, ref, "k1").item() == pytest.approx(0.5)
    assert algos.kl_penalty(lp, ref, "k2").item() == pytest.approx(0.125)
    assert algos.kl_penalty(lp, ref, "k3").item() == pytest.approx(math.exp(-0.5) - 0.5, abs=1e-6)
    with pytest.raises(ValueError, match="k4"):
        algos.kl_penalty(lp, ref, "k4")


# A two-token vocabulary: logits theta = (ln 3, 0) give pi = (0.75, 0.25); ref = (0.5, 0.5).
# d(x) = ln(pi / ref) = (ln 1.5, ln 0.5) = (0.405465, -0.693147); grad_theta ln pi(x) = e_x - pi:
# x=0 (0.25, -0.25), x=1 (-0.75, 0.75). Exact expectations over x ~ pi (on-policy tokens):
#   grad KL(pi || ref) = E[d grad ln pi] = 0.75*0.405465*(0.25, -0.25) + 0.25*(-0.693147)*(-0.75, 0.75)
#                      = (0.076025 + 0.129965) * (1, -1) = (0.205990, -0.205990)
#   grad KL(ref || pi) = -E_ref[grad ln pi] = -(0.5*(0.25, -0.25) + 0.5*(-0.75, 0.75)) = (0.25, -0.25)
REVERSE, FORWARD = 0.205990, 0.25


def _expected_kl_gradient(estimator: str, mode: str) -> float:
    """d/d theta_0 of what the learner does with the KL, in expectation over x ~ pi."""
    theta = torch.tensor([math.log(3.0), 0.0], requires_grad=True)
    logp = torch.log_softmax(theta, 0)
    ref = torch.log(T([0.5, 0.5]))
    pi = logp.exp().detach()
    k = algos.kl_penalty(logp, ref, estimator)
    # loss: beta * KL_t added to the token's loss, differentiated through logp.
    # reward: -beta * KL_t in the reward, a constant to the policy gradient: -A ln pi, A = -KL.
    surrogate = (pi * k).sum() if mode == "loss" else (pi * k.detach() * logp).sum()
    (grad,) = torch.autograd.grad(surrogate, theta)
    assert float(grad[0]) == pytest.approx(-float(grad[1]), abs=1e-6)
    return float(grad[0])


@pytest.mark.parametrize(
    "estimator, mode, want",
    [
        ("k1", "loss", 0.0),  # E_pi[grad ln pi] = 0: no regularisation at all -> refused
        ("k2", "loss", REVERSE),  # grad (d^2 / 2) = d grad ln pi
        ("k3", "loss", FORWARD),  # grad (ref/pi - 1 + d) = (1 - ref/pi) grad ln pi
        ("k1", "reward", REVERSE),  # the score-function gradient of E_pi[d]
        # E[d^2/2 grad ln pi] = 0.75*0.082201*0.25 - 0.25*0.240227*0.75 = -0.029630: away from ref
        ("k2", "reward", -0.029630),
        # E[(ref/pi - 1 + d) grad ln pi] = REVERSE - FORWARD = -0.044010: away from ref -> refused
        ("k3", "reward", REVERSE - FORWARD),
    ],
)
def test_kl_gradient_direction_by_hand(estimator, mode, want):
    assert _expected_kl_gradient(estimator, mode) == pytest.approx(want, abs=1e-5)


@pytest.mark.parametrize(
    "estimator, mode, accepted",
    [
        ("k1", "loss", False),
        ("k2", "loss", True),
        ("k3", "loss", True),
        ("auto", "loss", True),
        ("k1", "reward", True),
        ("k2", "reward", False),
        ("k3", "reward", False),
        ("auto", "reward", True),
    ],
)
def test_only_kl_pairs_with_a_kl_gradient_are_accepted(estimator, mode, accepted):
    from rlagent.config import ConfigError, load_config

    args = ["algo.kl_coef=0.1", f"algo.kl_estimator={estimator}", f"algo.kl_mode={mode}"]
    if accepted:
        cfg = load_config(None, args)
        assert (
            cfg.algo.kl_estimator_used == {"loss": "k3", "reward": "k1"}.get(mode)
            if estimator == "auto"
            else estimator
        )
    else:
        with pytest.raises(ConfigError, match="algo.kl_estimator: "):
            load_config(None, args)
    load_config(None, args[1:])  # without a KL term any pair is fine: nothing is computed


def test_value_loss_by_hand():
    # V 1.0, old 0.5, R 2: plain (1-2)^2 = 1; clipped V 0.7, (0.7-2)^2 = 1.69 -> 0.5 * 1.69
    # V 0.0, old 0.5, R 0: plain 0; clipped V 0.3 -> 0.09 -> 0.045
    # V 0.6, old 0.5, R 1: inside the clip: 0.16 both -> 0.08, not clipped
    loss, clipped = algos.value_loss(T([1.0, 0, 0.6]), T([0.5, 0.5, 0.5]), T([2.0, 0, 1]), 0.2)
    assert loss.tolist() == pytest.approx([0.845, 0.045, 0.08], abs=1e-6)
    assert clipped.tolist() == [True, True, False]
    loss, _ = algos.value_loss(T([1.0, 0, 0.6]), T([0.5, 0.5, 0.5]), T([2.0, 0, 1]), None)
    assert loss.tolist() == pytest.approx([0.5, 0, 0.08], abs=1e-6)


def test_truncated_importance_weights():
    # e^(−1 + 1.5) = 1.648721 capped at 1.5; e^(−2 + 1) = 0.367879
    w = algos.truncated_is_weights(T([-1.0, -2]), T([-1.5, -1]), cap=1.5)
    assert w.tolist() == pytest.approx([1.5, 0.367879], abs=1e-6) and not w.requires_grad


LOSS = T([[1.0, 2, 3, 0], [4, 0, 0, 0], [9, 9, 9, 9]])
LMASK = T([[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]])  # the last row is an empty response


@pytest.mark.parametrize(
    "mode, want",
    [
        ("token-mean", (1 + 2 + 3 + 4) / 4),  # 2.5
        ("seq-mean-token-sum", ((1 + 2 + 3) + 4) / 2),  # 5: the empty row is not a sequence
        ("seq-mean-token-mean", ((1 + 2 + 3) / 3 + 4) / 2),  # 3
    ],
)
def test_loss_aggregation_by_hand(mode, want):
    assert shaping.aggregate(LOSS, LMASK, mode).item() == pytest.approx(want)


def test_loss_weights_split_across_micro_batches_sum_to_the_whole():
    # Two micro-batches weighted with the whole batch's totals add up to the aggregate.
    for mode in shaping.LOSS_AGGREGATIONS:
        parts = sum((LOSS[r] * shaping.loss_weights(LMASK[r], mode, 4.0, 2.0)).sum() for r in ([0], [1, 2]))
        assert parts.item() == pytest.approx(shaping.aggregate(LOSS, LMASK, mode).item())


# ---------------------------------------------------------------- batch shaping
def test_overlong_penalty_by_hand():
    # max 10, buffer 4: free up to 6 tokens; 8 -> -(8 - 6) / 4 = -0.5; 10 and beyond -> -1
    got = shaping.overlong_penalty(T([5, 6, 8, 10, 12]), max_len=10, buffer=4)
    assert got.tolist() == pytest.approx([0, 0, -0.5, -1, -1])
    assert shaping.overlong_penalty(T([8]), 10, 4, factor=0.5).tolist() == [-0.25]
    assert shaping.overlong_penalty(T([99]), 10, 0).tolist() == [0.0]


def test_informative_groups():
    # 0: [1, 0] informative; 1: [1, 1] all equal; 2: one valid reward; 3: [0.2, None, 0.4]
    rewards = [1, 0, 1, 1, 0.5, None, 0.2, None, 0.4]
    groups = [0, 0, 1, 1, 2, 2, 3, 3, 3]
    assert shaping.informative_groups(rewards, groups) == {0, 3}


# ---------------------------------------------------------------- learning-rate schedule
def test_lr_schedule_by_hand():
    # warmup 2: steps 0, 1 -> 1/2, 2/2. Then over the 8 steps left (total 10):
    # linear to 0.1 at progress 4/8 = 0.5 -> 1 - 0.9 * 0.5 = 0.55; at the end 0.1
    # cosine at progress 0.5 -> 0.1 + 0.9 * 0.5 * (1 + cos(pi / 2)) = 0.55
    f = lambda s, sched: lr_factor(s, 10, 2, sched, 0.1)  # noqa: E731
    assert [f(s, "linear") for s in (0, 1, 2, 6, 10)] == pytest.approx([0.5, 1, 1, 0.55, 0.1])
    assert [f(s, "cosine") for s in (2, 6, 10)] == pytest.approx([1, 0.55, 0.1])
    assert [f(s, "constant") for s in (0, 5, 50)] == pytest.approx([0.5, 1, 1])


def _policy_inputs(ratio, adv, weights, entropy=(0.0, 0.0, 0.0), ref_ratio=None, sampling_ratio=None):
    """Three trained tokens at logp = -1 whose ratios pi / pi_old (and pi / pi_ref, pi_old /
    pi_sampling) are the given ones."""
    logp = torch.full((3,), -1.0, requires_grad=True)
    log = lambda xs: torch.log(T(xs))  # noqa: E731
    old = logp.detach() - log(ratio)
    return algos.PolicyInputs(
        logp=logp,
        old=old,
        sampling=old - log(sampling_ratio) if sampling_ratio else old.clone(),
        advantages=T(adv),
        weights=T(weights),
        entropy=T(entropy),
        ref=None if ref_ratio is None else logp.detach() - log(ref_ratio),
    )


def test_clip_loss_by_hand():
    # ratios 1.5, 0.5, 1 with A = 1, -1, 2, weights 0.5, 0.25, 0.25:
    #   token 0: max(-1.5, -1.2) = -1.2 (clipped); token 1: max(0.5, 0.8) = 0.8 (clipped);
    #   token 2: -2. Surrogate: 0.5 * -1.2 + 0.25 * 0.8 + 0.25 * -2 = -0.9.
    # Entropy 1, 2, 0.5 at coef 0.1: -0.1 * (0.5 + 0.5 + 0.125) = -0.1125.
    # KL (k3) with pi / ref = 1, 2, 1: only token 1, e^-ln2 + ln2 - 1 = 0.193147, at coef 0.5
    # and weight 0.25: 0.024143. Loss -0.9 - 0.1125 + 0.024143 = -0.988357.
    inp = _policy_inputs(
        [1.5, 0.5, 1.0],
        [1.0, -1.0, 2.0],
        [0.5, 0.25, 0.25],
        entropy=[1.0, 2.0, 0.5],
        ref_ratio=[1.0, 2.0, 1.0],
    )
    terms = algos.POLICY_LOSSES["clip"](inp, 0.2, 0.2, kl_coef=0.5, kl_estimator="k3", entropy_coef=0.1)
    assert terms.policy == pytest.approx(-0.9, abs=1e-6)
    assert float(terms.loss.detach()) == pytest.approx(-0.988357, abs=1e-6)
    assert terms.kl == pytest.approx(0.193147, abs=1e-6) and terms.entropy == pytest.approx(3.5)
    assert (terms.clipped, terms.capped) == (2.0, 0.0)
    # Gradients: a clipped token's surrogate has none; token 2's is -A * ratio * w = -2 * 1 *
    # 0.25 = -0.5; the KL adds kl_coef * w * (1 - ref / pi) = 0.5 * 0.25 * (1 - 0.5) = 0.0625
    # on token 1 (0 where pi = ref).
    (grad,) = torch.autograd.grad(terms.loss, inp.logp)
    assert grad.tolist() == pytest.approx([0.0, 0.0625, -0.5], abs=1e-6)


def test_clip_loss_dual_clip_and_tis_by_hand():
    # ratios 4 and 1, A = -1 and 1, weights 0.5 each; pi_old / pi_sampling = 3 and 1.
    #   token 0: max(4, 1.2) = 4, dual clip c = 3 bounds it at -c A = 3 (clipped);
    #   token 1: -1. TIS weights min(3, 2) = 2 (capped) and 1.
    #   Surrogate: 0.5 * 2 * 3 + 0.5 * 1 * -1 = 2.5.
    inp = _policy_inputs([4.0, 1.0, 1.0], [-1.0, 1.0, 0.0], [0.5, 0.5, 0.0], sampling_ratio=[3.0, 1.0, 1.0])
    terms = algos.clip_loss(inp, 0.2, 0.2, dual_clip=3.0, tis_cap=2.0)
    assert terms.policy == pytest.approx(2.5, abs=1e-5)
    assert float(terms.loss.detach()) == pytest.approx(2.5, abs=1e-5)
    assert (terms.clipped, terms.capped) == (1.0, 1.0) and terms.kl == 0.0
