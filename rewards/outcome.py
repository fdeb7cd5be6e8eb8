"""Outcome rewards: did the episode end with the right result?

``rlagent.tags.parse_number`` is also what ``rlagent/Calculator-v0`` uses for its ``success``
flag, so the env's fact and this reward agree on what counts as a numeric answer.
"""

from __future__ import annotations

import math
from typing import Any

from rlagent.episode_view import EpisodeView
from rlagent.rewards import _checks
from rlagent.tags import as_number, last_tag_content, parse_number


class NumericMatchReward:
    """1.0 if the last ``<answer>`` of the episode equals the task's numeric answer, else 0.0.

    The last answer tag over all assistant turns is taken (a model that corrects itself is
    judged on its final word). No answer tag scores 0.0; a task whose ``answer`` is missing or
    not a number scores None (not applicable), since there is nothing to compare against.

    Kwargs: ``answer_tag`` ("answer"), ``rel_tol`` (1e-6), ``abs_tol`` (1e-9), as in
    ``math.isclose`` (both >= 0). Registered as ``numeric`` and, for older configs, ``outcome``.
    """

    kind = "outcome"

    def __init__(
        self, answer_tag: str = "answer", rel_tol: float = 1e-6, abs_tol: float = 1e-9, **kwargs: Any
    ):
        _checks.reject_unknown(type(self), kwargs)
        self.answer_tag = _checks.tag(type(self), "answer_tag", answer_tag)
        self.rel_tol = _checks.number(type(self), "rel_tol", rel_tol, low=0.0)
        self.abs_tol = _checks.number(type(self), "abs_tol", abs_tol, low=0.0)

    def score(self, episode: EpisodeView) -> float | None:
        target = as_number(episode.task.answer)
        if target is None:
            return None
        content = last_tag_content([t.action for t in episode.turns], self.answer_tag)
        if content is None:
            return 0.0
        value = parse_number(content)
        if value is None:
            return 0.0
        ok = math.isclose(value, target, rel_tol=self.rel_tol, abs_tol=self.abs_tol)
        return 1.0 if ok else 0.0


class AgentReward:
    """The number the agent returned (``agent.entrypoint``), from the last turn's
    ``info["agent_reward"]``; None when it returned None (or there was no agent).

    Added to ``rewards.components`` with weight 1 whenever ``agent`` is configured and the
    components do not name it.

    Kwargs: none.
    """

    kind = "outcome"

    def __init__(self, **kwargs: Any):
        _checks.reject_unknown(type(self), kwargs)

    def score(self, episode: EpisodeView) -> float | None:
        value = episode.final_info.get("agent_reward")
        return None if value is None else float(value)


class EnvReward:
    """The sum of the env's own per-step rewards (``Turn.env_reward``).

    This passes the environment's signal through the plugin path unchanged (for
    ``rlagent/Echo-v0`` it is the fraction of turns answered correctly). An episode with no
    turns scores None: the env never got to judge anything.

    Kwargs: none.
    """

    kind = "outcome"

    def __init__(self, **kwargs: Any):
        _checks.reject_unknown(type(self), kwargs)

    def score(self, episode: EpisodeView) -> float | None:
        if not episode.turns:
            return None
        return float(sum(t.env_reward for t in episode.turns))


class EnvSuccessReward:
    """1.0 if the env's last ``info["success"]`` is true, 0.0 if false, None if it reports none.

    Every built-in env that can tell success sets the flag on the episode's last turn
    (Calculator, Tool, Search, Web; TextWorld when the game ends). An episode with no turns,
    or whose last info has no flag (or ``None``), scores None: the env did not judge it --
    e.g. a TextWorld episode cut off by the trainer's turn limit before the game ended.
    A flag that is not a bool (or 0 / 1) raises ValueError, counted as the plugin's error.

    Kwargs: ``key`` ("success"), the info key to read.
    """

    kind = "outcome"

    def __init__(self, key: str = "success", **kwargs: Any):
        _checks.reject_unknown(type(self), kwargs)
        if not isinstance(key, str) or not key:
            raise ValueError(f"EnvSuccessReward: key must be a non-empty string, got {key!r}")
        self.key = key

    def score(self, episode: EpisodeView) -> float | None:
        flag = episode.final_info.get(self.key)
        if flag is None:
            return None
        if isinstance(flag, bool) or (isinstance(flag, (int, float)) and flag in (0, 1)):
            return 1.0 if flag else 0.0
        raise ValueError(f"info[{self.key!r}] is {flag!r:.80}, not a bool")
