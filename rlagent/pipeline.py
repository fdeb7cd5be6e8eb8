"""Who waits for whom: a step's rollouts now (sync), while the learner trains (one step off),
or continuously into a bounded buffer (async).

``rollout.mode: one_step_off`` starts collecting step t+1's episodes in a background thread
as soon as step t's are in, so generation (and the envs' latency) overlaps the learner's
update. The weight sync after the update waits until that generation is done, so the
episodes of step t+1 come from the weights of step t-1: exactly one version behind the
learner, never more.

``rollout.mode: async`` keeps a producer thread collecting batches into a buffer of
``rollout.async_buffer`` finished ones; it stops only while the buffer is full. Each weight
sync reaches an engine between two of its batches, so a batch is at most
``async_buffer + 1`` versions behind the learner that trains on it. With
``rollout.inflight_updates`` a sync reaches the engine between two turns instead: the
learner never waits for a batch to finish, and an episode's later turns can come from newer
weights than its first (each turn records its version; staleness counts the oldest).
"""
from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, wait
from typing import Any

from rlagent.records import Episode

Collected = tuple[list[Episode], int, list[list[Episode]]]  # episodes, rounds, groups


class Rollouts:
    """``next()`` gives a step's collected rollouts; ``prefetch()`` (one step off) starts
    the following step's in a background thread; ``settle()`` waits for it. In async mode a
    producer thread fills a bounded buffer and ``next()`` takes the oldest batch. ``elapsed``
    is the wall time the collection behind the last ``next()`` took (overlapped or not)."""

    def __init__(self, mode: str, collect: Callable[[], Collected], buffer: int = 1):
        self.collect, self.mode = collect, mode
        self.pending: Future[tuple[Collected, float]] | None = None
        self.elapsed = 0.0
        self.buffer: queue.Queue[Future[tuple[Collected, float]]] = queue.Queue(maxsize=buffer)
        self.producer: threading.Thread | None = None

    def _timed(self) -> tuple[Collected, float]:
        t0 = time.perf_counter()
        return self.collect(), time.perf_counter() - t0

    def next(self) -> Collected:
        if self.mode == "async":
            if self.producer is None:
                self.producer = _daemon(self._produce)
            out, self.elapsed = self.buffer.get().result()
            return out
        if self.pending is None:
            out, self.elapsed = self._timed()
            return out
        pending, self.pending = self.pending, None
        out, self.elapsed = pending.result()  # collect's own waits have timeouts (rollout.timeout_s)
        return out

    def _produce(self) -> None:
        while True:
            batch = _run(self._timed)
            self.buffer.put(batch)  # waits while the buffer is full
            if batch.exception() is not None:
                return

    def prefetch(self) -> None:
        if self.mode == "one_step_off":
            self.pending = Future()
            _daemon(lambda: _run(self._timed, self.pending))

    def settle(self) -> float:
        """Let the engines finish the prefetched episodes (before they take new weights);
        returns the seconds waited. Its errors come out of ``next()``."""
        t0 = time.perf_counter()
        if self.pending is not None:
            wait([self.pending])
        return time.perf_counter() - t0


def _run(fn: Callable[[], Any], future: Future | None = None) -> Future:
    """``fn()``'s result or exception, in a future."""
    future = future if future is not None else Future()
    future.set_running_or_notify_cancel()
    try:
        future.set_result(fn())
    except BaseException as err:  # noqa: BLE001 - handed to whoever waits on the future
        future.set_exception(err)
    return future


def _daemon(target: Callable[[], Any]) -> threading.Thread:
    """A daemon thread: a run that ends (error, stop) does not wait for it at exit."""
    thread = threading.Thread(target=target, name="rollouts", daemon=True)
    thread.start()
    return thread


class LockedSampler:
    """A sampler shared by the async producer (``sample``) and the loop (``update``,
    ``state_dict``): one call at a time."""

    def __init__(self, sampler: Any):
        self.sampler, self.lock = sampler, threading.Lock()

    def sample(self, n: int) -> Any:
        with self.lock:
            return self.sampler.sample(n)

    def update(self, groups: Any) -> dict[str, float]:
        with self.lock:
            return self.sampler.update(groups)

    def state_dict(self) -> dict[str, Any]:
        with self.lock:
            return self.sampler.state_dict()


def staleness(episodes: list[Episode], learner_version: int,
              max_staleness: int) -> tuple[list[Episode], dict[str, Any]]:
    """Drop every group holding an episode more than ``max_staleness`` versions behind the
    learner (a group's advantages are relative to each other, so groups go whole); return
    the kept episodes and the staleness metrics."""
    lag = {id(e): learner_version - e.policy_version for e in episodes}
    stale = {e.group for e in episodes if lag[id(e)] > max_staleness}
    kept = [e for e in episodes if e.group not in stale]
    values = [lag[id(e)] for e in kept] or [0]
    mixed = sum(len({t.policy_version for t in e.turns}) > 1 for e in kept)
    return kept, {"staleness/mean": sum(values) / len(values), "staleness/max": float(max(values)),
                  "staleness/dropped_groups": float(len(stale)),
                  "staleness/mixed_version_episodes": float(mixed),
                  "train/policy_version": float(learner_version)}
