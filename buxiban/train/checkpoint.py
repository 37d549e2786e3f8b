"""Checkpoints that survive anything: a crash, a full disk or `kill -9` in the middle of writing.

Each checkpoint is written to a temporary directory, every file fsynced, a COMPLETE marker written
last, then the directory renamed into place and its parent fsynced. A directory without the marker
is an interrupted write: resuming ignores and removes it, and the previous checkpoint is used.

A checkpoint holds the trained tensors, the optimizer, every RNG state (Python, NumPy, torch, CUDA)
and the step. The data order and the learning rate are pure functions of the step, so the step is
the data-order position: a resumed run continues bit for bit where it stopped.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import RunDirError
from ..models.adapt import load_trainable_state
from ..runs.checkpoints import COMPLETE, STAGING, checkpoint_name, checkpoint_root, is_complete_checkpoint


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def rng_state() -> dict[str, Any]:
    """Tensors, numbers and strings only, so that `torch.load(weights_only=True)` reads it back."""
    name, keys, position, has_gauss, gauss = np.random.get_state()
    numpy_state = {
        "name": name,
        "keys": torch.from_numpy(keys.astype(np.int64)),
        "position": int(position),
        "has_gauss": int(has_gauss),
        "gauss": float(gauss),
    }
    state = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    saved = state["numpy"]
    if isinstance(saved, dict):
        keys = saved["keys"].numpy().astype(np.uint32)
        np.random.set_state((saved["name"], keys, saved["position"], saved["has_gauss"], saved["gauss"]))
    else:  # a checkpoint from before, with NumPy's own tuple (read under safe_load's NumPy globals)
        np.random.set_state(saved)
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    run_dir: Path,
    step: int,
    trained: dict[str, torch.Tensor],
    optimizer_state: dict[str, Any],
    state: dict[str, Any],
    keep: int,
    rng_states: list[dict[str, Any]] | None = None,
) -> Path:
    """`trained` and `optimizer_state` are whole (a sharded run gathers them first); `rng_states`
    holds one entry per process (each consumes its own dropout randomness), by default this one's."""
    from safetensors.torch import save_file

    root = checkpoint_root(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / checkpoint_name(step)
    staging = Path(tempfile.mkdtemp(prefix=final.name + STAGING, dir=root))
    save_file(trained, str(staging / "trainable.safetensors"))
    torch.save(optimizer_state, staging / "optimizer.pt")
    torch.save(rng_states or [rng_state()], staging / "rng.pt")
    (staging / "state.json").write_text(json.dumps({"step": step, **state}, indent=2))
    for file in staging.iterdir():
        _fsync_file(file)
    (staging / COMPLETE).write_text("ok\n")
    _fsync_file(staging / COMPLETE)
    _fsync_dir(staging)
    if final.exists():  # the same step saved before a crash: the new copy replaces it whole
        shutil.rmtree(final)
    os.rename(staging, final)
    _fsync_dir(root)
    for old in complete_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def complete_checkpoints(run_dir: Path) -> list[Path]:
    """Finished checkpoints, oldest first. Interrupted writes are removed on the way."""
    root = checkpoint_root(run_dir)
    if not root.is_dir():
        return []
    found = []
    for path in sorted(root.iterdir()):
        if not path.is_dir():
            continue
        if is_complete_checkpoint(path):
            found.append(path)
        else:
            shutil.rmtree(path, ignore_errors=True)
    return found


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = complete_checkpoints(run_dir)
    return found[-1] if found else None


def safe_load(path: Path) -> Any:
    """torch.load that can only build tensors and plain containers: a checkpoint someone else placed in
    a shared run directory cannot run code through pickle. NumPy's array type is allowed so that
    checkpoints written before the RNG state was stored as tensors still resume."""
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # NumPy 1
        from numpy.core.multiarray import _reconstruct
    allowed = [np.ndarray, np.dtype, type(np.dtype(np.uint32)), _reconstruct]
    try:
        with torch.serialization.safe_globals(allowed):
            return torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as exc:
        raise RunDirError(
            f"{path} holds something other than tensors and numbers, so it is not loaded (loading it could "
            f"run code someone put in it); resume from another checkpoint or train again ({str(exc).splitlines()[0]})"
        ) from exc


def load_checkpoint(path: Path, model, optimizer, rank: int = 0) -> dict[str, Any]:
    """Restore the trained tensors, optimizer and this process's RNGs; return the saved state."""
    from safetensors.torch import load_file

    from .sharding import load_full_optimizer_state

    load_trainable_state(model, load_file(str(path / "trainable.safetensors")))
    load_full_optimizer_state(optimizer, safe_load(path / "optimizer.pt"))
    states = safe_load(path / "rng.pt")
    restore_rng(states[rank] if rank < len(states) else states[0])
    return json.loads((path / "state.json").read_text())
