"""Every algorithm option runs through the real DeepSpeed learner and does what it says:
the critic learns, an entropy bonus alone moves the weights, LoRA trains only adapters and
ships merged weights, mini-batches make several optimizer steps."""
import math

import pytest
import ray
import torch

from rlagent.config import load_config
from rlagent.records import TrainBatch

pytestmark = pytest.mark.slow

LENGTHS = (10, 14, 9, 12, 14, 11)


def batch(rewards=(1.0, 0.0, 1.0, 0.0, 0.5, 0.0), advantages=None) -> TrainBatch:
    """Six episodes of two groups: 4 prompt tokens, then policy tokens, right-padded."""
    g = torch.Generator().manual_seed(0)
    rows, masks, olds = [], [], []
    for n in LENGTHS:
        ids = torch.randint(7, 17, (n,), generator=g).tolist()
        mask = [0] * 4 + [1] * (n - 4)
        rows.append(ids + [1] * (14 - n))
        masks.append(mask + [0] * (14 - n))
        olds.append([(-2.8 if m else 0.0) for m in mask] + [0.0] * (14 - n))  # ~ -log(17)
    return TrainBatch(rows, masks, olds, list(LENGTHS), pad_id=1, rewards=list(rewards),
                      valid=[True] * 6, groups=[0, 0, 0, 1, 1, 1], advantages=advantages)


def learner(tiny_model, *overrides):
    from rlagent.actors import LearnerGroup

    cfg = load_config(None, ["learner.lr=0.01", "learner.micro_batch_size=4", "learner.threads=1",
                             "learner.num_cpus=0.5", "algo.group_size=3", "algo.tasks_per_step=2",
                             *overrides])
    return LearnerGroup(cfg, tiny_model)


def weights(group) -> dict[str, torch.Tensor]:
    return dict(ray.get(group.named_weights_refs()[0]))


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


@pytest.mark.parametrize("opts", [
    ["algo.name=rloo", "algo.loss_agg=seq-mean-token-mean", "algo.dual_clip=3",
     "algo.epochs=2", "algo.mini_batches=2"],
    ["algo.name=reinforce_pp", "algo.kl_coef=0.1", "algo.kl_mode=reward", "algo.kl_estimator=k1",
     "learner.warmup_steps=2", "learner.lr_schedule=cosine"],
    ["algo.name=dr_grpo", "algo.kl_coef=0.1", "algo.kl_estimator=k2", "algo.old_logprobs=recompute",
     "algo.tis_cap=2", "algo.loss_agg=seq-mean-token-sum", "learner.gradient_checkpointing=true"],
])
def test_options_train_and_report(tiny_model, ray_cluster, opts):
    group = learner(tiny_model, *opts)
    try:
        before = weights(group)
        m = group.train_step(batch())
        after = weights(group)
    finally:
        close(group)
    assert changed(before, after), "no weight moved"
    for key in ("loss/policy", "entropy", "clip_fraction", "approx_kl", "grad_norm", "lr",
                "advantage/mean", "advantage/std", "train/logprob_gap"):
        assert math.isfinite(m[key]), (key, m)
    assert m["advantage/std"] > 0
    if "algo.kl_coef=0.1" in opts:
        assert "kl" in m
    if "learner.warmup_steps=2" in opts:
        assert m["lr"] == pytest.approx(0.01)  # step 0 of a 2-step warmup ran at 0.005; now 2/2
    if "algo.old_logprobs=recompute" in opts:
        # the learner's own logprobs vs the made-up sampling ones (-2.8): a real gap
        assert m["train/logprob_gap"] > 0.01


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
    group = learner(tiny_model, "learner.lora_rank=4", "learner.lora_alpha=8",
                    "algo.kl_coef=0.05", "learner.lr=0.05")
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
