"""`ray job submit --working-dir .` to a local head started with `ray start --head`."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"no answer from {url} in {timeout} s")


@pytest.fixture
def ray_head():
    """A local head on loopback with token auth off (a test cluster only)."""
    # A short temp dir: Ray's unix socket paths must stay under ~107 characters.
    temp = tempfile.mkdtemp(prefix="rlray-", dir="/tmp")
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled",
           "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    env.pop("RAY_ADDRESS", None)
    dash = _free_port()
    head = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
         f"--port={_free_port()}", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
         "--num-cpus=2", f"--temp-dir={temp}", "--disable-usage-stats",
         # Ports of their own: another Ray on the machine (e.g. this test session's) holds
         # the defaults, and a job agent that cannot bind never accepts a job.
         f"--dashboard-agent-listen-port={_free_port()}",
         f"--dashboard-agent-grpc-port={_free_port()}", f"--metrics-export-port={_free_port()}",
         f"--runtime-env-agent-port={_free_port()}", f"--ray-client-server-port={_free_port()}"],
        env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_http(f"http://127.0.0.1:{dash}/api/version", 90)
        yield f"http://127.0.0.1:{dash}", env
    finally:  # `ray stop` would end every Ray on the machine; end only this head's group
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.slow
def test_ray_job_submit_runs_training(ray_head, tiny_model, tmp_path):
    address, env = ray_head
    out_dir = tmp_path / "runs"
    probe = ("import hashlib, rlagent.envs as e, rlagent.rewards.outcome as o; "
             "print('IMPORTED', e.__file__, hashlib.sha256(open(o.__file__,'rb').read()).hexdigest())")
    train = ("rlagent train launch/configs/quickstart.yaml run.name=job run.steps=2 "
             f"run.output_dir={out_dir} model.path={tiny_model} env.id=rlagent/Echo-v0 env.kwargs={{}} "
             "rollout.max_new_tokens=2 rollout.max_episode_tokens=64 rollout.max_turns=2 "
             "algo.kl_coef=0 'rewards.components=[{name: env_reward, weight: 1.0}]'")
    runtime_env = {"excludes": [".venv", ".git", "runs", "wandb", "__pycache__"],
                   "env_vars": {"OMP_NUM_THREADS": "2", "WANDB_MODE": "offline"}}
    submit = [str(BIN / "ray"), "job", "submit", "--address", address, "--working-dir", ".",
              "--runtime-env-json", json.dumps(runtime_env), "--", "bash", "-c",
              f"python -c \"{probe}\" && {train}"]
    for _ in range(20):  # the dashboard answers before its job agent is up
        job = subprocess.run(submit, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
        log = job.stdout + job.stderr
        if "No available agent" not in log:
            break
        time.sleep(2)
    assert job.returncode == 0 and "succeeded" in log, log[-12000:]
    # The job imported the shipped copy of the tree, not the checkout or an install.
    line = next(l for l in log.splitlines() if l.startswith("IMPORTED"))
    _, envs_file, digest = line.split()
    assert "working_dir_files" in envs_file and not envs_file.startswith(str(REPO))
    import hashlib
    assert digest == hashlib.sha256((REPO / "rewards" / "outcome.py").read_bytes()).hexdigest()
    metrics = [json.loads(l) for l in open(out_dir / "job" / "metrics.jsonl")]
    assert [m["step"] for m in metrics] == [1, 2]
    assert (out_dir / "job" / "checkpoints" / "final" / "config.json").is_file()
