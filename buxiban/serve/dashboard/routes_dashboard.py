"""The dashboard: its pages (plain HTML, CSS and JS in ui/, served at /ui/) and the JSON routes they poll.

GET  /                             redirects to /ui/
GET  /ui/...                       the pages; no key needed, they hold no data (the API calls do)
GET  /api/info                     the served base model
GET  /api/runs                     every run: fine-tuning jobs, registered adapters, --runs folders
GET  /api/run?id=                  one run: hyperparameters, checkpoints, evaluation, job events
GET  /api/run/metrics?id=&since=   metrics.jsonl from a line on: the live loss curves
POST /api/run/eval                 evaluate a run against its base on a held-out file, in the background
GET  /api/compare?id=&id=          evaluations of runs side by side; what each fixed and broke
GET  /api/data/sources             the files the data page can check
GET  /api/data?source=             the data check report, token histogram and trained-token preview
POST /api/data/check               the same for a file in the request, stored nowhere
GET  /api/models                   what the playground can talk to, with each run's system prompt
GET  /api/rag                      the RAG indexes given with --rag (the playground then asks
                                   /v1/chat/completions with {"rag": {"index": NAME, "k": K}})
"""

from __future__ import annotations

import asyncio
import shutil
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from ...errors import ServeError
from ..api.catalog import served_models
from ..jsonbody import read_json, required_string
from ..metrics_log import read_metrics_since
from ..tuning.database import Store, new_id
from ..tuning.openai_objects import job_object
from . import found_runs as found
from .datareport import data_report
from .evalview import compare_runs, eval_view

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from ..app import ServeState

router = APIRouter(prefix="/api")
UI_DIR = Path(__file__).parent / "ui"
# Nothing the pages load or call may leave this server: the dashboard works offline, and a page
# that could reach elsewhere could leak the data it shows.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'"
)
EVENTS_SHOWN = 30


class Assets(StaticFiles):
    async def get_response(self, path, scope):
        response = await super().get_response(path, scope)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["Cache-Control"] = "no-cache"  # an upgraded server never runs yesterday's page script
        return response


def mount_ui(app) -> None:
    app.mount("/ui", Assets(directory=UI_DIR, html=True), name="ui")
    app.add_api_route("/", lambda: RedirectResponse("/ui/"), include_in_schema=False)


def _state(request: Request) -> ServeState:
    return request.app.state.serve


def _runs(request: Request) -> list[found.FoundRun]:
    state = _state(request)
    return found.discover(state.store, state.registry, state.settings.runs)


@router.get("/info")
def info(request: Request):
    state = _state(request)
    return {
        "model": state.pool.base_id,
        "spec": state.settings.model,
        "started": state.started,
        "runs_folders": [str(Path(f).resolve()) for f in state.settings.runs],
        "rag": sorted(state.settings.rag),
    }


@router.get("/runs")
def list_runs(request: Request):
    store = _state(request).store
    return {"runs": [found.summary(run, store) for run in _runs(request)]}


@router.get("/run")
def get_run(request: Request, id: str):
    state = _state(request)
    run = found.find(_runs(request), id)
    out = found.detail(run, state.store)
    out["job"] = job_object(run.job) if run.job else None
    out["events"] = state.store.list_events(run.job["id"])[:EVENTS_SHOWN] if run.job else []
    out["eval"] = eval_view(run.run_dir)
    out["eval_task"] = state.evals.status(run.run_dir)
    out["test_choices"] = _test_choices(state.store, run)
    return out


@router.get("/run/metrics")
def run_metrics(request: Request, id: str, since: int = 0):
    return read_metrics_since(found.find(_runs(request), id).run_dir, max(0, since))


def _run_file(run: found.FoundRun, part: str) -> Path | None:
    """The run's training or validation file, where it still exists: a job's own copy, or the path a
    `buxiban train` run recorded (relative to where it was trained, usually where the server runs)."""
    if run.job:
        path = run.run_dir.parent / f"{part}.jsonl"
    else:
        manifest = found.manifest_of(run.run_dir)
        path = Path((manifest.data_path(part) if manifest else None) or "")
    return path if path.name and path.is_file() else None


def _validation_file(run: found.FoundRun) -> Path | None:
    """Held-out conversations to evaluate on (a DPO run's are preference pairs, which eval cannot score)."""
    from ...data.check import detect_kind

    path = _run_file(run, "validation")
    return path if path is not None and detect_kind(path) == "chat" else None


def _test_choices(store: Store, run: found.FoundRun) -> list[dict]:
    choices = []
    validation = _validation_file(run)
    if validation is not None:
        choices.append({"value": "validation", "label": f"the run's validation file ({validation.name})"})
    choices += [
        {"value": row["id"], "label": f"{row['filename']} ({row['examples']} examples, uploaded)"}
        for row in store.list_files()
        if row["kind"] == "chat"
    ]
    return choices


@router.post("/run/eval")
async def start_eval(request: Request):
    state = _state(request)
    body = await read_json(request)
    run = found.find(_runs(request), required_string(body, "id"))
    manifest = found.manifest_of(run.run_dir)
    if manifest is None or not manifest.complete:
        raise ServeError(f"{run.name} has not finished training; evaluate it once it is complete", "id")
    test = required_string(body, "test")
    if test == "validation":
        path = _validation_file(run)
        if path is None:
            raise ServeError(f"{run.name} has no validation file; upload a held-out file and pick it", "test")
        label = f"validation ({path.name})"
    else:
        row = state.store.get_file(test)
        if row["kind"] != "chat":
            raise ServeError(f"{row['filename']} holds preference pairs; evaluation needs chat conversations", "test")
        path, label = state.store.file_path(test), row["filename"]
    return state.evals.submit(
        run.id,
        run.run_dir,
        path,
        label,
        shots=_whole(body, "shots", 3),
        forgetting=bool(body.get("forgetting", False)),
        limit=_whole(body, "limit", None),
    )


def _whole(body: dict, key: str, default: int | None) -> int | None:
    value = body.get(key, default)
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise ServeError(f"{key} must be a whole number, got {value!r}", key)


@router.get("/compare")
def compare(request: Request, id: list[str] = Query(default=[])):
    if not id:
        raise ServeError("pick at least one evaluated run: /api/compare?id=RUN&id=OTHER", "id")
    runs = _runs(request)
    return compare_runs([found.find(runs, run_id) for run_id in dict.fromkeys(id)])


# --- data ----------------------------------------------------------------------------------------


def _data_sources(request: Request) -> list[dict]:
    state = _state(request)
    sources = [
        {
            "id": row["id"],
            "label": row["filename"],
            "kind": row["kind"],
            "examples": row["examples"],
            "origin": "uploaded",
        }
        for row in state.store.list_files()
    ]
    for run in _runs(request):
        for part in ("train", "validation"):
            path = _run_file(run, part)
            if path is not None:
                sources.append(
                    {"id": f"run:{part}:{run.id}", "label": f"{run.name} · {part}", "origin": "run", "path": path}
                )
    return sources


@router.get("/data/sources")
def data_sources(request: Request):
    return {"sources": [{k: v for k, v in s.items() if k != "path"} for s in _data_sources(request)]}


@router.get("/data")
async def data(request: Request, source: str, max_length: int = 512):
    state = _state(request)
    if source.startswith("file-"):
        row = state.store.get_file(source)
        path, label = state.store.file_path(source), row["filename"]
    else:
        chosen = next((s for s in _data_sources(request) if s["id"] == source), None)
        if chosen is None:
            raise ServeError(f"no data source {source[:200]!r}; /api/data/sources lists them", "source")
        path, label = chosen["path"], chosen["path"].name  # lines are located in the file itself, train.jsonl:17
    return await asyncio.to_thread(data_report, path, label, _tokenizer(state), _max_length(max_length))


@router.post("/data/check")
async def check_upload(request: Request, max_length: int = 512):
    """Check a file without storing it: an upload to /v1/files refuses bad data, and this is where a
    user sees every problem in it, line by line."""
    state = _state(request)
    form = await request.form()
    upload = form.get("file")
    if upload is None or isinstance(upload, str):
        raise ServeError("send the data as the multipart field 'file'", "file")
    label = Path(upload.filename or "upload.jsonl").name[:255]
    staging = state.store.home / "files" / f"{new_id('check-')}.checking"
    try:
        with staging.open("wb") as out:
            shutil.copyfileobj(upload.file, out)
        return await asyncio.to_thread(
            data_report, staging, label, _tokenizer(state), _max_length(max_length), cache=False
        )
    finally:
        staging.unlink(missing_ok=True)


def _max_length(value: int) -> int:
    if not 16 <= value <= 1 << 20:
        raise ServeError(f"max_length is {value}; use 16 or more", "max_length")
    return value


_tokenizer_lock = threading.Lock()


def _tokenizer(state: ServeState) -> PreTrainedTokenizerBase:
    """A tokenizer of the dashboard's own: the model thread's may be mid-encode when a check starts."""
    with _tokenizer_lock:
        if state.data_tokenizer is None:
            from ...models.load import load_tokenizer

            state.data_tokenizer = load_tokenizer(state.pool.source)
        return state.data_tokenizer


# --- playground ----------------------------------------------------------------------------------


@router.get("/models")
def models(request: Request):
    state = _state(request)
    prompts = {entry.name: entry.manifest.default_system_prompt for entry in state.registry.list()}
    listed = served_models(state)
    for model in listed:
        model["buxiban"]["system_prompt"] = prompts.get(model["id"])
    return {"models": listed}


@router.get("/rag")
def rag_indexes(request: Request):
    return {
        "indexes": [{"name": name, "path": str(path)} for name, path in sorted(_state(request).settings.rag.items())]
    }
