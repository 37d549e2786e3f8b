"""Where a run keeps its checkpoints, and which of them are complete. Writing and restoring them is
training's business (train/checkpoint.py); listing them is everyone's (resume, the dashboard)."""

from __future__ import annotations

from pathlib import Path

COMPLETE = "COMPLETE"  # written last into a checkpoint: a directory without it is an interrupted write
PREFIX = "step-"
STAGING = ".tmp-"  # in the name of a checkpoint still being written


def checkpoint_root(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def checkpoint_name(step: int) -> str:
    return f"{PREFIX}{step:08d}"


def is_complete_checkpoint(path: Path) -> bool:
    return path.is_dir() and path.name.startswith(PREFIX) and STAGING not in path.name and (path / COMPLETE).is_file()


def finished_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, directory) of complete checkpoints, oldest first. Read-only: training's own lister removes
    unfinished directories, which for a reader may be the one training is writing right now."""
    root = checkpoint_root(run_dir)
    found = sorted(path for path in root.iterdir() if is_complete_checkpoint(path)) if root.is_dir() else []
    return [(int(path.name[len(PREFIX) :]), path) for path in found]
