"""Run directory and metrics: ``metrics.jsonl``, per-step rollouts, W&B (offline by default).

The same scalars go to W&B and to ``metrics.jsonl``, one line per step, flushed each step.
W&B also gets, per step, three histograms (``reward/hist``: total reward per episode;
``episode/generated_tokens_hist``: tokens the policy generated per episode;
``staleness/hist``: versions each episode's policy lagged the learner) and a table of
sampled transcripts (``rollouts/transcripts``, see :func:`transcript_rows`).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from rlagent.config import Config, save_config
from rlagent.records import FAILURES, Episode, succeeded


def make_run_dir(cfg: Config) -> Path:
    """``<output_dir>/<name>``; an existing run is never overwritten (``-1``, ``-2``... instead)."""
    base = Path(cfg.run.output_dir).resolve() / cfg.run.name
    path, n = base, 0
    while path.exists() and any(path.iterdir()):
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    (path / "rollouts").mkdir(parents=True, exist_ok=True)
    (path / "checkpoints").mkdir(exist_ok=True)
    save_config(cfg, path / "config.yaml")
    return path


def truncate_metrics(run_dir: Path, last_step: int) -> None:
    """Drop ``metrics.jsonl`` lines after ``last_step`` (steps a killed run did after its
    last checkpoint, which the resumed run will do again)."""
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return
    keep = [
        line
        for line in path.read_text().splitlines()
        if line.strip() and json.loads(line)["step"] <= last_step
    ]
    path.write_text("".join(line + "\n" for line in keep))


def wandb_mode(setting: str) -> str:
    """The config's mode when it names one. ``auto``: ``WANDB_MODE`` when set, else online
    when the user is logged in (API key in the env or ~/.netrc), else offline."""
    if setting != "auto":
        return setting
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    netrc = Path.home() / ".netrc"
    logged_in = bool(os.environ.get("WANDB_API_KEY")) or (
        netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore")
    )
    return "online" if logged_in else "offline"


class WandbLogger:
    """The W&B run: scalars, histograms and the transcript table of each step.

    Under Ray it runs as an actor on the driver's node (see ``Tracker``): ``ray job stop``
    signals the driver's whole process tree, and W&B's service process, a child of whichever
    process started W&B, would die with buffered steps unwritten.
    """

    def __init__(self, cfg: Config, run_dir: str, mode: str, resume_id: str | None):
        import wandb

        self.table_episodes = cfg.tracking.table_episodes
        self.components = [c.name for c in cfg.rewards.components]
        # A resumed run continues the same W&B run (same id), so the curves continue.
        self.run = wandb.init(
            project=cfg.tracking.wandb_project,
            name=Path(run_dir).name,
            config=cfg.to_dict(),
            dir=run_dir,
            mode=mode,
            id=resume_id,
            resume="allow" if resume_id else None,
            settings=wandb.Settings(silent=True, console="off"),
        )

    def run_id(self) -> str:
        return self.run.id

    def log(self, step: int, scalars: dict[str, float], episodes: list[Episode]) -> None:
        self.run.log(scalars | self.media(step, episodes, scalars.get("train/policy_version")), step=step)

    def media(
        self, step: int, episodes: list[Episode], learner_version: float | None = None
    ) -> dict[str, Any]:
        """This step's histograms and transcript table (W&B only; not scalars)."""
        import wandb

        out: dict[str, Any] = {}
        rewards = [e.reward for e in episodes if e.reward is not None and math.isfinite(e.reward)]
        if rewards:
            out["reward/hist"] = wandb.Histogram(rewards, num_bins=HIST_BINS)
        if episodes:
            out["episode/generated_tokens_hist"] = wandb.Histogram(
                [e.num_generated for e in episodes], num_bins=HIST_BINS
            )
        if episodes and learner_version is not None:  # policy versions each episode lagged
            out["staleness/hist"] = wandb.Histogram(
                [learner_version - e.policy_version for e in episodes], num_bins=HIST_BINS
            )
        if self.table_episodes and episodes:
            columns, rows = transcript_rows(step, episodes, self.components, self.table_episodes)
            # Component cells are numbers, or text for errors and per-turn scores.
            out[TABLE_KEY] = wandb.Table(columns=columns, data=rows, allow_mixed_types=True)
        return out

    def finish(self) -> None:
        self.run.finish()


class Tracker:
    """``metrics.jsonl`` and rollouts in the run directory (written by the driver), and W&B."""

    def __init__(self, cfg: Config, run_dir: Path, resume_id: str | None = None):
        self.run_dir = run_dir
        self.save_rollouts = cfg.tracking.save_rollouts
        self.metrics_file = open(run_dir / "metrics.jsonl", "a")
        self.mode = wandb_mode(cfg.tracking.wandb_mode)
        self.wandb: Any = None
        self.run_id: str | None = None
        if self.mode != "disabled":
            self.wandb = _start_logger(cfg, run_dir, self.mode, resume_id)
            self.run_id = self._call("run_id")

    def _call(self, method: str, *args: Any) -> Any:
        """A W&B call, in this process or in the logger actor; a W&B failure is reported
        and ends W&B logging, never the run (metrics.jsonl keeps every step)."""
        if self.wandb is None:
            return None
        try:
            if isinstance(self.wandb, WandbLogger):
                return getattr(self.wandb, method)(*args)
            from rlagent.remote import deadline, wait

            return wait(getattr(self.wandb, method).remote(*args), deadline("tracking"), f"W&B ({method})")
        except Exception as err:  # noqa: BLE001 - whatever broke inside W&B
            print(
                f"[rlagent] W&B stopped working ({type(err).__name__}: {err}); metrics.jsonl goes on",
                flush=True,
            )
            self.wandb = None
            return None

    def log(self, step: int, metrics: dict[str, float], episodes: list[Episode]) -> None:
        clean = {k: float(v) for k, v in metrics.items() if v is not None}
        line = {"step": step, **{k: (None if math.isnan(v) else v) for k, v in clean.items()}}
        self.metrics_file.write(json.dumps(line) + "\n")
        self.metrics_file.flush()
        if self.save_rollouts:
            with open(self.run_dir / "rollouts" / f"step_{step:05d}.jsonl", "w") as f:
                for e in episodes:
                    f.write(json.dumps(e.to_dict(), default=str) + "\n")
        self._call("log", step, clean, episodes)

    def close(self) -> None:
        self.metrics_file.close()
        self._call("finish")
        if self.wandb is not None and not isinstance(self.wandb, WandbLogger):
            import ray

            ray.kill(self.wandb)


def _start_logger(cfg: Config, run_dir: Path, mode: str, resume_id: str | None) -> Any:
    """In-process without Ray; under Ray an actor pinned to this (the driver's) node, with
    this process's W&B settings (API key, mode, dirs)."""
    import ray

    if not ray.is_initialized():
        return WandbLogger(cfg, str(run_dir), mode, resume_id)
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = ray.get_runtime_context().get_node_id()
    env = {k: v for k, v in os.environ.items() if k.startswith("WANDB_")}
    actor = ray.remote(WandbLogger).options(
        num_cpus=0,
        runtime_env={"env_vars": env},
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=here, soft=False),
    )
    return actor.remote(cfg, str(run_dir), mode, resume_id)


HIST_BINS = 32  # bins of each per-step W&B histogram
TABLE_KEY = "rollouts/transcripts"  # the W&B key of the transcript table


def choose_episodes(episodes: list[Episode], k: int) -> list[Episode]:
    """``k`` episodes for the transcript table, the same ones for the same step every time.

    Episodes are ordered by total reward, best first (ties: the order they came in), those
    without a reward (env error, failed plugin) last; then ``k`` evenly spaced positions of
    that order are taken, so the first row is the best episode and the last the worst.

    >>> from types import SimpleNamespace as E
    >>> eps = [E(reward=r) for r in (0.5, None, 1.0, 0.0, 0.25, 0.75)]
    >>> [e.reward for e in choose_episodes(eps, 3)]
    [1.0, 0.25, None]
    >>> [e.reward for e in choose_episodes(eps, 4)]
    [1.0, 0.5, 0.25, None]
    """
    if k <= 0:
        return []
    order = sorted(episodes, key=lambda e: (e.reward is None, -(e.reward or 0.0)))  # stable
    n = len(order)
    if n <= k:
        return order
    if k == 1:
        return order[:1]
    # position j of k: round(j * (n - 1) / (k - 1)), halves up, in integers
    return [order[(2 * j * (n - 1) + k - 1) // (2 * (k - 1))] for j in range(k)]


def transcript(episode: Episode) -> str:
    """The episode's turns as text: each assistant action, then the env's answer to it."""
    parts = []
    for i, t in enumerate(episode.turns, 1):
        cut = " (cut at max_new_tokens)" if t.finish_reason == "length" else ""
        if t.action or cut:
            parts.append(f"[{i}] assistant{cut}:\n{t.action}")
        if t.info.get("error"):
            parts.append(f"[{i}] env error: {t.info['error']}")
        elif t.observation is not None:
            parts.append(f"[{i}] env:\n{t.observation}")
    return "\n\n".join(parts)


def component_cell(episode: Episode, name: str) -> float | str | None:
    """A reward component for the table: its score, ``error: ...``, or per-turn scores as text."""
    if name in episode.reward_errors:
        return f"error: {episode.reward_errors[name]}"
    value = episode.rewards.get(name)
    if isinstance(value, list):
        return "per turn: " + ", ".join("n/a" if v is None else f"{v:g}" for v in value)
    return value


def transcript_rows(
    step: int, episodes: list[Episode], components: list[str], k: int
) -> tuple[list[str], list[list[Any]]]:
    """Columns and rows of the transcript table: one row per episode of
    :func:`choose_episodes`, one column per reward component (``reward/<name>``)."""
    columns = [
        "step",
        "task",
        "prompt",
        "transcript",
        "reward",
        *(f"reward/{c}" for c in components),
        "termination",
        "policy_version",
    ]
    rows = []
    for e in choose_episodes(episodes, k):
        prompt = next((m["content"] for m in e.messages if m["role"] == "user"), e.task.prompt)
        rows.append(
            [
                step,
                e.task.id,
                prompt,
                transcript(e),
                e.reward,
                *(component_cell(e, c) for c in components),
                e.termination,
                e.policy_version,
            ]
        )
    return columns, rows


def agent_metrics(episodes: list[Episode]) -> dict[str, float]:
    """Agent sessions (``agent.entrypoint``) that raised or hung, and those whose history was
    not append-only (several samples: their episodes' ids are ``<session>.<k>``)."""
    sessions: dict[str, str] = {}
    split = set()
    for e in episodes:
        root, dot, _ = e.uid.partition(".")
        sessions[root] = e.termination
        if dot:
            split.add(root)
    return {
        "agent/errors": float(sum(t == "agent_error" for t in sessions.values())),
        "agent/timeouts": float(sum(t == "agent_timeout" for t in sessions.values())),
        "agent/split_sessions": float(len(split)),
    }


def success_counts(verdicts: list[bool | None], prefix: str) -> dict[str, float]:
    """``<prefix>/rate`` over the episodes that could be judged (``/scored``); the others
    (``/unscored``: env failures, no flag and no reward) are counted, never failures."""
    scored = [v for v in verdicts if v is not None]
    return {
        f"{prefix}/rate": sum(scored) / len(scored) if scored else float("nan"),
        f"{prefix}/successes": float(sum(scored)),
        f"{prefix}/scored": float(len(scored)),
        f"{prefix}/unscored": float(len(verdicts) - len(scored)),
    }


def info_metrics(episodes: list[Episode]) -> dict[str, float]:
    """The mean of each number in the env's last ``info`` (``info/<key>``; a list counts as
    its length, ``info/<key>/len``), over the episodes the env did not fail."""
    values: dict[str, list[float]] = {}
    for e in episodes:
        if e.termination in FAILURES or not e.turns:
            continue
        for key, v in e.turns[-1].info.items():
            if isinstance(v, (bool, int, float)) and math.isfinite(v):
                values.setdefault(f"info/{key}", []).append(float(v))
            elif isinstance(v, (list, tuple)):
                values.setdefault(f"info/{key}/len", []).append(float(len(v)))
    return {k: sum(v) / len(v) for k, v in sorted(values.items())}


def episode_metrics(episodes: list[Episode]) -> dict[str, Any]:
    """Episode shape and env health: turns, lengths, how episodes ended, env failures; success
    (``rlagent.records.succeeded``) and the env's last ``info`` numbers."""
    n = max(len(episodes), 1)
    out: dict[str, Any] = {
        "episode/turns_mean": sum(len(e.turns) for e in episodes) / n,
        "episode/generated_tokens_mean": sum(e.num_generated for e in episodes) / n,
        "episode/length_mean": sum(len(e.token_ids) for e in episodes) / n,
        "env/errors": float(sum(e.termination == "env_error" for e in episodes)),
        "env/timeouts": float(sum(e.termination == "env_timeout" for e in episodes)),
        **agent_metrics(episodes),
        **success_counts([succeeded(e) for e in episodes], "success"),
        **info_metrics(episodes),
    }
    for reason in sorted({e.termination for e in episodes}):
        out[f"episode/end_{reason}"] = sum(e.termination == reason for e in episodes) / n
    return out
