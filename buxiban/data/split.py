"""Deterministic splits by content hash: the same data gives the same split on every machine,
whatever the file order, and duplicates (exact or near) never straddle two splits."""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import DataError, Problem
from .dedup import DuplicateIndex
from .records import Conversation, collect, iter_raw_chat_records, require_clean

SPLIT_NAMES = ("train", "validation", "test")


def content_fraction(conversation: Conversation) -> float:
    """A number in [0, 1) fixed by the conversation's content alone."""
    return value_fraction(conversation.messages)


def value_fraction(value: Any) -> float:
    """A number in [0, 1) fixed by a JSON-able value alone."""
    text = json.dumps(value, sort_keys=True, ensure_ascii=False)
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big") / 2**64


def hash_split(conversations: Sequence[Conversation], fraction: float) -> tuple[list[Conversation], list[Conversation]]:
    """(kept, held out): about `fraction` of the examples are held out. Used for the validation
    slice of a training file, where stability under added data matters more than exact sizes."""
    kept, held = [], []
    for conversation in conversations:
        (held if content_fraction(conversation) < fraction else kept).append(conversation)
    return kept, held


def field_value(record: dict[str, Any], path: str) -> str:
    """`system` is the system prompt; anything else is a dotted path into the record (metadata.category)."""
    if path == "system":
        messages = record.get("messages") or []
        return messages[0]["content"] if messages and messages[0].get("role") == "system" else ""
    value: Any = record
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return "" if value is None else str(value)


def split_records(
    records: list[tuple[str, dict[str, Any]]],
    ratios: Sequence[float],
    stratify: str | None = None,
    near_threshold: float = 0.8,
) -> dict[str, list[dict[str, Any]]]:
    """Assign (location, record) pairs to train/validation/test.

    Duplicate groups (exact or near, over the non-system turns) move together. Within each stratum,
    groups are ordered by their content hash and cut at the ratios: sizes are as exact as the group
    sizes allow, and the assignment depends on content only.
    """
    index = DuplicateIndex(threshold=near_threshold)
    for number, (_, record) in enumerate(records):
        index.add(
            number,
            "\n".join(
                m["content"]
                for m in record["messages"]
                if m.get("role") != "system" and isinstance(m.get("content"), str)
            ),
        )
    parent = list(range(len(records)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in index.exact_pairs + [(i, j) for i, j, _ in index.near_pairs(limit=10**9)]:
        parent[root(j)] = root(i)
    groups: dict[int, list[int]] = defaultdict(list)
    for i in range(len(records)):
        groups[root(i)].append(i)
    strata: dict[str, list[list[int]]] = defaultdict(list)
    for members in groups.values():
        key = field_value(records[members[0]][1], stratify) if stratify else ""
        strata[key].append(members)
    out: dict[str, list[dict[str, Any]]] = {name: [] for name in SPLIT_NAMES}
    total = sum(ratios)
    for key in sorted(strata):
        ordered = sorted(strata[key], key=lambda m: value_fraction(records[m[0]][1]["messages"]))
        size = sum(len(m) for m in ordered)
        bounds = [size * sum(ratios[: k + 1]) / total for k in range(len(ratios))]
        placed = 0
        for members in ordered:
            target = next(k for k, bound in enumerate(bounds) if placed < bound or k == len(bounds) - 1)
            out[SPLIT_NAMES[target]].extend(records[i][1] for i in members)
            placed += len(members)
    return out


def split_file(
    path: str | Path,
    out_dir: str | Path,
    ratios: Sequence[float] = (0.8, 0.1, 0.1),
    stratify: str | None = None,
    near_threshold: float = 0.8,
) -> dict[str, int]:
    """Split a chat JSONL file into out_dir/{train,validation,test}.jsonl; any bad line stops it
    before a file is written, so a half split never lands on disk."""
    if len(ratios) != 3 or any(r < 0 for r in ratios) or sum(ratios) <= 0:
        raise DataError(
            "bad split ratios",
            [Problem("--ratios", f"{list(ratios)}", fix="three non-negative numbers, e.g. 0.8,0.1,0.1")],
        )
    items, problems = collect(iter_raw_chat_records(path))
    require_clean(path, problems)
    records = [(f"{path}:{number}", record) for number, record in items]
    parts = split_records(records, ratios, stratify, near_threshold)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, items in parts.items():
        (out_dir / f"{name}.jsonl").write_text(
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in items), encoding="utf-8"
        )
    return {name: len(items) for name, items in parts.items()}
