"""Child processes of the test process: find and kill them (a dying env, a dead browser)."""

from __future__ import annotations

import psutil


def sleep_children() -> list[psutil.Process]:
    """This process's ``sleep`` children (the toy env's child processes)."""
    found = []
    for p in psutil.Process().children(recursive=True):
        try:
            if p.name() == "sleep" and p.status() != psutil.STATUS_ZOMBIE:
                found.append(p)
        except psutil.NoSuchProcess:
            pass
    return found


def kill(processes: list[psutil.Process]) -> list[int]:
    """SIGKILL and reap; returns their pids."""
    for p in processes:
        p.kill()
    psutil.wait_procs(processes, timeout=5)
    return [p.pid for p in processes]
