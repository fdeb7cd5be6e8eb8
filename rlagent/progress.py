"""Progress lines in the terminal: which phase of which step runs, for how long, and when
the run should end.

Plain lines, readable in ``ray job logs``: when stdout is not a terminal, the phase is
printed once it has run ``interval_s`` since the last line, and every ``interval_s`` after
that, so fast steps print only their summary line. On a terminal one ``\\r``-updated line is
redrawn each second instead. Every step's summary line is printed, with the run's elapsed
time and its ETA.

    [rlagent] step 3/100  rollout 24/64 episodes  1m12s  (run 14m03s, ETA 7h41m)
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import TextIO

PREFIX = "[rlagent]"


def duration(seconds: float) -> str:
    """``45s``, ``3m05s``, ``2h07m``.

    >>> duration(45.4), duration(185), duration(7620), duration(-1)
    ('45s', '3m05s', '2h07m', '0s')
    """
    s = max(int(seconds), 0)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def eta_s(steps: int, done: int, done_s: float, in_step_s: float = 0.0) -> float | None:
    """Seconds left in the run, from the mean step time ``done_s / done`` (wall time of the
    finished steps, checkpoints between them included). The step under way counts as its
    mean minus the time it has run, never below 0: a late step does not speed up the rest.
    None until a step has finished.

    >>> eta_s(10, 2, 60.0)          # 30 s a step, 8 steps left
    240.0
    >>> eta_s(10, 2, 60.0, 20.0)    # 10 s left of step 3, then 7 steps
    220.0
    >>> eta_s(10, 2, 60.0, 45.0)    # step 3 is late: only the 7 after it
    210.0
    """
    if done <= 0:
        return None
    mean = done_s / done
    left = steps - done
    if left <= 0:
        return 0.0
    return max(mean - in_step_s, 0.0) + mean * (left - 1)


class Progress:
    """Phase and step progress of a run; see the module docstring.

    The driver calls ``start(step)``, ``phase(name)``, ``episodes(finished, total)`` and
    ``step_done(summary)``; a daemon thread (``ticker=True``) re-prints a long phase.
    """

    def __init__(
        self,
        steps: int,
        interval_s: float = 30.0,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
        tty: bool | None = None,
        ticker: bool = True,
    ):
        self.steps, self.interval_s, self.clock = steps, interval_s, clock
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty() if tty is None else tty
        self.run_start = clock()
        self.first_step_start: float | None = None
        self.done, self.done_s = 0, 0.0  # finished steps and their wall time
        self.step, self.step_start = 0, 0.0
        self.name: str | None = None  # phase under way (None: between steps)
        self.phase_start = 0.0
        self.count: tuple[int, int] | None = None  # episodes finished, total
        self.last_line = clock()  # when a line was last printed
        self.drawn = 0  # width of the TTY line on screen
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None
        if ticker:
            self._thread = threading.Thread(target=self._tick_loop, name="progress", daemon=True)
            self._thread.start()

    # ---------------------------------------------------------------- driver calls
    def start(self, step: int, phase: str = "rollout") -> None:
        now = self.clock()
        with self._lock:
            self.step, self.step_start = step, now
            if self.first_step_start is None:
                self.first_step_start = now
        self.phase(phase)

    def phase(self, name: str) -> None:
        with self._lock:
            self.name, self.phase_start, self.count = name, self.clock(), None
        self.tick()

    def episodes(self, finished: int, total: int) -> None:
        """Rollout progress: episodes finished so far of ``total``."""
        with self._lock:
            self.count = (finished, total)
        self.tick()

    def step_done(self, summary: str) -> None:
        """End of a step: print ``summary`` with the run's elapsed time and ETA."""
        now = self.clock()
        with self._lock:
            self.done += 1
            self.done_s = now - (self.first_step_start if self.first_step_start is not None else now)
            self.name = None
            eta = eta_s(self.steps, self.done, self.done_s)
            self._emit(
                f"{summary}  (run {duration(now - self.run_start)}, ETA {duration(eta or 0)})",
                now,
                final=True,
            )

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            if self.drawn:
                self.stream.write("\n")
                self.stream.flush()
                self.drawn = 0

    # ---------------------------------------------------------------- printing
    def status(self, now: float) -> str:
        """The line for the phase under way."""
        count = f" {self.count[0]}/{self.count[1]} episodes" if self.count else ""
        eta = eta_s(self.steps, self.done, self.done_s, now - self.step_start)
        return (
            f"{PREFIX} step {self.step}/{self.steps}  {self.name}{count}  "
            f"{duration(now - self.phase_start)}  (run {duration(now - self.run_start)}, "
            f"ETA {'?' if eta is None else duration(eta)})"
        )

    def tick(self) -> None:
        """Print the phase's status if it is due (at most one line per ``interval_s`` on a
        pipe, one redraw per second on a terminal)."""
        now = self.clock()
        with self._lock:
            if self.name is not None and now - self.last_line >= (1.0 if self.tty else self.interval_s):
                self._emit(self.status(now), now, final=False)

    def _emit(self, text: str, now: float, final: bool) -> None:
        if self.tty:  # redraw the status line in place; a final line replaces it for good
            pad = " " * max(self.drawn - len(text), 0)
            self.stream.write(f"\r{text}{pad}" + ("\n" if final else ""))
            self.drawn = 0 if final else len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
        self.last_line = now

    def _tick_loop(self) -> None:
        while not self._stop.wait(1.0):
            self.tick()
