"""launch/submit.py: checks before submitting, and real jobs on a local Ray head."""

import re
import shlex
import subprocess
import time

import pytest
from support.ray_head import local_ray_head
from support.submit import submit


@pytest.fixture(scope="module")
def ray_head():
    with local_ray_head() as head:
        yield head


def printed(stdout: str, label: str) -> str:
    return re.search(rf"^{label}:\s+(.*)$", stdout, re.M)[1]


@pytest.mark.slow
def test_follow_a_job_to_success(ray_head):
    address, env = ray_head
    probe = (
        "import os, rlagent; print('PROBE', os.environ['RLAGENT_PROBE'], "
        "os.environ['WANDB_MODE'], rlagent.__file__)"
    )
    out = submit(
        "--entrypoint",
        f'rlagent envs && python -c "{probe}"',
        "--address",
        address,
        "--env",
        "RLAGENT_PROBE=hello",
        "--follow",
        env={**env, "WANDB_MODE": "offline"},
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    job_id = printed(out.stdout, "job id")
    assert job_id.startswith("rlagent-")
    assert printed(out.stdout, "follow logs") == f"ray job logs --follow {job_id} --address {address}"
    assert printed(out.stdout, "stop") == f"ray job stop {job_id} --address {address}"
    assert "rlagent/Calculator-v0" in out.stdout  # the job's own output, tailed
    line = next(l for l in out.stdout.splitlines() if l.startswith("PROBE"))
    _, value, mode, module = line.split()
    assert (value, mode) == ("hello", "offline")  # --env and the W&B pass-through reached it
    assert "working_dir_files" in module  # it ran the shipped copy of the repository
    assert f"job {job_id}: SUCCEEDED" in out.stdout
    # The printed command works.
    status = subprocess.run(
        printed(out.stdout, "status").split(), env=env, capture_output=True, text=True, timeout=60
    )
    assert status.returncode == 0 and "succeeded" in status.stdout.lower(), status.stdout + status.stderr


@pytest.mark.slow
def test_train_entrypoint_and_failed_status(ray_head, tmp_path):
    """The real `rlagent train CONFIG overrides` entrypoint, failing fast in the job (a missing
    task file is found before Ray or a model starts): the exit status reports the failure."""
    address, env = ray_head
    missing = tmp_path / "no-tasks.jsonl"
    out = submit(
        "launch/configs/quickstart.yaml",
        f"data.path={missing}",
        f"run.output_dir={tmp_path}",
        "--address",
        address,
        "--follow",
        env=env,
        timeout=300,
    )
    assert out.returncode == 1, out.stdout[-4000:] + out.stderr[-4000:]
    job_id = printed(out.stdout, "job id")
    assert job_id.startswith("quickstart-")
    assert printed(out.stdout, "entrypoint") == (
        f"rlagent train launch/configs/quickstart.yaml data.path={missing} run.output_dir={tmp_path}"
    )
    assert printed(out.stdout, "run dir").startswith(f"{tmp_path}/quickstart on the head node")
    # the job's own error, tailed: one line naming the file
    assert f"rlagent: {missing}: No such file or directory" in out.stdout
    assert f"job {job_id}: FAILED" in out.stdout


@pytest.mark.slow
def test_stop_leaves_the_driver_time_to_save(ray_head):
    """`ray job stop` (the printed command) sends SIGTERM; the driver gets more than Ray's
    default 3 s before SIGKILL, as a checkpoint on stop needs."""
    address, env = ray_head
    driver = (
        "import signal, sys, time\n"
        "def stop(*_):\n    time.sleep(6); print('SAVED', flush=True); sys.exit(1)\n"
        "signal.signal(signal.SIGTERM, stop)\nprint('READY', flush=True)\ntime.sleep(300)"
    )
    out = submit(
        "--entrypoint", f"python -c {shlex.quote(driver)}", "--address", address, env=env, timeout=300
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    job_id = printed(out.stdout, "job id")
    logs = ["ray", "job", "logs", job_id, "--address", address]
    deadline = time.monotonic() + 120
    # Whole lines: the log also echoes the entrypoint, which holds both words.
    while "READY" not in subprocess.run(logs, env=env, capture_output=True, text=True).stdout.splitlines():
        assert time.monotonic() < deadline, "the job never got to READY"
        time.sleep(1)
    stop = subprocess.run(
        printed(out.stdout, "stop").split(), env=env, capture_output=True, text=True, timeout=120
    )
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert "SAVED" in subprocess.run(logs, env=env, capture_output=True, text=True).stdout.splitlines()


@pytest.mark.slow
def test_a_refused_job_names_the_cluster(ray_head):
    address, env = ray_head
    args = ["--entrypoint", "true", "--job-id", "twice", "--address", address, "--no-wait"]
    assert submit(*args, env=env).returncode == 0
    again = submit(*args, env=env)
    assert again.returncode == 2
    assert f"the Ray cluster at {address} refused the job" in again.stderr, again.stderr
    assert "twice" in again.stderr
