"""The migrated job created on a running `buxiban serve` instead of trained here: the same files,
uploaded; the same method and hyperparameters, which the server maps exactly as mapping.py does (its
learning rate is the multiplier times its base model's rate); the source job named in the job's
metadata, and the local job named in the migration record."""

from __future__ import annotations

from typing import Any

from ..errors import MigrateError
from ..runs import write_json_atomic
from .bring_home import RECORD, Migration
from .job import check_id
from .mapping import local_suffix
from .source import Client, printable


def submit(target: Client, migration: Migration) -> dict[str, Any]:
    """Upload, create the job, record it; returns the server's job object."""
    job, record = migration.job, migration.record
    base = _base_model(target)
    if job.method == "dpo" and job.model.startswith("ft:"):
        raise MigrateError(
            f"job {job.id} continues the fine-tune {job.model} with DPO; on the server, create it by hand with "
            "model set to the migrated parent's adapter name"
        )
    uploaded = {}
    for role, local in (("training_file", "training"), ("validation_file", "validation")):
        entry = record["files"][local]
        if entry is None:
            continue
        answer = target.post_file(
            "/files", {"purpose": "fine-tune"}, migration.folder / entry["path"], entry["filename"] or entry["id"]
        )
        uploaded[role] = check_id(answer.get("id") if isinstance(answer, dict) else None, "the uploaded file's id")
    hyper = {k: v for k, v in job.hyperparameters.items() if not (job.method != "dpo" and k == "beta")}
    body: dict[str, Any] = {
        "model": base,
        **uploaded,
        "method": {"type": job.method, job.method: {"hyperparameters": hyper}},
        "metadata": {"migrated_from": job.id, "source": record["source"]["base_url"][:512]},
    }
    if job.seed is not None:
        body["seed"] = job.seed % 2**31
    if local_suffix(job.suffix):
        body["suffix"] = local_suffix(job.suffix)
    created = target.post_json("/fine_tuning/jobs", body)
    job_id = check_id(created.get("id") if isinstance(created, dict) else None, "the local server's job id")
    record["local_job"] = {"base_url": target.base_url, "id": job_id, "model": base, "files": uploaded}
    write_json_atomic(migration.folder / RECORD, record)
    return created


def _base_model(target: Client) -> str:
    listed = target.get_json("/models")
    for model in (listed or {}).get("data", []) if isinstance(listed, dict) else []:
        if isinstance(model, dict) and (model.get("buxiban") or {}).get("kind") == "base":
            return str(model["id"])
    raise MigrateError(
        f"{printable(target.base_url)} lists no base model in /v1/models; --serve-url takes a running `buxiban serve`"
    )
