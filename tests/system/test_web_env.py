"""rlagent/Web-v0 in a real headless Chromium: Gymnasium contract, a scripted agent that reads
only the observation text, failures as observations, the page clock, browser reuse and cleanup.

One env (one Chromium) serves the module; tests that need their own env close it first.
"""

from __future__ import annotations

import doctest
import random
import re
import subprocess
import sys
import time
import warnings

import gymnasium
import psutil
import pytest
from gymnasium.utils.env_checker import check_env
from support import REPO

import rlagent.envs.web.page
import rlagent.envs.web.tasks
from rlagent.envs.web import TIERS, WebEnv, all_tasks, generate_task
from rlagent.envs.web.page import ActionError, parse_actions

pytestmark = pytest.mark.browser
SEEDS = (0, 1, 2)


def _browser_pids() -> set[int]:
    return {
        p.pid
        for p in psutil.process_iter(["name"])
        if (p.info["name"] or "").startswith(("chromium", "chromedriver", "chrome_"))
    }


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait_gone(pids: list[int], timeout: float = 5.0) -> list[int]:
    """The pids still running after up to ``timeout`` seconds."""
    deadline = time.time() + timeout
    while (alive := [p for p in pids if _alive(p)]) and time.time() < deadline:
        time.sleep(0.1)
    return alive


@pytest.fixture(scope="module")
def baseline_browsers() -> set[int]:
    """Browser processes running before this module started (none on a CI machine)."""
    return _browser_pids()


@pytest.fixture(scope="module")
def env(baseline_browsers):
    env = gymnasium.make("rlagent/Web-v0").unwrapped
    yield env
    env.close()


def _start(env: WebEnv, task: str, seed: int) -> str:
    return env.reset(options={"task": {"task": task, "seed": seed}})[0]


# --- a scripted agent: reads the utterance and the element listing, writes actions ---------
def _elements(observation: str) -> list[dict]:
    """The listing as dicts: ref (None for bare text), tag, text, depth."""
    out = []
    for line in observation.split("\nPage:\n", 1)[1].splitlines():
        depth = (len(line) - len(line.lstrip())) // 2
        m = re.match(r'\s*\[(-?\d+)\] (\S+)(?: "(.*?)")?', line)
        if m:
            out.append(
                {"ref": int(m.group(1)), "tag": m.group(2), "text": m.group(3), "depth": depth, "line": line}
            )
        elif t := re.fullmatch(r'\s*"(.*)"', line):
            out.append({"ref": None, "tag": "t", "text": t.group(1), "depth": depth, "line": line})
    return out


def _ref(elements, text=None, tag=None, typeable=False) -> int:
    for e in elements:
        if (
            e["ref"] is not None
            and (text is None or e["text"] == text)
            and (tag is None or e["tag"] == tag)
            and (not typeable or "(type)" in e["line"])
        ):
            return e["ref"]
    raise AssertionError(f"no element text={text} tag={tag} in {elements}")


def _checkbox_labels(elements) -> dict[str, int]:
    """Label text -> ref of the checkbox/radio before it (the text line after the input)."""
    return {
        nxt["text"]: e["ref"]
        for e, nxt in zip(elements, elements[1:])
        if e["tag"] in ("input_checkbox", "input_radio") and nxt["ref"] is None
    }


def scripted_replies(observation: str) -> list[str]:
    """The replies (one per turn) that solve the page, from the observation text alone."""
    utterance = re.search(r"^Task: (.*)$", observation, re.M).group(1)
    els = _elements(observation)
    if m := re.fullmatch(r'Click on the "(.+)" button\.', utterance):
        return [f"click({_ref(els, m.group(1), 'button')})"]
    if m := re.fullmatch(r'Click on the link "(.+)"\.', utterance):
        return [f"I click the link.\nclick({_ref(els, m.group(1))})"]
    if utterance == "Focus into the textbox.":
        return [f"click([{_ref(els, typeable=True)}])"]
    if m := re.fullmatch(r'Enter "(.+)" into the text field and press Submit\.', utterance):
        field, submit = _ref(els, typeable=True), _ref(els, "Submit", "button")
        return [f'type({field}, "{m.group(1)}")', f"click({submit})"]
    if m := re.fullmatch(r"Select (.*) and click Submit\.", utterance):
        words = [] if m.group(1) == "nothing" else m.group(1).split(", ")
        labels = _checkbox_labels(els)
        clicks = [f"click({labels[w]})" for w in words]
        return ["\n".join([*clicks, f"click({_ref(els, 'Submit', 'button')})"])]
    if m := re.fullmatch(
        r'Enter the username "(.+)" and the password "(.+)" into the text '
        r'fields and press login\.',
        utterance,
    ):
        user, password = _ref(els, tag="input_text"), _ref(els, tag="input_password")
        return [
            f"type({user}, {m.group(1)!r}) type({password}, {m.group(2)!r})",
            f"click({_ref(els, 'Login', 'button')})",
        ]
    raise AssertionError(f"the scripted agent cannot do: {utterance}")


def run_scripted(env: WebEnv, task: str, seed: int) -> tuple[float, dict, list[str]]:
    obs = _start(env, task, seed)
    transcript = [obs]
    for reply in scripted_replies(obs):
        obs, reward, terminated, truncated, info = env.step(reply)
        transcript += [reply, obs]
        assert not info["invalid_action"], info
        if terminated or truncated:
            break
    return reward, info, transcript


@pytest.mark.parametrize(
    "task",
    [
        "click-button",
        "click-link",
        "focus-text",
        "enter-text",
        "click-checkboxes",
        "click-option",
        "login-user",
    ],
)
def test_scripted_agent_solves_tasks(env, task):
    for seed in SEEDS:
        reward, info, transcript = run_scripted(env, task, seed)
        assert reward == 1.0, "\n".join(transcript)
        assert info["success"] is True and info["raw_reward"] > 0 and info["task"] == task
        assert info["reason"] is not None or info["raw_reward"] == 1.0


def test_check_env_passes_without_warnings(env):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env)
    assert [str(w.message) for w in caught] == []


def test_observation_lists_elements_with_refs(env):
    obs = _start(env, "login-user", 3)
    assert obs.startswith("Do the task on the web page below.")
    assert re.search(r'^Task: Enter the username "\w+" and the password', obs, re.M)
    assert re.search(r'^\[\d+\] input_text value="" \(type\)$', obs, re.M)
    assert re.search(r'^\[\d+\] button "Login" \(click\)$', obs, re.M)
    assert obs == _start(env, "login-user", 3)  # same seed, same page, same refs
    field = _ref(_elements(obs), tag="input_text")
    obs, *_ = env.step(f'type({field}, "abc")')
    assert f'[{field}] input_text value="abc" (type) focused' in obs
    obs, *_ = env.step(f'type({field}, "xy")')  # type() replaces the text
    assert f'[{field}] input_text value="xy" (type) focused' in obs


def test_wrong_action_gives_zero(env):
    obs = _start(env, "click-test-2", 5)
    target = re.search(r"Click button (\w+)\.", obs).group(1)
    wrong = next(e["ref"] for e in _elements(obs) if e["tag"] == "button" and e["text"] != target)
    obs, reward, terminated, truncated, info = env.step(f"click({wrong})")
    assert (obs, reward, terminated, truncated) == ("", 0.0, True, False)
    assert info["success"] is False and info["raw_reward"] <= 0 and not info["invalid_action"]
    assert info["action"] == [{"kind": "click", "ref": wrong}]
    with pytest.raises(RuntimeError):
        env.step("click(1)")


@pytest.mark.parametrize(
    "reply, error",
    [
        ("I would click the button", "no action found"),
        ("click(the button)", "click takes an element ref"),
        ('type(5, hello)', "type takes a ref and a quoted text"),
        ('press("Hyper")', "unknown key"),
        ("click(999)", "no element [999] on the page"),
        (None, "no action found"),
    ],
)
def test_malformed_or_impossible_action_is_an_observation(env, reply, error):
    obs = _start(env, "enter-text", 0)
    page = obs.split("\n", 1)[1]
    obs, reward, terminated, truncated, info = env.step(reply)
    assert obs.startswith("invalid action: ") and error in obs.splitlines()[0]
    assert obs.endswith(page)  # the page is shown again
    assert (reward, terminated, truncated) == (0.0, False, False)
    assert info["invalid_action"] is True and info["turn"] == 1 and error in info["error"]


def test_type_into_a_button_is_impossible_and_stops_the_reply(env):
    obs = _start(env, "enter-text", 1)
    field, submit = _ref(_elements(obs), typeable=True), _ref(_elements(obs), "Submit")
    obs, reward, terminated, _, info = env.step(f'type({field}, "x") type({submit}, "y")')
    assert obs.startswith(f"invalid action: [{submit}] is a button, not a text field")
    assert "(the 1 action(s) before it were done)" in obs.splitlines()[0]
    assert 'value="x"' in obs and not terminated and info["invalid_action"]


def test_press_enter_and_several_actions_per_reply(env):
    obs = _start(env, "enter-text", 2)
    word = re.search(r'Enter "(.+)" into', obs).group(1)
    field, submit = _ref(_elements(obs), typeable=True), _ref(_elements(obs), "Submit")
    _, reward, terminated, _, info = env.step(f'type({field}, "{word}")\nclick({submit})')
    assert (reward, terminated) == (1.0, True)
    assert [a["kind"] for a in info["action"]] == ["type", "click"]
    obs = _start(env, "terminal", 1)  # the terminal runs a command on Enter
    ext = re.search(r"ending with the extension (\.\w+)", obs).group(1)
    field = _ref(_elements(obs), typeable=True)
    obs, reward, *_ = env.step(f'type({field}, "ls") press("Enter")')
    texts = [e["text"] or "" for e in _elements(obs)]
    files = texts[texts.index("ls") + 1].split()
    target = next(f for f in files if f.endswith(ext))
    _, reward, terminated, _, info = env.step(f'type({field}, "rm {target}") press("Enter")')
    assert (reward, terminated, info["success"]) == (1.0, True, True)


def test_parse_actions_grammar():
    assert parse_actions('click(3) type(4, "a \\"b\\" (c)") press("tab")', 5) == [
        rlagent.envs.web.page.WebAction("click", ref=3),
        rlagent.envs.web.page.WebAction("type", ref=4, text='a "b" (c)'),
        rlagent.envs.web.page.WebAction("press", text="<Tab>"),
    ]
    assert parse_actions('type(4, "click(9)")', 5)[0].text == "click(9)"  # text, not an action
    with pytest.raises(ActionError, match="limit is 2"):
        parse_actions("click(1) click(2) click(3)", 2)


@pytest.mark.parametrize("module", [rlagent.envs.web.page, rlagent.envs.web.tasks])
def test_docstring_examples(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


def test_tiers_and_generate_task():
    names = all_tasks()
    assert len(names) > 100 and "click-button" in names
    assert all(t in names for tier in TIERS.values() for t in tier)
    assert WebEnv.difficulties == (1, 2, 3, 4)
    for d in WebEnv.difficulties:
        task = generate_task(random.Random(d), d)
        assert task == WebEnv.generate_task(random.Random(d), d)
        assert task["task"] in TIERS[d] and task["difficulty"] == d
        assert task["env"] == "rlagent/Web-v0" and isinstance(task["seed"], int)
        assert task["id"] == f"web-{task['task']}-{task['seed']}" and task["prompt"]
    assert generate_task(random.Random(0), 3, task="click-test")["task"] == "click-test"
    with pytest.raises(ValueError, match="did you mean click-button"):
        generate_task(random.Random(0), 1, task="click-buton")
    with pytest.raises(ValueError, match="difficulty must be one of"):
        generate_task(random.Random(0), 7)


def test_browser_is_reused_across_resets_and_tasks(env):
    _start(env, "click-test", 0)
    session, pgid = env.browser.session_id, env.browser.pgid
    for task in ("click-button", "enter-text", "click-test"):
        _start(env, task, 1)
    assert (env.browser.session_id, env.browser.pgid) == (session, pgid)
    assert len(env.browser.pids) >= 2  # chromedriver and Chromium's processes share one group


def test_page_clock_is_raised_and_still_works(env):
    """MiniWoB ends an episode after 10 s. The env raises the page clock before every reset:
    the default (a day) outlasts a pause, and a short limit set the same way does expire."""
    obs = _start(env, "click-test", 0)
    assert env.browser.driver.execute_script("return core.EPISODE_MAX_TIME;") == 86_400_000
    time.sleep(1.2)
    assert env.step(f"click({_ref(_elements(obs), 'Click Me!')})")[1] == 1.0
    env.browser.time_limit_ms = 1000  # what time_limit_s=1 sets
    try:
        obs = _start(env, "click-test", 0)
        time.sleep(1.2)
        obs, reward, terminated, _, info = env.step(f"click({_ref(_elements(obs), 'Click Me!')})")
        assert (reward, terminated, info["success"]) == (0.0, True, False)
        assert info["reason"] == "timed out" and info["raw_reward"] == -1
    finally:
        env.browser.time_limit_ms = int(env.time_limit_s * 1000)


def test_close_leaves_no_browser_process(env):
    _start(env, "click-test", 0)
    pids = env.browser.pids
    env.close()
    env.close()  # idempotent
    assert env.browser is None and _wait_gone(pids) == []


def test_killed_python_leaves_no_browser_process():
    code = (
        "import time; from rlagent.envs.web import WebEnv; env = WebEnv(task='click-test');"
        "env.reset(seed=0); print(*env.browser.pids, flush=True); time.sleep(60)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(p) for p in proc.stdout.readline().split()]
        assert len(pids) >= 2
    finally:
        proc.kill()  # SIGKILL: neither close() nor atexit runs
        proc.wait()
    assert _wait_gone(pids) == []


def test_no_browser_process_left_by_this_module(baseline_browsers):
    assert _wait_gone(sorted(_browser_pids() - baseline_browsers)) == []
