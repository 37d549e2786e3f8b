"""Child processes tied to the server: the job worker's `buxiban train` and the dashboard's
`buxiban eval`. A child cannot take the server down (a crash or out-of-memory stays in it), and it
cannot outlive the server either (PR_SET_PDEATHSIG on Linux)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO


def die_with(server_pid: int) -> Callable[[], None]:
    """Runs in the child between fork and exec. PR_SET_PDEATHSIG fires when the thread that started
    the child exits: the worker thread lives as long as the server, so that is the server's death.
    A server that died before the prctl call took effect is caught by the parent check after it."""

    def arrange() -> None:
        if sys.platform.startswith("linux"):
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
            if os.getppid() != server_pid:
                os._exit(1)

    return arrange


def start_child(
    command: list[str], stdout: IO[bytes] | int, stderr: IO[bytes] | int, env: dict[str, str]
) -> subprocess.Popen:
    """`command` with no stdin, killed when the server dies. Call it from a thread that lives as long
    as the server (see die_with)."""
    return subprocess.Popen(
        command, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL, preexec_fn=die_with(os.getpid()), env=env
    )


def failure_reason(log_path: Path, code: int) -> str:
    """The train command's own `error:` message when it gave one, else its last words."""
    lines = [
        line.strip() for line in log_path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()
    ]
    errors = [i for i, line in enumerate(lines) if line.startswith("error:")]
    if errors:
        return " ".join(lines[errors[-1] : errors[-1] + 6])[:2000]
    if code < 0:
        return f"training was killed by signal {signal.Signals(-code).name}" + (
            f"; last output: {lines[-1][:500]}" if lines else ""
        )
    return f"training exited with status {code}" + (f"; last output: {lines[-1][:1000]}" if lines else "")
