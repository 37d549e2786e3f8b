"""Where a resumed run continues, and the refusal to continue a run whose settings, data or base
model changed since it started (a resumed run must compute what the unbroken one would have)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from ..config import RunConfig
from ..errors import RunDirError
from ..runs import CONFIG, file_sha256, is_run_dir, read_manifest
from ..runs.checkpoints import is_complete_checkpoint
from .checkpoint import latest_checkpoint

# Keys that may change between a run and its resume without changing what is computed.
RESUME_MAY_CHANGE = {"train.threads", "output_dir", "train.tracking"}


def data_hashes(config: RunConfig) -> dict[str, str]:
    files = {
        "data.train": config.data.train,
        "data.validation": config.data.validation,
        "mix.general": config.mix.general if config.mix.general not in (None, "builtin") else None,
    }
    hashes = {key: file_sha256(path) for key, path in files.items() if path}
    if config.dpo.from_run:
        hashes["dpo.from_run"] = file_sha256(Path(config.dpo.from_run) / "adapter" / "adapter_model.safetensors")
    return hashes


def flatten(data: dict, prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def resume_point(config: RunConfig, out: Path, resume: str, force: bool, log: Callable[[str], None]) -> Path | None:
    path = latest_checkpoint(out) if resume == "auto" else Path(resume)
    if path is None:
        if is_run_dir(out) and read_manifest(out).complete:
            raise RunDirError(
                f"{out} holds a finished run and no checkpoint: nothing to resume "
                "(train into a new output_dir, or pass --overwrite to start over)"
            )
        log(f"no complete checkpoint in {out}: starting from the beginning")
        return None
    if not is_complete_checkpoint(path):
        raise RunDirError(f"{path} is not a complete checkpoint; use --resume auto to pick the newest complete one")
    run_dir = path.parent.parent
    saved = yaml.safe_load((run_dir / CONFIG).read_text(encoding="utf-8"))
    # a key added to the config since the run started counts as its default
    before, after = {**flatten(RunConfig().to_dict()), **flatten(saved)}, flatten(config.to_dict())
    changes = [
        f"  {key}: {before.get(key)!r} → {after.get(key)!r}"
        for key in sorted(set(before) | set(after))
        if before.get(key) != after.get(key) and key not in RESUME_MAY_CHANGE
    ]
    old_hashes = read_manifest(run_dir).data_hashes
    new_hashes = data_hashes(config)
    changes += [
        f"  {key}: the file's content changed ({old_hashes.get(key, 'none')[:19]}… → {new_hashes.get(key, 'none')[:19]}…)"
        for key in sorted(set(old_hashes) | set(new_hashes))
        if old_hashes.get(key) != new_hashes.get(key)
    ]
    if changes and not force:
        raise RunDirError(
            f"refusing to resume {path}: the run would continue with different settings than it "
            "started with:\n" + "\n".join(changes) + "\nrestore them, or pass --force to resume anyway"
        )
    if changes:
        log("warning: resuming with changes (--force):\n" + "\n".join(changes))
    return path


def check_same_base(out: Path, source, force: bool) -> None:
    saved = read_manifest(out).base_model.fingerprint
    if saved != source.fingerprint and not force:
        raise RunDirError(
            f"refusing to resume: the base model {source.spec} is not the one this run started with "
            f"({saved[:19]}… → {source.fingerprint[:19]}…); pass --force to resume anyway"
        )
