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
from support.runs import tiny_run_config

from rlagent import checkpoint
from rlagent.cli import main
from rlagent.failures import RunDied
from rlagent.trainer import train


def rows(run_dir: Path) -> list[dict]:
    with open(run_dir / "metrics.jsonl") as f:
        return [json.loads(line) for line in f]


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
def test_killed_learner_stops_the_run_and_its_resume_command_continues(tiny_model, ray_cluster, tmp_path):
    cfg = tiny_run_config(tiny_model, tmp_path, "run.steps=40", "run.save_every=1", name="killed")
    run_dir, killed = tmp_path / "killed", []
    killer = threading.Thread(target=kill_learner_once_checkpointed, args=(run_dir, time.time() - 1, killed))
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
