"""Where the env's corpus, retriever and tasks come from: the synthetic world or user files.

Everything here is cached per process: a rollout worker's many env instances share one
corpus and one index, and ``generate_task`` builds the world once, not once per task.
"""

from __future__ import annotations

import functools
import hashlib
import random
from typing import Any

from rlagent.envs.search.corpus import ENV_ID, Passage, load_corpus, load_qa
from rlagent.envs.search.retrieval import Retriever, make_retriever
from rlagent.envs.search.world import build_world

DIFFICULTIES = (1, 2, 3, 4)


@functools.lru_cache(maxsize=4)
def load_passages(corpus_path: str | None, world_seed: int, world_size: int) -> tuple[Passage, ...]:
    if corpus_path is not None:
        return tuple(load_corpus(corpus_path))
    return tuple(build_world(world_seed, world_size).corpus())


@functools.lru_cache(maxsize=4)
def qa_tasks(qa_path: str) -> tuple[dict[str, Any], ...]:
    return tuple(load_qa(qa_path))


@functools.lru_cache(maxsize=4)
def shared_retriever(
    name: str, corpus_path: str | None, world_seed: int, world_size: int, kwargs_key: tuple
) -> Retriever:
    # One index per process for all env instances on the same corpus (a rollout worker
    # holds many); only for named retrievers with hashable kwargs.
    passages = list(load_passages(corpus_path, world_seed, world_size))
    return make_retriever(name, passages, **dict(kwargs_key))


def generate_task(
    rng: random.Random,
    difficulty: int,
    *,
    world_seed: int = 0,
    world_size: int = 200,
    corpus_path: str | None = None,
    qa_path: str | None = None,
    **_env_kwargs: Any,
) -> dict[str, Any]:
    """A task for the env built with the same kwargs; deterministic for a given ``rng`` state.

    Synthetic world (no ``corpus_path``): a question that needs ``difficulty`` hops. With
    ``qa_path``: a question drawn from that file, among those labelled ``difficulty`` if any
    are (Search-R1 files have no labels: then among all). Other env kwargs are ignored.
    """
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"difficulty must be one of {list(DIFFICULTIES)}, got {difficulty!r}")
    if qa_path is not None:
        tasks = qa_tasks(str(qa_path))
        pool = [t for t in tasks if t["difficulty"] == difficulty] or tasks
        return dict(rng.choice(pool))
    if corpus_path is not None:
        raise ValueError(
            f"{ENV_ID}: corpus_path={str(corpus_path)!r} needs qa_path (a Search-R1 QA "
            f"file) to generate tasks, or give a task file as data.path"
        )
    q = build_world(world_seed, world_size).question(rng, difficulty)
    digest = hashlib.sha1(f"{world_seed}/{world_size}/{q['prompt']}".encode()).hexdigest()[:10]
    return {
        "id": f"search-w{world_seed}-d{difficulty}-{digest}",
        "env": ENV_ID,
        "prompt": q.pop("prompt"),
        "answer": q["answer"],
        "golden_answers": [q.pop("answer")],
        "difficulty": difficulty,
        "world_seed": world_seed,
        "world_size": world_size,
        **q,
    }


def build_retriever(
    spec: Any, kwargs: dict[str, Any], corpus_path: str | None, world_seed: int, world_size: int
) -> Retriever:
    """The env's retriever; a named one with hashable kwargs is shared within the process."""
    if isinstance(spec, str):
        try:
            key = tuple(sorted(kwargs.items()))
            hash(key)
        except TypeError:
            key = None
        if key is not None:  # the common case: one index shared by every env in the process
            return shared_retriever(spec, corpus_path, world_seed, world_size, key)
    return make_retriever(spec, list(load_passages(corpus_path, world_seed, world_size)), **kwargs)
