"""Turn validated conversations into token ids and labels for training."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from .records import Conversation
from .tokenize import Encoded, encode_conversation


@dataclass
class Prepared:
    examples: list[Encoded]
    over_length: list[tuple[str, int]]  # (file:line, tokens) of each example dropped for length
    no_trained_tokens: list[str]  # file:line of examples whose every assistant turn has weight 0


def prepare(conversations: Sequence[Conversation], tokenizer, max_length: int) -> Prepared:
    """Encode every conversation; an example longer than `max_length` is dropped, not cut, because a
    cut conversation teaches the model to stop mid-answer."""
    kept, over, untrained = [], [], []
    for conversation in conversations:
        encoded = encode_conversation(tokenizer, conversation.messages, conversation.where)
        if len(encoded.input_ids) > max_length:
            over.append((conversation.where, len(encoded.input_ids)))
        elif encoded.trained_tokens == 0:
            untrained.append(conversation.where)
        else:
            kept.append(encoded)
    return Prepared(kept, over, untrained)
