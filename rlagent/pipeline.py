"""Who waits for whom: a step's rollouts now (sync), or while the learner trains (one step off).

``rollout.mode: one_step_off`` starts collecting step t+1's episodes in a background thread
as soon as step t's are in, so generation (and the envs' latency) overlaps the learner's
update. The weight sync after the update waits until that generation is done, so the
episodes of step t+1 come from the weights of step t-1: exactly one version behind the
learner, never more.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, wait
from typing import Any

from rlagent.records import Episode

Collected = tuple[list[Episode], int, list[list[Episode]]]  # episodes, rounds, groups


class Rollouts:
    """``next()`` gives a step's collected rollouts; ``prefetch()`` (one step off) starts
    the following step's in a background thread; ``settle()`` waits for it. ``elapsed`` is
    the wall time the collection behind the last ``next()`` took (overlapped or not)."""

    def __init__(self, mode: str, collect: Callable[[], Collected]):
        self.collect, self.ahead = collect, mode == "one_step_off"
        self.pending: Future[tuple[Collected, float]] | None = None
        self.elapsed = 0.0

    def _timed(self) -> tuple[Collected, float]:
        t0 = time.perf_counter()
        return self.collect(), time.perf_counter() - t0

    def next(self) -> Collected:
        if self.pending is None:
            out, self.elapsed = self._timed()
            return out
        pending, self.pending = self.pending, None
        out, self.elapsed = pending.result()  # collect's own waits have timeouts (rollout.timeout_s)
        return out

    def prefetch(self) -> None:
        if not self.ahead:
            return
        future: Future[tuple[Collected, float]] = Future()

        def run() -> None:
            future.set_running_or_notify_cancel()
            try:
                future.set_result(self._timed())
            except BaseException as err:  # noqa: BLE001 - handed to next()
                future.set_exception(err)

        # A daemon thread: a run that ends (error, stop) does not wait for it at exit.
        threading.Thread(target=run, name="rollouts", daemon=True).start()
        self.pending = future

    def settle(self) -> float:
        """Let the engines finish the prefetched episodes (before they take new weights);
        returns the seconds waited. Its errors come out of ``next()``."""
        t0 = time.perf_counter()
        if self.pending is not None:
            wait([self.pending])
        return time.perf_counter() - t0


def staleness(episodes: list[Episode], learner_version: int,
              max_staleness: int) -> tuple[list[Episode], dict[str, Any]]:
    """Drop every group holding an episode more than ``max_staleness`` versions behind the
    learner (a group's advantages are relative to each other, so groups go whole); return
    the kept episodes and the staleness metrics."""
    lag = {id(e): learner_version - e.policy_version for e in episodes}
    stale = {e.group for e in episodes if lag[id(e)] > max_staleness}
    kept = [e for e in episodes if e.group not in stale]
    values = [lag[id(e)] for e in kept] or [0]
    return kept, {"staleness/mean": sum(values) / len(values), "staleness/max": float(max(values)),
                  "staleness/dropped_groups": float(len(stale)),
                  "train/policy_version": float(learner_version)}
