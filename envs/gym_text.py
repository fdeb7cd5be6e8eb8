"""``rlagent/GymText-v0``: run any registered Gymnasium text env under the rlagent contract.

The episode runner makes one env id with ``gymnasium.make(env.id, **env.kwargs)``, resets it
with ``reset(options={"task": task})`` and sends each reply to ``step`` as a ``str``. An env
written for rlagent reads its task from those options. A third-party text env usually does
not, and then four things go wrong:

- it ignores ``options``, so an unseeded reset gives every sample of a GRPO group a different
  episode (the group is no longer comparing answers to one task);
- its observation may be a dict (``{"text": ..., "inventory": ...}``) rather than a ``str``;
- it has no ``generate_task``, so a run needs a JSONL task file;
- its spaces (often ``spaces.Text`` with the default charset) reject ordinary replies.

This adapter closes those gaps without touching the runner: it makes the inner env, seeds each
reset from the task (``task["seed"]``, or a stable hash of ``task["id"]``), forwards the task's
other fields as ``options`` (configurable), turns observations into text with one rule
(``observation_key`` / ``observation_format``), exposes ``AnyText`` spaces, and generates
seeded tasks ``{"id", "prompt", "seed"}`` so ``data.path`` is optional.

An id the current process has not registered yet can be given as ``"package.module:Name-v0"``:
``gymnasium.make`` imports the module (which registers the id) first. This is what a Ray
rollout worker needs, since it imports only ``rlagent.envs``.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Mapping
from typing import Any, Literal

import gymnasium

from rlagent.envs.text import AnyText

ENV_ID = "rlagent/GymText-v0"
# Task fields with a meaning in rlagent itself; the rest are env-specific (see ``reset``).
TASK_KEYS = frozenset({"id", "env", "prompt", "answer", "difficulty", "seed"})
OptionsMode = Literal["fields", "task", "none"]
_OPTIONS_MODES = ("fields", "task", "none")


def task_seed(task: Mapping[str, Any]) -> int:
    """The reset seed of a task: ``task["seed"]``, else a stable hash of its id.

    Every sample of a task must start from the same state, so the seed never depends on the
    process or on Python's per-process string hashing.

    >>> task_seed({"id": "a", "seed": 7}), task_seed({"id": "a"}) == task_seed({"id": "a"})
    (7, True)
    """
    seed = task.get("seed")
    if seed is None:
        return zlib.crc32(str(task.get("id", "")).encode("utf-8"))
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"task {task.get('id')!r}: seed must be an int >= 0, got {seed!r}")
    return seed


def to_text(obs: Any, key: str | None = None, fmt: str | None = None) -> str:
    """An observation as text, by one rule.

    - ``str``: unchanged; ``bytes``: decoded as UTF-8;
    - a mapping: ``fmt.format_map(obs)`` if ``fmt`` is given, else ``obs[key]`` if ``key`` is
      given, else its only ``str`` value;
    - anything else is an error: the env needs ``observation_format`` or its own wrapper.

    >>> to_text({"text": "You see a key.", "turn": 3})
    'You see a key.'
    >>> to_text({"room": "Hall", "inv": "a key"}, fmt="{room}\\nYou carry {inv}.")
    'Hall\\nYou carry a key.'
    """
    if isinstance(obs, str):
        return obs
    if isinstance(obs, bytes):
        return obs.decode("utf-8", errors="replace")
    if isinstance(obs, Mapping):
        if fmt is not None:
            try:
                return fmt.format_map(obs)
            except (KeyError, IndexError, ValueError) as err:
                raise ValueError(
                    f"observation_format {fmt!r} does not fit an observation with keys "
                    f"{sorted(map(str, obs))}: {err!r}"
                ) from err
        if key is not None:
            if key not in obs:
                raise KeyError(
                    f"observation_key {key!r} is not in the observation (keys: {sorted(map(str, obs))})"
                )
            return to_text(obs[key])
        texts = [k for k, v in obs.items() if isinstance(v, str)]
        if len(texts) == 1:
            return obs[texts[0]]
        raise TypeError(
            f"the observation is a mapping with {len(texts)} text values "
            f"(keys: {sorted(map(str, obs))}); set observation_key or observation_format"
        )
    raise TypeError(
        f"the observation is a {type(obs).__name__}, not text; set "
        f"observation_key/observation_format for a mapping, or wrap the env"
    )


def generate_task(
    rng: random.Random, difficulty: int, env_id: str = "", **_env_kwargs: Any
) -> dict[str, Any]:
    """A seeded task for an env that has no task generator: the env draws the episode from
    its reset seed, so the seed is the task. (The sampler passes the env kwargs.)"""
    seed = rng.randrange(2**31)
    return {
        "id": f"{env_id}/seed-{seed}",
        "prompt": f"{env_id} reset with seed {seed}",
        "seed": seed,
        "difficulty": difficulty,
    }


class GymTextEnv(gymnasium.Env[str, str]):
    """Any registered Gymnasium env whose observations and actions are text.

    Args:
        env_id: the inner env's registered id, or ``"package.module:Name-v0"`` to import the
            module that registers it.
        env_kwargs: keyword arguments for ``gymnasium.make(env_id, ...)``.
        observation_key: which entry of a mapping observation is the text.
        observation_format: ``str.format`` template over a mapping observation (wins over
            ``observation_key``), e.g. ``"{description}\\n{inventory}"``.
        options: what ``reset`` forwards from a task: ``"fields"`` (the task's env-specific
            fields, i.e. all but id/env/prompt/answer/difficulty/seed, or nothing when there
            are none), ``"task"`` (``{"task": task}``, as rlagent envs expect) or ``"none"``.
        max_text_length: bound of the ``AnyText`` spaces.

    The reply is passed to the inner ``step`` unchanged: parsing it is the inner env's job,
    and so is answering a malformed reply with an observation. Rewards and ``info`` pass
    through; ``terminated``/``truncated`` (including the inner registration's
    ``max_episode_steps``) end the episode as usual.
    """

    metadata = {"render_modes": []}
    generate_task = staticmethod(generate_task)

    def __init__(
        self,
        env_id: str,
        env_kwargs: Mapping[str, Any] | None = None,
        observation_key: str | None = None,
        observation_format: str | None = None,
        options: OptionsMode = "fields",
        max_text_length: int = 65536,
    ):
        if not isinstance(env_id, str) or not env_id:
            raise ValueError(f"env_id: expected a registered Gymnasium id, got {env_id!r}")
        if env_id.rpartition(":")[2] == ENV_ID:
            raise ValueError(f"env_id: {ENV_ID} cannot wrap itself")
        if options not in _OPTIONS_MODES:
            raise ValueError(f"options: must be one of {_OPTIONS_MODES}, got {options!r}")
        self.env_id, self.options_mode = env_id, options
        self.observation_key, self.observation_format = observation_key, observation_format
        try:
            # Our own check_env covers this adapter; gymnasium's passive checker would warn on
            # every reply that an inner spaces.Text charset does not admit.
            self.inner = gymnasium.make(env_id, disable_env_checker=True, **dict(env_kwargs or {}))
        except gymnasium.error.Error as err:
            raise ValueError(
                f"env_id {env_id!r}: {err} (an id registered by a package this "
                f"process has not imported can be named 'package.module:{env_id}')"
            ) from err
        self.observation_space = AnyText(max_length=max_text_length)
        self.action_space = AnyText(max_length=max_text_length)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """With ``options={"task": task}``: the inner env is reset with the task's seed and
        its options per ``options`` mode. Without a task, ``seed`` and ``options`` go to the
        inner env unchanged."""
        super().reset(seed=seed)
        task = (options or {}).get("task")
        if task is None:
            obs, info = self.inner.reset(seed=seed, options=options)
        else:
            obs, info = self.inner.reset(seed=task_seed(task), options=self._task_options(task))
        return self._text(obs), dict(info)

    def step(self, action: str):
        obs, reward, terminated, truncated, info = self.inner.step(action)
        return self._text(obs), float(reward), bool(terminated), bool(truncated), dict(info)

    def close(self) -> None:
        self.inner.close()

    def _task_options(self, task: Mapping[str, Any]) -> dict[str, Any] | None:
        if self.options_mode == "task":
            return {"task": dict(task)}
        if self.options_mode == "fields":
            fields = {k: v for k, v in task.items() if k not in TASK_KEYS}
            return fields or None
        return None

    def _text(self, obs: Any) -> str:
        text = to_text(obs, self.observation_key, self.observation_format)
        if len(text) > self.observation_space.max_length:
            # Longer than the space admits: cut, and say so, rather than break the contract.
            keep = self.observation_space.max_length - len(_CUT)
            text = text[: max(keep, 0)] + _CUT[: self.observation_space.max_length]
        return text


_CUT = "\n[observation cut]"
