#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite, the real-model `slow` tests included.
# For the fast tests only while developing: .venv/bin/python -m pytest -m "not slow"
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
