"""The rollout workers (Ray actors, each one vLLM engine and its envs) behind one facade.

``RolloutPool.run(tasks, group_size) -> episodes`` plays a step's episodes on every worker;
each worker hands every finished episode's view to a reward service actor while the others
still play, and returns its episodes scored. Weight sync talks to the engines through the
pool's methods, which return one named Ray call per worker (``rlagent.weight_sync`` waits).
Ray restarts a worker whose process dies; ``run`` then loads the current weights into it
(through the hook the weight sync sets) and plays that worker's share again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import ray

from rlagent.config import Config
from rlagent.episode_view import EpisodeView
from rlagent.records import Episode, Scores, Task
from rlagent.remote import Deadline, as_completed, await_restart, deadline, peak_rss_gb, placed, wait
from rlagent.rollout.engine import engine_env


class RolloutWorker:
    """One engine and a pool of envs; plays episodes, has each finished one scored."""

    def __init__(self, cfg: Config, model_path: str, index: int):
        from transformers import AutoTokenizer

        import rlagent.envs  # noqa: F401  (registers the built-in env ids in this process)
        from rlagent.rollout.chat import ChatTokens
        from rlagent.rollout.engine import VLLMEngine
        from rlagent.rollout.episodes import EpisodeRunner

        self.cfg = cfg
        self.engine = VLLMEngine(
            model_path,
            seed=cfg.run.seed + index,
            # +1: scoring a full-length episode asks for one more token
            max_model_len=cfg.rollout.max_episode_tokens + 1,
            dtype=cfg.model.dtype,
            gpu_memory_utilization=cfg.rollout.gpu_memory_utilization,
            tensor_parallel_size=cfg.rollout.tensor_parallel_size,
        )
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.runner = EpisodeRunner(
            self.engine,
            ChatTokens(self.tokenizer),
            cfg.env.id,
            cfg.env.kwargs,
            cfg.rollout,
            cfg.env.system_prompt,
        )
        self.version = 0

    def pad_id(self) -> int:
        tok = self.tokenizer
        return tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id

    def run(self, tasks: list[tuple[int, Task]], group_size: int, rewards: list[Any]) -> list[Episode]:
        """Play the tasks; each finished episode's view goes at once to a reward actor (round
        robin), and its ``Scores`` are recorded on it before the episodes are returned."""
        sent: list[tuple[Episode, Any]] = []

        def done(e: Episode) -> None:
            sent.append((e, rewards[len(sent) % len(rewards)].score.remote(EpisodeView.of(e))))

        # read at each turn: with in-flight updates new weights can land mid-episode
        self.runner.run(tasks, group_size, lambda: self.version, on_done=done)
        scores: list[Scores] = wait(
            [ref for _, ref in sent],
            self.cfg.rewards.timeout_s * max(len(sent), 1) + 60,
            "the reward service to score this worker's episodes",
        )
        for (e, _), s in zip(sent, scores):
            e.take(s)
        return [e for e, _ in sent]

    def load_weights(self, named_tensors: list, version: int) -> None:
        """Object-store transport: the weights arrive as this call's argument."""
        with self.runner.weights_lock:
            self.engine.load_weights(named_tensors)
            self.version = version

    def weight_group_members(self) -> int:
        """Collective transport: members this worker brings to the weight-update group."""
        return self.engine.num_workers

    def join_weight_group(self, address: dict, first_rank: int) -> None:
        self.engine.join_weight_group(address, first_rank)

    def receive_weights(self, metas: list[list], version: int) -> None:
        """Collective transport: the engine's workers receive what learner rank 0 broadcasts."""
        with self.runner.weights_lock:
            self.engine.receive_weights(metas)
            self.version = version

    def score(self, sequences: list[list[int]], start: int) -> list[list[float]]:
        with self.runner.weights_lock:
            return self.engine.score(sequences, start)

    def peak_memory_gb(self) -> float:
        return peak_rss_gb()

    def shutdown(self) -> None:
        self.runner.close()
        self.engine.shutdown()


class RolloutWorkerDied(RuntimeError):
    """A rollout worker died more often in one step than ``rollout.max_retries`` allows."""


Reload = Callable[["RolloutPool", int, float], None]


class RolloutPool:
    """The rollout workers, as one object: ``run(tasks, group_size) -> episodes``."""

    def __init__(self, cfg: Config, model_path: str, rewards: Any, placement: Any = None):
        r = cfg.rollout
        self.cfg, self.rewards = cfg, rewards
        self._workers = [
            ray.remote(RolloutWorker)
            .options(
                num_cpus=r.num_cpus,
                num_gpus=r.num_gpus,
                max_restarts=-1,
                # in-flight updates: a weight sync runs beside ``run``, between two turns
                max_concurrency=2 if r.inflight_updates else 1,
                runtime_env={
                    "env_vars": engine_env(r.engine_threads, r.kv_cache_gib, first_core=i * r.engine_threads)
                },
                **placed(placement, "rollout workers", i),
            )
            .remote(cfg, model_path, i)
            for i in range(r.num_workers)
        ]
        self.pad_id = wait(
            self._workers[0].pad_id.remote(), deadline("engine_start"), "the rollout engines to start"
        )
        self._reload: Reload | None = None  # None: the engines run the weights they started with

    def __len__(self) -> int:
        return len(self._workers)

    @property
    def workers(self) -> list[Any]:
        """The worker actor handles, for tools and tests that must reach one (to kill it)."""
        return list(self._workers)

    def run(self, tasks: list[Task], group_size: int, on_progress: Any = None) -> list[Episode]:
        """Episodes sorted by group. ``on_progress(finished, total)`` is called as each
        worker's share of the episodes comes back (workers report whole shares only)."""
        n = len(self._workers)
        shares = {i: [(g, t) for g, t in enumerate(tasks) if g % n == i] for i in range(n)}
        calls = {
            self._workers[i].run.remote(s, group_size, self.rewards): (i, 0) for i, s in shares.items() if s
        }
        timeout = Deadline(self.cfg.rollout.timeout_s, "rollout.timeout_s")
        end = time.monotonic() + timeout.seconds
        episodes: list[Episode] = []
        pending = list(calls)
        for ref in as_completed(pending, end, "the rollout workers", timeout):
            i, attempt = calls.pop(ref)
            try:
                episodes += ray.get(ref)
            except ray.exceptions.RayActorError as err:
                self._restarted(i, attempt + 1, err, end)
                again = self._workers[i].run.remote(shares[i], group_size, self.rewards)
                calls[again] = (i, attempt + 1)
                pending.append(again)
                continue
            if on_progress is not None:
                on_progress(len(episodes), len(tasks) * group_size)
        return sorted(episodes, key=lambda e: e.group)

    def _restarted(self, i: int, attempt: int, err: Exception, end: float) -> None:
        """Worker ``i`` died during its share: wait until Ray has restarted it and load the
        current weights into its new engine (or fail when it died too often)."""
        limit = self.cfg.rollout.max_retries
        cause = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if attempt > limit:
            raise RolloutWorkerDied(
                f"rollout worker {i} died {attempt} times in one step (rollout.max_retries="
                f"{limit}); last error: {cause}"
            ) from err
        print(
            f"[rlagent] rollout worker {i} died ({cause}); playing its share again after "
            f"Ray restarts it (retry {attempt} of {limit})",
            flush=True,
        )
        until = min(end, time.monotonic() + deadline("worker_restart").seconds)
        try:
            await_restart(self._workers[i], until, f"rollout worker {i} to restart")
            if self._reload is not None:
                self._reload(self, i, max(until - time.monotonic(), 1.0))
        except ray.exceptions.RayActorError as again:
            raise RolloutWorkerDied(f"rollout worker {i} died and did not come back: {again}") from err

    # ---------------------------------------------------------------- for the weight sync
    def set_reload(self, reload: Reload) -> None:
        """How a restarted worker gets the current weights: ``reload(pool, i, timeout_s)``
        (set by the weight sync after each push)."""
        self._reload = reload

    def _each(self, call: Callable[[Any], Any]) -> dict[str, Any]:
        return {f"rollout worker {i}": call(w) for i, w in enumerate(self._workers)}

    def load_weights(self, weights: Any, version: int, only: int | None = None) -> dict[str, Any]:
        """Every worker (or worker ``only``) loads ``weights`` (a ref to named tensors)."""
        if only is not None:
            return {f"rollout worker {only}": self._workers[only].load_weights.remote(weights, version)}
        return self._each(lambda w: w.load_weights.remote(weights, version))

    def weight_group_members(self) -> dict[str, Any]:
        return self._each(lambda w: w.weight_group_members.remote())

    def join_weight_group(self, address: dict, first_ranks: list[int]) -> dict[str, Any]:
        return {
            f"rollout worker {i}": w.join_weight_group.remote(address, first)
            for i, (w, first) in enumerate(zip(self._workers, first_ranks))
        }

    def receive_weights(self, metas: list[list], version: int) -> dict[str, Any]:
        return self._each(lambda w: w.receive_weights.remote(metas, version))

    def score(self, sequences: list[list[int]], start: int) -> dict[str, Any]:
        """Each engine's logprobs of ``sequences`` from ``start`` on (the sync's check)."""
        return self._each(lambda w: w.score.remote(sequences, start))

    # ---------------------------------------------------------------- housekeeping
    def peak_memory_gb(self) -> float:
        return max(
            wait(
                [w.peak_memory_gb.remote() for w in self._workers], deadline("housekeeping"), "worker memory"
            )
        )

    def shutdown(self) -> None:
        wait(
            [w.shutdown.remote() for w in self._workers],
            deadline("housekeeping"),
            "the rollout workers to shut down",
        )
