"""`buxiban migrate`: list the fine-tuning jobs of an OpenAI-compatible service, bring the chosen ones
home (files, settings, a record) and train them here or on a running `buxiban serve`. Errors travel
up to cli.main as exceptions."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

MAX_PAGES = 20  # of 100 jobs: a listing stops there, and says so


def add_migrate_commands(commands) -> None:
    migrate = commands.add_parser(
        "migrate",
        help="bring hosted fine-tuning jobs home: their data, settings and a record; train them here",
    )
    migrate.add_argument(
        "--base-url", help="the OpenAI-compatible API to migrate from (default https://api.openai.com/v1)"
    )
    migrate.add_argument(
        "--api-key-env",
        default="OPENAI_API_KEY",
        metavar="NAME",
        help="environment variable holding the source's API key (default OPENAI_API_KEY); never a key itself",
    )
    migrate.add_argument(
        "--job", action="append", default=[], metavar="ID", help="a job to migrate (repeatable); without it, list them"
    )
    migrate.add_argument("--out", default="migrations", help="where each job's folder goes (default migrations/)")
    migrate.add_argument("--model", default="embedded", help="the local base model (default embedded)")
    migrate.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="run config setting after the mapped ones, e.g. --set train.threads=1 (repeatable)",
    )
    migrate.add_argument(
        "--no-train", action="store_true", help="download, check and write the config only; train later"
    )
    migrate.add_argument(
        "--serve-url",
        metavar="URL",
        help="create the job on this running `buxiban serve` (e.g. http://127.0.0.1:8000/v1) instead of training here",
    )
    migrate.add_argument(
        "--serve-key-env",
        default="BUXIBAN_API_KEY",
        metavar="NAME",
        help="environment variable holding that server's key (default BUXIBAN_API_KEY)",
    )
    migrate.add_argument(
        "--dpo-from-run",
        metavar="RUN",
        help="for a DPO job that continued a hosted fine-tune: the local run migrated from that fine-tune",
    )
    migrate.add_argument(
        "--max-file-mb", type=float, default=512.0, help="refuse a source file larger than this (default 512)"
    )
    migrate.add_argument("--quiet", action="store_true", help="no training progress bar")
    migrate.add_argument("--json", action="store_true", help="print the result as JSON")
    migrate.set_defaults(handler=cmd_migrate)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def source_client(args):
    from ..errors import MigrateError
    from ..migrate.source import DEFAULT_BASE_URL, Client

    base_url = args.base_url or DEFAULT_BASE_URL
    key = os.environ.get(args.api_key_env) or None
    if key is None and base_url == DEFAULT_BASE_URL:
        raise MigrateError(
            f"set {args.api_key_env} to your OpenAI API key (or name another variable with --api-key-env); "
            "a key is never taken from the command line"
        )
    return Client(base_url, key, "the source", f"check the key in ${args.api_key_env}")


def cmd_migrate(args) -> int:
    from ..errors import MigrateError

    if args.max_file_mb <= 0:
        raise MigrateError(f"--max-file-mb {args.max_file_mb}: give a size in MB, e.g. 512")
    if args.serve_url and args.no_train:
        raise MigrateError("--serve-url creates a job that trains there; leave out --no-train")
    client = source_client(args)
    if not args.job:
        return list_jobs(client, args.json)
    from ..migrate.bring_home import Options, bring_home

    options = Options(
        Path(args.out),
        args.model,
        args.overrides,
        int(args.max_file_mb * (1 << 20)),
        args.api_key_env,
        args.dpo_from_run,
    )
    target = _serve_client(args) if args.serve_url else None
    done = []
    for job_id in args.job:
        migration = bring_home(client, job_id, options, _log)
        _log(f"job {migration.job.id} brought home to {migration.folder}")
        for name, entry in migration.record["files"].items():
            for finding in (entry or {}).get("findings", []):
                _log(f"  {name} file: {finding}")
        if target is not None:
            from ..migrate.to_serve import submit

            created = submit(target, migration)
            _log(f"created job {created['id']} on {target.base_url} (status {created.get('status')})")
        elif not args.no_train:
            train_migrated(migration, args.quiet)
        done.append(migration)
    if args.json:
        print(json.dumps([{"folder": str(m.folder), **m.record} for m in done], indent=2, ensure_ascii=False))
    else:
        for migration in done:
            print(summary(migration, trained=target is None and not args.no_train))
    return 0


def _serve_client(args):
    from ..migrate.source import Client

    return Client(
        args.serve_url,
        os.environ.get(args.serve_key_env) or None,
        "the local server",
        f"check the key in ${args.serve_key_env}",
    )


def list_jobs(client, as_json: bool) -> int:
    from ..migrate.job import job_line
    from ..migrate.source import printable

    jobs, after, more = [], None, False
    for _ in range(MAX_PAGES):
        page = client.get_json("/fine_tuning/jobs", limit=100, after=after)
        data = page.get("data") if isinstance(page, dict) else None
        if not isinstance(data, list):
            from ..errors import MigrateError

            raise MigrateError(f"the source's job list is not a list page: {printable(page, 120)}")
        jobs += [job_line(job) for job in data]
        more = bool(page.get("has_more")) and bool(data)
        if not more:
            break
        last = data[-1].get("id") if isinstance(data[-1], dict) else None
        if not isinstance(last, str) or last == after:  # a source that pages in circles is not followed
            break
        after = last
    if as_json:
        print(json.dumps({"base_url": client.base_url, "jobs": jobs, "truncated": more}, indent=2))
        return 0
    print(f"fine-tuning jobs at {client.base_url} ({len(jobs)}{', more not listed' if more else ''}):")
    for job in jobs:
        print(
            f"  {job['id']}  {job.get('status', '?')}  {job.get('method', '?')}  {job.get('model', '?')}"
            f" → {job.get('fine_tuned_model', '-')}  training {job.get('training_file', '-')}, "
            f"validation {job.get('validation_file', '-')}"
        )
        if "problem" in job:
            print(f"    cannot migrate: {job['problem']}")
    if jobs:
        print(
            "migrate one: buxiban migrate --job ID [--model embedded]  (add --base-url for a service other than OpenAI)"
        )
    return 0


def train_migrated(migration, quiet: bool) -> None:
    """Train the run here, then put the record into it: the run says which hosted job it replaces."""
    from ..config import load_config
    from ..errors import BuxibanError
    from ..migrate.bring_home import RECORD
    from ..runs import read_manifest, write_manifest

    config = load_config(migration.config)
    if config.method == "dpo":
        from ..train.dpo import train_dpo as train
    else:
        from ..train.sft import train_sft as train
    try:
        result = train(config, progress=not quiet, log=_log)
    except BuxibanError:
        _log(
            f"training failed; the migration is kept in {migration.folder}: fix the cause, then "
            f"`buxiban train {migration.config} --overwrite`"
        )
        raise
    shutil.copy2(migration.folder / RECORD, result.run_dir / RECORD)
    manifest = read_manifest(result.run_dir)
    manifest.extra["migrated_from"] = {
        "base_url": migration.record["source"]["base_url"],
        "job": migration.job.id,
        "fine_tuned_model": migration.job.fine_tuned_model,
        "record": RECORD,
    }
    write_manifest(result.run_dir, manifest)
    _log(f"trained {result.steps} steps in {result.seconds:.0f} s: final training loss {result.train_loss:.4f}")


def summary(migration, trained: bool) -> str:
    record, job = migration.record, migration.job
    lines = [
        f"{job.id} ({job.method}, {job.model} → {job.fine_tuned_model or 'no fine-tuned model'}): {migration.folder}"
    ]
    for name, setting in record["mapping"].items():
        lines.append(f"  {name}: {_shown(setting['source'])} → {_shown(setting['local'])}  ({setting['reason']})")
    held = record["held_out"]
    lines.append(
        f"  held-out set: {held['path']}, {held['examples']} examples ({held['note']})"
        if held
        else "  held-out set: none; give `buxiban eval` a --test file of conversations neither model trained on"
    )
    commands = record["next"]
    if not trained and "local_job" not in record:
        lines.append(f"  train: {commands['train']}")
    if "local_job" in record:
        lines.append(f"  local job: {record['local_job']['id']} on {record['local_job']['base_url']}")
    if "eval" in commands:
        lines.append(
            "  compare before the hosted model shuts down (add --price-per-hour USD, your machine's, for the "
            f"local cost per 1,000 requests): {commands['eval']}"
        )
    lines.append(f"  serve it under the old name: {commands['serve']}")
    return "\n".join(lines)


def _shown(value) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items())
    return "-" if value is None else str(value)
