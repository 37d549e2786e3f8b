"""Local training time, measured on this machine: a short calibration run of the real training loop
(`train_sft` with the user's config, on the run's own first batches), timed after its warm-up
steps, then scaled to every batch the full run will draw.

Time is scaled by the tokens the loop computes on: each micro-batch's real tokens with padding-free
batches (the SFT default), batch size × its longest row when rows are padded; the batch order is a
pure function of the seed (train/batching.py), so the tokens of every step of the full run are known
before it starts. The first optimizer steps are slower (allocator growth, kernel selection for new
shapes) and are left out.

This is the one place where plan imports train: calibrating with anything but the real loop would
measure a different program.
"""

from __future__ import annotations

import copy
import itertools
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import PlanError

FORWARD_SHARE = {"full": 1 / 3}  # validation runs forward only: 2N of full's 6N FLOPs, of LoRA's 4N (else 1/2)


@dataclass
class RunData:
    """What the full run will train and validate on, tokenized as train_sft does."""

    train_conversations: list
    train_lengths: list[int]
    train_trained: list[int]  # trained tokens per example
    val_lengths: list[int]


@dataclass
class StepStats:
    padded: list[int]  # tokens computed on per optimizer step (with padding where rows are padded)
    longest_row: int
    most_trained: int  # most trained tokens in one micro-batch (the loss head's share of the peak)
    most_batch_tokens: int = 0  # most tokens computed on in one micro-batch: the activations' share of the peak


@dataclass
class Calibration:
    warmup_steps: int
    measured_steps: int
    seconds: float
    padded_tokens: int
    seconds_per_padded_token: float
    peak_rss_mib: float
    framework_rss_mib: float
    threads: int
    cores: int
    load_average: float | None
    notes: list[str] = field(default_factory=list)


def run_data(config, tokenizer) -> RunData:
    """The training and validation examples of the run, built by train's own code."""
    from ..train.datasets import sft_conversations, sft_datasets

    conversations = sft_conversations(config)
    prepared, val_prepared = sft_datasets(config, conversations, tokenizer)
    if not prepared.examples:
        raise PlanError(f"no training example of {config.data.train} fits data.max_length={config.data.max_length}")
    return RunData(
        conversations.company,
        [len(e.input_ids) for e in prepared.examples],
        [e.trained_tokens for e in prepared.examples],
        [len(e.input_ids) for e in val_prepared.examples],
    )


def total_steps(config, train_examples: int) -> tuple[int, int]:
    """(steps per epoch, total steps) of the run."""
    from ..train.datasets import step_counts

    counts = step_counts(config, train_examples)
    return counts.steps_per_epoch, counts.total_steps


def batch_tokens(lengths: Sequence[int], padding_free: bool) -> int:
    return sum(lengths) if padding_free else max(lengths) * len(lengths)


def step_stats(
    lengths: Sequence[int],
    trained: Sequence[int],
    batch_size: int,
    grad_accum: int,
    seed: int,
    steps: int,
    padding_free: bool = False,
    budget: int = 0,
) -> StepStats:
    """Tokens computed on in each optimizer step, drawing batches the way train_sft does (a micro-batch
    split into pieces of at most `budget` tokens, as train.micro_batch_tokens does)."""
    from ..train.batching import batch_stream, within_token_budget

    stream = batch_stream(lengths, batch_size, seed)
    padded, longest, most_trained, most_tokens = [], 0, 0, 0
    for _ in range(steps):
        step = 0
        for _, batch in itertools.islice(stream, grad_accum):
            for piece in within_token_budget([lengths[i] for i in batch], budget):
                rows = [lengths[batch[i]] for i in piece]
                tokens = batch_tokens(rows, padding_free)
                step += tokens
                most_tokens = max(most_tokens, tokens)
                longest = max(longest, max(rows))
                most_trained = max(most_trained, sum(trained[batch[i]] for i in piece))
        padded.append(step)
    return StepStats(padded, longest, most_trained, most_tokens)


def run_step_stats(config, data: RunData, steps: int) -> StepStats:
    """step_stats for the first `steps` steps of the run `config` describes, on its data."""
    from ..train.packing import packs_rows

    t = config.train
    return step_stats(
        data.train_lengths,
        data.train_trained,
        t.batch_size,
        t.grad_accum,
        t.seed,
        steps,
        packs_rows(config),
        t.micro_batch_tokens,
    )


def validation_padded(lengths: Sequence[int], batch_size: int, padding_free: bool = False) -> int:
    """Validation batches are sorted by length (train/sft.py validation_loss): little padding."""
    ordered = sorted(lengths)
    return sum(batch_tokens(ordered[i : i + batch_size], padding_free) for i in range(0, len(ordered), batch_size))


def resident_mib() -> float:
    """This process's resident memory now."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return peak_rss_mib()


def peak_rss_mib() -> float:
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def calibrate(
    config, data: RunData, warmup_steps: int = 3, measured_steps: int = 5, log: Callable[[str], None] = lambda _: None
) -> Calibration:
    """A few real optimizer steps on the run's own first batches; seconds per padded token after warm-up."""
    import torch  # noqa: F401  (imported before the framework size is read)
    import transformers  # noqa: F401

    from ..runs import read_metrics
    from ..train.session import available_cores
    from ..train.sft import train_sft

    framework = resident_mib()
    steps = warmup_steps + measured_steps
    with tempfile.TemporaryDirectory(prefix="buxiban-plan-") as workdir:
        train_file = Path(workdir) / "train.jsonl"
        with train_file.open(
            "w", encoding="utf-8"
        ) as out:  # the run's own training split: same batches, no validation pass
            for conversation in data.train_conversations:
                out.write(json.dumps({"messages": conversation.messages}, ensure_ascii=False) + "\n")
        probe = copy.deepcopy(config)
        probe.output_dir = str(Path(workdir) / "run")
        probe.data.train, probe.data.validation, probe.data.validation_fraction = str(train_file), None, 0.0
        probe.train.max_steps, probe.train.checkpoint_every, probe.train.eval_every = steps, 10**9, 10**9
        probe.train.tracking, probe.train.early_stopping_patience = [], None
        log(f"calibrating: {steps} optimizer steps of the real training loop ({warmup_steps} warm-up, not timed)")
        train_sft(probe, progress=False, log=lambda _: None)
        times = [m["time"] for m in read_metrics(probe.output_dir) if "loss" in m]
    if len(times) < steps:
        raise PlanError(f"the calibration run logged {len(times)} of {steps} steps")
    stats = run_step_stats(config, data, steps)
    # Step k is logged when it ends; the timed window runs from the end of the last warm-up step.
    seconds = times[steps - 1] - times[warmup_steps - 1] if warmup_steps else times[-1] - times[0]
    padded = sum(stats.padded[warmup_steps:steps] if warmup_steps else stats.padded[1:steps])
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    cores = available_cores()
    calibration = Calibration(
        warmup_steps,
        measured_steps,
        round(seconds, 3),
        padded,
        seconds / max(1, padded),
        round(peak_rss_mib(), 1),
        round(framework, 1),
        config.train.threads or cores,
        cores,
        None if load is None else round(load, 2),
    )
    if load is not None and load > cores + 0.5:
        calibration.notes.append(
            f"the machine was busy while calibrating (load average {load:.1f} on {cores} cores): "
            "the time below is what it would take under the same load; re-run plan on a quiet "
            "machine for the unloaded time"
        )
    return calibration


def predict_time(config, data: RunData, calibration: Calibration, epochs: float | None = None) -> dict[str, Any]:
    """The full run's training-loop seconds (the manifest's train_seconds), from the calibration."""
    from ..train.packing import packs_rows

    config = copy.deepcopy(config)
    if epochs is not None:
        config.train.epochs, config.train.max_steps = float(epochs), None
    t = config.train
    per_epoch, steps = total_steps(config, len(data.train_lengths))
    packed = packs_rows(config)
    stats = run_step_stats(config, data, steps)
    train_seconds = sum(stats.padded) * calibration.seconds_per_padded_token
    passes = 0
    if data.val_lengths:
        every = t.eval_every or per_epoch
        passes = sum(1 for s in range(steps) if (s + 1) % every == 0 or s + 1 == steps)
    val_seconds = (
        passes
        * validation_padded(data.val_lengths, t.batch_size, packed)
        * calibration.seconds_per_padded_token
        * FORWARD_SHARE.get(config.adapter, 0.5)
    )
    return {
        "epochs": t.epochs if not t.max_steps else round(steps / per_epoch, 3),
        "steps": steps,
        "train_examples": len(data.train_lengths),
        "padded_tokens": sum(stats.padded),
        "real_tokens": round(sum(data.train_lengths) * steps / per_epoch),
        "validation_passes": passes,
        "seconds": round(train_seconds + val_seconds, 1),
        "training_seconds": round(train_seconds, 1),
        "validation_seconds": round(val_seconds, 1),
        "longest_row": stats.longest_row,
        "most_trained_in_batch": stats.most_trained,
    }


def local_money(seconds: float, price_per_hour: float | None) -> float | None:
    return None if price_per_hour is None else seconds / 3600 * price_per_hour
