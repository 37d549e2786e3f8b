#!/usr/bin/env bash
# Set up (if needed), add TRL, and run the side-by-side benchmark (about 11 minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m pip install --disable-pip-version-check --progress-bar off -q -e ".[bench]"
exec .venv/bin/python bench/sft_bench.py "$@"
