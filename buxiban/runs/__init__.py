"""The run directory, which train writes and every later stage reads: its files, its typed manifest,
its checkpoints' layout, and loading a finished run."""

from .files import (
    CONFIG,
    MANIFEST,
    METRICS,
    file_sha256,
    prepare_run_dir,
    read_metrics,
    write_json_atomic,
    write_text_atomic,
)
from .manifest import BaseModelRecord, Manifest, is_run_dir, read_manifest, write_manifest

__all__ = [
    "CONFIG",
    "MANIFEST",
    "METRICS",
    "BaseModelRecord",
    "Manifest",
    "file_sha256",
    "is_run_dir",
    "prepare_run_dir",
    "read_manifest",
    "read_metrics",
    "write_json_atomic",
    "write_manifest",
    "write_text_atomic",
]
