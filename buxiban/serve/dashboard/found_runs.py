"""Where the dashboard finds runs, and what it shows of each.

Runs live in three places: the server's fine-tuning jobs (HOME/jobs/<id>/run), the adapter registry
(names pointing at run directories anywhere, e.g. `buxiban serve --adapter NAME=RUN_DIR`), and the
folders given with `buxiban serve --runs DIR` (where `buxiban train output_dir=runs/x` writes). A run
found in several places is listed once: under its job id, else its registered name, else its folder.

Everything here reads files that a training or eval process may be writing at that moment, so
every reader tolerates a half-written line or a directory that does not exist yet."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ...adapters.inventory import describe
from ...adapters.merge import RunRef
from ...adapters.registry import Registry
from ...errors import RunDirError
from ...runs import CONFIG, MANIFEST, Manifest, read_manifest
from ...runs.checkpoints import finished_checkpoints
from ..metrics_log import read_metrics_since
from ..tuning.database import NotFound, Store

SCAN_DEPTH = 2  # --runs DIR finds DIR/run and DIR/group/run
CACHED_FILES = 64
CACHE_LOCK = threading.Lock()  # the routes run in a thread pool
_parsed: dict[Path, tuple[tuple[int, int], Any]] = {}


@dataclass
class FoundRun:
    id: str
    run_dir: Path
    name: str
    source: str  # job | adapter | folder
    job: dict | None = None
    adapter: str | None = None  # the registered name, when it has one


def discover(store: Store, registry: Registry, folders: list[str | Path]) -> list[FoundRun]:
    """Every run the server knows of, newest job first, then registered names, then folders."""
    found: dict[Path, FoundRun] = {}
    for job in store.list_jobs():
        run_dir = store.job_dir(job["id"]) / "run"
        found[run_dir.resolve()] = FoundRun(job["id"], run_dir, job["fine_tuned_model"] or job["id"], "job", job)
    for entry in registry.list():
        key = entry.run_dir.resolve()
        if key in found:
            found[key].adapter = found[key].adapter or entry.name
        else:
            found[key] = FoundRun(entry.name, entry.run_dir, entry.name, "adapter", adapter=entry.name)
    taken = {run.id for run in found.values()}
    for folder in folders:
        root = Path(folder)
        for manifest in sorted(p for depth in range(1, SCAN_DEPTH + 1) for p in root.glob("*/" * depth + MANIFEST)):
            run_dir = manifest.parent
            if run_dir.resolve() in found:
                continue
            run_id = f"{root.name}/{run_dir.relative_to(root).as_posix()}"
            while run_id in taken:  # the same layout under two --runs folders of the same name
                run_id += "~"
            taken.add(run_id)
            found[run_dir.resolve()] = FoundRun(run_id, run_dir, run_dir.relative_to(root).as_posix(), "folder")
    return list(found.values())


def find(runs: list[FoundRun], run_id: str) -> FoundRun:
    """By id only: a path never comes from the request, so nothing outside the known runs is read."""
    for run in runs:
        if run.id == run_id:
            return run
    raise NotFound(f"no run with id {run_id[:200]!r}; the runs page lists what this server knows", "id")


def manifest_of(run_dir: Path) -> Manifest | None:
    """None for a job not started yet, or a run moved away."""
    try:
        return read_manifest(run_dir)
    except (RunDirError, OSError):
        return None


def _unix(stamp: str | None) -> int | None:
    try:
        return int(datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S%z").timestamp()) if stamp else None
    except ValueError:
        return None


def _losses(entries: list[dict]) -> dict[str, Any]:
    train = [e for e in entries if "loss" in e]
    val = [e for e in entries if "val_loss" in e]
    best = min(val, key=lambda e: e["val_loss"]) if val else None
    return {
        "step": max((e.get("step", 0) for e in entries), default=0),
        "train_loss": train[-1]["loss"] if train else None,
        "best_val_loss": best["val_loss"] if best else None,
        "best_step": best["step"] if best else None,
    }


def by_version(cache: dict, path: Path, make):
    """make(path), computed again only when the file's size or modification time changes: the runs
    page asks for every run's evaluation every 2 s, and an eval.json can hold thousands of answers."""
    stat = path.stat()
    version = (stat.st_mtime_ns, stat.st_size)
    with CACHE_LOCK:
        if path in cache and cache[path][0] == version:
            return cache[path][1]
    value = make(path)
    remember(cache, path, (version, value))
    return value


def remember(cache: dict, key, value) -> None:
    """A bounded cache: the oldest entry makes room."""
    with CACHE_LOCK:
        if len(cache) >= CACHED_FILES:
            cache.pop(next(iter(cache)))
        cache[key] = value


def read_eval(run_dir: Path) -> dict[str, Any] | None:
    try:
        return by_version(_parsed, run_dir / "eval" / "eval.json", lambda p: json.loads(p.read_text(encoding="utf-8")))
    except (OSError, json.JSONDecodeError):
        return None


def eval_headline(data: dict | None) -> dict[str, Any] | None:
    """The fine-tuned and base exact match of a run's latest evaluation, for the runs table."""
    if not data:
        return None
    summary = data.get("summary", {})
    return {
        "test_file": Path(data.get("test_file", "")).name,
        "n": len(data.get("examples", [])),
        "scores": {system: summary[system].get("exact_match") for system in summary},
    }


def summary(run: FoundRun, store: Store) -> dict[str, Any]:
    """One row of the runs table."""
    manifest, job = manifest_of(run.run_dir), run.job
    recorded = manifest or Manifest(status="missing")
    status = job["status"] if job else recorded.status
    data = recorded.data.get("train") or {}
    train_file = {"name": Path(data["path"]).name, "examples": data.get("examples")} if data.get("path") else None
    if job:
        try:
            row = store.get_file(job["training_file"])
            train_file = {"name": row["filename"], "examples": row["examples"]}
        except Exception:  # the upload was deleted; the job trained on its own copy
            train_file = train_file or {"name": job["training_file"], "examples": None}
    if recorded.complete:
        losses = {
            "step": recorded.steps,
            "train_loss": recorded.final_train_loss,
            "best_val_loss": recorded.best_val_loss,
            "best_step": recorded.best_step,
        }
    else:  # live: read from the metrics log
        losses = _losses(read_metrics_since(run.run_dir)["entries"])
    method = (
        f"{recorded.method}/{recorded.adapter}"
        if manifest
        else f"{'dpo' if job and job['method']['type'] == 'dpo' else 'sft'}/lora"
    )
    return {
        "id": run.id,
        "name": run.name,
        "source": run.source,
        "adapter": run.adapter,
        "status": status,
        "method": method,
        "base_model": (manifest.base_model.name if manifest else None) or (job or {}).get("model"),
        "data": train_file,
        "created": (job or {}).get("created_at") or _unix(recorded.created),
        "finished": (job or {}).get("finished_at") or _unix(recorded.finished),
        "total_steps": (job or {}).get("total_steps") or recorded.steps,
        **losses,
        "error": (job or {}).get("error") or recorded.error,
        "eval": eval_headline(read_eval(run.run_dir)),
    }


def detail(run: FoundRun, store: Store) -> dict[str, Any]:
    """The run page: its row, plus hyperparameters, checkpoints and the manifest's own record."""
    out = summary(run, store)
    manifest = manifest_of(run.run_dir)
    if manifest:
        described = describe(RunRef(run.run_dir, manifest, run.adapter))
        out.update(
            config=described["config"],
            parameters=described["parameters"],
            timings=described["metrics"],
            data_hashes=described["data_hashes"],
            base=described["base_model"],
            weights=described["weights"],
        )
    elif run.job:  # not started yet: what the job will train with
        out.update(config={f"job.{k}": v for k, v in (run.job["hyperparameters"] or {}).items()})
    config_path = run.run_dir / CONFIG
    out["config_yaml"] = config_path.read_text(encoding="utf-8") if config_path.is_file() else None
    losses = {m.get("step"): m.get("loss") for m in read_metrics_since(run.run_dir)["entries"] if "loss" in m}
    out["checkpoints"] = [
        {"step": step, "saved": int(path.stat().st_mtime), "train_loss": losses.get(step)}
        for step, path in reversed(finished_checkpoints(run.run_dir))
    ]
    out["run_dir"] = str(run.run_dir)
    out["default_system_prompt"] = manifest.default_system_prompt if manifest else None
    return out
