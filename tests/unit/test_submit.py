"""launch/submit.py: checks before submitting, and real jobs on a local Ray head."""

import pytest
from support.ray_head import free_port
from support.submit import submit


def test_dry_run_shows_the_job(monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "secret-key-value")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("HF_HOME", "/shared/hf")
    out = submit(
        "launch/configs/gpu-1node-8.yaml",
        "model.path=/models/x",
        "--env",
        "HF_HOME",
        "--env",
        "EXTRA=1",
        "--dry-run",
    )
    assert out.returncode == 0, out.stderr
    assert "entrypoint:  rlagent train launch/configs/gpu-1node-8.yaml model.path=/models/x\n" in out.stdout
    assert "env_vars:    ['EXTRA', 'HF_HOME', 'RAY_JOB_STOP_WAIT_TIME_S', 'WANDB_API_KEY']" in out.stdout
    assert "secret-key-value" not in out.stdout + out.stderr  # names only, never values
    assert "address:     http://127.0.0.1:8265" in out.stdout


def test_resume_is_passed_on_not_validated():
    out = submit(
        "launch/configs/quickstart.yaml", "resume=/shared/runs/quickstart", "run.steps=9", "--dry-run"
    )
    assert out.returncode == 0, out.stderr
    assert (
        "entrypoint:  rlagent train launch/configs/quickstart.yaml "
        "resume=/shared/runs/quickstart run.steps=9\n"
    ) in out.stdout


def test_address_from_ray_address(monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "http://10.0.0.5:8265")
    out = submit("launch/configs/quickstart.yaml", "--dry-run")
    assert "address:     http://10.0.0.5:8265" in out.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["launch/configs/quickstart.yaml", "algo.nope=1"], "algo.nope: unknown key"),
        (["/etc/hostname"], "must lie inside the repository"),
        (["launch/configs/missing.yaml"], "no such config file"),
        (
            ["launch/configs/quickstart.yaml", "--env", "RLAGENT_SURELY_UNSET"],
            "--env RLAGENT_SURELY_UNSET: not set in this shell",
        ),
    ],
)
def test_nothing_is_submitted_on_a_bad_request(args, message):
    out = submit(*args, "--address", f"http://127.0.0.1:{free_port()}")
    assert out.returncode == 2 and message in out.stderr, out.stderr


def test_unreachable_cluster_names_the_address():
    address = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    out = submit("launch/configs/quickstart.yaml", "--address", address)
    assert out.returncode == 2
    assert f"cannot reach the Ray cluster at {address}" in out.stderr, out.stderr
