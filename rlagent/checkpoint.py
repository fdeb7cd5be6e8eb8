"""Checkpoints: what a stopped or killed run needs to continue exactly where it was.

``checkpoints/step_NNNNN/`` holds ``model/`` (a Hugging Face directory, usable as
``model.path``), ``learner/`` (DeepSpeed's checkpoint: weights, optimizer and LR schedule of
every rank, and the critic's) and ``trainer_state.json`` (step, policy version, task sampler
state, the driver's RNG, the W&B run id). It is written under a temporary name and renamed,
and ``checkpoints/latest`` names it only afterwards: a crash mid-write leaves the previous
checkpoint in charge.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

STATE = "trainer_state.json"


def save(run_dir: Path, step: int, learner: Any, state: dict[str, Any], keep: int) -> Path:
    """Write checkpoint ``step`` and point ``latest`` at it; keep the ``keep`` newest."""
    root = run_dir / "checkpoints"
    final = root / f"step_{step:05d}"
    tmp = root / f".step_{step:05d}.tmp"
    for debris in root.glob(".step_*.tmp"):  # left by a save that crashed
        shutil.rmtree(debris, ignore_errors=True)
    tmp.mkdir(parents=True)
    learner.save(str(tmp / "model"))
    learner.save_state(str(tmp / "learner"))
    state = {**state, "step": step, "python_rng": rng_to_json(random.getstate())}
    (tmp / STATE).write_text(json.dumps(state))
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    _write_atomic(root / "latest", final.name)
    for old in sorted(root.glob("step_*"))[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest(run_dir: Path) -> Path:
    """The checkpoint ``latest`` names; a clear error when there is none."""
    pointer = Path(run_dir) / "checkpoints" / "latest"
    if not pointer.is_file():
        raise FileNotFoundError(
            f"resume: {run_dir} has no checkpoint (checkpoints/latest is missing); checkpoints "
            f"are written every run.save_every steps and when a run is stopped"
        )
    path = pointer.parent / pointer.read_text().strip()
    if not (path / STATE).is_file():
        raise FileNotFoundError(f"resume: {path} is incomplete ({STATE} is missing)")
    return path


def is_model_dir(path: Path) -> bool:
    """A Hugging Face model directory: a config and weights."""
    weights = [*path.glob("*.safetensors"), *path.glob("pytorch_model*.bin")]
    return (path / "config.json").is_file() and bool(weights)


def find_model(path: Path) -> Path:
    """The model directory behind ``path``: a model directory itself, a checkpoint
    (``step_N/model``) or a run directory (the newer of ``checkpoints/final`` and the
    checkpoint ``checkpoints/latest`` names). A clear error naming ``path`` otherwise."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such directory")
    if is_model_dir(path):
        return path
    if is_model_dir(path / "model"):
        return path / "model"
    found = []
    if is_model_dir(path / "checkpoints" / "final"):
        found.append(path / "checkpoints" / "final")
    pointer = path / "checkpoints" / "latest"
    if pointer.is_file() and is_model_dir(path / "checkpoints" / pointer.read_text().strip() / "model"):
        found.append(path / "checkpoints" / pointer.read_text().strip() / "model")
    if found:
        return max(found, key=lambda p: (p / "config.json").stat().st_mtime)
    raise FileNotFoundError(
        f"{path}: no model there (expected a Hugging Face model directory with config.json "
        f"and weights, a checkpoint directory with model/, or a run directory with "
        f"checkpoints/final or checkpoints/latest)"
    )


def load_state(path: Path) -> dict[str, Any]:
    state = json.loads((path / STATE).read_text())
    random.setstate(rng_from_json(state["python_rng"]))
    return state


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def rng_to_json(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def rng_from_json(state: list) -> tuple:
    version, internal, gauss = state
    return version, tuple(internal), gauss
