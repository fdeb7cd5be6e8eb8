"""The agent loop: every episode its own coroutine. A slow env step holds back only its own
episode, at most ``rollout.max_concurrent_episodes`` play at once, a group is handed on the
moment its last episode ends, and every turn records when it generated and stepped.

The engine is a stand-in that replies one word after a short delay (vLLM itself is covered by
the system tests, which check the same on the real engine); envs, threads and timeouts are
the runner's own.
"""

from __future__ import annotations

import dataclasses
import time

import gymnasium
import pytest
from support.engines import ECHO_TASK, OneWordEngine, play, runner

from rlagent.config import ConfigError, load_config
from rlagent.envs.latency import Latency, lognormal_params
from rlagent.testing import ENV_ID


def task(i: int, step_s: float):
    return dataclasses.replace(ECHO_TASK, id=f"t{i}", fields={**ECHO_TASK.fields, "step_s": step_s})


def test_fast_episodes_finish_every_turn_before_a_slow_step_returns(tok):
    tasks = [(0, task(0, 1.5))] + [(i, task(i, 0.05)) for i in range(1, 8)]
    r = runner(tok, ENV_ID, {}, OneWordEngine(tok, delay_s=0.01))
    try:
        episodes = play(r, tasks, 1)
    finally:
        r.close()
    slow, fast = episodes[0], episodes[1:]
    assert [len(e.turns) for e in episodes] == [2] * 8
    first_slow_step = slow.turns[0].env_end
    assert first_slow_step >= 1.5
    assert max(e.turns[-1].env_end for e in fast) < first_slow_step
    for e in episodes:  # the timeline of each turn is ordered
        for t in e.turns:
            assert 0 <= t.generate_start <= t.generate_end <= t.env_start <= t.env_end


def test_at_most_max_concurrent_episodes_play_at_once(tok):
    tasks = [(i, task(i, 0.1)) for i in range(6)]
    r = runner(tok, ENV_ID, {}, OneWordEngine(tok), max_concurrent_episodes=2)
    try:
        episodes = play(r, tasks, 1)
    finally:
        r.close()
    spans = [(e.turns[0].generate_start, e.turns[-1].env_end) for e in episodes]
    for t, _ in spans:  # at any episode's start, at most one other is running
        assert sum(a <= t < b for a, b in spans) <= 2
    # and the slots were used: 6 episodes of ~0.2 s took about three rounds, not six
    assert max(b for _, b in spans) < 6 * 0.2


def test_a_group_is_handed_on_when_its_last_episode_ends(tok):
    handed: list[tuple[int, float]] = []
    t0 = time.time()
    tasks = [(0, task(0, 0.8)), (1, task(1, 0.02))]
    r = runner(tok, ENV_ID, {}, OneWordEngine(tok))
    try:
        episodes = play(r, tasks, 3, on_group=lambda g: handed.append((g[0].group, time.time() - t0)))
    finally:
        r.close()
    assert [g for g, _ in handed] == [1, 0]  # the fast group first, while the slow one played
    assert handed[0][1] < min(e.turns[0].env_end for e in episodes if e.group == 0)
    assert [e.group for e in episodes] == [0, 0, 0, 1, 1, 1]


def test_each_episode_has_its_own_id_which_its_env_and_reward_view_see(tok, tmp_path):
    from rlagent.episode_view import EpisodeView
    from rlagent.testing import episodes as logged

    log = tmp_path / "faults.log"
    r = runner(tok, ENV_ID, {"raise_rate": 1.0, "log": str(log)}, OneWordEngine(tok))
    try:
        played = play(r, [(0, task(0, 0.0)), (1, task(1, 0.0))], 2)
    finally:
        r.close()
    uids = [e.uid for e in played]
    assert len(set(uids)) == 4 and all(len(u) == 16 for u in uids)
    assert sorted(logged(str(log), "raise")) == sorted(uids)  # each env's step saw its episode's id
    assert [EpisodeView.of(e).uid for e in played] == uids
    assert [EpisodeView.from_dict(e.to_dict()).uid for e in played] == uids


def test_latency_wrapper_draws_the_configured_lognormal():
    mu, sigma = lognormal_params(1.0, 6.0)
    env = Latency(gymnasium.make("rlagent/Echo-v0"), 1.0, 6.0, seed=3)
    draws = sorted(env.draw() for _ in range(20000))
    assert abs(sum(draws) / len(draws) - 1.0) < 0.05
    assert 5.0 < draws[int(0.99 * len(draws))] < 7.2
    again = Latency(gymnasium.make("rlagent/Echo-v0"), 1.0, 6.0, seed=3)
    assert again.rng.random() != env.rng.random()  # the process's next env draws its own


def test_latency_wrapper_sleeps_around_step(tok):
    cfg = load_config(None, ["env.latency={mean_s: 0.05, p99_s: 0.1}"])
    r = runner(tok, ENV_ID, {}, OneWordEngine(tok))
    r.latency = cfg.env.latency
    try:
        [e] = play(r, [(0, task(0, 0.0))], 1)
    finally:
        r.close()
    assert all(t.env_end - t.env_start > 0.01 for t in e.turns)
    made = gymnasium.make("rlagent/Latency-v0", env_id="rlagent/Echo-v0", mean_s=0.01, p99_s=0.02)
    assert isinstance(made.unwrapped, gymnasium.Env) and made.reset(options={"task": ECHO_TASK.to_dict()})


@pytest.mark.parametrize(
    "value", ["{mean_s: 0, p99_s: 1}", "{mean_s: 2, p99_s: 1}", "{mean_s: 1, p99_s: 100}"]
)
def test_impossible_latency_is_a_config_error(value):
    with pytest.raises(ConfigError, match="env.latency: need 0 < mean_s <= p99_s"):
        load_config(None, [f"env.latency={value}"])
