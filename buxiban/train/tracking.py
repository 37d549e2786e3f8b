"""Where metrics go: metrics.jsonl always (the run directory must describe itself), TensorBoard and
MLflow when the config asks for them."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ..errors import ConfigError, Problem

# The MLflow run this training run logs to, kept in the run directory so a resumed run continues the
# same MLflow run (one curve per training run) instead of starting a second one.
MLFLOW_RUN_ID = "mlflow-run-id"


def check_trackers(trackers) -> None:
    """Before anything is written: a tracker asked for must be importable."""
    import importlib.util

    modules = {"tensorboard": "tensorboard", "mlflow": "mlflow"}
    missing = [t for t in trackers if importlib.util.find_spec(modules[t]) is None]
    if missing:
        raise ConfigError(
            "tracking needs a package",
            [Problem("train.tracking", f"{name} is not installed", fix=f"pip install {name}") for name in missing],
        )


class MetricsLog:
    """Append-only JSONL, flushed per line so a crash keeps everything logged before it. On resume,
    lines past the checkpoint's step are dropped: those steps are about to be trained again."""

    def __init__(
        self,
        path: Path,
        resume_from_step: int | None = None,
        trackers: list[str] = (),
        run_dir: Path | None = None,
        params: dict[str, Any] | None = None,
    ):
        if resume_from_step is not None and path.exists():
            kept = [
                line
                for line in path.read_text(encoding="utf-8").splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= resume_from_step
            ]
            path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
        self.handle = path.open("a", encoding="utf-8")
        self.tensorboard = self.mlflow = None
        if "tensorboard" in trackers:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as exc:
                raise ConfigError(
                    "tracking needs a package",
                    [Problem("train.tracking", "tensorboard is not installed", fix="pip install tensorboard")],
                ) from exc
            self.tensorboard = SummaryWriter(str(run_dir / "tensorboard"))
        if "mlflow" in trackers:
            try:
                import mlflow
            except ImportError as exc:
                raise ConfigError(
                    "tracking needs a package",
                    [Problem("train.tracking", "mlflow is not installed", fix="pip install mlflow")],
                ) from exc
            self.mlflow = mlflow
            self._start_mlflow(run_dir, resume_from_step is not None, params)

    def _start_mlflow(self, run_dir: Path | None, resuming: bool, params: dict[str, Any] | None) -> None:
        id_file = run_dir / MLFLOW_RUN_ID if run_dir else None
        earlier = id_file.read_text(encoding="utf-8").strip() if resuming and id_file and id_file.exists() else None
        # nested: a caller (a sweep, a notebook) may already have an MLflow run open around this one
        nested = self.mlflow.active_run() is not None
        active = self.mlflow.start_run(
            run_id=earlier, run_name=None if earlier else (run_dir.name if run_dir else None), nested=nested
        )
        if id_file:
            id_file.write_text(active.info.run_id, encoding="utf-8")
        if params and not earlier:  # MLflow params are write-once; a resumed run already has them
            self.mlflow.log_params(params)

    def write(self, **record: Any) -> None:
        record.setdefault("time", round(time.time(), 3))
        self.handle.write(json.dumps(record) + "\n")
        self.handle.flush()
        step = record.get("step")
        numbers = {
            k: v for k, v in record.items() if k not in ("step", "time", "epoch") and isinstance(v, (int, float))
        }
        if self.tensorboard is not None and step is not None:
            for key, value in numbers.items():
                self.tensorboard.add_scalar(key, value, step)
        if self.mlflow is not None and step is not None:
            self.mlflow.log_metrics(numbers, step=step)

    def close(self, failed: bool = False) -> None:
        self.handle.close()
        if self.tensorboard is not None:
            self.tensorboard.close()
        if self.mlflow is not None:
            self.mlflow.end_run(status="FAILED" if failed else "FINISHED")
