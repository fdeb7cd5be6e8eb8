"""``rlagent/Search-v0``: answer a question by searching a corpus (Search-R1 protocol).

Each turn the model either searches, ``<search>founder of Zolvane Works</search>`` (the env
answers ``<information>...</information>`` with the top-k passages), or ends the episode with
``<answer>Orthwick</answer>``. The env reward is 1.0 when the answer matches a gold answer after
``normalize_answer``; ``info`` reports the facts (queries, retrieved ids, gold evidence found).
"""

from __future__ import annotations

import random
from typing import Any, ClassVar

import gymnasium

from rlagent.envs.search.corpus import ENV_ID, Passage, exact_match, gold_answers
from rlagent.envs.search.sources import DIFFICULTIES, build_retriever, generate_task
from rlagent.envs.text import AnyText
from rlagent.tags import first_tag_content

INSTRUCTIONS = (
    "Answer the question. To search the corpus, write <search>query</search>; the "
    "results come back inside <information>...</information>. Search as often as "
    "you need, then reply <answer>answer</answer>."
)
INVALID_ACTION = "invalid action: reply with <search>query</search> or <answer>answer</answer>"
MAX_QUERY_CHARS = 300
MIN_CHARS_PER_PASSAGE = 40


def _check_int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{ENV_ID}: {name} must be an int >= {low}, got {value!r}")
    return value


def render_results(passages: list[Passage], max_chars: int) -> str:
    """``<information>`` with one numbered line per passage, at most ``max_chars`` in all.

    Every passage gets an equal share of the budget; a text that does not fit is cut with "...".

    >>> render_results([Passage("d1", "Orthwick", "Orthwick is a city in Tesvaria.")], 200)
    '<information>\\n[1] (id: d1) Orthwick: Orthwick is a city in Tesvaria.\\n</information>'
    >>> obs = render_results([Passage("d1", "T", "word " * 500)] * 3, 300)
    >>> len(obs) <= 300, obs.count("...\\n")
    (True, 3)
    """
    head, tail = "<information>\n", "</information>"
    if not passages:
        return head + "no results\n" + tail
    share = (max_chars - len(head) - len(tail)) // len(passages)
    lines = []
    for i, p in enumerate(passages, 1):
        line = f"[{i}] (id: {p.id}) {p.title + ': ' if p.title else ''}{' '.join(p.text.split())}"
        if len(line) + 1 > share:
            line = line[: max(share - 4, 0)] + "..."
        lines.append(line + "\n")
    return (head + "".join(lines) + tail)[:max_chars]


class SearchEnv(gymnasium.Env[str, str]):
    """Answer a question in at most ``max_turns`` replies, searching a corpus on the way.

    Kwargs: ``top_k`` passages per search; ``max_turns`` replies before the episode is
    truncated; ``max_obs_chars`` bounds one search observation; the corpus is the synthetic
    world ``(world_seed, world_size)`` unless ``corpus_path`` (Search-R1 JSONL) is given;
    ``qa_path`` (Search-R1 QA JSONL) is where tasks come from when ``reset`` gets none;
    ``retriever`` is a name (``"bm25"``), an import path ``"module:Class"``, a class or an
    instance, built as ``Class(passages, **retriever_kwargs)``.

    ``reset(options={"task": task})`` takes a task with a ``prompt`` and ``golden_answers``
    (or ``answer``, a string or a list); ``gold_doc_ids``, when present, are the evidence
    documents behind ``info["gold_retrieved"]``. Without a task one is generated from
    ``self.np_random``. The episode ends (``terminated``) at the first reply with an
    ``<answer>``, or is ``truncated`` after ``max_turns`` replies.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}
    difficulties = DIFFICULTIES
    generate_task = staticmethod(generate_task)

    def __init__(
        self,
        top_k: int = 3,
        max_turns: int = 6,
        max_obs_chars: int = 1500,
        world_seed: int = 0,
        world_size: int = 200,
        corpus_path: str | None = None,
        qa_path: str | None = None,
        retriever: Any = "bm25",
        retriever_kwargs: dict[str, Any] | None = None,
        max_text_length: int = 8192,
    ):
        self.top_k = _check_int("top_k", top_k, 1)
        self.max_turns = _check_int("max_turns", max_turns, 1)
        least = MIN_CHARS_PER_PASSAGE * top_k + 40
        self.max_obs_chars = _check_int("max_obs_chars", max_obs_chars, least)
        if max_obs_chars > max_text_length:
            raise ValueError(
                f"{ENV_ID}: max_obs_chars ({max_obs_chars}) must not exceed "
                f"max_text_length ({max_text_length})"
            )
        # Paths as str: they key the per-process caches of corpus, index and questions.
        corpus_path = None if corpus_path is None else str(corpus_path)
        qa_path = None if qa_path is None else str(qa_path)
        self._sources = {
            "world_seed": _check_int("world_seed", world_seed, 0),
            "world_size": world_size,
            "corpus_path": corpus_path,
            "qa_path": qa_path,
        }
        self.retriever = build_retriever(
            retriever, dict(retriever_kwargs or {}), corpus_path, world_seed, world_size
        )
        self.observation_space = AnyText(max_length=max_text_length)
        self.action_space = AnyText(max_length=max_text_length)
        self._task: dict[str, Any] | None = None
        self._done = True

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        task = (options or {}).get("task")
        if task is None:
            difficulty = self.difficulties[int(self.np_random.integers(len(self.difficulties)))]
            rng = random.Random(int(self.np_random.integers(2**63)))
            task = generate_task(rng, difficulty, **self._sources)
        self._golds = gold_answers(task) if isinstance(task, dict) else []
        if not self._golds or not isinstance(task.get("prompt"), str):
            raise ValueError(
                f"{ENV_ID} needs a task with a 'prompt' and 'golden_answers' (or 'answer'), got {task!r:.200}"
            )
        self._task, self._done, self._turn = task, False, 0
        self._queries: list[str] = []
        self._retrieved: list[list[str]] = []
        self._gold_ids = [str(i) for i in task.get("gold_doc_ids") or []]
        info = {"task_id": task.get("id"), **self._facts()}
        return f"{INSTRUCTIONS}\nQuestion: {task['prompt']}", info

    def step(self, action: str):
        if self._task is None or self._done:
            raise RuntimeError("step() called before reset() or after the episode ended")
        self._turn += 1
        text = action if isinstance(action, str) else ""
        answer = first_tag_content(text, "answer")
        reward, terminated = 0.0, answer is not None
        if terminated:
            # The final observation is never shown to the model: the episode is over.
            success = exact_match(answer, self._golds)
            reward, observation = (1.0 if success else 0.0), ""
            info = {"invalid_action": False, "success": success, "answer": answer.strip()}
        else:
            observation, invalid = self._search(first_tag_content(text, "search"))
            info = {"invalid_action": invalid, "success": False}
        truncated = not terminated and self._turn >= self.max_turns
        self._done = terminated or truncated
        info.update(self._facts())
        return observation, reward, terminated, truncated, info

    def _search(self, query: str | None) -> tuple[str, bool]:
        if query is None:
            return INVALID_ACTION, True
        query = " ".join(query.split())[:MAX_QUERY_CHARS]
        if not query:
            return "invalid action: the search query is empty", True
        passages = list(self.retriever.search(query, self.top_k))[: self.top_k]
        self._queries.append(query)
        self._retrieved.append([str(p.id) for p in passages])
        return render_results(passages, self.max_obs_chars), False

    def _facts(self) -> dict[str, Any]:
        """What happened so far: queries, retrieved ids per search, share of gold docs seen."""
        seen = {i for ids in self._retrieved for i in ids}
        gold = sum(i in seen for i in self._gold_ids) / len(self._gold_ids) if self._gold_ids else None
        return {
            "turn": self._turn,
            "searches": len(self._queries),
            "queries": list(self._queries),
            "retrieved_ids": [list(ids) for ids in self._retrieved],
            "gold_retrieved": gold,
        }
