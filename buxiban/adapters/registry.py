"""Adapters by name. A name points at a finished run directory; the server, `buxiban chat` and
`buxiban adapters` all resolve names here, so a model trained by a fine-tuning job is usable by
name everywhere at once.

    $BUXIBAN_HOME/adapters/<name>.json   {"name", "run_dir", "registered"}

The pointer, not a copy: runs can be hundreds of MB (full fine-tuning), and the run directory stays
the one self-describing record of how the model was made."""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import AdapterError, RunDirError
from ..runs import Manifest, read_manifest, write_json_atomic

# OpenAI's fine-tuned names look like ft:gpt-4o-mini:org:suffix:id, hence ':' is allowed. No '/',
# no leading dot and no '..': a name becomes a file name and must never leave the registry.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")


def buxiban_home() -> Path:
    """Where the registry and the server's files, jobs and database live."""
    if os.environ.get("BUXIBAN_HOME"):
        return Path(os.environ["BUXIBAN_HOME"])
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "buxiban"


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.match(name) or ".." in name:
        raise AdapterError(
            f"invalid adapter name {name!r}: use 1-128 letters, digits, '.', '_', ':' or '-', "
            "starting with a letter or digit, and no '..'"
        )
    return name


@dataclass(frozen=True)
class AdapterEntry:
    name: str
    run_dir: Path
    registered: float
    manifest: Manifest

    @property
    def base_model(self) -> str:
        return self.manifest.base_model.name

    @property
    def base_spec(self) -> str:
        return self.manifest.base_model.spec

    @property
    def weights(self) -> str:
        """adapter (LoRA/DoRA), model (full) or trained.safetensors (freeze)."""
        return self.manifest.weights

    @property
    def method(self) -> str:
        return f"{self.manifest.method}/{self.manifest.adapter}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "run_dir": str(self.run_dir),
            "registered": self.registered,
            "base_model": self.base_model,
            "weights": self.weights,
            "method": self.method,
            "status": self.manifest.status,
        }


class Registry:
    def __init__(self, home: str | Path | None = None):
        self.root = Path(home) if home is not None else buxiban_home()
        self.directory = self.root / "adapters"

    def _pointer(self, name: str) -> Path:
        return self.directory / f"{check_name(name)}.json"

    def register(self, name: str, run_dir: str | Path, replace: bool = False) -> AdapterEntry:
        """Only finished runs: a half-trained adapter served by name would be a silent error."""
        run_dir = Path(run_dir).resolve()
        try:
            manifest = read_manifest(run_dir)
        except RunDirError as exc:
            raise AdapterError(str(exc)) from exc
        if not manifest.complete:
            raise AdapterError(
                f"{run_dir} did not finish training (status: {manifest.status}); only complete runs can be registered"
            )
        pointer = self._pointer(name)
        if pointer.exists() and not replace:
            raise AdapterError(f"an adapter named {name!r} is already registered; pick another name or replace it")
        self.directory.mkdir(parents=True, exist_ok=True)
        registered = time.time()
        write_json_atomic(pointer, {"name": name, "run_dir": str(run_dir), "registered": registered})
        return AdapterEntry(name, run_dir, registered, manifest)

    def get(self, name: str) -> AdapterEntry:
        pointer = self._pointer(name)
        if not pointer.is_file():
            known = ", ".join(e.name for e in self.list()) or "none registered"
            raise AdapterError(f"no adapter named {name!r} (known: {known})")
        return self._read(pointer)

    def _read(self, pointer: Path) -> AdapterEntry:
        data = json.loads(pointer.read_text(encoding="utf-8"))
        run_dir = Path(data["run_dir"])
        try:
            manifest = read_manifest(run_dir)
        except RunDirError:
            manifest = Manifest(status="missing")  # the run was moved or deleted: still listed, so it can be removed
        return AdapterEntry(data["name"], run_dir, data.get("registered", 0.0), manifest)

    def list(self) -> list[AdapterEntry]:
        if not self.directory.is_dir():
            return []
        return sorted((self._read(p) for p in self.directory.glob("*.json")), key=lambda e: e.registered)

    def remove(self, name: str) -> AdapterEntry:
        """Forgets the name; the run directory itself is left alone (delete it yourself if you mean to)."""
        entry = self.get(name)
        self._pointer(name).unlink()
        return entry
