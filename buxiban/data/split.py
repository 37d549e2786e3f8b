"""Deterministic splits by content hash: the same example lands on the same side on every machine,
whatever the file order, and identical examples can never straddle two splits."""

from __future__ import annotations

import hashlib
import json
from typing import Sequence

from .records import Conversation


def content_fraction(conversation: Conversation) -> float:
    """A number in [0, 1) fixed by the conversation's content alone."""
    text = json.dumps(conversation.messages, sort_keys=True, ensure_ascii=False)
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big") / 2**64


def hash_split(conversations: Sequence[Conversation], fraction: float) -> tuple[list[Conversation], list[Conversation]]:
    """(kept, held out): about `fraction` of the examples are held out."""
    kept, held = [], []
    for conversation in conversations:
        (held if content_fraction(conversation) < fraction else kept).append(conversation)
    return kept, held
