"""Fold a trained run into one plain Hugging Face model directory.

LoRA and DoRA updates are added into the base weights (PEFT's merge_and_unload), freeze runs are the
base with the trained blocks put back, full runs are the trained model itself. The result loads with
`AutoModelForCausalLM.from_pretrained(out)` alone: no PEFT, no buxiban, so vLLM and TGI serve it too.

The merge happens in float32 (the dtype buxiban trains and loads in); the saved weights are then cast
to the base model's own dtype (its config.json `dtype`), so a bf16 base gives a bf16 merged model of
the same size. `dtype=` overrides that.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import AdapterError, RunDirError
from ..runs import MANIFEST, Manifest, is_run_dir, read_manifest, write_json_atomic
from .registry import NAME_PATTERN, Registry

DTYPES = ("auto", "float32", "float16", "bfloat16")
EXPORT_RECORD = "buxiban-export.json"


@dataclass(frozen=True)
class RunRef:
    """A run picked by registered name or by directory, with its manifest."""

    run_dir: Path
    manifest: Manifest
    name: str | None = None
    trust_remote_code: bool = False  # the command's --trust-remote-code, never the run's manifest

    @property
    def label(self) -> str:
        return self.name or self.run_dir.name

    @property
    def adapter(self) -> str:
        return self.manifest.adapter

    @property
    def weights(self) -> str:
        return self.manifest.weights


def resolve_run(name_or_run: str, registry: Registry | None = None, require_complete: bool = True) -> RunRef:
    """A directory holding a buxiban manifest wins over a registered name of the same spelling
    (a name cannot contain '/', so `./name` always means the directory). Merging and exporting need
    a finished run; describing one does not."""
    path = Path(name_or_run).expanduser()
    registry = registry or Registry()
    could_be_name = bool(NAME_PATTERN.match(name_or_run)) and ".." not in name_or_run
    if is_run_dir(path):
        ref = RunRef(path.resolve(), read_manifest(path))
    elif could_be_name and (not path.exists() or _is_registered(registry, name_or_run)):
        entry = registry.get(name_or_run)  # an unknown name fails here, listing the known ones
        ref = RunRef(entry.run_dir, entry.manifest, entry.name)
    else:
        raise AdapterError(
            f"'{name_or_run}' is neither a buxiban run directory (no {MANIFEST}) nor a registered "
            "adapter name; pass the output_dir of `buxiban train` or a name from `buxiban adapters list`"
        )
    if require_complete and not ref.manifest.complete:
        raise AdapterError(
            f"{ref.run_dir} did not finish training (status: {ref.manifest.status}); "
            "only complete runs can be merged or exported"
        )
    return ref


def _is_registered(registry: Registry, name: str) -> bool:
    try:
        registry.get(name)
    except AdapterError:
        return False
    return True


def merged_model(ref: RunRef):
    """The run's model with every trained change inside its own weights, and its tokenizer."""
    from ..runs.load import load_trained

    try:
        model, tokenizer, _ = load_trained(ref.run_dir, trust_remote_code=ref.trust_remote_code)
    except RunDirError as exc:
        raise AdapterError(str(exc)) from exc
    if ref.weights == "adapter":
        model = model.merge_and_unload(safe_merge=True)  # safe_merge: refuses to write NaN/inf into the weights
    model.eval()
    return model, tokenizer


def base_config(ref: RunRef) -> dict[str, Any]:
    """The base model's config.json as recorded by the run, or {} when it is no longer on disk."""
    config = Path(ref.manifest.base_model.path) / "config.json"
    try:
        return json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def base_dtype_name(ref: RunRef) -> str:
    """The dtype the base model ships in; float32 when its config says nothing."""
    data = base_config(ref)
    name = str(data.get("dtype") or data.get("torch_dtype") or "float32").replace("torch.", "")
    return name if name in DTYPES else "float32"


def choose_dtype(ref: RunRef, dtype: str) -> str:
    if dtype not in DTYPES:
        raise AdapterError(f"dtype '{dtype}' is not one of {', '.join(DTYPES)}")
    return base_dtype_name(ref) if dtype == "auto" else dtype


def prepare_output(out: Path, overwrite: bool) -> None:
    """Never write into, or over, something that is not an earlier export."""
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return
    if not overwrite:
        raise AdapterError(f"{out} already exists; choose another --out or pass --overwrite")
    if out.is_dir() and not (out / EXPORT_RECORD).is_file():
        raise AdapterError(f"{out} is not an earlier buxiban export (no {EXPORT_RECORD}); refusing to replace it")


def export_record(ref: RunRef, fmt: str, **extra: Any) -> dict[str, Any]:
    """Where an exported artifact came from, so it stays self-describing after it leaves the run."""
    return {
        "format": fmt,
        "run_dir": str(ref.run_dir),
        "name": ref.name,
        "adapter": ref.adapter,
        "base_model": asdict(ref.manifest.base_model),
        "data_hashes": ref.manifest.data_hashes,
        "exported": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **extra,
    }


def publish_directory(staging: Path, out: Path) -> None:
    """Swap the finished staging directory in, so a crash never leaves a half-written export at `out`."""
    if out.exists():
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    staging.rename(out)


def write_merged(ref: RunRef, out: str | Path, dtype: str = "auto", overwrite: bool = False) -> dict[str, Any]:
    """Write the merged model, its generation config and its tokenizer (chat template included)."""
    import torch

    out = Path(out).expanduser().resolve()
    dtype_name = choose_dtype(ref, dtype)
    prepare_output(out, overwrite)
    model, tokenizer = merged_model(ref)
    model = model.to(getattr(torch, dtype_name))
    # trained runs may record a local path or a cache dir as their origin; the merged model is its own
    model.config.name_or_path = out.name
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        model.save_pretrained(str(staging), safe_serialization=True)
        tokenizer.save_pretrained(str(staging))
        record = export_record(ref, "hf", dtype=dtype_name)
        write_json_atomic(staging / EXPORT_RECORD, record)
        publish_directory(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {**record, "out": str(out)}
