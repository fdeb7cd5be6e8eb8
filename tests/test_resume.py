"""Stop and resume: SIGTERM (what `ray job stop` sends) ends the run after its step with a
checkpoint; `resume=<run dir>` continues the same run directory, step counter, task sampler
and policy version, so the curves continue without gaps or duplicates."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rlagent.config import load_config
from rlagent.trainer import train

pytestmark = pytest.mark.slow


def overrides(tiny_model, out, name, steps, *extra):
    return [f"run.name={name}", f"run.output_dir={out}", f"run.steps={steps}", "run.seed=5",
            f"model.path={tiny_model}", "env.id=rlagent/Echo-v0", "rollout.max_new_tokens=2",
            "rollout.max_episode_tokens=64", "rollout.max_turns=2", "algo.group_size=2",
            "algo.tasks_per_step=3", "learner.lr=0.01",
            "rewards.components=[{name: env_reward, weight: 1.0}]", *extra]


def rows(run_dir: Path) -> list[dict]:
    with open(run_dir / "metrics.jsonl") as f:
        return [json.loads(line) for line in f]


def task_ids(run_dir: Path, step: int) -> list[str]:
    with open(run_dir / "rollouts" / f"step_{step:05d}.jsonl") as f:
        return [json.loads(line)["task"]["id"] for line in f]


def test_resume_continues_steps_sampler_and_policy_version(tiny_model, ray_cluster, tmp_path):
    common = ["tracking.wandb_mode=disabled"]
    whole = train(load_config(None, overrides(tiny_model, tmp_path, "whole", 4, *common)))
    half = train(load_config(None, overrides(tiny_model, tmp_path, "half", 2, "run.save_every=2",
                                             *common)))
    assert (half / "checkpoints" / "latest").read_text() == "step_00002"
    again = train(load_config(None, overrides(tiny_model, tmp_path, "half", 4, f"run.resume={half}",
                                              *common)))
    assert again == half  # the same run directory
    m = rows(half)
    assert [r["step"] for r in m] == [1, 2, 3, 4]
    assert [r["policy_version"] for r in m] == [1, 2, 3, 4]
    # the task sampler continued from its saved state: the same tasks as the unbroken run
    for step in (3, 4):
        assert task_ids(half, step) == task_ids(whole, step)


def test_sigterm_saves_a_checkpoint_and_resume_continues(tiny_model, ray_cluster, tmp_path):
    cmd = [sys.executable, "-m", "rlagent.cli", "train", "launch/configs/quickstart.yaml",
           *overrides(tiny_model, tmp_path, "stopped", 50, "tracking.wandb_mode=offline",
                      "data.difficulties=null", "algo.kl_coef=0", "env.kwargs={}")]
    env = {**os.environ, "RAY_ADDRESS": ""}  # its own local Ray, as a user's run would start
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, cwd=Path(__file__).parent.parent)
    run_dir = tmp_path / "stopped"
    deadline = time.time() + 300
    while not ((run_dir / "metrics.jsonl").exists() and len(rows(run_dir)) >= 2):
        assert proc.poll() is None and time.time() < deadline, proc.stdout.read()
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    stopped_at = rows(run_dir)[-1]["step"]
    assert f"stopped after step {stopped_at}" in out and stopped_at < 50
    assert (run_dir / "checkpoints" / "latest").read_text() == f"step_{stopped_at:05d}"

    again = train(load_config("launch/configs/quickstart.yaml", overrides(
        tiny_model, tmp_path, "stopped", stopped_at + 2, "tracking.wandb_mode=offline",
        "data.difficulties=null", "algo.kl_coef=0", "env.kwargs={}", f"run.resume={run_dir}")))
    m = rows(again)
    assert [r["step"] for r in m] == list(range(1, stopped_at + 3))
    assert m[-1]["policy_version"] == stopped_at + 2
    # the same W&B run continued: both offline run directories carry one run id
    ids = {p.name.rsplit("-", 1)[-1] for p in (again / "wandb").glob("offline-run-*")}
    assert len(ids) == 1, ids


def test_max_minutes_ends_the_run_like_its_last_step(tiny_model, ray_cluster, tmp_path):
    """A wall-clock budget smaller than one step: the run ends after step 1 with a final
    model and a resumable checkpoint, and resuming continues at step 2."""
    common = ["tracking.wandb_mode=disabled"]
    run = train(load_config(None, overrides(tiny_model, tmp_path, "timed", 50, "run.max_minutes=0.001",
                                            *common)))
    assert [r["step"] for r in rows(run)] == [1]
    assert (run / "checkpoints" / "latest").read_text() == "step_00001"
    assert (run / "checkpoints" / "final" / "config.json").exists()
    again = train(load_config(None, overrides(tiny_model, tmp_path, "timed", 2, f"run.resume={run}",
                                              *common)))
    assert [r["step"] for r in rows(again)] == [1, 2]
