"""Checkpoints are atomic: a save that fails or a process killed mid-write leaves the previous
checkpoint in charge, complete and loadable; the next save clears the debris."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from support import REPO

from rlagent import checkpoint


class FakeLearner:
    """Writes what the real learner writes (a directory per part); ``fail`` raises in the
    named part after half of it is on disk."""

    def __init__(self, fail: str | None = None):
        self.fail = fail

    def _write(self, path: str, part: str) -> str:
        Path(path).mkdir(parents=True)
        (Path(path) / "half").write_text(part)
        if self.fail == part:
            raise OSError(f"disk full while writing {part}")
        (Path(path) / "rest").write_text(part)
        return path

    def save(self, path: str) -> str:
        return self._write(path, "model")

    def save_state(self, path: str) -> None:
        self._write(path, "learner")


def save(run_dir: Path, step: int, learner=None) -> Path:
    return checkpoint.save(run_dir, step, learner or FakeLearner(), {"sampler": step}, keep=2)


@pytest.mark.parametrize("part", ["model", "learner"])
def test_failed_save_leaves_the_previous_checkpoint_in_charge(tmp_path, part):
    save(tmp_path, 1)
    with pytest.raises(OSError, match="disk full"):
        save(tmp_path, 2, FakeLearner(fail=part))
    latest = checkpoint.latest(tmp_path)
    assert latest.name == "step_00001"
    assert checkpoint.load_state(latest)["step"] == 1
    assert (latest / "learner" / "rest").exists() and (latest / "model" / "rest").exists()
    assert not (tmp_path / "checkpoints" / "step_00002").exists()
    save(tmp_path, 3)  # the next save clears the half-written one
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "latest",
        "step_00001",
        "step_00003",
    ]


def test_process_killed_mid_write_leaves_the_previous_checkpoint_usable(tmp_path):
    save(tmp_path, 4)
    code = textwrap.dedent(f"""
        import os, signal, sys
        from pathlib import Path
        sys.path.insert(0, {str(REPO / "tests")!r})
        from unit.test_checkpoint import FakeLearner, save

        class Killed(FakeLearner):
            def save_state(self, path):
                Path(path).mkdir(parents=True)
                (Path(path) / "half").write_text("x" * 100000)
                os.kill(os.getpid(), signal.SIGKILL)  # no clean-up, no atexit

        save(Path({str(tmp_path)!r}), 5, Killed())
        """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr
    assert (tmp_path / "checkpoints" / ".step_00005.tmp").exists()  # the debris is there
    latest = checkpoint.latest(tmp_path)
    assert latest.name == "step_00004" and checkpoint.load_state(latest)["sampler"] == 4


def test_keep_prunes_old_checkpoints_and_latest_is_never_half_written(tmp_path):
    for step in range(1, 5):
        save(tmp_path, step)
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["latest", "step_00003", "step_00004"]  # no latest.tmp either
    assert checkpoint.latest(tmp_path).name == "step_00004"


def test_missing_or_incomplete_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="has no checkpoint"):
        checkpoint.latest(tmp_path)
    save(tmp_path, 1)
    (tmp_path / "checkpoints" / "step_00001" / checkpoint.STATE).unlink()
    with pytest.raises(FileNotFoundError, match="is incomplete"):
        checkpoint.latest(tmp_path)
