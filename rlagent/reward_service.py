"""The reward service: plugins found by entry point, each call timed out, every failure counted.

A plugin is a class with ``kind`` ("format" | "outcome" | "process") and
``score(episode) -> float | list[float] | None``, registered under the entry-point group
``rlagent.rewards``. The built-ins in ``rlagent.rewards`` are registered the same way.
"""
from __future__ import annotations

import concurrent.futures as cf
import math
import time
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

    def __init__(self, specs: list[RewardSpec], timeout_s: float, on_error: str = "exclude"):
        available = discover()
        self.specs = specs
        self.plugins = {s.name: load_plugin(s, available) for s in specs}
        for plugin in self.plugins.values():
            # Slow set-up (e.g. a judge's engine) happens now, not in the first timed call.
            start = getattr(plugin, "start", None)
            if callable(start):
                start()
        self.timeout_s = timeout_s
        self.on_error = on_error
        # Enough threads for every concurrent call's plugins: a timeout measures the plugin,
        # not time spent queued behind others.
        self._pool = cf.ThreadPoolExecutor(max_workers=CONCURRENCY * len(specs),
                                           thread_name_prefix="reward")

    def score(self, episode: Episode) -> Episode:
        """Fill ``rewards``, ``reward_errors``, ``reward_latency`` and ``reward``.

        The plugins run at once, each under the same per-call timeout.
        """
        view = EpisodeView.of(episode)
        start = time.perf_counter()
        futures = {s.name: self._pool.submit(_timed, self.plugins[s.name].score, view)
                   for s in self.specs}
        for name, future in futures.items():
            left = max(self.timeout_s - (time.perf_counter() - start), 0.0)
            try:
                value, seconds = future.result(timeout=left)
                episode.reward_latency[name] = seconds
                episode.rewards[name] = _check_value(value)
            except cf.TimeoutError:
                episode.reward_latency[name] = self.timeout_s
                episode.reward_errors[name] = f"timed out after {self.timeout_s} s"
            except Exception as err:  # a plugin bug must not end the run; it is counted
                episode.reward_errors[name] = f"{type(err).__name__}: {err}"
        episode.reward = total(episode, self.specs, self.on_error)
        return episode


def _timed(fn: Any, view: EpisodeView) -> tuple[Any, float]:
    t0 = time.perf_counter()
    value = fn(view)
    return value, time.perf_counter() - t0


def total(episode: Episode, specs: list[RewardSpec], on_error: str = "exclude",
          values: dict[str, float | None] | None = None) -> float | None:
    """The weighted sum of the components that scored; None when there is nothing to
    learn from: the env broke, no weighted plugin applied, or (``on_error: exclude``) a
    weighted plugin failed. ``values`` replaces the episode's own scalar components."""
    if episode.termination in ("env_error", "env_timeout"):
        return None  # the env broke, not the policy: nothing to learn from this episode
    result, applied = 0.0, False
    for spec in specs:
        if spec.weight == 0:
            continue
        if spec.name in episode.reward_errors:
            if on_error == "exclude":
                return None
            continue
        value = values[spec.name] if values is not None else scalar(episode.rewards.get(spec.name))
        if value is not None:
            result, applied = result + spec.weight * value, True
    return result if applied else None  # no weighted plugin applied: not a score of 0


def group_normalized(episodes: list[Episode], specs: list[RewardSpec], on_error: str) -> None:
    """Re-total each episode from components z-normalised within its group: for component
    c, (x - mean_g) / (std_g + 1e-6) over the group's episodes where c scored (population
    std; a component equal across the group contributes 0)."""
    by_group: dict[int, list[Episode]] = {}
    for e in episodes:
        by_group.setdefault(e.group, []).append(e)
    for group in by_group.values():
        normed: list[dict[str, float | None]] = [{} for _ in group]
        for spec in specs:
            xs = [scalar(e.rewards.get(spec.name)) if spec.name not in e.reward_errors else None
                  for e in group]
            nums = [x for x in xs if x is not None]
            mean = sum(nums) / len(nums) if nums else 0.0
            std = (sum((x - mean) ** 2 for x in nums) / len(nums)) ** 0.5 if nums else 0.0
            for d, x in zip(normed, xs):
                d[spec.name] = None if x is None else (0.0 if std == 0 else (x - mean) / (std + 1e-6))
        for e, values in zip(group, normed):
            e.reward = total(e, specs, on_error, values)


def reward_metrics(episodes: list[Episode], specs: list[RewardSpec]) -> dict[str, float]:
    """``reward/mean`` and, per plugin, ``reward/<name>/mean``, ``/std``, ``/errors``,
    ``/none`` (not applicable) and ``/latency_s`` (mean seconds per call)."""
    totals = [e.reward for e in episodes if e.reward is not None]
    out = {"reward/mean": sum(totals) / len(totals) if totals else float("nan"),
           "reward/invalid": float(len(episodes) - len(totals))}
    for spec in specs:
        vals = [scalar(e.rewards.get(spec.name)) for e in episodes if spec.name not in e.reward_errors]
        nums = [v for v in vals if v is not None]
        mean = sum(nums) / len(nums) if nums else float("nan")
        lat = [e.reward_latency[spec.name] for e in episodes if spec.name in e.reward_latency]
        out[f"reward/{spec.name}/mean"] = mean
        out[f"reward/{spec.name}/std"] = (
            (sum((v - mean) ** 2 for v in nums) / len(nums)) ** 0.5 if nums else float("nan"))
        out[f"reward/{spec.name}/errors"] = float(sum(spec.name in e.reward_errors for e in episodes))
        out[f"reward/{spec.name}/none"] = float(len(vals) - len(nums))
        out[f"reward/{spec.name}/latency_s"] = sum(lat) / len(lat) if lat else float("nan")
    return out
