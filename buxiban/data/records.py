"""Read OpenAI chat JSONL, validating every line and collecting every problem with its location.

The checks follow OpenAI's fine-tuning data-preparation cookbook (not-an-object, no messages list,
missing role/content, unknown keys, unknown role, missing content, no assistant message) plus what
the cookbook leaves to the API to find out: invalid JSON or UTF-8, an empty file, and a conversation
that does not end with the assistant (nothing after the last assistant turn could be trained).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DataError, Problem, Problems
from .jsonl import iter_jsonl

ROLES = ("system", "user", "assistant", "tool")
# `metadata` is buxiban's own: free-form fields (a category, a source) for splitting and error analysis.
TOP_LEVEL_KEYS = ("messages", "tools", "parallel_tool_calls", "functions", "metadata")
TOOL_KEYS = ("tool_calls", "tool_call_id", "name")  # passed to the template, which must render them
MESSAGE_KEYS = ("role", "content", "name", "weight", "tool_calls", "tool_call_id", "function_call", "refusal")


@dataclass
class Conversation:
    """One training example: text-only messages, plus where it came from for error messages."""

    messages: list[dict[str, Any]]
    source: str
    line: int

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}"


def iter_chat_jsonl(path: str | Path) -> Iterator[tuple[Conversation | None, list[Problem]]]:
    """Stream (conversation, []) for each valid line and (None, problems) for each bad one."""
    name = str(path)
    for number, record, problem in iter_jsonl(path):
        if problem is not None:
            yield None, [problem]
            continue
        found = validate_chat_record(record, f"{name}:{number}")
        if found:
            yield None, found
        else:
            yield Conversation(_normalize(record["messages"]), name, number), []


def iter_raw_chat_records(path: str | Path) -> Iterator[tuple[tuple[int, dict] | None, list[Problem]]]:
    """Like iter_chat_jsonl but yields (line, record as written): for tools that copy records whole."""
    for number, record, problem in iter_jsonl(path):
        found = [problem] if problem else validate_chat_record(record, f"{path}:{number}")
        yield (None, found) if found else ((number, record), [])


def collect(stream: Iterator[tuple[Any, list[Problem]]]) -> tuple[list[Any], list[Problem]]:
    """Every valid item and every problem of a validating stream."""
    items: list[Any] = []
    problems = Problems()
    for item, found in stream:
        if item is not None:
            items.append(item)
        problems.extend(found)
    return items, problems


def require_clean(path: str | Path, problems: list[Problem]) -> None:
    if problems:
        raise DataError(f"{path}: {len(problems)} problem(s); run `buxiban data check {path}`", problems)


def read_chat_jsonl(path: str | Path) -> tuple[list[Conversation], list[Problem]]:
    """Every valid conversation and every problem; a bad line never hides the others."""
    return collect(iter_chat_jsonl(path))


def load_chat_jsonl(path: str | Path) -> list[Conversation]:
    """Like read_chat_jsonl, but any problem is an error: for training and evaluation inputs."""
    conversations, problems = read_chat_jsonl(path)
    require_clean(path, problems)
    return conversations


def validate_chat_record(record: Any, where: str) -> list[Problem]:
    if not isinstance(record, dict):
        return [
            Problem(
                where, f"is a JSON {type(record).__name__}, not an object", fix='write {"messages": [...]} on each line'
            )
        ]
    problems = [
        Problem(where, f"unknown key '{key}'", field=key, fix=did_you_mean(key, TOP_LEVEL_KEYS, "remove it"))
        for key in record
        if key not in TOP_LEVEL_KEYS
    ]
    messages = record.get("messages")
    if not isinstance(messages, list) or not messages:
        what = "is missing" if messages is None else "must be a non-empty list"
        problems.append(
            Problem(where, what, field="messages", fix='add "messages": [{"role": ..., "content": ...}, ...]')
        )
        return problems
    for index, message in enumerate(messages):
        problems.extend(validate_message(message, f"messages[{index}]", where))
    if problems:
        return problems
    roles = [m["role"] for m in messages]
    if "assistant" not in roles:
        problems.append(
            Problem(
                where,
                "has no assistant message",
                field="messages",
                fix="add the answer you want the model to learn as an assistant message",
            )
        )
    elif roles[-1] != "assistant":
        problems.append(
            Problem(
                where,
                f"ends with a '{roles[-1]}' message, not the assistant",
                field=f"messages[{len(roles) - 1}]",
                fix="end each conversation with the assistant answer to learn, or drop the trailing turns",
            )
        )
    return problems


def validate_message(message: Any, field: str, where: str) -> list[Problem]:
    if not isinstance(message, dict):
        return [
            Problem(
                where,
                f"is a {type(message).__name__}, not an object",
                field=field,
                fix='write {"role": "user", "content": "..."}',
            )
        ]
    problems = [
        Problem(where, f"has unknown key '{key}'", field=field, fix=did_you_mean(key, MESSAGE_KEYS, "remove it"))
        for key in message
        if key not in MESSAGE_KEYS
    ]
    role = message.get("role")
    if role is None:
        problems.append(Problem(where, "is missing", field=f"{field}.role", fix="add one of " + ", ".join(ROLES)))
    elif role not in ROLES:
        problems.append(
            Problem(
                where,
                f"{role!r} is not one of {', '.join(ROLES)}",
                field=f"{field}.role",
                fix=did_you_mean(str(role), ROLES, "use one of them"),
            )
        )
    if "content" not in message and not (message.get("tool_calls") or message.get("function_call")):
        problems.append(Problem(where, "is missing", field=f"{field}.content", fix="add the message text"))
    else:
        content = message.get("content")
        text = content_text(content)
        if text is None:
            problems.append(
                Problem(
                    where,
                    f"must be a string or a list of text parts, got {type(content).__name__}",
                    field=f"{field}.content",
                    fix="write the message text as a string",
                )
            )
        elif not text.strip() and not message.get("tool_calls"):
            problems.append(Problem(where, "is empty", field=f"{field}.content", fix="write the message text"))
    weight = message.get("weight")
    if weight is not None and (weight not in (0, 1) or isinstance(weight, bool) or role != "assistant"):
        problems.append(
            Problem(
                where, f"is {weight!r}", field=f"{field}.weight", fix="weight is 0 or 1, and only on assistant messages"
            )
        )
    return problems


def content_text(content: Any) -> str | None:
    if isinstance(content, str):
        return content
    if content is None:
        return ""
    if isinstance(content, list) and all(
        isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str) for p in content
    ):
        return "".join(p["text"] for p in content)
    return None


def _normalize(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Keep what the chat template needs: role, text content, tool calls and results, the trained flag."""
    out = []
    for message in messages:
        item = {"role": message["role"], "content": content_text(message.get("content")) or ""}
        for key in TOOL_KEYS:
            if message.get(key):
                item[key] = message[key]
        if message["role"] == "assistant":
            item["weight"] = message.get("weight", 1)
        out.append(item)
    return out


def did_you_mean(word: str, options: tuple[str, ...], otherwise: str) -> str:
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else otherwise
