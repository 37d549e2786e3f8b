"""Evaluations started from the dashboard: `buxiban eval` in a child process, one at a time.

The child writes RUN/eval/eval.json exactly as the command line does, so the browser shows the same
comparison (base vs few-shot vs fine-tuned, bootstrap intervals, paired tests) a user would get from
`buxiban eval RUN --test FILE`; a crash or out-of-memory in it cannot take the server down, and it
dies with the server like a training job does."""

from __future__ import annotations

import logging
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import NamedTuple

from ...errors import ServeError
from ..children import failure_reason, start_child

ACTIVE = ("queued", "running")
SHOWN_LOG_LINES = 4

log = logging.getLogger(__name__)


class QueuedEval(NamedTuple):
    run_dir: Path
    command: list[str]
    task: dict  # the status the dashboard shows, updated in place as the evaluation runs


class EvalQueue:
    def __init__(self, threads: int | None = None):
        self.threads = threads  # the server's --threads: an eval must leave cores to training as generation does
        self.tasks: dict[str, dict] = {}  # run directory -> its latest task
        self.lock = threading.Lock()
        self.waiting: queue.Queue[QueuedEval | None] = queue.Queue()  # None: stop
        self.process: subprocess.Popen | None = None
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="buxiban-evals", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.waiting.put(None)
        process = self.process
        if process is not None and process.poll() is None:
            process.kill()

    def submit(
        self,
        run_id: str,
        run_dir: Path,
        test_file: Path,
        test_label: str,
        shots: int = 3,
        forgetting: bool = False,
        limit: int | None = None,
    ) -> dict:
        if limit is not None and limit < 1:
            raise ServeError(f"limit is {limit}; use 1 or more, or leave it empty for every example", "limit")
        if not 0 <= shots <= 16:
            raise ServeError(f"shots is {shots}; use 0 (no few-shot system) to 16", "shots")
        command = [
            sys.executable,
            "-m",
            "buxiban.cli",
            "eval",
            str(run_dir),
            "--test",
            str(test_file),
            "--out",
            str(run_dir / "eval"),
            "--shots",
            str(shots),
            "--latency-samples",
            "0",
            "--forgetting" if forgetting else "--no-forgetting",
        ]
        if limit:
            command += ["--limit", str(limit)]
        key = str(run_dir)
        with self.lock:
            if self.tasks.get(key, {}).get("status") in ACTIVE:
                raise ServeError(f"an evaluation of {run_id} is already {self.tasks[key]['status']}; wait for it", "id")
            task = {
                "run": run_id,
                "status": "queued",
                "test_file": test_label,
                "shots": shots,
                "forgetting": forgetting,
                "limit": limit,
                "created": int(time.time()),
                "finished": None,
                "error": None,
                "log": [],
            }
            self.tasks[key] = task
        self.waiting.put(QueuedEval(run_dir, command, task))
        return self.status(run_dir)

    def status(self, run_dir: Path) -> dict | None:
        """The latest task for this run, with the last lines its eval printed."""
        with self.lock:
            task = self.tasks.get(str(run_dir))
            if task is None:
                return None
            task = dict(task)
        if task["status"] == "running":
            task["log"] = _tail(run_dir / "eval" / "eval.log")
        return task

    def _loop(self) -> None:
        while not self.stopping.is_set():
            item = self.waiting.get()
            if item is None:
                return
            try:
                self._run(item)
            except Exception as exc:  # one evaluation's surprise must not end the queue for the rest
                log.exception("dashboard evaluation failed")
                with self.lock:
                    item.task.update(status="failed", finished=int(time.time()), error=f"{type(exc).__name__}: {exc}")

    @property
    def alive(self) -> bool:
        return self.thread.is_alive() or self.thread.ident is None

    def _run(self, queued: QueuedEval) -> None:
        run_dir, command, task = queued
        log_path = run_dir / "eval" / "eval.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if self.threads:
            env["OMP_NUM_THREADS"] = str(self.threads)
        started = time.time()
        with self.lock:
            task["status"] = "running"
        with log_path.open("wb") as output:
            # progress and errors go to stderr; the summary table on stdout is what eval.json holds
            self.process = start_child(command, stdout=subprocess.DEVNULL, stderr=output, env=env)
            code = self.process.wait()
        self.process = None
        if self.stopping.is_set():
            return
        result = run_dir / "eval" / "eval.json"
        # exit 1 with a fresh report is the forgetting gate speaking, not a failure to evaluate
        written = result.is_file() and result.stat().st_mtime >= started
        with self.lock:
            task.update(
                status="succeeded" if written else "failed",
                finished=int(time.time()),
                error=None if written else failure_reason(log_path, code),
                log=_tail(log_path),
            )


def _tail(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    return [line for line in lines if line.strip()][-SHOWN_LOG_LINES:]
