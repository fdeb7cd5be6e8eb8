"""OpenEnv environments under the rlagent contract (``openenv/<name>``): a real OpenEnv server
in a child process (tests/support/openenv_echo.py, made with OpenEnv's own classes and
``create_app``), driven through OpenEnv's own client."""

import os
import random
import signal
import subprocess
import sys
import time
import warnings

import gymnasium
import psutil
import pytest
from gymnasium.utils.env_checker import check_env

from rlagent.envs import openenv_env
from rlagent.tasks import env_class

ENV = "openenv/tests.support.openenv_echo"
LIGHT_APP = "tests.unit.test_openenv:health_app"  # no OpenEnv: starts in a fraction of the time


async def health_app(scope, receive, send):
    """A bare ASGI app answering every HTTP request with 200, for the process-lifetime tests."""
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b'{"status": "healthy"}'})


def make(env_id: str = ENV, **kwargs):
    openenv_env.register(env_id)
    return gymnasium.make(env_id, **kwargs)


SHARED = {"sessions_per_server": 4}  # the test app allows 4 sessions (max_concurrent_envs)


@pytest.fixture(scope="module")
def env():
    """One env, its server started once for the module (starting one costs seconds)."""
    e = make(**SHARED)
    e.reset(options={"task": {"id": "start"}})
    yield e
    e.close()


def server_url(env) -> str:
    env.unwrapped._connect()  # (re)started if a test closed it
    return env.unwrapped.server.url


def gone(pid: int, within_s: float = 10.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def test_an_episode_is_played_to_its_reward(env):
    obs, info = env.reset(options={"task": {"id": "t1", "seed": 3}, "episode_id": "e1"})
    assert obs.startswith("Say the word: ") and info["fields"] == {"turn": 0}
    assert info["invalid_action"] is False and info["turn"] == 0
    assert env.unwrapped.action_field == "message" and env.unwrapped.observation_key == "text"
    word = obs.removeprefix("Say the word: ")
    obs, reward, terminated, truncated, info = env.step("no idea")
    assert (obs, reward, terminated, truncated) == (f"Not quite. Say the word: {word}", 0.0, False, False)
    assert info["raw_reward"] == 0.0 and info["fields"] == {"turn": 1} and not info["invalid_action"]
    obs, reward, terminated, truncated, info = env.step(f"It is {word}!")
    assert (obs, reward, terminated, truncated) == (f"Correct: {word}.", 1.0, True, False)
    assert info["turn"] == 2 and info["raw_reward"] == 1.0
    # a task's own fields go to the env's reset: one miss ends this one
    env.reset(options={"task": {"id": "t2", "seed": 3, "max_turns": 1}})
    _, reward, terminated, _, _ = env.step("no idea")
    assert terminated and reward == 0.0


def test_a_task_is_one_start_for_every_sample_and_tasks_are_seeds(env):
    def start(task):
        return env.reset(options={"task": task})[0]

    assert start({"id": "a"}) == start({"id": "a"})
    assert len({start({"id": "s", "seed": s}) for s in range(8)}) > 1
    generate = env_class(ENV).generate_task
    task = generate(random.Random(0), 0, reset_kwargs={})  # the sampler passes the env's kwargs
    assert task["id"] == f"openenv/seed-{task['seed']}" and generate(random.Random(0), 0) == task


def test_a_running_server_by_base_url_with_reset_kwargs_and_a_format(env):
    other = make(
        base_url=server_url(env), reset_kwargs={"word": "hello"}, observation_format="{text} (turn {turn})"
    )
    obs, info = other.reset(options={"task": {"id": "t"}})
    assert other.unwrapped.server is None  # nothing was started
    assert obs == "Say the word: hello (turn 0)"
    assert info["fields"] == {"text": "Say the word: hello", "turn": 0}  # all, with a format
    assert other.step("hello")[:3] == ("Correct: hello. (turn 1)", 1.0, True)
    other.close()
    assert env.reset(options={"task": {"id": "a"}})[0].startswith("Say the word")  # still up


def test_envs_share_a_server_up_to_its_sessions(env):
    server_url(env)
    server = env.unwrapped.server
    others = [make(**SHARED) for _ in range(3)]
    for other in others:
        other.reset(options={"task": {"id": "t", "seed": 1}})
    assert all(o.unwrapped.server is server for o in others) and server.sessions == 4
    assert others[0].step("no idea")[0].startswith("Not quite") and env.reset()[0].startswith("Say the word")
    for other in others:
        other.close()
    assert server.sessions == 1 and server.exit_code() is None  # still serving the first env


def test_a_full_server_gets_a_second_one_and_the_last_env_out_stops_it():
    a, b, c = (openenv_env._acquire(LIGHT_APP, "test", {}, capacity=2) for _ in range(3))
    assert a is b and c is not a and (a.sessions, c.sessions) == (2, 1)
    for server in (a, b, c):
        openenv_env._release(server)
    assert a.proc is None and c.proc is None and gone(a.pid) and gone(c.pid)


def test_json_actions_and_replies_that_are_no_action(env):
    other = make(base_url=server_url(env), action_json=True, reset_kwargs={"word": "river"})
    other.reset(options={"task": {"id": "t"}})
    obs, reward, terminated, _, info = other.step("the word is river")
    assert info["invalid_action"] and reward == 0.0 and not terminated
    assert obs.startswith("invalid action: no JSON object") and "message (string, required)" in obs
    obs, _, _, _, info = other.step('{"msg": "river"}')  # the server's validation rejects it
    assert info["invalid_action"] and "rejected" in obs
    reply = 'Sure:\n```json\n{"message": "river"}\n```'
    obs, reward, terminated, _, info = other.step(reply)
    assert (obs, reward, terminated, info["invalid_action"]) == ("Correct: river.", 1.0, True, False)
    other.close()


def test_check_env_is_clean(env):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped, skip_render_check=True)


def test_names_resolve_to_server_apps(tmp_path, monkeypatch):
    # an installed OpenEnv env package, laid out as OpenEnv's own (say_env/server/app.py)
    package = tmp_path / "say_env"
    (package / "server").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "server" / "__init__.py").write_text("")
    (package / "server" / "app.py").write_text("from tests.support.openenv_echo import app\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("say", "say_env", "say-env", "say-v0"):
        assert openenv_env.resolve_app(name) == "say_env.server.app:app"
    (package / "openenv.yaml").write_text("spec_version: 1\nname: say_env\napp: server.app:main_app\n")
    assert openenv_env.resolve_app("say") == "say_env.server.app:main_app"  # as its manifest says
    assert openenv_env.resolve_app("tests.support.openenv_echo") == "tests.support.openenv_echo:app"
    assert openenv_env.resolve_app("label", server="say_env.server.app:app") == "say_env.server.app:app"


def test_bad_names_and_options_are_named():
    with pytest.raises(
        ValueError, match=r"^env.id openenv/no_such_env: no installed OpenEnv env 'no_such_env'"
    ):
        make("openenv/no_such_env")
    with pytest.raises(ValueError, match=r"^env.id openenv/tests.support.nothing: no module"):
        make("openenv/tests.support.nothing")
    with pytest.raises(ValueError, match=r"^env.kwargs.server: expected 'package.module:app'"):
        make(server="tests.support.openenv_echo")
    with pytest.raises(ValueError, match=r"^env.kwargs.colour: not an option of openenv/"):
        make(colour="red")
    with pytest.raises(ValueError, match=r"^env.kwargs.base_url: .* cannot be set too"):
        make(server=LIGHT_APP, base_url="http://127.0.0.1:1")


def in_group(process: psutil.Process, pgid: int) -> bool:
    """Alive (not a zombie) and in process group ``pgid``."""
    try:
        return os.getpgid(process.pid) == pgid and process.status() != psutil.STATUS_ZOMBIE
    except (ProcessLookupError, psutil.NoSuchProcess):
        return False


def children() -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True) if "rlagent.envs.openenv_env" in p.cmdline()]


def test_a_server_that_does_not_start_is_named_and_stopped():
    before = {p.pid for p in children()}
    with pytest.raises(RuntimeError, match=r"^env.id openenv/x: the server 'json:nothing' exited at startup"):
        make("openenv/x", server="json:nothing").reset()
    with pytest.raises(RuntimeError, match=r"did not answer /health within 0.1 s"):
        make(startup_timeout_s=0.1).reset()
    assert {p.pid for p in children()} <= before


def test_the_server_dies_with_the_process_that_started_it():
    code = (
        "import os, signal\n"
        "from rlagent.envs.openenv_env import _Server\n"
        f"s = _Server({LIGHT_APP!r}, 'test', {{}})\n"
        "s.wait_healthy(30)\n"
        "print(s.pid, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == -signal.SIGKILL, out.stderr
    assert gone(int(out.stdout)), "the server outlived the process that started it"


def test_close_stops_the_server_and_everything_it_started(env):
    env.reset(options={"task": {"id": "c", "helper": True}})  # the env starts a process of its own
    pid = env.unwrapped.server.pid
    helpers = [p for p in psutil.Process(pid).children(recursive=True) if p.name() == "sleep"]
    assert len(helpers) == 1
    env.close()
    env.close()  # twice is fine
    assert gone(pid) and gone(helpers[0].pid)
    assert not [p for p in psutil.process_iter() if in_group(p, pid)], "a process of the server is left"
