"""Direct Preference Optimization: one explicit loop on preference pairs, usually after SFT.

The reference model is the policy as it starts: the base model for a fresh adapter, or the SFT
model when `dpo.from_run` continues an SFT run's adapter. Its log-probabilities are computed once,
before the first update, and kept in the run directory (a resume reuses them), so no second copy of
the weights is ever held. For a fresh adapter they come from the model with its adapter disabled.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
from collections.abc import Callable
from pathlib import Path

import torch

from ..config import RunConfig
from ..data.preference import PreferencePair, load_preference_jsonl
from ..data.split import value_fraction
from ..data.tokenize import IGNORE_INDEX, Encoded, encode_many
from ..errors import DataError, Problem, RunDirError
from ..runs import read_manifest
from .batching import batch_stream, collate
from .checkpoint import safe_load
from .dpo_guard import DpoGuard
from .dropout import disable_dropout
from .losses import dpo_loss, sequence_log_probs
from .packing import trained_positions
from .session import TrainResult, TrainRun, start_run

REFERENCE_FILE = "reference_logps.pt"


def encode_pairs(tokenizer, pairs: list[PreferencePair]) -> list[tuple[Encoded, Encoded]]:
    """Chosen and rejected conversations, the loss mask on the final answer only (earlier assistant
    turns in the prompt are context)."""

    def conversation(pair: PreferencePair, answer: str) -> list[dict]:
        prompt = [dict(m, weight=0) if m["role"] == "assistant" else m for m in pair.prompt]
        return prompt + [{"role": "assistant", "content": answer}]

    chosen = encode_many(tokenizer, [conversation(p, p.chosen) for p in pairs], [p.where for p in pairs])
    rejected = encode_many(tokenizer, [conversation(p, p.rejected) for p in pairs], [p.where for p in pairs])
    return list(zip(chosen, rejected))


def train_dpo(
    config: RunConfig,
    overwrite: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
    resume: str | None = None,
    force: bool = False,
) -> TrainResult:
    config = copy.deepcopy(config)  # `auto` values are resolved into this copy, never the caller's
    pairs = load_preference_jsonl(config.data.train)
    if config.data.validation:
        val_pairs = load_preference_jsonl(config.data.validation)
    else:  # held out by content hash, as for SFT
        held = [value_fraction([p.prompt, p.chosen, p.rejected]) < config.data.validation_fraction for p in pairs]
        val_pairs = [p for p, h in zip(pairs, held) if h]
        pairs = [p for p, h in zip(pairs, held) if not h]
    init_adapter = _sft_adapter(config) if config.dpo.from_run else None

    run = start_run(config, resume, force, overwrite, progress, log)
    if init_adapter is not None:
        sft_base = read_manifest(config.dpo.from_run).base_model.fingerprint
        if sft_base != run.source.fingerprint:
            raise RunDirError(
                f"dpo.from_run {config.dpo.from_run} was trained on another base model than "
                f"model={config.model}; set model to that run's base model"
            )
    train_set, _ = _within_length(encode_pairs(run.tokenizer, pairs), config.data.max_length, pairs, run.log)
    val_set, val_pairs = _within_length(
        encode_pairs(run.tokenizer, val_pairs), config.data.max_length, val_pairs, run.log
    )
    if not train_set:
        raise DataError(
            "no preference pairs left",
            [Problem(config.data.train, "every pair was dropped", fix="raise data.max_length or add pairs")],
        )
    t = config.train
    record = run.build(
        len(train_set),
        init_adapter=init_adapter,
        extra_manifest={
            "data": {
                "train": {"path": config.data.train, "pairs": len(train_set)},
                "validation": {"pairs": len(val_set)},
            },
            "dpo": {"beta": config.dpo.beta, "from_run": config.dpo.from_run, "sft_weight": config.dpo.sft_weight},
        },
    )
    # The reference log-probs are taken without dropout, so the policy's must be too: with dropout on,
    # the margin starts at noise instead of 0 and the loss chases that noise (TRL turns it off as well).
    disable_dropout(run.model)
    reference = _reference_log_probs(run, train_set, val_set)
    guard = _start_guard(run, val_set, val_pairs)

    beta, sft_weight, pad_id = config.dpo.beta, config.dpo.sft_weight, run.tokenizer.pad_token_id
    stream = batch_stream([len(c.input_ids) + len(r.input_ids) for c, r in train_set], t.batch_size, t.seed)
    stream = itertools.islice(stream, run.start_step * t.grad_accum, None)
    train_loss, val_loss, steps_done, real_tokens, trained_tokens = float("nan"), None, run.start_step, 0, 0
    with record:
        for step in range(run.start_step, run.total_steps):
            run.model.train()
            micro = [indices for _, indices in itertools.islice(stream, t.grad_accum)]
            step_pairs = sum(len(indices) for indices in micro)
            loss_sum = margin_sum = right = chosen_sum = 0.0
            for indices in micro:
                share = run.my_share(indices)
                if not share.rows:
                    continue
                indices, weight = share.rows, share.weight
                batch = _pair_batch(train_set, indices, pad_id, run.device)
                if weight:
                    real_tokens += int(batch["attention_mask"].sum())
                    trained_tokens += trained_positions(batch)
                with run.autocast():
                    log_probs = run.forward(sequence_log_probs, **batch)
                chosen, rejected = log_probs.float().chunk(2)
                ref_chosen, ref_rejected = reference["train"][indices].to(run.device).unbind(-1)
                losses, chosen_rewards, rejected_rewards = dpo_loss(chosen, rejected, ref_chosen, ref_rejected, beta)
                if sft_weight:  # plain DPO can lower both answers' likelihood; this holds the chosen one up
                    chosen_tokens = (batch["labels"][: len(indices), 1:] != IGNORE_INDEX).sum(1)
                    losses = losses - sft_weight * chosen / chosen_tokens
                ((losses * weight).sum() / step_pairs).backward()
                chosen_sum += (chosen * weight).sum().item()
                loss_sum += (losses * weight).sum().item()
                margin_sum += ((chosen_rewards - rejected_rewards) * weight).sum().item()
                right += ((chosen_rewards > rejected_rewards) * weight).sum().item()
            grad_norm, rate = run.optimizer_step(step)
            steps_done = step + 1
            train_loss = run.world.sum(loss_sum) / step_pairs
            run.log_step(
                step,
                loss=round(train_loss, 5),
                margin=round(run.world.sum(margin_sum) / step_pairs, 5),
                accuracy=round(run.world.sum(right) / step_pairs, 4),
                chosen_logp=round(run.world.sum(chosen_sum) / step_pairs, 4),
                lr=rate,
                grad_norm=round(grad_norm, 4),
            )
            if val_set and run.validation_due(step):
                val_loss, val_margin, val_accuracy, chosen_change = validate(run, val_set, reference["validation"])
                extra = {"val_margin": round(val_margin, 5), "val_accuracy": round(val_accuracy, 4)}
                if guard is not None:
                    with run.autocast():  # frozen weights may be bf16 under autocast training
                        kept = guard.measure(
                            run.model, run.tokenizer, step + 1, chosen_change, val_accuracy, val_margin
                        )
                    extra.update(val_answers_right=kept.correct, val_chosen_change=kept.chosen_change)
                if run.record_validation(step, train_loss, val_loss, **extra):
                    break
            if run.checkpoint_due(step):
                run.save_checkpoint(step)
        if guard is not None:
            for line in guard.finish(run.model):
                run.log(line)
            run.record.manifest.dpo = {**(run.record.manifest.dpo or {}), "guard": guard.record()}
        return run.complete(steps_done, train_loss, val_loss, real_tokens, run.world.sum(trained_tokens))


def _start_guard(run: TrainRun, val_set, val_pairs) -> DpoGuard | None:
    """Measured before the first step; off for resumed and sharded runs (their starting weights or
    greedy answers are not at hand), and without validation pairs."""
    if not val_set or run.resume_path is not None or run.sharded:
        if val_set:
            run.log("DPO guard off: it needs an unsharded run from its first step")
        return None
    guard = DpoGuard.for_run(run.config.dpo.from_run, val_pairs, run.log)
    with run.autocast():
        guard.measure(run.model, run.tokenizer, 0, 0.0, 0.0, 0.0)
    return guard


def _sft_adapter(config: RunConfig) -> Path:
    run_dir = Path(config.dpo.from_run)
    manifest = read_manifest(run_dir)
    if not manifest.complete or manifest.weights != "adapter":
        raise RunDirError(
            f"dpo.from_run needs a finished LoRA/DoRA run; {run_dir} is {manifest.status} with {manifest.weights}"
        )
    return run_dir / "adapter"


def _within_length(encoded, max_length: int, pairs, log) -> tuple[list[tuple[Encoded, Encoded]], list]:
    """The encoded pairs that fit, and the pairs they came from (the DPO guard reads their prompts)."""
    kept, kept_pairs = [], []
    for (chosen, rejected), pair in zip(encoded, pairs):
        if max(len(chosen.input_ids), len(rejected.input_ids)) > max_length:
            log(f"warning: {pair.where}: over data.max_length={max_length}; pair skipped")
        else:
            kept.append((chosen, rejected))
            kept_pairs.append(pair)
    return kept, kept_pairs


def _pair_batch(dataset, indices, pad_id: int, device) -> dict[str, torch.Tensor]:
    """Chosen answers in the first half of the rows, rejected in the second: one forward for both."""
    rows = [dataset[i][0] for i in indices] + [dataset[i][1] for i in indices]
    return {k: v.to(device) for k, v in collate(rows, pad_id).items()}


@torch.no_grad()
def _log_probs_of(run: TrainRun, dataset, batch_size: int) -> torch.Tensor:
    out = torch.zeros(len(dataset), 2, dtype=torch.float32)
    pad_id = run.tokenizer.pad_token_id
    for start in range(0, len(dataset), batch_size):
        indices = list(range(start, min(start + batch_size, len(dataset))))
        with run.autocast():
            log_probs = run.forward(sequence_log_probs, **_pair_batch(dataset, indices, pad_id, run.device))
        out[indices] = torch.stack(log_probs.float().chunk(2), dim=-1).cpu()
    return out


def _reference_log_probs(run: TrainRun, train_set, val_set) -> dict[str, torch.Tensor]:
    path = run.out / REFERENCE_FILE
    if run.resume_path is not None and path.is_file():
        return safe_load(path)
    run.model.eval()
    fresh_adapter = run.config.dpo.from_run is None and hasattr(run.model, "disable_adapter")
    context = run.model.disable_adapter() if fresh_adapter else contextlib.nullcontext()
    with context:
        size = run.config.train.batch_size
        reference = {"train": _log_probs_of(run, train_set, size), "validation": _log_probs_of(run, val_set, size)}
    if run.world.is_main:
        torch.save(reference, path)
    return reference


@torch.no_grad()
def validate(run: TrainRun, dataset, reference: torch.Tensor) -> tuple[float, float, float, float]:
    """Mean DPO loss, reward margin and preference accuracy over the validation pairs, and the mean
    change of the chosen answers' log-likelihood per token against the reference model."""
    run.model.eval()
    beta = run.config.dpo.beta
    losses_sum = margin_sum = right = 0.0
    policy = _log_probs_of(run, dataset, run.config.train.batch_size)
    losses, chosen_rewards, rejected_rewards = dpo_loss(
        policy[:, 0], policy[:, 1], reference[:, 0], reference[:, 1], beta
    )
    losses_sum, margin_sum = losses.sum().item(), (chosen_rewards - rejected_rewards).sum().item()
    right = (chosen_rewards > rejected_rewards).sum().item()
    count = max(1, len(dataset))
    chosen_tokens = torch.tensor([max(1, chosen.trained_tokens) for chosen, _ in dataset])
    chosen_change = ((policy[:, 0] - reference[:, 0]) / chosen_tokens).mean().item() if len(dataset) else 0.0
    return losses_sum / count, margin_sum / count, right / count, chosen_change
