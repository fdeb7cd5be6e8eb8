"""The eval tests' run: the tiny model on Echo-v0 with the learning tests' settings."""

import json

import yaml

# The learning tests' settings (support/echo.py): a stable curve, 80 steps.
ECHO = {
    "run": {"name": "echo", "steps": 80, "seed": 1},
    "env": {"id": "rlagent/Echo-v0", "kwargs": {"num_turns": 2}},
    "rollout": {"max_new_tokens": 2, "max_episode_tokens": 64, "max_turns": 2, "kv_cache_gib": 1},
    "algo": {"group_size": 8, "tasks_per_step": 8, "entropy_coef": 0.01},
    "learner": {"lr": 0.003, "micro_batch_size": 64},
    # env_success (weight 0) is only reported: each component shows in the eval
    "rewards": {
        "components": [{"name": "env_reward", "weight": 1.0}, {"name": "env_success", "weight": 0.0}]
    },
    "tracking": {"wandb_mode": "disabled", "save_rollouts": False},
}


def _config(tmp_path, model: str) -> str:
    cfg = {**ECHO, "model": {"path": model}, "run": {**ECHO["run"], "output_dir": str(tmp_path / "runs")}}
    path = tmp_path / "echo.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def _lines(path) -> list[dict]:
    return [json.loads(line) for line in open(path)]
