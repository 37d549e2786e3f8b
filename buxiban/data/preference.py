"""Preference pairs for DPO, in OpenAI's format or the common prompt/chosen/rejected one.

OpenAI:  {"input": {"messages": [...]}, "preferred_output": [{"role": "assistant", "content": ...}],
          "non_preferred_output": [{"role": "assistant", "content": ...}]}
Common:  {"prompt": "text" or [messages], "chosen": "text" or [messages], "rejected": "text" or [messages]}
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import Problem
from .jsonl import iter_jsonl
from .records import collect, content_text, did_you_mean, require_clean, validate_message

OPENAI_KEYS = ("input", "preferred_output", "non_preferred_output")
COMMON_KEYS = ("prompt", "chosen", "rejected")


@dataclass
class PreferencePair:
    prompt: list[dict[str, str]]  # the conversation so far, ending with a user message
    chosen: str
    rejected: str
    source: str
    line: int

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}"


def is_preference_record(record: Any) -> bool:
    return isinstance(record, dict) and bool(set(record) & set(OPENAI_KEYS + COMMON_KEYS))


def iter_preference_jsonl(path: str | Path) -> Iterator[tuple[PreferencePair | None, list[Problem]]]:
    name = str(path)
    for number, record, problem in iter_jsonl(path):
        if problem is not None:
            yield None, [problem]
            continue
        pair, problems = parse_preference(record, name, number)
        yield pair, problems


def read_preference_jsonl(path: str | Path) -> tuple[list[PreferencePair], list[Problem]]:
    return collect(iter_preference_jsonl(path))


def load_preference_jsonl(path: str | Path) -> list[PreferencePair]:
    pairs, problems = read_preference_jsonl(path)
    require_clean(path, problems)
    return pairs


def parse_preference(record: Any, source: str, line: int) -> tuple[PreferencePair | None, list[Problem]]:
    where = f"{source}:{line}"
    if not isinstance(record, dict):
        return None, [
            Problem(
                where,
                f"is a JSON {type(record).__name__}, not an object",
                fix='write {"prompt": ..., "chosen": ..., "rejected": ...} on each line',
            )
        ]
    if any(key in record for key in OPENAI_KEYS):
        return _parse_openai(record, where, source, line)
    return _parse_common(record, where, source, line)


def _parse_openai(record: dict, where: str, source: str, line: int):
    problems = [
        Problem(where, f"unknown key '{key}'", field=key, fix=did_you_mean(key, OPENAI_KEYS, "remove it"))
        for key in record
        if key not in OPENAI_KEYS
    ]
    prompt = None
    inputs = record.get("input")
    if not isinstance(inputs, dict) or not isinstance(inputs.get("messages"), list) or not inputs["messages"]:
        problems.append(
            Problem(
                where,
                "must be an object with a non-empty messages list",
                field="input",
                fix='write "input": {"messages": [{"role": "user", "content": "..."}]}',
            )
        )
    else:
        prompt, found = _prompt_messages(inputs["messages"], where, "input.messages")
        problems.extend(found)
    answers = {}
    for key in ("preferred_output", "non_preferred_output"):
        value = record.get(key)
        if not isinstance(value, list) or len(value) != 1 or not isinstance(value[0], dict):
            problems.append(
                Problem(
                    where,
                    "must be a list holding one assistant message",
                    field=key,
                    fix=f'write "{key}": [{{"role": "assistant", "content": "..."}}]',
                )
            )
            continue
        found = validate_message(value[0], f"{key}[0]", where)
        if not found and value[0].get("role") != "assistant":
            found = [Problem(where, f"role is {value[0].get('role')!r}", field=f"{key}[0].role", fix="use 'assistant'")]
        problems.extend(found)
        if not found:
            answers[key] = content_text(value[0].get("content")) or ""
    if problems:
        return None, problems
    return _pair(prompt, answers["preferred_output"], answers["non_preferred_output"], where, source, line)


def _parse_common(record: dict, where: str, source: str, line: int):
    problems = [
        Problem(where, f"unknown key '{key}'", field=key, fix=did_you_mean(key, COMMON_KEYS, "remove it"))
        for key in record
        if key not in COMMON_KEYS
    ]
    for key in COMMON_KEYS:
        if key not in record:
            problems.append(
                Problem(where, "is missing", field=key, fix='a preference pair needs "prompt", "chosen" and "rejected"')
            )
    if problems:
        return None, problems
    prompt_value = record["prompt"]
    if isinstance(prompt_value, str):
        prompt = [{"role": "user", "content": prompt_value}] if prompt_value.strip() else None
        if prompt is None:
            problems.append(Problem(where, "is empty", field="prompt", fix="write the user's message"))
    elif isinstance(prompt_value, list) and prompt_value:
        prompt, found = _prompt_messages(prompt_value, where, "prompt")
        problems.extend(found)
    else:
        prompt = None
        problems.append(Problem(where, "must be a string or a list of messages", field="prompt"))
    answers = {}
    for key in ("chosen", "rejected"):
        text, found = _answer_text(record[key], where, key)
        problems.extend(found)
        answers[key] = text
    if problems:
        return None, problems
    return _pair(prompt, answers["chosen"], answers["rejected"], where, source, line)


def _prompt_messages(messages: list, where: str, field: str) -> tuple[list[dict[str, str]] | None, list[Problem]]:
    problems = []
    for index, message in enumerate(messages):
        problems.extend(validate_message(message, f"{field}[{index}]", where))
    if problems:
        return None, problems
    if messages[-1].get("role") != "user":
        return None, [
            Problem(
                where,
                f"ends with a '{messages[-1].get('role')}' message",
                field=f"{field}[{len(messages) - 1}]",
                fix="the prompt must end with the user message the two answers reply to",
            )
        ]
    return [{"role": m["role"], "content": content_text(m.get("content")) or ""} for m in messages], []


def _answer_text(value: Any, where: str, field: str) -> tuple[str, list[Problem]]:
    """A string, or a message list whose last message is the assistant's (the TRL convention)."""
    if isinstance(value, str):
        return value, [] if value.strip() else [Problem(where, "is empty", field=field, fix="write the answer text")]
    if isinstance(value, list) and value and isinstance(value[-1], dict):
        found = validate_message(value[-1], f"{field}[{len(value) - 1}]", where)
        if not found and value[-1].get("role") != "assistant":
            found = [Problem(where, "must end with an assistant message", field=field, fix="use role 'assistant'")]
        return (content_text(value[-1].get("content")) or "", found)
    return "", [Problem(where, "must be a string or a list of messages", field=field)]


def _pair(prompt, chosen: str, rejected: str, where: str, source: str, line: int):
    if chosen.strip() == rejected.strip():
        return None, [
            Problem(
                where,
                "the two answers are identical",
                field="chosen",
                fix="a preference pair needs a better and a worse answer",
            )
        ]
    return PreferencePair(prompt, chosen, rejected, source, line), []
