"""rlagent: online agentic reinforcement learning for LLMs.

The public types are importable from here: ``Config`` (and ``load_config``), ``Task``,
``Episode``, ``EpisodeView`` (what a reward plugin scores), ``AgentSession`` (what an agent's
entrypoint is handed); ``train`` runs a config. They load
on first use, so ``import rlagent`` stays cheap (Ray workers import it for every actor).
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from pathlib import Path

__version__ = "0.1.0"

# The repository keeps the built-in environments and rewards in top-level folders
# (envs/, rewards/) that import as rlagent.envs and rlagent.rewards. An installed
# package (pip install ., editable or not) maps them through setuptools' package-dir.
# A raw checkout on sys.path -- e.g. the copy `ray job submit --working-dir .` ships --
# has no such mapping, so when rlagent/ has no envs/ of its own, this finder serves the
# sibling folders under the rlagent.* names. Either way the same files are imported.
_SIBLINGS = ("envs", "rewards")
_ROOT = Path(__file__).resolve().parent.parent


class _SiblingFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        prefix, _, name = fullname.partition(".")
        if prefix != __name__ or name not in _SIBLINGS:
            return None
        init = _ROOT / name / "__init__.py"
        if not init.is_file():
            return None
        return importlib.util.spec_from_file_location(
            fullname, init, submodule_search_locations=[str(init.parent)]
        )


if not (Path(__file__).parent / "envs").is_dir() and not any(
    isinstance(f, _SiblingFinder) for f in sys.meta_path
):
    # First in line: an editable install's own finder would otherwise answer for
    # rlagent.envs with the source tree, even when rlagent itself came from a copy.
    sys.meta_path.insert(0, _SiblingFinder())


_EXPORTS = {
    "Config": "rlagent.config",
    "load_config": "rlagent.config",
    "Task": "rlagent.records",
    "Episode": "rlagent.records",
    "EpisodeView": "rlagent.episode_view",
    "AgentSession": "rlagent.rollout.agents",
    "train": "rlagent.trainer",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'rlagent' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_EXPORTS[name]), name)
