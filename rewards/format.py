"""Format reward: does the model follow the tool/answer tag protocol?

Tool envs such as ``rlagent/Calculator-v0`` act on the first tag they find and ignore the
rest, so a reply with two tool calls, a dangling tag or chatter after the final answer
"works" but teaches habits that break parsers. This reward makes the protocol itself a
learnable signal, kept separate from correctness so it can be weighted (or logged at 0).
"""
from __future__ import annotations

import re
from typing import Any

from rlagent.episode_view import EpisodeView


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
        if kwargs:
            raise TypeError(f"FormatReward got unknown options {sorted(kwargs)}")
        if answer_tag == tool_tag:
            raise ValueError(f"answer_tag and tool_tag must differ, both are {answer_tag!r}")
        self.answer_tag = answer_tag
        self.tool_tag = tool_tag
        a, t = re.escape(answer_tag), re.escape(tool_tag)
        self._answer_pair = re.compile(rf"<{a}>.*?</{a}>", re.DOTALL)
        self._answer_last = re.compile(rf"<{a}>.*?</{a}>\s*\Z", re.DOTALL)
        self._tool_pair = re.compile(rf"<{t}>.*?</{t}>", re.DOTALL)

    def _counts(self, text: str) -> tuple[int, int, int, int]:
        """(answer opens, answer closes, tool opens, tool closes) in ``text``."""
        a, t = self.answer_tag, self.tool_tag
        return (text.count(f"<{a}>"), text.count(f"</{a}>"),
                text.count(f"<{t}>"), text.count(f"</{t}>"))

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
        ends_with_answer = self._answer_pair.search(actions[-1]) is not None
        return fraction if ends_with_answer else 0.5 * fraction
