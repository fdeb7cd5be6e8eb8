"""Who waits for whom: a step's rollouts now (sync), or while the learner trains (one step off).

``rollout.mode: one_step_off`` starts collecting step t+1's episodes in a background thread
as soon as step t's are in, so generation (and the envs' latency) overlaps the learner's
update. The weight sync after the update waits until that generation is done, so the
episodes of step t+1 come from the weights of step t-1: exactly one version behind the
learner, never more.
"""
from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

from rlagent.records import Episode

Collected = tuple[list[Episode], int, list[list[Episode]]]  # episodes, rounds, groups


class Rollouts:
    """``next()`` gives a step's collected rollouts; ``prefetch()`` (one step off) starts
    the following step's in the background; ``close()`` abandons one still running."""

    def __init__(self, mode: str, collect: Callable[[], Collected]):
        self.collect = collect
        ahead = mode == "one_step_off"
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="rollouts") if ahead else None
        self.pending: Future[Collected] | None = None

    def next(self) -> Collected:
        if self.pending is None:
            return self.collect()
        pending, self.pending = self.pending, None
        return pending.result()  # collect's own waits have timeouts (rollout.timeout_s)

    def prefetch(self) -> None:
        if self.executor is not None:
            self.pending = self.executor.submit(self.collect)

    def settle(self) -> None:
        """Let the engines finish the prefetched episodes (before they take new weights);
        its errors come out of ``next()``."""
        if self.pending is not None:
            wait([self.pending])

    def close(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=False, cancel_futures=True)


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
