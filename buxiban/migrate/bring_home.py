"""One hosted job brought home: its files downloaded and checked, a held-out set chosen, its settings
mapped to a run config, and a record of all of it, in one folder:

    OUT/<job id>/migration.json      the record: source job, file ids and hashes, what was mapped and why
    OUT/<job id>/config.yaml         the local run (`buxiban train` takes it as it is)
    OUT/<job id>/data/               train.jsonl and validation.jsonl as downloaded (and a split, or
                                     the DPO references, when the held-out set needs them)
    OUT/<job id>/run/                the run, once trained

Everything is written into a hidden staging folder beside it and renamed into place only when every
download and check has passed: a refusal, a malformed file or a dropped connection leaves nothing
behind, and an existing migration is never written over. A process killed outright (SIGKILL, power
loss) cannot clean up, so its staging folder names the host and process, and the next migration into
the same folder removes those whose process is gone."""

from __future__ import annotations

import datetime
import os
import shutil
import socket
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .. import __version__
from ..errors import MigrateError
from ..runs import file_sha256, write_json_atomic, write_text_atomic
from .held_out import choose_held_out
from .job import SourceJob, check_id, parse_job
from .mapping import Mapping, local_suffix, map_job
from .source import Client, SourceError, printable

RECORD = "migration.json"
CONFIG = "config.yaml"
LISTED_PROBLEMS = 10
STAGING_TAG = "migrating"
STAGING_SUFFIX = ".partial"


@dataclass
class Options:
    out: Path
    model: str = "embedded"
    overrides: list[str] = field(default_factory=list)  # --set key=value, after the mapped settings
    max_file_bytes: int = 512 << 20
    key_env: str | None = None  # named in the record and the eval command, never its value
    dpo_from_run: str | None = None


@dataclass
class Migration:
    folder: Path
    record: dict[str, Any]
    job: SourceJob

    @property
    def config(self) -> Path:
        return self.folder / CONFIG

    @property
    def run_dir(self) -> Path:
        return self.folder / "run"


def bring_home(client: Client, job_id: str, options: Options, log: Callable[[str], None] = lambda _: None) -> Migration:
    check_id(job_id, "--job")
    _check_overrides(options.overrides)  # a typo in --set fails before anything is downloaded
    path = f"/fine_tuning/jobs/{job_id}"
    try:
        answer = client.get_json(path)
    except SourceError as exc:
        if exc.status == 404:
            raise MigrateError(
                f"the source has no job {job_id}: {exc}; `buxiban migrate` without --job lists the jobs it has"
            ) from None
        raise
    job = parse_job(answer, f"GET {client.base_url}{path}")
    if job.id != job_id:
        raise MigrateError(f"asked the source for job {job_id} and it answered job {printable(job.id, 80)}")
    _check_parent(job, options)
    final = options.out / job.id
    if final.exists():
        raise MigrateError(
            f"{final} already exists: job {job.id} was migrated before; move it away or pass another --out"
        )
    made: list[Path] = []
    staging = None
    try:
        made = _make_dirs(options.out)
        _remove_abandoned_staging(options.out, log)
        staging = Path(tempfile.mkdtemp(prefix=_staging_prefix(os.getpid()), suffix=STAGING_SUFFIX, dir=options.out))
        record = _fill(client, job, staging, final, options, log)
        os.rename(staging, final)
    except BaseException as exc:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        for folder in reversed(made):  # folders this call made, left empty by the failure
            try:
                folder.rmdir()
            except OSError:
                break
        if isinstance(exc, OSError):  # a full disk or an unwritable --out: said plainly, not as a traceback
            raise MigrateError(
                f"cannot write the migration of {job.id} under {options.out}: {exc.strerror or exc}; nothing was written"
            ) from exc
        raise
    return Migration(final, record, job)


def _host_prefix() -> str:
    # the host keeps a process id from another machine sharing the folder from looking dead here
    return f".{STAGING_TAG}-{socket.gethostname()}-"


def _staging_prefix(pid: int) -> str:
    return f"{_host_prefix()}{pid}-"


def _remove_abandoned_staging(out: Path, log: Callable[[str], None]) -> None:
    """Staging folders of this host whose process no longer runs: a killed migration's leftovers."""
    host_prefix = _host_prefix()
    for folder in out.glob(f"{host_prefix}*{STAGING_SUFFIX}"):
        pid_text = folder.name[len(host_prefix) :].split("-", 1)[0]
        if not pid_text.isdigit() or _process_alive(int(pid_text)) or folder.is_symlink():
            continue
        shutil.rmtree(folder, ignore_errors=True)
        log(f"removed {folder.name}, left by a migration that was killed (process {pid_text})")


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def _fill(
    client: Client, job: SourceJob, staging: Path, final: Path, options: Options, log: Callable[[str], None]
) -> dict[str, Any]:
    data = staging / "data"
    data.mkdir()
    kind = "preference" if job.method == "dpo" else "chat"
    files = {"training": _fetch(client, job, "training_file", data / "train.jsonl", kind, options, log)}
    files["validation"] = (
        _fetch(client, job, "validation_file", data / "validation.jsonl", kind, options, log)
        if job.validation_file
        else None
    )
    held_out, train_file = choose_held_out(job, data, files, log)
    source, parameters = _local_base(options.model)
    mapped = map_job(job, options.model, source.name, parameters, _examples(files, train_file))
    _data_settings(mapped, job, held_out, train_file, final, options)
    overrides = [*mapped.overrides, *options.overrides]
    config_text = _config_text(job, overrides)
    write_text_atomic(staging / CONFIG, config_text)
    _check_config(staging / CONFIG)
    held = _relative(held_out, staging)
    key_env = options.key_env if client.key else None
    record = {
        "format": 1,
        "migrated_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "buxiban_version": __version__,
        "source": {"base_url": client.base_url, "key_env": key_env, "job": job.to_dict()},
        "files": files,
        "held_out": held,
        "mapping": mapped.settings,
        "local": {
            "base_model": {"spec": options.model, "name": source.name, "parameters": parameters},
            "config": CONFIG,
            "run_dir": "run",
            "train_file": str(Path(train_file).relative_to(staging)),
            "overrides_given": list(options.overrides),
        },
        "next": next_commands(client.base_url, job, final, held["path"] if held else None, key_env),
    }
    write_json_atomic(staging / RECORD, record)
    return record


def _fetch(
    client: Client, job: SourceJob, role: str, dest: Path, kind: str, options: Options, log: Callable[[str], None]
) -> dict[str, Any]:
    """One of the job's files: its metadata, its content, and `data check`, named by the source's id."""
    file_id = getattr(job, role)
    try:
        meta = client.get_json(f"/files/{file_id}")
        size = client.download(f"/files/{file_id}/content", dest, options.max_file_bytes)
    except SourceError as exc:
        if exc.status == 404:
            raise MigrateError(
                f"job {job.id}'s {role} {file_id} was deleted at the source ({exc}), so its data cannot be "
                "downloaded; nothing was written. Train on the original file instead: `buxiban train` with "
                "data.train=YOUR_COPY, or upload it to `buxiban serve` and create the job there"
            ) from None
        raise
    name = printable(meta.get("filename") if isinstance(meta, dict) else None, 120) or file_id
    log(f"downloaded {role} {file_id} ({name}): {size:,} bytes")
    report = _check(dest, f"{file_id} ({name})", kind, role, job)
    return {
        "id": file_id,
        "filename": name,
        "bytes": size,
        "sha256": file_sha256(dest),
        "path": f"data/{dest.name}",
        "kind": report.kind,
        "examples": report.stats.get("examples", 0),
        # the size advice is for what trains; a validation file is small on purpose
        "findings": [str(f) for f in report.findings if role == "training_file" or f.kind != "too little data"],
    }


def _check(path: Path, label: str, kind: str, role: str, job: SourceJob):
    from ..data.check import check_file

    report = check_file(path, tokenizer=None, stop_after=1000)
    if report.problems:
        shown = [str(p).replace(str(path), label) for p in list(report.problems)[:LISTED_PROBLEMS]]
        more = len(report.problems) - len(shown)
        raise MigrateError(
            f"the source served {role} {label} malformed: {len(report.problems)} problem(s) by `buxiban data check`; "
            "nothing was written: " + "; ".join(shown) + (f"; and {more} more" if more else "")
        )
    if report.kind != kind:
        raise MigrateError(
            f"job {job.id} is a {job.method} job but its {role} {label} holds {report.kind} data; "
            f"a {job.method} job trains on {'preference pairs' if kind == 'preference' else 'chat conversations'}; "
            "nothing was written"
        )
    if not report.stats.get("examples"):
        raise MigrateError(f"the source served {role} {label} empty; nothing was written")
    return report


def _examples(files: dict, train_file: Path) -> int:
    if train_file.name == "train.jsonl" and train_file.parent.name == "data":
        return files["training"]["examples"]
    return sum(1 for line in train_file.read_text(encoding="utf-8").splitlines() if line.strip())


def _local_base(spec: str):
    """The local base model's identity and size (counted on the meta device: no weights read)."""
    from ..config import load_config
    from ..models.load import resolve
    from ..plan.memory import parameter_counts
    from ..train.auto import base_parameters

    source = resolve(spec)
    config = load_config(None, [f"model={spec}", "data.train=unused.jsonl"])
    _, counts = parameter_counts(source.path, "lora", config)
    return source, base_parameters("lora", counts.trainable, counts.total)


def _data_settings(
    mapped: Mapping, job: SourceJob, held_out: dict | None, train_file: Path, final: Path, options: Options
) -> None:
    where = final / "data"
    trained_on = str(where / ("split/train.jsonl" if train_file.parent.name == "split" else "train.jsonl"))
    mapped.overrides += [f"data.train={trained_on}", f"output_dir={final / 'run'}"]
    if job.validation_file:
        mapped.set(
            "validation_file",
            job.validation_file,
            f"{where / 'validation.jsonl'}",
            "validation loss each epoch, as on the source; early stopping stays off, so it chooses nothing",
            f"data.validation={where / 'validation.jsonl'}",
        )
    else:
        mapped.set(
            "validation_file",
            None,
            None,
            "none at the source: every training example trains, as there",
            "data.validation_fraction=0",
        )
    if held_out is not None and held_out["from"] == "split":
        mapped.settings["training_file"] = {
            "source": job.training_file,
            "local": trained_on,
            "reason": "the training file less the held-out split",
        }
    if options.dpo_from_run:
        mapped.set(
            "parent",
            job.model,
            options.dpo_from_run,
            "the hosted DPO job continued a fine-tune; its local counterpart continues that run",
            f"dpo.from_run={options.dpo_from_run}",
        )


def _check_parent(job: SourceJob, options: Options) -> None:
    if job.method == "dpo" and job.model.startswith("ft:") and not options.dpo_from_run:
        raise MigrateError(
            f"job {job.id} continues the hosted fine-tune {job.model} with DPO: migrate the job that made it "
            "first, then pass its local run with --dpo-from-run MIGRATIONS/<that job>/run"
        )


def _check_overrides(overrides: list[str]) -> None:
    from ..config import load_config

    load_config(None, ["data.train=unused.jsonl", *overrides])


def _config_text(job: SourceJob, overrides: list[str]) -> str:
    tree: dict[str, Any] = {}
    for item in overrides:
        key, _, value = item.partition("=")
        node = tree
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = yaml.safe_load(value) if value.strip() else ""
    head = (
        f"# buxiban run config for hosted job {job.id}, written by `buxiban migrate`\n"
        f"# what each setting came from, and why: {RECORD} beside this file\n"
    )
    return head + yaml.safe_dump(tree, sort_keys=False, allow_unicode=True)


def _check_config(path: Path) -> None:
    from ..config import load_config

    load_config(path)


def _relative(held_out: dict | None, staging: Path) -> dict | None:
    if held_out is None:
        return None
    return {**held_out, "path": str(Path(held_out["path"]).relative_to(staging))}


def _make_dirs(folder: Path) -> list[Path]:
    """Create `folder` and its missing parents; return the ones made, outermost first."""
    missing = [p for p in [folder, *folder.parents] if not p.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    return list(reversed(missing))


def next_commands(base_url: str, job: SourceJob, final: Path, test: str | None, key_env: str | None) -> dict[str, str]:
    """The commands that train the run, compare it with the hosted model on the held-out set `test`
    (relative to the folder) and serve it under the old name."""
    commands = {"train": f"buxiban train {final / CONFIG}"}
    name = local_suffix(job.suffix) or job.id
    if job.fine_tuned_model and test:
        from ..plan.hosted import load_prices
        from ..plan.lifecycle import table_name

        key = f",key_env={key_env}" if key_env else ""
        priced = table_name(job.model, load_prices().models)
        price = f",price={priced}" if priced else ""
        # --price-per-hour is the user's own number (their machine's), so the command leaves it to them
        commands["eval"] = (
            f"buxiban eval {final / 'run'} --test {final / test} "
            f"--endpoint hosted={base_url},model={job.fine_tuned_model}{key}{price}"
        )
    serve = f"buxiban serve --adapter {name}={final / 'run'}"
    if job.fine_tuned_model:
        serve += f" --alias {job.fine_tuned_model}={name}"
    commands["serve"] = serve
    return commands
