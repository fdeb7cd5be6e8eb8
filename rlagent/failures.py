"""What the driver says when a part of the run died and the run cannot go on: which part,
and the exact command that continues the run from its last checkpoint."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any


class RunDied(RuntimeError):
    """The run stopped because one of its actors died; the message says how to resume."""


def resume_hint(run_dir: Path) -> str:
    """The command that continues ``run_dir`` from its last checkpoint, or why there is none."""
    pointer = Path(run_dir) / "checkpoints" / "latest"
    command = f"rlagent train {Path(run_dir) / 'config.yaml'} resume={run_dir}"
    if pointer.is_file():
        return f"continue from its last checkpoint ({pointer.read_text().strip()}) with: {command}"
    return "it wrote no checkpoint to resume from (run.save_every=N writes one every N steps); start it again"


def _dead_actor_ids(err: BaseException) -> set[str]:
    """Actor ids an error names: its own, its cause's (a task on a live actor fails with the
    death of the actor that produced one of its arguments), and any in its message."""
    ids, seen = set(), 0
    while err is not None and seen < 8:
        for attr in ("actor_id", "_actor_id"):
            value = getattr(err, attr, None)
            if isinstance(value, str):
                ids.add(value)
            elif value is not None and hasattr(value, "hex"):
                ids.add(value.hex())
        ids.update(re.findall(r"actor_id:\s*([0-9a-f]{16,})", str(err)))
        err, seen = getattr(err, "cause", None) or err.__cause__, seen + 1
    return ids


def who_died(err: BaseException, learner_ranks: list[Any]) -> str:
    """'the learner (rank r)' when ``err`` is about a learner actor, else a generic name."""
    died = _dead_actor_ids(err)
    for rank, handle in enumerate(learner_ranks):
        if handle._actor_id.hex() in died:
            return f"the learner (rank {rank})"
    return "a rollout worker" if type(err).__name__ == "RolloutWorkerDied" else "an actor"


def run_died(err: BaseException, learner_ranks: list[Any], run_dir: Path, step: int) -> RunDied:
    """The error the driver ends with: who died at which step, and how to resume."""
    cause = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return RunDied(
        f"{who_died(err, learner_ranks)} died during step {step} ({cause}); "
        f"the run stopped: {resume_hint(run_dir)}"
    )
