"""One-step-off and async training: rollouts overlap the learner's update; staleness is
bounded and the stale tokens are trained with the engine's sampling logprobs as the
behaviour policy (the importance ratio corrects them)."""

import threading
import time

import pytest
from support.episodes import episode

from rlagent.config import ConfigError, load_config
from rlagent.records import Task
from rlagent.schedule import Rollouts, staleness


def test_groups_with_a_too_stale_episode_are_dropped_whole():
    task = Task(id="t", env="e", prompt="p")
    eps = [episode(task, True, group=g) for g in (0, 0, 1, 1)]
    for e, v in zip(eps, (5, 5, 5, 3)):
        e.policy_version = v
    kept, m = staleness(eps, learner_version=6, max_staleness=2)
    assert kept == eps[:2]  # group 1 has an episode 3 versions behind
    assert m == {
        "staleness/mean": 1.0,
        "staleness/max": 1.0,
        "staleness/dropped_groups": 1.0,
        "staleness/mixed_version_episodes": 0.0,
        "train/policy_version": 6.0,
    }


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


def counting_collect():
    """A collect that records each call; batch n's ``rounds`` is n."""
    calls: list[int] = []

    def collect():
        calls.append(1)
        return [], len(calls), []

    return calls, collect


def test_async_producer_stops_when_the_buffer_is_full():
    calls, collect = counting_collect()
    r = Rollouts("async", collect, buffer=2)
    assert r.next()[1] == 1  # starts the producer; the first batch
    time.sleep(0.3)
    assert len(calls) == 4, "2 in the buffer and 1 finished, waiting for room"
    assert [r.next()[1] for _ in range(3)] == [2, 3, 4]
    time.sleep(0.3)
    assert len(calls) == 7


def test_closed_async_producer_starts_no_new_batch_and_ends():
    calls, collect = counting_collect()
    r = Rollouts("async", collect, buffer=1)
    r.next()
    time.sleep(0.3)  # batch 2 in the buffer, batch 3 waiting for room
    r.close()
    r.producer.join(timeout=2)
    assert not r.producer.is_alive(), "the producer outlived the run"
    assert len(calls) == 3


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
