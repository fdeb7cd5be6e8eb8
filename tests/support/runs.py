"""A short run of the tiny model: the overrides every training test would otherwise retype.

``tiny_run_config(tiny_model, tmp_path, "run.steps=3", ...)``: Echo-v0 (two turns of one
letter), two-token replies, 2 tasks x 2 samples a step, GRPO at lr 0.01 on the env's reward,
W&B off; a test adds what it is about (later overrides win).
"""

from __future__ import annotations

from pathlib import Path

from rlagent.config import Config, load_config

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
