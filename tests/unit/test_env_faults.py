"""Env faults in the episode runner: a hung step truncates its episode at the step timeout, a
raising step flags it, and an env that failed, or whose process died (a toy env's child
process, Web-v0's Chromium), is closed and replaced by a fresh instance for later episodes.

The engine is a stand-in that always replies with one word (vLLM itself is covered by the
slow tests); the envs, threads and timeouts are the runner's own.
"""

from __future__ import annotations

import time

from support.engines import ECHO_TASK, OneWordEngine, play, runner
from support.processes import kill, sleep_children

from rlagent.testing import ENV_ID, count
from rlagent.tracking import episode_metrics


def test_hung_step_truncates_its_episode_at_the_timeout_and_is_counted(tok, tmp_path):
    log = str(tmp_path / "faults.log")
    r = runner(tok, ENV_ID, {"hang_rate": 0.5, "hang_s": 5.0, "log": log}, step_timeout_s=0.5)
    t0 = time.monotonic()
    try:
        episodes = play(r, [(0, ECHO_TASK)], 12)
    finally:
        r.close()
    assert time.monotonic() - t0 < 4.0  # never waited for a hung step to finish
    hung = count(log, "hang")
    assert 0 < hung <= 12 and episode_metrics(episodes)["env/timeouts"] == hung
    for e in episodes:
        if e.termination == "env_timeout":
            assert "step_timeout_s=0.5" in e.turns[-1].info["error"]
        else:  # the others were not held up: they played both turns
            assert e.termination == "terminated" and len(e.turns) == 2


def test_raising_env_is_flagged_counted_and_replaced(tok, tmp_path):
    log = str(tmp_path / "faults.log")
    r = runner(tok, ENV_ID, {"raise_rate": 0.3, "log": log})
    try:
        first = play(r, [(0, ECHO_TASK)], 10)
        failed = count(log, "raise")
        assert episode_metrics(first)["env/errors"] == failed > 0
        assert all(
            "injected env fault" in e.turns[-1].info["error"] for e in first if e.termination == "env_error"
        )
        time.sleep(0.2)  # failed envs are closed off the loop
        assert count(log, "close") == failed  # a failed env is closed, never reused
        assert len(r._free_envs) == 10 - failed
        play(r, [(0, ECHO_TASK)], 10)
        assert count(log, "make") == 10 + failed  # the failed ones were built anew
    finally:
        r.close()


def test_env_whose_child_process_dies_mid_episode_is_replaced(tok, tmp_path):
    log = str(tmp_path / "faults.log")
    killed: list[int] = []

    def kill_children_once():
        if not killed:
            killed.extend(kill(sleep_children()))

    r = runner(
        tok, ENV_ID, {"child": True, "log": log}, engine=OneWordEngine(tok, before_reply=kill_children_once)
    )
    try:
        first = play(r, [(0, ECHO_TASK)], 3)
        assert len(killed) == 3
        assert [e.termination for e in first] == ["env_error"] * 3
        assert all("child process" in e.turns[-1].info["error"] for e in first)
        second = play(r, [(0, ECHO_TASK)], 3)
        assert [e.termination for e in second] == ["terminated"] * 3  # fresh instances
        assert count(log, "make") == 6
        assert not {p.pid for p in sleep_children()} & set(killed)
    finally:
        r.close()
    assert sleep_children() == []  # closing the runner ends every child


def test_env_whose_child_process_died_while_idle_is_replaced_before_use(tok, tmp_path):
    log = str(tmp_path / "faults.log")
    r = runner(tok, ENV_ID, {"child": True, "log": log})
    try:
        assert [e.termination for e in play(r, [(0, ECHO_TASK)], 2)] == ["terminated"] * 2
        assert len(kill(sleep_children())) == 2
        # The reused envs fail to reset; each is replaced at once, and no episode is lost.
        assert [e.termination for e in play(r, [(0, ECHO_TASK)], 2)] == ["terminated"] * 2
        assert count(log, "make") == 4
    finally:
        r.close()
