"""rollout.stop: a turn ends right after a stop string, which stays in the reply, through the
real engine and trainer; the episode's tokens and logprobs stay aligned."""

import json

import pytest
from support.runs import tiny_run_config

from rlagent.trainer import train


@pytest.mark.slow
def test_turns_end_at_the_first_stop_string(tiny_model, ray_cluster, tmp_path):
    cfg = tiny_run_config(
        tiny_model,
        tmp_path,
        "run.steps=1",
        "rollout.max_new_tokens=8",
        "rollout.max_episode_tokens=256",
        "rollout.max_turns=3",
        "rollout.stop=[b]",
        "algo.group_size=4",
        "algo.tasks_per_step=4",
        name="stops",
    )
    run_dir = train(cfg)
    with open(run_dir / "rollouts" / "step_00001.jsonl") as f:
        episodes = [json.loads(line) for line in f]
    replies = [m["content"] for e in episodes for m in e["messages"] if m["role"] == "assistant"]
    stopped = [r for r in replies if "b" in r.split()]
    # the untrained tiny model says "b" often (1 word in 17): some replies must have stopped
    assert len(stopped) >= 5, replies
    for r in stopped:
        words = r.split()
        assert words[-1] == "b" and words.count("b") == 1, r
    assert any(len(r.split()) < 8 for r in stopped)  # ended before the token budget
    for e in episodes:
        assert len(e["token_ids"]) == len(e["loss_mask"]) == len(e["logprobs"])
