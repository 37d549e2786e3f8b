"""Turn validated conversations into token ids and labels for training."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .records import Conversation
from .tokenize import Encoded, encode_many, surely_over_length


@dataclass
class Prepared:
    examples: list[Encoded]
    over_length: list[tuple[str, int]] = field(default_factory=list)  # (file:line, tokens) dropped for length
    truncated: list[tuple[str, int]] = field(default_factory=list)  # (file:line, tokens cut off) kept shortened
    no_trained_tokens: list[str] = field(default_factory=list)  # nothing left to learn: skipped


def prepare(conversations: Sequence[Conversation], tokenizer, max_length: int, overlength: str = "drop") -> Prepared:
    """Encode every conversation. An example longer than `max_length` is dropped by default, because
    a cut conversation teaches the model to stop mid-answer; with overlength="truncate" its start is
    kept when trained tokens remain in it, and the tokens lost are reported."""
    prepared = Prepared([])
    huge = [c for c in conversations if surely_over_length(c.messages, max_length)]
    prepared.over_length.extend((c.where, -1) for c in huge)  # -1: not tokenized, far too long
    conversations = [c for c in conversations if not surely_over_length(c.messages, max_length)]
    encoded_all = encode_many(tokenizer, [c.messages for c in conversations], [c.where for c in conversations])
    for conversation, encoded in zip(conversations, encoded_all):
        length = len(encoded.input_ids)
        if length > max_length:
            if overlength != "truncate":
                prepared.over_length.append((conversation.where, length))
                continue
            encoded = Encoded(encoded.input_ids[:max_length], encoded.labels[:max_length])
            if encoded.trained_tokens == 0:
                prepared.over_length.append((conversation.where, length))
                continue
            prepared.truncated.append((conversation.where, length - max_length))
        if encoded.trained_tokens == 0:
            prepared.no_trained_tokens.append(conversation.where)
        else:
            prepared.examples.append(encoded)
    return prepared
