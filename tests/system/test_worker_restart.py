"""A rollout worker killed in the middle of a step: Ray restarts it, the pool loads the current
weights into the new engine and plays that worker's share again, so the step completes with
every episode, sampled from the current policy. A worker that keeps dying ends the step,
after ``rollout.max_retries`` retries, with an error naming it (real Ray, vLLM, DeepSpeed)."""

from __future__ import annotations

import concurrent.futures as cf
import json
import os
import time

import pytest
import ray
from support.runs import tiny_run_config

from rlagent.batch import build_batch
from rlagent.curriculum import UniformSampler
from rlagent.learner.group import LearnerGroup
from rlagent.rollout.pool import RolloutPool, RolloutWorkerDied
from rlagent.scoring.service import start_reward_service
from rlagent.testing import count
from rlagent.weight_sync import WeightSync

pytestmark = pytest.mark.slow
FAULTY = "rlagent.testing:faults/FaultyEcho-v0"  # importable in Ray's workers too


def config(tiny_model, *extra, **env_kwargs):
    return tiny_run_config(
        tiny_model,
        None,
        f"env.id={FAULTY}",
        f"env.kwargs={json.dumps(env_kwargs)}",
        "algo.tasks_per_step=4",
        *extra,
    )


def pid(worker) -> int:
    return ray.get(worker.__ray_call__.remote(lambda self: os.getpid()), timeout=60)


def logprob_gaps(learner, episodes) -> list[float]:
    """|learner logprob - engine sampling logprob| on every generated token."""
    gaps = []
    for e in episodes:
        scored = learner.score([e.token_ids], 1)[0]
        gaps += [abs(scored[i - 1] - e.logprobs[i]) for i in range(1, len(e.token_ids)) if e.loss_mask[i]]
    return gaps


def test_worker_killed_mid_step_is_restarted_with_current_weights(tiny_model, ray_cluster, tmp_path):
    log = str(tmp_path / "faults.log")
    cfg = config(tiny_model, "rollout.num_workers=2", "rollout.engine_threads=1", delay_s=0.5, log=log)
    pool = RolloutPool(cfg, tiny_model, start_reward_service(cfg.rewards))
    learner = LearnerGroup(cfg, tiny_model)
    sync, sampler = WeightSync(learner, pool, timeout_s=120, tol=1e-3), UniformSampler(cfg)
    try:
        first = pool.run(sampler.sample(4), 2)
        batch, _ = build_batch(first, cfg, pool.pad_id)
        batch.advantages = [1.0 if i % 2 else -1.0 for i in range(len(batch))]
        learner.train_step(batch)
        probe = max(first, key=lambda e: e.num_generated)
        assert sync.push(probe.token_ids, probe.prompt_len)["policy_version"] == 1
        pids = [pid(w) for w in pool.workers]
        made, delays = count(log, "make"), count(log, "delay")
        assert made == 8

        with cf.ThreadPoolExecutor(1) as ex:
            step = ex.submit(pool.run, sampler.sample(4), 2)
            deadline = time.monotonic() + 60
            while count(log, "delay") == delays:  # the step's env steps have begun
                assert time.monotonic() < deadline and not step.done()
                time.sleep(0.05)
            ray.kill(pool.workers[0], no_restart=False)  # SIGKILL; Ray restarts the actor
            episodes = step.result(timeout=300)

        assert sorted(e.group for e in episodes) == [0, 0, 1, 1, 2, 2, 3, 3]
        assert all(e.termination == "terminated" and e.reward is not None for e in episodes)
        new_pids = [pid(w) for w in pool.workers]
        assert new_pids[0] != pids[0] and new_pids[1] == pids[1]
        assert count(log, "make") == made + 4  # worker 0's share was played again, anew
        # The restarted engine runs the current weights, not the ones it started with.
        assert {e.policy_version for e in episodes} == {1}
        gaps = logprob_gaps(learner, episodes)
        assert max(gaps) < 3e-4, max(gaps)
        stale = logprob_gaps(learner, first)  # what version 0 would look like
        assert sum(stale) / len(stale) > 1e-3
    finally:
        pool.shutdown()


def test_worker_killed_during_a_weight_sync_is_revived_with_the_new_weights(tiny_model, ray_cluster):
    """The sync goes on without the dead worker; Ray restarts it, it gets the new weights
    through the pool's reload hook, and the next step's episodes are the new policy's. Its
    engine process does not outlive it."""
    import psutil

    cfg = config(tiny_model, "rollout.num_workers=2", "rollout.engine_threads=1")
    pool = RolloutPool(cfg, tiny_model, start_reward_service(cfg.rewards))
    learner = LearnerGroup(cfg, tiny_model)
    sync, sampler = WeightSync(learner, pool, timeout_s=120, tol=1e-3), UniformSampler(cfg)
    try:
        first = pool.run(sampler.sample(4), 2)
        batch, _ = build_batch(first, cfg, pool.pad_id)
        batch.advantages = [1.0 if i % 2 else -1.0 for i in range(len(batch))]
        learner.train_step(batch)
        dead = psutil.Process(pid(pool.workers[0]))
        engines = [c for c in dead.children(recursive=True) if "EngineCore" in c.name()]
        assert engines, "the worker's engine runs in a process of its own"
        ray.kill(pool.workers[0], no_restart=False)  # SIGKILL, just before the sync
        probe = max(first, key=lambda e: e.num_generated)
        out = sync.push(probe.token_ids, probe.prompt_len)
        assert out["policy_version"] == 1 and pool.restarts == 1
        episodes = pool.run(sampler.sample(4), 2)
        assert {e.policy_version for e in episodes} == {1}
        assert max(logprob_gaps(learner, episodes)) < 3e-4
        psutil.wait_procs(engines, timeout=30)
        assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in engines)
    finally:
        pool.shutdown()


def test_worker_that_keeps_dying_ends_the_step_with_a_clear_error(tiny_model, ray_cluster, tmp_path):
    log = str(tmp_path / "faults.log")
    cfg = config(tiny_model, "rollout.max_retries=1", exit_process=True, log=log)
    pool = RolloutPool(cfg, tiny_model, start_reward_service(cfg.rewards))
    try:
        with pytest.raises(
            RolloutWorkerDied,
            match=r"rollout worker 0 died 2 times in one "
            r"step \(rollout.max_retries=1\)",
        ):
            pool.run(UniformSampler(cfg).sample(1), 2)
        assert count(log, "exit") == 2  # the first run and one retry; no third attempt
    finally:
        for w in pool.workers:
            ray.kill(w, no_restart=True)
