"""Which files an installed rlagent imports: the probe the packaging tests run."""

import hashlib
import subprocess
import sys
from pathlib import Path

PROBE = (
    "import hashlib, rlagent.envs, rlagent.rewards, rlagent.rewards.outcome as o;"
    "from importlib.metadata import entry_points as eps;"
    "print(rlagent.envs.__file__); print(rlagent.rewards.__file__);"
    "print(hashlib.sha256(open(o.__file__,'rb').read()).hexdigest());"
    "print(sorted(e.name for e in eps(group='rlagent.rewards')))"
)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _probe(cwd: Path, env: dict | None = None, flags: tuple = ()) -> list[str]:
    out = subprocess.run(
        [sys.executable, *flags, "-c", PROBE], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()
