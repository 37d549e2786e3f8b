"""Greedy, batched generation from chat prompts, with the per-request costs the report compares
(prompt tokens, generated tokens, seconds). `generate` keeps a KV cache, so each new token costs
one step over the batch, not a pass over the whole prompt again."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..data.tokenize import encode_prompt, end_of_turn_ids


@dataclass
class Generation:
    answers: list[str]
    prompt_tokens: list[int]
    new_tokens: list[int] = field(default_factory=list)
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # this process's CPU time: on a shared machine, the part that is not waiting
    latency: float | None = None  # seconds per request answered alone, when measured


def stop_token_ids(model, tokenizer) -> list[int]:
    """The token that ends an assistant turn in the template (models/templates.py), the tokenizer's
    eos, and whatever the model's generation config adds: generation stops where training taught it to."""
    ids = {tokenizer.eos_token_id, *end_of_turn_ids(tokenizer)}
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids.update(configured if isinstance(configured, list) else [configured])
    return sorted(i for i in ids if i is not None)


@torch.no_grad()
def generate_with_stats(
    model, tokenizer, prompts: Sequence[list[dict[str, Any]]], max_new_tokens: int = 96, batch_size: int = 16
) -> Generation:
    """One greedy answer per prompt, in prompt order. Prompts are batched by length with left
    padding, so a short prompt does not wait behind a long one's padding."""
    started, cpu_started = time.perf_counter(), time.process_time()
    encoded = [encode_prompt(tokenizer, messages) for messages in prompts]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    result = Generation([""] * len(encoded), [len(ids) for ids in encoded], [0] * len(encoded))
    device = next(model.parameters()).device
    stops = stop_token_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[0]
    model.eval()
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        width = max(len(encoded[i]) for i in chunk)
        input_ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, index in enumerate(chunk):
            ids = encoded[index]
            input_ids[row, width - len(ids) :] = torch.tensor(ids)
            attention_mask[row, width - len(ids) :] = 1
        output = model.generate(
            input_ids=input_ids.to(device),
            attention_mask=attention_mask.to(device),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=stops,
            pad_token_id=pad_id,
            temperature=None,
            top_p=None,
            top_k=None,
            use_cache=True,
        )
        for row, index in enumerate(chunk):
            new = output[row, width:].tolist()
            ended = next((n for n, token in enumerate(new) if token in stops), len(new))
            result.new_tokens[index] = ended
            result.answers[index] = tokenizer.decode(new[:ended], skip_special_tokens=True).strip()
    result.seconds = time.perf_counter() - started
    result.cpu_seconds = time.process_time() - cpu_started
    return result


def generate_answers(
    model, tokenizer, prompts: Sequence[list[dict[str, Any]]], max_new_tokens: int = 96, batch_size: int = 16
) -> list[str]:
    return generate_with_stats(model, tokenizer, prompts, max_new_tokens, batch_size).answers
