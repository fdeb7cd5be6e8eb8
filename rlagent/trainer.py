"""The training loop: sample tasks, roll out, score, update, sync weights, log."""
from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import ray

from rlagent import checkpoint
from rlagent.actors import LearnerGroup, RolloutPool, RolloutWorkerDied, WeightSync, start_reward_service
from rlagent.batch import build_batch, groups_with_signal, shaped_rewards
from rlagent.config import Config
from rlagent.curriculum import make_sampler
from rlagent.model import resolve_model
from rlagent.pipeline import LockedSampler, Rollouts, staleness
from rlagent.placement import Placement
from rlagent.progress import Progress
from rlagent.recovery import run_died
from rlagent.reward_service import group_normalized, reward_metrics
from rlagent.stopping import GracefulStop
from rlagent.tracking import Tracker, episode_metrics, make_run_dir, truncate_metrics


def train(cfg: Config) -> Path:
    """Run steps up to ``cfg.run.steps`` (from the checkpoint with ``run.resume``); returns
    the run directory."""
    sampler = make_sampler(cfg)  # fails fast on a bad dataset or env id
    model_path = resolve_model(cfg.model.path)
    resume = checkpoint.latest(Path(cfg.run.resume)) if cfg.run.resume else None
    run_dir = Path(cfg.run.resume).resolve() if resume else make_run_dir(cfg)
    print(f"[rlagent] run directory: {run_dir}", flush=True)
    # Placement first: every actor's resources are reserved, or a clear error says what is missing.
    with ray_session(cfg), GracefulStop() as stop, Placement(cfg) as placement:
        rewards = start_reward_service(cfg, placement)
        pool = RolloutPool(cfg, model_path, rewards, placement)
        learner = LearnerGroup(cfg, model_path, placement)
        # async: a sync waits for the batch each engine is generating (it lands between two)
        queued = cfg.rollout.timeout_s if cfg.rollout.mode == "async" else 0.0
        sync_timeout = cfg.learner.sync_timeout_s + queued
        sync = WeightSync(learner, pool, sync_timeout, cfg.learner.sync_check_tol,
                          cfg.learner.sync_transport)
        print(f"[rlagent] weight sync: {sync.transport}", flush=True)
        state = restore(resume, run_dir, learner, sampler, sync, pool.pad_id) if resume else {}
        first = step = state.get("step", 0) + 1
        tracker = Tracker(cfg, run_dir, resume_id=state.get("wandb_id"))
        progress = Progress(cfg.run.steps)
        # one_step_off, async: rollouts run while the learner trains (no progress bar)
        shown = progress.episodes if cfg.rollout.mode == "sync" else None
        if cfg.rollout.mode == "async":  # the producer thread draws tasks too
            sampler = LockedSampler(sampler)
        rollouts = Rollouts(cfg.rollout.mode, lambda: collect(cfg, sampler, pool, shown),
                            cfg.rollout.async_buffer)
        started = time.perf_counter()
        try:
            for step in range(first, cfg.run.steps + 1):
                t0 = time.perf_counter()
                progress.start(step, "rollout")
                episodes, rounds, groups = rollouts.next()
                curriculum = sampler.update(groups)
                sampler_state = sampler.state_dict()  # before the next step's tasks are drawn
                if step < cfg.run.steps and not stop.requested:
                    rollouts.prefetch()
                episodes, lag = staleness(episodes, sync.version, cfg.rollout.max_staleness)
                t1 = time.perf_counter()
                progress.phase("train")
                batch, stats = build_batch(episodes, cfg, pool.pad_id)
                metrics = learner.train_step(batch)
                t2 = time.perf_counter()
                progress.phase("sync")
                waited = rollouts.settle()  # one_step_off: the next step's episodes, on the old weights
                probe = max(episodes, key=lambda e: e.num_generated)
                metrics |= sync(probe.token_ids, probe.prompt_len)
                metrics |= curriculum | lag
                metrics |= step_metrics(episodes, stats, cfg, t0, t1, t2, rollouts.elapsed)
                metrics["timing/rollout_wait_s"] = t1 - t0 + waited
                metrics["batch/sampling_rounds"] = rounds
                if cfg.rollout.mode != "async":  # async: the workers are busy generating
                    metrics["memory/rollout_peak_gb"] = pool.peak_memory_gb()
                tracker.log(step, metrics, episodes)
                progress.step_done(progress_line(step, cfg.run.steps, metrics))
                out_of_time = (cfg.run.max_minutes is not None
                               and time.perf_counter() - started >= 60 * cfg.run.max_minutes)
                if stop.requested or out_of_time or (cfg.run.save_every and step % cfg.run.save_every == 0):
                    state = {"policy_version": sync.version, "sampler": sampler_state,
                             "wandb_id": tracker.run_id}
                    path = checkpoint.save(run_dir, step, learner, state, cfg.run.keep_checkpoints)
                    print(f"[rlagent] checkpoint: {path}", flush=True)
                if stop.requested:
                    print(f"[rlagent] stopped after step {step}; continue with: rlagent train "
                          f"CONFIG resume={run_dir}", flush=True)
                    return run_dir
                if out_of_time:
                    print(f"[rlagent] run.max_minutes={cfg.run.max_minutes:g} reached after step "
                          f"{step}", flush=True)
                    break
            final = learner.save(str(run_dir / "checkpoints" / "final"))
            print(f"[rlagent] final checkpoint: {final}", flush=True)
        except (ray.exceptions.RayActorError, RolloutWorkerDied) as err:
            raise run_died(err, learner.ranks, run_dir, step) from err
        finally:
            progress.close()
            tracker.close()
            with contextlib.suppress(Exception):
                pool.shutdown()
    print(f"[rlagent] done: {run_dir}", flush=True)
    return run_dir


def restore(path: Path, run_dir: Path, learner, sampler, sync, pad_id: int) -> dict:
    """Load a checkpoint into the learner and sampler and push its weights to the engines;
    returns the checkpoint's trainer state (step, W&B run id, ...)."""
    state = checkpoint.load_state(path)
    learner.load_state(str(path / "learner"))
    sampler.load_state_dict(state["sampler"])
    sync.version = state["policy_version"] - 1  # the sync below brings it back
    sync([pad_id] * 8, 1)  # any sequence serves the numerical check
    truncate_metrics(run_dir, state["step"])
    print(f"[rlagent] resumed from {path} (step {state['step']}, policy version "
          f"{sync.version})", flush=True)
    return state


def collect(cfg: Config, sampler, pool, on_progress=None) -> tuple[list, int, list]:
    """One step's episodes, the sampling rounds it took, and every group rolled out (the
    curriculum learns from dropped groups too). ``on_progress(finished, total)``: see
    ``RolloutPool.run``.

    With ``algo.dynamic_sampling``, groups whose rewards are all equal are dropped and more
    tasks rolled out, until ``tasks_per_step`` informative groups are found or
    ``max_sampling_rounds`` rounds ran (then the step trains on what it has, topped up with
    dropped groups so the batch keeps its size)."""
    want, kept, dropped, seen = cfg.algo.tasks_per_step, [], [], []
    for rounds in range(1, cfg.algo.max_sampling_rounds + 1):
        episodes = pool.run(sampler.sample(want - len(kept)), cfg.algo.group_size, on_progress)
        check_episodes(episodes)
        if cfg.rewards.combine == "group_normalized":
            group_normalized(episodes, cfg.rewards.components, cfg.rewards.on_error)
        groups = regroup(episodes, offset=len(kept))
        seen += groups
        if not cfg.algo.dynamic_sampling:
            return episodes, rounds, seen
        useful = groups_with_signal(episodes, shaped_rewards(episodes, cfg), cfg.algo.turn_level_coef > 0)
        kept += [g for g in groups if g[0].group in useful]
        dropped += [g for g in groups if g[0].group not in useful]
        if len(kept) >= want:
            break
    chosen = (kept + dropped)[:want]
    return [e for i, g in enumerate(chosen) for e in regroup(g, offset=i, single=True)], rounds, seen


def regroup(episodes, offset: int, single: bool = False):
    """Renumber groups from ``offset`` (group ids must be unique within one batch)."""
    if single:
        for e in episodes:
            e.group = offset
        return episodes
    by_group: dict[int, list] = {}
    for e in episodes:
        by_group.setdefault(e.group, []).append(e)
    for i, g in enumerate(by_group.values()):
        for e in g:
            e.group = offset + i
    return list(by_group.values())


def check_episodes(episodes) -> None:
    """A step where every episode failed in the env is a broken setup, not bad luck."""
    if episodes and all(e.termination in ("env_error", "env_timeout") for e in episodes):
        error = next((t.info.get("error") for e in episodes for t in e.turns if t.info.get("error")), "?")
        raise RuntimeError(f"every episode of the step failed in the env ({episodes[0].task.env}): "
                           f"{error}")


def step_metrics(episodes, stats, cfg: Config, t0: float, t1: float, t2: float,
                 rollout_s: float) -> dict[str, float]:
    """``rollout_s``: how long collecting the episodes took (one step off: while the
    previous step trained; the step itself waited ``timing/rollout_wait_s``)."""
    generated = sum(e.num_generated for e in episodes)
    return {
        **reward_metrics(episodes, cfg.rewards.components),
        **episode_metrics(episodes),
        "batch/zero_variance_groups": stats.zero_variance_groups,
        "batch/overlong_penalty": stats.overlong_penalty,
        "timing/rollout_s": rollout_s, "timing/train_s": t2 - t1,
        "timing/step_s": time.perf_counter() - t0,
        "throughput/tokens_per_s": generated / max(rollout_s, 1e-9),
    }


def progress_line(step: int, steps: int, m: dict[str, float]) -> str:
    return (f"[rlagent] step {step}/{steps}  reward {m['reward/mean']:.3f}  "
            f"loss {m['loss/policy']:+.4f}  rollout {m['timing/rollout_s']:.1f}s  "
            f"train {m['timing/train_s']:.1f}s  sync {m['timing/sync_s']:.1f}s")


@contextlib.contextmanager
def ray_session(cfg: Config):
    """Connect to the job's cluster (``ray job submit``, RAY_ADDRESS) or start a local one."""
    if ray.is_initialized():
        yield
        return
    address = cfg.ray.address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=True)
    else:
        # "local": always a fresh local cluster, never a stale one left by `ray start`. No
        # dashboard, and no metrics exporter (plain HTTP on every interface, no token); Ray's
        # other ports require its token (docs/reliability.md).
        ray.init(address="local", num_cpus=cfg.ray.num_cpus, include_dashboard=False,
                 log_to_driver=True, _system_config={"enable_metrics_collection": False})
    try:
        yield
    finally:
        ray.shutdown()
