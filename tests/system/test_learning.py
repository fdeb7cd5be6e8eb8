"""The whole trainer learns: a tiny random model goes from chance to a reliable 0.75+ reward
on Echo-v0 with each algorithm family (real Ray, vLLM and DeepSpeed). Settings and verdict:
``support/echo.py``; ``--run-seed N`` and ``--flip-policy-loss`` check that the verdict
holds on other numeric paths and fails for a wrong sign."""

import pytest
from support.echo import assert_learned, metrics_rows, train_echo

ALGOS = {
    "grpo": [],
    "dr_grpo": [],
    "rloo": [],
    # Batch-whitened advantages keep pushing a task whose group has collapsed onto a wrong
    # letter; at the shared entropy bonus of 0.01 one seed of five stalled at 0.79.
    "reinforce_pp": ["algo.entropy_coef=0.02"],
    # the critic starts at 0 and must learn the values: it gets a larger step than the policy
    "ppo": ["learner.critic_lr=0.002"],
}


@pytest.mark.slow
@pytest.mark.parametrize("algo", ALGOS)
def test_tiny_model_learns_echo(tiny_model, ray_cluster, tmp_path, run_seed, algo, request):
    if algo == "grpo":  # trained once for the session: test_eval evaluates its checkpoint
        rows = metrics_rows(request.getfixturevalue("echo_grpo_run"))
    else:
        rows = train_echo(tiny_model, tmp_path, run_seed, f"algo.name={algo}", *ALGOS[algo])
    assert_learned([r["reward/mean"] for r in rows])


@pytest.mark.slow
def test_tiny_model_learns_echo_through_the_agent_endpoint(tiny_model, ray_cluster, tmp_path, run_seed):
    """Echo-v0 played by an agent with its own loop and the ``openai`` client
    (``rlagent.testing.echo_agent``) through the rollout worker's endpoint: GRPO on the
    numbers it returns learns as the env's own loop does, and rises above 0.9."""
    agent = ["agent.entrypoint=rlagent.testing:echo_agent", "rewards.components=[{name: agent, weight: 1.0}]"]
    rows = train_echo(tiny_model, tmp_path, run_seed, *agent)
    rewards = [r["reward/mean"] for r in rows]
    assert_learned(rewards)
    assert max(sum(rewards[i : i + 5]) / 5 for i in range(len(rewards) - 4)) > 0.9, rewards
    assert all(r["agent/errors"] == 0 and r["agent/timeouts"] == 0 for r in rows)
