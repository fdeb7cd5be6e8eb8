"""Built-in environments: Gymnasium contract, the calculator protocol, the Echo sanity env."""

from __future__ import annotations

import doctest
import random
import warnings

import gymnasium
import pytest
from gymnasium.utils.env_checker import check_env

import rlagent.envs
import rlagent.envs.calculator
import rlagent.envs.text
from rlagent.envs.calculator import INVALID_ACTION, CalculatorEnv, generate_task, safe_eval
from rlagent.envs.echo import EchoEnv
from rlagent.envs.text import AnyText

TASK = {
    "id": "t1",
    "env": "rlagent/Calculator-v0",
    "prompt": "What is 37 * 14 + 5?",
    "answer": 523,
    "difficulty": 2,
    "expression": "37 * 14 + 5",
}


# Registered ids that cannot be made without kwargs, or are checked elsewhere, and why.
NOT_CHECKED_HERE = {
    "rlagent/GymText-v0": "an adapter: env_id (the Gymnasium env it wraps) is required",
    "rlagent/Web-v0": "needs a browser: test_web_env.py::test_check_env_passes_without_warnings",
}


def test_not_checked_here_names_registered_ids():
    assert set(NOT_CHECKED_HERE) <= set(rlagent.envs.BUILTIN_ENVS)


@pytest.mark.parametrize(
    "env_id", [e for e in sorted(rlagent.envs.BUILTIN_ENVS) if e not in NOT_CHECKED_HERE]
)
def test_check_env_passes_without_warnings(env_id):
    # The plain default construction: every env must reset and step without kwargs.
    env = gymnasium.make(env_id)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            check_env(env.unwrapped)
        assert [str(w.message) for w in caught] == []
    finally:
        env.close()


def test_registration_is_idempotent():
    import importlib

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        importlib.reload(rlagent.envs)
    assert gymnasium.spec("rlagent/Calculator-v0").entry_point == "rlagent.envs.calculator:CalculatorEnv"


def test_any_text_accepts_any_string_within_length():
    space = AnyText(max_length=20)
    assert "a b, c!\n<calc>é中</calc>"[:20] in space
    assert "" in space
    assert "x" * 21 not in space
    assert 5 not in space and b"abc" not in space
    assert space == AnyText(max_length=20) and space != AnyText(max_length=21)
    assert repr(space) == "AnyText(max_length=20)"
    space.seed(3)
    first = [space.sample() for _ in range(5)]
    space.seed(3)
    assert [space.sample() for _ in range(5)] == first
    assert all(s in space for s in first)


@pytest.mark.parametrize("module", [rlagent.envs.text, rlagent.envs.calculator])
def test_docstring_examples(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


def _calc_env(**kwargs):
    env = CalculatorEnv(**kwargs)
    obs, info = env.reset(seed=0, options={"task": TASK})
    return env, obs, info


def test_calculator_reset_shows_instructions_and_question():
    _, obs, info = _calc_env()
    assert obs == (
        "Use <calc>expression</calc> to compute, then reply <answer>number</answer>."
        "\nQuestion: What is 37 * 14 + 5?"
    )
    assert info["task_id"] == "t1" and info["tool_calls"] == 0


def test_calculator_scripted_correct_episode():
    env, _, _ = _calc_env()
    obs, reward, terminated, truncated, info = env.step("First: <calc>37 * 14</calc>")
    assert obs == "<result>518</result>"
    assert (reward, terminated, truncated) == (0.0, False, False)
    assert info["tool_calls"] == 1 and info["turn"] == 1 and info["tool_error"] is None
    obs, reward, terminated, truncated, info = env.step("<calc>518 + 5</calc>")
    assert obs == "<result>523</result>"
    _, reward, terminated, truncated, info = env.step("So <answer>523</answer>")
    assert (reward, terminated, truncated) == (1.0, True, False)
    assert info["success"] is True and info["parsed_answer"] == 523.0
    assert info["tool_calls"] == 2 and info["turn"] == 3


@pytest.mark.parametrize(
    "reply, reward",
    [
        ("<answer>522</answer>", 0.0),
        ("<answer>five hundred</answer>", 0.0),
        ("<answer>523.0</answer>", 1.0),
        ("<answer> 523 </answer><answer>1</answer>", 1.0),
        ("<answer>1</answer><answer>523</answer>", 0.0),
    ],
)
def test_calculator_final_answer_scoring(reply, reward):
    env, _, _ = _calc_env()
    _, r, terminated, _, info = env.step(reply)
    assert terminated and r == reward and info["success"] is (reward == 1.0)


def test_calculator_invalid_action_and_turn_limit():
    env, _, _ = _calc_env(max_turns=2)
    obs, reward, terminated, truncated, info = env.step("I think it is 523.")
    assert (
        obs
        == INVALID_ACTION
        == ("invalid action: reply with <calc>expression</calc> or <answer>number</answer>")
    )
    assert info["invalid_action"] is True and info["tool_calls"] == 0
    assert (reward, terminated, truncated) == (0.0, False, False)
    _, _, terminated, truncated, info = env.step("<calc>1 + 1</calc>")
    assert (terminated, truncated) == (False, True) and info["turn"] == 2
    with pytest.raises(RuntimeError):
        env.step("<answer>523</answer>")


@pytest.mark.parametrize(
    "expr, value",
    [
        ("1 + 2 * 3", "7"),
        ("(1 + 2) * 3", "9"),
        ("7 / 2", "3.5"),
        ("84 / 7", "12"),
        ("7 // 2", "3"),
        ("7 % 3", "1"),
        ("-2 ** 3", "-8"),
        ("+4 - -1", "5"),
        ("1.5 * 2", "3"),
    ],
)
def test_calculator_tool_results(expr, value):
    env, _, _ = _calc_env()
    obs, *_ = env.step(f"<calc>{expr}</calc>")
    assert obs == f"<result>{value}</result>"


@pytest.mark.parametrize(
    "expr",
    [
        "__import__('os')",
        "2**10**10",
        "x + 1",
        "(1).real",
        "9" * 40,
        "10 ** 20",
        "1 / 0",
        "1e400",
        "'a' * 3",
        "True + 1",
        "1j",
        "(-8) ** 0.5",
        "1 +",
        "",
        "[1, 2]",
        "(" * 300 + "1" + ")" * 300,
        "lambda: 1",
        "2 ** 64 ** 2",
        "(2 ** 60) * 2 ** 60",
    ],
)
def test_calculator_rejects_unsafe_or_huge_expressions(expr):
    env, _, _ = _calc_env()
    obs, reward, terminated, truncated, info = env.step(f"<calc>{expr}</calc>")
    assert obs.startswith("<result>error: ") and obs.endswith("</result>")
    assert isinstance(info["tool_error"], str) and info["tool_calls"] == 1
    assert (reward, terminated) == (0.0, False)


def test_calculator_non_string_action_is_invalid_not_an_exception():
    env, _, _ = _calc_env()
    obs, *_, info = env.step(None)
    assert obs == INVALID_ACTION and info["invalid_action"] is True


def test_generate_task_is_reproducible_and_grows_with_difficulty():
    for difficulty in CalculatorEnv.difficulties:
        a = generate_task(random.Random(7), difficulty)
        assert a == CalculatorEnv.generate_task(random.Random(7), difficulty)
        assert a["env"] == "rlagent/Calculator-v0" and a["difficulty"] == difficulty
        assert a["prompt"] == f"What is {a['expression']}?"
        assert safe_eval(a["expression"]) == a["answer"] and isinstance(a["answer"], int)
    sizes = {
        d: {len(generate_task(random.Random(s), d)["expression"].split()) for s in range(20)}
        for d in CalculatorEnv.difficulties
    }
    # n literals and n-1 operators: 2 * n - 1 tokens.
    assert sizes == {d: {2 * (d + 1) - 1} for d in CalculatorEnv.difficulties}
    ids = {generate_task(random.Random(s), 3)["id"] for s in range(50)}
    assert len(ids) > 45


def test_calculator_reset_without_task_is_seeded():
    env = CalculatorEnv()
    assert env.reset(seed=5)[0] == env.reset(seed=5)[0]
    prompts = {env.reset(seed=s)[0] for s in range(10)}
    assert len(prompts) > 5


def test_calculator_rejects_task_without_numeric_answer():
    with pytest.raises(ValueError, match="numeric answer"):
        CalculatorEnv().reset(options={"task": {**TASK, "answer": None}})


def test_gymnasium_make_calculator():
    env = gymnasium.make("rlagent/Calculator-v0", max_turns=3)
    obs, _ = env.reset(seed=1, options={"task": TASK})
    assert obs.endswith("What is 37 * 14 + 5?") and env.unwrapped.max_turns == 3
    assert env.step("<answer>523</answer>")[1] == 1.0


def test_echo_scores_each_turn():
    task = EchoEnv.generate_task(random.Random(0), 1, num_turns=3)
    task = {**task, "letters_seq": ["c", "a", "c"], "prompt": "c"}
    env = EchoEnv(num_turns=3)
    obs, info = env.reset(options={"task": task})
    assert obs == "c" and info == {"turn": 0, "correct": 0}
    obs, reward, terminated, truncated, info = env.step("c a b")
    assert (obs, reward, terminated, truncated) == ("a", 1 / 3, False, False)
    assert info["correct"] == 1 and "success" not in info
    obs, reward, terminated, _, info = env.step("b")
    assert (obs, reward, terminated, info["correct"]) == ("c", 0.0, False, 1)
    _, reward, terminated, _, info = env.step("  c\n")
    assert (reward, terminated, info["correct"], info["success"]) == (1 / 3, True, 2, False)


def test_echo_all_correct_is_success_and_empty_reply_is_wrong():
    env = EchoEnv(num_turns=2, letters="x y")
    obs, _ = env.reset(seed=4)
    total = 0.0
    for _ in range(2):
        obs, reward, terminated, _, info = env.step(obs)
        total += reward
    assert terminated and info["success"] is True and total == 1.0
    obs, _ = env.reset(seed=4)
    assert env.step("")[1] == 0.0 and obs in ("x", "y")


def test_echo_generate_task():
    task = EchoEnv.generate_task(random.Random(1), 2)
    assert task == EchoEnv.generate_task(random.Random(1), 2)
    seq = task["letters_seq"]
    assert len(seq) == 2 and set(seq) <= {"a", "b", "c", "d"}
    assert task["prompt"] == seq[0] and task["answer"] == " ".join(seq)
    assert task["env"] == "rlagent/Echo-v0" and EchoEnv.difficulties == (1, 2, 3, 4)
    # difficulty is the number of turns, unless the env fixes num_turns
    assert [len(EchoEnv.generate_task(random.Random(0), d)["letters_seq"]) for d in (1, 4)] == [1, 4]
    fixed = EchoEnv.generate_task(random.Random(0), 4, num_turns=3)
    assert len(fixed["letters_seq"]) == 3 and fixed["difficulty"] == 3
    env = EchoEnv()
    assert env.reset(options={"task": task})[0] == seq[0]


@pytest.mark.parametrize(
    "env_id, kwargs", [("rlagent/Calculator-v0", {}), ("rlagent/Tool-v0", {}), ("rlagent/Search-v0", {})]
)
def test_unclosed_tags_flood_is_an_ordinary_invalid_action(env_id, kwargs):
    # A lazy <tag>(.*?)</tag> regex takes tens of seconds on this reply; the parsers are linear.
    import time

    env = gymnasium.make(env_id, **kwargs).unwrapped
    env.reset(seed=0)
    t0 = time.perf_counter()
    obs, reward, terminated, _, info = env.step("<answer>" * 20000 + "<calc>" * 20000)
    assert time.perf_counter() - t0 < 2.0
    assert obs.startswith("invalid action") and reward == 0.0 and not terminated
