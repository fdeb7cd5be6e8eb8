"""Peak memory of a process and everything it starts (Ray, engines, browsers), for benchmarks."""

from __future__ import annotations

import subprocess
import threading
import time

import psutil


def tree_rss_gb(root: psutil.Process) -> float:
    """Summed RSS of ``root`` and its descendants; pages shared between processes count once
    per process, so it is an upper bound."""
    total = 0
    for p in [root, *root.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total / 2**30


def watch_peak(proc: subprocess.Popen, every: float = 0.5) -> list[float]:
    """Sample ``proc``'s tree every ``every`` seconds until it exits, in a daemon thread; the
    returned one-element list holds the peak in GB so far."""
    peak = [0.0]

    def sample() -> None:
        root = psutil.Process(proc.pid)
        while proc.poll() is None:
            try:
                peak[0] = max(peak[0], tree_rss_gb(root))
            except psutil.Error:
                return
            time.sleep(every)

    threading.Thread(target=sample, daemon=True).start()
    return peak
