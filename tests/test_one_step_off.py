"""One-step-off and async training: rollouts overlap the learner's update; staleness is
bounded and the stale tokens are trained with the engine's sampling logprobs as the
behaviour policy (the importance ratio corrects them)."""
import threading
import time

import pytest
from echo_learning import assert_learned, train_echo
from test_curriculum import episode

from rlagent.config import ConfigError, load_config
from rlagent.pipeline import Rollouts, staleness
from rlagent.records import Task


def test_groups_with_a_too_stale_episode_are_dropped_whole():
    task = Task(id="t", env="e", prompt="p")
    eps = [episode(task, True, group=g) for g in (0, 0, 1, 1)]
    for e, v in zip(eps, (5, 5, 5, 3)):
        e.policy_version = v
    kept, m = staleness(eps, learner_version=6, max_staleness=2)
    assert kept == eps[:2]  # group 1 has an episode 3 versions behind
    assert m == {"staleness/mean": 1.0, "staleness/max": 1.0, "staleness/dropped_groups": 1.0,
                 "staleness/mixed_version_episodes": 0.0, "train/policy_version": 6.0}


def test_prefetch_overlaps_the_callers_work_and_next_returns_it():
    started, calls = threading.Event(), []

    def collect():
        calls.append(time.monotonic())
        started.set()
        time.sleep(0.3)
        return [], len(calls), []

    r = Rollouts("one_step_off", collect)
    assert r.next()[1] == 1  # nothing prefetched: collected now
    t0 = time.monotonic()
    r.prefetch()
    assert started.wait(1) and time.monotonic() - t0 < 0.2, "prefetch must not block"
    r.settle()
    assert time.monotonic() - t0 >= 0.3 and r.next()[1] == 2
    sync = Rollouts("sync", collect)
    sync.prefetch()  # sync mode never collects ahead
    assert len(calls) == 2 and sync.next()[1] == 3


def test_async_producer_stops_when_the_buffer_is_full():
    calls = []

    def collect():
        calls.append(1)
        return [], len(calls), []

    r = Rollouts("async", collect, buffer=2)
    assert r.next()[1] == 1  # starts the producer; the first batch
    time.sleep(0.3)
    assert len(calls) == 4, "2 in the buffer and 1 finished, waiting for room"
    assert [r.next()[1] for _ in range(3)] == [2, 3, 4]
    time.sleep(0.3)
    assert len(calls) == 7


def test_async_producer_errors_reach_the_loop():
    def collect():
        raise RuntimeError("engine gone")

    with pytest.raises(RuntimeError, match="engine gone"):
        Rollouts("async", collect).next()


def test_one_step_off_needs_staleness_one():
    with pytest.raises(ConfigError, match="rollout.max_staleness"):
        load_config(None, ["rollout.mode=one_step_off", "rollout.max_staleness=0"])
    with pytest.raises(ConfigError, match="rollout.max_staleness: must be >= 3"):
        load_config(None, ["rollout.mode=async", "rollout.async_buffer=2", "rollout.max_staleness=2"])


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


@pytest.mark.slow
def test_async_learns_echo_with_bounded_staleness(tiny_model, ray_cluster, tmp_path, run_seed):
    rows = train_echo(tiny_model, tmp_path, run_seed, "run.steps=100", "rollout.mode=async",
                      "rollout.async_buffer=1", "rollout.max_staleness=2")
    # Two versions of lag learn more slowly than sync: 100 steps instead of 80.
    assert_learned([r["reward/mean"] for r in rows])
    lags = [r["staleness/max"] for r in rows]
    assert max(lags) <= 2 and all(r["staleness/dropped_groups"] == 0 for r in rows), lags
    assert sum(r["staleness/mean"] for r in rows) / len(rows) > 0.5, "async is off-policy"
