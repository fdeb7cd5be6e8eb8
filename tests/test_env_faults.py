"""Env faults in the episode runner: a hung step truncates its episode at the step timeout, a
raising step flags it, and an env that failed, or whose process died (a toy env's child
process, Web-v0's Chromium), is closed and replaced by a fresh instance for later episodes.

The engine is a stand-in that always replies with one word (vLLM itself is covered by the
slow tests); the envs, threads and timeouts are the runner's own.
"""
from __future__ import annotations

import os
import random
import signal
import time

import psutil
import pytest
from fault_injection import ENV_ID, count
from transformers import AutoTokenizer

from rlagent.chat import ChatTokens
from rlagent.config import RolloutConfig
from rlagent.engine import Generation
from rlagent.records import Task
from rlagent.rollout import EpisodeRunner
from rlagent.tracking import episode_metrics

ECHO_TASK = Task(id="echo-a-b", env=ENV_ID, prompt="a", answer="a b",
                 fields={"letters_seq": ["a", "b"]})


class OneWordEngine:
    """Replies ``word`` to every prompt; calls ``before_reply`` first (a fault hook)."""

    def __init__(self, tok, word: str = "a", before_reply=None):
        self.ids = tok.encode(word, add_special_tokens=False) + [tok.eos_token_id]
        self.before_reply = before_reply or (lambda: None)

    def generate(self, prompts, max_tokens, *, temperature, top_p=1.0, stop=None):
        self.before_reply()
        return [Generation(list(self.ids), [-0.5] * len(self.ids), "stop") for _ in prompts]


@pytest.fixture(scope="module")
def tok(tiny_model):
    return AutoTokenizer.from_pretrained(tiny_model)


def runner(tok, env_id, kwargs, engine=None, **cfg):
    rollout = RolloutConfig(**{"max_new_tokens": 4, "max_episode_tokens": 256, "max_turns": 2, **cfg})
    return EpisodeRunner(engine or OneWordEngine(tok), ChatTokens(tok), env_id, kwargs, rollout)


def sleep_children() -> list[psutil.Process]:
    """This process's ``sleep`` children (the toy env's child processes)."""
    found = []
    for p in psutil.Process().children(recursive=True):
        try:
            if p.name() == "sleep" and p.status() != psutil.STATUS_ZOMBIE:
                found.append(p)
        except psutil.NoSuchProcess:
            pass
    return found


def kill(processes: list[psutil.Process]) -> list[int]:
    """SIGKILL and reap; returns their pids."""
    for p in processes:
        p.kill()
    psutil.wait_procs(processes, timeout=5)
    return [p.pid for p in processes]


def test_hung_step_truncates_its_episode_at_the_timeout_and_is_counted(tok, tmp_path):
    log = str(tmp_path / "faults.log")
    r = runner(tok, ENV_ID, {"hang_rate": 0.5, "hang_s": 5.0, "log": log}, step_timeout_s=0.5)
    t0 = time.monotonic()
    try:
        episodes = r.run([(0, ECHO_TASK)], group_size=12, version=0)
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
        first = r.run([(0, ECHO_TASK)], group_size=10, version=0)
        failed = count(log, "raise")
        assert episode_metrics(first)["env/errors"] == failed > 0
        assert all("injected env fault" in e.turns[-1].info["error"]
                   for e in first if e.termination == "env_error")
        time.sleep(0.2)  # failed envs are closed off the loop
        assert count(log, "close") == failed  # a failed env is closed, never reused
        assert len(r._free_envs) == 10 - failed
        r.run([(0, ECHO_TASK)], group_size=10, version=0)
        assert count(log, "make") == 10 + failed  # the failed ones were built anew
    finally:
        r.close()


def test_env_whose_child_process_dies_mid_episode_is_replaced(tok, tmp_path):
    log = str(tmp_path / "faults.log")
    killed: list[int] = []

    def kill_children_once():
        if not killed:
            killed.extend(kill(sleep_children()))

    r = runner(tok, ENV_ID, {"child": True, "log": log},
               engine=OneWordEngine(tok, before_reply=kill_children_once))
    try:
        first = r.run([(0, ECHO_TASK)], group_size=3, version=0)
        assert len(killed) == 3
        assert [e.termination for e in first] == ["env_error"] * 3
        assert all("child process" in e.turns[-1].info["error"] for e in first)
        second = r.run([(0, ECHO_TASK)], group_size=3, version=0)
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
        assert [e.termination for e in r.run([(0, ECHO_TASK)], 2, 0)] == ["terminated"] * 2
        assert len(kill(sleep_children())) == 2
        # The reused envs fail to reset; each is replaced at once, and no episode is lost.
        assert [e.termination for e in r.run([(0, ECHO_TASK)], 2, 0)] == ["terminated"] * 2
        assert count(log, "make") == 4
    finally:
        r.close()


@pytest.mark.browser
def test_web_env_whose_chromium_is_killed_gets_a_fresh_browser(tok):
    from rlagent.envs.web.tasks import generate_task

    task = Task.from_dict({**generate_task(random.Random(0), 1, task="click-test"), "id": "w"})
    groups: list[int] = []

    def kill_browser():
        if kill_browser.armed:
            kill_browser.armed = False
            for p in psutil.Process().children(recursive=True):
                if p.name().startswith("chromedriver"):
                    groups.append(os.getpgid(p.pid))
                    os.killpg(groups[-1], signal.SIGKILL)

    kill_browser.armed = False
    r = runner(tok, "rlagent/Web-v0", {}, engine=OneWordEngine(tok, before_reply=kill_browser),
               max_turns=1, max_episode_tokens=4096, step_timeout_s=20.0)
    try:
        kill_browser.armed = True  # the browser dies between reset and the first step
        [broken] = r.run([(0, task)], 1, 0)
        assert broken.termination == "env_error" and len(groups) == 1
        [fresh] = r.run([(0, task)], 1, 0)  # a new env, with its own browser
        assert fresh.termination in ("truncated", "terminated", "max_turns"), fresh.turns
        [env] = r._free_envs
        assert env.unwrapped.browser.pgid != groups[0]
        os.killpg(env.unwrapped.browser.pgid, signal.SIGKILL)  # dies while idle
        [again] = r.run([(0, task)], 1, 0)  # replaced before use: nothing flagged
        assert again.termination in ("truncated", "terminated", "max_turns"), again.turns
    finally:
        r.close()
