"""Each built-in env trains through the real trainer (Ray, vLLM, DeepSpeed) for two steps:
the loop runs end to end, episodes reach the env and come back scored."""
import json

import pytest

from rlagent.config import load_config
from rlagent.trainer import train

ENVS = {
    "search": ["env.id=rlagent/Search-v0", "env.kwargs={max_turns: 2}"],
    "tool": ["env.id=rlagent/Tool-v0", "env.kwargs={max_turns: 2}"],
    "web": ["env.id=rlagent/Web-v0", "data.difficulties=[1]"],
    "textworld": ["env.id=rlagent/TextWorld-v0",
                  "env.kwargs={games_dir: tests/fixtures/textworld, max_steps: 2}",
                  "data.path=tests/fixtures/textworld/tasks.jsonl"],
    "calculator": ["env.id=rlagent/Calculator-v0"],
    # any registered Gymnasium text env, through the generic wrapper (tasks are seeds)
    "gymtext": ["env.id=rlagent/GymText-v0", "env.kwargs={env_id: rlagent/Calculator-v0}"],
}


@pytest.mark.slow
@pytest.mark.parametrize("env", ENVS)
def test_two_training_steps(tiny_model, ray_cluster, tmp_path, env):
    cfg = load_config(None, [
        "run.name=envs", f"run.output_dir={tmp_path}", "run.steps=2", f"model.path={tiny_model}",
        "rollout.max_new_tokens=6", "rollout.max_episode_tokens=1024", "rollout.max_turns=2",
        "algo.group_size=2", "algo.tasks_per_step=2", "learner.lr=0.01",
        "rewards.components=[{name: env_reward, weight: 1.0}]", "tracking.wandb_mode=disabled",
        *ENVS[env]])
    run_dir = train(cfg)
    with open(run_dir / "metrics.jsonl") as f:
        steps = [json.loads(line) for line in f]
    assert [s["step"] for s in steps] == [1, 2]
    with open(run_dir / "rollouts" / "step_00002.jsonl") as f:
        episodes = [json.loads(line) for line in f]
    assert len(episodes) == 4
    for e in episodes:
        assert e["termination"] not in ("env_error", "env_timeout"), e["turns"]
        assert e["turns"] and e["reward"] is not None
        assert e["messages"][0]["content"]  # the env's first observation reached the model
    assert (run_dir / "checkpoints" / "final" / "config.json").exists()
