"""envs/ and rewards/ import as rlagent.envs / rlagent.rewards, the same files, however installed.

(The third way, ``ray job submit --working-dir .``, is covered in test_ray_job.py.)
"""
import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PROBE = ("import hashlib, rlagent.envs, rlagent.rewards, rlagent.rewards.outcome as o;"
         "from importlib.metadata import entry_points as eps;"
         "print(rlagent.envs.__file__); print(rlagent.rewards.__file__);"
         "print(hashlib.sha256(open(o.__file__,'rb').read()).hexdigest());"
         "print(sorted(e.name for e in eps(group='rlagent.rewards')))")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _probe(cwd: Path, env: dict | None = None, flags: tuple = ()) -> list[str]:
    out = subprocess.run([sys.executable, *flags, "-c", PROBE], cwd=cwd, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def test_editable_install_imports_the_source_tree(tmp_path):
    envs_file, rewards_file, digest, plugins = _probe(tmp_path)  # cwd outside the repo
    assert Path(envs_file) == REPO / "envs" / "__init__.py"
    assert Path(rewards_file) == REPO / "rewards" / "__init__.py"
    assert digest == _digest(REPO / "rewards" / "outcome.py")
    assert {"format", "outcome", "env_reward"} <= set(eval(plugins))


@pytest.mark.slow
def test_non_editable_install_ships_the_same_files(tmp_path):
    site = tmp_path / "site"
    build = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                            "--target", str(site), str(REPO)],
                           capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr
    assert (site / "rlagent" / "envs" / "calculator.py").is_file()
    # Package data: TextWorld-v0's default game and its sidecar (the env refuses a bare game).
    for name in ("custom_small.z8", "custom_small.json"):
        assert (site / "rlagent" / "envs" / "textworld_games" / name).is_file(), name
    # -S: no site hooks, so the dev environment's editable finder cannot answer; the
    # dependencies come after the installed copy on the path.
    deps = sysconfig.get_paths()["purelib"]
    env = {**os.environ, "PYTHONPATH": f"{site}{os.pathsep}{deps}"}
    envs_file, rewards_file, digest, plugins = _probe(tmp_path, env, ("-S",))
    assert Path(envs_file) == site / "rlagent" / "envs" / "__init__.py"
    assert Path(rewards_file) == site / "rlagent" / "rewards" / "__init__.py"
    assert digest == _digest(REPO / "rewards" / "outcome.py")
    assert {"format", "outcome", "env_reward"} <= set(eval(plugins))


def test_raw_checkout_copy_imports_its_own_files(tmp_path):
    """What Ray does with --working-dir: a copy of the tree, first on sys.path."""
    copy = tmp_path / "copy"
    for name in ("rlagent", "envs", "rewards"):
        shutil.copytree(REPO / name, copy / name)
    env = {**os.environ, "PYTHONPATH": str(copy)}
    envs_file, rewards_file, digest, _ = _probe(copy, env)
    assert Path(envs_file) == copy / "envs" / "__init__.py"
    assert Path(rewards_file) == copy / "rewards" / "__init__.py"
    assert digest == _digest(REPO / "rewards" / "outcome.py")
