"""The run's record on disk while it trains: the manifest (running, then complete or failed) and the
metrics log. Used as a context manager around the loop, so any exception, Ctrl-C included, leaves
the run marked failed with its error, and the metrics log closed."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..runs import CONFIG, Manifest, write_manifest
from .tracking import MetricsLog


@dataclass
class RunRecord:
    out: Path
    manifest: Manifest
    writes: bool  # only the main process writes; the others keep the same record in memory
    metrics: MetricsLog | None = None
    bar: Any = None  # the progress bar, closed whichever way the run ends

    def open(self, config_yaml: str, metrics: MetricsLog | None) -> None:
        if self.writes:
            (self.out / CONFIG).write_text(config_yaml, encoding="utf-8")
            write_manifest(self.out, self.manifest)
        self.metrics = metrics

    def close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def write_metrics(self, **values: Any) -> None:
        if self.metrics is not None:
            self.metrics.write(**values)

    def complete(self, **final: Any) -> None:
        m = self.manifest
        m.status, m.finished = "complete", time.strftime("%Y-%m-%dT%H:%M:%S%z")
        for key, value in final.items():
            setattr(m, key, value)
        if self.writes:
            write_manifest(self.out, m)
        if self.metrics is not None:
            self.metrics.close()

    def fail(self, exc: BaseException) -> None:
        self.close_bar()
        self.manifest.status, self.manifest.error = "failed", f"{type(exc).__name__}: {exc}"
        if self.writes:
            write_manifest(self.out, self.manifest)
        if self.metrics is not None:
            self.metrics.close(failed=True)

    def __enter__(self) -> RunRecord:
        return self

    def __exit__(self, kind, exc, traceback) -> bool:
        if exc is not None and self.manifest.status != "complete":
            self.fail(exc)
        return False
