"""DAPO dynamic sampling through the real trainer: groups without signal are dropped and
refilled by more rollouts, and the batch keeps its shape."""
import json

import pytest

from rlagent.config import load_config
from rlagent.trainer import train


@pytest.mark.slow
def test_zero_variance_groups_are_refilled(tiny_model, ray_cluster, tmp_path):
    cfg = load_config(None, [
        "run.name=dyn", f"run.output_dir={tmp_path}", "run.steps=2", "run.seed=3",
        f"model.path={tiny_model}", "env.id=rlagent/Echo-v0", "env.kwargs={num_turns: 1}",
        "rollout.max_new_tokens=2", "rollout.max_episode_tokens=64", "rollout.max_turns=1",
        # a random policy says the shown letter ~1 time in 17: most groups of 2 score [0, 0]
        "algo.group_size=2", "algo.tasks_per_step=4", "algo.dynamic_sampling=true",
        "algo.max_sampling_rounds=4", "rewards.components=[{name: env_reward, weight: 1.0}]",
        "tracking.wandb_mode=disabled"])
    run_dir = train(cfg)
    with open(run_dir / "metrics.jsonl") as f:
        steps = [json.loads(line) for line in f]
    assert all(s["batch/sampling_rounds"] >= 2 for s in steps), steps
    for step in (1, 2):
        with open(run_dir / "rollouts" / f"step_{step:05d}.jsonl") as f:
            episodes = [json.loads(line) for line in f]
        groups = sorted(e["group"] for e in episodes)
        assert groups == [0, 0, 1, 1, 2, 2, 3, 3]  # 4 groups of 2, renumbered
        by_group = {}
        for e in episodes:
            by_group.setdefault(e["group"], set()).add(e["reward"])
        informative = sum(len(r) > 1 for r in by_group.values())
        # kept groups come first; a group with signal is never dropped for one without
        rounds = steps[step - 1]["batch/sampling_rounds"]
        if rounds < 4:
            assert informative == 4, by_group
        assert 1 - steps[step - 1]["batch/zero_variance_groups"] == pytest.approx(informative / 4)
