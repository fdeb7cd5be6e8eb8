"""Tasks for ``rlagent/Tool-v0``: reasoning-gym generators by difficulty, or the user's JSONL.

A task is a JSON-able dict that carries everything needed to score an answer later, in any
process, without regenerating it: reasoning-gym tasks keep the dataset name, its config and
the generated entry (question, answer, metadata), and are scored with that dataset's own
``score_answer``; JSONL tasks keep their ``answer`` and an optional ``scoring`` mode.
"""

from __future__ import annotations

import functools
import json
import math
import os
import random
from collections.abc import Sequence
from typing import Any

from rlagent.tags import as_number, parse_number

ENV_ID = "rlagent/Tool-v0"
DEFAULT_DATASETS = ("basic_arithmetic", "chain_sum", "gcd", "lcm")
SCORING_MODES = ("auto", "exact", "normalized", "numeric")

# reasoning-gym dataset -> difficulty -> config. Each level turns the dataset's own knobs:
# more terms, more digits, more operators, more or larger numbers.
_ARITH_OPS = {1: ["+", "-"], 2: ["+", "-", "*"], 3: ["+", "-", "*", "/"]}
LEVELS: dict[str, dict[int, dict[str, Any]]] = {
    "chain_sum": {
        d: {
            "min_terms": d + 1,
            "max_terms": d + 1,
            "min_digits": d,
            "max_digits": d,
            "allow_negation": d >= 4,
        }
        for d in range(1, 6)
    },
    "basic_arithmetic": {
        d: {
            "min_terms": d + 1,
            "max_terms": d + 1,
            "min_digits": min(d, 4),
            "max_digits": min(d, 4),
            "operators": _ARITH_OPS[min(d, 3)],
            "allow_parentheses": d >= 3,
            "allow_negation": d >= 4,
        }
        for d in range(1, 6)
    },
    "gcd": {
        d: {"min_numbers": n, "max_numbers": n, "min_value": 1, "max_value": hi}
        for d, (n, hi) in enumerate([(2, 100), (2, 1000), (3, 10_000), (3, 10**5), (4, 10**6)], 1)
    },
    "lcm": {
        d: {"min_numbers": n, "max_numbers": n, "min_value": 1, "max_value": hi}
        for d, (n, hi) in enumerate([(2, 20), (2, 100), (3, 100), (3, 1000), (4, 1000)], 1)
    },
    "prime_factorization": {d: {"min_value": 2, "max_value": 10 ** (d + 1)} for d in range(1, 6)},
}
DIFFICULTIES = (1, 2, 3, 4, 5)


def _names(datasets: str | Sequence[str]) -> list[str]:
    names = datasets.replace(",", " ").split() if isinstance(datasets, str) else list(datasets)
    if not names:
        raise ValueError("datasets must name at least one reasoning-gym dataset")
    return names


@functools.cache
def _registry() -> dict[str, Any]:
    import reasoning_gym.factory  # ~2 s: imports every dataset, so only when first needed

    return reasoning_gym.factory.DATASETS


def check_datasets(datasets: str | Sequence[str]) -> list[str]:
    """The dataset names as a list; a name reasoning-gym does not know is a ValueError."""
    names = _names(datasets)
    unknown = [n for n in names if n not in _registry()]
    if unknown:
        raise ValueError(f"unknown reasoning-gym dataset(s) {unknown}; available: {sorted(_registry())}")
    return names


@functools.lru_cache(maxsize=256)
def _dataset(name: str, config_json: str):
    import reasoning_gym

    return reasoning_gym.create_dataset(name, size=1, seed=0, **json.loads(config_json))


def reasoning_gym_task(rng: random.Random, difficulty: int, name: str) -> dict[str, Any]:
    """One entry of reasoning-gym dataset ``name`` at ``difficulty`` (its default config for a
    dataset without a row in ``LEVELS``)."""
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"difficulty must be one of {DIFFICULTIES}, got {difficulty!r}")
    config = LEVELS.get(name, {}).get(difficulty, {})
    import reasoning_gym

    for _ in range(100):
        seed = rng.randrange(2**31)
        entry = reasoning_gym.create_dataset(name, size=1, seed=seed, **config)[0]
        if _reference_is_exact(entry):
            break
    # A JSON round trip now, so scoring here and in another process sees the same entry.
    entry = json.loads(json.dumps(entry, default=str))
    return {
        "id": f"rg-{name}-d{difficulty}-{seed}",
        "env": ENV_ID,
        "prompt": entry["question"],
        "answer": entry["answer"],
        "difficulty": difficulty,
        "dataset": name,
        "dataset_config": config,
        "entry": entry,
    }


def _reference_is_exact(entry: dict[str, Any]) -> bool:
    """False for an arithmetic entry whose reference answer is not the expression's exact
    value (basic_arithmetic computes divisions by flooring, e.g. 5651 + 2904 / -15543 ->
    5651): an exact answer from the model would score 0. Such entries are drawn again."""
    expression = (entry.get("metadata") or {}).get("expression")
    if expression is None:
        return True
    from rlagent.envs.calculator import CalcError, safe_eval

    try:
        value = safe_eval(expression)
    except CalcError:
        return False
    reference = as_number(entry.get("answer"))
    return reference is not None and abs(value - reference) <= 1e-9 * max(1.0, abs(value))


@functools.lru_cache(maxsize=8)
def _jsonl_tasks(path: str, mtime: float) -> tuple[dict[str, Any], ...]:
    from rlagent.tasks import load_tasks

    tasks = []
    for task in load_tasks(path, ENV_ID):
        d = task.to_dict()
        if d.get("difficulty", 0) == 0:
            d["difficulty"] = 1  # no difficulty given: the easiest level
        try:
            check_task(d)
        except ValueError as err:
            raise ValueError(f"{path}: task {d['id']!r}: {err}") from err
        tasks.append(d)
    return tuple(tasks)


def load_jsonl_tasks(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Tasks from a JSONL file: ``id``, ``prompt``, ``answer``, optional ``difficulty``
    (default 1) and ``scoring`` (one of ``SCORING_MODES``, default ``auto``)."""
    path = os.fspath(path)
    return [dict(t) for t in _jsonl_tasks(path, os.path.getmtime(path))]


def generate_task(
    rng: random.Random,
    difficulty: int,
    datasets: str | Sequence[str] = DEFAULT_DATASETS,
    tasks_file: str | None = None,
    **_env_kwargs: Any,
) -> dict[str, Any]:
    """A task at ``difficulty``: drawn from ``tasks_file`` (JSONL) when given, else generated
    by a reasoning-gym dataset drawn uniformly from ``datasets``. The sampler passes all the
    env's kwargs; the ones that do not shape tasks are ignored."""
    if tasks_file:
        pool = [t for t in load_jsonl_tasks(tasks_file) if t["difficulty"] == difficulty]
        if not pool:
            levels = sorted({t["difficulty"] for t in load_jsonl_tasks(tasks_file)})
            raise ValueError(
                f"{tasks_file} has no task of difficulty {difficulty} "
                f"(it has {levels}; restrict data.difficulties to those)"
            )
        return dict(rng.choice(pool))
    return reasoning_gym_task(rng, difficulty, rng.choice(_names(datasets)))


def similar_task(
    rng: random.Random, task: dict[str, Any], difficulty: int, **env_kwargs: Any
) -> dict[str, Any]:
    """A new task with the skill of ``task`` at ``difficulty`` (self-evolving curricula): a
    fresh entry of the same reasoning-gym dataset; other tasks come from ``generate_task``."""
    if task.get("dataset"):
        return reasoning_gym_task(rng, difficulty, task["dataset"])
    return generate_task(rng, difficulty, **env_kwargs)


def check_task(task: dict[str, Any]) -> None:
    """Raise ValueError if ``task`` cannot be shown and scored."""
    if not isinstance(task.get("prompt"), str):
        raise ValueError("a task needs a string 'prompt'")  # noqa: TRY004 - a bad task value
    if "dataset" in task:
        if not isinstance(task.get("entry"), dict) or "answer" not in task["entry"]:
            raise ValueError("a reasoning-gym task needs its generated 'entry'")
        return
    if task.get("answer") is None:
        raise ValueError("a task needs an 'answer'")
    mode = task.get("scoring", "auto")
    if mode not in SCORING_MODES:
        raise ValueError(f"scoring must be one of {SCORING_MODES}, got {mode!r}")
    if mode == "numeric" and as_number(task["answer"]) is None:
        raise ValueError(f"scoring 'numeric' needs a numeric answer, got {task['answer']!r}")


def _normalize(text: str) -> str:
    return " ".join(text.split()).casefold()


def score_answer(task: dict[str, Any], answer: str) -> float:
    """The task's score for ``answer`` (the text inside ``<answer>``, stripped here).

    reasoning-gym tasks: the dataset's ``score_answer`` (it may give partial credit).
    JSONL tasks, by ``scoring``: ``exact`` (equal strings), ``normalized`` (equal after
    collapsing whitespace and case), ``numeric`` (equal numbers, ``math.isclose``), ``auto``
    (numeric if the reference answer is a number, else normalized); 1.0 or 0.0.

    >>> score_answer({"prompt": "2+2?", "answer": 4}, " 4.0 ")
    1.0
    >>> score_answer({"prompt": "Capital?", "answer": "Paris", "scoring": "exact"}, "paris")
    0.0
    """
    answer = answer.strip()
    if "dataset" in task:
        dataset = _dataset(task["dataset"], json.dumps(task.get("dataset_config", {}), sort_keys=True))
        return float(dataset.score_answer(answer, task["entry"]))
    reference = task["answer"]
    mode = task.get("scoring", "auto")
    if mode == "auto":
        mode = "numeric" if as_number(reference) is not None else "normalized"
    if mode == "numeric":
        target, got = as_number(reference), parse_number(answer)
        ok = target is not None and got is not None and math.isclose(got, target, rel_tol=1e-6, abs_tol=1e-9)
    elif mode == "normalized":
        ok = _normalize(answer) == _normalize(str(reference))
    else:
        ok = answer == str(reference).strip()
    return 1.0 if ok else 0.0
