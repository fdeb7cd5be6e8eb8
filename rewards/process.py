"""Process rewards: one score per assistant turn, from the facts the env put in ``info``.

A process plugin's list is aligned with ``episode.turns``. With ``algo.turn_level_coef > 0``
the trainer turns it into turn-level credit (each turn's return is the sum of its own and
later turns' scores); otherwise the episode's reward counts its mean.

``rlagent/Search-v0`` reports ``queries`` and ``retrieved_ids`` *cumulatively* (everything so
far, one entry per search), so what one turn did is what its info added to the previous
turn's lists (``new_entries``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rlagent.episode_view import EpisodeView
from rlagent.rewards import _checks
from rlagent.rewards.text_match import normalize_text
from rlagent.tags import first_tag_content


def new_entries(infos: Sequence[Mapping[str, Any]], key: str) -> list[list[Any]]:
    """Per turn, the entries that turn appended to the cumulative list ``info[key]``.

    >>> new_entries([{"q": ["a"]}, {}, {"q": ["a", "b"]}], "q")
    [['a'], [], ['b']]
    """
    out, seen = [], 0
    for info in infos:
        items = info.get(key)
        if isinstance(items, Sequence) and not isinstance(items, str):
            out.append(list(items[seen:]))
            seen = max(seen, len(items))
        else:
            out.append([])
    return out


class ValidToolCallReward:
    """Per turn: 1.0 if the turn called a tool without a tool error or invalid action, else 0.0.

    Scores are configurable: ``valid`` for a tool call without error, ``error`` for an invalid
    action or a tool error, ``no_call`` for a turn that called nothing (e.g. the answer turn).
    In this order: a turn whose info has a true ``invalid_action`` or a ``tool_error`` that is
    not None scores ``error``. Otherwise it *called* a tool when its info says so --
    ``tool`` is not None (Tool-v0), else ``tool_calls`` grew since the previous turn
    (Calculator-v0), else ``queries`` grew (Search-v0), else ``command`` is not None
    (TextWorld-v0), else ``action`` is a non-empty list (Web-v0) -- and, for an env whose
    info has none of these keys, when the action holds a complete ``<tag>...</tag>`` for any
    of ``tool_tags``. A call scores ``valid``, anything else ``no_call``. No turns: None.

    Kwargs: ``valid`` (1.0), ``error`` (0.0), ``no_call`` (0.0),
    ``tool_tags`` (["tool_call", "calc", "python", "search"]).
    """

    kind = "process"

    def __init__(
        self,
        valid: float = 1.0,
        error: float = 0.0,
        no_call: float = 0.0,
        tool_tags: Sequence[str] = ("tool_call", "calc", "python", "search"),
        **kwargs: Any,
    ):
        _checks.reject_unknown(type(self), kwargs)
        self.valid = _checks.number(type(self), "valid", valid)
        self.error = _checks.number(type(self), "error", error)
        self.no_call = _checks.number(type(self), "no_call", no_call)
        if isinstance(tool_tags, str) or not isinstance(tool_tags, Sequence):
            raise ValueError(f"ValidToolCallReward: tool_tags must be a list, got {tool_tags!r}")
        self.tool_tags = [_checks.tag(type(self), "tool_tags", t) for t in tool_tags]

    def called(self, action: str, info: Mapping[str, Any], before: Mapping[str, Any]) -> bool:
        """Did the turn call a tool? ``before`` is the previous turn's info ({} for the first)."""
        if "tool" in info:
            return info["tool"] is not None
        if "tool_calls" in info:
            return _count(info["tool_calls"]) > _count(before.get("tool_calls", 0))
        if "queries" in info:
            return _length(info["queries"]) > _length(before.get("queries"))
        if "command" in info:
            return info["command"] is not None
        if "action" in info:
            return bool(info["action"])
        return any(first_tag_content(action, t) is not None for t in self.tool_tags)

    def score(self, episode: EpisodeView) -> list[float] | None:
        if not episode.turns:
            return None
        scores, before = [], {}
        for turn in episode.turns:
            info = turn.info
            if info.get("invalid_action") or info.get("tool_error") not in (None, False):
                scores.append(self.error)
            elif self.called(turn.action, info, before):
                scores.append(self.valid)
            else:
                scores.append(self.no_call)
            before = info
        return scores


def _length(value: Any) -> int:
    return len(value) if isinstance(value, Sequence) and not isinstance(value, str) else 0


def _count(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


class GoldEvidenceReward:
    """Per turn: 1.0 if the turn's search retrieved a gold document not retrieved before.

    The score of such a turn is ``hit`` (1.0), of every other turn 0.0; the whole episode
    scores None if the task has no gold ids.
    Gold ids are ``task.fields[gold_key]`` (Search-v0 tasks: ``gold_doc_ids``), compared as
    strings. A turn's retrieved ids are what it added to ``info["retrieved_ids"]`` (one list
    per search, cumulative in Search-v0). Turns without a search score 0.0; so does a search
    that only finds gold documents already found. No turns: None.

    Kwargs: ``hit`` (1.0), ``gold_key`` ("gold_doc_ids").
    """

    kind = "process"

    def __init__(self, hit: float = 1.0, gold_key: str = "gold_doc_ids", **kwargs: Any):
        _checks.reject_unknown(type(self), kwargs)
        self.hit = _checks.number(type(self), "hit", hit)
        if not isinstance(gold_key, str) or not gold_key:
            raise ValueError(f"GoldEvidenceReward: gold_key must be a task field name, got {gold_key!r}")
        self.gold_key = gold_key

    def score(self, episode: EpisodeView) -> list[float] | None:
        golds = episode.task.fields.get(self.gold_key)
        if isinstance(golds, (str, int)):
            golds = [golds]
        gold = {str(g) for g in golds or () if g is not None and str(g)}
        if not gold or not episode.turns:
            return None
        found: set[str] = set()
        scores = []
        for searches in new_entries(episode.infos, "retrieved_ids"):
            ids = {
                str(i)
                for ids in searches
                if isinstance(ids, Sequence) and not isinstance(ids, str)
                for i in ids
            }
            scores.append(self.hit if (ids & gold) - found else 0.0)
            found |= ids
        return scores


class RepeatedQueryReward:
    """Per turn: -1.0 if the turn repeated an earlier search query (normalised), else 0.0.

    The score of a repeating turn is ``penalty`` (-1.0).
    A turn's queries are what it added to ``info["queries"]`` (Search-v0); for an env whose
    info has no ``queries``, the content of the action's first complete ``<query_tag>``.
    Queries are compared after ``normalize_text`` (case, punctuation, articles, spaces); a
    query with nothing left after that is compared lowercased with whitespace collapsed.
    No turns: None.

    Kwargs: ``penalty`` (-1.0), ``query_tag`` ("search").
    """

    kind = "process"

    def __init__(self, penalty: float = -1.0, query_tag: str = "search", **kwargs: Any):
        _checks.reject_unknown(type(self), kwargs)
        self.penalty = _checks.number(type(self), "penalty", penalty)
        self.query_tag = _checks.tag(type(self), "query_tag", query_tag)

    def queries(self, episode: EpisodeView) -> list[list[str]]:
        """Each turn's queries, as described above."""
        reported = new_entries(episode.infos, "queries")
        out = []
        for turn, found in zip(episode.turns, reported):
            if "queries" not in turn.info:
                query = first_tag_content(turn.action, self.query_tag)
                found = [query] if query and query.strip() else []
            out.append([q for q in found if isinstance(q, str)])
        return out

    def score(self, episode: EpisodeView) -> list[float] | None:
        if not episode.turns:
            return None
        seen: set[str] = set()
        scores = []
        for found in self.queries(episode):
            keys = [normalize_text(q) or " ".join(q.lower().split()) for q in found]
            repeated = False
            for key in keys:
                repeated = repeated or key in seen
                seen.add(key)
            scores.append(self.penalty if repeated else 0.0)
        return scores


class StepCostReward:
    """Per turn: ``-cost`` (cost 0.01 by default), a constant price for every assistant turn.

    Only turn-level credit (``algo.turn_level_coef > 0``) sums it into a cost that grows with
    the number of turns; as an episode scalar its mean is ``-cost`` whatever the length.
    No turns: None.

    Kwargs: ``cost`` (0.01, >= 0).
    """

    kind = "process"

    def __init__(self, cost: float = 0.01, **kwargs: Any):
        _checks.reject_unknown(type(self), kwargs)
        self.cost = _checks.number(type(self), "cost", cost, low=0.0)

    def score(self, episode: EpisodeView) -> list[float] | None:
        return [-self.cost] * len(episode.turns) if episode.turns else None
