#!/usr/bin/env bash
# Set up everything (idempotent) and run the CPU quickstart; prints the run directory.
#   bash launch/quickstart.sh [dotted.key=value ...]
set -euo pipefail
cd "$(dirname "$0")/.."
bash launch/setup.sh
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}" TOKENIZERS_PARALLELISM=false
exec .venv/bin/rlagent train launch/configs/quickstart.yaml "$@"
