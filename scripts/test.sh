#!/usr/bin/env bash
# Set up (if needed) and run the test suite, the real-model `slow` and the `integration` tests (server
# processes, the browser, multi-process training) included; the `long` chains only when asked.
# For the fast tests only while developing: .venv/bin/python -m pytest -m "not slow and not integration"
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# real tokenizers and chat templates for the template conformance tests (fetched and converted once)
.venv/bin/python scripts/model_assets.py
# lint and the import contracts (pyproject.toml) before the tests: a broken layer fails in seconds
.venv/bin/ruff check buxiban tests scripts bench
.venv/bin/ruff format --check buxiban tests scripts bench
.venv/bin/lint-imports
.venv/bin/python scripts/audit.py
# Without arguments: everything but the `long` real-model chains (over 10 minutes each on 2 cores), which
# keeps CI within its 30 minutes; `bash scripts/test.sh -m long` runs those.
[ $# -gt 0 ] || set -- -m "not long"
exec .venv/bin/python -m pytest "$@"
