"""``launch/submit.py`` run as a user runs it."""

import subprocess
import sys

from support import REPO

SUBMIT = [sys.executable, str(REPO / "launch" / "submit.py")]


def submit(*args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*SUBMIT, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )
