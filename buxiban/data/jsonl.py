"""Stream a JSONL file line by line: memory stays flat whatever the file size, and one bad line
(invalid UTF-8, broken or non-standard JSON such as NaN, absurd nesting) is reported without hiding the rest."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import Problem

BOM = b"\xef\xbb\xbf"


class _Rejected(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    raise _Rejected(f"{name} is not valid JSON")


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, Any, Problem | None]]:
    """(line number, parsed value or None, problem or None) for every non-blank line.
    A file that cannot be opened, or holds no data at all, yields one problem with line 0."""
    for number, _raw, value, problem in iter_jsonl_lines(path):
        if _raw is not None:
            yield number, value, problem
        elif problem is not None:
            yield number, None, problem


def iter_jsonl_lines(path: str | Path) -> Iterator[tuple[int, bytes | None, Any, Problem | None]]:
    """Every line, blank ones included as (number, None, None, None): for tools that rewrite a
    file line for line. `raw` is the line's bytes without BOM and line ending."""
    name = str(path)
    try:
        handle = open(path, "rb")
    except OSError as exc:
        yield 0, None, None, Problem(name, f"cannot read file: {exc.strerror or exc}", fix="check the path")
        return
    seen_data = False
    with handle:
        for number, raw in enumerate(handle, start=1):
            if number == 1 and raw.startswith(BOM):  # a BOM from Windows editors is harmless: drop it
                raw = raw[len(BOM) :]
            raw = raw.rstrip(b"\r\n")
            if not raw.strip():
                yield number, None, None, None
                continue
            seen_data = True
            value, problem = _parse_line(raw, f"{name}:{number}")
            yield number, raw, value, problem
    if not seen_data:
        yield 0, None, None, Problem(name, "is empty", fix='add one JSON object per line: {"messages": [...]}')


def _parse_line(raw: bytes, where: str) -> tuple[Any, Problem | None]:
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, Problem(where, f"is not valid UTF-8 (byte {exc.start + 1})", fix="re-save the file as UTF-8")
    try:
        return json.loads(line, parse_constant=_reject_constant), None
    except _Rejected as exc:
        return None, Problem(where, f"is not valid JSON: {exc}", fix="write null or a number instead")
    except json.JSONDecodeError as exc:
        return None, Problem(
            where,
            f"is not valid JSON: {exc.msg} at column {exc.colno}",
            fix="each line must be one complete JSON object",
        )
    except RecursionError:  # thousands of nested brackets: damage or an attack, never a record
        return None, Problem(
            where, "nests JSON too deeply to read", fix="a chat record is a flat object with a messages list"
        )
