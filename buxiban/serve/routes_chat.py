"""/v1/models, /v1/chat/completions and /v1/completions, streamed (SSE) or whole."""

from __future__ import annotations

import asyncio
import json
import secrets
import time

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from ..data.tokenize import encode_prompt
from ..errors import ServeError
from .generation import GenerationRequest
from .rag import rag_request, with_documents
from .requests import chat_messages, completion_prompt, read_json, required_string, sampling

router = APIRouter()


@router.get("/v1/models")
def list_models(request: Request):
    state = request.app.state.serve
    pool = state.pool
    data = [{"id": pool.base_id, "object": "model", "created": state.started, "owned_by": "buxiban",
             "buxiban": {"kind": "base", "spec": state.settings.model}}]
    for entry in state.registry.list():
        problem = pool.unservable(entry)
        data.append({"id": entry.name, "object": "model", "created": int(entry.registered), "owned_by": "user",
                     "parent": pool.base_id if not problem else entry.base_model,
                     "buxiban": {"kind": "adapter", "servable": problem is None, "reason": problem,
                                 "method": entry.method, "run_dir": str(entry.run_dir)}})
    return {"object": "list", "data": data}


@router.get("/v1/models/{model_id:path}")
def get_model(model_id: str, request: Request):
    for model in list_models(request)["data"]:
        if model["id"] == model_id:
            return model
    request.app.state.serve.pool.resolve(model_id)  # raises the 404 that says what exists
    raise ServeError(f"the model '{model_id}' does not exist", "model")


@router.post("/v1/chat/completions")
async def chat_completions(request: Request):
    pool, body, model, adapter = await _target(request)
    messages = chat_messages(body.get("messages"))
    wanted, sources = rag_request(body, request.app.state.serve.settings.rag), None
    if wanted is not None:  # embedding the question takes milliseconds of CPU: not on the event loop
        messages, sources = await asyncio.to_thread(with_documents, messages, wanted)
    prompt_ids = encode_prompt(pool.tokenizer, messages)
    return await _respond(pool, body, model, adapter, prompt_ids, chat=True, extra={"rag": sources} if sources else {})


@router.post("/v1/completions")
async def completions(request: Request):
    pool, body, model, adapter = await _target(request)
    if body.get("rag") is not None:
        raise ServeError("rag works with /v1/chat/completions, where the question is a user message", "rag")
    prompt_ids = list(pool.tokenizer(completion_prompt(body.get("prompt")))["input_ids"])
    if not prompt_ids:
        raise ServeError("'prompt' is empty", "prompt")
    return await _respond(pool, body, model, adapter, prompt_ids, chat=False)


async def _target(request: Request):
    """The pool, the body, the requested model and the adapter it selects (None: the base)."""
    body = await read_json(request)
    pool = request.app.state.serve.pool
    model = required_string(body, "model")
    return pool, body, model, pool.resolve(model)


async def _respond(pool, body: dict, model: str, adapter, prompt_ids: list[int], chat: bool, extra: dict | None = None):
    """`extra`: top-level response fields beyond OpenAI's (the retrieved sources); streamed in the first chunk."""
    settings = sampling(body, len(prompt_ids), pool.context)
    loop = asyncio.get_running_loop()
    events: asyncio.Queue = asyncio.Queue()

    def emit(event: tuple) -> None:  # called on the model thread
        try:
            loop.call_soon_threadsafe(events.put_nowait, event)
        except RuntimeError:  # the server is shutting down and the loop is gone: nobody is listening
            pass

    job = GenerationRequest(adapter, prompt_ids, settings, emit)
    pool.submit(job)  # a full queue raises Busy -> 429
    meta = {"id": ("chatcmpl-" if chat else "cmpl-") + secrets.token_hex(12), "created": int(time.time()), "model": model}
    if body.get("stream"):
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return StreamingResponse(_stream(job, events, meta, chat, len(prompt_ids), include_usage, extra or {}),
                                 media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
    texts, reasons, completion_tokens = {}, {}, 0
    try:
        while True:
            event = await events.get()
            if event[0] == "delta":
                texts[event[1]] = texts.get(event[1], "") + event[2]
            elif event[0] == "finish":
                reasons[event[1]] = event[2]
                completion_tokens += event[3]
            elif event[0] == "error":
                return JSONResponse({"error": {"message": event[1], "type": "server_error", "param": None,
                                               "code": "generation_failed"}}, status_code=500)
            else:
                break
    finally:
        job.cancelled.set()  # the client may have gone; the model thread skips what is left
    usage = {"prompt_tokens": len(prompt_ids), "completion_tokens": completion_tokens,
             "total_tokens": len(prompt_ids) + completion_tokens}
    choices = [_choice(chat, i, texts.get(i, ""), reasons.get(i, "stop")) for i in range(settings.n)]
    return {**meta, "object": "chat.completion" if chat else "text_completion", "choices": choices, "usage": usage,
            "system_fingerprint": None, **(extra or {})}


def _choice(chat: bool, index: int, text: str, reason: str) -> dict:
    if chat:
        return {"index": index, "message": {"role": "assistant", "content": text, "refusal": None},
                "finish_reason": reason, "logprobs": None}
    return {"index": index, "text": text, "finish_reason": reason, "logprobs": None}


async def _stream(job: GenerationRequest, events: asyncio.Queue, meta: dict, chat: bool, prompt_tokens: int,
                  include_usage: bool, first_extra: dict):
    kind = "chat.completion.chunk" if chat else "text_completion"
    pending = dict(first_extra)  # sent once, with the first chunk, before any text

    def chunk(choices: list, **extra) -> str:
        body = {**meta, "object": kind, "choices": choices, **pending, **extra}
        pending.clear()
        return "data: " + json.dumps(body, ensure_ascii=False) + "\n\n"

    def piece(index: int, text: str | None = None, reason: str | None = None, role: bool = False) -> dict:
        if not chat:
            return {"index": index, "text": text or "", "finish_reason": reason, "logprobs": None}
        delta = {"role": "assistant", "content": ""} if role else ({"content": text} if text is not None else {})
        return {"index": index, "delta": delta, "finish_reason": reason, "logprobs": None}

    started: set[int] = set()
    completion_tokens = 0
    try:
        while True:
            event = await events.get()
            if event[0] in ("delta", "finish") and chat and event[1] not in started:
                started.add(event[1])
                yield chunk([piece(event[1], role=True)])
            if event[0] == "delta":
                yield chunk([piece(event[1], event[2])])
            elif event[0] == "finish":
                completion_tokens += event[3]
                yield chunk([piece(event[1], reason=event[2])])
            elif event[0] == "error":
                yield "data: " + json.dumps({"error": {"message": event[1], "type": "server_error",
                                                       "code": "generation_failed"}}) + "\n\n"
                return
            else:
                break
        if include_usage:
            yield chunk([], usage={"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                                   "total_tokens": prompt_tokens + completion_tokens})
        yield "data: [DONE]\n\n"
    finally:
        job.cancelled.set()  # a client that hung up stops generation at the next token
