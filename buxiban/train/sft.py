"""Supervised fine-tuning: one explicit loop, forward → loss → backward → step, in plain sight."""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ..config import RunConfig, config_to_yaml
from ..data.prepare import Prepared, prepare
from ..data.records import load_chat_jsonl
from ..data.split import hash_split
from ..errors import DataError, Problem
from ..models.adapt import apply_lora, count_parameters
from ..models.load import load_model, load_tokenizer, resolve
from .batching import batch_stream, collate
from .losses import summed_token_loss
from .rundir import MANIFEST, MetricsLog, file_sha256, prepare_run_dir, write_json_atomic
from .schedule import learning_rate


@dataclass
class TrainResult:
    run_dir: Path
    steps: int
    train_loss: float
    val_loss: float | None
    seconds: float
    tokens_per_second: float


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 autocast where the hardware runs it natively (measured 2.2–2.8× faster for LoRA on an
    AVX512-BF16 CPU); fp32 elsewhere, because emulated bf16 is slower than fp32."""
    if precision == "fp32":
        return None
    if device.type == "cuda":
        native = torch.cuda.is_bf16_supported()
    else:
        native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    if precision == "bf16" or native:
        return torch.bfloat16
    return None


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def train_sft(config: RunConfig, overwrite: bool = False, progress: bool = True,
              log: Callable[[str], None] = print) -> TrainResult:
    out = Path(config.output_dir)
    # Data first: a malformed line must fail in seconds, before any model is touched.
    train_conversations = load_chat_jsonl(config.data.train)
    if config.data.validation:
        val_conversations = load_chat_jsonl(config.data.validation)
    else:
        train_conversations, val_conversations = hash_split(train_conversations, config.data.validation_fraction)
    prepare_run_dir(out, overwrite)

    torch.set_num_threads(config.train.threads or available_cores())
    torch.manual_seed(config.train.seed)
    device = pick_device()
    source = resolve(config.model, config.trust_remote_code)
    tokenizer = load_tokenizer(source, config.trust_remote_code)
    train_set = prepare(train_conversations, tokenizer, config.data.max_length, config.data.overlength)
    val_set = prepare(val_conversations, tokenizer, config.data.max_length, config.data.overlength)
    _report_dropped(train_set, val_set, config.data.max_length, log)
    if not train_set.examples:
        raise DataError("no training examples left", [Problem(config.data.train, "every example was dropped",
                                                              fix="raise data.max_length or add data")])

    model = load_model(source, config.trust_remote_code).to(device)
    model = apply_lora(model, config.lora)
    trainable, total = count_parameters(model)
    dtype = autocast_dtype(config.train.precision, device)
    t = config.train
    examples_per_step = t.batch_size * t.grad_accum
    steps_per_epoch = math.ceil(len(train_set.examples) / examples_per_step)
    total_steps = t.max_steps or max(1, math.ceil(t.epochs * steps_per_epoch))
    warmup_steps = math.ceil(t.warmup_ratio * total_steps)
    eval_every = t.eval_every or steps_per_epoch
    log(f"training {len(train_set.examples)} examples ({len(val_set.examples)} validation) on {source.name}, "
        f"LoRA r={config.lora.r}: {trainable:,} of {total:,} parameters trained; {total_steps} steps, "
        f"{'bf16 autocast' if dtype else 'fp32'} on {device.type} with {torch.get_num_threads()} threads")

    manifest = {
        "format": 1, "status": "running", "method": config.method, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "base_model": source.identity(), "trust_remote_code": config.trust_remote_code,
        "data": _data_identity(config, len(train_set.examples), len(val_set.examples)),
        "parameters": {"trainable": trainable, "total": total},
        "default_system_prompt": most_common_system_prompt(train_conversations),
    }
    (out / "config.yaml").write_text(config_to_yaml(config), encoding="utf-8")
    write_json_atomic(out / MANIFEST, manifest)
    metrics = MetricsLog(out / "metrics.jsonl")

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=t.learning_rate, weight_decay=t.weight_decay)
    pad_id = tokenizer.pad_token_id
    lengths = [len(e.input_ids) for e in train_set.examples]
    stream = batch_stream(lengths, t.batch_size, t.seed)
    bar = _progress_bar(total_steps, progress)
    started = time.perf_counter()
    real_tokens = 0
    train_loss = float("nan")
    val_loss = None
    try:
        for step in range(total_steps):
            model.train()
            micro = [next(stream) for _ in range(t.grad_accum)]
            batches = [collate([train_set.examples[i] for i in indices], pad_id) for _, indices in micro]
            # Normalize by the trained tokens of the whole step: accumulation then equals one big batch.
            step_tokens = sum(int((b["labels"][:, 1:] != -100).sum()) for b in batches)
            loss_sum = 0.0
            for batch in batches:
                batch = {k: v.to(device) for k, v in batch.items()}
                with _autocast(device, dtype):
                    summed, _ = summed_token_loss(model, **batch)
                (summed / step_tokens).backward()
                loss_sum += summed.item()
                real_tokens += int(batch["attention_mask"].sum())
            grad_norm = torch.nn.utils.clip_grad_norm_(params, t.max_grad_norm if t.max_grad_norm > 0 else float("inf"))
            rate = learning_rate(step, total_steps, t.learning_rate, warmup_steps, t.lr_schedule)
            for group in optimizer.param_groups:
                group["lr"] = rate
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            train_loss = loss_sum / step_tokens
            elapsed = time.perf_counter() - started
            metrics.write(step=step + 1, epoch=round((step + 1) / steps_per_epoch, 3), loss=round(train_loss, 5),
                          lr=rate, grad_norm=round(float(grad_norm), 4), tokens=real_tokens,
                          tokens_per_s=round(real_tokens / elapsed, 1))
            if val_set.examples and ((step + 1) % eval_every == 0 or step + 1 == total_steps):
                val_loss = validation_loss(model, val_set, t.batch_size, pad_id, device, dtype)
                metrics.write(step=step + 1, val_loss=round(val_loss, 5))
            bar.set_postfix_str(f"loss {train_loss:.3f}" + (f" val {val_loss:.3f}" if val_loss is not None else ""),
                                refresh=False)
            bar.update(1)
    except BaseException as exc:
        manifest.update(status="failed", error=f"{type(exc).__name__}: {exc}")
        write_json_atomic(out / MANIFEST, manifest)
        raise
    finally:
        bar.close()
        metrics.close()
    seconds = time.perf_counter() - started
    model.save_pretrained(str(out / "adapter"))
    result = TrainResult(out, total_steps, train_loss, val_loss, seconds, real_tokens / seconds)
    manifest.update(status="complete", finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"), steps=total_steps,
                    train_seconds=round(seconds, 1), tokens_per_second=round(result.tokens_per_second, 1),
                    final_train_loss=round(train_loss, 5), final_val_loss=None if val_loss is None else round(val_loss, 5))
    write_json_atomic(out / MANIFEST, manifest)
    return result


@torch.no_grad()
def validation_loss(model, dataset: Prepared, batch_size: int, pad_id: int, device, dtype) -> float:
    """Token-weighted mean loss over the whole validation set, dropout off."""
    model.eval()
    total, count = 0.0, 0
    order = sorted(range(len(dataset.examples)), key=lambda i: len(dataset.examples[i].input_ids))
    for start in range(0, len(order), batch_size):
        batch = collate([dataset.examples[i] for i in order[start:start + batch_size]], pad_id)
        batch = {k: v.to(device) for k, v in batch.items()}
        with _autocast(device, dtype):
            summed, n = summed_token_loss(model, **batch)
        total += summed.item()
        count += n
    return total / max(count, 1)


def most_common_system_prompt(conversations) -> str | None:
    """The system prompt most examples were trained with: what chat should use when none is given,
    because a fine-tuned model answers best under the prompt it learned with."""
    from collections import Counter

    prompts = Counter(c.messages[0]["content"] for c in conversations if c.messages[0]["role"] == "system")
    return prompts.most_common(1)[0][0] if prompts else None


def _autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()


def _progress_bar(total: int, enabled: bool):
    from tqdm import tqdm

    # In a log file (CI) a bar redraws as one line per update: update rarely there.
    interactive = sys.stderr.isatty()
    return tqdm(total=total, desc="train", unit="step", disable=not enabled, dynamic_ncols=True,
                mininterval=0.5 if interactive else 30.0)


def _data_identity(config: RunConfig, train_examples: int, val_examples: int) -> dict:
    identity = {"train": {"path": config.data.train, "sha256": file_sha256(config.data.train), "examples": train_examples}}
    if config.data.validation:
        identity["validation"] = {"path": config.data.validation, "sha256": file_sha256(config.data.validation),
                                  "examples": val_examples}
    else:
        identity["validation"] = {"split_from_train": config.data.validation_fraction, "examples": val_examples}
    return identity


def _report_dropped(train_set: Prepared, val_set: Prepared, max_length: int, log) -> None:
    for where, tokens in train_set.over_length + val_set.over_length:
        size = f"{tokens} tokens is" if tokens >= 0 else "far"
        log(f"warning: {where}: {size} over data.max_length={max_length}; example skipped")
    for where, lost in train_set.truncated + val_set.truncated:
        log(f"warning: {where}: cut to data.max_length={max_length}, {lost} tokens lost")
    for where in train_set.no_trained_tokens + val_set.no_trained_tokens:
        log(f"warning: {where}: every assistant message has weight 0; nothing to learn, example skipped")
