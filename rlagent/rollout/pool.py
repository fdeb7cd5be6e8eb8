"""The rollout workers (Ray actors, each one vLLM engine and its envs) behind one facade.

``RolloutPool.run(tasks, group_size) -> episodes`` plays a step's episodes on every worker;
each worker hands every finished group's views to a reward service actor while the others
still play, and returns its episodes scored. Weight sync talks to the engines through the
pool's methods, which return one named Ray call per worker (``rlagent.weight_sync`` waits).
Ray restarts a worker whose process dies; ``run`` then loads the current weights into it
(through the hook the weight sync sets) and plays that worker's share again.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import ray

from rlagent.config import Config
from rlagent.episode_view import EpisodeView
from rlagent.records import Episode, Scores, Task
from rlagent.remote import (
    Deadline,
    as_completed,
    await_restart,
    deadline,
    peak_rss_gb,
    placed,
    wait,
    wait_async,
    wait_named,
)
from rlagent.rollout.engine import engine_env


class RolloutWorker:
    """One engine and a pool of envs; plays episodes, has each finished group scored.

    An async Ray actor: its methods are coroutines on one event loop, so a weight load runs
    beside the episodes in flight (the engine pauses them, takes the weights, resumes them).
    The engine starts on the first call (and again in a process Ray restarted)."""

    def __init__(self, cfg: Config, model_path: str, index: int, search_path: str | None = None):
        self.cfg, self.model_path, self.index = cfg, model_path, index
        self.search_path = search_path  # where the driver imports from (an agent's module)
        self.engine: Any = None
        self.runner: Any = None
        self._starting: asyncio.Lock | None = None

    async def _ready(self) -> None:
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if self.engine is not None:
                return
            from transformers import AutoTokenizer

            import rlagent.envs  # registers the built-in env ids in this process
            from rlagent.rollout.chat import ChatTokens
            from rlagent.rollout.engine import AsyncEngine
            from rlagent.rollout.episodes import EpisodeRunner

            cfg, r = self.cfg, self.cfg.rollout
            rlagent.envs.register_hub(cfg.env.id)  # and a hub's, when the config names one
            engine = AsyncEngine(
                self.model_path,
                seed=cfg.run.seed + self.index,
                # +1: scoring a full-length episode asks for one more token
                max_model_len=r.max_episode_tokens + 1,
                dtype=cfg.model.dtype,
                gpu_memory_utilization=r.gpu_memory_utilization,
                max_num_seqs=r.max_concurrent_episodes,
                tensor_parallel_size=r.tensor_parallel_size,
            )
            await engine.start()
            self.tokenizer = AutoTokenizer.from_pretrained(self.model_path)
            chat = ChatTokens(self.tokenizer)
            if cfg.agent is not None:
                self.runner = await self._agent_runner(engine, chat)
            else:
                self.runner = EpisodeRunner(
                    engine, chat, cfg.env.id, cfg.env.kwargs, r, cfg.env.system_prompt, cfg.env.latency
                )
            self.engine = engine

    async def _agent_runner(self, engine: Any, chat: Any) -> Any:
        """The agent endpoint on this engine, and the runner that calls the agent."""
        from pathlib import Path

        from rlagent.remote import node_address
        from rlagent.rollout.agents import AgentRunner, load_entrypoint
        from rlagent.rollout.endpoint import AgentEndpoint

        agent = self.cfg.agent
        assert agent is not None
        log = None
        if agent.request_log:  # a relative folder is the driver's
            log = str(Path(self.search_path or ".", agent.request_log) / f"worker_{self.index}.jsonl")
        model = Path(self.cfg.model.path).name
        self.endpoint = AgentEndpoint(
            engine, chat, self.tokenizer, self.cfg.rollout, model, node_address(), log
        )
        await self.endpoint.start()
        fn = load_entrypoint(agent.entrypoint, self.search_path)
        return AgentRunner(self.endpoint, fn, agent.timeout_s, self.cfg.rollout.max_concurrent_episodes)

    async def pad_id(self) -> int:
        await self._ready()
        tok = self.tokenizer
        return int(tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)

    async def run(
        self, tasks: list[tuple[int, Task]], group_size: int, rewards: list[Any], started: float | None = None
    ) -> list[Episode]:
        """Play the tasks; each group, the moment its last episode ends, goes to a reward
        actor (round robin, one call per episode's view), and its ``Scores`` are recorded on
        the episodes before they are returned. Turn times count from ``started``."""
        await self._ready()
        sent: list[tuple[Episode, Any]] = []

        def scored(group: list[Episode]) -> None:
            for e in group:
                sent.append((e, rewards[len(sent) % len(rewards)].score.remote(EpisodeView.of(e))))

        await self.runner.run(tasks, group_size, scored, started)
        scores: list[Scores] = await wait_async(
            [ref for _, ref in sent],
            Deadline(self.cfg.rewards.timeout_s * max(len(sent), 1) + 60, "rewards.timeout_s"),
            "the reward service to score this worker's episodes",
        )
        for (e, _), s in zip(sent, scores):
            e.take(s)
        return [e for e, _ in sent]

    async def load_weights(self, named_tensors: list, version: int) -> None:
        """Object-store transport: the weights arrive as this call's argument; episodes in
        flight pause for the load and go on with the new weights."""
        await self._ready()
        await self.engine.load_weights(named_tensors, version)

    async def weight_group_members(self) -> int:
        """Collective transport: members this worker brings to the weight-update group."""
        await self._ready()
        return int(self.engine.num_workers)

    async def join_weight_group(self, address: dict, first_rank: int) -> None:
        await self._ready()
        await self.engine.join_weight_group(address, first_rank)

    async def receive_weights(self, metas: list[list], version: int) -> None:
        """Collective transport: the engine's workers receive what learner rank 0 broadcasts."""
        await self._ready()
        await self.engine.receive_weights(metas, version)

    async def score(self, sequences: list[list[int]], start: int) -> list[list[float]]:
        await self._ready()
        return list(await self.engine.score(sequences, start))

    async def pid(self) -> int:
        return os.getpid()

    async def peak_memory_gb(self) -> float:
        """Peak resident memory of this worker and its engine's processes (summed)."""
        return peak_rss_gb(children=True)

    async def shutdown(self) -> None:
        if self.engine is not None:
            self.runner.close()
            if getattr(self, "endpoint", None) is not None:
                await self.endpoint.stop()
            self.engine.shutdown()
            self.engine = None


class RolloutWorkerDied(RuntimeError):
    """A rollout worker died more often in one step than ``rollout.max_retries`` allows."""


Reload = Callable[["RolloutPool", int, float], None]


class RolloutPool:
    """The rollout workers, as one object: ``run(tasks, group_size) -> episodes``."""

    def __init__(
        self, cfg: Config, model_path: str, rewards: Any, placement: Any = None, wait_ready: bool = True
    ):
        """Starts the workers and (``wait_ready``) waits for their engines; without it, call
        ``ready()`` before using the pool, so that the engines start while the caller starts
        other actors (the trainer's learner)."""
        r = cfg.rollout
        self.cfg, self.rewards = cfg, rewards
        self._workers = [
            ray.remote(RolloutWorker)
            .options(
                num_cpus=r.num_cpus,
                num_gpus=r.num_gpus,
                max_restarts=-1,
                # an async actor: runs, weight loads and the sync's check run beside each other
                max_concurrency=64,
                runtime_env={
                    "env_vars": engine_env(r.engine_threads, r.kv_cache_gib, first_core=i * r.engine_threads)
                },
                **placed(placement, "rollout workers", i),
            )
            .remote(cfg, model_path, i, os.getcwd())
            for i in range(r.num_workers)
        ]
        self._starting = [w.pad_id.remote() for w in self._workers]  # each engine starts now
        self.pad_id = -1
        self._pids: list[int] = []
        self._reload: Reload | None = None  # None: the engines run the weights they started with
        self.restarts = 0  # rollout worker processes Ray restarted so far
        self._reviving = [threading.Lock() for _ in self._workers]
        self.closed = False  # shutdown() was called: a share that dies now is not played again
        if wait_ready:
            self.ready()

    def ready(self) -> RolloutPool:
        """Wait until the reward service has loaded its plugins and every worker's engine has
        started (``remote.deadline("engine_start")``)."""
        if not self._pids:
            # the reward service's actors (started just before the pool) have loaded their plugins
            wait(
                [h.__ray_ready__.remote() for h in self.rewards],
                deadline("rewards_start"),
                "the reward service to load its plugins",
            )
            self.pad_id = wait(self._starting, deadline("engine_start"), "the rollout engines to start")[0]
            pids = [w.pid.remote() for w in self._workers]
            self._pids = wait(pids, deadline("housekeeping"), "worker pids")
        return self

    def __len__(self) -> int:
        return len(self._workers)

    @property
    def workers(self) -> list[Any]:
        """The worker actor handles, for tools and tests that must reach one (to kill it)."""
        return list(self._workers)

    def run(self, tasks: list[Task], group_size: int, on_progress: Any = None) -> list[Episode]:
        """Episodes sorted by group. ``on_progress(finished, total)`` is called as each
        worker's share of the episodes comes back (workers report whole shares only)."""
        n, started = len(self._workers), time.time()
        shares = {i: [(g, t) for g, t in enumerate(tasks) if g % n == i] for i in range(n)}
        calls = {
            self._workers[i].run.remote(s, group_size, self.rewards, started): (i, 0)
            for i, s in shares.items()
            if s
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
                if self.closed:
                    raise RolloutWorkerDied(f"rollout worker {i} stopped: the pool was shut down") from err
                self._restarted(i, attempt + 1, err, end)
                again = self._workers[i].run.remote(shares[i], group_size, self.rewards, started)
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
            self.revive(i, until)
        except ray.exceptions.RayActorError as again:
            raise RolloutWorkerDied(f"rollout worker {i} died and did not come back: {again}") from err

    def revive(self, i: int, until: float) -> None:
        """Wait until Ray has restarted worker ``i`` (which died), then load the current
        weights into it. The rollout that lost it and a weight sync that saw it die may both
        call this; each restart is counted once (by the new process's pid)."""
        with self._reviving[i]:
            await_restart(self._workers[i], until, f"rollout worker {i} to restart")
            pid = wait(
                self._workers[i].pid.remote(), max(until - time.monotonic(), 1.0), f"rollout worker {i}"
            )
            if pid != self._pids[i]:
                self._pids[i] = pid
                self.restarts += 1
            if self._reload is not None:
                self._reload(self, i, max(until - time.monotonic(), 1.0))

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
        """The largest worker's peak (worker and engine process); a worker that is dead just
        now (it is being restarted) is left out."""
        calls = self._each(lambda w: w.peak_memory_gb.remote())
        got = wait_named(calls, deadline("housekeeping"), "worker memory", died=lambda name, err: True)
        return max(got.values(), default=0.0)

    def shutdown(self) -> None:
        self.closed = True
        wait(
            [w.shutdown.remote() for w in self._workers],
            deadline("housekeeping"),
            "the rollout workers to shut down",
        )
