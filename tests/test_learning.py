"""The whole trainer learns: a tiny random model goes from chance to > 0.9 reward on Echo-v0,
with each algorithm family (real Ray, vLLM and DeepSpeed)."""
import json

import pytest

from rlagent.config import load_config
from rlagent.trainer import train

ALGOS = {
    "grpo": [],
    "dr_grpo": [],
    "rloo": [],
    # the critic starts at 0 and must learn the values: it gets a larger step than the policy
    "ppo": ["learner.critic_lr=0.002", "learner.lr=0.003"],
}


@pytest.mark.slow
@pytest.mark.parametrize("algo", ALGOS)
def test_tiny_model_learns_echo(tiny_model, ray_cluster, tmp_path, algo):
    cfg = load_config(None, [
        "run.name=echo", f"run.output_dir={tmp_path}", "run.steps=40", "run.seed=1",
        f"model.path={tiny_model}", "env.id=rlagent/Echo-v0", "env.kwargs={num_turns: 2}",
        "rollout.max_new_tokens=2", "rollout.max_episode_tokens=64", "rollout.max_turns=2",
        "rollout.kv_cache_gib=1", "algo.group_size=8", "algo.tasks_per_step=8",
        f"algo.name={algo}", "learner.lr=0.01", "learner.micro_batch_size=64",
        "rewards.components=[{name: env_reward, weight: 1.0}]",
        "tracking.wandb_mode=disabled", "tracking.save_rollouts=false", *ALGOS[algo],
    ])
    run_dir = train(cfg)
    with open(run_dir / "metrics.jsonl") as f:
        rewards = [json.loads(line)["reward/mean"] for line in f]
    # Chance: the first generated word is one of 17 tokens, 4 of which are letters shown.
    assert sum(rewards[:3]) / 3 < 0.3, rewards
    assert sum(rewards[-3:]) / 3 > 0.9, rewards
