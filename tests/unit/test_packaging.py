"""envs/ and rewards/ import as rlagent.envs / rlagent.rewards, the same files, however installed.

(The third way, ``ray job submit --working-dir .``, is covered in test_ray_job.py.)
"""

import os
import shutil
from pathlib import Path

from support import REPO
from support.packaging import _digest, _probe


def test_editable_install_imports_the_source_tree(tmp_path):
    envs_file, rewards_file, digest, plugins = _probe(tmp_path)  # cwd outside the repo
    assert Path(envs_file) == REPO / "envs" / "__init__.py"
    assert Path(rewards_file) == REPO / "rewards" / "__init__.py"
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
