"""Held-out evaluation: play a fixed task file with a checkpoint (or the untrained model),
score each episode with the configured reward plugins, and report success, rewards, turns
and the env's own facts.

``rlagent tasks`` writes the task file (see ``rlagent.tasks.heldout_tasks``); ``rlagent
eval`` runs :func:`evaluate`. The rollout workers and reward service are the training ones,
started the same way, so an evaluation measures exactly what a run would see; only the
learner is left out.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import math
import time
from pathlib import Path
from typing import Any

from rlagent import terminal
from rlagent.config import Config, ConfigError, RewardSpec
from rlagent.records import Episode, Task, succeeded

ROLES = ("rollout workers", "reward service")  # what an evaluation places: no learner


# ---------------------------------------------------------------- inputs


def load_heldout(cfg: Config) -> list[Task]:
    """The tasks of ``eval.tasks``; errors name the setting and the file."""
    if not cfg.eval.tasks:
        raise ConfigError(
            "eval.tasks: give the held-out task file, tasks=FILE "
            "(`rlagent tasks CONFIG --out FILE` writes one)"
        )
    path = Path(cfg.eval.tasks)
    if not path.is_file():
        raise ConfigError(f"eval.tasks: {path}: no such file")
    from rlagent.tasks import load_tasks

    try:
        tasks = load_tasks(path, cfg.env.id)
    except ValueError as err:
        raise ConfigError(f"eval.tasks: {err}") from err
    name = cfg.env.id.rpartition(":")[2]  # "package.module:Name-v0" registers Name-v0
    other = next((t for t in tasks if t.env.rpartition(":")[2] != name), None)
    if other is not None:
        raise ConfigError(
            f"eval.tasks: {path} holds tasks for {other.env} (task {other.id}), but env.id is {cfg.env.id}"
        )
    return tasks


def resolve_checkpoint(cfg: Config) -> tuple[str, Path]:
    """The model to load and the output directory, from ``eval.checkpoint`` and ``eval.out``."""
    from rlagent.checkpoint import find_model
    from rlagent.model_source import resolve_model

    stem = Path(cfg.eval.tasks or "tasks").stem
    if cfg.eval.checkpoint == "base":
        model = resolve_model(cfg.model.path)
        out = Path(cfg.run.output_dir) / f"base-{Path(model).name}" / "eval" / stem
    else:
        given = Path(cfg.eval.checkpoint)
        try:
            model = str(find_model(given).resolve())
        except FileNotFoundError as err:
            raise ConfigError(f"eval.checkpoint: {err}") from err
        out = given / "eval" / stem
    return model, Path(cfg.eval.out or out).resolve()


# ---------------------------------------------------------------- the evaluation


def evaluate(cfg: Config) -> dict[str, Any]:
    """Play every task of ``eval.tasks`` ``eval.samples`` times with ``eval.checkpoint``;
    write ``eval.json`` and ``episodes.jsonl`` to the output directory and return the report
    (what ``eval.json`` holds)."""
    from rlagent import remote
    from rlagent.placement import Placement
    from rlagent.rollout.pool import RolloutPool
    from rlagent.scoring.service import start_reward_service

    tasks = load_heldout(cfg)  # both checked before anything starts
    model, out = resolve_checkpoint(cfg)
    out.mkdir(parents=True, exist_ok=True)
    terminal.attach(out)  # third-party output, when the CLI sorts it
    play_cfg = copy.deepcopy(cfg)
    if cfg.eval.temperature is not None:
        play_cfg.rollout.temperature = cfg.eval.temperature  # 0 (greedy) passes to vLLM as is
    print(
        f"[rlagent] eval of {model} on {cfg.eval.tasks}: {len(tasks)} tasks x "
        f"{cfg.eval.samples} samples, temperature {play_cfg.rollout.temperature}",
        flush=True,
    )
    t0 = time.perf_counter()
    remote.configure(cfg.ray.timeouts)
    with remote.ray_session(cfg.ray.address, cfg.ray.num_cpus), Placement(cfg, only=ROLES) as placement:
        rewards = start_reward_service(cfg.rewards, placement)
        pool = RolloutPool(play_cfg, model, rewards, placement)
        try:
            episodes = play(play_cfg, pool, tasks, cfg.eval.samples)
        finally:
            with contextlib.suppress(Exception):
                pool.shutdown()
    report = {
        "checkpoint": cfg.eval.checkpoint,
        "model": model,
        "tasks_file": str(Path(cfg.eval.tasks).resolve()),
        "tasks_sha256": hashlib.sha256(Path(cfg.eval.tasks).read_bytes()).hexdigest(),
        "tasks": len(tasks),
        "samples": cfg.eval.samples,
        "episodes": len(episodes),
        "temperature": play_cfg.rollout.temperature,
        "seed": cfg.run.seed,
        "env": cfg.env.id,
        "elapsed_s": round(time.perf_counter() - t0, 1),
        "metrics": _json_numbers(eval_metrics(episodes, cfg.rewards.components)),
        "config": cfg.to_dict(),
    }
    write(out, report, episodes)
    for line in summary(report, cfg.rewards.components).splitlines():
        print(f"[rlagent] {line}", flush=True)
    print(f"[rlagent] wrote {out / 'eval.json'} and {out / 'episodes.jsonl'}", flush=True)
    return report


def play(cfg: Config, pool: Any, tasks: list[Task], samples: int) -> list[Episode]:
    """Every task ``samples`` times, in rounds of about one training step's episodes (the
    load the config is sized for); ``Episode.group`` is the task's line in the file."""
    per_round = max(1, cfg.episodes_per_step // samples)
    episodes: list[Episode] = []
    for start in range(0, len(tasks), per_round):
        for e in pool.run(tasks[start : start + per_round], samples):
            e.group += start
            episodes.append(e)
        print(f"[rlagent] eval {len(episodes)}/{len(tasks) * samples} episodes", flush=True)
    return episodes


# ---------------------------------------------------------------- numbers


def eval_metrics(episodes: list[Episode], specs: list[RewardSpec]) -> dict[str, float]:
    """The training loop's reward and episode metrics (success overall, the mean of each
    number in the env's last ``info``), and success per difficulty."""
    from rlagent.scoring.combine import reward_metrics
    from rlagent.tracking import episode_metrics, success_counts

    out = reward_metrics(episodes, specs) | episode_metrics(episodes)
    verdicts = [succeeded(e) for e in episodes]
    for d in sorted({e.task.difficulty for e in episodes}):
        out |= success_counts(
            [v for v, e in zip(verdicts, episodes) if e.task.difficulty == d], f"success/d{d}"
        )
    return out


def _json_numbers(metrics: dict[str, float]) -> dict[str, float | None]:
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in metrics.items()}


# ---------------------------------------------------------------- outputs


def write(out: Path, report: dict[str, Any], episodes: list[Episode]) -> None:
    """``eval.json`` (the report) and ``episodes.jsonl`` (every episode as the rollout files
    store it, plus its ``success`` verdict); an earlier evaluation there is replaced."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "episodes.jsonl", "w") as f:
        for e in episodes:
            f.write(json.dumps({**e.to_dict(), "success": succeeded(e)}, default=str) + "\n")
    (out / "eval.json").write_text(json.dumps(report, indent=1, default=str) + "\n")


def summary(report: dict[str, Any], specs: list[RewardSpec]) -> str:
    """A short table of the headline numbers."""
    m = report["metrics"]

    def num(key: str, fmt: str = ".3f") -> str:
        return "n/a" if m.get(key) is None else format(m[key], fmt)

    components = "  ".join(f"{s.name} {num(f'reward/{s.name}/mean')}" for s in specs)
    levels = sorted(
        {k.split("/")[1] for k in m if k.startswith("success/d") and k.endswith("/rate")},
        key=lambda d: int(d[1:]),
    )
    info = ", ".join(f"{k[5:]} {m[k]:.2f}" for k in m if k.startswith("info/"))
    lines = [
        f"  success     {num('success/rate')}  ({num('success/successes', '.0f')}/"
        f"{num('success/scored', '.0f')} scored; unscored {num('success/unscored', '.0f')}: env "
        f"errors {num('env/errors', '.0f')}, env timeouts {num('env/timeouts', '.0f')})",
        f"  reward      {num('reward/mean')}  ({components})",
        f"  turns       {num('episode/turns_mean', '.2f')}",
        *(
            f"  {d:11s} {num(f'success/{d}/rate')}  ({num(f'success/{d}/scored', '.0f')} scored)"
            for d in levels
        ),
    ]
    if info:
        lines.append(f"  env info    {info}")
    return "\n".join(lines)
