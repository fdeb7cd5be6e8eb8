"""Run directory and metrics: ``metrics.jsonl``, per-step rollouts, W&B (offline by default).

The same scalars go to W&B and to ``metrics.jsonl``, one line per step, flushed each step.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from rlagent.config import Config, save_config
from rlagent.records import Episode


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
    keep = [line for line in path.read_text().splitlines()
            if line.strip() and json.loads(line)["step"] <= last_step]
    path.write_text("".join(line + "\n" for line in keep))


def wandb_mode(setting: str) -> str:
    """auto: online when the user is logged in (API key in the env or ~/.netrc), else offline."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if setting != "auto":
        return setting
    netrc = Path.home() / ".netrc"
    logged_in = bool(os.environ.get("WANDB_API_KEY")) or (
        netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore"))
    return "online" if logged_in else "offline"


class Tracker:
    def __init__(self, cfg: Config, run_dir: Path, resume_id: str | None = None):
        import wandb

        self.run_dir = run_dir
        self.save_rollouts = cfg.tracking.save_rollouts
        self.metrics_file = open(run_dir / "metrics.jsonl", "a")
        self.mode = wandb_mode(cfg.tracking.wandb_mode)
        self.wandb = None
        if self.mode != "disabled":
            # A resumed run continues the same W&B run (same id), so the curves continue.
            self.wandb = wandb.init(project=cfg.tracking.wandb_project, name=run_dir.name,
                                    config=cfg.to_dict(), dir=str(run_dir), mode=self.mode,
                                    id=resume_id, resume="allow" if resume_id else None,
                                    settings=wandb.Settings(silent=True, console="off"))

    @property
    def run_id(self) -> str | None:
        return self.wandb.id if self.wandb is not None else None

    def log(self, step: int, metrics: dict[str, float], episodes: list[Episode]) -> None:
        clean = {k: float(v) for k, v in metrics.items() if v is not None}
        line = {"step": step, **{k: (None if math.isnan(v) else v) for k, v in clean.items()}}
        self.metrics_file.write(json.dumps(line) + "\n")
        self.metrics_file.flush()
        if self.save_rollouts:
            with open(self.run_dir / "rollouts" / f"step_{step:05d}.jsonl", "w") as f:
                for e in episodes:
                    f.write(json.dumps(e.to_dict(), default=str) + "\n")
        if self.wandb is not None:
            self.wandb.log(clean, step=step)

    def close(self) -> None:
        self.metrics_file.close()
        if self.wandb is not None:
            self.wandb.finish()


def episode_metrics(episodes: list[Episode]) -> dict[str, Any]:
    """Episode shape and env health: turns, lengths, how episodes ended, env failures."""
    n = max(len(episodes), 1)
    out: dict[str, Any] = {
        "episode/turns_mean": sum(len(e.turns) for e in episodes) / n,
        "episode/generated_tokens_mean": sum(e.num_generated for e in episodes) / n,
        "episode/length_mean": sum(len(e.token_ids) for e in episodes) / n,
        "env/errors": float(sum(e.termination == "env_error" for e in episodes)),
        "env/timeouts": float(sum(e.termination == "env_timeout" for e in episodes)),
    }
    for reason in sorted({e.termination for e in episodes}):
        out[f"episode/end_{reason}"] = sum(e.termination == reason for e in episodes) / n
    return out
