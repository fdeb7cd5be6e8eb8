"""The cluster workflow end to end on a local Ray head: submit a run with the helper, stop
it with `ray job stop` (it saves a checkpoint after its step), resume it with a plain
`ray job submit`; the step counter, policy version and curriculum continue."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import REPO
from support.ray_head import local_ray_head

from rlagent.checkpoint import latest, load_state
from rlagent.config import load_config
from rlagent.curriculum import make_sampler


def rows(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.mark.slow
def test_submit_stop_and_resume(tiny_model, tmp_path):
    overrides = [
        f"model.path={tiny_model}",
        "env.id=rlagent/Echo-v0",
        "env.kwargs={}",
        "env.system_prompt=null",  # the quickstart's calculator instructions
        "rollout.stop=[]",
        "data.difficulties=[1, 2]",
        "curriculum.name=ladder",
        "curriculum.start_level=2",
        "curriculum.min_episodes=2",
        "curriculum.window=4",
        "curriculum.review_share=0.5",
        "rollout.max_new_tokens=2",
        "rollout.max_episode_tokens=64",
        "rollout.max_turns=2",
        "algo.group_size=2",
        "algo.tasks_per_step=3",
        "algo.kl_coef=0",
        "learner.lr=0.01",
        "rewards.components=[{name: env_reward, weight: 1.0}]",
        f"run.output_dir={tmp_path}",
        "run.name=job",
        "tracking.wandb_mode=offline",
    ]
    run_dir = tmp_path / "job"
    with local_ray_head(num_cpus=2) as (address, env):
        out = subprocess.run(
            [
                sys.executable,
                "launch/submit.py",
                "launch/configs/quickstart.yaml",
                *overrides,
                "run.steps=50",
                "--address",
                address,
            ],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.returncode == 0, out.stdout + out.stderr
        job_id = next(l.split()[-1] for l in out.stdout.splitlines() if l.startswith("job id:"))
        deadline = time.monotonic() + 400
        while len(rows(run_dir)) < 2:
            assert time.monotonic() < deadline, subprocess.run(
                ["ray", "job", "logs", job_id, "--address", address], env=env, capture_output=True, text=True
            ).stdout[-4000:]
            time.sleep(1)
        stop = subprocess.run(
            ["ray", "job", "stop", job_id, "--address", address],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert stop.returncode == 0, stop.stdout + stop.stderr
        logs = subprocess.run(
            ["ray", "job", "logs", job_id, "--address", address], env=env, capture_output=True, text=True
        ).stdout
        stopped_at = rows(run_dir)[-1]["step"]
        assert f"stopped after step {stopped_at}" in logs, logs[-4000:]
        ckpt = latest(run_dir)
        assert ckpt.name == f"step_{stopped_at:05d}"

        # Plain Ray Jobs, as the docs show it, resumes the run.
        resumed = subprocess.run(
            [
                "ray",
                "job",
                "submit",
                "--address",
                address,
                "--working-dir",
                ".",
                "--runtime-env-json",
                json.dumps({"excludes": [".venv", ".git", "runs"]}),
                "--",
                "rlagent",
                "train",
                "launch/configs/quickstart.yaml",
                *overrides,
                f"run.steps={stopped_at + 2}",
                f"resume={run_dir}",
            ],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert resumed.returncode == 0, resumed.stdout[-4000:] + resumed.stderr[-2000:]
    m = rows(run_dir)
    assert [r["step"] for r in m] == list(range(1, stopped_at + 3))
    assert [r["policy_version"] for r in m] == list(range(1, stopped_at + 3))
    # W&B: the stopped run's service was signalled too; the resumed run sent what it missed,
    # so the two offline parts of the one W&B run hold every step.
    from support.wandb_records import history

    ids, steps = set(), set()
    for f in run_dir.glob("wandb/offline-run-*/run-*.wandb"):
        ids.add(f.parent.name.rsplit("-", 1)[-1])
        steps |= {r["_step"] for r in history(f) if "reward/mean" in r}
    assert len(ids) == 1 and steps == set(range(1, stopped_at + 3)), (ids, steps)
    # The curriculum continued from its saved state: the checkpoint's sampler is at the level
    # the resumed run trained at next, and draws exactly the tasks it trained on.
    cfg = load_config("launch/configs/quickstart.yaml", [*overrides, "run.steps=50"])
    sampler = make_sampler(cfg)
    sampler.load_state_dict(load_state(ckpt)["sampler"])
    assert m[stopped_at]["curriculum/level"] == sampler.source.levels[sampler.index]
    want = [t.id for t in sampler.sample(cfg.algo.tasks_per_step)]
    with open(run_dir / "rollouts" / f"step_{stopped_at + 1:05d}.jsonl") as f:
        got = [json.loads(line) for line in f]
    assert sorted({(e["group"], e["task"]["id"]) for e in got}) == list(enumerate(want))
