"""A run's metrics.jsonl read while its training process may be appending to it: the fine-tuning
API's checkpoint losses and the dashboard's live loss curves both read it this way."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..runs import METRICS


def read_metrics_since(run_dir: Path, since: int = 0) -> dict[str, Any]:
    """metrics.jsonl lines from line `since` on, for a chart that polls. The last line is left out
    until its newline is written. A resumed run rewrites the file shorter: `reset` then tells the
    reader to drop what it holds, and every line comes again."""
    path = run_dir / METRICS
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return {"entries": [], "next": 0, "reset": since > 0}
    lines = text.split("\n")[:-1]  # whole lines only: the piece after the last newline is being written
    reset = since > len(lines)
    entries = []
    for line in lines[0 if reset else since :]:
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return {"entries": entries, "next": len(lines), "reset": reset}
