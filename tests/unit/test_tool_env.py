"""rlagent/Tool-v0: Gymnasium contract, a scripted agent that solves every level, failures as
observations, reasoning-gym and JSONL tasks."""

from __future__ import annotations

import doctest
import json
import random
import re
import subprocess
import sys
import warnings
from pathlib import Path

import gymnasium
import pytest
from gymnasium.utils.env_checker import check_env
from support import REPO
from support.isolation import isolation_unavailable

import rlagent.envs
import rlagent.envs.sandbox
import rlagent.envs.tool
import rlagent.envs.tool_tasks
from rlagent.envs.tool import INVALID_ACTION, ToolEnv
from rlagent.envs.tool_tasks import DEFAULT_DATASETS, LEVELS, generate_task, load_jsonl_tasks, score_answer
from rlagent.tasks import load_tasks

JSONL_TASKS = [
    {"id": "sq", "prompt": "What is 17 squared?", "answer": 289, "difficulty": 2},
    {"id": "cap", "prompt": "Capital of France?", "answer": "Paris", "scoring": "exact"},
    {"id": "pi", "prompt": "pi to 3 decimals?", "answer": "3.142", "scoring": "numeric", "difficulty": 2},
    {"id": "rev", "prompt": "Reverse 'abc'.", "answer": "c b a", "scoring": "normalized", "difficulty": 3},
]


@pytest.fixture(scope="module")
def env() -> ToolEnv:
    return ToolEnv(max_turns=4, sandbox_wall_s=2.0)


def _start(env: ToolEnv, task: dict) -> str:
    return env.reset(options={"task": task})[0]


def _output(observation: str) -> str:
    match = re.fullmatch(r"<output>\n(.*)\n</output>", observation, re.DOTALL)
    assert match, observation
    return match.group(1)


# --- a scripted agent: computes the answer with the tools, then answers -------------------
def _solver_call(task: dict) -> str:
    meta = task["entry"]["metadata"]
    name = task["dataset"]
    if name == "chain_sum":
        return f"<calc>{meta['expression']}</calc>"
    if name == "basic_arithmetic":  # exact rational arithmetic: "/" must not turn into floats
        return (
            "<python>\nimport re\nfrom fractions import Fraction\n"
            f"expr = {meta['expression']!r}\n"
            "print(eval(re.sub(r'\\d+', lambda m: f'Fraction({m.group()})', expr)))\n"
            "</python>"
        )
    if name in ("gcd", "lcm"):
        return f"<python>import math; print(math.{name}(*{meta['numbers']}))</python>"
    if name == "prime_factorization":
        return (
            "<python>```python\nimport sympy\n"
            f"f = sympy.factorint({meta['number']})\n"
            "print(' × '.join(str(p) for p in sorted(f) for _ in range(f[p])))\n```</python>"
        )
    raise AssertionError(name)


@pytest.mark.parametrize("difficulty", ToolEnv.difficulties)
@pytest.mark.parametrize("dataset", [*DEFAULT_DATASETS, "prime_factorization"])
def test_scripted_agent_solves_every_level(env, dataset, difficulty):
    task = generate_task(random.Random(difficulty), difficulty, datasets=[dataset])
    assert task["dataset"] == dataset and task["difficulty"] == difficulty
    assert task["dataset_config"] == LEVELS[dataset][difficulty]
    _start(env, task)
    obs, reward, terminated, truncated, info = env.step("Let me compute. " + _solver_call(task))
    assert (reward, terminated, truncated) == (0.0, False, False)
    assert info["tool_error"] is None and info["tool_calls"] == 1, obs
    _, reward, terminated, _, info = env.step(f"<answer>{_output(obs)}</answer>")
    assert (reward, terminated, info["success"], info["score"]) == (1.0, True, True, 1.0), task
    assert info["turn"] == 2 and info["tool_errors"] == 0


def test_check_env_passes_without_warnings():
    env = gymnasium.make("rlagent/Tool-v0", max_turns=3, some_trainer_kwarg="ignored")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped)
    assert [str(w.message) for w in caught] == []
    assert (
        gymnasium.spec("rlagent/Tool-v0").entry_point
        == rlagent.envs.BUILTIN_ENVS["rlagent/Tool-v0"]
        == "rlagent.envs.tool:ToolEnv"
    )


def test_reset_shows_instructions_and_task(env):
    task = generate_task(random.Random(0), 1, datasets="gcd")
    obs, info = env.reset(options={"task": task})
    assert obs.startswith("Solve the task.") and obs.endswith("Task: " + task["prompt"])
    assert info == {
        "task_id": task["id"],
        "turn": 0,
        "tool_calls": 0,
        "tool_errors": 0,
        "sandbox_isolation": env.sandbox.isolation,
    }


@pytest.mark.parametrize(
    "reply, reward, score",
    [
        ("<answer>12</answer>", 1.0, 1.0),
        ("<answer>\n 12 \n</answer>", 1.0, 1.0),  # stripped before scoring
        ("<answer>13</answer>", 0.0, 0.0),
        ("<answer>12 apples</answer>", 0.0, 2 / 9),  # reasoning-gym's partial credit: not success
        ("<answer></answer>", 0.0, 0.0),
    ],
)
def test_wrong_answers_score_zero(env, reply, reward, score):
    task = {
        "id": "t",
        "prompt": "7 + 5?",
        "answer": "12",
        "dataset": "chain_sum",
        "dataset_config": {},
        "entry": {"question": "7 + 5?", "answer": "12", "metadata": {}},
    }
    _start(env, task)
    _, r, terminated, _, info = env.step(reply)
    assert terminated and r == reward and info["score"] == pytest.approx(score)
    assert info["success"] is (reward == 1.0)


@pytest.mark.parametrize(
    "reply, observation",
    [
        ("I think it is 12.", INVALID_ACTION),
        ("", INVALID_ACTION),
        (None, INVALID_ACTION),
        ("<python>print(1)", "invalid action: <python> has no closing </python>"),
        ("<calc>1 + 1", "invalid action: <calc> has no closing </calc>"),
        ("<answer>12", "invalid action: <answer> has no closing </answer>"),
    ],
)
def test_malformed_actions_are_invalid_action_observations(env, reply, observation):
    _start(env, JSONL_TASKS[0])
    obs, reward, terminated, truncated, info = env.step(reply)
    assert obs == observation and info["invalid_action"] is True
    assert (reward, terminated, truncated, info["tool_calls"]) == (0.0, False, False, 0)


def test_turn_limit_truncates_and_step_after_end_raises():
    env = ToolEnv(max_turns=2)
    _start(env, JSONL_TASKS[0])
    assert env.step("thinking...")[3] is False
    _, _, terminated, truncated, info = env.step("<calc>17 * 17</calc>")
    assert (terminated, truncated, info["turn"]) == (False, True, 2)
    with pytest.raises(RuntimeError):
        env.step("<answer>289</answer>")


@pytest.mark.parametrize(
    "reply, kind, shown",
    [
        ("<python>1 / 0</python>", "exception", "ZeroDivisionError: division by zero"),
        ("<python>while True: pass</python>", "timeout", "[stopped: wall-clock limit of 2 s]"),
        ("<python>x = bytearray(10 * 1024**3)</python>", "memory", "MemoryError"),
        ("<python>import sys; sys.exit(2)</python>", "exit", "[exited with status 2]"),
        ("<python>open('/etc/escaped', 'w')</python>", "exception", "Read-only file system"),
        ("<calc>1 / 0</calc>", "calc", "error: division by zero"),
        ("<calc>__import__('os')</calc>", "calc", "error: unsupported syntax"),
    ],
)
def test_tool_errors_are_observations_with_their_kind(env, reply, kind, shown):
    if "escaped" in reply and env.sandbox.isolation != "namespaces":
        isolation_unavailable("the read-only file system")
    _start(env, JSONL_TASKS[0])
    obs, reward, terminated, _, info = env.step(reply)
    assert info["tool_error"] == kind and info["tool_errors"] == 1 and info["tool_calls"] == 1
    assert shown in obs and not terminated and reward == 0.0
    assert env.step("<python>print('fine')</python>")[0] == "<output>\nfine\n</output>"


def test_without_namespaces_the_env_refuses_to_run_unisolated_unless_told(monkeypatch, capfd):
    # As where unshare is blocked (Docker's default seccomp profile): "auto" is no longer "none".
    monkeypatch.setattr(rlagent.envs.sandbox, "namespaces_available", lambda python=None: False)
    with pytest.raises(RuntimeError, match="user namespaces are unavailable") as caught:
        gymnasium.make("rlagent/Tool-v0")
    assert "env.kwargs.sandbox_isolation: none" in str(caught.value)
    rlagent.envs.tool.warn_unisolated.cache_clear()
    env = gymnasium.make("rlagent/Tool-v0", sandbox_isolation="none").unwrapped
    ToolEnv(sandbox_isolation="none")
    warned = [ln for ln in capfd.readouterr().err.splitlines() if "sandbox_isolation" in ln]
    assert len(warned) == 1 and "without isolation" in warned[0]  # one line per process
    assert env.reset(options={"task": JSONL_TASKS[0]})[1]["sandbox_isolation"] == "none"
    obs, *_, info = env.step("<python>print(6 * 7)</python>")
    assert obs == "<output>\n42\n</output>" and info["sandbox_isolation"] == "none"
    assert env.step("<answer>289</answer>")[-1]["sandbox_isolation"] == "none"


def test_step_info_records_the_isolation_in_force(env):
    _start(env, JSONL_TASKS[0])
    for reply in ("<python>print(1)</python>", "no tool", "<answer>289</answer>"):
        assert env.step(reply)[-1]["sandbox_isolation"] == env.sandbox.isolation == "namespaces"


def test_first_tool_call_runs_and_answer_wins(env):
    _start(env, JSONL_TASKS[0])
    obs, *_, info = env.step("<calc>2 + 2</calc> and <python>print(5)</python>")
    assert obs == "<output>\n4\n</output>" and info["tool"] == "calc"
    obs, *_ = env.step("<python>x = 1</python>")
    assert obs == "<output>\n(no output; use print() to show values)\n</output>"
    _, reward, terminated, *_ = env.step("<python>print(289)</python><answer>289</answer>")
    assert terminated and reward == 1.0


def test_observations_are_bounded():
    env = ToolEnv(max_observation_chars=300)
    _start(env, JSONL_TASKS[0])
    obs, *_, info = env.step("<python>print('a' * 100_000); print('THE END')</python>")
    assert len(obs) <= 300 + len("<output>\n\n</output>")
    assert info["tool_error"] == "output_limit" and "characters cut" in obs
    obs, *_, info = env.step(f"<python>{'#' * 30_000}</python>")
    assert info["tool_error"] == "too_long" and "code too long" in obs


# --- tasks --------------------------------------------------------------------------------
def test_generated_tasks_are_reproducible_json_and_ignore_unknown_kwargs():
    for difficulty in ToolEnv.difficulties:
        a = ToolEnv.generate_task(random.Random(3), difficulty, max_turns=4, foo="bar")
        assert a == generate_task(random.Random(3), difficulty)
        assert json.loads(json.dumps(a)) == a and a["env"] == "rlagent/Tool-v0"
        assert a["dataset"] in DEFAULT_DATASETS and a["prompt"] == a["entry"]["question"]
    with pytest.raises(ValueError, match="unknown reasoning-gym dataset"):
        ToolEnv(datasets=["no_such_dataset"])


def test_a_task_is_scored_in_another_process_without_regenerating(tmp_path):
    task = generate_task(random.Random(5), 4, datasets=["basic_arithmetic"])
    path = tmp_path / "task.json"
    path.write_text(json.dumps(task))
    code = (
        "import json, sys; from rlagent.envs.tool_tasks import score_answer\n"
        "t = json.load(open(sys.argv[1]))\n"
        "print(score_answer(t, ' ' + t['entry']['answer']), score_answer(t, '0'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(path)],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
        timeout=120,
    )
    assert out.stdout.split() == ["1.0", "0.0"]


def _write_jsonl(tmp_path, tasks) -> Path:
    path = tmp_path / "tasks.jsonl"
    path.write_text("".join(json.dumps(t) + "\n" for t in tasks))
    return path


def test_jsonl_tasks_load_and_score(tmp_path):
    path = _write_jsonl(tmp_path, JSONL_TASKS)
    tasks = {t["id"]: t for t in load_jsonl_tasks(path)}
    assert tasks["cap"]["difficulty"] == 1 and tasks["sq"]["env"] == "rlagent/Tool-v0"
    # The trainer's loader gives the same tasks (Task records, back to dicts).
    assert [t.to_dict()["id"] for t in load_tasks(path, "rlagent/Tool-v0")] == list(tasks)
    env = ToolEnv(tasks_file=str(path))
    for task_id, answer, reward in [
        ("sq", "289.0", 1.0),
        ("sq", "288", 0.0),
        ("cap", "Paris", 1.0),
        ("cap", "paris", 0.0),
        ("pi", "3.1420", 1.0),
        ("rev", " C  B a ", 1.0),
    ]:
        _start(env, tasks[task_id])
        assert env.step(f"<answer>{answer}</answer>")[1] == reward, (task_id, answer)


def test_jsonl_tasks_drawn_by_difficulty(tmp_path):
    path = str(_write_jsonl(tmp_path, JSONL_TASKS))
    rng = random.Random(0)
    drawn = {generate_task(rng, 2, tasks_file=path)["id"] for _ in range(20)}
    assert drawn == {"sq", "pi"}
    with pytest.raises(ValueError, match=r"no task of difficulty 5 \(it has \[1, 2, 3\]"):
        generate_task(rng, 5, tasks_file=path)
    env = ToolEnv(tasks_file=path)
    obs, _ = env.reset(seed=0)
    assert any(obs.endswith(t["prompt"]) for t in JSONL_TASKS)


def test_bad_jsonl_task_is_an_error_naming_the_task(tmp_path):
    path = _write_jsonl(tmp_path, [{"id": "x", "prompt": "?", "answer": 1, "scoring": "fuzzy"}])
    with pytest.raises(ValueError, match=r"task 'x': scoring must be one of"):
        load_jsonl_tasks(path)
    with pytest.raises(ValueError, match="needs an 'answer'"):
        ToolEnv().reset(options={"task": {"id": "y", "prompt": "?"}})


def test_score_answer_doctests():
    result = doctest.testmod(rlagent.envs.tool_tasks)
    assert result.attempted > 0 and result.failed == 0


def test_score_answer_modes():
    assert score_answer({"prompt": "", "answer": "1,234"}, "1234") == 1.0
    assert score_answer({"prompt": "", "answer": "abc"}, " ABC ") == 1.0  # auto: normalized
    assert score_answer({"prompt": "", "answer": "abc", "scoring": "exact"}, " abc ") == 1.0


def test_arithmetic_references_are_exact_values():
    # basic_arithmetic floors divisions (5651 + 2904 / -15543 -> 5651); such entries are redrawn
    import random

    from rlagent.envs.calculator import safe_eval
    from rlagent.envs.tool_tasks import reasoning_gym_task

    rng = random.Random(1)
    for _ in range(100):
        task = reasoning_gym_task(rng, 4, "basic_arithmetic")
        assert float(task["answer"]) == pytest.approx(safe_eval(task["entry"]["metadata"]["expression"]))
