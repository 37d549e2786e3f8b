"""/v1/models, /v1/chat/completions and /v1/completions, streamed (SSE) or whole."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from typing import TYPE_CHECKING

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from ...data.tokenize import encode_prompt
from ...errors import ServeError
from ..jsonbody import read_json, required_string
from .catalog import served_models
from .generation import Delta, Failure, Finish, GenerationEvent, GenerationRequest
from .parsing import chat_messages, completion_prompt, sampling
from .retrieval import rag_request, with_documents

if TYPE_CHECKING:
    from .pool import ModelPool

router = APIRouter()


@router.get("/v1/models")
def list_models(request: Request):
    return {"object": "list", "data": served_models(request.app.state.serve)}


@router.get("/v1/models/{model_id:path}")
def get_model(model_id: str, request: Request):
    for model in served_models(request.app.state.serve):
        if model["id"] == model_id:
            return model
    request.app.state.serve.pool.resolve_adapter(model_id)  # raises the 404 that says what exists
    raise ServeError(f"the model '{model_id}' does not exist", "model")


@router.post("/v1/chat/completions")
async def chat_completions(request: Request):
    pool, body, model, adapter = await _target(request)
    messages = chat_messages(body.get("messages"))
    wanted, sources = rag_request(body, request.app.state.serve.settings.rag), None
    if wanted is not None:  # embedding the question takes milliseconds of CPU: not on the event loop
        messages, sources = await asyncio.to_thread(with_documents, messages, wanted)
    # a long prompt takes a while to tokenize: off the event loop, which serves everyone else meanwhile
    prompt_ids = await asyncio.to_thread(encode_prompt, pool.tokenizer, messages)
    extra = {"rag": sources} if sources else {}
    return await _respond(request, pool, body, model, adapter, prompt_ids, chat=True, extra=extra)


@router.post("/v1/completions")
async def completions(request: Request):
    pool, body, model, adapter = await _target(request)
    if body.get("rag") is not None:
        raise ServeError("rag works with /v1/chat/completions, where the question is a user message", "rag")
    text = completion_prompt(body.get("prompt"))
    prompt_ids = list((await asyncio.to_thread(pool.tokenizer, text))["input_ids"])
    if not prompt_ids:
        raise ServeError("'prompt' is empty", "prompt")
    return await _respond(request, pool, body, model, adapter, prompt_ids, chat=False)


async def _target(request: Request):
    """The pool, the body, the requested model and the adapter it selects (None: the base)."""
    body = await read_json(request)
    pool = request.app.state.serve.pool
    model = required_string(body, "model")
    return pool, body, model, pool.resolve_adapter(model)


async def _client_gone(request: Request) -> None:
    """Returns when the client hangs up. The body has been read, so the next message is the disconnect."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _respond(
    request: Request,
    pool: ModelPool,
    body: dict,
    model: str,
    adapter,
    prompt_ids: list[int],
    chat: bool,
    extra: dict | None = None,
):
    """`extra`: top-level response fields beyond OpenAI's (the retrieved sources); streamed in the first chunk."""
    settings = sampling(body, len(prompt_ids), pool.context)
    loop = asyncio.get_running_loop()
    events: asyncio.Queue[GenerationEvent] = asyncio.Queue()

    def emit(event: GenerationEvent) -> None:  # called on the model thread
        try:
            loop.call_soon_threadsafe(events.put_nowait, event)
        except RuntimeError:  # the server is shutting down and the loop is gone: nobody is listening
            pass

    job = GenerationRequest(adapter, prompt_ids, settings, emit)
    pool.submit(job)  # a full queue raises Busy -> 429
    meta = {
        "id": ("chatcmpl-" if chat else "cmpl-") + secrets.token_hex(12),
        "created": int(time.time()),
        "model": model,
    }
    if body.get("stream"):
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return StreamingResponse(
            _stream(job, events, meta, chat, len(prompt_ids), include_usage, extra or {}),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache"},
        )
    texts, reasons, completion_tokens = {}, {}, 0
    # A non-streamed client that hangs up is never written to, so only watching for the disconnect
    # stops the generation; otherwise it would run to max_tokens × n on the one model thread.
    gone = asyncio.ensure_future(_client_gone(request))
    try:
        while True:
            getting = asyncio.ensure_future(events.get())
            await asyncio.wait({getting, gone}, return_when=asyncio.FIRST_COMPLETED)
            if not getting.done():
                getting.cancel()
                return Response(status_code=499)  # nginx's "client closed request"; nobody reads it
            event = getting.result()
            if isinstance(event, Delta):
                texts[event.choice] = texts.get(event.choice, "") + event.text
            elif isinstance(event, Finish):
                reasons[event.choice] = event.reason
                completion_tokens += event.completion_tokens
            elif isinstance(event, Failure):
                return JSONResponse(
                    {
                        "error": {
                            "message": event.message,
                            "type": "server_error",
                            "param": None,
                            "code": "generation_failed",
                        }
                    },
                    status_code=500,
                )
            else:
                break
    finally:
        gone.cancel()
        job.cancelled.set()  # the client may have gone; the model thread skips what is left
    usage = {
        "prompt_tokens": len(prompt_ids),
        "completion_tokens": completion_tokens,
        "total_tokens": len(prompt_ids) + completion_tokens,
    }
    choices = [_choice(chat, i, texts.get(i, ""), reasons.get(i, "stop")) for i in range(settings.n)]
    return {
        **meta,
        "object": "chat.completion" if chat else "text_completion",
        "choices": choices,
        "usage": usage,
        "system_fingerprint": None,
        **(extra or {}),
    }


def _choice(chat: bool, index: int, text: str, reason: str) -> dict:
    if chat:
        return {
            "index": index,
            "message": {"role": "assistant", "content": text, "refusal": None},
            "finish_reason": reason,
            "logprobs": None,
        }
    return {"index": index, "text": text, "finish_reason": reason, "logprobs": None}


async def _stream(
    job: GenerationRequest,
    events: asyncio.Queue[GenerationEvent],
    meta: dict,
    chat: bool,
    prompt_tokens: int,
    include_usage: bool,
    first_extra: dict,
):
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
            if isinstance(event, (Delta, Finish)) and chat and event.choice not in started:
                started.add(event.choice)
                yield chunk([piece(event.choice, role=True)])
            if isinstance(event, Delta):
                yield chunk([piece(event.choice, event.text)])
            elif isinstance(event, Finish):
                completion_tokens += event.completion_tokens
                yield chunk([piece(event.choice, reason=event.reason)])
            elif isinstance(event, Failure):
                yield (
                    "data: "
                    + json.dumps(
                        {"error": {"message": event.message, "type": "server_error", "code": "generation_failed"}}
                    )
                    + "\n\n"
                )
                return
            else:
                break
        if include_usage:
            yield chunk(
                [],
                usage={
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            )
        yield "data: [DONE]\n\n"
    finally:
        job.cancelled.set()  # a client that hung up stops generation at the next token
