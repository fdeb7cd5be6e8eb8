"""A short run of the tiny model: the overrides every training test would otherwise retype.

``tiny_run_config(tiny_model, tmp_path, "run.steps=3", ...)``: Echo-v0 (two turns of one
letter), two-token replies, 2 tasks x 2 samples a step, GRPO at lr 0.01 on the env's reward,
W&B off; a test adds what it is about (later overrides win).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from rlagent.config import Config, load_config

RLAGENT = str(Path(sys.executable).parent / "rlagent")

TINY_RUN = (
    "env.id=rlagent/Echo-v0",
    "rollout.max_new_tokens=2",
    "rollout.max_episode_tokens=64",
    "rollout.max_turns=2",
    "rollout.kv_cache_gib=1",
    "algo.group_size=2",
    "algo.tasks_per_step=2",
    "learner.lr=0.01",
    "rewards.components=[{name: env_reward, weight: 1.0}]",
    "tracking.wandb_mode=disabled",
)


def tiny_run(tiny_model: str, out: Path | None = None, *overrides: str, name: str = "run") -> list[str]:
    """The overrides: the tiny model with ``TINY_RUN``, writing ``out/name`` (when ``out``
    is given), then ``overrides``."""
    where = [f"run.name={name}", f"run.output_dir={out}"] if out is not None else []
    return [f"model.path={tiny_model}", *TINY_RUN, *where, *overrides]


def tiny_run_config(
    tiny_model: str, out: Path | None = None, *overrides: str, name: str = "run", path: str | None = None
) -> Config:
    """``tiny_run`` loaded (over the YAML file ``path``, when given)."""
    return load_config(path, tiny_run(tiny_model, out, *overrides, name=name))


def cli_train(config: str, *overrides: str) -> tuple[Path, subprocess.CompletedProcess]:
    """``rlagent train CONFIG OVERRIDES`` in a fresh process from the repository root, as a
    user runs it (its own local Ray); the run directory it names when done, and the process
    (its terminal output)."""
    from support import REPO

    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    env.pop("RAY_ADDRESS", None)
    out = subprocess.run(
        [RLAGENT, "train", config, *overrides],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert out.returncode == 0, (out.stdout + out.stderr)[-5000:]
    return Path(re.search(r"\[rlagent\] done: (\S+)", out.stdout).group(1)), out
