"""Per-request retrieval for /v1/chat/completions.

A client names one of the indexes the server was started with (`buxiban serve --rag NAME=INDEX`) in the
request body; with the official SDK that is `extra_body={"rag": {"index": "docs", "k": 3}}`. The top-k chunks
for the last user message go into that message in the layout `rag_messages` gives them everywhere else
(chat --rag, eval --rag, `rag augment` training data), so a model fine-tuned on augmented data sees the
prompt it learned from. The response carries the chunks in an extra top-level field `rag` (the SDK keeps
unknown fields: `completion.rag` or `completion.model_extra["rag"]`), so an answer can cite its sources.

Only names from the command line are accepted, never paths: a client cannot make the server open a file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...errors import ServeError

DEFAULT_K = 3
MAX_K = 20  # a prompt full of chunks overflows the context of a small model long before this
FIELDS = ("index", "k")


@dataclass(frozen=True)
class RagRequest:
    name: str
    path: str
    k: int


def rag_request(body: dict, indexes: dict[str, str]) -> RagRequest | None:
    """The request's `rag` option, checked; None when it asks for none. `indexes`: name -> index file."""
    value = body.get("rag")
    if value is None:
        return None
    if isinstance(value, str):  # {"rag": "docs"} is short for {"rag": {"index": "docs"}}
        value = {"index": value}
    if not isinstance(value, dict):
        raise ServeError('\'rag\' must be an object such as {"index": "docs", "k": 3}', "rag")
    unknown = sorted(set(value) - set(FIELDS))
    if unknown:
        raise ServeError(f"rag.{unknown[0]} is not an option; rag takes {', '.join(FIELDS)}", f"rag.{unknown[0]}")
    name = value.get("index")
    if name not in indexes:
        have = ", ".join(sorted(indexes)) or "none (start the server with --rag NAME=INDEX)"
        raise ServeError(f"rag.index is {str(name)[:100]!r}; this server's indexes: {have}", "rag.index")
    k = value.get("k", DEFAULT_K)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise ServeError(f"rag.k is {k!r}; use a whole number of chunks from 1 to {MAX_K}", "rag.k")
    return RagRequest(name, indexes[name], k)


def with_documents(messages: list[dict[str, Any]], request: RagRequest) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The messages with the retrieved chunks in the last user turn, and the `rag` field of the response.
    Blocking (embedding the question): call it off the event loop."""
    from ...rag.retrieve import open_index, rag_messages, retrieve

    question = next((m["content"] for m in reversed(messages) if m["role"] == "user"), None)
    if not question or not question.strip():
        raise ServeError("rag needs a user message with text to retrieve for", "messages")
    chunks = retrieve(open_index(request.path), question, request.k)
    return rag_messages(messages, chunks), {
        "index": request.name,
        "k": request.k,
        "sources": [chunk.as_json() for chunk in chunks],
    }
