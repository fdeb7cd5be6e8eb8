"""Latency around any env's ``step``: the stand-in for remote tools, search APIs and sandboxes.

``env.latency: {mean_s: 1.0, p99_s: 6.0, seed: 0}`` in a run config wraps every env instance
of the run in ``Latency``: each ``step`` first sleeps a lognormal time with that mean and 99th
percentile (a few slow calls, most fast, as measured tool latencies look), then steps the env.
The sleep happens in the env's thread, like a real network call. ``rlagent/Latency-v0`` is the
same wrapper as an env id (``env_id`` and its kwargs inside), for code that can only name an
env.
"""

from __future__ import annotations

import itertools
import math
import random
import time
from typing import Any

import gymnasium

Z99 = 2.3263478740408408  # the standard normal's 99th percentile
_instances = itertools.count()  # per process: each wrapped env draws its own sleeps


def lognormal_params(mean_s: float, p99_s: float) -> tuple[float, float]:
    """(mu, sigma) of the lognormal with this mean and 99th percentile.

    mean = exp(mu + sigma^2 / 2) and p99 = exp(mu + Z99 sigma), so sigma solves
    sigma^2 / 2 - Z99 sigma + ln(p99 / mean) = 0 (the smaller root).

    >>> mu, sigma = lognormal_params(1.0, 6.0)
    >>> round(math.exp(mu + sigma**2 / 2), 6), round(math.exp(mu + Z99 * sigma), 6)
    (1.0, 6.0)
    """
    if not 0 < mean_s <= p99_s:
        raise ValueError(f"latency: need 0 < mean_s <= p99_s, got mean_s={mean_s}, p99_s={p99_s}")
    disc = Z99**2 - 2 * math.log(p99_s / mean_s)
    if disc < 0:
        raise ValueError(
            f"latency: no lognormal has mean {mean_s} s and p99 {p99_s} s (p99/mean must be at "
            f"most {math.exp(Z99**2 / 2):.1f})"
        )
    sigma = Z99 - math.sqrt(disc)
    return math.log(mean_s) - sigma**2 / 2, sigma


class Latency(gymnasium.Wrapper[str, str, str, str]):
    """Sleeps before each ``step``: lognormal with mean ``mean_s`` and 99th percentile
    ``p99_s``; ``seed`` makes the sleeps of a process's n-th wrapped env repeatable."""

    def __init__(self, env: gymnasium.Env, mean_s: float, p99_s: float, seed: int = 0):
        super().__init__(env)
        self.mu, self.sigma = lognormal_params(mean_s, p99_s)
        self.rng = random.Random(f"{seed}-{next(_instances)}")
        self.slept_s = 0.0  # total, for tests and benchmarks

    def draw(self) -> float:
        return self.rng.lognormvariate(self.mu, self.sigma)

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        pause = self.draw()
        time.sleep(pause)
        self.slept_s += pause
        return self.env.step(action)


def make(
    env_id: str = "rlagent/Echo-v0", mean_s: float = 0.01, p99_s: float = 0.05, seed: int = 0, **kwargs: Any
) -> Latency:
    """``rlagent/Latency-v0``: ``gymnasium.make(env_id, **kwargs)`` under ``Latency``."""
    inner = gymnasium.make(env_id, disable_env_checker=True, **kwargs)
    return Latency(inner, mean_s, p99_s, seed)


# Registered here too, so that ``gymnasium.make("rlagent.envs.latency:rlagent/Latency-v0")``
# works wherever this module can be imported.
if "rlagent/Latency-v0" not in gymnasium.registry:
    gymnasium.register(id="rlagent/Latency-v0", entry_point="rlagent.envs.latency:make")
