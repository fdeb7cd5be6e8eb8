"""A reward function written for TRL's ``GRPOTrainer`` used as a plugin by name:
``{name: "trl:my_pkg.rewards:accuracy", weight: 1.0}``.

TRL calls ``f(prompts, completions, **columns) -> list[float | None]`` on a batch; here each
episode is a batch of one. What the function gets (``rewards/README.md``):

- ``completions``: ``standard`` (the default): the episode's last assistant reply, a string;
  ``conversational``: every message after the prompt (the assistant's replies and the env's
  observations as ``user`` messages), a list of ``{"role", "content"}`` dicts.
- ``prompts``: the task's prompt as the model saw it: the first user message (standard), or
  the messages before the first reply (conversational).
- the task's columns: ``answer``, ``difficulty``, ``task_id`` and every field of the task
  (``task.fields``), each as a list of one, as TRL passes dataset columns; then the
  plugin's other ``kwargs`` as they are.
"""

from __future__ import annotations

from typing import Any

from rlagent.episode_view import EpisodeView
from rlagent.imports import import_callable
from rlagent.typed_config import ConfigError

FORMATS = ("standard", "conversational")
PREFIX = "trl:"


def _plain(value: Any) -> Any:
    """Thawed: the view's read-only mappings and tuples as the dicts and lists TRL gives."""
    if hasattr(value, "items"):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


class TRLRewardFunction:
    """A TRL-style reward function, ``f(completions, **kwargs) -> list[float]``, named as
    ``trl:package.module:function``."""

    def __init__(
        self,
        target: str,
        kind: str = "outcome",
        completions: str = "standard",
        search_path: str | None = None,
        **fixed: Any,
    ):
        key = f"rewards.components[{PREFIX}{target}]"
        if completions not in FORMATS:
            raise ConfigError(f"{key}.kwargs.completions: one of {FORMATS}, got {completions!r}")
        self.fn = import_callable(target, key, search_path)
        self.kind, self.format, self.fixed = kind, completions, fixed

    def arguments(self, episode: EpisodeView) -> dict[str, Any]:
        """The keyword arguments of the call for ``episode`` (a batch of one)."""
        messages = _plain(episode.messages)
        first = next((i for i, m in enumerate(messages) if m["role"] == "assistant"), len(messages))
        if self.format == "conversational":
            prompt: Any = messages[:first]
            completion: Any = messages[first:]
        else:
            users = [m["content"] for m in messages[:first] if m["role"] == "user"]
            prompt = users[-1] if users else episode.task.prompt
            completion = episode.turns[-1].action if episode.turns else ""
        task = episode.task
        columns = {
            **_plain(task.fields),
            "answer": _plain(task.answer),
            "difficulty": task.difficulty,
            "task_id": task.id,
        }
        return {
            "prompts": [prompt],
            "completions": [completion],
            **{k: [v] for k, v in columns.items()},
            **self.fixed,
        }

    def score(self, episode: EpisodeView) -> float | None:
        out = self.fn(**self.arguments(episode))
        if not isinstance(out, (list, tuple)) or len(out) != 1:
            raise ValueError(f"expected a list of one score for a batch of one, got {out!r:.80}")
        return out[0]  # None: not applicable, as in TRL
