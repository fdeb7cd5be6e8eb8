"""Every algorithm option runs through the real DeepSpeed learner and does what it says:
the critic learns, an entropy bonus alone moves the weights, LoRA trains only adapters and
ships merged weights, mini-batches make several optimizer steps."""

import math

import pytest
import ray
import torch
from support.batches import batch

from rlagent.config import load_config
from rlagent.records import TrainBatch

pytestmark = pytest.mark.slow


def learner(tiny_model, *overrides):
    from rlagent.learner.group import LearnerGroup

    cfg = load_config(
        None,
        [
            "learner.lr=0.01",
            "learner.micro_batch_size=4",
            "learner.threads=1",
            "learner.num_cpus=0.5",
            "algo.group_size=3",
            "algo.tasks_per_step=2",
            *overrides,
        ],
    )
    return LearnerGroup(cfg, tiny_model)


def weights(group) -> dict[str, torch.Tensor]:
    return dict(ray.get(group.gather_weights()[0]))


def close(group):
    for r in group.ranks:
        ray.kill(r)


def changed(before, after) -> set[str]:
    return {k for k in before if not torch.equal(before[k], after[k])}


def test_ppo_critic_value_loss_falls_on_a_fixed_batch(tiny_model, ray_cluster):
    group = learner(tiny_model, "algo.name=ppo", "learner.critic_lr=0.002", "algo.value_clip=null")
    try:
        losses = [group.train_step(batch())["loss/value"] for _ in range(8)]
    finally:
        close(group)
    # The head starts at 0: the first loss is 0.5 * mean(R^2) over policy tokens, with the
    # return R = the episode's reward on each of its tokens (gamma = lambda = 1):
    # tokens 6, 10, 5, 8, 10, 7 with rewards 1, 0, 1, 0, 0.5, 0 -> (6 + 5 + 0.25 * 10) / 46 / 2
    assert losses[0] == pytest.approx((6 + 5 + 2.5) / 46 / 2, rel=1e-4)
    assert losses[-1] < 0.5 * losses[0], losses


def shifted(b: TrainBatch, tiny_model, shift: float) -> TrainBatch:
    """``b`` with sampling logprobs set to the tiny model's own (what the learner computes
    before its update) minus ``shift``: every policy token's ratio is e^shift."""
    from transformers import AutoModelForCausalLM

    from rlagent.learner.logprobs import token_logprobs

    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    ids, mask = torch.tensor(b.input_ids), torch.tensor(b.loss_mask)
    attn = (torch.arange(ids.shape[1])[None] < torch.tensor(b.lengths)[:, None]).long()
    with torch.no_grad():
        lp, _ = token_logprobs(model, ids, attn, mask)
    old = torch.zeros(ids.shape)
    old[:, 1:][mask[:, 1:].bool()] = lp - shift
    b.old_logprobs = old.tolist()
    return b


# Rows 0, 2, 4 get A = +1 (6 + 5 + 10 = 21 policy tokens), rows 1, 3, 5 A = -1 (10 + 8 + 7 =
# 25); 46 tokens in all. With every ratio at e^0.5 = 1.648721:
#   A > 0: max(-1.648721, -1.2) = -1.2, clipped.   A < 0: max(1.648721, 1.2) = 1.648721, not.
PLUS_MINUS = [1.0, -1.0, 1.0, -1.0, 1.0, -1.0]
RATIO = math.exp(0.5)


@pytest.mark.parametrize(
    "opts, clip_fraction, loss",
    [
        # clip: 21 of 46 tokens clipped; loss (21 * -1.2 + 25 * 1.648721) / 46 = 0.348349
        ([], 21 / 46, (21 * -1.2 + 25 * RATIO) / 46),
        # dual clip c = 1.5 bounds the A < 0 tokens at -c A = 1.5: all 46 clipped,
        # loss (21 * -1.2 + 25 * 1.5) / 46 = 0.267391
        (["algo.dual_clip=1.5"], 1.0, (21 * -1.2 + 25 * 1.5) / 46),
        # clip-higher 0.7 > 0.648721: nothing clipped; (21 * -1.648721 + 25 * 1.648721) / 46
        (["algo.clip_high=0.7"], 0.0, 4 * RATIO / 46),
    ],
)
def test_clipping_engages_on_real_ratios(tiny_model, ray_cluster, opts, clip_fraction, loss):
    group = learner(tiny_model, *opts)
    try:
        m = group.train_step(shifted(batch(advantages=PLUS_MINUS), tiny_model, 0.5))
    finally:
        close(group)
    assert m["clip_fraction"] == pytest.approx(clip_fraction, abs=1e-6)
    assert m["loss/policy"] == pytest.approx(loss, abs=1e-4)
    assert m["approx_kl"] == pytest.approx(-0.5, abs=1e-4)  # mean log pi_old - log pi


@pytest.mark.parametrize("cap, weight", [(1.2, 1.2), (2.0, RATIO)])
def test_truncated_importance_sampling_caps_the_weights(tiny_model, ray_cluster, cap, weight):
    # recompute: pi_old is the learner's own (= pi, ratio 1, nothing clipped), and the engine's
    # sampling logprobs are 0.5 lower, so every TIS weight is e^0.5 = 1.648721, capped at
    # `cap`. loss = weight * (21 * -1 + 25 * 1) / 46.
    group = learner(tiny_model, "algo.old_logprobs=recompute", f"algo.tis_cap={cap}")
    try:
        m = group.train_step(shifted(batch(advantages=PLUS_MINUS), tiny_model, 0.5))
    finally:
        close(group)
    assert m["tis/capped_fraction"] == (1.0 if cap < RATIO else 0.0)
    assert m["loss/policy"] == pytest.approx(weight * 4 / 46, abs=1e-4)
    assert m["clip_fraction"] == 0.0
    assert m["train/logprob_gap"] == pytest.approx(0.5, abs=1e-4)


@pytest.mark.parametrize(
    "opts",
    [
        [
            "algo.name=rloo",
            "algo.loss_agg=seq-mean-token-mean",
            "algo.dual_clip=3",
            "algo.epochs=2",
            "algo.mini_batches=2",
        ],
        [
            "algo.name=reinforce_pp",
            "algo.kl_coef=0.1",
            "algo.kl_mode=reward",
            "algo.kl_estimator=k1",
            "learner.warmup_steps=2",
            "learner.lr_schedule=cosine",
        ],
        [
            "algo.name=dr_grpo",
            "algo.kl_coef=0.1",
            "algo.kl_estimator=k2",
            "algo.old_logprobs=recompute",
            "algo.tis_cap=2",
            "algo.loss_agg=seq-mean-token-sum",
            "learner.gradient_checkpointing=true",
        ],
    ],
)
def test_options_train_and_report(tiny_model, ray_cluster, opts):
    group = learner(tiny_model, *opts)
    try:
        before = weights(group)
        m = group.train_step(batch())
        after = weights(group)
    finally:
        close(group)
    assert changed(before, after), "no weight moved"
    for key in (
        "loss/policy",
        "entropy",
        "clip_fraction",
        "approx_kl",
        "grad_norm",
        "lr",
        "advantage/mean",
        "advantage/std",
        "train/logprob_gap",
    ):
        assert math.isfinite(m[key]), (key, m)
    assert m["advantage/std"] > 0
    if "algo.kl_coef=0.1" in opts:
        assert "kl" in m
    if "learner.warmup_steps=2" in opts:
        assert m["lr"] == pytest.approx(0.01)  # step 0 of a 2-step warmup ran at 0.005; now 2/2
    if "algo.old_logprobs=recompute" in opts:
        # the learner's own logprobs vs the made-up sampling ones (-2.8): a real gap
        assert m["train/logprob_gap"] > 0.01


@pytest.mark.parametrize("mode, estimator", [("reward", "k1"), ("loss", "k3")])
def test_kl_is_logged_in_both_modes(tiny_model, ray_cluster, mode, estimator):
    """The logged ``kl`` is the configured estimator's mean over the batch's policy tokens:
    in reward mode at pi_old (here the made-up sampling logprobs -2.8), in loss mode at pi
    during the update (before it: the reference, the initial model, gives 0)."""
    from rlagent.learner.logprobs import token_logprobs

    b = batch()
    group = learner(
        tiny_model,
        "algo.name=reinforce_pp",
        "algo.kl_coef=0.1",
        f"algo.kl_mode={mode}",
        f"algo.kl_estimator={estimator}",
        "learner.lr=1e-9",
    )
    try:
        m = group.train_step(b)
    finally:
        close(group)
    from transformers import AutoModelForCausalLM

    ref = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    ids, mask = torch.tensor(b.input_ids), torch.tensor(b.loss_mask)
    attn = (torch.arange(ids.shape[1])[None] < torch.tensor(b.lengths)[:, None]).long()
    with torch.no_grad():
        ref_lp, _ = token_logprobs(ref, ids, attn, mask)
    if mode == "reward":  # k1 = log pi_old - log pi_ref on every policy token
        want = float((-2.8 - ref_lp).mean())
        assert want > 0.01 and m["kl"] == pytest.approx(want, rel=1e-4), (m["kl"], want)
    else:  # the policy is the reference (lr ~ 0): k3 = 0
        assert abs(m["kl"]) < 1e-6


def test_entropy_bonus_alone_moves_the_weights(tiny_model, ray_cluster):
    zero = batch(advantages=[0.0] * 6)
    for coef, moves in ((0.0, False), (0.1, True)):
        group = learner(tiny_model, f"algo.entropy_coef={coef}", "learner.grad_clip=0")
        try:
            before = weights(group)
            group.train_step(zero)
            assert bool(changed(before, weights(group))) == moves, coef
        finally:
            close(group)


def test_lora_trains_adapters_and_ships_merged_weights(tiny_model, ray_cluster):
    group = learner(
        tiny_model, "learner.lora_rank=4", "learner.lora_alpha=8", "algo.kl_coef=0.05", "learner.lr=0.05"
    )
    try:
        before = weights(group)
        m = group.train_step(batch())
        m = group.train_step(batch())  # the adapters' B starts at 0: a second step moves A too
        after = weights(group)
    finally:
        close(group)
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model).state_dict()
    # exactly the base model's names and shapes: what the engine loads
    assert {k: v.shape for k, v in after.items()} == {k: v.shape for k, v in base.items()}
    moved = changed(before, after)
    assert moved and all(k.endswith("proj.weight") for k in moved), moved
    assert "model.embed_tokens.weight" not in moved  # frozen base
    assert m["kl"] > 0  # the reference is the base model: adapters off
