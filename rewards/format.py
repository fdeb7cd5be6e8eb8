"""Format reward: does the model follow the tool/answer tag protocol?

Tool envs such as ``rlagent/Calculator-v0`` act on the first tag they find and ignore the
rest, so a reply with two tool calls, a dangling tag or chatter after the final answer
"works" but teaches habits that break parsers. This reward makes the protocol itself a
learnable signal, kept separate from correctness so it can be weighted (or logged at 0).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from rlagent.episode_view import EpisodeView
from rlagent.rewards import _checks
from rlagent.rewards.tool_schema import call_problem, tool_table
from rlagent.tags import first_tag_content, tag_contents


class FormatReward:
    """Fraction of well-formed assistant turns, halved if the episode ends without an answer.

    A turn's action is *well-formed* when, counting the opening and closing tags of both
    kinds, it holds exactly one complete pair -- either ``<tool>...</tool>`` or
    ``<answer>...</answer>`` -- with the opening tag before the closing one, no other tag of
    either kind, and only whitespace after ``</answer>``. Text before the tag is allowed.

    ``score = (#well-formed turns / #turns) * (1.0 if the last turn's action contains a
    complete answer pair else 0.5)``, so the best score needs a final answer.
    An episode with no turns scores None.

    Kwargs: ``answer_tag`` ("answer"), ``tool_tag`` ("calc").

    >>> reward = FormatReward()
    >>> reward.turn_is_well_formed("Let me add. <calc>2 + 3</calc>")
    True
    >>> reward.turn_is_well_formed("<answer>5</answer> done")
    False
    """

    kind = "format"

    def __init__(self, answer_tag: str = "answer", tool_tag: str = "calc", **kwargs: Any):
        _checks.reject_unknown(type(self), kwargs)
        _checks.tag(type(self), "answer_tag", answer_tag)
        _checks.tag(type(self), "tool_tag", tool_tag)
        if answer_tag == tool_tag:
            raise ValueError(f"answer_tag and tool_tag must differ, both are {answer_tag!r}")
        self.answer_tag = answer_tag
        self.tool_tag = tool_tag
        a, t = re.escape(answer_tag), re.escape(tool_tag)
        self._answer_last = re.compile(rf"<{a}>.*?</{a}>\s*\Z", re.DOTALL)
        self._tool_pair = re.compile(rf"<{t}>.*?</{t}>", re.DOTALL)

    def _counts(self, text: str) -> tuple[int, int, int, int]:
        """(answer opens, answer closes, tool opens, tool closes) in ``text``."""
        a, t = self.answer_tag, self.tool_tag
        return (text.count(f"<{a}>"), text.count(f"</{a}>"), text.count(f"<{t}>"), text.count(f"</{t}>"))

    def turn_is_well_formed(self, action: str) -> bool:
        counts = self._counts(action)
        if counts == (1, 1, 0, 0):
            return self._answer_last.search(action) is not None
        if counts == (0, 0, 1, 1):
            return self._tool_pair.search(action) is not None
        return False

    def score(self, episode: EpisodeView) -> float | None:
        if not episode.turns:
            return None
        actions = [turn.action for turn in episode.turns]
        fraction = sum(self.turn_is_well_formed(a) for a in actions) / len(actions)
        ends_with_answer = first_tag_content(actions[-1], self.answer_tag) is not None
        return fraction if ends_with_answer else 0.5 * fraction


class TagsReward:
    """1.0 when the final turn holds the configured tags once each, in order, else 0.0.

    A text *follows* ``tags = [t1, ..., tn]`` when each ``<ti>`` and ``</ti>`` occurs exactly
    once and ``<t1> < </t1> < <t2> < </t2> < ... < </tn>`` (each pair closes before the next
    opens). Text before, between and inside the pairs is free. In the final turn nothing but
    whitespace may follow ``</tn>`` (the final answer ends the reply) unless
    ``allow_text_after`` is true.

    ``per_turn: false`` scores the final turn only (1.0 or 0.0); ``per_turn: true`` scores the
    fraction of turns that follow the tags (the final turn with the rule above). An episode
    with no turns scores None.

    Kwargs: ``tags`` (["think", "answer"]), ``per_turn`` (false), ``allow_text_after`` (false).

    >>> TagsReward().follows("<think>5 = 2 + 3</think> so <answer>5</answer>\\n", final=True)
    True
    >>> TagsReward().follows("<answer>5</answer><think>hm</think>", final=True)
    False
    """

    kind = "format"

    def __init__(
        self,
        tags: Sequence[str] = ("think", "answer"),
        per_turn: bool = False,
        allow_text_after: bool = False,
        **kwargs: Any,
    ):
        _checks.reject_unknown(type(self), kwargs)
        if isinstance(tags, str) or not isinstance(tags, Sequence) or not tags:
            raise ValueError(f"TagsReward: tags must be a non-empty list of tag names, got {tags!r}")
        self.tags = [_checks.tag(type(self), "tags", t) for t in tags]
        if len(set(self.tags)) != len(self.tags):
            raise ValueError(f"TagsReward: tags must be distinct, got {self.tags}")
        for name, value in (("per_turn", per_turn), ("allow_text_after", allow_text_after)):
            if not isinstance(value, bool):
                raise ValueError(f"TagsReward: {name} must be true or false, got {value!r}")
        self.per_turn = per_turn
        self.allow_text_after = allow_text_after

    def follows(self, text: str, final: bool) -> bool:
        end = 0  # where the previous pair closed
        for name in self.tags:
            opening, closing = f"<{name}>", f"</{name}>"
            if text.count(opening) != 1 or text.count(closing) != 1:
                return False
            start = text.index(opening)
            stop = text.index(closing)
            if start < end or stop < start:
                return False
            end = stop + len(closing)
        return not final or self.allow_text_after or not text[end:].strip()

    def score(self, episode: EpisodeView) -> float | None:
        actions = episode.actions
        if not actions:
            return None
        if not self.per_turn:
            return 1.0 if self.follows(actions[-1], final=True) else 0.0
        last = len(actions) - 1
        return sum(self.follows(a, final=i == last) for i, a in enumerate(actions)) / len(actions)


class ToolCallFormatReward:
    """Fraction of ``<tool_call>`` blocks that are valid JSON calls of a declared tool.

    Every ``<tool_call>...</tool_call>`` in every turn is one call; it is *valid* when its
    content is a JSON object ``{"name": ..., "arguments": {...}}`` whose name is one of
    ``tools`` and whose arguments satisfy that tool's ``parameters`` schema: required
    arguments present, declared types and enums matched, no undeclared argument when the
    schema says ``additionalProperties: false`` (see ``rlagent.rewards.tool_schema``).
    A tag that is opened or closed but not paired counts as one invalid call.

    ``score = valid calls / calls`` over the episode, where a turn's calls are
    ``max(#<tool_call>, #</tool_call>)``; an episode without any call scores None.

    Kwargs: ``tools`` (required: a list of tool declarations, OpenAI style
    ``{"type": "function", "function": {"name", "parameters"}}`` or flat ``{"name",
    "parameters"}``), ``tag`` ("tool_call").
    """

    kind = "format"

    def __init__(self, tools: Sequence[Any] | None = None, tag: str = "tool_call", **kwargs: Any):
        _checks.reject_unknown(type(self), kwargs)
        if tools is None:
            raise ValueError("ToolCallFormatReward needs tools: a list of tool declarations")
        try:
            self.tools = tool_table(tools)
        except ValueError as err:
            raise ValueError(f"ToolCallFormatReward: {err}") from None
        self.tag = _checks.tag(type(self), "tag", tag)

    def count(self, action: str) -> tuple[int, int]:
        """(valid calls, calls) in one turn's action."""
        calls = max(action.count(f"<{self.tag}>"), action.count(f"</{self.tag}>"))
        valid = sum(call_problem(m, self.tools) is None for m in tag_contents(action, self.tag))
        return min(valid, calls), calls

    def score(self, episode: EpisodeView) -> float | None:
        counts = [self.count(a) for a in episode.actions]
        calls = sum(c for _, c in counts)
        return sum(v for v, _ in counts) / calls if calls else None
