"""The learner killed mid-run: the driver stops with an error that says the learner died and
gives the exact command that resumes the run; that command continues from the last
checkpoint. Metrics of every finished step were already on disk."""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import psutil
import pytest

from rlagent import checkpoint
from rlagent.cli import main
from rlagent.config import load_config
from rlagent.recovery import RunDied, resume_hint, run_died, who_died
from rlagent.trainer import train


def rows(run_dir: Path) -> list[dict]:
    with open(run_dir / "metrics.jsonl") as f:
        return [json.loads(line) for line in f]


def test_resume_hint_names_the_checkpoint_and_the_command(tmp_path):
    assert "wrote no checkpoint" in resume_hint(tmp_path)
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "latest").write_text("step_00003")
    assert resume_hint(tmp_path) == (
        f"continue from its last checkpoint (step_00003) with: "
        f"rlagent train {tmp_path}/config.yaml resume={tmp_path}")
    err = run_died(RuntimeError("boom\nmore"), [], tmp_path, 4)
    assert str(err).startswith("an actor died during step 4 (boom); the run stopped: continue")


class FakeHandle:
    def __init__(self, hex_id: str):
        self._actor_id = type("Id", (), {"hex": lambda _: hex_id})()


def test_a_task_failing_on_a_dead_learners_output_names_the_learner():
    """A rollout worker's load_weights fails when the learner that produced its argument died:
    Ray raises the worker's task error, whose cause names the learner."""
    import ray.exceptions as rex

    learner, worker = "1b8f01fbdb2528c0845a6d8001000000", "d66db8b0d5d3222c2a4ea0cc01000000"
    died = rex.RayActorError(actor_id=learner, error_msg="The actor died unexpectedly")
    err = rex.RayTaskError("RolloutWorker.load_weights", "tb", died, actor_id=worker)
    err = err.as_instanceof_cause()
    assert who_died(err, [FakeHandle(learner)]) == "the learner (rank 0)"
    assert who_died(err, [FakeHandle("ab" * 16)]) == "an actor"
    # only the message names it
    text = RuntimeError(f"The actor died unexpectedly\n\tclass_name: Learner\n\tactor_id: {learner}")
    assert who_died(text, [FakeHandle("00" * 16), FakeHandle(learner)]) == "the learner (rank 1)"


def test_cli_prints_the_message_and_exits_1(monkeypatch, capsys, tmp_path):
    import rlagent.trainer

    def dies(cfg):
        raise run_died(RuntimeError("The actor died unexpectedly"), [], tmp_path, 7)

    monkeypatch.setattr(rlagent.trainer, "train", dies)
    assert main(["train", "launch/configs/quickstart.yaml"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("rlagent: an actor died during step 7 (The actor died unexpectedly)")
    assert "Traceback" not in err


def kill_learner_once_checkpointed(run_dir: Path, since: float, killed: list[int]) -> None:
    """SIGKILL this run's learner process once the run has a checkpoint. Only processes
    under this one (its local Ray) are looked at: other Ray sessions may share the machine."""
    deadline = time.time() + 600
    while not (run_dir / "checkpoints" / "latest").exists():
        if time.time() > deadline:
            return
        time.sleep(0.2)
    for p in psutil.Process().children(recursive=True):
        try:
            mine = " ".join(p.cmdline()).startswith("ray::Learner") and p.create_time() >= since
        except psutil.Error:
            continue
        if mine:
            killed.append(p.pid)
            p.kill()


@pytest.mark.slow
def test_killed_learner_stops_the_run_and_its_resume_command_continues(tiny_model, ray_cluster,
                                                                         tmp_path):
    cfg = load_config(None, [
        "run.name=killed", f"run.output_dir={tmp_path}", "run.steps=40", "run.save_every=1",
        f"model.path={tiny_model}", "env.id=rlagent/Echo-v0", "rollout.max_new_tokens=2",
        "rollout.max_episode_tokens=64", "rollout.max_turns=2", "algo.group_size=2",
        "algo.tasks_per_step=2", "learner.lr=0.01", "tracking.wandb_mode=disabled",
        "rewards.components=[{name: env_reward, weight: 1.0}]"])
    run_dir, killed = tmp_path / "killed", []
    killer = threading.Thread(target=kill_learner_once_checkpointed,
                              args=(run_dir, time.time() - 1, killed))
    killer.start()
    try:
        with pytest.raises(RunDied) as info:
            train(cfg)
    finally:
        killer.join()
    assert len(killed) == 1
    message = str(info.value)
    assert message.startswith("the learner (rank 0) died during step ")
    command = f"rlagent train {run_dir}/config.yaml resume={run_dir}"
    assert message.endswith(command), message
    saved = checkpoint.latest(run_dir)  # the last complete checkpoint, usable
    assert f"({saved.name})" in message
    last = json.loads((saved / checkpoint.STATE).read_text())["step"]
    assert len(rows(run_dir)) >= last  # every finished step's metrics were flushed

    # The printed command, two more steps.
    args = command.split()[1:] + [f"run.steps={last + 2}"]
    assert main(args) == 0
    m = rows(run_dir)
    assert [r["step"] for r in m] == list(range(1, last + 3))
    assert [r["policy_version"] for r in m] == list(range(1, last + 3))
