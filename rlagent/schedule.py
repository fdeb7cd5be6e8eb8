"""A step's episodes: what to roll out (``collect``: sample, roll out, score, refill), and
who waits for whom (``Rollouts``): now (sync), while the learner trains (one step off), or
continuously into a bounded buffer (async). ``rollout.mode`` is decided here, nowhere else.

``rollout.mode: one_step_off`` starts collecting step t+1's episodes in a background thread
as soon as step t's are in, so generation (and the envs' latency) overlaps the learner's
update. The weight sync after the update waits until that generation is done, so the
episodes of step t+1 come from the weights of step t-1: exactly one version behind the
learner, never more.

``rollout.mode: async`` keeps a producer thread collecting batches into a buffer of
``rollout.async_buffer`` finished ones; it stops only while the buffer is full. A weight sync
never waits for a batch: it pauses the engines mid-generation, loads, and resumes them
(partial rollouts), so an episode's later tokens, even within one turn, can come from newer
weights than its first; each token records its version, and staleness counts the oldest.
A batch is at most ``async_buffer + 1`` versions behind the learner that trains on it.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, wait
from typing import Any, NamedTuple

from rlagent.batch import groups_with_signal, shaped_rewards
from rlagent.config import Config
from rlagent.records import AGENT_FAILURES, FAILURES, Episode
from rlagent.scoring.combine import group_normalized


class Collected(NamedTuple):
    """One step's rollouts."""

    episodes: list[Episode]  # the batch, groups renumbered 0..n-1
    rounds: int  # sampling rounds it took (dynamic sampling: >= 1)
    groups: list[list[Episode]]  # every group rolled out, dropped ones too (the curriculum's)


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
        self.stopped = threading.Event()  # set by close(): the producer starts no new batch
        self.sampler: Any = None  # set by for_run: the sampler the loop updates

    @classmethod
    def for_run(cls, cfg: Config, sampler: Any, pool: Any, on_progress: Any = None) -> Rollouts:
        """The run's schedule: async draws tasks in a producer thread, so the sampler is
        shared under a lock (``self.sampler``: what the loop updates and checkpoints); the
        progress line counts episodes only in sync mode (otherwise rollouts run while the
        learner trains)."""
        mode = cfg.rollout.mode
        shared = LockedSampler(sampler) if mode == "async" else sampler
        shown = on_progress if mode == "sync" else None
        rollouts = cls(mode, lambda: collect(cfg, shared, pool, shown), cfg.rollout.async_buffer)
        rollouts.sampler = shared
        return rollouts

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
        while not self.stopped.is_set():
            batch = _run(self._timed)
            while not self.stopped.is_set():  # waits while the buffer is full
                try:
                    self.buffer.put(batch, timeout=0.5)
                    break
                except queue.Full:
                    continue
            if batch.exception() is not None:
                return

    def close(self) -> None:
        """The run is over: the async producer starts no new batch (the one it is collecting
        ends with the pool's shutdown)."""
        self.stopped.set()

    def prefetch(self, last: bool = False) -> None:
        """One step off: start the next step's collection now (not after the last step)."""
        if self.mode == "one_step_off" and not last:
            self.pending = Future()
            _daemon(lambda: _run(self._timed, self.pending))

    def settle(self) -> float:
        """Let the engines finish the prefetched episodes (before they take new weights);
        returns the seconds waited. Its errors come out of ``next()``."""
        t0 = time.perf_counter()
        if self.pending is not None:
            wait([self.pending])
        return time.perf_counter() - t0


def _run(fn: Callable[[], Any], future: Future[Any] | None = None) -> Future[Any]:
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
            return dict(self.sampler.update(groups))

    def state_dict(self) -> dict[str, Any]:
        with self.lock:
            return dict(self.sampler.state_dict())


def staleness(
    episodes: list[Episode], learner_version: int, max_staleness: int
) -> tuple[list[Episode], dict[str, Any]]:
    """Drop every group holding an episode more than ``max_staleness`` versions behind the
    learner (a group's advantages are relative to each other, so groups go whole); return
    the kept episodes and the staleness metrics."""
    lag = {id(e): learner_version - e.policy_version for e in episodes}
    stale = {e.group for e in episodes if lag[id(e)] > max_staleness}
    kept = [e for e in episodes if e.group not in stale]
    values = [lag[id(e)] for e in kept] or [0]
    mixed = sum(len(e.versions_used()) > 1 for e in kept)
    return kept, {
        "staleness/mean": sum(values) / len(values),
        "staleness/max": float(max(values)),
        "staleness/dropped_groups": float(len(stale)),
        "staleness/mixed_version_episodes": float(mixed),
        "train/policy_version": float(learner_version),
    }


# ---------------------------------------------------------------- one step's episodes
def collect(cfg: Config, sampler: Any, pool: Any, on_progress: Any = None) -> Collected:
    """Sample tasks, roll them out and score them (``RolloutPool.run``), group-normalise the
    rewards (``rewards.combine``). ``on_progress(finished, total)``: see ``RolloutPool.run``.

    With ``algo.dynamic_sampling``, groups without signal (their shaped rewards all equal)
    are dropped and more tasks rolled out, until ``tasks_per_step`` informative groups are
    found or ``max_sampling_rounds`` rounds ran (then the step trains on what it has, topped
    up with dropped groups so the batch keeps its size)."""
    want = cfg.algo.tasks_per_step
    kept: list[list[Episode]] = []
    dropped: list[list[Episode]] = []
    seen: list[list[Episode]] = []
    rounds = 0
    for rounds in range(1, cfg.algo.max_sampling_rounds + 1):
        episodes = pool.run(sampler.sample(want - len(kept)), cfg.algo.group_size, on_progress)
        check_episodes(episodes)
        if cfg.rewards.combine == "group_normalized":
            group_normalized(episodes, cfg.rewards.components, cfg.rewards.on_error)
        groups = regroup(episodes, offset=len(kept))
        seen += groups
        if not cfg.algo.dynamic_sampling:
            return Collected(episodes, rounds, seen)
        useful = groups_with_signal(episodes, shaped_rewards(episodes, cfg), cfg.algo.turn_level_coef > 0)
        kept += [g for g in groups if g[0].group in useful]
        dropped += [g for g in groups if g[0].group not in useful]
        if len(kept) >= want:
            break
    chosen = (kept + dropped)[:want]
    for i, g in enumerate(chosen):
        regroup(g, offset=i, single=True)
    return Collected([e for g in chosen for e in g], rounds, seen)


def regroup(episodes: list[Episode], offset: int, single: bool = False) -> list[list[Episode]]:
    """Renumber groups from ``offset`` (group ids must be unique within one batch)."""
    if single:
        for e in episodes:
            e.group = offset
        return [episodes]
    by_group: dict[int, list[Episode]] = {}
    for e in episodes:
        by_group.setdefault(e.group, []).append(e)
    for i, g in enumerate(by_group.values()):
        for e in g:
            e.group = offset + i
    return list(by_group.values())


def check_episodes(episodes: list[Episode]) -> None:
    """A step where every episode failed in the env (or the agent) is a broken setup, not bad luck."""
    if episodes and all(e.termination in FAILURES for e in episodes):
        error = next((t.info.get("error") for e in episodes for t in e.turns if t.info.get("error")), "?")
        where = (
            "the agent" if episodes[0].termination in AGENT_FAILURES else f"the env ({episodes[0].task.env})"
        )
        raise RuntimeError(f"every episode of the step failed in {where}: {error}")
