"""Stop requests: ``ray job stop`` (SIGTERM) or Ctrl-C (SIGINT) end the run after the current
step, with a checkpoint; a second Ctrl-C stops at once."""

from __future__ import annotations

import signal
import threading


class GracefulStop:
    """A context manager that turns SIGTERM/SIGINT into a flag the training loop reads."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, _frame) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt  # asked twice: do not wait for the step
        self.requested = True
        name = signal.Signals(signum).name
        print(
            f"[rlagent] {name}: stopping after this step with a checkpoint (Ctrl-C again to stop at once)",
            flush=True,
        )

    def __enter__(self) -> GracefulStop:
        if threading.current_thread() is threading.main_thread():  # handlers live there only
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
