"""The reward service: plugins found by entry point, each call timed out, every failure counted.

A plugin is a class with ``kind`` ("format" | "outcome" | "process") and
``score(episode) -> float | list[float] | None``, registered under the entry-point group
``rlagent.rewards``. The built-ins in ``rlagent.rewards`` are registered the same way.
"""
from __future__ import annotations

import concurrent.futures as cf
import math
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from rlagent.config import ConfigError, RewardSpec
from rlagent.episode_view import EpisodeView
from rlagent.records import Episode

GROUP = "rlagent.rewards"
CONCURRENCY = 8  # episodes the service scores at once
KINDS = ("format", "outcome", "process")


def discover() -> dict[str, EntryPoint]:
    """Every installed reward plugin, by name."""
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def load_plugin(spec: RewardSpec, available: dict[str, EntryPoint]) -> Any:
    if spec.name not in available:
        raise ConfigError(f"rewards.components: no reward plugin named {spec.name!r} "
                          f"(installed: {', '.join(sorted(available)) or 'none'})")
    cls = available[spec.name].load()
    plugin = cls(**spec.kwargs)
    if getattr(plugin, "kind", None) not in KINDS:
        raise ConfigError(f"rewards.components: plugin {spec.name!r} has kind "
                          f"{getattr(plugin, 'kind', None)!r}; expected one of {KINDS}")
    return plugin


def _check_value(value: Any) -> float | list[float] | None:
    """A plugin's return value, or ValueError saying why it is not a score."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return [_check_value(v) for v in value]  # type: ignore[misc]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"returned {type(value).__name__} {value!r:.80}, not a float")
    if not math.isfinite(value):
        raise ValueError(f"returned {value}")
    return float(value)


def scalar(value: float | list[float] | None) -> float | None:
    """One number per episode: a per-turn (process) score counts as its mean."""
    if isinstance(value, list):
        vals = [v for v in value if v is not None]
        return sum(vals) / len(vals) if vals else None
    return value


class RewardService:
    """Scores finished episodes with the configured plugins (runs as a Ray actor)."""

    def __init__(self, specs: list[RewardSpec], timeout_s: float):
        available = discover()
        self.specs = specs
        self.plugins = {s.name: load_plugin(s, available) for s in specs}
        self.timeout_s = timeout_s
        # Enough threads for every concurrent call's plugins: a timeout measures the plugin,
        # not time spent queued behind others.
        self._pool = cf.ThreadPoolExecutor(max_workers=CONCURRENCY * len(specs),
                                           thread_name_prefix="reward")

    def score(self, episode: Episode) -> Episode:
        """Fill ``rewards``, ``reward_errors`` and ``reward`` (None if a weighted part failed)."""
        view = EpisodeView.of(episode)
        for spec in self.specs:
            future = self._pool.submit(self.plugins[spec.name].score, view)
            try:
                episode.rewards[spec.name] = _check_value(future.result(timeout=self.timeout_s))
            except cf.TimeoutError:
                episode.reward_errors[spec.name] = f"timed out after {self.timeout_s} s"
            except Exception as err:  # a plugin bug must not end the run; it is counted
                episode.reward_errors[spec.name] = f"{type(err).__name__}: {err}"
        episode.reward = self.total(episode)
        return episode

    def total(self, episode: Episode) -> float | None:
        if episode.termination in ("env_error", "env_timeout"):
            return None  # the env broke, not the policy: nothing to learn from this episode
        total, applied = 0.0, False
        for spec in self.specs:
            if spec.weight == 0:
                continue
            if spec.name in episode.reward_errors:
                return None
            value = scalar(episode.rewards.get(spec.name))
            if value is not None:
                total, applied = total + spec.weight * value, True
        return total if applied else None  # no weighted plugin applied: not a score of 0


def reward_metrics(episodes: list[Episode], specs: list[RewardSpec]) -> dict[str, float]:
    """``reward/mean`` and, per plugin, ``reward/<name>/mean``, ``/errors``, ``/none``."""
    totals = [e.reward for e in episodes if e.reward is not None]
    out = {"reward/mean": sum(totals) / len(totals) if totals else float("nan"),
           "reward/invalid": float(len(episodes) - len(totals))}
    for spec in specs:
        vals = [scalar(e.rewards.get(spec.name)) for e in episodes if spec.name not in e.reward_errors]
        nums = [v for v in vals if v is not None]
        out[f"reward/{spec.name}/mean"] = sum(nums) / len(nums) if nums else float("nan")
        out[f"reward/{spec.name}/errors"] = float(sum(spec.name in e.reward_errors for e in episodes))
        out[f"reward/{spec.name}/none"] = float(len(vals) - len(nums))
    return out
