"""Greedy, batched generation from chat prompts, with the per-request costs the report compares
(prompt tokens, generated tokens, seconds). `generate` keeps a KV cache, so each new token costs
one step over the batch, not a pass over the whole prompt again."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..data.tokenize import encode_prompt, end_of_turn_ids
from .shape import ModelShape


@dataclass
class Generation:
    answers: list[str]
    prompt_tokens: list[int]
    new_tokens: list[int] = field(default_factory=list)
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # this process's CPU time: on a shared machine, the part that is not waiting
    latency: float | None = None  # seconds per request answered alone, when measured


# Rows answered together at most. Base Gemma 3 270M on the Chinese test prompts (78 new tokens each,
# fp32, 2 cores): 48 prompts took 85 s in rows of 16 and 44 s in one row of 48; 72 took 96 s in rows
# of 32 and 66 s in one of 72; the answers were identical. Each step reads every weight once, so more
# rows share that read. But a batch runs until its longest answer ends: the fine-tuned model's short
# answers took 37 s in rows of 32 and 41 s in one of 72, the rows that had finished padding out the steps.
MAX_ROWS = 64
MEMORY_SHARE = 0.25  # of the memory free when generation starts: the model and the caller keep the rest


def free_memory_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as meminfo:
            fields = dict(line.split(":", 1) for line in meminfo)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def bytes_per_row(config, longest_prompt: int, max_new_tokens: int, element_bytes: int) -> int:
    """What one more row adds while it is generated: its KV cache at full length, the prefill's
    attention scores and widest activation for one layer at a time, and the vocabulary-wide fp32
    logits (kept by the model, the logits processors and the argmax)."""
    shape = ModelShape.from_config(config.get_text_config() if hasattr(config, "get_text_config") else config)
    widest = max(shape.hidden, shape.intermediate)
    length = longest_prompt + max_new_tokens
    kv_cache = shape.layers * 2 * shape.kv_width * length * element_bytes
    prefill = shape.heads * longest_prompt**2 * 4 + 4 * longest_prompt * widest * element_bytes
    return kv_cache + prefill + 3 * shape.vocab * 4


def rows_that_fit(model, longest_prompt: int, max_new_tokens: int) -> int:
    """Rows to generate together: as many as fit in a quarter of the free memory, 1 to MAX_ROWS."""
    parameter = next(model.parameters())
    # the compute dtype: a 4-bit model's first parameter may be packed bytes, its cache is not
    element_bytes = torch.empty((), dtype=getattr(model, "dtype", parameter.dtype)).element_size()
    per_row = bytes_per_row(model.config, longest_prompt, max_new_tokens, element_bytes)
    return max(1, min(MAX_ROWS, int(free_memory_bytes(parameter.device) * MEMORY_SHARE) // per_row))


def stop_token_ids(model, tokenizer) -> list[int]:
    """The token that ends an assistant turn in the template (models/templates.py), the tokenizer's
    eos, and whatever the model's generation config adds: generation stops where training taught it to."""
    ids = {tokenizer.eos_token_id, *end_of_turn_ids(tokenizer)}
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids.update(configured if isinstance(configured, list) else [configured])
    return sorted(i for i in ids if i is not None)


@torch.no_grad()
def generate_with_stats(
    model,
    tokenizer,
    prompts: Sequence[list[dict[str, Any]]],
    max_new_tokens: int = 96,
    batch_size: int | None = None,
) -> Generation:
    """One greedy answer per prompt, in prompt order. Prompts are batched by length with left
    padding, so a short prompt does not wait behind a long one's padding; `batch_size` None takes
    as many rows as fit in memory (`rows_that_fit`)."""
    started, cpu_started = time.perf_counter(), time.process_time()
    encoded = [encode_prompt(tokenizer, messages) for messages in prompts]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    result = Generation([""] * len(encoded), [len(ids) for ids in encoded], [0] * len(encoded))
    device = next(model.parameters()).device
    stops = stop_token_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[0]
    if batch_size is None and encoded:
        fit = rows_that_fit(model, max(len(ids) for ids in encoded), max_new_tokens)
        # even batches: 72 prompts as 36 + 36, not 64 + 8 whose 8 rows would take as many steps
        batch_size = math.ceil(len(encoded) / math.ceil(len(encoded) / fit))
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
    model,
    tokenizer,
    prompts: Sequence[list[dict[str, Any]]],
    max_new_tokens: int = 96,
    batch_size: int | None = None,
) -> list[str]:
    return generate_with_stats(model, tokenizer, prompts, max_new_tokens, batch_size).answers
