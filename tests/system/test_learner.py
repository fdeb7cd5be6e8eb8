"""The learner's arithmetic: chunked logprobs equal the plain computation, a group's shared
prompt computed once gives the same logprobs, gradients and update, and two data-parallel
ranks take the step one rank takes on the whole batch."""

import pytest
import torch
from support.batches import _batch, _group_batch, _model

from rlagent.config import load_config
from rlagent.records import TrainBatch


def _train_once(
    tiny_model, ranks: int, stage, batch: TrainBatch | None = None, extra: tuple[str, ...] = ()
) -> tuple[dict, dict]:
    from rlagent.learner.group import LearnerGroup

    cfg = load_config(
        None,
        [
            f"learner.num_ranks={ranks}",
            f"learner.zero_stage={stage}",
            "learner.lr=0.01",
            "learner.micro_batch_size=2",
            "learner.threads=1",
            "learner.num_cpus=0.5",
            "learner.grad_clip=0",
            *extra,
        ],
    )
    group = LearnerGroup(cfg, tiny_model)
    metrics = group.train_step(batch or _batch())
    import ray

    weights = dict(ray.get(group.gather_weights()[0]))
    for r in group.ranks:
        ray.kill(r)
    return metrics, weights


@pytest.mark.slow
@pytest.mark.parametrize("stage", [0, 1, 2])
def test_two_ranks_take_the_single_rank_step(tiny_model, ray_cluster, stage):
    one_m, one_w = _train_once(tiny_model, 1, 0)
    two_m, two_w = _train_once(tiny_model, 2, stage)
    assert one_m["train/tokens"] == two_m["train/tokens"] == sum(n - 4 for n in (10, 14, 9, 12, 14, 11))
    assert abs(one_m["loss/policy"] - two_m["loss/policy"]) < 1e-6
    # Adam's first step is blind to the gradient's scale; the norm is not.
    assert abs(one_m["grad_norm"] - two_m["grad_norm"]) < 1e-4 * one_m["grad_norm"]
    base = _model(tiny_model).state_dict()
    name = "model.layers.0.mlp.up_proj.weight"
    assert not torch.equal(one_w[name], base[name]), "the update changed nothing"
    for k, v in one_w.items():
        # Adam's first step is ~lr * sign(g): where |g| ~ 1e-8 rounding can move an element.
        close = torch.isclose(v, two_w[k], atol=1e-6)
        assert close.float().mean() > 0.999, k


@pytest.mark.slow
def test_shared_prompt_takes_the_same_step(tiny_model, ray_cluster):
    """Through DeepSpeed, with a reference model (KL) and recomputed old logprobs: the step
    with each group's prompt run once equals the step that runs it per episode."""
    extra = ("algo.kl_coef=0.1", "algo.old_logprobs=recompute", "learner.micro_batch_size=3")
    off_m, off_w = _train_once(tiny_model, 1, 0, _group_batch(), (*extra, "learner.share_prompt=false"))
    on_m, on_w = _train_once(tiny_model, 1, 0, _group_batch(), extra)
    for key in ("loss/policy", "kl", "entropy", "train/tokens"):
        assert abs(off_m[key] - on_m[key]) < 1e-5 * max(1.0, abs(off_m[key])), key
    assert abs(off_m["grad_norm"] - on_m["grad_norm"]) < 1e-4 * off_m["grad_norm"]
    for k, v in off_w.items():
        assert torch.isclose(v, on_w[k], atol=1e-6).float().mean() > 0.999, k


@pytest.mark.slow
def test_half_precision_without_zero_starts_adam_at_step_zero(tiny_model):
    """bf16 at ZeRO-0: DeepSpeed's wrapper warms AdamW up with a zero-gradient step; the
    learner undoes it, so the first real step is AdamW's step 1 and no weight was decayed."""
    import os

    from rlagent.learner.worker import Learner
    from rlagent.remote import free_port

    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    cfg = load_config(
        None,
        [
            "model.dtype=bfloat16",
            "learner.zero_stage=0",
            "learner.threads=1",
            "learner.weight_decay=0.1",
            "learner.lr=0.01",
        ],
    )
    learner = Learner(cfg, tiny_model, 0)
    learner.setup("127.0.0.1", free_port())
    opt = learner.engine.optimizer
    assert type(opt).__name__ == "FP16_UnfusedOptimizer" and not opt.optimizer.state
    for half, full in zip(opt.fp16_groups, opt.fp32_groups):
        for h, f in zip(half, full):
            assert torch.equal(h.float(), f)
    learner.train_step(_batch())
    assert {float(s["step"]) for s in opt.optimizer.state.values()} == {1.0}
