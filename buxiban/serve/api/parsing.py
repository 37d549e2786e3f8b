"""Reading OpenAI completion requests: every field checked, every refusal naming the field (`param`).
The body itself is read by jsonbody.read_json."""

from __future__ import annotations

import math
from typing import Any

from ...data.records import content_text
from ...errors import ServeError
from .generation import MAX_STOPS, Sampling

ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
MAX_CHOICES = 8
DEFAULT_MAX_TOKENS = 256  # when the request sets none: long enough for an answer, short enough for a CPU


class ContextTooLong(ServeError):
    code = "context_length_exceeded"


def chat_messages(value: Any) -> list[dict[str, str]]:
    """Text messages for the chat template; 'developer' is OpenAI's newer name for 'system'."""
    if not isinstance(value, list) or not value:
        raise ServeError("'messages' must be a non-empty list of {role, content} objects", "messages")
    messages = []
    for index, message in enumerate(value):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise ServeError(f"{where} must be an object with 'role' and 'content'", where)
        role = message.get("role")
        if role not in ROLES:
            raise ServeError(
                f"{where}.role is {role!r}; this server takes {', '.join(ROLES)} (tool calls are not supported)",
                f"{where}.role",
            )
        text = content_text(message.get("content"))
        if text is None:
            raise ServeError(
                f"{where}.content must be a string or a list of text parts (no images or audio)", f"{where}.content"
            )
        messages.append({"role": ROLES[role], "content": text})
    return messages


def completion_prompt(value: Any) -> str:
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if not isinstance(value, str):
        raise ServeError("'prompt' must be a string (one prompt per request here)", "prompt")
    return value


def _number(body: dict, key: str, default: float, low: float, high: float, low_open: bool = False) -> float:
    value = body.get(key)
    if value is None:
        return default
    if (
        not isinstance(value, (int, float))
        or isinstance(value, bool)
        or not math.isfinite(value)
        or value > high
        or value < low
        or (low_open and value == low)
    ):
        bracket = "(" if low_open else "["
        raise ServeError(f"'{key}' must be a number in {bracket}{low}, {high}], got {value!r}", key)
    return float(value)


def _integer(body: dict, key: str, low: int, high: int | None = None) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < low or (high is not None and value > high):
        limit = f"{low} to {high}" if high is not None else f"at least {low}"
        raise ServeError(f"'{key}' must be a whole number, {limit}; got {value!r}", key)
    return value


def sampling(body: dict, prompt_tokens: int, context: int) -> Sampling:
    """Sampling settings, and the context check: prompt plus completion must fit the model."""
    stop = body.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    if stop is None:
        stop = []
    if not isinstance(stop, list) or len(stop) > MAX_STOPS or not all(isinstance(s, str) and s for s in stop):
        raise ServeError(f"'stop' must be a string or a list of up to {MAX_STOPS} non-empty strings", "stop")
    asked = _integer(body, "max_completion_tokens", 1)
    key = "max_completion_tokens"
    if asked is None:
        asked, key = _integer(body, "max_tokens", 1), "max_tokens"
    if prompt_tokens >= context:
        raise ContextTooLong(
            f"This model's maximum context length is {context} tokens, and the prompt alone is "
            f"{prompt_tokens} tokens. Shorten the messages.",
            "messages",
        )
    if asked is not None and prompt_tokens + asked > context:
        raise ContextTooLong(
            f"This model's maximum context length is {context} tokens. However, you requested "
            f"{prompt_tokens + asked} tokens ({prompt_tokens} in the messages, {asked} in the "
            f"completion). Reduce the messages or {key}.",
            key,
        )
    max_tokens = asked if asked is not None else min(DEFAULT_MAX_TOKENS, context - prompt_tokens)
    return Sampling(
        max_tokens=max_tokens,
        temperature=_number(body, "temperature", 1.0, 0.0, 2.0),
        top_p=_number(body, "top_p", 1.0, 0.0, 1.0, low_open=True),
        stop=tuple(stop),
        seed=_integer(body, "seed", -(2**63), 2**63 - 1),
        n=_integer(body, "n", 1, MAX_CHOICES) or 1,
    )
