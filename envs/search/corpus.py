"""Passages, answer matching, and the Search-R1 file layouts (corpus and QA JSONL).

Corpus lines are ``{"id", "contents"}`` (Search-R1's wiki dumps: the first line of
``contents`` is the quoted title) or ``{"id", "title", "text"}``. QA lines are
``{"question", "golden_answers": [...]}`` with optional ``id`` and any other fields; they become
task dicts. ``python -m rlagent.envs.search QA.jsonl TASKS.jsonl`` writes a task file for
``data.path``.
"""

from __future__ import annotations

import hashlib
import json
import re
import string
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENV_ID = "rlagent/Search-v0"


@dataclass(frozen=True)
class Passage:
    """One retrievable document: a stable id, a title (may be empty) and its text."""

    id: str
    title: str
    text: str


# --- answers --------------------------------------------------------------------------------
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


def normalize_answer(text: str) -> str:
    """Lowercase, drop punctuation and the articles a/an/the, collapse whitespace.

    >>> normalize_answer("  The Zolvane-Works, Inc. ")
    'zolvaneworks inc'
    >>> normalize_answer("48,200") == normalize_answer("48200")
    True
    """
    text = text.lower().translate(_PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, golds: list[str]) -> bool:
    """True when ``prediction`` equals any gold answer after ``normalize_answer``.

    >>> exact_match("the Orthwick", ["Orthwick", "Orthwick City"]), exact_match("", [""])
    (True, False)
    """
    pred = normalize_answer(prediction)
    return bool(pred) and any(pred == normalize_answer(g) for g in golds)


def gold_answers(task: dict[str, Any]) -> list[str]:
    """A task's accepted answers: ``golden_answers`` if present, else ``answer`` (str or list)."""
    golds = task.get("golden_answers", task.get("answer"))
    if isinstance(golds, (str, int, float)) and not isinstance(golds, bool):
        golds = [golds]
    if not isinstance(golds, (list, tuple)):
        return []
    return [str(g) for g in golds if isinstance(g, (str, int, float)) and str(g).strip()]


# --- JSONL files ----------------------------------------------------------------------------
def _read_jsonl(path: str | Path):
    """(line number, object) for each non-blank line; a bad line names ``path:line``."""
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{n}: not valid JSON ({err.msg})") from None
            if not isinstance(obj, dict):  # bad file content: a ValueError like the others
                raise ValueError(  # noqa: TRY004
                    f"{path}:{n}: expected a JSON object, got {type(obj).__name__}"
                )
            yield n, obj


def _split_contents(contents: str) -> tuple[str, str]:
    # Search-R1 wiki passages: '"Title"\nText ...'. Without a newline the whole is text.
    head, sep, rest = contents.partition("\n")
    if not sep:
        return "", contents.strip()
    return head.strip().strip('"').strip(), rest.strip()


def passage_from_dict(d: dict[str, Any]) -> Passage:
    """A ``Passage`` from ``{"id", "contents"}`` or ``{"id", "title", "text"}``."""
    if "id" not in d:
        raise ValueError("a corpus line needs an 'id'")
    if isinstance(d.get("contents"), str):
        title, text = _split_contents(d["contents"])
    elif isinstance(d.get("text"), str):
        title, text = str(d.get("title") or ""), d["text"]
    else:
        raise ValueError("a corpus line needs 'contents' or 'text' (a string)")  # noqa: TRY004
    return Passage(id=str(d["id"]), title=title, text=text)


def load_corpus(path: str | Path) -> list[Passage]:
    """Passages from a JSONL corpus; duplicate ids and bad lines are errors naming the line."""
    passages, seen = [], set()
    for n, d in _read_jsonl(path):
        try:
            p = passage_from_dict(d)
        except ValueError as err:
            raise ValueError(f"{path}:{n}: {err}") from None
        if p.id in seen:
            raise ValueError(f"{path}:{n}: duplicate passage id {p.id!r}")
        seen.add(p.id)
        passages.append(p)
    if not passages:
        raise ValueError(f"{path}: the corpus is empty")
    return passages


def qa_to_task(d: dict[str, Any], env_id: str = ENV_ID) -> dict[str, Any]:
    """A task dict from a Search-R1 QA object; other fields are kept as task fields.

    >>> t = qa_to_task({"question": "who founded x?", "golden_answers": ["Ada", "A. Lee"]})
    >>> t["prompt"], t["answer"], t["golden_answers"], t["difficulty"], t["id"][:3]
    ('who founded x?', 'Ada', ['Ada', 'A. Lee'], 1, 'qa-')
    """
    question = d.get("question", d.get("prompt"))
    if not isinstance(question, str) or not question.strip():
        raise ValueError("a QA line needs a non-empty 'question'")
    golds = gold_answers(d)
    if not golds:
        raise ValueError("a QA line needs 'golden_answers' (a non-empty list of strings)")
    question = question.strip()
    task_id = d.get("id")
    if task_id is None:  # content-addressed: the same question is the same task
        task_id = "qa-" + hashlib.sha1(question.encode()).hexdigest()[:12]
    extra = {k: v for k, v in d.items() if k not in ("question", "golden_answers", "answer")}
    return {
        **extra,
        "id": str(task_id),
        "env": d.get("env", env_id),
        "prompt": question,
        "answer": golds[0],
        "golden_answers": golds,
        "difficulty": int(d.get("difficulty", 1)),
    }


def load_qa(path: str | Path, env_id: str = ENV_ID) -> list[dict[str, Any]]:
    """Task dicts from a Search-R1 QA JSONL file (errors name ``path:line``)."""
    tasks = []
    for n, d in _read_jsonl(path):
        try:
            tasks.append(qa_to_task(d, env_id))
        except (ValueError, TypeError) as err:
            raise ValueError(f"{path}:{n}: {err}") from None
    if not tasks:
        raise ValueError(f"{path}: no questions")
    return tasks


def main(argv: list[str] | None = None) -> int:
    """``QA.jsonl TASKS.jsonl``: convert Search-R1 QA lines to rlagent task lines."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m rlagent.envs.search QA.jsonl TASKS.jsonl", file=sys.stderr)
        return 2
    tasks = load_qa(args[0])
    with open(args[1], "w", encoding="utf-8") as f:
        f.writelines(json.dumps(t, ensure_ascii=False) + "\n" for t in tasks)
    print(f"wrote {len(tasks)} tasks to {args[1]}")
    return 0
