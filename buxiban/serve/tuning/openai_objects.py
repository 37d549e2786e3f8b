"""Files, jobs and lists in the shapes OpenAI returns them (and the official SDK parses): what the
fine-tuning routes answer, and what the dashboard shows of a run's job."""

from __future__ import annotations

import math

from . import hyper


def page(items: list[dict], after: str | None, limit: int | None, default: int) -> dict:
    """OpenAI's cursor page: `after` is the id of the last item the client already has."""
    limit = max(1, min(100, int(limit or default)))
    start = 0
    if after:
        ids = [item["id"] for item in items]
        start = ids.index(after) + 1 if after in ids else len(items)
    chosen = items[start : start + limit]
    return {
        "object": "list",
        "data": chosen,
        "has_more": start + limit < len(items),
        "first_id": chosen[0]["id"] if chosen else None,
        "last_id": chosen[-1]["id"] if chosen else None,
    }


def file_object(row: dict) -> dict:
    return {
        "id": row["id"],
        "object": "file",
        "bytes": row["bytes"],
        "created_at": row["created_at"],
        "filename": row["filename"],
        "purpose": row["purpose"],
        "status": "processed",
        "expires_at": None,
        "status_details": None,
        "buxiban": {"kind": row["kind"], "examples": row["examples"]},
    }


def finite(value):
    """Non-finite numbers as null: a job stored by an older server with a NaN in it must never make a
    listing fail (JSON has no NaN, and the response would be a 500 for good)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite(v) for v in value]
    return value


def job_object(job: dict) -> dict:
    return finite(_job_object(job))


def _job_object(job: dict) -> dict:
    method = job["method"]
    concrete = job["hyperparameters"] if job["status"] != "validating_files" else None
    shown = {k: v for k, v in (concrete or method["hyperparameters"]).items() if k != "beta"}
    return {
        "id": job["id"],
        "object": "fine_tuning.job",
        "created_at": job["created_at"],
        "model": job["model"],
        "fine_tuned_model": job["fine_tuned_model"],
        "finished_at": job["finished_at"],
        "organization_id": "org-local",
        "result_files": [],
        "seed": job["seed"],
        "status": job["status"],
        "trained_tokens": job["trained_tokens"] if job["status"] == "succeeded" else None,
        "training_file": job["training_file"],
        "validation_file": job["validation_file"],
        "hyperparameters": shown,
        "method": hyper.method_object(method, concrete),
        "error": job["error"],
        "estimated_finish": job["estimated_finish"] if job["status"] == "running" else None,
        "integrations": [],
        "metadata": job["metadata"],
        "user_provided_suffix": job["suffix"],
        "buxiban": {"step": job["last_step"], "total_steps": job["total_steps"]},
    }
