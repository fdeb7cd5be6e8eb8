"""What the driver says when a part of the run died and the run cannot go on: which part,
and the exact command that continues the run from its last checkpoint."""
from __future__ import annotations

from pathlib import Path
from typing import Any


class RunDied(RuntimeError):
    """The run stopped because one of its actors died; the message says how to resume."""


def resume_hint(run_dir: Path) -> str:
    """The command that continues ``run_dir`` from its last checkpoint, or why there is none."""
    pointer = Path(run_dir) / "checkpoints" / "latest"
    command = f"rlagent train {Path(run_dir) / 'config.yaml'} resume={run_dir}"
    if pointer.is_file():
        return (f"continue from its last checkpoint ({pointer.read_text().strip()}) with: "
                f"{command}")
    return ("it wrote no checkpoint to resume from (run.save_every=N writes one every N "
            "steps); start it again")


def who_died(err: BaseException, learner_ranks: list[Any]) -> str:
    """'the learner (rank r)' when ``err`` is about a learner actor, else a generic name."""
    died = getattr(err, "actor_id", None)
    for rank, handle in enumerate(learner_ranks):
        if died is not None and died == handle._actor_id.hex():
            return f"the learner (rank {rank})"
    return "a rollout worker" if type(err).__name__ == "RolloutWorkerDied" else "an actor"


def run_died(err: BaseException, learner_ranks: list[Any], run_dir: Path, step: int) -> RunDied:
    """The error the driver ends with: who died at which step, and how to resume."""
    cause = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return RunDied(f"{who_died(err, learner_ranks)} died during step {step} ({cause}); "
                   f"the run stopped: {resume_hint(run_dir)}")
