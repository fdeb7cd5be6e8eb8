#!/usr/bin/env bash
# What to run before a commit: ruff (lint and format), mypy (strict on the pure modules,
# pyproject.toml [tool.mypy]) and the unit tier. --no-tests: the static checks only.
#   bash launch/check.sh [--no-tests]
set -euo pipefail
cd "$(dirname "$0")/.."
bash launch/setup.sh >/dev/null
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
if [ "${1:-}" != "--no-tests" ]; then
    bash launch/test.sh tests/unit
fi
