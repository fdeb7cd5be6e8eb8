"""An LLM judge as an outcome reward: a second model reads the episode and says Yes or No.

The score is the judge's probability of "Yes" against "No" for its next token, read from
the engine's logprobs (no text is sampled)::

    score = P(yes words) / (P(yes words) + P(no words))

where each side sums the probabilities of its verdict words (``yes_words``, ``no_words``;
each must be one token of the judge's vocabulary). The judge runs on a vLLM engine owned by
this plugin, started on first use in the process that scores (the reward service actor).

Concurrent ``score`` calls (the service scores up to ``CONCURRENCY`` episodes at once, each
from its own thread) are gathered by a micro-batcher: a queue drained by one thread, which
sends up to ``max_batch`` prompts to the engine in one ``generate`` call, waiting at most
``max_wait_ms`` for a batch to fill. Each caller gets its own score back.

>>> JudgeReward(template="Q: {question} A: {reponse}")
Traceback (most recent call last):
...
ValueError: JudgeReward template: unknown field {reponse}; the fields are {question}, {answer}, {response}
"""

from __future__ import annotations

import atexit
import concurrent.futures as cf
import math
import os
import queue
import string
import sys
import threading
import time
from dataclasses import dataclass, fields
from typing import Any, Literal

from rlagent.episode_view import EpisodeView

DEFAULT_TEMPLATE = (
    "You are grading an answer to a question.\n"
    "Question: {question}\n"
    "Reference answer: {answer}\n"
    "Response: {response}\n"
    "Does the response give the reference answer? Reply with Yes or No."
)
TEMPLATE_FIELDS = ("question", "answer", "response")


@dataclass(frozen=True)
class JudgeOptions:
    """The plugin's kwargs (``rewards.components[].kwargs`` in the run config)."""

    model: str = "SmolLM2-135M-Instruct"
    """Judge model: a local HF directory, a hub id, or the built-in default."""
    template: str = DEFAULT_TEMPLATE
    """The judge's user message, a ``str.format`` template over {question}, {answer}, {response}."""
    response: Literal["final", "transcript"] = "final"
    """{response} is the last assistant reply ("final") or every turn with the env's replies."""
    yes_words: tuple[str, ...] = ("Yes", "yes")
    """Verdict words counted as Yes; each must be a single token of the judge's vocabulary."""
    no_words: tuple[str, ...] = ("No", "no")
    """Verdict words counted as No; each must be a single token of the judge's vocabulary."""
    max_model_len: int = 2048
    """Longest judge prompt in tokens (a longer one is an error for that episode)."""
    kv_cache_gib: float = 1.0
    """KV cache of the judge's engine on CPU (VLLM_CPU_KVCACHE_SPACE, whole GiB, at least 1)."""
    threads: int = 2
    """Compute threads of the judge's engine (pinned to first_core .. first_core + threads - 1)."""
    first_core: int = 0
    """First CPU core of the judge's engine."""
    max_batch: int = 8
    """Most prompts per engine call."""
    max_wait_ms: float = 10.0
    """Longest the first queued prompt waits for others before its batch is sent."""
    dtype: str = "float32"
    """Judge weights' dtype (fp32 on CPU: bf16 is far slower there)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "yes_words", tuple(self.yes_words))
        object.__setattr__(self, "no_words", tuple(self.no_words))
        if self.response not in ("final", "transcript"):
            raise ValueError(f"JudgeReward response: expected 'final' or 'transcript', got {self.response!r}")
        if not self.yes_words or not self.no_words:
            raise ValueError("JudgeReward yes_words and no_words must each name at least one word")
        if set(self.yes_words) & set(self.no_words):
            raise ValueError(
                f"JudgeReward: {sorted(set(self.yes_words) & set(self.no_words))} is both a yes and a no word"
            )
        for name in ("max_model_len", "threads", "max_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"JudgeReward {name} must be >= 1, got {getattr(self, name)!r}")
        if self.max_wait_ms < 0 or self.first_core < 0 or self.kv_cache_gib <= 0:
            raise ValueError("JudgeReward: max_wait_ms and first_core must be >= 0, kv_cache_gib > 0")
        template_fields(self.template)


def template_fields(template: str) -> set[str]:
    """The fields ``template`` uses; ValueError for any other or when {response} is missing."""
    try:
        used = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as err:
        raise ValueError(f"JudgeReward template does not parse as str.format: {err}") from None
    for name in sorted(used):
        if name not in TEMPLATE_FIELDS:
            raise ValueError(
                f"JudgeReward template: unknown field {{{name}}}; the fields are "
                + ", ".join(f"{{{f}}}" for f in TEMPLATE_FIELDS)
            )
    if "response" not in used:
        raise ValueError("JudgeReward template must contain {response}: it is what is judged")
    return used


def render_response(episode: EpisodeView, mode: str) -> str:
    """The text under judgement: the last reply, or the whole exchange."""
    if mode == "final":
        return episode.turns[-1].action
    lines = []
    for turn in episode.turns:
        lines.append(f"Assistant: {turn.action}")
        if turn.observation is not None:
            lines.append(f"Environment: {turn.observation}")
    return "\n".join(lines)


def verdict_probability(yes_logprobs: list[float], no_logprobs: list[float]) -> float:
    """P(yes) / (P(yes) + P(no)) from log-probabilities, stable when both are tiny.

    >>> round(verdict_probability([math.log(0.3)], [math.log(0.1)]), 6)
    0.75
    """

    def logsumexp(xs: list[float]) -> float:
        top = max(xs)
        return top + math.log(sum(math.exp(x - top) for x in xs)) if top > -math.inf else top

    yes, no = logsumexp(yes_logprobs), logsumexp(no_logprobs)
    if yes == no == -math.inf:
        raise ValueError("the judge gives every verdict word probability 0")
    return 1.0 / (1.0 + math.exp(no - yes)) if no - yes < 700 else 0.0


_STOP = object()


class JudgeReward:
    """Outcome reward from an LLM judge's Yes/No probability; see the module docstring."""

    kind = "outcome"

    def __init__(self, **kwargs: Any):
        known = [f.name for f in fields(JudgeOptions)]
        unknown = sorted(set(kwargs) - set(known))
        if unknown:
            raise TypeError(f"JudgeReward got unknown option(s) {unknown}; it takes {known}")
        self.options = JudgeOptions(**kwargs)
        self._uses_answer = "answer" in template_fields(self.options.template)
        self._lock = threading.Lock()
        self._queue: queue.Queue = queue.Queue()
        self._engine: Any = None
        self._tokenizer: Any = None
        self._verdict_ids: tuple[list[int], list[int]] = ([], [])
        self._thread: threading.Thread | None = None
        self._start_error: BaseException | None = None
        self._closed = False
        self.engine_calls = 0  # batches sent to the engine so far
        self.prompts_judged = 0  # prompts in them (prompts_judged / engine_calls: mean batch)

    # --- scoring ------------------------------------------------------------------------
    def render(self, episode: EpisodeView) -> str | None:
        """The judge's user message for ``episode`` (None: nothing to judge)."""
        if not episode.turns:
            return None
        if self._uses_answer and episode.task.answer is None:
            return None  # the template compares against a reference the task does not have
        return self.options.template.format(
            question=episode.task.prompt,
            answer=episode.task.answer,
            response=render_response(episode, self.options.response),
        )

    def score(self, episode: EpisodeView) -> float | None:
        text = self.render(episode)
        if text is None:
            return None
        future: cf.Future = cf.Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("JudgeReward is closed")
            self._start()
            self._queue.put((text, future))
        return future.result()

    # --- engine and batcher -------------------------------------------------------------
    def start(self) -> None:
        """Start the engine now instead of on the first ``score`` (idempotent, thread-safe)."""
        with self._lock:
            if self._closed:
                raise RuntimeError("JudgeReward is closed")
            self._start()

    def _start(self) -> None:
        """Start the engine and the batching thread once (called under the lock)."""
        if self._start_error is not None:
            raise RuntimeError(
                f"the judge's engine failed to start: {self._start_error}"
            ) from self._start_error
        if self._thread is not None:
            return
        try:
            self._set_engine_env()
            self._engine, self._tokenizer = self._build_engine()
            yes, no = self._token_ids(self.options.yes_words), self._token_ids(self.options.no_words)
            if len(set(yes + no)) < len(yes + no):
                raise ValueError(
                    f"JudgeReward verdict words {self.options.yes_words} / "
                    f"{self.options.no_words} share a token ({yes} / {no})"
                )
            self._verdict_ids = (yes, no)
        except BaseException as err:
            self._start_error = err
            if self._engine is not None:
                self._engine.shutdown()
            raise
        self._thread = threading.Thread(target=self._serve, name="judge-batcher", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def _set_engine_env(self) -> None:
        """vLLM reads its settings when imported: set them first, or refuse clearly."""
        from rlagent.rollout.engine import engine_env

        o = self.options
        want = engine_env(o.threads, o.kv_cache_gib, first_core=o.first_core)
        if "vllm" in sys.modules:
            wrong = sorted(
                k
                for k, v in want.items()
                if k.startswith("VLLM_") and k != "VLLM_LOGGING_LEVEL" and os.environ.get(k) != v
            )
            if wrong:
                raise RuntimeError(
                    f"JudgeReward: vLLM was already imported in this process (pid {os.getpid()}) "
                    f"with other settings than the judge's engine needs ({', '.join(wrong)}); "
                    "vLLM reads them at import. Score in a process that has not imported vLLM "
                    "(the reward service actor), or set before importing it: "
                    + " ".join(f"{k}={want[k]}" for k in wrong)
                )
        os.environ.update(want)

    def _build_engine(self) -> tuple[Any, Any]:
        from transformers import AutoTokenizer

        from rlagent.model_source import resolve_model
        from rlagent.rollout.engine import BlockingEngine

        o = self.options
        path = resolve_model(o.model)
        tokenizer = AutoTokenizer.from_pretrained(path)
        engine = BlockingEngine(
            path, seed=0, max_model_len=o.max_model_len, dtype=o.dtype, max_num_seqs=o.max_batch
        )
        return engine, tokenizer

    def _token_ids(self, words: tuple[str, ...]) -> list[int]:
        ids = []
        for word in words:
            tokens = self._tokenizer.encode(word, add_special_tokens=False)
            if len(tokens) != 1:
                raise ValueError(
                    f"JudgeReward verdict word {word!r} is {len(tokens)} tokens for "
                    f"{self.options.model}; use words that are one token each"
                )
            ids.append(tokens[0])
        return ids

    def _serve(self) -> None:
        """The batching thread: the only thread that touches the engine and tokenizer."""
        stop = False
        while not stop:
            item = self._queue.get()
            if item is _STOP:
                break
            batch = [item]
            deadline = time.monotonic() + self.options.max_wait_ms / 1000
            while len(batch) < self.options.max_batch:
                try:
                    item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                batch.append(item)
            self._judge(batch)

    def _judge(self, batch: list[tuple[str, cf.Future]]) -> None:
        """Score one batch with one engine call; every caller gets a result or an error."""
        ready, prompts = [], []
        for text, future in batch:
            try:
                ids = self._prompt_ids(text)
            except Exception as err:
                future.set_exception(err)
                continue
            ready.append(future)
            prompts.append(ids)
        if not prompts:
            return
        yes_ids, no_ids = self._verdict_ids
        try:
            rows = self._engine.next_token_logprobs(prompts, yes_ids + no_ids)
            self.engine_calls += 1
            self.prompts_judged += len(prompts)
            for future, row in zip(ready, rows):
                future.set_result(verdict_probability(row[: len(yes_ids)], row[len(yes_ids) :]))
        except Exception as err:  # the engine failed: each caller of this batch sees why
            for future in ready:
                if not future.done():
                    future.set_exception(err)

    def _prompt_ids(self, text: str) -> list[int]:
        chat = self._tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=True
        )
        ids = list(chat["input_ids"])
        if len(ids) >= self.options.max_model_len:
            raise ValueError(
                f"the judge prompt is {len(ids)} tokens; the judge's max_model_len "
                f"is {self.options.max_model_len}"
            )
        return ids

    def close(self) -> None:
        """Serve what is queued, stop the batching thread and shut the engine down."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread, engine = self._thread, self._engine
            if thread is not None:
                self._queue.put(_STOP)
        if thread is not None:
            thread.join(timeout=300)
        if engine is not None:
            engine.shutdown()
        self._engine = None
        atexit.unregister(self.close)

    shutdown = close
