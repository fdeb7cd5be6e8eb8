"""The read-only view of an episode that reward plugins receive.

A plugin's ``score(episode)`` gets an :class:`EpisodeView`: the task (with its reference
answer), the chat messages, each assistant turn's action and the env's observation and
``info`` after it, and how the episode ended. Every container in it is immutable
(tuples and read-only mappings), so one plugin cannot change what the next one sees.

>>> view = EpisodeView.from_dict({
...     "task": {"id": "t1", "env": "rlagent/Calculator-v0", "prompt": "2+3?", "answer": 5},
...     "messages": [{"role": "user", "content": "2+3?"}],
...     "turns": [{"action": "<answer>5</answer>", "observation": None, "env_reward": 1.0,
...                "info": {"success": True}, "finish_reason": "stop"}],
...     "termination": "terminated"})
>>> view.task.answer, view.actions, view.final_info["success"]
(5, ('<answer>5</answer>',), True)
>>> view.final_info["success"] = False
Traceback (most recent call last):
...
TypeError: 'mappingproxy' object does not support item assignment
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

EMPTY: Mapping[str, Any] = MappingProxyType({})


def frozen(value: Any) -> Any:
    """A deep read-only copy: dicts become mappingproxies, lists tuples."""
    if isinstance(value, Mapping):
        return MappingProxyType({k: frozen(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(frozen(v) for v in value)
    return value


@dataclass(frozen=True)
class TaskView:
    id: str
    env: str
    prompt: str
    answer: Any = None  # the reference answer (None: the task has none)
    difficulty: int = 0
    # every other field of the task (e.g. gold doc ids)
    fields: Mapping[str, Any] = field(default_factory=lambda: EMPTY)


@dataclass(frozen=True)
class TurnView:
    index: int  # 0-based assistant turn
    action: str  # the assistant's whole reply of this turn
    observation: str | None  # the env's answer (None once the episode ended)
    env_reward: float  # the env's step reward for this turn
    # the env's facts after this turn (tool errors, retrieved ids, success, ...)
    info: Mapping[str, Any] = field(default_factory=lambda: EMPTY)
    finish_reason: str = "stop"  # "stop" (end of turn) or "length" (hit max_new_tokens)
    policy_version: int = 0  # weights version that generated this turn


@dataclass(frozen=True)
class EpisodeView:
    task: TaskView
    messages: tuple[Mapping[str, str], ...]  # the chat as text: system?, user, assistant, ...
    turns: tuple[TurnView, ...]
    termination: str  # terminated | truncated | max_turns | max_tokens | env_error | env_timeout
    group: int = 0  # the task's index in its step: samples of one task share it
    policy_version: int = 0  # its oldest turn's
    uid: str = ""  # the episode's id (its env's reset saw it as options["episode_id"])

    @property
    def actions(self) -> tuple[str, ...]:
        return tuple(t.action for t in self.turns)

    @property
    def observations(self) -> tuple[str | None, ...]:
        return tuple(t.observation for t in self.turns)

    @property
    def infos(self) -> tuple[Mapping[str, Any], ...]:
        return tuple(t.info for t in self.turns)

    @property
    def final_info(self) -> Mapping[str, Any]:
        """The env's info after the last turn (empty when there was no turn)."""
        return self.turns[-1].info if self.turns else EMPTY

    @property
    def env_return(self) -> float:
        """The env's step rewards summed over the episode."""
        return sum(t.env_reward for t in self.turns)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> EpisodeView:
        """From an episode as saved in ``rollouts/step_N.jsonl`` (or ``Episode.to_dict``)."""
        t = d["task"]
        known = {"id", "env", "prompt", "answer", "difficulty"}
        task = TaskView(
            id=str(t["id"]),
            env=str(t.get("env", "")),
            prompt=str(t.get("prompt", "")),
            answer=frozen(t.get("answer")),
            difficulty=int(t.get("difficulty", 0)),
            fields=frozen({k: v for k, v in t.items() if k not in known}),
        )
        turns = tuple(
            TurnView(
                index=i,
                action=str(u.get("action", "")),
                observation=u.get("observation"),
                env_reward=float(u.get("env_reward", 0.0)),
                info=frozen(u.get("info") or {}),
                finish_reason=str(u.get("finish_reason", "stop")),
                policy_version=int(u.get("policy_version", d.get("policy_version", 0))),
            )
            for i, u in enumerate(d.get("turns", []))
        )
        return cls(
            task=task,
            messages=frozen(list(d.get("messages", []))),
            turns=turns,
            termination=str(d.get("termination", "")),
            group=int(d.get("group", 0)),
            policy_version=int(d.get("policy_version", 0)),
            uid=str(d.get("uid", "")),
        )

    @classmethod
    def of(cls, episode: Any) -> EpisodeView:
        """The view of a live ``rlagent.records.Episode`` (its token lists are not copied:
        the view has none)."""
        turns = [
            {
                "action": t.action,
                "observation": t.observation,
                "env_reward": t.env_reward,
                "info": t.info,
                "finish_reason": t.finish_reason,
                "policy_version": t.policy_version,
            }
            for t in episode.turns
        ]
        return cls.from_dict(
            {
                "task": episode.task.to_dict(),
                "messages": episode.messages,
                "turns": turns,
                "termination": episode.termination,
                "group": episode.group,
                "policy_version": episode.policy_version,
                "uid": getattr(episode, "uid", ""),
            }
        )
