"""`buxiban data show`: examples rendered through the chat template, trained tokens highlighted, so a
user sees exactly what the loss is computed on."""

from __future__ import annotations

from itertools import islice
from pathlib import Path

from .check import mark_trained
from .records import iter_chat_jsonl

TRAINED_ON, TRAINED_OFF = "\x1b[1;32m", "\x1b[0m"  # bold green: learned
CONTEXT_ON, CONTEXT_OFF = "\x1b[2m", "\x1b[0m"  # dim: only read


def show_examples(path: str | Path, tokenizer, count: int = 3, color: bool = True) -> list[str]:
    """The first `count` valid examples, rendered; invalid lines are skipped (data check reports them)."""
    valid = (conversation for conversation, _ in iter_chat_jsonl(path) if conversation is not None)
    rendered = []
    for conversation in islice(valid, count):
        marked = mark_trained(tokenizer, conversation, "\x00", "\x01")
        if color:
            text = (
                CONTEXT_ON
                + marked.replace("\x00", CONTEXT_OFF + TRAINED_ON).replace("\x01", TRAINED_OFF + CONTEXT_ON)
                + CONTEXT_OFF
            )
        else:
            text = marked.replace("\x00", "⟦").replace("\x01", "⟧")
        rendered.append(f"── {conversation.where}\n{text.rstrip()}")
    return rendered
