"""The distributed parts as Ray actors, behind small facades the driver loop calls.

``RolloutPool`` (vLLM engines + envs), ``RewardService`` actor, ``LearnerGroup``
(DeepSpeed ranks) and ``WeightSync`` (learner -> engines, with a numerical check).
Every wait has a timeout and its error says what it waited for.
"""
from __future__ import annotations

import time
from typing import Any

import ray

from rlagent.config import Config
from rlagent.engine import engine_env
from rlagent.learner import Learner
from rlagent.records import Episode, Task, TrainBatch
from rlagent.reward_service import CONCURRENCY, RewardService
from rlagent.weight_transport import TransportName, make_transport


class WaitTimeout(TimeoutError):
    """A distributed call did not answer in time."""


def wait(refs: Any, timeout_s: float, what: str) -> Any:
    """``ray.get`` with a deadline. Of several refs, the first failure is raised as soon as
    it is known: one dead learner rank must not leave the driver waiting on the others."""
    todo = refs if isinstance(refs, list) else [refs]
    deadline = time.monotonic() + timeout_s
    pending, done = list(dict.fromkeys(todo)), {}
    try:
        while pending:
            ready, pending = ray.wait(pending, num_returns=1,
                                      timeout=max(deadline - time.monotonic(), 0.0))
            if not ready:
                raise WaitTimeout(f"timed out after {timeout_s:.0f} s waiting for {what}")
            if pending:  # and every other one that is ready by now, in one call
                more, pending = ray.wait(pending, num_returns=len(pending), timeout=0)
                ready += more
            for ref in ready:
                done[ref] = ray.get(ref)
    except ray.exceptions.RayError as err:
        if hasattr(err, "add_note"):  # Python >= 3.11
            err.add_note(f"(while waiting for {what})")
        raise
    values = [done[r] for r in todo]
    return values if isinstance(refs, list) else values[0]


class RolloutWorker:
    """One engine and a pool of envs; plays episodes, hands each finished one to the rewards."""

    def __init__(self, cfg: Config, model_path: str, index: int):
        from transformers import AutoTokenizer

        import rlagent.envs  # noqa: F401  (registers the built-in env ids in this process)
        from rlagent.chat import ChatTokens
        from rlagent.engine import VLLMEngine
        from rlagent.rollout import EpisodeRunner

        self.cfg = cfg
        self.engine = VLLMEngine(model_path, seed=cfg.run.seed + index,
                                 # +1: scoring a full-length episode asks for one more token
                                 max_model_len=cfg.rollout.max_episode_tokens + 1,
                                 dtype=cfg.model.dtype,
                                 gpu_memory_utilization=cfg.rollout.gpu_memory_utilization,
                                 tensor_parallel_size=cfg.rollout.tensor_parallel_size)
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.runner = EpisodeRunner(self.engine, ChatTokens(self.tokenizer), cfg.env.id,
                                    cfg.env.kwargs, cfg.rollout, cfg.env.system_prompt)
        self.version = 0

    def pad_id(self) -> int:
        tok = self.tokenizer
        return tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id

    def run(self, tasks: list[tuple[int, Task]], group_size: int, rewards: list[Any]) -> list[Episode]:
        """Play the tasks; each finished episode goes at once to a reward actor (round robin)."""
        scored: list[Any] = []

        def done(e: Episode) -> None:
            scored.append(rewards[len(scored) % len(rewards)].score.remote(e))

        # read at each turn: with in-flight updates new weights can land mid-episode
        self.runner.run(tasks, group_size, lambda: self.version, on_done=done)
        return wait(scored, self.cfg.rewards.timeout_s * max(len(scored), 1) + 60,
                    "the reward service to score this worker's episodes")

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
        from rlagent.learner import _peak_rss_gb

        return _peak_rss_gb()

    def shutdown(self) -> None:
        self.runner.close()
        self.engine.shutdown()


class RolloutWorkerDied(RuntimeError):
    """A rollout worker died more often in one step than ``rollout.max_retries`` allows."""


class RolloutPool:
    """The rollout workers, as one object: ``run(tasks, group_size) -> episodes``.

    Ray restarts a worker whose process dies (``max_restarts=-1``); ``run`` then gives the
    new engine the current weights and plays that worker's share of the step again, at most
    ``rollout.max_retries`` times per step.
    """

    def __init__(self, cfg: Config, model_path: str, rewards: Any, placement: Any = None):
        r = cfg.rollout
        self.cfg, self.rewards = cfg, rewards
        self.workers = [
            ray.remote(RolloutWorker).options(
                num_cpus=r.num_cpus, num_gpus=r.num_gpus, max_restarts=-1,
                # in-flight updates: a weight sync runs beside ``run``, between two turns
                max_concurrency=2 if r.inflight_updates else 1,
                runtime_env={"env_vars": engine_env(r.engine_threads, r.kv_cache_gib,
                                                    first_core=i * r.engine_threads)},
                **_placed(placement, "rollout workers", i),
            ).remote(cfg, model_path, i)
            for i in range(r.num_workers)]
        self.pad_id = wait(self.workers[0].pad_id.remote(), 600, "the rollout engines to start")
        # Loads the engines' current weights into a restarted worker (``reload(worker,
        # timeout_s)``), set by the weight transport at each sync. None: the engines run the
        # weights they started with.
        self.reload: Any = None

    def run(self, tasks: list[Task], group_size: int, on_progress: Any = None) -> list[Episode]:
        """Episodes sorted by group. ``on_progress(finished, total)`` is called as each
        worker's share of the episodes comes back (workers report whole shares only)."""
        n = len(self.workers)
        shares = {i: [(g, t) for g, t in enumerate(tasks) if g % n == i] for i in range(n)}
        pending = {self.workers[i].run.remote(s, group_size, self.rewards): (i, 0)
                   for i, s in shares.items() if s}
        deadline = time.monotonic() + self.cfg.rollout.timeout_s
        episodes: list[Episode] = []
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1,
                                timeout=max(deadline - time.monotonic(), 0.0))
            if not ready:
                raise WaitTimeout(f"timed out after {self.cfg.rollout.timeout_s:.0f} s waiting "
                                  f"for the rollout workers (rollout.timeout_s)")
            i, attempt = pending.pop(ready[0])
            try:
                episodes += ray.get(ready[0])
            except ray.exceptions.RayActorError as err:
                self._restarted(i, attempt + 1, err, deadline)
                pending[self.workers[i].run.remote(shares[i], group_size, self.rewards)] = \
                    (i, attempt + 1)
                continue
            if on_progress is not None:
                on_progress(len(episodes), len(tasks) * group_size)
        return sorted(episodes, key=lambda e: e.group)

    def _restarted(self, i: int, attempt: int, err: Exception, deadline: float) -> None:
        """Worker ``i`` died during its share: wait until Ray has restarted it and load the
        current weights into its new engine (or fail when it died too often)."""
        limit = self.cfg.rollout.max_retries
        cause = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if attempt > limit:
            raise RolloutWorkerDied(
                f"rollout worker {i} died {attempt} times in one step (rollout.max_retries="
                f"{limit}); last error: {cause}") from err
        print(f"[rlagent] rollout worker {i} died ({cause}); playing its share again after "
              f"Ray restarts it (retry {attempt} of {limit})", flush=True)
        worker = self.workers[i]
        until = min(deadline, time.monotonic() + 600.0)
        try:
            _await_restart(worker, until, f"rollout worker {i} to restart")
            if self.reload is not None:
                self.reload(worker, max(until - time.monotonic(), 1.0))
        except ray.exceptions.RayActorError as again:
            raise RolloutWorkerDied(f"rollout worker {i} died and did not come back: "
                                    f"{again}") from err

    def peak_memory_gb(self) -> float:
        return max(wait([w.peak_memory_gb.remote() for w in self.workers], 60, "worker memory"))

    def shutdown(self) -> None:
        wait([w.shutdown.remote() for w in self.workers], 60, "the rollout workers to shut down")


def _await_restart(actor: Any, until: float, what: str) -> None:
    """Wait until a restarting actor answers (calls fail at once while Ray restarts it)."""
    while True:
        try:
            wait(actor.__ray_ready__.remote(), max(until - time.monotonic(), 1.0), what)
            return
        except ray.exceptions.ActorUnavailableError as err:
            if time.monotonic() > until:
                raise WaitTimeout(f"timed out waiting for {what}") from err
            time.sleep(0.5)


def _placed(placement: Any, role: str, index: int) -> dict[str, Any]:
    """Scheduling options from ``rlagent.placement`` (none: Ray places the actor itself)."""
    return placement.options(role, index) if placement is not None else {}


def start_reward_service(cfg: Config, placement: Any = None) -> list[Any]:
    """``rewards.num_actors`` reward service actors, each with every configured plugin."""
    r = cfg.rewards
    actor = ray.remote(RewardService)
    handles = [actor.options(num_cpus=r.num_cpus, max_concurrency=CONCURRENCY,
                             **_placed(placement, "reward service", i)
                             ).remote(r.components, r.timeout_s, r.on_error)
               for i in range(r.num_actors)]
    wait([h.__ray_ready__.remote() for h in handles], 120, "the reward service to load its plugins")
    return handles


class LearnerGroup:
    """The learner ranks, as one object: ``train_step(batch) -> metrics``."""

    def __init__(self, cfg: Config, model_path: str, placement: Any = None):
        lc = cfg.learner
        env_vars = {"OMP_NUM_THREADS": str(lc.threads), "TOKENIZERS_PARALLELISM": "false"}
        if lc.num_gpus == 0:
            env_vars["DS_ACCELERATOR"] = "cpu"
        actor = ray.remote(Learner)
        self.cfg = cfg
        self.ranks = [actor.options(num_cpus=lc.num_cpus, num_gpus=lc.num_gpus,
                                    runtime_env={"env_vars": env_vars},
                                    **_placed(placement, "learner ranks", r)
                                    ).remote(cfg, model_path, r)
                      for r in range(lc.num_ranks)]
        addr, port = wait(self.ranks[0].rendezvous_address.remote(), 600,
                          "learner rank 0 to start")
        wait([r.setup.remote(addr, port) for r in self.ranks], 600,
             f"the learner ranks to join at {addr}:{port} and build their engines")

    def train_step(self, batch: TrainBatch) -> dict[str, float]:
        ref = ray.put(batch)
        metrics = wait([r.train_step.remote(ref) for r in self.ranks], 3600, "the learner update")
        return metrics[0]

    def named_weights_refs(self) -> list[ray.ObjectRef]:
        """One ref per rank (all take part in gathering); the first holds the weights."""
        return [r.named_weights.remote() for r in self.ranks]

    def score(self, sequences: list[list[int]], start: int) -> list[list[float]]:
        return wait([r.score.remote(sequences, start) for r in self.ranks], 600,
                    "learner logprobs")[0]

    def save(self, path: str) -> str:
        return wait([r.save.remote(path) for r in self.ranks], 1800, "the checkpoint")[0]

    def save_state(self, path: str) -> None:
        wait([r.save_state.remote(path) for r in self.ranks], 1800, "the learner state checkpoint")

    def training_state(self) -> dict:
        """Rank 0's ``Learner.training_state`` (weights, optimizer, LR schedule, updates)."""
        return wait(self.ranks[0].training_state.remote(), 600, "the learner's training state")

    def load_state(self, path: str) -> int:
        return wait([r.load_state.remote(path) for r in self.ranks], 1800,
                    f"the learner ranks to load their state from {path}")[0]


class WeightSyncError(RuntimeError):
    """The engines do not run the weights the learner has."""


class WeightSync:
    """Learner -> engines through a transport (``rlagent.weight_transport``: Ray's object
    store, or a collective broadcast), then a numerical check.

    The check scores a real sequence with both sides: the engines must reproduce the
    learner's logprobs (a greedy-output comparison would miss a stale layer).
    """

    def __init__(self, learner: LearnerGroup, pool: RolloutPool, timeout_s: float, tol: float,
                 transport: TransportName = "object_store"):
        self.learner, self.pool, self.timeout_s, self.tol = learner, pool, timeout_s, tol
        self.version = 0
        self.transport = make_transport(transport, learner, pool, timeout_s)
        self.transport.setup()

    def __call__(self, probe: list[int], start: int) -> dict[str, float]:
        t0 = time.perf_counter()
        self.version += 1
        self.transport.push(self.version)
        sync_s = time.perf_counter() - t0
        gap = self.check(probe, start)
        return {"timing/sync_s": sync_s, "sync/logprob_gap_max": gap,
                "policy_version": float(self.version)}

    def check(self, probe: list[int], start: int) -> float:
        want = self.learner.score([probe], start)[0]
        worst = 0.0
        for w in self.pool.workers:
            got = wait(w.score.remote([probe], start), self.timeout_s, "the engine's logprobs")[0]
            worst = max([worst] + [abs(a - b) for a, b in zip(want, got)])
        if worst > self.tol:
            raise WeightSyncError(f"after sync to version {self.version} the engine's logprobs "
                                  f"differ from the learner's by up to {worst:.2e} "
                                  f"(tolerance learner.sync_check_tol={self.tol})")
        return worst
