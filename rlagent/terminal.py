"""A run's terminal shows rlagent's own lines; everything else printed in the driver (library
warnings, notices, the actors' logs that Ray forwards) goes to the run's ``output.log``.
``rlagent train --verbose`` shows both on the terminal.

Lines are sorted as they are printed: one whose text (after Ray's ``(Actor pid=N)`` prefix and
colour codes) starts with ``[rlagent]`` or ``rlagent:`` goes to the terminal, any other to
the log. Until the run directory exists the log lines wait in memory; if the command fails
before that, they are shown, so nothing is lost.
"""

from __future__ import annotations

import contextlib
import io
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

LOG = "output.log"
ANSI = re.compile(r"\x1b\[[0-9;]*m")
OWN = re.compile(r"^(\([^)]*pid=\d+[^)]*\)\s*)?(\[rlagent\]|rlagent:)")


def is_own(line: str) -> bool:
    """Is this one of rlagent's own lines (``[rlagent] ...``, ``rlagent: ...``), printed here
    or forwarded from an actor?"""
    return bool(OWN.match(ANSI.sub("", line).lstrip("\r")))


class Sorter(io.TextIOBase):
    """A text stream that sends each line to ``terminal`` or to the log, by ``is_own``. The
    destination of a line is chosen by its first piece (``print`` writes the text, then the
    newline); a ``\\r`` redraw of the progress line is a line of its own."""

    def __init__(self, terminal: TextIO, sink: LogSink):
        self.terminal, self.sink = terminal, sink
        self.to_terminal: bool | None = None  # where the line being written goes (None: no line yet)

    def isatty(self) -> bool:
        return self.terminal.isatty()

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self.terminal.fileno()

    def write(self, s: str) -> int:
        for piece in re.split(r"(?<=\n)", s):
            if not piece:
                continue
            if self.to_terminal is None or piece.startswith("\r"):
                self.to_terminal = is_own(piece)
            if self.to_terminal:
                self.terminal.write(piece)
            else:
                self.sink.write(piece)
            if piece.endswith("\n"):
                self.to_terminal = None
        return len(s)

    def flush(self) -> None:
        self.terminal.flush()
        self.sink.flush()


class LogSink:
    """The log: in memory until ``attach`` names its file."""

    def __init__(self) -> None:
        self.buffer: list[str] = []
        self.file: TextIO | None = None
        self.path: Path | None = None

    def write(self, s: str) -> None:
        if self.file is not None:
            self.file.write(s)
        else:
            self.buffer.append(s)

    def flush(self) -> None:
        if self.file is not None:
            self.file.flush()

    def attach(self, path: Path) -> None:
        if self.file is None:
            self.path = path
            self.file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - open until the command ends
            self.file.write("".join(self.buffer))
            self.buffer.clear()


_sink: LogSink | None = None


def attach(folder: Path) -> Path | None:
    """Write the log to ``folder/output.log`` from now on (what waited in memory first); its
    path, or None when the output is not being sorted (``--verbose``, or not the CLI)."""
    if _sink is None:
        return None
    _sink.attach(Path(folder) / LOG)
    return _sink.path


@contextlib.contextmanager
def sorted_output(enabled: bool = True) -> Iterator[None]:
    """Sort ``sys.stdout`` and ``sys.stderr`` while the block runs (``enabled``). Logging
    handlers made in the block write through the sorter; an exception leaving the block is
    printed by Python on the real stderr, after what the log held if it never reached a file."""
    global _sink
    if not enabled:
        yield
        return
    out, err, sink = sys.stdout, sys.stderr, LogSink()
    _sink = sink
    sys.stdout, sys.stderr = Sorter(out, sink), Sorter(err, sink)
    try:
        yield
    except BaseException:
        if sink.file is None and sink.buffer:
            err.write("".join(sink.buffer))
        raise
    finally:
        # Handlers made in the block keep the sorters: what they print later (at exit) still
        # reaches the log file, left open for them.
        sys.stdout, sys.stderr = out, err
        _sink = None
        sink.flush()
