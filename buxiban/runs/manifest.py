"""The run's manifest (`buxiban-run.json`), typed: the training loop writes it, every other stage
reads it through attributes. Reading upgrades a run written by an older buxiban, so no reader needs
its own idea of which keys exist or what they default to."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import RunDirError
from .files import MANIFEST, write_json_atomic

MANIFEST_FORMAT = 2  # 1: the untyped dict of buxiban ≤ 0.1 (the same keys, any of them possibly absent)


@dataclass
class BaseModelRecord:
    """The identity of the base model a run was trained on (models.load.ModelSource, as saved)."""

    spec: str = ""
    kind: str = ""
    path: str = ""
    name: str = "?"
    fingerprint: str = ""


@dataclass
class Manifest:
    status: str = "running"  # running | complete | failed
    method: str = "sft"
    adapter: str = "lora"
    created: str | None = None
    finished: str | None = None
    base_model: BaseModelRecord = field(default_factory=BaseModelRecord)
    trust_remote_code: bool = False
    data_hashes: dict[str, str] = field(default_factory=dict)
    parameters: dict[str, int] = field(default_factory=dict)
    data: dict[str, Any] = field(
        default_factory=dict
    )  # {"train": {"path", "examples"|"pairs", ...}, "validation": ...}
    default_system_prompt: str | None = None
    template: dict[str, str] | None = None  # the chat template trained with: name, origin, sha256, text
    dpo: dict[str, Any] | None = None
    # learning_rate, epochs, batch_size: {"value", "auto", "reason"} (train/auto.py)
    hyperparameters: dict[str, Any] | None = None
    resumed_from: str | None = None
    weights: str = "adapter"  # adapter | model | trained.safetensors: where the trained weights are
    steps: int | None = None
    train_seconds: float | None = None
    final_train_loss: float | None = None
    final_val_loss: float | None = None
    best_val_loss: float | None = None
    best_step: int | None = None
    tokens_per_second: float | None = None
    utilization: dict[str, Any] | None = None
    error: str | None = None
    format: int = MANIFEST_FORMAT
    extra: dict[str, Any] = field(default_factory=dict)  # keys a newer buxiban wrote: kept, never lost

    @property
    def complete(self) -> bool:
        return self.status == "complete"

    def data_path(self, part: str) -> str | None:
        """The file a data part ("train", "validation") was read from, as the run recorded it."""
        entry = self.data.get(part)
        return entry.get("path") if isinstance(entry, dict) else None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        """Upgrade any earlier format: absent keys take their defaults, unknown ones go to `extra`."""
        if not isinstance(data, dict):
            raise RunDirError(f"a run manifest must be a JSON object, not {type(data).__name__}")
        known = {f.name for f in fields(cls)} - {"extra", "base_model", "format"}
        values = {key: data[key] for key in known if key in data}
        base = data.get("base_model") or {}
        base_fields = {f.name for f in fields(BaseModelRecord)}
        values["base_model"] = (
            BaseModelRecord(**{k: v for k, v in base.items() if k in base_fields})
            if isinstance(base, dict)
            else BaseModelRecord()
        )
        values["extra"] = {
            key: value
            for key, value in data.items()
            if key not in known and key not in ("base_model", "format", "extra")
        }
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        extra = data.pop("extra")
        return {**extra, **data}


def manifest_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / MANIFEST


def is_run_dir(path: str | Path) -> bool:
    return manifest_path(path).is_file()


def read_manifest(run_dir: str | Path) -> Manifest:
    path = manifest_path(run_dir)
    if not path.is_file():
        raise RunDirError(
            f"{run_dir} is not a buxiban run directory (no {MANIFEST}); pass the output_dir of `buxiban train`"
        )
    try:
        return Manifest.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, TypeError) as exc:
        raise RunDirError(f"{path} is not a readable run manifest ({exc}); the run directory is damaged") from exc


def write_manifest(run_dir: str | Path, manifest: Manifest) -> None:
    write_json_atomic(manifest_path(run_dir), manifest.to_dict())
