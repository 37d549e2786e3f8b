"""`buxiban serve`: the OpenAI-compatible server. Errors travel up as exceptions to cli.main."""

from __future__ import annotations

import os
import sys

from ..errors import ServeError

API_KEY_ENV = "BUXIBAN_API_KEY"


def add_serve_commands(commands) -> None:
    serve = commands.add_parser(
        "serve", help="OpenAI-compatible API: chat with adapters, upload files, run fine-tuning jobs"
    )
    serve.add_argument("--model", default="embedded", help="base model spec (default: embedded)")
    serve.add_argument(
        "--template",
        default="auto",
        help="the base model's chat template: auto (default), a family (chatml, llama3, gemma, phi3, granite, mistral) or a .jinja file; adapters trained with another are refused",
    )
    serve.add_argument(
        "--home",
        help="where files, jobs and the adapter registry live (default: $BUXIBAN_HOME or ~/.local/share/buxiban)",
    )
    serve.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1; any other needs a key)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a Host name this server answers besides the loopback names and --host (repeatable); "
        "other Host headers get 403, which stops DNS-rebinding pages",
    )
    serve.add_argument(
        "--api-key",
        default=os.environ.get(API_KEY_ENV) or None,
        help=f"require 'Authorization: Bearer KEY' on every route but /health (default: ${API_KEY_ENV})",
    )
    serve.add_argument(
        "--adapter",
        action="append",
        default=[],
        metavar="NAME=RUN_DIR",
        help="register a finished run under NAME before serving (repeatable)",
    )
    serve.add_argument(
        "--alias",
        action="append",
        default=[],
        metavar="OLD_NAME=MODEL",
        help="answer requests for OLD_NAME with MODEL, a registered adapter or the base, so client code keeps "
        "its model name, e.g. --alias ft:gpt-4o-mini:acme::abc=acme (repeatable)",
    )
    serve.add_argument(
        "--queue-size", type=int, default=16, help="generation requests that may wait before 429 (default 16)"
    )
    serve.add_argument("--max-body-mb", type=float, default=8.0, help="request body cap for JSON routes (default 8)")
    serve.add_argument("--max-upload-mb", type=float, default=1024.0, help="upload cap for /v1/files (default 1024)")
    serve.add_argument(
        "--threads",
        type=int,
        help="CPU threads for generation (default: all cores); fewer leaves "
        "room for a fine-tuning job, e.g. --threads 1 --train-set train.threads=1",
    )
    serve.add_argument(
        "--train-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override for every fine-tuning job, e.g. train.threads=1 (repeatable)",
    )
    serve.add_argument(
        "--runs",
        action="append",
        default=[],
        metavar="DIR",
        help="a folder of `buxiban train` runs (e.g. runs/) the dashboard lists too (repeatable)",
    )
    serve.add_argument(
        "--rag",
        action="append",
        default=[],
        metavar="NAME=INDEX",
        help="a `buxiban rag index` file chat requests and the playground can retrieve from (repeatable)",
    )
    serve.set_defaults(handler=cmd_serve)


def settings_from_args(args):
    from ..serve.app import ServeSettings
    from ..serve.safety import Limits

    adapters = _named(args.adapter, "--adapter", "NAME=RUN_DIR")
    rag = _named(args.rag, "--rag", "NAME=INDEX (e.g. docs=docs.db)")
    aliases = _aliases(args.alias)
    for item in args.train_set:
        if "=" not in item:
            raise ServeError(f"--train-set {item!r} is not KEY=VALUE (e.g. train.threads=1)")
    if args.threads is not None and args.threads < 1:
        raise ServeError(f"--threads is {args.threads}; use at least 1")
    if args.queue_size < 1:
        raise ServeError(f"--queue-size is {args.queue_size}; use at least 1")
    limits = Limits(
        max_body_bytes=int(args.max_body_mb * (1 << 20)), max_upload_bytes=int(args.max_upload_mb * (1 << 20))
    )
    return ServeSettings(
        model=args.model,
        template=args.template,
        home=args.home,
        host=args.host,
        port=args.port,
        allowed_hosts=args.allowed_host,
        api_key=args.api_key,
        limits=limits,
        queue_size=args.queue_size,
        adapters=adapters,
        train_overrides=args.train_set,
        threads=args.threads,
        runs=args.runs,
        rag=rag,
        aliases=aliases,
    )


def _named(items: list[str], flag: str, shape: str) -> dict[str, str]:
    named = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise ServeError(f"{flag} {item!r} is not {shape}")
        named[name] = value
    return named


def _aliases(items: list[str]) -> dict[str, str]:
    """OLD=MODEL split at the last '=': a hosted model's name is the part that may be unusual, while
    MODEL is a registered name, which never holds '='."""
    aliases = {}
    for item in items:
        old, sep, target = item.rpartition("=")
        if not sep or not old or not target:
            raise ServeError(f"--alias {item!r} is not OLD_NAME=MODEL (e.g. ft:gpt-4o-mini:acme::abc=acme)")
        if old in aliases and aliases[old] != target:
            raise ServeError(f"--alias {old} is given twice, for {aliases[old]} and for {target}; keep one")
        aliases[old] = target
    return aliases


def cmd_serve(args) -> int:
    from ..serve.app import serve
    from ..serve.safety import check_bind

    settings = settings_from_args(args)
    check_bind(settings.host, settings.api_key)  # before minutes of model loading

    def ready(url: str) -> None:
        print(
            f"buxiban serving {settings.model} at {url}" + (" (API key required)" if settings.api_key else ""),
            flush=True,
        )
        print(f'  from openai import OpenAI; client = OpenAI(base_url="{url}", api_key="...")', flush=True)
        print(f"dashboard: {dashboard_url(settings.host, settings.port)}", flush=True)

    print("loading the model...", file=sys.stderr, flush=True)
    serve(settings, on_ready=ready)
    return 0


def dashboard_url(host: str, port: int) -> str:
    """Where a browser on this machine opens the dashboard: a wildcard bind is reached via loopback."""
    shown = (
        "127.0.0.1"
        if host in ("0.0.0.0", "", "::", "[::]")
        else (f"[{host}]" if ":" in host and not host.startswith("[") else host)
    )
    return f"http://{shown}:{port}/ui/"
