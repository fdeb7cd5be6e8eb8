"""envs/ and rewards/ import as rlagent.envs / rlagent.rewards, the same files, however installed.

(The third way, ``ray job submit --working-dir .``, is covered in test_ray_job.py.)
"""

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from support import REPO
from support.packaging import _digest, _probe


@pytest.mark.slow
def test_non_editable_install_ships_the_same_files(tmp_path):
    site = tmp_path / "site"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(REPO)],
        capture_output=True,
        text=True,
        timeout=600,
    )
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
