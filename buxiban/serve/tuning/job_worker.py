"""The job worker: one fine-tuning job at a time, each in its own `buxiban train` process.

A subprocess, not a thread: a crash or out-of-memory in training cannot take the server down, and
cancelling is a kill. The child is tied to the server (PR_SET_PDEATHSIG on Linux), so killing the
server kills training too; on the next start the job is queued again and `--resume auto` continues
from its newest checkpoint. Progress comes from the run's own metrics.jsonl, so the events a
client reads are exactly what the run recorded."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import NamedTuple

from ...adapters.registry import Registry
from ...errors import BuxibanError
from ...runs import is_run_dir, read_manifest
from ..children import failure_reason, start_child
from . import hyper
from .database import FINAL_STATUSES, Store

log = logging.getLogger(__name__)
POLL_SECONDS = 0.5
FAIL_RETRIES = 3
MAX_SERVER_STOPS = 3  # a job running while the server died this often is failed, not resumed again
STOPPED_WHILE_RUNNING = "The server stopped while this job ran"


class Paced(NamedTuple):
    """A training step and the unix time its metrics line was written."""

    step: int
    time: float


class JobWorker:
    def __init__(
        self,
        store: Store,
        registry: Registry,
        base_spec: str,
        base_id: str,
        base_aliases: set[str],
        base_parameters: int,
        extra_overrides: list[str] = (),
    ):
        self.store = store
        self.registry = registry
        self.base_spec = base_spec
        self.base_id = base_id
        self.base_aliases = set(base_aliases)
        self.base_parameters = base_parameters  # picks the learning rate
        self.extra = list(extra_overrides)
        self.stopping = threading.Event()
        self.process: subprocess.Popen | None = None
        self.thread = threading.Thread(target=self._loop, name="buxiban-jobs", daemon=True)

    def start(self) -> None:
        self.recover()
        self.thread.start()

    def recover(self) -> None:
        """Jobs that were running when the server died go back to the queue, to resume; a job the
        server died under MAX_SERVER_STOPS times is failed instead, in case it is what kills it."""
        for job in self.store.list_jobs("running"):
            stops = 1 + sum(e["message"].startswith(STOPPED_WHILE_RUNNING) for e in self.store.list_events(job["id"]))
            if stops >= MAX_SERVER_STOPS:
                self.fail(
                    job["id"],
                    "server_error",
                    f"the server stopped {stops} times while this job ran; it is not resumed again (see the "
                    "server's log for what stopped it)",
                )
                continue
            self.store.add_event(
                job["id"],
                f"{STOPPED_WHILE_RUNNING}; it will resume from its newest checkpoint",
                level="warn",
            )
            self.store.set_status_if(job["id"], ("running",), "queued")

    @property
    def alive(self) -> bool:
        return self.thread.is_alive() or not self.started

    @property
    def started(self) -> bool:
        return self.thread.ident is not None

    def stop(self) -> None:
        self.stopping.set()
        if self.process is not None and self.process.poll() is None:
            self.process.kill()

    def _loop(self) -> None:
        while not self.stopping.is_set():
            job = None
            try:
                job = self.store.oldest_job("validating_files")
                if job is not None:
                    self.validate(job)
                    continue
                job = self.store.oldest_job("queued")
                if job is not None:
                    self.run(job)
                    continue
            except Exception as exc:  # the worker must outlive any one job's surprise
                log.exception("job worker error")
                if job is not None:
                    self._fail_surviving(job["id"], f"{type(exc).__name__}: {exc}")
            self.stopping.wait(POLL_SECONDS)

    def _fail_surviving(self, job_id: str, message: str) -> None:
        """Mark the job failed even when the database is what broke (a full disk): retried, logged,
        never raised, so the worker thread lives on to run the next job."""
        for attempt in range(FAIL_RETRIES):
            try:
                self.fail(job_id, "server_error", message)
                return
            except Exception:
                log.exception("could not record the failure of %s (attempt %d)", job_id, attempt + 1)
                self.stopping.wait(POLL_SECONDS * (attempt + 1))

    # --- validating_files -> queued --------------------------------------------------------------

    def validate(self, job: dict) -> None:
        """Copy the data into the job's directory (a deleted upload cannot break a queued job) and
        resolve the "auto" hyperparameters from its size."""
        job_dir = self.store.job_dir(job["id"])
        job_dir.mkdir(parents=True, exist_ok=True)
        examples = 0
        for key, target in (("training_file", "train.jsonl"), ("validation_file", "validation.jsonl")):
            if not job.get(key):
                continue
            try:
                row = self.store.get_file(job[key])
            except BuxibanError:
                return self.fail(
                    job["id"], "invalid_file", f"the {key} {job[key]} was deleted before the job started", key
                )
            shutil.copyfile(self.store.file_path(job[key]), job_dir / target)
            examples = examples or row["examples"]
        concrete = hyper.resolve_auto(job["method"], examples, self.base_parameters)
        self.store.update_job(job["id"], hyperparameters=concrete, total_steps=hyper.total_steps(examples, concrete))
        if self.store.set_status_if(job["id"], ("validating_files",), "queued"):
            self.store.add_event(
                job["id"],
                f"Files validated ({examples} training examples); job queued with "
                + ", ".join(f"{k}={v}" for k, v in concrete.items()),
            )

    # --- queued -> running -> succeeded | failed | cancelled ------------------------------------

    def run(self, job: dict) -> None:
        job_id, job_dir = job["id"], self.store.job_dir(job["id"])
        run_dir = job_dir / "run"
        if is_run_dir(run_dir) and read_manifest(run_dir).complete:
            return self.succeed(job)  # finished just before a server crash: nothing to train again
        if not self.store.set_status_if(job_id, ("queued",), "running"):
            return
        config = job_dir / "config.yaml"
        self.write_config(job, config)
        resuming = (run_dir / "checkpoints").is_dir()
        self.store.add_event(
            job_id, "Resuming fine-tuning from the newest checkpoint" if resuming else "Fine-tuning started"
        )
        command = [sys.executable, "-m", "buxiban.cli", "train", str(config), "--quiet", "--resume", "auto"]
        with (job_dir / "train.log").open("ab") as output:
            self.process = start_child(
                command, stdout=output, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"}
            )
        seen = {"train": job["last_step"], "val": job["last_step"]}
        while self.process.poll() is None:
            seen = self.record_progress(job, run_dir, seen)
            if self.stopping.wait(POLL_SECONDS):
                return  # server shutting down: the job stays `running` and resumes on the next start
            if self.store.get_job(job_id)["status"] != "running":  # cancelled
                self._terminate()
                self.store.update_job(job_id, finished_at=int(time.time()))
                self.store.add_event(job_id, "Job cancelled; training stopped")
                return
        self.record_progress(job, run_dir, seen)
        code, self.process = self.process.returncode, None
        if self.stopping.is_set() or self.store.get_job(job_id)["status"] in FINAL_STATUSES:
            return
        if code == 0 and read_manifest(run_dir).complete:
            return self.succeed(job)
        self.fail(job_id, "training_failed", failure_reason(job_dir / "train.log", code))

    def write_config(self, job: dict, path: Path) -> None:
        """Resolved through load_config, so a bad value is caught here with the reason, not in the child."""
        from ...config import config_to_yaml, load_config

        from_run = None
        if job["model"] not in self.base_aliases:  # DPO on a fine-tuned model continues its adapter
            from_run = str(self.registry.get(job["model"]).run_dir)
        overrides = hyper.run_overrides(
            job, job["hyperparameters"], self.base_spec, self.base_parameters, path.parent, from_run, self.extra
        )
        path.write_text(config_to_yaml(load_config(None, overrides)), encoding="utf-8")

    def record_progress(self, job: dict, run_dir: Path, seen: dict[str, int]) -> dict[str, int]:
        """New metrics.jsonl lines become events (training and validation lines tracked apart: a
        validation line follows its step's training line); the step reached and an estimated
        finish, from the pace of the last steps, are saved with the job."""
        path = run_dir / "metrics.jsonl"
        if not path.is_file():
            return seen
        total = job.get("total_steps") or "?"
        newest = dict(seen)
        paced: list[Paced] = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:  # the line being written right now
                continue
            step = int(entry.get("step", 0))
            if "loss" in entry:
                paced.append(Paced(step, entry.get("time", 0.0)))
                if step > seen["train"]:
                    data = {
                        "step": step,
                        "total_steps": total,
                        "train_loss": entry["loss"],
                        "learning_rate": entry.get("lr"),
                        "tokens": entry.get("tokens"),
                    }
                    self.store.add_event(
                        job["id"], f"Step {step}/{total}: training loss={entry['loss']:.4f}", kind="metrics", data=data
                    )
                    newest["train"] = max(newest["train"], step)
            elif "val_loss" in entry and step > seen["val"]:
                self.store.add_event(
                    job["id"],
                    f"Step {step}/{total}: validation loss={entry['val_loss']:.4f}",
                    kind="metrics",
                    data={"step": step, "valid_loss": entry["val_loss"]},
                )
                newest["val"] = step
            if "tokens" in entry:
                job["trained_tokens"] = entry["tokens"]
        if newest["train"] > seen["train"]:
            self.store.update_job(
                job["id"],
                last_step=newest["train"],
                trained_tokens=job.get("trained_tokens"),
                estimated_finish=_estimated_finish(paced[-20:], job.get("total_steps")),
            )
        return newest

    def succeed(self, job: dict) -> None:
        run_dir = self.store.job_dir(job["id"]) / "run"
        name = hyper.fine_tuned_name(self.base_id, job.get("suffix"), job["id"])
        self.registry.register(name, run_dir, replace=True)
        self.store.update_job(job["id"], status="succeeded", fine_tuned_model=name, finished_at=int(time.time()))
        self.store.add_event(job["id"], f"New fine-tuned model created: {name}")
        self.store.add_event(job["id"], "The job has successfully completed")

    def fail(self, job_id: str, code: str, message: str, param: str | None = None) -> None:
        self.store.update_job(
            job_id,
            status="failed",
            finished_at=int(time.time()),
            error={"code": code, "message": message, "param": param},
        )
        self.store.add_event(job_id, f"Fine-tuning failed: {message}", level="error")

    def _terminate(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _estimated_finish(paced: list[Paced], total: int | None) -> int | None:
    """Unix time the run should end at the pace of its recent steps."""
    if total is None or len(paced) < 2:
        return None
    first, last = paced[0], paced[-1]
    if last.step <= first.step or not first.time:
        return None
    per_step = (last.time - first.time) / (last.step - first.step)
    return int(last.time + per_step * max(0, total - last.step))
