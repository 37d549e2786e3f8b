"""Convert ShareGPT, Alpaca and two-column CSV data into OpenAI chat records.

Every input record is converted or reported with its location; one bad record never stops the rest.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import DataError, Problem
from .jsonl import iter_jsonl

FORMATS = ("sharegpt", "alpaca", "csv")
HEADERS = (["question", "answer"], ["prompt", "response"], ["input", "output"], ["user", "assistant"])
SHAREGPT_ROLES = {
    "system": "system",
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "bing": "assistant",
    "bard": "assistant",
    "model": "assistant",
    "tool": "tool",
    "function_call": "assistant",
    "observation": "tool",
}


def detect_format(path: Path) -> str:
    if path.suffix.lower() in (".csv", ".tsv"):
        return "csv"
    for _, record, problem in _records(path):
        if problem is None and isinstance(record, dict):
            if "conversations" in record:
                return "sharegpt"
            if "instruction" in record or "output" in record:
                return "alpaca"
        break
    raise DataError(
        f"cannot tell the format of {path}",
        [Problem(str(path), "is not ShareGPT, Alpaca or CSV", fix="pass --from sharegpt|alpaca|csv")],
    )


def _records(path: Path) -> Iterator[tuple[int, Any, Problem | None]]:
    """JSONL line by line, or a JSON array file (how Alpaca and ShareGPT sets are often shipped)."""
    with open(path, "rb") as handle:
        head = handle.read(64).lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"["):
        try:
            items = json.loads(path.read_text(encoding="utf-8-sig"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            yield 0, None, Problem(str(path), f"is not a valid JSON array: {exc}", fix="fix the JSON, or use JSONL")
            return
        for index, item in enumerate(items):
            yield index + 1, item, None  # item numbers, 1-based, stand in for lines
        return
    yield from iter_jsonl(path)


def convert(
    path: str | Path, fmt: str | None = None, system: str | None = None
) -> tuple[list[dict[str, Any]], list[Problem]]:
    path = Path(path)
    fmt = fmt or detect_format(path)
    if fmt == "csv":
        return _from_csv(path, system)
    converter = _from_sharegpt if fmt == "sharegpt" else _from_alpaca
    out, problems = [], []
    for number, record, problem in _records(path):
        if problem is not None:
            problems.append(problem)
            continue
        where = f"{path}:{number}"
        if not isinstance(record, dict):
            problems.append(Problem(where, f"is a JSON {type(record).__name__}, not an object"))
            continue
        messages, found = converter(record, where)
        problems.extend(found)
        if messages:
            if system and messages[0]["role"] != "system":
                messages.insert(0, {"role": "system", "content": system})
            out.append({"messages": messages})
    return out, problems


def _from_sharegpt(record: dict, where: str) -> tuple[list[dict[str, str]] | None, list[Problem]]:
    turns = record.get("conversations")
    if not isinstance(turns, list) or not turns:
        return None, [
            Problem(
                where, "is missing or empty", field="conversations", fix="ShareGPT records hold a conversations list"
            )
        ]
    messages = []
    for index, turn in enumerate(turns):
        field = f"conversations[{index}]"
        if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
            return None, [Problem(where, "needs a string 'value'", field=field)]
        speaker = str(turn.get("from", "")).lower()
        if speaker not in SHAREGPT_ROLES:
            return None, [
                Problem(where, f"'from' is {turn.get('from')!r}", field=field, fix="use human, gpt or system")
            ]
        messages.append({"role": SHAREGPT_ROLES[speaker], "content": turn["value"]})
    if isinstance(record.get("system"), str) and record["system"].strip() and messages[0]["role"] != "system":
        messages.insert(0, {"role": "system", "content": record["system"]})
    return _ends_with_assistant(messages, where)


def _from_alpaca(record: dict, where: str) -> tuple[list[dict[str, str]] | None, list[Problem]]:
    instruction, extra, output = record.get("instruction"), record.get("input", ""), record.get("output")
    problems = [
        Problem(where, "is missing or empty", field=key, fix="Alpaca records need instruction and output")
        for key, value in (("instruction", instruction), ("output", output))
        if not isinstance(value, str) or not value.strip()
    ]
    if problems:
        return None, problems
    prompt = instruction if not (isinstance(extra, str) and extra.strip()) else f"{instruction}\n\n{extra}"
    messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": output}]
    if isinstance(record.get("system"), str) and record["system"].strip():
        messages.insert(0, {"role": "system", "content": record["system"]})
    return messages, []


def _from_csv(path: Path, system: str | None) -> tuple[list[dict[str, Any]], list[Problem]]:
    out, problems = [], []
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        return [], [Problem(str(path), f"is not valid UTF-8 (byte {exc.start + 1})", fix="re-save the file as UTF-8")]
    dialect = csv.excel_tab if path.suffix.lower() == ".tsv" else csv.excel
    reader = csv.reader(io.StringIO(text, newline=""), dialect)  # quoted answers may span lines
    first_line = 1
    for index, row in enumerate(reader):
        where, first_line = f"{path}:{first_line}", reader.line_num + 1  # a record's first line, not its last
        if index == 0 and [c.strip().lower() for c in row[:2]] in HEADERS:
            continue
        if not any(cell.strip() for cell in row):
            continue
        if len(row) < 2 or not row[0].strip() or not row[1].strip():
            problems.append(Problem(where, "needs two non-empty columns", fix="write: question,answer"))
            continue
        messages = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": row[0]},
            {"role": "assistant", "content": row[1]},
        ]
        out.append({"messages": messages})
    if not out and not problems:
        problems.append(Problem(str(path), "is empty", fix="add rows of question,answer"))
    return out, problems


def _ends_with_assistant(messages: list[dict[str, str]], where: str):
    while messages and messages[-1]["role"] != "assistant":
        messages.pop()  # a trailing question with no answer teaches nothing
    if not any(m["role"] == "assistant" for m in messages):
        return None, [Problem(where, "has no assistant turn", field="conversations", fix="add the answer to learn")]
    return messages, []
