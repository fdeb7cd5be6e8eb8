"""One-step-off training: rollouts overlap the learner's update; staleness is exactly one
version and the stale tokens are trained with the engine's sampling logprobs as the
behaviour policy (the importance ratio corrects them). Async mode's learning test, with
weights landing mid-episode, is in ``test_partial_rollouts.py``."""

import pytest
from support.echo import assert_learned, train_echo


@pytest.mark.slow
def test_one_step_off_learns_echo_with_bounded_staleness(tiny_model, ray_cluster, tmp_path, run_seed):
    rows = train_echo(tiny_model, tmp_path, run_seed, "rollout.mode=one_step_off")
    assert_learned([r["reward/mean"] for r in rows])
    # Step 1 trains on the initial weights' episodes; every later step on episodes exactly one
    # version behind (made while the previous update ran).
    n = len(rows)
    assert [r["staleness/max"] for r in rows] == [0.0] + [1.0] * (n - 1)
    assert [r["staleness/mean"] for r in rows][1:] == [1.0] * (n - 1)
    assert all(r["staleness/dropped_groups"] == 0 for r in rows)
    # The learner sees stale tokens: its logprobs differ from the behaviour (engine) logprobs
    # far beyond what a fresh sync leaves, and the ratio against those clips some tokens.
    fresh = max(r["sync/logprob_gap_max"] for r in rows)
    stale_gap = [r["train/logprob_gap"] for r in rows[1:20]]
    assert sum(stale_gap) / len(stale_gap) > 20 * fresh, (stale_gap, fresh)
    assert rows[0]["train/logprob_gap"] < 5 * fresh
    assert any(r["clip_fraction"] > 0 for r in rows[1:20])
