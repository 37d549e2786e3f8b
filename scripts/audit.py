"""Offline dependency audit: every package in requirements.lock (what setup.sh installs) at or above
the first release that fixed the advisories listed here. CI has no vulnerability database to ask, so
the advisories that concern buxiban's own attack surface (a server, uploads, model files, templates)
are kept here with their ids; `pip-audit -r requirements.lock` is the full check where a network is.

    python scripts/audit.py [requirements.lock]
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

# package: (first fixed version, advisories it fixed)
FIXED = {
    "torch": (
        "2.10.0",
        "torch.load's weights_only bypass (CVE-2025-32434, fixed in 2.6.0) and the later fixes the review asked for",
    ),
    "starlette": ("0.47.2", "multipart uploads blocking the event loop (CVE-2025-54121)"),
    "python-multipart": ("0.0.18", "a denial of service in multipart boundary parsing (CVE-2024-53981)"),
    "jinja2": ("3.1.6", "a sandbox escape through the attr filter (CVE-2025-27516)"),
    "h11": ("0.16.0", "request smuggling through malformed chunked encoding (CVE-2025-43859)"),
}


def version_key(version: str) -> tuple:
    return tuple(int(part) for part in re.findall(r"\d+", version.split("+")[0])[:4])


def audit(lock: Path) -> list[str]:
    pinned = {}
    for line in lock.read_text().splitlines():
        name, sep, version = line.strip().partition("==")
        if sep and not line.startswith("#"):
            pinned[name.lower().replace("_", "-")] = version.strip()
    failures = []
    for package, (fixed, advisories) in FIXED.items():
        if package in pinned and version_key(pinned[package]) < version_key(fixed):
            failures.append(f"{package}=={pinned[package]} is below {fixed}, which fixed {advisories}")
    return failures


def main() -> int:
    lock = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent / "requirements.lock"
    failures = audit(lock)
    for failure in failures:
        print(f"audit: {failure}", file=sys.stderr)
    print(f"audit: {lock.name}: {'FAILED' if failures else 'ok'} ({len(FIXED)} packages with known fixes checked)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
