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

import psutil
import pytest
from support.engines import OneWordEngine, play, runner

from rlagent.records import Task


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
    r = runner(
        tok,
        "rlagent/Web-v0",
        {},
        engine=OneWordEngine(tok, before_reply=kill_browser),
        max_turns=1,
        max_episode_tokens=4096,
        step_timeout_s=20.0,
    )
    try:
        kill_browser.armed = True  # the browser dies between reset and the first step
        [broken] = play(r, [(0, task)], 1)
        assert broken.termination == "env_error" and len(groups) == 1
        [fresh] = play(r, [(0, task)], 1)  # a new env, with its own browser
        assert fresh.termination in ("truncated", "terminated", "max_turns"), fresh.turns
        [env] = r._free_envs
        assert env.unwrapped.browser.pgid != groups[0]
        os.killpg(env.unwrapped.browser.pgid, signal.SIGKILL)  # dies while idle
        [again] = play(r, [(0, task)], 1)  # replaced before use: nothing flagged
        assert again.termination in ("truncated", "terminated", "max_turns"), again.turns
    finally:
        r.close()
