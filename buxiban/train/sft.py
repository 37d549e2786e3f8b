"""Supervised fine-tuning: one explicit loop, forward → loss → backward → step, in plain sight.
The run directory, checkpoints, schedule and bookkeeping live in session.py, shared with dpo.py."""

from __future__ import annotations

import copy
import itertools
from collections import Counter
from collections.abc import Callable

import torch

from ..config import RunConfig
from ..data.prepare import Prepared
from ..errors import DataError, Problem
from ..runs import file_sha256
from .batching import batch_stream, within_token_budget
from .datasets import sft_conversations, sft_datasets
from .losses import summed_token_loss
from .packing import real_token_count, to_device, trained_positions
from .session import TrainResult, TrainRun, start_run


def train_sft(
    config: RunConfig,
    overwrite: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
    resume: str | None = None,
    force: bool = False,
) -> TrainResult:
    config = copy.deepcopy(config)  # `auto` values are resolved into this copy, never the caller's
    # Data first: a malformed line must fail in seconds, before any model is touched.
    conversations = sft_conversations(config, log)
    run = start_run(config, resume, force, overwrite, progress, log)
    train_set, val_set = sft_datasets(config, conversations, run.tokenizer)
    _report_dropped(train_set, val_set, config.data.max_length, run.log)
    if not train_set.examples:
        raise DataError(
            "no training examples left",
            [Problem(config.data.train, "every example was dropped", fix="raise data.max_length or add data")],
        )
    t = config.train
    record = run.build(
        len(train_set.examples),
        extra_manifest={
            "data": _data_identity(config, len(train_set.examples), len(val_set.examples), conversations.general_used),
            "default_system_prompt": most_common_system_prompt(conversations.train),
        },
    )

    examples = train_set.examples
    stream = batch_stream([len(e.input_ids) for e in examples], t.batch_size, t.seed)
    stream = itertools.islice(stream, run.start_step * t.grad_accum, None)  # a resumed run skips what it trained
    real_tokens, trained_tokens, train_loss, val_loss, steps_done = 0, 0, float("nan"), None, run.start_step
    with record:
        for step in range(run.start_step, run.total_steps):
            run.model.train()
            batches = []  # (micro-batch, the weight its loss counts with)
            for _, indices in itertools.islice(stream, t.grad_accum):
                share = run.my_share([examples[i] for i in indices])
                for piece in within_token_budget([len(r.input_ids) for r in share.rows], t.micro_batch_tokens):
                    batches.append((run.collate([share.rows[i] for i in piece]), share.weight))
            # Normalize by the trained tokens of the whole (global) step: accumulation and N processes
            # then compute exactly the update of one big batch.
            step_tokens = run.world.sum(sum(trained_positions(b) for b, weight in batches if weight))
            loss_sum = 0.0
            for batch, weight in batches:
                batch = to_device(batch, run.device)
                with run.autocast():
                    summed, _ = run.forward(summed_token_loss, **batch)
                (summed * weight / step_tokens).backward()
                if weight:  # a stand-in row is not real work
                    loss_sum += summed.item()
                    real_tokens += real_token_count(batch)
            grad_norm, rate = run.optimizer_step(step)
            steps_done = step + 1
            train_loss = run.world.sum(loss_sum) / step_tokens
            trained_tokens += step_tokens  # already summed over processes
            tokens_seen = run.world.sum(real_tokens)
            run.log_step(
                step,
                loss=round(train_loss, 5),
                lr=rate,
                grad_norm=round(grad_norm, 4),
                tokens=int(tokens_seen),
                tokens_per_s=round(tokens_seen / max(1e-9, run.elapsed()), 1),
            )
            if val_set.examples and run.validation_due(step):
                val_loss = validation_loss(run, val_set)
                if run.record_validation(step, train_loss, val_loss):
                    break
            if run.checkpoint_due(step):
                run.save_checkpoint(step)
        # The output head ran on the trained positions only: the FLOPs count takes their number.
        return run.complete(steps_done, train_loss, val_loss, real_tokens, trained_tokens)


@torch.no_grad()
def validation_loss(run: TrainRun, dataset: Prepared) -> float:
    """Token-weighted mean loss over the whole validation set, dropout off, shared across processes."""
    run.model.eval()
    total, count = 0.0, 0
    order = sorted(range(len(dataset.examples)), key=lambda i: len(dataset.examples[i].input_ids))
    size = run.config.train.batch_size
    for start in range(0, len(order), size):
        share = run.my_share([dataset.examples[i] for i in order[start : start + size]])
        if not share.rows:
            continue
        batch = to_device(run.collate(share.rows), run.device)
        with run.autocast():
            summed, n = run.forward(summed_token_loss, **batch)
        total += summed.item() * share.weight
        count += n * share.weight
    return run.world.sum(total) / max(1.0, run.world.sum(count))


def most_common_system_prompt(conversations) -> str | None:
    """The system prompt most examples were trained with: what chat should use when none is given,
    because a fine-tuned model answers best under the prompt it learned with."""
    prompts = Counter(c.messages[0]["content"] for c in conversations if c.messages[0]["role"] == "system")
    return prompts.most_common(1)[0][0] if prompts else None


def _data_identity(config: RunConfig, train_examples: int, val_examples: int, general: int) -> dict:
    identity = {
        "train": {"path": config.data.train, "sha256": file_sha256(config.data.train), "examples": train_examples}
    }
    if config.data.validation:
        identity["validation"] = {
            "path": config.data.validation,
            "sha256": file_sha256(config.data.validation),
            "examples": val_examples,
        }
    else:
        identity["validation"] = {"split_from_train": config.data.validation_fraction, "examples": val_examples}
    if config.mix.general:
        identity["mix"] = {"general": config.mix.general, "ratio": config.mix.ratio, "examples": general}
    return identity


def _report_dropped(train_set: Prepared, val_set: Prepared, max_length: int, log) -> None:
    for where, tokens in train_set.over_length + val_set.over_length:
        size = f"{tokens} tokens is" if tokens >= 0 else "far"
        log(f"warning: {where}: {size} over data.max_length={max_length}; example skipped")
    for where, lost in train_set.truncated + val_set.truncated:
        log(f"warning: {where}: cut to data.max_length={max_length}, {lost} tokens lost")
    for where in train_set.no_trained_tokens + val_set.no_trained_tokens:
        log(f"warning: {where}: every assistant message has weight 0; nothing to learn, example skipped")
