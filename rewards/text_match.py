"""Outcome rewards for free-text answers: exact match and token F1 against gold answers.

Both compare the content of the episode's last ``<answer>`` tag with every gold answer after
``normalize_text`` (lowercase, no ASCII punctuation, no articles a/an/the, single spaces) --
the SQuAD / Search-R1 rule, and the same one ``rlagent/Search-v0`` uses for its ``success``
flag, so ``exact_match`` and the env agree on what a right answer is.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from typing import Any

from rlagent.episode_view import EpisodeView
from rlagent.rewards import _checks
from rlagent.tags import last_tag_content

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


def normalize_text(text: str) -> str:
    """Lowercase, drop ASCII punctuation and the articles a/an/the, collapse whitespace.

    >>> normalize_text("  The Zolvane-Works, Inc. ")
    'zolvaneworks inc'
    >>> normalize_text("Ünïcode  Café!")
    'ünïcode café'
    """
    text = text.lower().translate(_PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def gold_answers(task: Any) -> list[str]:
    """The task's accepted answers, normalised, blanks dropped, in order, without repeats.

    Taken from ``task.answer`` (a string, a number or a list of them) and from
    ``task.fields["golden_answers"]`` (Search-R1 QA files), both when both are present.
    """
    found: list[str] = []
    for source in (task.answer, task.fields.get("golden_answers")):
        items = source if isinstance(source, Sequence) and not isinstance(source, str) else [source]
        for item in items:
            if isinstance(item, (str, int, float)) and not isinstance(item, bool):
                norm = normalize_text(str(item))
                if norm and norm not in found:
                    found.append(norm)
    return found


def token_f1(prediction: str, gold: str) -> float:
    """Token-level F1 of two *normalised* strings (bag of whitespace tokens).

    precision = shared / len(prediction tokens), recall = shared / len(gold tokens),
    F1 = 2PR / (P + R); 0.0 when they share no token (or either is empty).

    >>> token_f1("paris france", "paris")   # P = 1/2, R = 1/1, F1 = 2/3
    0.6666666666666666
    """
    pred, ref = prediction.split(), gold.split()
    shared = sum((Counter(pred) & Counter(ref)).values())
    if shared == 0:
        return 0.0
    precision, recall = shared / len(pred), shared / len(ref)
    return 2 * precision * recall / (precision + recall)


class _AnswerMatch:
    """Shared plumbing: the prediction (last answer tag) and the gold answers."""

    kind = "outcome"

    def __init__(self, answer_tag: str = "answer", **kwargs: Any):
        _checks.reject_unknown(type(self), kwargs)
        self.answer_tag = _checks.tag(type(self), "answer_tag", answer_tag)

    def score(self, episode: EpisodeView) -> float | None:
        golds = gold_answers(episode.task)
        if not golds:
            return None
        content = last_tag_content(episode.actions, self.answer_tag)
        if content is None:
            return 0.0
        return self.compare(normalize_text(content), golds)

    def compare(self, prediction: str, golds: list[str]) -> float:
        raise NotImplementedError


class ExactMatchReward(_AnswerMatch):
    """1.0 if the last ``<answer>`` equals any gold answer after normalisation, else 0.0.

    Golds: ``task.answer`` (string, number or list) and ``task.fields["golden_answers"]``;
    both are normalised with ``normalize_text``. The last complete answer tag over all turns is
    the prediction. No answer tag, or an answer that normalises to "" (e.g. "The."), scores
    0.0. A task with no non-blank gold answer scores None (nothing to compare against).

    Kwargs: ``answer_tag`` ("answer").

    >>> ExactMatchReward().compare(normalize_text("The Orthwick!"), ["orthwick", "orthwick city"])
    1.0
    """

    def compare(self, prediction: str, golds: list[str]) -> float:
        return 1.0 if prediction and prediction in golds else 0.0


class F1Reward(_AnswerMatch):
    """Token F1 of the last ``<answer>`` against the best-matching gold answer, in [0, 1].

    Same prediction, golds and None / 0.0 cases as ``ExactMatchReward``; the score is
    ``max(token_f1(prediction, gold) for gold in golds)`` on normalised text, where
    ``token_f1`` = 2PR / (P + R) with P = shared tokens / prediction tokens and
    R = shared tokens / gold tokens (repeated tokens count as often as both sides have them).

    Kwargs: ``answer_tag`` ("answer").

    >>> F1Reward().compare("orthwick city hall", ["orthwick", "orthwick city"])  # 2*(2/3)*1/(5/3)
    0.8
    """

    def compare(self, prediction: str, golds: list[str]) -> float:
        return max(token_f1(prediction, gold) for gold in golds)


__all__ = ["ExactMatchReward", "F1Reward", "gold_answers", "normalize_text", "token_f1"]
