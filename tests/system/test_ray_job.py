"""`ray job submit --working-dir .` to a local head started with `ray start --head`."""

import json
import subprocess
import time

import pytest
from support import REPO
from support.ray_head import BIN, local_ray_head


@pytest.fixture
def ray_head():
    with local_ray_head() as head:
        yield head


@pytest.mark.slow
def test_ray_job_submit_runs_training(ray_head, tiny_model, tmp_path):
    address, env = ray_head
    out_dir = tmp_path / "runs"
    probe = (
        "import hashlib, rlagent.envs as e, rlagent.rewards.outcome as o; "
        "print('IMPORTED', e.__file__, hashlib.sha256(open(o.__file__,'rb').read()).hexdigest())"
    )
    train = (
        "rlagent train launch/configs/quickstart.yaml run.name=job run.steps=2 "
        f"run.output_dir={out_dir} model.path={tiny_model} env.id=rlagent/Echo-v0 env.kwargs={{}} "
        "rollout.max_new_tokens=2 rollout.max_episode_tokens=64 rollout.max_turns=2 "
        "algo.kl_coef=0 'rewards.components=[{name: env_reward, weight: 1.0}]' "
        "env.system_prompt=null 'rollout.stop=[]'"
    )
    runtime_env = {
        "excludes": [".venv", ".git", "runs", "wandb", "__pycache__"],
        "env_vars": {"OMP_NUM_THREADS": "2", "WANDB_MODE": "offline"},
    }
    submit = [
        str(BIN / "ray"),
        "job",
        "submit",
        "--address",
        address,
        "--working-dir",
        ".",
        "--runtime-env-json",
        json.dumps(runtime_env),
        "--",
        "bash",
        "-c",
        f"python -c \"{probe}\" && {train}",
    ]
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
