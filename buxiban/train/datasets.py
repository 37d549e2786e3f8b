"""A run's config and data files turned into what the loop trains on, and into step counts: the one
place that decides both, called by train_sft and TrainRun and by `plan`, which must predict exactly
the run that `buxiban train` would make."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from ..config import RunConfig
from ..data.mix import BUILTIN, builtin_general_path, mix_records
from ..data.prepare import Prepared, prepare
from ..data.records import load_chat_jsonl
from ..data.split import hash_split


@dataclass
class SftConversations:
    train: list  # after mixing in general examples
    validation: list
    company: list  # the user's own training conversations, before mixing
    general_used: int = 0


def sft_conversations(config: RunConfig, log: Callable[[str], None] = lambda _: None) -> SftConversations:
    """Training and validation conversations: the validation file, or a content-hash split of the
    training file; then general examples mixed in when mix.general asks for them."""
    train = load_chat_jsonl(config.data.train)
    if config.data.validation:
        validation = load_chat_jsonl(config.data.validation)
    else:
        train, validation = hash_split(train, config.data.validation_fraction)
    company, general_used = list(train), 0
    if config.mix.general:
        general = load_chat_jsonl(builtin_general_path() if config.mix.general == BUILTIN else config.mix.general)
        train, general_used = mix_records(train, general, config.mix.ratio, config.mix.seed)
        log(
            f"mixed {general_used} general examples into {len(company)} training examples (mix.ratio={config.mix.ratio})"
        )
    return SftConversations(train, validation, company, general_used)


def sft_datasets(config: RunConfig, conversations: SftConversations, tokenizer) -> tuple[Prepared, Prepared]:
    """Tokenized with the loss mask, over-length examples handled as data.overlength says."""
    train = prepare(conversations.train, tokenizer, config.data.max_length, config.data.overlength)
    validation = prepare(conversations.validation, tokenizer, config.data.max_length, config.data.overlength)
    return train, validation


@dataclass(frozen=True)
class StepCounts:
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int
    eval_every: int
    checkpoint_every: int


def step_counts(config: RunConfig, train_examples: int) -> StepCounts:
    """Optimizer steps from the number of training examples: an epoch is every example once, in
    steps of batch_size × grad_accum examples; train.max_steps, when set, overrides the epochs."""
    t = config.train
    per_epoch = max(1, math.ceil(train_examples / (t.batch_size * t.grad_accum)))
    total = t.max_steps or max(1, math.ceil(t.epochs * per_epoch))
    return StepCounts(
        per_epoch, total, math.ceil(t.warmup_ratio * total), t.eval_every or per_epoch, t.checkpoint_every or per_epoch
    )
