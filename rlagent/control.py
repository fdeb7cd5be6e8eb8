"""The two helpers that keep bookkeeping out of the training loop.

``RunControl``: when to checkpoint and when to end (``run.steps``, ``run.save_every``,
``run.max_minutes``, and a stop request: Ctrl-C or ``ray job stop``), with the messages
that say so. ``StepClock``: a step's phases, for the progress line and the ``timing/*``
metrics.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

from rlagent.config import RunConfig
from rlagent.progress import PREFIX, Progress
from rlagent.stopping import GracefulStop


class RunControl:
    """``with RunControl(cfg.run, run_dir) as control:`` turns SIGTERM/SIGINT into a request
    that ends the run after the current step."""

    def __init__(self, run: RunConfig, run_dir: Path):
        self.run, self.run_dir = run, run_dir
        self.stop = GracefulStop()
        self.started: float | None = None
        self.stopped = False  # ended by a stop request (no final model then)

    def __enter__(self) -> RunControl:
        self.stop.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.__exit__(*exc)

    def start(self) -> None:
        """Training begins (the budget of ``run.max_minutes`` counts from here)."""
        self.started = time.perf_counter()

    def _out_of_time(self) -> bool:
        budget = self.run.max_minutes
        return (
            budget is not None
            and self.started is not None
            and time.perf_counter() - self.started >= 60 * budget
        )

    def is_last(self, step: int) -> bool:
        """No step follows this one (as far as is known now): nothing to prefetch."""
        return step >= self.run.steps or self.stop.requested

    def should_save(self, step: int) -> bool:
        """A resumable checkpoint after this step: every ``run.save_every`` steps, and
        whenever the run ends early (stopped, out of time)."""
        every = self.run.save_every
        return self.stop.requested or self._out_of_time() or bool(every and step % every == 0)

    def should_end(self, step: int) -> bool:
        """End after this step? Says why when it is early."""
        if self.stop.requested:
            self.stopped = True
            print(
                f"{PREFIX} stopped after step {step}; continue with: rlagent train CONFIG "
                f"resume={self.run_dir}",
                flush=True,
            )
            return True
        if self._out_of_time():
            print(f"{PREFIX} run.max_minutes={self.run.max_minutes:g} reached after step {step}", flush=True)
            return True
        return False


class StepClock:
    """Phases of a step: each ``with clock.phase(name):`` shows on the progress line and
    its seconds become ``timing/<name>_s`` (``rollout`` is reported as the time the step
    waited for its rollouts, ``timing/rollout_wait_s``: one step off, they were collected
    while the previous step trained)."""

    def __init__(self, progress: Progress):
        self.progress = progress
        self.step_start = 0.0
        self.seconds: dict[str, float] = {}

    def start(self, step: int) -> None:
        self.step_start = time.perf_counter()
        self.seconds = {}
        self.progress.start(step, "rollout")

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        self.progress.phase(name)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0

    def add(self, name: str, seconds: float) -> None:
        """Time spent for ``name`` inside another phase (e.g. waiting for rollouts in sync)."""
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def metrics(self) -> dict[str, float]:
        return {
            "timing/rollout_wait_s": self.seconds.get("rollout", 0.0),
            "timing/train_s": self.seconds.get("train", 0.0),
            "timing/step_s": time.perf_counter() - self.step_start,
        }

    def done(self, summary: str) -> None:
        self.progress.step_done(summary)
