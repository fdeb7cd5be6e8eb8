"""The reward service: plugins found by entry point, each call timed out, every failure counted.

A plugin is a class with ``kind`` ("format" | "outcome" | "process") and
``score(episode) -> float | list[float] | None``, registered under the entry-point group
``rlagent.rewards``. The built-ins in ``rlagent.rewards`` are registered the same way; a
TRL-style reward function is named ``trl:package.module:function`` (``rewards/trl.py``).

The service runs as Ray actors (``start_reward_service``); a rollout worker hands each
finished episode's ``EpisodeView`` (no tokens) to one of them and gets ``Scores`` back.
"""

from __future__ import annotations

import concurrent.futures as cf
import math
import os
import time
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from rlagent.config import ConfigError, RewardConfig, RewardSpec
from rlagent.episode_view import EpisodeView
from rlagent.records import Scores
from rlagent.remote import placed
from rlagent.rewards.trl import PREFIX as TRL_PREFIX
from rlagent.rewards.trl import TRLRewardFunction
from rlagent.scoring.combine import total

GROUP = "rlagent.rewards"
CONCURRENCY = 8  # episodes the service scores at once
KINDS = ("format", "outcome", "process")


def discover() -> dict[str, EntryPoint]:
    """Every installed reward plugin, by name."""
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def load_plugin(spec: RewardSpec, available: dict[str, EntryPoint], search_path: str | None = None) -> Any:
    """The plugin ``spec`` names: an installed one, or ``trl:package.module:function`` (a
    TRL-style reward function; ``search_path`` is where the driver imports from)."""
    if spec.name.startswith(TRL_PREFIX):
        plugin = TRLRewardFunction(spec.name.removeprefix(TRL_PREFIX), search_path=search_path, **spec.kwargs)
    elif spec.name not in available:
        raise ConfigError(
            f"rewards.components: no reward plugin named {spec.name!r} "
            f"(installed: {', '.join(sorted(available)) or 'none'}; or trl:package.module:function)"
        )
    else:
        plugin = available[spec.name].load()(**spec.kwargs)
    if getattr(plugin, "kind", None) not in KINDS:
        raise ConfigError(
            f"rewards.components: plugin {spec.name!r} has kind "
            f"{getattr(plugin, 'kind', None)!r}; expected one of {KINDS}"
        )
    return plugin


def check_value(value: Any) -> float | list[float] | None:
    """A plugin's return value, or ValueError saying why it is not a score."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return [check_value(v) for v in value]  # type: ignore[misc]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"returned {type(value).__name__} {value!r:.80}, not a float")
    if not math.isfinite(value):
        raise ValueError(f"returned {value}")
    return float(value)


class RewardService:
    """Scores finished episodes with the configured plugins (runs as a Ray actor)."""

    def __init__(
        self,
        specs: list[RewardSpec],
        timeout_s: float,
        on_error: str = "exclude",
        search_path: str | None = None,
    ):
        available = discover()
        self.specs = specs
        self.plugins = {s.name: load_plugin(s, available, search_path) for s in specs}
        for plugin in self.plugins.values():
            # Slow set-up (e.g. a judge's engine) happens now, not in the first timed call.
            start = getattr(plugin, "start", None)
            if callable(start):
                start()
        self.timeout_s = timeout_s
        self.on_error = on_error
        # Enough threads for every concurrent call's plugins: a timeout measures the plugin,
        # not time spent queued behind others.
        self._pool = cf.ThreadPoolExecutor(max_workers=CONCURRENCY * len(specs), thread_name_prefix="reward")

    def score(self, view: EpisodeView) -> Scores:
        """Every configured plugin on one episode, at once, each under the same per-call
        timeout; the components, errors, latencies and the weighted total."""
        start = time.perf_counter()
        futures = {s.name: self._pool.submit(_timed, self.plugins[s.name].score, view) for s in self.specs}
        components: dict[str, Any] = {}
        errors: dict[str, str] = {}
        latency: dict[str, float] = {}
        for name, future in futures.items():
            left = max(self.timeout_s - (time.perf_counter() - start), 0.0)
            try:
                value, seconds = future.result(timeout=left)
                latency[name] = seconds
                components[name] = check_value(value)
            except cf.TimeoutError:
                latency[name] = self.timeout_s
                errors[name] = f"timed out after {self.timeout_s} s"
            except Exception as err:  # a plugin bug must not end the run; it is counted
                errors[name] = f"{type(err).__name__}: {err}"
        return Scores(
            components,
            errors,
            latency,
            total(components, errors, view.termination, self.specs, self.on_error),
        )


def _timed(fn: Any, view: EpisodeView) -> tuple[Any, float]:
    t0 = time.perf_counter()
    value = fn(view)
    return value, time.perf_counter() - t0


def start_reward_service(rewards: RewardConfig, placement: Any = None) -> list[Any]:
    """``rewards.num_actors`` reward service actors, each with every configured plugin.

    Returns at once: the actors load their plugins while the engines start (a few seconds
    saved on the way to the first step); ``RolloutPool.ready`` waits for them, so a plugin
    that cannot load still stops the run before its first step."""
    import ray

    actor = ray.remote(RewardService)
    return [
        actor.options(
            num_cpus=rewards.num_cpus, max_concurrency=CONCURRENCY, **placed(placement, "reward service", i)
        ).remote(rewards.components, rewards.timeout_s, rewards.on_error, os.getcwd())
        for i in range(rewards.num_actors)
    ]
