"""What `buxiban adapters show` reports about a run, and removal that can only delete buxiban runs."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml

from ..errors import AdapterError
from ..runs import MANIFEST, is_run_dir
from .merge import RunRef
from .registry import AdapterEntry, Registry

# the config keys that say how a run differs from another; the rest is in RUN/config.yaml
CONFIG_KEYS = {
    "train": ("epochs", "max_steps", "batch_size", "grad_accum", "learning_rate", "lr_schedule", "precision", "seed"),
    "lora": ("r", "alpha", "dropout", "target_modules"),
    "freeze": ("layers", "train_head"),
    "dpo": ("beta", "from_run", "sft_weight"),
}


def key_config(run_dir: Path, adapter: str, method: str) -> dict[str, Any]:
    path = run_dir / "config.yaml"
    config = yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else {}
    wanted = (
        ["train"]
        + (["lora"] if adapter in ("lora", "dora", "qlora") else [])
        + (["freeze"] if adapter == "freeze" else [])
        + (["dpo"] if method == "dpo" else [])
    )
    picked = {
        f"{section}.{key}": config[section][key]
        for section in wanted
        for key in CONFIG_KEYS[section]
        if key in (config.get(section) or {})
    }
    return {"model": config.get("model"), **picked} if config else {}


def eval_summary(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / "eval" / "eval.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8")).get("summary")


def describe(ref: RunRef) -> dict[str, Any]:
    """Base model identity, the key config, data hashes, final metrics and eval scores of a run."""
    m = ref.manifest
    return {
        "name": ref.name,
        "run_dir": str(ref.run_dir),
        "status": m.status,
        "method": m.method,
        "adapter": ref.adapter,
        "weights": ref.weights,
        "base_model": asdict(m.base_model),
        "config": key_config(ref.run_dir, ref.adapter, m.method),
        "data_hashes": m.data_hashes,
        "parameters": m.parameters,
        "metrics": {
            key: getattr(m, key)
            for key in (
                "steps",
                "final_train_loss",
                "final_val_loss",
                "best_val_loss",
                "best_step",
                "tokens_per_second",
                "train_seconds",
            )
        },
        "created": m.created,
        "finished": m.finished,
        "eval": eval_summary(ref.run_dir),
    }


def deletable_run_dir(entry: AdapterEntry, registry: Registry) -> Path:
    """The run directory, if and only if it is safe to delete: a real directory (not a link) that
    holds a buxiban manifest, and no other registered name still points at it."""
    run_dir = entry.run_dir
    if run_dir.is_symlink() or not run_dir.is_dir():
        raise AdapterError(f"{run_dir} is not a directory (missing or a link); forget the name without --delete-files")
    if not is_run_dir(run_dir):
        raise AdapterError(
            f"{run_dir} is not a buxiban run directory (no {MANIFEST}); refusing to delete it. "
            "Forget the name without --delete-files and delete the files yourself if you mean to"
        )
    resolved = run_dir.resolve()
    if resolved in (Path.home().resolve(), Path(resolved.anchor), registry.root.resolve()):
        raise AdapterError(f"refusing to delete {resolved}")
    others = [e.name for e in registry.list() if e.name != entry.name and e.run_dir.resolve() == resolved]
    if others:
        raise AdapterError(
            f"{run_dir} is also registered as {', '.join(others)}; remove those names first "
            "or forget this one without --delete-files"
        )
    return resolved


def remove(registry: Registry, name: str, delete_files: bool = False) -> tuple[AdapterEntry, bool]:
    """Forget the name; with delete_files, also delete its run directory after every check passed."""
    entry = registry.get(name)
    run_dir = deletable_run_dir(entry, registry) if delete_files else None
    registry.remove(name)
    if run_dir is not None:
        shutil.rmtree(run_dir)
    return entry, run_dir is not None
