#!/usr/bin/env bash
# Set up (scripts/setup.sh), lint, and run the whole test suite. This is what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
ruff check src tests benchmarks scripts
python -m pytest -q "$@"
