"""The files of a run directory, a self-describing record of one training run:

config.yaml          the resolved config (every default filled in)
buxiban-run.json     manifest: status, base model identity, data hashes, timings, final metrics
metrics.jsonl        one JSON object per optimizer step and per validation pass
adapter/             a LoRA/DoRA adapter in PEFT format (loads in PEFT and vLLM as is), or
model/               the whole model (full fine-tuning), or
trained.safetensors  the trained blocks alone (freeze)
checkpoints/         step-NNNNNNNN/ checkpoints for --resume, the last few kept
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from ..errors import RunDirError

CONFIG = "config.yaml"
MANIFEST = "buxiban-run.json"
METRICS = "metrics.jsonl"


def file_sha256(path: str | Path) -> str:
    """Cached per (path, size, mtime): a run hashes its data files for the manifest and again for
    the resume check, and a 1 GB file takes seconds to hash."""
    stat = os.stat(path)
    return _sha256_of(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _sha256_of(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return "sha256:" + digest.hexdigest()


def write_text_atomic(path: Path, text: str) -> None:
    """Readers (eval, a dashboard, a comparison of versions) never see a half-written file, and a crash
    mid-write leaves the previous version in place."""
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False))


def prepare_run_dir(path: Path, overwrite: bool) -> None:
    """Refuse to write over an earlier run unless told to: finished work is never lost by accident."""
    if path.exists() and any(path.iterdir()):
        if not overwrite:
            raise RunDirError(f"{path} already holds files; choose another output_dir=... or pass --overwrite")
        if not (path / MANIFEST).is_file():
            raise RunDirError(f"{path} is not empty and is not a buxiban run; refusing to delete it")
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / METRICS
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
