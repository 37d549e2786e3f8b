"""Extra systems and the judge through any OpenAI-compatible chat endpoint (a hosted model, vLLM,
llama.cpp's server, `buxiban serve`). Plain HTTP from the standard library: one POST to
`{url}/chat/completions` per request, greedy (temperature 0), so evaluation needs no client SDK."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import EndpointError

Messages = list[dict[str, Any]]


@dataclass(frozen=True)
class Endpoint:
    name: str
    url: str
    model: str
    key_env: str | None = None
    # how `eval --price-per-hour` prices its answers: a model in the price file (a hosted model), or
    # "hourly" (a server of your own, billed by measured time); None: guessed from the model id
    price: str | None = None

    @property
    def completions_url(self) -> str:
        base = self.url.rstrip("/")
        return base if base.endswith("/chat/completions") else base + "/chat/completions"


def parse_endpoint(spec: str, named: bool = True) -> Endpoint:
    """`NAME=URL[,model=M][,key_env=VAR][,price=P]` (or `URL[,…]` when `named` is False, for the
    judge). The model defaults to NAME (or "default"); the API key, if any, is read from the
    environment variable VAR, never from the command line, so it stays out of shell history and
    reports; P names the price-file model (or "hourly") that answers are billed at."""
    name = ""
    if named:
        name, sep, spec = spec.partition("=")
        if not sep or not name.strip():
            raise EndpointError(
                f"endpoint '{name}{sep}{spec}' has no name: write NAME=URL, e.g. gpt=http://localhost:8000/v1"
            )
    url, *options = [part.strip() for part in spec.split(",")]
    if not url.startswith(("http://", "https://")):
        raise EndpointError(f"endpoint URL '{url}' must start with http:// or https://")
    settings: dict[str, str] = {}
    for option in options:
        key, sep, value = option.partition("=")
        if key not in ("model", "key_env", "price") or not sep or not value:
            raise EndpointError(
                f"endpoint option '{option}' is not model=NAME, key_env=VARIABLE or price=MODEL_IN_PRICE_FILE|hourly"
            )
        settings[key] = value
    key_env = settings.get("key_env")
    if key_env and key_env not in os.environ:
        raise EndpointError(f"endpoint {name or url}: environment variable {key_env} (key_env) is not set")
    return Endpoint(name.strip(), url, settings.get("model", name.strip() or "default"), key_env, settings.get("price"))


def chat_completion(
    endpoint: Endpoint, messages: Messages, max_tokens: int, timeout: float = 120.0, temperature: float = 0.0
) -> tuple[str, dict[str, Any]]:
    """The answer text and the response's `usage` (empty when the server does not report it)."""
    body = json.dumps(
        {
            "model": endpoint.model,
            "messages": [{"role": m["role"], "content": m["content"]} for m in messages],
            "max_tokens": max_tokens,
            "temperature": temperature,
        }
    ).encode("utf-8")
    headers = {"Content-Type": "application/json"}
    if endpoint.key_env:
        headers["Authorization"] = f"Bearer {os.environ[endpoint.key_env]}"
    request = urllib.request.Request(endpoint.completions_url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            payload = json.loads(response.read().decode("utf-8"))
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode("utf-8", "replace")[:300]
        raise EndpointError(f"{endpoint.completions_url} answered HTTP {exc.code}: {detail}") from exc
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise EndpointError(f"cannot reach {endpoint.completions_url}: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise EndpointError(f"{endpoint.completions_url} did not answer JSON: {exc}") from exc
    try:
        text = payload["choices"][0]["message"]["content"] or ""
    except (KeyError, IndexError, TypeError) as exc:
        raise EndpointError(f"{endpoint.completions_url} answered without choices[0].message.content") from exc
    return text.strip(), payload.get("usage") or {}


def endpoint_answers(endpoint: Endpoint, prompts: Sequence[Messages], max_tokens: int):
    """Answers in prompt order, with prompt tokens as the server counted them (0 when not reported)."""
    from ..models.generate import Generation

    started = time.perf_counter()
    result = Generation([], [], [])
    for messages in prompts:
        text, usage = chat_completion(endpoint, messages, max_tokens)
        result.answers.append(text)
        result.prompt_tokens.append(int(usage.get("prompt_tokens", 0)))
        result.new_tokens.append(int(usage.get("completion_tokens", 0)))
    result.seconds = time.perf_counter() - started
    return result
