"""The training loop: sample tasks, roll out, score, update, sync weights, log.

``train`` wires the stages (docs/architecture.md) and runs the iteration of DESIGN.md; who
waits for whom (``rollout.mode``) is the schedule's business (``rlagent.schedule``), when to
checkpoint and stop is ``RunControl``'s, phase timing ``StepClock``'s.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import ray

from rlagent import checkpoint, remote, terminal
from rlagent.batch import BatchStats, build_batch
from rlagent.config import Config
from rlagent.control import RunControl, StepClock
from rlagent.curriculum import make_sampler
from rlagent.failures import run_died
from rlagent.learner.group import LearnerGroup
from rlagent.model_source import resolve_model
from rlagent.placement import Placement
from rlagent.plot import finish_run
from rlagent.progress import PREFIX, Progress
from rlagent.records import Episode
from rlagent.rollout.agents import load_entrypoint
from rlagent.rollout.pool import RolloutPool, RolloutWorkerDied
from rlagent.schedule import Rollouts, staleness
from rlagent.scoring.combine import reward_metrics
from rlagent.scoring.service import start_reward_service
from rlagent.tracking import Tracker, episode_metrics, make_run_dir, truncate_metrics
from rlagent.weight_sync import WeightSync


def train(cfg: Config) -> Path:
    """Run steps up to ``cfg.run.steps`` (from the checkpoint with ``run.resume``); returns
    the run directory."""
    sampler = make_sampler(cfg)  # fails fast on a bad dataset or env id
    if cfg.agent is not None:
        load_entrypoint(cfg.agent.entrypoint, os.getcwd())  # and on an agent that cannot load
    model_path = resolve_model(cfg.model.path)
    resume = checkpoint.latest(Path(cfg.run.resume)) if cfg.run.resume else None
    run_dir = Path(cfg.run.resume).resolve() if resume else make_run_dir(cfg)
    print(f"{PREFIX} run directory: {run_dir}", flush=True)
    log = terminal.attach(run_dir)  # third-party output, when the CLI sorts it
    remote.configure(cfg.ray.timeouts)
    # Placement first: every actor's resources are reserved, or a clear error says what is missing.
    with (
        remote.ray_session(cfg.ray.address, cfg.ray.num_cpus),
        RunControl(cfg.run, run_dir) as control,
        Placement(cfg) as placement,
    ):
        rewards = start_reward_service(cfg.rewards, placement)  # plugins load,
        pool = RolloutPool(cfg, model_path, rewards, placement, wait_ready=False)  # engines start...
        learner = LearnerGroup(cfg, model_path, placement)  # ...while the learner starts
        pool.ready()  # and the reward service
        clock = StepClock(Progress(cfg.run.steps))
        rollouts = Rollouts.for_run(cfg, sampler, pool, clock.progress.episodes)
        sync = WeightSync(
            learner, pool, cfg.learner.sync_timeout_s, cfg.learner.sync_check_tol, cfg.learner.sync_transport
        )
        print(f"{PREFIX} weight sync: {sync.transport}", flush=True)
        state = restore(resume, run_dir, learner, sampler, sync, pool.pad_id) if resume else {}
        tracker = Tracker(cfg, run_dir, resume_id=state.get("wandb_id"))
        first = step = state.get("step", 0) + 1
        control.start()
        try:
            for step in range(first, cfg.run.steps + 1):
                clock.start(step)
                with clock.phase("rollout"):
                    got = rollouts.next()  # sample -> roll out -> score
                metrics = rollouts.sampler.update(got.groups)  # the curriculum learns
                sampler_state = rollouts.sampler.state_dict()  # before the next tasks are drawn
                rollouts.prefetch(last=control.is_last(step))  # one step off: the next step's
                episodes, lag = staleness(got.episodes, sync.version, cfg.rollout.max_staleness)
                with clock.phase("train"):
                    batch, stats = build_batch(episodes, cfg, pool.pad_id)
                    metrics |= learner.train_step(batch)
                with clock.phase("sync"):
                    clock.add("rollout", rollouts.settle())  # the prefetched episodes finish first
                    metrics |= sync(episodes)
                metrics |= lag | step_metrics(cfg, episodes, stats, got.rounds, rollouts, pool, clock)
                tracker.log(step, metrics, episodes)
                clock.done(progress_line(step, cfg.run.steps, metrics))
                if control.should_save(step):
                    save(run_dir, step, learner, sync, sampler_state, tracker, cfg.run.keep_checkpoints)
                if control.should_end(step):
                    break
            if not control.stopped:
                print(
                    f"{PREFIX} final checkpoint: {learner.save(str(run_dir / 'checkpoints' / 'final'))}",
                    flush=True,
                )
        except (ray.exceptions.RayActorError, RolloutWorkerDied) as err:
            raise run_died(err, learner.ranks, run_dir, step) from err
        finally:
            rollouts.close()
            clock.progress.close()
            tracker.close()
            with contextlib.suppress(Exception):
                pool.shutdown()
    for line in finish_run(run_dir, log):
        print(f"{PREFIX}   {line}", flush=True)
    print(f"{PREFIX} done: {run_dir}", flush=True)
    return run_dir


def save(
    run_dir: Path,
    step: int,
    learner: LearnerGroup,
    sync: WeightSync,
    sampler_state: dict[str, Any],
    tracker: Tracker,
    keep: int,
) -> None:
    state = {"policy_version": sync.version, "sampler": sampler_state, "wandb_id": tracker.run_id}
    path = checkpoint.save(run_dir, step, learner, state, keep)
    print(f"{PREFIX} checkpoint: {path}", flush=True)


def restore(
    path: Path, run_dir: Path, learner: LearnerGroup, sampler: Any, sync: WeightSync, pad_id: int
) -> dict[str, Any]:
    """Load a checkpoint into the learner and sampler and push its weights to the engines;
    returns the checkpoint's trainer state (step, W&B run id, ...)."""
    state = checkpoint.load_state(path)
    learner.load_state(str(path / "learner"))
    sampler.load_state_dict(state["sampler"])
    sync.version = state["policy_version"] - 1  # the sync below brings it back
    sync.push([pad_id] * 8, 1)  # any sequence serves the numerical check
    truncate_metrics(run_dir, state["step"])
    print(f"{PREFIX} resumed from {path} (step {state['step']}, policy version {sync.version})", flush=True)
    return state


def step_metrics(
    cfg: Config,
    episodes: list[Episode],
    stats: BatchStats,
    rounds: int,
    rollouts: Rollouts,
    pool: RolloutPool,
    clock: StepClock,
) -> dict[str, float]:
    """Everything a step logs beside the learner's and the sync's metrics. ``timing/rollout_s``
    is how long collecting the episodes took (one step off: while the previous step trained;
    the step itself waited ``timing/rollout_wait_s``)."""
    generated = sum(e.num_generated for e in episodes)
    out = {
        **reward_metrics(episodes, cfg.rewards.components),
        **episode_metrics(episodes),
        "batch/zero_variance_groups": stats.zero_variance_groups,
        "batch/overlong_penalty": stats.overlong_penalty,
        "batch/sampling_rounds": rounds,
        "timing/rollout_s": rollouts.elapsed,
        "throughput/tokens_per_s": generated / max(rollouts.elapsed, 1e-9),
        "rollout/worker_restarts": float(pool.restarts),
        "memory/rollout_peak_gb": pool.peak_memory_gb(),
        **clock.metrics(),
    }
    return out


def progress_line(step: int, steps: int, m: dict[str, float]) -> str:
    return (
        f"{PREFIX} step {step}/{steps}  reward {m['reward/mean']:.3f}  "
        f"loss {m['loss/policy']:+.4f}  rollout {m['timing/rollout_s']:.1f}s  "
        f"train {m['timing/train_s']:.1f}s  sync {m['timing/sync_s']:.1f}s"
    )
