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
from rlagent.records import Episode, Task


def env_class(env_id: str) -> type:
    """The class behind a registered Gymnasium id (imports rlagent.envs for the built-ins).

    ``"package.module:Name-v0"`` imports the module first, as ``gymnasium.make`` does.
    """
    import rlagent.envs  # noqa: F401  (registers the built-in ids)

    module, sep, name = env_id.partition(":")
    if sep:
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise ConfigError(f"env.id: cannot import {module!r}, which should register "
                              f"{name!r}: {err}") from err
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


def task_generator(env_id: str, difficulties: list[int] | None = None,
                   key: str = "data.difficulties") -> tuple[Callable[..., dict[str, Any]] | None, list[int]]:
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
        raise ConfigError(f"--seed {seed}: the same as run.seed, which draws the training "
                          f"tasks; pick a seed no training run uses")
    generate, levels = task_generator(cfg.env.id, difficulties or cfg.data.difficulties,
                                      key="--difficulties")
    if generate is None:
        raise ConfigError(f"env.id: {cfg.env.id} has no task generator (generate_task) to draw "
                          f"held-out tasks from; set aside lines of its JSONL task file instead")
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


class UniformSampler:
    """Tasks drawn uniformly: from the dataset, or generated at a uniformly drawn difficulty.

    State (the RNG) round-trips through ``state_dict`` so a resumed run draws the same tasks.
    """

    def __init__(self, cfg: Config):
        self.rng = random.Random(cfg.run.seed)
        self.env_id = cfg.env.id
        self.env_kwargs = dict(cfg.env.kwargs)  # a generator makes tasks for this env's setup
        self.dataset: list[Task] | None = None
        self.generate: Callable[[random.Random, int], dict[str, Any]] | None = None
        if cfg.data.path:
            self.dataset = load_tasks(cfg.data.path, cfg.env.id)
        else:
            self.generate, self.levels = task_generator(cfg.env.id, cfg.data.difficulties)
            if self.generate is None:
                raise ConfigError(f"data.path: {cfg.env.id} has no task generator "
                                  f"(generate_task); give a JSONL task file")

    def sample(self, n: int) -> list[Task]:
        if self.dataset is not None:
            return [self.rng.choice(self.dataset) for _ in range(n)]
        out = []
        for _ in range(n):
            d = self.generate(self.rng, self.rng.choice(self.levels), **self.env_kwargs)
            d.setdefault("env", self.env_id)
            out.append(Task.from_dict(d))
        return out

    def update(self, episodes: list[Episode]) -> dict[str, float]:
        """Curriculum statistics; a uniform sampler only reports success per difficulty."""
        by_level: dict[int, list[float]] = {}
        for e in episodes:
            if e.reward is not None:
                by_level.setdefault(e.task.difficulty, []).append(e.reward)
        return {f"curriculum/reward_d{d}": sum(v) / len(v) for d, v in sorted(by_level.items())}

    def state_dict(self) -> dict[str, Any]:
        """JSON-able state: the checkpoint stores it as text."""
        from rlagent.checkpoint import rng_to_json

        return {"rng": rng_to_json(self.rng.getstate())}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        from rlagent.checkpoint import rng_from_json

        self.rng.setstate(rng_from_json(state["rng"]))
