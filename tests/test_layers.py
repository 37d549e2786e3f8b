"""The import contracts in pyproject.toml hold, and they would catch a stage importing a later one."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(not LINT.exists(), reason="import-linter is not installed")


def lint(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LINT), "--config", str(root / "pyproject.toml"), "--no-cache"],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )


def test_the_tree_keeps_the_stage_order():
    done = lint(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr


def test_data_importing_serve_breaks_the_contract(tmp_path):
    shutil.copytree(ROOT / "buxiban", tmp_path / "buxiban", ignore=shutil.ignore_patterns("__pycache__", "ui"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    records = tmp_path / "buxiban" / "data" / "records.py"
    records.write_text(records.read_text() + "\nfrom ..serve import app  # a backwards import\n")
    done = lint(tmp_path)
    assert done.returncode != 0 and "buxiban.data.records -> buxiban.serve.app" in done.stdout, done.stdout
