"""`buxiban data check`: every format problem with its line, then statistics measured with the
model's own tokenizer and chat template."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import Problem
from .records import Conversation, read_chat_jsonl
from .tokenize import IGNORE_INDEX, encode_conversation


@dataclass
class CheckReport:
    path: str
    problems: list[Problem] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    preview: str = ""  # the first example, trained text marked, so a user sees what the loss sees

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "ok": self.ok, "stats": self.stats, "preview": self.preview,
                "problems": [{"where": p.where, "field": p.field, "message": p.message, "fix": p.fix}
                             for p in self.problems]}


def percentile(values: list[int], q: float) -> int:
    """Nearest-rank percentile: always one of the observed values."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil without floats drifting
    return ordered[int(rank) - 1]


def check_file(path: str | Path, tokenizer=None, max_length: int = 512) -> CheckReport:
    conversations, problems = read_chat_jsonl(path)
    report = CheckReport(str(path), problems)
    if not conversations:
        return report
    messages_per = [len(c.messages) for c in conversations]
    report.stats = {"examples": len(conversations), "messages_per_example": _spread(messages_per),
                    "assistant_messages": sum(1 for c in conversations for m in c.messages if m["role"] == "assistant")}
    if tokenizer is not None:
        report.stats.update(_token_stats(conversations, tokenizer, max_length))
        report.preview = mark_trained(tokenizer, conversations[0])
    return report


def _spread(values: list[int]) -> dict[str, float]:
    return {"min": min(values), "p50": percentile(values, 50), "p95": percentile(values, 95), "max": max(values),
            "mean": round(statistics.fmean(values), 1)}


def _token_stats(conversations: list[Conversation], tokenizer, max_length: int) -> dict[str, Any]:
    lengths, trained, over = [], [], []
    for conversation in conversations:
        encoded = encode_conversation(tokenizer, conversation.messages, conversation.where)
        lengths.append(len(encoded.input_ids))
        trained.append(encoded.trained_tokens)
        if len(encoded.input_ids) > max_length:
            over.append(conversation.where)
    return {"tokens_per_example": _spread(lengths), "trained_tokens_per_example": _spread(trained),
            "total_tokens": sum(lengths), "total_trained_tokens": sum(trained),
            "trained_share": round(sum(trained) / max(1, sum(lengths)), 3), "max_length": max_length,
            "over_max_length": len(over), "over_max_length_at": over[:20]}


def mark_trained(tokenizer, conversation: Conversation, start: str = "⟦", end: str = "⟧") -> str:
    """The rendered conversation with each trained stretch wrapped in ⟦ ⟧."""
    encoded = encode_conversation(tokenizer, conversation.messages, conversation.where)
    # Decode runs of tokens, not single tokens: byte-level BPE splits a Chinese character over several.
    pieces, run, inside = [], [], False
    for token, label in zip(encoded.input_ids, encoded.labels):
        trained = label != IGNORE_INDEX
        if trained != inside:
            pieces.append(tokenizer.decode(run))
            pieces.append(start if trained else end)
            run, inside = [], trained
        run.append(token)
    pieces.append(tokenizer.decode(run))
    if inside:
        pieces.append(end)
    return "".join(pieces)
