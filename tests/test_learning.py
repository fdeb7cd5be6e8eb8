"""The whole trainer learns: a tiny random model goes from chance to > 0.9 reward on Echo-v0."""
import json

import pytest

from rlagent.config import load_config
from rlagent.trainer import train


@pytest.mark.slow
def test_tiny_model_learns_echo(tiny_model, ray_cluster, tmp_path):
    cfg = load_config(None, [
        "run.name=echo", f"run.output_dir={tmp_path}", "run.steps=40", "run.seed=1",
        f"model.path={tiny_model}", "env.id=rlagent/Echo-v0", "env.kwargs={num_turns: 2}",
        "rollout.max_new_tokens=2", "rollout.max_episode_tokens=64", "rollout.max_turns=2",
        "rollout.kv_cache_gib=1", "algo.group_size=8", "algo.tasks_per_step=8",
        "learner.lr=0.01", "learner.micro_batch_size=64",
        "rewards.components=[{name: env_reward, weight: 1.0}]",
        "tracking.wandb_mode=disabled", "tracking.save_rollouts=false",
    ])
    run_dir = train(cfg)
    rewards = [json.loads(l)["reward/mean"] for l in open(run_dir / "metrics.jsonl")]
    # Chance: the first generated word is one of 17 tokens, 4 of which are letters shown.
    assert sum(rewards[:3]) / 3 < 0.3, rewards
    assert sum(rewards[-3:]) / 3 > 0.9, rewards
