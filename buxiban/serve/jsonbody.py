"""Reading a JSON request body, with refusals that name the field (`param`): every route module's
first step. Strict about numbers and depth: no request reaches a route with NaN, an infinity, an
integer beyond 64 bits (or of thousands of digits) or a structure deep enough to exhaust the stack,
and the refusal names where in the body it was."""

from __future__ import annotations

import json
import math
from typing import Any

from ..errors import ServeError

MAX_DEPTH = 32  # OpenAI request bodies nest a few levels; anything deeper is an attack or a bug
INT64 = 2**63
MAX_INTEGER_DIGITS = 20


class _TooManyDigits:
    """Stands in for an integer too long to convert (Python refuses beyond 4300 digits)."""

    def __init__(self, digits: int):
        self.digits = digits


def _integer(text: str):
    digits = len(text.lstrip("-"))
    return _TooManyDigits(digits) if digits > MAX_INTEGER_DIGITS else int(text)


def _problem(value: Any, path: str, depth: int) -> tuple[str, str] | None:
    """(path, what is wrong) for the first value no route should see, walking the body in order."""
    if depth > MAX_DEPTH:
        return path, f"nests deeper than {MAX_DEPTH} levels"
    if isinstance(value, _TooManyDigits):
        return path, f"is an integer of {value.digits} digits; at most {MAX_INTEGER_DIGITS}"
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return path, f"is {value}, not a finite number"
    if isinstance(value, int) and not -INT64 <= value < INT64:
        return path, "is an integer beyond 64 bits"
    if isinstance(value, dict):
        items = ((f"{path}.{key}" if path else str(key), child) for key, child in value.items())
    elif isinstance(value, list):
        items = ((f"{path}[{index}]", child) for index, child in enumerate(value))
    else:
        return None
    for child_path, child in items:
        found = _problem(child, child_path, depth + 1)
        if found:
            return found
    return None


async def read_json(request) -> dict:
    raw = await request.body()
    try:
        body = json.loads(raw, parse_int=_integer)
    except RecursionError as exc:
        raise ServeError(f"the request body nests deeper than {MAX_DEPTH} levels") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ServeError(f"the request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ServeError("the request body must be a JSON object")
    found = _problem(body, "", 0)
    if found:
        path, what = found
        raise ServeError(f"'{path}' {what}", path)
    return body


def required_string(body: dict, key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise ServeError(f"'{key}' is required and must be a non-empty string", key)
    return value
