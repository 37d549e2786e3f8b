"""The fine-tuning database: files, jobs and their events in SQLite (WAL mode), blobs on disk.

    HOME/serve.db              files, jobs, events
    HOME/files/<file-id>.jsonl the uploaded bytes, exactly as sent
    HOME/jobs/<job-id>/        the job's own copy of its data, its config.yaml, run/ and train.log

WAL lets the HTTP handlers read while the job worker writes, and a committed row survives a killed
server: that is what "killing the server mid-job loses nothing" rests on.
"""

from __future__ import annotations

import json
import re
import secrets
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from ...errors import ServeError

FILE_ID = re.compile(r"^file-[a-z0-9]{24}$")
JOB_ID = re.compile(r"^ftjob-[a-z0-9]{24}$")
FINAL_STATUSES = ("succeeded", "failed", "cancelled")

SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    id TEXT PRIMARY KEY, filename TEXT NOT NULL, purpose TEXT NOT NULL, bytes INTEGER NOT NULL,
    created_at INTEGER NOT NULL, kind TEXT NOT NULL, examples INTEGER NOT NULL, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, seq INTEGER NOT NULL, created_at INTEGER NOT NULL, model TEXT NOT NULL,
    training_file TEXT NOT NULL, validation_file TEXT, suffix TEXT, seed INTEGER NOT NULL,
    hyperparameters TEXT NOT NULL, method TEXT NOT NULL, metadata TEXT,
    status TEXT NOT NULL, error TEXT, fine_tuned_model TEXT, finished_at INTEGER, trained_tokens INTEGER,
    last_step INTEGER NOT NULL DEFAULT 0, total_steps INTEGER, estimated_finish INTEGER);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, job_id TEXT NOT NULL, created_at INTEGER NOT NULL,
    level TEXT NOT NULL, message TEXT NOT NULL, type TEXT NOT NULL, data TEXT);
CREATE INDEX IF NOT EXISTS events_by_job ON events(job_id, seq);
"""


def new_id(prefix: str) -> str:
    return prefix + "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(24))


def check_file_id(file_id: Any) -> str:
    if not isinstance(file_id, str) or not FILE_ID.match(file_id):
        raise NotFound(
            f"no file with id {str(file_id)[:80]!r}: file ids look like file-<24 letters or digits>", "file_id"
        )
    return file_id


def check_job_id(job_id: Any) -> str:
    if not isinstance(job_id, str) or not JOB_ID.match(job_id):
        raise NotFound(
            f"no fine-tuning job with id {str(job_id)[:80]!r}: job ids look like ftjob-<24 letters or digits>",
            "fine_tuning_job_id",
        )
    return job_id


class NotFound(ServeError):
    status = 404
    code = "not_found"


class Store:
    """One connection guarded by a lock: SQLite serializes writers anyway, and the server's write
    rate (uploads, job status, a metrics line per training step) is tiny."""

    def __init__(self, home: str | Path):
        self.home = Path(home)
        (self.home / "files").mkdir(parents=True, exist_ok=True)
        (self.home / "jobs").mkdir(parents=True, exist_ok=True)
        self.lock_file = _lock_home(self.home)
        self.lock = threading.Lock()
        self.db = sqlite3.connect(self.home / "serve.db", check_same_thread=False, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")  # a committed upload or status survives power loss too
        self.db.executescript(SCHEMA)

    def _query(self, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
        with self.lock:
            return self.db.execute(sql, params).fetchall()

    def _write(self, sql: str, params: tuple = ()) -> None:
        with self.lock:
            self.db.execute(sql, params)

    # --- files -----------------------------------------------------------------------------------

    def file_path(self, file_id: str) -> Path:
        return self.home / "files" / f"{check_file_id(file_id)}.jsonl"

    def add_file(self, file_id: str, filename: str, purpose: str, size: int, kind: str, examples: int) -> dict:
        """The blob is already at file_path(file_id); the row makes it visible."""
        self._write(
            "INSERT INTO files VALUES (?, ?, ?, ?, ?, ?, ?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM files))",
            (file_id, filename, purpose, size, int(time.time()), kind, examples),
        )
        return self.get_file(file_id)

    def get_file(self, file_id: str) -> dict:
        rows = self._query("SELECT * FROM files WHERE id = ?", (check_file_id(file_id),))
        if not rows:
            raise NotFound(f"no file with id {file_id!r}", "file_id")
        return dict(rows[0])

    def list_files(self, purpose: str | None = None) -> list[dict]:
        if purpose:
            return [dict(r) for r in self._query("SELECT * FROM files WHERE purpose = ? ORDER BY seq DESC", (purpose,))]
        return [dict(r) for r in self._query("SELECT * FROM files ORDER BY seq DESC")]

    def delete_file(self, file_id: str) -> None:
        """Jobs train on their own copy of the data, so deleting an upload never breaks a job."""
        self.get_file(file_id)
        self._write("DELETE FROM files WHERE id = ?", (file_id,))
        self.file_path(file_id).unlink(missing_ok=True)

    # --- jobs ------------------------------------------------------------------------------------

    def job_dir(self, job_id: str) -> Path:
        return self.home / "jobs" / check_job_id(job_id)

    def add_job(self, job: dict) -> dict:
        self._write(
            "INSERT INTO jobs (id, seq, created_at, model, training_file, validation_file, suffix, seed, "
            "hyperparameters, method, metadata, status) VALUES (?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs), "
            "?, ?, ?, ?, ?, ?, ?, ?, ?, 'validating_files')",
            (
                job["id"],
                int(time.time()),
                job["model"],
                job["training_file"],
                job.get("validation_file"),
                job.get("suffix"),
                job["seed"],
                json.dumps(job["hyperparameters"]),
                json.dumps(job["method"]),
                json.dumps(job.get("metadata")) if job.get("metadata") else None,
            ),
        )
        self.add_event(job["id"], "Validating training file: " + job["training_file"])
        return self.get_job(job["id"])

    def get_job(self, job_id: str) -> dict:
        rows = self._query("SELECT * FROM jobs WHERE id = ?", (check_job_id(job_id),))
        if not rows:
            raise NotFound(f"no fine-tuning job with id {job_id!r}", "fine_tuning_job_id")
        return _job_row(rows[0])

    def list_jobs(self, status: str | None = None) -> list[dict]:
        """Newest first, as OpenAI lists them."""
        if status:
            rows = self._query("SELECT * FROM jobs WHERE status = ? ORDER BY seq DESC", (status,))
        else:
            rows = self._query("SELECT * FROM jobs ORDER BY seq DESC")
        return [_job_row(r) for r in rows]

    def oldest_job(self, status: str) -> dict | None:
        rows = self._query("SELECT * FROM jobs WHERE status = ? ORDER BY seq ASC LIMIT 1", (status,))
        return _job_row(rows[0]) if rows else None

    def update_job(self, job_id: str, **values: Any) -> dict:
        allowed = {
            "status",
            "error",
            "fine_tuned_model",
            "finished_at",
            "trained_tokens",
            "last_step",
            "total_steps",
            "hyperparameters",
            "estimated_finish",
        }
        assert set(values) <= allowed, set(values) - allowed
        encoded = {
            k: json.dumps(v) if k in ("error", "hyperparameters") and v is not None else v for k, v in values.items()
        }
        assignments = ", ".join(f"{key} = ?" for key in encoded)
        self._write(f"UPDATE jobs SET {assignments} WHERE id = ?", (*encoded.values(), job_id))
        return self.get_job(job_id)

    def set_status_if(self, job_id: str, expected: tuple[str, ...], status: str) -> bool:
        """Compare-and-set, so a cancel racing the worker's own transition cannot be overwritten."""
        marks = ", ".join("?" for _ in expected)
        with self.lock:
            cursor = self.db.execute(
                f"UPDATE jobs SET status = ? WHERE id = ? AND status IN ({marks})", (status, job_id, *expected)
            )
            return cursor.rowcount == 1

    # --- events ----------------------------------------------------------------------------------

    def add_event(
        self, job_id: str, message: str, level: str = "info", kind: str = "message", data: dict | None = None
    ) -> None:
        self._write(
            "INSERT INTO events (job_id, created_at, level, message, type, data) VALUES (?, ?, ?, ?, ?, ?)",
            (job_id, int(time.time()), level, message, kind, json.dumps(data) if data is not None else None),
        )

    def list_events(self, job_id: str) -> list[dict]:
        """Newest first, as OpenAI lists them."""
        rows = self._query("SELECT * FROM events WHERE job_id = ? ORDER BY seq DESC", (check_job_id(job_id),))
        return [
            {
                "id": f"ftevent-{r['job_id'][6:]}-{r['seq']}",
                "created_at": r["created_at"],
                "level": r["level"],
                "message": r["message"],
                "object": "fine_tuning.job.event",
                "type": r["type"],
                "data": json.loads(r["data"]) if r["data"] else None,
            }
            for r in rows
        ]

    def close(self) -> None:
        with self.lock:
            self.db.close()
        self.lock_file.close()


def _lock_home(home: Path):
    """One server per home: two would both restart an interrupted job and train it twice at once.
    The kernel drops the lock when the process dies, however it dies."""
    handle = (home / "serve.lock").open("a")
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock, as before
        return handle
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise ServeError(
            f"another `buxiban serve` is already using {home}; stop it, or pass a different --home"
        ) from None
    return handle


def _job_row(row: sqlite3.Row) -> dict:
    job = dict(row)
    for key in ("hyperparameters", "method", "error", "metadata"):
        job[key] = json.loads(job[key]) if job[key] else None
    return job
