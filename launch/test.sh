#!/usr/bin/env bash
# Set up everything (idempotent) and run the test suite.
#   bash launch/test.sh [pytest args ...]
set -euo pipefail
cd "$(dirname "$0")/.."
bash launch/setup.sh
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}" TOKENIZERS_PARALLELISM=false WANDB_MODE=offline
# --durations: the slowest tests are printed, so the suite's cost stays in view.
exec .venv/bin/python -m pytest -q -p no:cacheprovider --durations=25 "$@"
