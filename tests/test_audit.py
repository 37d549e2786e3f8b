"""The offline dependency audit (scripts/audit.py, run by scripts/test.sh before the tests)."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from audit import audit  # noqa: E402


def test_the_lock_passes_and_a_vulnerable_pin_fails(tmp_path):
    assert audit(ROOT / "requirements.lock") == []
    old = tmp_path / "old.lock"
    old.write_text("# a lock from before\nJinja2==3.1.4\nstarlette==0.40.0\ntorch==2.13.0\nrequests==2.0\n")
    failures = audit(old)
    assert len(failures) == 2 and any(f.startswith("starlette==0.40.0 is below 0.47.2") for f in failures)
    assert {f.split("==")[0] for f in failures} == {"jinja2", "starlette"}
