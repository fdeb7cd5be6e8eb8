"""Resume: `resume=<run dir>` continues the same run directory, step counter, task sampler
and policy version, so the curves continue without gaps or duplicates; a wall-clock budget
ends a run like its last step. (SIGTERM, what `ray job stop` sends, ending a run after its
step with a checkpoint: tests/system/test_job_stop_resume.py.)"""

import json
import shutil
from pathlib import Path

import pytest
from support.runs import tiny_run

from rlagent import checkpoint
from rlagent.config import load_config
from rlagent.curriculum import make_sampler
from rlagent.trainer import train

pytestmark = pytest.mark.slow


def overrides(tiny_model, out, name, steps, *extra):
    return tiny_run(
        tiny_model, out, f"run.steps={steps}", "run.seed=5", "algo.tasks_per_step=3", *extra, name=name
    )


def rows(run_dir: Path) -> list[dict]:
    with open(run_dir / "metrics.jsonl") as f:
        return [json.loads(line) for line in f]


def test_resume_continues_steps_sampler_and_policy_version(tiny_model, ray_cluster, tmp_path):
    import torch
    from safetensors.torch import load_file

    common = ["tracking.wandb_mode=disabled"]
    half = train(load_config(None, overrides(tiny_model, tmp_path, "half", 2, "run.save_every=2", *common)))
    assert (half / "checkpoints" / "latest").read_text() == "step_00002"
    # Resumed at its last step, the run trains no more: the final model it writes through the
    # trainer's restore path is the checkpoint's, bit for bit.
    shutil.rmtree(half / "checkpoints" / "final")
    train(load_config(None, overrides(tiny_model, tmp_path, "half", 2, f"run.resume={half}", *common)))
    saved = load_file(half / "checkpoints" / "step_00002" / "model" / "model.safetensors")
    final = load_file(half / "checkpoints" / "final" / "model.safetensors")
    base = load_file(f"{tiny_model}/model.safetensors")
    assert saved.keys() == final.keys() and all(torch.equal(saved[k], final[k]) for k in saved)
    assert any(not torch.equal(saved[k], base[k]) for k in saved), "training changed nothing"
    again = train(
        load_config(None, overrides(tiny_model, tmp_path, "half", 4, f"run.resume={half}", *common))
    )
    assert again == half  # the same run directory
    m = rows(half)
    assert [r["step"] for r in m] == [1, 2, 3, 4]
    assert [r["policy_version"] for r in m] == [1, 2, 3, 4]
    # The task sampler continued from its saved state: the checkpoint's sampler draws exactly
    # the tasks of steps 3 and 4 (an unbroken run's; the uniform sampler learns nothing).
    cfg = load_config(None, overrides(tiny_model, tmp_path, "half", 4, *common))
    sampler = make_sampler(cfg)
    sampler.load_state_dict(checkpoint.load_state(half / "checkpoints" / "step_00002")["sampler"])
    for step in (3, 4):
        want = [t.id for t in sampler.sample(cfg.algo.tasks_per_step)]
        with open(half / "rollouts" / f"step_{step:05d}.jsonl") as f:
            got = {(e["group"], e["task"]["id"]) for e in map(json.loads, f)}
        assert sorted(got) == list(enumerate(want)) and len(want) == 3


def test_max_minutes_ends_the_run_like_its_last_step(tiny_model, ray_cluster, tmp_path):
    """A wall-clock budget smaller than one step: the run ends after step 1 with a final
    model and a resumable checkpoint, and resuming continues at step 2."""
    common = ["tracking.wandb_mode=disabled"]
    run = train(
        load_config(None, overrides(tiny_model, tmp_path, "timed", 50, "run.max_minutes=0.001", *common))
    )
    assert [r["step"] for r in rows(run)] == [1]
    assert (run / "checkpoints" / "latest").read_text() == "step_00001"
    assert (run / "checkpoints" / "final" / "config.json").exists()
    again = train(
        load_config(None, overrides(tiny_model, tmp_path, "timed", 2, f"run.resume={run}", *common))
    )
    assert [r["step"] for r in rows(again)] == [1, 2]


def _equal(a, b, where: str = "") -> None:
    """Bit-for-bit equality of nested dicts / lists of tensors and numbers."""
    import torch

    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _equal(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _equal(x, y, f"{where}[{i}]")
    else:
        assert a == b, (where, a, b)


def test_resumed_learner_state_equals_the_checkpoint_bit_for_bit(tiny_model, ray_cluster, tmp_path):
    """Weights, AdamW moments and step counts, and the LR schedule (warmup, then cosine)
    restored by resume are exactly those saved; the next update is then the same too."""
    import ray
    from support.batches import batch

    from rlagent.learner.group import LearnerGroup

    cfg = load_config(
        None,
        [
            "learner.lr=0.01",
            "learner.micro_batch_size=4",
            "learner.threads=1",
            "learner.num_cpus=0.5",
            "learner.warmup_steps=2",
            "learner.lr_schedule=cosine",
            "run.steps=6",
            "algo.group_size=3",
            "algo.tasks_per_step=2",
            "algo.kl_coef=0.1",
        ],
    )
    first = LearnerGroup(cfg, tiny_model)
    try:
        for _ in range(3):
            first.train_step(batch())
        path = checkpoint.save(tmp_path, 3, first, {"note": "x"}, keep=1)
        saved = first.training_state()
        next_step = first.train_step(batch())
        after = first.training_state()
    finally:
        for r in first.ranks:
            ray.kill(r)
    assert saved["optimizer"]["state"], "no optimizer state to compare"
    assert saved["lr_schedule"]["last_epoch"] == 3 and saved["updates"] == 3
    second = LearnerGroup(cfg, tiny_model)
    try:
        assert second.load_state(str(checkpoint.latest(tmp_path) / "learner")) == 3
        assert checkpoint.latest(tmp_path) == path
        _equal(second.training_state(), saved, "resumed")
        again = second.train_step(batch())
        _equal(second.training_state(), after, "one more step")
    finally:
        for r in second.ranks:
            ray.kill(r)
    assert again.keys() == next_step.keys()
    same = [k for k in next_step if not k.startswith(("timing/", "memory/"))]
    assert {k: again[k] for k in same} == {k: next_step[k] for k in same}
