"""The command line restarts itself on jemalloc (buxiban/allocator.py), once, and only when wanted."""

import os
import subprocess
import sys

import pytest

from buxiban.allocator import jemalloc_path, with_jemalloc

# What the process sees after main(): only a process that main() did not replace gets there.
PROBE = (
    "from buxiban.allocator import jemalloc_loaded; from buxiban.cli import main; main(); "
    "print('jemalloc', jemalloc_loaded())"
)


def run_probe(**env) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, env={**os.environ, **env}
    )
    return [line for line in result.stdout.splitlines() if line.startswith("jemalloc")]


@pytest.fixture
def jemalloc():
    path = jemalloc_path()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("libjemalloc.so.2 is missing: scripts/setup.sh installs it (apt-get install libjemalloc2)")
        pytest.skip("libjemalloc.so.2 not installed here")
    return path


def test_command_line_restarts_once_on_jemalloc(jemalloc):
    assert run_probe() == ["jemalloc True"]


def test_allocator_system_keeps_glibc(jemalloc):
    assert run_probe(BUXIBAN_ALLOCATOR="system") == ["jemalloc False"]


def test_preload_is_added_once_and_keeps_what_was_there(jemalloc):
    env = with_jemalloc({"LD_PRELOAD": "/opt/other.so"})
    assert env["LD_PRELOAD"] == f"{jemalloc} /opt/other.so"
    assert with_jemalloc(env) == env


def test_advice_names_the_preload_when_jemalloc_is_installed_but_not_loaded(jemalloc):
    # this pytest process was not started by the buxiban command, so it runs on glibc
    from buxiban.allocator import advice, jemalloc_loaded

    if jemalloc_loaded():
        pytest.skip("pytest itself runs on jemalloc here")
    note = advice()
    assert f"LD_PRELOAD={jemalloc}" in note and "apt-get" not in note
