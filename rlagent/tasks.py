"""Where tasks come from (a JSONL file or the env's generator) and which ones a step gets."""

from __future__ import annotations

import importlib
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium

from rlagent.config import Config, ConfigError
from rlagent.records import Task


def env_class(env_id: str) -> type:
    """The class behind a registered Gymnasium id (imports rlagent.envs for the built-ins).

    ``"package.module:Name-v0"`` imports the module first, as ``gymnasium.make`` does.
    """
    import rlagent.envs  # registers the built-in ids

    rlagent.envs.register_hub(env_id)
    module, sep, name = env_id.partition(":")
    if sep:
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise ConfigError(
                f"env.id: cannot import {module!r}, which should register {name!r}: {err}"
            ) from err
    try:
        spec = gymnasium.spec(name if sep else env_id)
    except gymnasium.error.Error as err:
        raise ConfigError(f"env.id: {err}") from err
    entry = spec.entry_point
    if callable(entry):
        return entry
    from gymnasium.envs.registration import load_env_creator

    return load_env_creator(entry)


def load_tasks(path: str | Path, env_id: str) -> list[Task]:
    """Tasks from a JSONL file; a bad line is an error naming the file and the line."""
    tasks = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
                if not isinstance(d, dict):
                    raise ValueError("a task must be a JSON object")
                d.setdefault("env", env_id)
                tasks.append(Task.from_dict(d))
            except ValueError as err:
                raise ValueError(f"{path}:{n}: {err}") from err
    if not tasks:
        raise ValueError(f"{path}: no tasks")
    return tasks


def task_generator(
    env_id: str, difficulties: list[int] | None = None, key: str = "data.difficulties"
) -> tuple[Callable[..., dict[str, Any]] | None, list[int]]:
    """The env's ``generate_task`` (None when it has none) and the difficulty levels to draw
    from: all it offers when ``difficulties`` is None; a level it does not offer is an error
    naming ``key``."""
    cls = env_class(env_id)
    generate = getattr(cls, "generate_task", None)
    if generate is None:
        return None, []
    offered = list(getattr(cls, "difficulties", (0,)))
    levels = list(difficulties or offered)
    bad = [d for d in levels if d not in offered]
    if bad:
        raise ConfigError(f"{key}: {bad} not offered by {env_id} (allowed: {offered})")
    return generate, levels


def heldout_tasks(cfg: Config, n: int, seed: int, difficulties: list[int] | None = None) -> list[Task]:
    """``n`` generated tasks for evaluation: the same (seed, n, difficulties, env.kwargs)
    always give the same tasks. Difficulties (default: ``data.difficulties``, else all the
    env offers) are taken in turn, so each level gets an even share. ``seed`` must differ
    from ``run.seed``, whose stream the training sampler draws (a small task space may still
    repeat training tasks: the seed fixes the set, it cannot make it disjoint)."""
    if seed == cfg.run.seed:
        raise ConfigError(
            f"--seed {seed}: the same as run.seed, which draws the training "
            f"tasks; pick a seed no training run uses"
        )
    generate, levels = task_generator(cfg.env.id, difficulties or cfg.data.difficulties, key="--difficulties")
    if generate is None:
        raise ConfigError(
            f"env.id: {cfg.env.id} has no task generator (generate_task) to draw "
            f"held-out tasks from; set aside lines of its JSONL task file instead"
        )
    rng = random.Random(seed)
    out = []
    for i in range(n):
        d = generate(rng, levels[i % len(levels)], **cfg.env.kwargs)
        d.setdefault("env", cfg.env.id)
        out.append(Task.from_dict(d))
    return out


def write_tasks(tasks: list[Task], path: str | Path) -> Path:
    """One JSON object per line, in the format ``load_tasks`` reads."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        for t in tasks:
            f.write(json.dumps(t.to_dict(), sort_keys=True) + "\n")
    tmp.replace(path)
    return path


class TaskSource:
    """Tasks by difficulty level: from a JSONL dataset (its ``difficulty`` fields are the
    levels) or from the env's generator (the levels it offers, or ``data.difficulties``).

    ``similar(rng, task, level)`` makes a new task with the same skill as ``task`` at
    ``level``, for self-evolving curricula: the env's ``similar_task`` hook when it has one,
    else its ``generate_task`` at that level.
    """

    def __init__(self, cfg: Config):
        self.env_id = cfg.env.id
        self.env_kwargs = dict(cfg.env.kwargs)  # a generator makes tasks for this env's setup
        cls = env_class(cfg.env.id)
        self.generate: Callable[..., dict[str, Any]] | None = getattr(cls, "generate_task", None)
        self.similar_hook: Callable[..., dict[str, Any]] | None = getattr(cls, "similar_task", None)
        self.dataset: list[Task] | None = None
        if cfg.data.path:
            self.dataset = load_tasks(cfg.data.path, cfg.env.id)
            offered = sorted({t.difficulty for t in self.dataset})
        elif self.generate is None:
            raise ConfigError(
                f"data.path: {cfg.env.id} has no task generator (generate_task); give a JSONL task file"
            )
        else:
            offered = list(getattr(cls, "difficulties", (0,)))
        self.levels: list[int] = list(cfg.data.difficulties or offered)
        bad = [d for d in self.levels if d not in offered]
        if bad:
            where = f"{cfg.data.path}" if self.dataset is not None else cfg.env.id
            raise ConfigError(f"data.difficulties: {bad} not offered by {where} (allowed: {offered})")
        if self.dataset is not None:
            self.dataset = [t for t in self.dataset if t.difficulty in self.levels]
            self.by_level = {d: [t for t in self.dataset if t.difficulty == d] for d in self.levels}

    @property
    def can_generate(self) -> bool:
        return self.generate is not None or self.similar_hook is not None

    def draw(self, rng: random.Random, level: int) -> Task:
        """A task at ``level``."""
        if self.dataset is not None:
            return rng.choice(self.by_level[level])
        return self._task(self.generate(rng, level, **self.env_kwargs))

    def similar(self, rng: random.Random, task: Task, level: int) -> Task:
        """A new task like ``task`` (same skill) at ``level``."""
        if self.similar_hook is not None:
            return self._task(self.similar_hook(rng, task.to_dict(), level, **self.env_kwargs))
        if self.generate is None:
            raise ConfigError(f"curriculum.evolve_share: {self.env_id} has no task generator")
        return self._task(self.generate(rng, level, **self.env_kwargs))

    def _task(self, d: dict[str, Any]) -> Task:
        d.setdefault("env", self.env_id)
        return Task.from_dict(d)
