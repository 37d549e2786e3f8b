"""/v1/files and /v1/fine_tuning/jobs, in the shapes the official SDK parses."""

from __future__ import annotations

import asyncio
import errno
import os
import secrets
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse

from ...errors import AdapterError, ServeError
from ...runs.checkpoints import finished_checkpoints
from ..jsonbody import read_json, required_string
from ..metrics_log import read_metrics_since
from . import hyper
from .database import FINAL_STATUSES, Store, check_file_id, new_id
from .openai_objects import file_object, job_object, page

if TYPE_CHECKING:
    from ..app import ServeState

router = APIRouter()
PURPOSE = "fine-tune"
LISTED_PROBLEMS = 10
STOP_AFTER_PROBLEMS = 1000  # an upload that bad is refused; reading on only keeps the client waiting


# --- files ---------------------------------------------------------------------------------------


@router.post("/v1/files")
async def upload_file(request: Request):
    store = request.app.state.serve.store
    try:  # Starlette spools the upload to a temporary file first: the disk can fill up there too
        form = await request.form()
    except OSError as exc:
        raise _disk_full(exc, "the upload") from exc
    upload, purpose = form.get("file"), form.get("purpose")
    if purpose != PURPOSE:
        raise ServeError(
            f"purpose is {purpose!r}; this server takes training data only: purpose='{PURPOSE}'", "purpose"
        )
    if upload is None or isinstance(upload, str):
        raise ServeError("send the data as the multipart field 'file'", "file")
    filename = Path(upload.filename or "upload.jsonl").name[:255]  # a name, never a path
    file_id = new_id("file-")
    final = store.file_path(file_id)
    staging = final.with_name(final.name + ".uploading")
    try:  # copying and fsyncing a large file must not stall every other request
        await asyncio.to_thread(_write_upload, upload.file, staging)
        kind, examples = await asyncio.to_thread(_validate_upload, staging, filename)
    except BaseException as exc:
        staging.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise _disk_full(exc, filename) from exc
        raise
    os.replace(staging, final)
    return file_object(store.add_file(file_id, filename, purpose, final.stat().st_size, kind, examples))


class DiskFull(ServeError):
    status = 507
    code = "insufficient_storage"


def _disk_full(exc: OSError, what: str) -> Exception:
    if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return exc
    return DiskFull(
        f"no room to store {what} on the server's disk ({os.strerror(exc.errno)}); nothing was stored; "
        "free space in the server's home (--home) and its temporary directory, then upload again"
    )


def _write_upload(source, staging: Path) -> None:
    with staging.open("wb") as out:
        shutil.copyfileobj(source, out, 1 << 20)
        out.flush()
        os.fsync(out.fileno())


def _validate_upload(path: Path, filename: str) -> tuple[str, int]:
    """The data checker, with problems located in the user's own file name."""
    from ...data.check import check_file

    report = check_file(path, tokenizer=None, stop_after=STOP_AFTER_PROBLEMS)
    if report.problems:
        shown = [str(p).replace(str(path), filename) for p in report.problems[:LISTED_PROBLEMS]]
        more = len(report.problems) - len(shown)
        counted = "at least " if "stopped_after_problems" in report.stats else ""
        raise ServeError(
            f"{filename} has {counted}{len(report.problems)} problem(s); nothing was stored: "
            + "; ".join(shown)
            + (f"; and {more} more (run `buxiban data check {filename}` to see all)" if more else ""),
            "file",
        )
    return report.kind, report.stats.get("examples", 0)


@router.get("/v1/files")
def list_files(
    request: Request,
    purpose: str | None = None,
    after: str | None = None,
    limit: int | None = None,
    order: str = "desc",
):
    rows = [file_object(r) for r in request.app.state.serve.store.list_files(purpose)]
    return page(rows if order != "asc" else rows[::-1], after, limit, 10_000)


@router.get("/v1/files/{file_id}")
def retrieve_file(file_id: str, request: Request):
    return file_object(request.app.state.serve.store.get_file(file_id))


@router.get("/v1/files/{file_id}/content")
def file_content(file_id: str, request: Request):
    store = request.app.state.serve.store
    store.get_file(file_id)
    return FileResponse(store.file_path(file_id), media_type="application/octet-stream")  # streamed, not read whole


@router.delete("/v1/files/{file_id}")
def delete_file(file_id: str, request: Request):
    request.app.state.serve.store.delete_file(file_id)
    return {"id": file_id, "object": "file", "deleted": True}


# --- fine-tuning jobs ----------------------------------------------------------------------------


@router.post("/v1/fine_tuning/jobs")
async def create_job(request: Request):
    state = request.app.state.serve
    body = await read_json(request)
    method = hyper.parse_method(body.get("method"), body.get("hyperparameters"))
    model = required_string(body, "model")
    model = state.pool.model_aliases.get(model, model)  # --alias: the job is recorded on what the name stands for
    if model not in state.pool.aliases:
        _check_parent_model(state, model, method["type"])
    training = _check_data_file(state.store, body.get("training_file"), "training_file", method["type"])
    validation = None
    if body.get("validation_file"):
        validation = _check_data_file(state.store, body["validation_file"], "validation_file", method["type"])
    seed = body.get("seed")
    if seed is None:
        seed = secrets.randbelow(2**31)
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**31:
        raise ServeError(f"seed must be a whole number from 0 to 2147483647, got {seed!r}", "seed")
    metadata = check_metadata(body.get("metadata"))
    if body.get("integrations"):
        raise ServeError(
            "integrations (Weights & Biases) are not supported; every run logs metrics.jsonl, and "
            "train.tracking in a config adds TensorBoard or MLflow",
            "integrations",
        )
    job = state.store.add_job(
        {
            "id": new_id("ftjob-"),
            "model": model,
            "training_file": training,
            "validation_file": validation,
            "suffix": hyper.check_suffix(body.get("suffix")),
            "seed": seed,
            "hyperparameters": method["hyperparameters"],
            "method": method,
            "metadata": metadata,
        }
    )
    return job_object(job)


MAX_METADATA_KEYS, MAX_METADATA_KEY, MAX_METADATA_VALUE = 16, 64, 512  # OpenAI's limits


def check_metadata(metadata):
    if metadata is None:
        return None
    if not isinstance(metadata, dict) or len(metadata) > MAX_METADATA_KEYS:
        raise ServeError(f"metadata must be an object of at most {MAX_METADATA_KEYS} string pairs", "metadata")
    for key, value in metadata.items():
        if len(key) > MAX_METADATA_KEY or not isinstance(value, str) or len(value) > MAX_METADATA_VALUE:
            raise ServeError(
                f"metadata.{key[:40]} must be a string of at most {MAX_METADATA_VALUE} characters under a key of "
                f"at most {MAX_METADATA_KEY}",
                f"metadata.{key[:40]}",
            )
    return metadata


def _check_parent_model(state: ServeState, model: str, kind: str) -> None:
    """Jobs train this server's base model, or (DPO) continue a model fine-tuned from it."""
    base = state.pool.base_id
    try:
        entry = state.registry.get(model)
    except AdapterError:
        raise ServeError(
            f"model '{model}' is not served here; fine-tune '{base}', this server's base model", "model"
        ) from None
    if kind != "dpo":
        raise ServeError(
            f"supervised jobs start from the base model '{base}'; '{model}' is already fine-tuned "
            "(continue it with method type 'dpo', or train the base on the combined data)",
            "model",
        )
    problem = state.pool.unservable(entry)
    if problem:
        raise ServeError(f"cannot continue '{model}': {problem}", "model")


def _check_data_file(store: Store, file_id, key: str, kind: str) -> str:
    check_file_id(file_id)
    row = store.get_file(file_id)
    wanted = "preference" if kind == "dpo" else "chat"
    if row["kind"] != wanted:
        raise ServeError(
            f"{key} {file_id} ({row['filename']}) holds {row['kind']} data, but a {kind} job needs "
            + (
                "preference pairs (input, preferred_output, non_preferred_output)"
                if wanted == "preference"
                else 'chat conversations ({"messages": [...]})'
            ),
            key,
        )
    return file_id


@router.get("/v1/fine_tuning/jobs")
def list_jobs(request: Request, after: str | None = None, limit: int | None = None):
    jobs = [job_object(j) for j in request.app.state.serve.store.list_jobs()]
    return page(jobs, after, limit, 20)


@router.get("/v1/fine_tuning/jobs/{job_id}")
def retrieve_job(job_id: str, request: Request):
    return job_object(request.app.state.serve.store.get_job(job_id))


@router.post("/v1/fine_tuning/jobs/{job_id}/cancel")
def cancel_job(job_id: str, request: Request):
    store = request.app.state.serve.store
    job = store.get_job(job_id)
    if job["status"] in FINAL_STATUSES or not store.set_status_if(
        job_id, ("validating_files", "queued", "running"), "cancelled"
    ):
        raise ServeError(
            f"job {job_id} is already {store.get_job(job_id)['status']}; only unfinished jobs can be cancelled",
            "fine_tuning_job_id",
        )
    if job["status"] != "running":  # a running job's process is stopped by the worker, which then records it
        store.update_job(job_id, finished_at=int(time.time()))
        store.add_event(job_id, "Job cancelled before training started")
    return job_object(store.get_job(job_id))


@router.get("/v1/fine_tuning/jobs/{job_id}/events")
def job_events(job_id: str, request: Request, after: str | None = None, limit: int | None = None):
    store = request.app.state.serve.store
    store.get_job(job_id)
    return page(store.list_events(job_id), after, limit, 20)


@router.get("/v1/fine_tuning/jobs/{job_id}/checkpoints")
def job_checkpoints(job_id: str, request: Request, after: str | None = None, limit: int | None = None):
    """The run's kept checkpoints, newest first, with the training loss logged at their step."""
    store = request.app.state.serve.store
    job = store.get_job(job_id)
    run_dir = store.job_dir(job_id) / "run"
    # tolerant of the line training is writing right now
    losses = {m["step"]: m for m in read_metrics_since(run_dir)["entries"] if "loss" in m}
    base = hyper.fine_tuned_name(request.app.state.serve.pool.base_id, job["suffix"], job_id)
    items = []
    for step, path in reversed(finished_checkpoints(run_dir)):
        items.append(
            {
                "id": f"ftckpt-{job_id[6:]}-{step}",
                "object": "fine_tuning.job.checkpoint",
                "created_at": int(path.stat().st_mtime),
                "fine_tuning_job_id": job_id,
                "step_number": step,
                "fine_tuned_model_checkpoint": f"{base}:ckpt-step-{step}",
                "metrics": {"step": step, "train_loss": losses.get(step, {}).get("loss")},
            }
        )
    return page(items, after, limit, 10)
