"""The learning tests' shared set-up: the tiny random model (``rlagent.testing``) on Echo-v0
(two turns, echo the shown letter), and one verdict for "it learned".

Chance is about 0.1 (the first word is one of 17 tokens, the letter shown among them). The
settings are chosen for a stable curve, not the fastest one: at lr 0.01 (or 0.005 without
an entropy bonus) the policy oscillates between about 0.6 and 1.0, or collapses onto a wrong
letter for some tasks, so where a run ends decided the verdict. With lr 0.003 and an entropy
bonus of 0.01 (0.02 for REINFORCE++), the runs that chose these settings ended their 80
steps at 0.90-1.00 over the last 10 steps on seeds 1-5, and the verdict asks for 0.75 over
the last 10 steps: a margin of 0.15. ``pytest --run-seed N`` runs the learning tests on
another seed (another numeric path, as another machine would take), and
``pytest --flip-policy-loss`` must make every one of them fail.
"""

from __future__ import annotations

import json
from pathlib import Path

from rlagent.config import load_config
from rlagent.trainer import train

STEPS = 80
SETTINGS = [
    "env.id=rlagent/Echo-v0",
    "env.kwargs={num_turns: 2}",
    "rollout.max_new_tokens=2",
    "rollout.max_episode_tokens=64",
    "rollout.max_turns=2",
    "rollout.kv_cache_gib=1",
    "algo.group_size=8",
    "algo.tasks_per_step=8",
    "algo.entropy_coef=0.01",
    "learner.lr=0.003",
    "learner.micro_batch_size=64",
    "rewards.components=[{name: env_reward, weight: 1.0}]",
    "tracking.wandb_mode=disabled",
    "tracking.save_rollouts=false",
]
# The eval tests' rewards (``support/evalcase.py``): env_success at weight 0 is reported
# only, so the shared GRPO run (conftest ``echo_grpo_run``) trains on the same reward.
EVAL_COMPONENTS = "rewards.components=[{name: env_reward, weight: 1.0}, {name: env_success, weight: 0.0}]"


def train_echo(tiny_model: str, tmp_path, seed: int, *extra: str) -> list[dict]:
    """Train on Echo-v0 with ``SETTINGS`` (then ``extra``); the metrics rows."""
    return metrics_rows(train_echo_run(tiny_model, tmp_path, seed, *extra))


def train_echo_run(tiny_model: str, tmp_path, seed: int, *extra: str) -> Path:
    """Train on Echo-v0 with ``SETTINGS`` (then ``extra``); the run directory."""
    cfg = load_config(
        None,
        [
            "run.name=echo",
            f"run.output_dir={tmp_path}",
            f"run.seed={seed}",
            f"run.steps={STEPS}",
            f"model.path={tiny_model}",
            *SETTINGS,
            *extra,
        ],
    )
    return train(cfg)


def metrics_rows(run_dir: Path) -> list[dict]:
    with open(run_dir / "metrics.jsonl") as f:
        return [json.loads(line) for line in f]


def assert_learned(rewards: list[float], end: float = 0.75) -> None:
    """From chance (first 3 steps below 0.3) to ``end`` (mean of the last 10 steps)."""
    first, last = sum(rewards[:3]) / 3, sum(rewards[-10:]) / 10
    assert first < 0.3 and last > end, f"first 3 {first:.3f}, last 10 {last:.3f}: {rewards}"
