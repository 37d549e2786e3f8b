"""The data page: `buxiban data check`'s report on one file, plus a token-length histogram and the
first examples split into trained and untrained text, so the browser can highlight what the loss
sees. A report is cached per file version: the page is reopened far more often than data changes."""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from itertools import islice
from pathlib import Path
from typing import Any

PREVIEW_EXAMPLES = 3
HISTOGRAM_BINS = 24
CACHED_REPORTS = 16
START, END = "\x00", "\x01"  # trained-text markers, as `buxiban data show` uses: control characters chat text lacks

_cache: dict[tuple, dict[str, Any]] = {}
_lock = threading.Lock()


def histogram(values: Sequence[int], bins: int = HISTOGRAM_BINS) -> dict[str, list[int]]:
    """Counts over equal integer-width bins from min to max: `edges` has one more entry than `counts`."""
    low, high = min(values), max(values)
    width = max(1, math.ceil((high - low + 1) / bins))
    count = math.ceil((high - low + 1) / width)
    counts = [0] * count
    for value in values:
        counts[(value - low) // width] += 1
    return {"edges": [low + i * width for i in range(count + 1)], "counts": counts}


def split_marked(text: str, start: str = START, end: str = END) -> list[dict[str, Any]]:
    """'a⟦b⟧c' -> [{a, False}, {b, True}, {c, False}], empty pieces dropped."""
    segments, trained = [], False
    for piece in text.replace(end, start).split(start):
        if piece:
            segments.append({"text": piece, "trained": trained})
        trained = not trained
    return segments


def preview(
    path: Path, label: str, tokenizer, kind: str, first: str, count: int = PREVIEW_EXAMPLES
) -> list[dict[str, Any]]:
    """Chat files: the first `count` valid conversations. Preference files: the checker's own preview
    (the prompt and the chosen answer), the one view of a pair the loss masks."""
    from ...data.check import mark_trained
    from ...data.records import iter_chat_jsonl

    if kind != "chat":
        return [{"where": "first pair", "segments": split_marked(first, "⟦", "⟧")}] if first else []
    valid = (c for c, _ in iter_chat_jsonl(path) if c is not None)
    return [
        {"where": c.where.replace(str(path), label), "segments": split_marked(mark_trained(tokenizer, c, START, END))}
        for c in islice(valid, count)
    ]


def data_report(path: Path, label: str, tokenizer, max_length: int = 512, cache: bool = True) -> dict[str, Any]:
    """The check report as JSON, with the server's file path replaced by the name the user knows."""
    from ...data.check import check_file

    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, max_length, label)
    with _lock:
        if cache and key in _cache:
            return _cache[key]
    report = check_file(path, tokenizer, max_length)
    out = _relabel(report.to_dict(), str(path), label)
    out["histogram"] = histogram(report.token_lengths) if len(report.token_lengths) else None
    out["examples"] = preview(path, label, tokenizer, report.kind, report.preview)
    if not cache:
        return out
    with _lock:
        if len(_cache) >= CACHED_REPORTS:
            _cache.pop(next(iter(_cache)))
        _cache[key] = out
    return out


def _relabel(value: Any, path: str, label: str) -> Any:
    if isinstance(value, str):
        return value.replace(path, label)
    if isinstance(value, list):
        return [_relabel(v, path, label) for v in value]
    if isinstance(value, dict):
        return {k: _relabel(v, path, label) for k, v in value.items()}
    return value
