"""Reading a JSON request body, with refusals that name the field (`param`): every route module's
first step."""

from __future__ import annotations

import json

from ..errors import ServeError


async def read_json(request) -> dict:
    raw = await request.body()
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ServeError(f"the request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ServeError("the request body must be a JSON object")
    return body


def required_string(body: dict, key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise ServeError(f"'{key}' is required and must be a non-empty string", key)
    return value
