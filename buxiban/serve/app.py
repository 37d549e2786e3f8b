"""The OpenAI-compatible server: FastAPI app factory, shared state, and error bodies.

    GET  /health                       no key needed
    GET  /v1/models                    the base model and every registered adapter
    POST /v1/chat/completions          whole or streamed (SSE), model = base or adapter name
    POST /v1/completions
    /v1/files                          upload (validated), list, retrieve, content, delete
    /v1/fine_tuning/jobs               create, list, retrieve, cancel, events, checkpoints
    /ui/ and /api/...                  the dashboard and the JSON it polls (dashboard/routes_dashboard.py)

The routes live with their product: api/ (models and completions), tuning/ (files and jobs),
dashboard/ (pages and their JSON); this module builds the state they share and assembles the app.
"""

from __future__ import annotations

import logging
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..adapters.registry import Registry
from ..errors import AdapterError, BuxibanError, ServeError
from .api.catalog import aliases_to_base_checked, check_aliases
from .safety import Busy, Guard, Limits, allowed_hosts, check_bind, error_body

if TYPE_CHECKING:  # imported when the app is built: each loads torch, FastAPI or SQLite
    from transformers import PreTrainedTokenizerBase

    from .api.pool import ModelPool
    from .dashboard.eval_runner import EvalQueue
    from .tuning.database import Store
    from .tuning.job_worker import JobWorker

log = logging.getLogger(__name__)


@dataclass
class ServeSettings:
    model: str = "embedded"
    template: str = "auto"  # the base model's chat template (models/templates.py)
    home: Path | None = None  # None: buxiban_home(), shared with `buxiban adapters` and `buxiban chat`
    host: str = "127.0.0.1"
    port: int = 8000
    allowed_hosts: list[str] = field(default_factory=list)  # Host names besides loopback and `host`
    api_key: str | None = None
    limits: Limits = field(default_factory=Limits)
    queue_size: int = 16  # generation requests waiting for the model before new ones get 429
    adapters: dict[str, str] = field(default_factory=dict)  # name -> run dir, registered at start
    train_overrides: list[str] = field(default_factory=list)  # key=value added to every job's config
    threads: int | None = None  # torch threads for generation; None = torch's default (all cores)
    runs: list[str] = field(default_factory=list)  # folders of `buxiban train` runs the dashboard lists
    rag: dict[str, str] = field(
        default_factory=dict
    )  # name -> RAG index chat requests (and the playground) may retrieve from
    # old model name -> a registered adapter or the base: a client moved from a hosted fine-tune keeps its name
    aliases: dict[str, str] = field(default_factory=dict)


@dataclass
class ServeState:
    settings: ServeSettings
    store: Store
    registry: Registry
    pool: ModelPool
    worker: JobWorker
    started: int
    evals: EvalQueue  # evaluations started from the dashboard
    data_tokenizer: PreTrainedTokenizerBase | None = None  # the dashboard's own, loaded on its first data check


def open_state(settings: ServeSettings) -> ServeState:
    """Everything the routes share. Checks come first: a bad bind or adapter fails before the model loads."""
    from ..adapters.registry import buxiban_home
    from .api.pool import ModelPool
    from .dashboard.eval_runner import EvalQueue
    from .tuning.database import Store
    from .tuning.job_worker import JobWorker

    check_bind(settings.host, settings.api_key)
    check_dashboard_paths(settings)
    home = Path(settings.home) if settings.home else buxiban_home()
    registry = Registry(home)
    for name, run_dir in settings.adapters.items():
        registry.register(name, run_dir, replace=True)
    check_aliases(settings.aliases, registry)
    store = Store(home)
    if settings.threads:  # leave cores to a training job running beside the server
        import torch

        torch.set_num_threads(settings.threads)
    pool = ModelPool(settings.model, registry, settings.queue_size, settings.template)
    pool.model_aliases = aliases_to_base_checked(settings.aliases, registry, pool.aliases)
    # jobs train with the template the server renders with, so their adapters are servable here
    overrides = [f"template={settings.template}", *settings.train_overrides]
    worker = JobWorker(store, registry, settings.model, pool.base_id, pool.aliases, pool.parameters, overrides)
    return ServeState(settings, store, registry, pool, worker, int(time.time()), EvalQueue(settings.threads))


def check_dashboard_paths(settings: ServeSettings) -> None:
    """Every --runs folder and --rag index must exist: a typo should fail now, not show an empty page."""
    missing = [f"--runs {folder}: no such folder" for folder in settings.runs if not Path(folder).is_dir()]
    missing += [
        f"--rag {name}={path}: no such index file (build it with `buxiban rag index DOCS --out {path}`)"
        for name, path in settings.rag.items()
        if not Path(path).is_file()
    ]
    if missing:
        raise ServeError("; ".join(missing))


def create_app(settings: ServeSettings, state: ServeState | None = None):
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse

    from .api.routes_chat import router as chat_router
    from .dashboard.routes_dashboard import mount_ui
    from .dashboard.routes_dashboard import router as dashboard_router
    from .tuning.routes_tuning import router as tuning_router

    state = state or open_state(settings)

    @asynccontextmanager
    async def lifespan(_app):
        state.worker.start()
        state.evals.start()
        try:
            yield
        finally:
            state.evals.stop()
            state.worker.stop()
            state.pool.close()

    app = FastAPI(title="buxiban", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.serve = state
    app.include_router(chat_router)
    app.include_router(tuning_router)
    app.include_router(dashboard_router)
    mount_ui(app)

    @app.get("/health")
    def health():
        """503 when a worker thread has died: a load balancer then stops sending, and an operator sees
        why nothing runs, instead of an "ok" over a server whose jobs wait forever."""
        pool = state.pool
        workers = {"jobs": state.worker.alive, "evaluations": state.evals.alive}
        body = {
            "status": "ok" if all(workers.values()) else "unhealthy",
            "workers": {name: "alive" if alive else "dead" for name, alive in workers.items()},
            "model": pool.base_id,
            "queued_requests": pool.queue.qsize(),
            "adapters_attached": len(pool.attached),
            "served": pool.served,
        }
        return JSONResponse(body, status_code=200 if all(workers.values()) else 503)

    @app.exception_handler(ServeError)
    async def refused(_request: Request, exc: ServeError):
        headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, Busy) else None
        kind = "rate_limit_error" if isinstance(exc, Busy) else "invalid_request_error"
        return JSONResponse(error_body(str(exc), exc.code, exc.param, kind), status_code=exc.status, headers=headers)

    @app.exception_handler(AdapterError)
    async def bad_name(_request: Request, exc: AdapterError):
        return JSONResponse(error_body(str(exc), "invalid_name", "model"), status_code=400)

    @app.exception_handler(BuxibanError)
    async def library_error(_request: Request, exc: BuxibanError):
        return JSONResponse(error_body(str(exc), "invalid_request_error"), status_code=400)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ())[1:])
        return JSONResponse(
            error_body(f"{where}: {first.get('msg', 'invalid request')}", "invalid_request_error", where),
            status_code=400,
        )

    @app.exception_handler(404)
    async def not_found(_request: Request, _exc):
        return JSONResponse(error_body(f"no route {_request.method} {_request.url.path}", "not_found"), status_code=404)

    return Guard(app, settings.api_key, settings.limits, allowed_hosts(settings.host, tuple(settings.allowed_hosts)))


def serve(settings: ServeSettings, on_ready=None) -> None:
    """Load the model, then serve until interrupted; `on_ready(url)` is told where, before the port opens."""
    import uvicorn

    app = create_app(settings)
    if on_ready is not None:
        on_ready(f"http://{settings.host}:{settings.port}/v1")
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning", access_log=False)
