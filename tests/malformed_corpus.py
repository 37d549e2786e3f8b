"""A deterministic corpus of over a thousand malformed chat-JSONL lines, each with the line number
and the fragment its problem must contain, interleaved with valid lines that must survive in order.
Built at test time (one line is 50 MB; the repository stays small)."""

from __future__ import annotations

import json
import random
from pathlib import Path

VALID = {
    "messages": [
        {"role": "user", "content": "Is there a deposit?"},
        {"role": "assistant", "content": "The deposit is NT$3,000."},
    ]
}
BIG_LINE_BYTES = 50 * 1024 * 1024


def _kinds(rng: random.Random) -> list[tuple[bytes, str]]:
    """(line bytes, expected fragment) for each kind of damage; several variants each."""
    good = json.dumps(VALID)
    kinds: list[tuple[bytes, str]] = []
    cut = rng.randint(5, len(good) - 2)
    kinds.append((good[:cut].encode(), "is not valid JSON"))  # truncated
    kinds.append((b'{"messages": [' + b"\xff\xfe" + b"]}", "is not valid UTF-8"))
    kinds.append((b'{"messages": NaN}', "NaN is not valid JSON"))
    kinds.append((b'{"messages": [{"role": "user", "content": Infinity}]}', "Infinity is not valid JSON"))
    kinds.append((b"[" * 10_000 + b"]" * 10_000, "nests JSON too deeply"))
    kinds.append((b'{"a":' * 5_000 + b"1" + b"}" * 5_000, "nests JSON too deeply"))
    kinds.append((json.dumps([1, 2, 3]).encode(), "not an object"))
    kinds.append((b'"just a string"', "not an object"))
    kinds.append((b"42", "not an object"))
    kinds.append((b"null", "not an object"))
    kinds.append((json.dumps({"messages": {"role": "user"}}).encode(), "must be a non-empty list"))
    kinds.append((json.dumps({"messages": []}).encode(), "must be a non-empty list"))
    kinds.append((json.dumps({"prompt": "x"}).encode(), "unknown key 'prompt'"))
    kinds.append(
        (
            json.dumps(
                {
                    "messages": [
                        {"role": rng.choice(["usr", "bot", "Assistant", "", "human"]), "content": "hi"},
                        VALID["messages"][1],
                    ]
                }
            ).encode(),
            "is not one of",
        )
    )
    kinds.append(
        (json.dumps({"messages": [{"role": "user", "content": ""}, VALID["messages"][1]]}).encode(), "is empty")
    )
    kinds.append(
        (json.dumps({"messages": [{"role": "user", "content": "   "}, VALID["messages"][1]]}).encode(), "is empty")
    )
    kinds.append(
        (json.dumps({"messages": [{"role": "user", "content": 7}, VALID["messages"][1]]}).encode(), "must be a string")
    )
    kinds.append(
        (
            json.dumps({"messages": [{"role": "user", "content": ["a"]}, VALID["messages"][1]]}).encode(),
            "must be a string",
        )
    )
    kinds.append((json.dumps({"messages": [{"role": "user"}, VALID["messages"][1]]}).encode(), "is missing"))
    kinds.append((json.dumps({"messages": [{"content": "hi"}, VALID["messages"][1]]}).encode(), "is missing"))
    kinds.append((json.dumps({"messages": [VALID["messages"][0]]}).encode(), "has no assistant message"))
    kinds.append((json.dumps({"messages": VALID["messages"] + [VALID["messages"][0]]}).encode(), "not the assistant"))
    kinds.append((json.dumps({"messages": ["hello", VALID["messages"][1]]}).encode(), "not an object"))
    kinds.append(
        (json.dumps({"messages": [{"role": 5, "content": "x"}, VALID["messages"][1]]}).encode(), "is not one of")
    )
    kinds.append(
        (
            json.dumps({"messages": [dict(VALID["messages"][0], extra=1), VALID["messages"][1]]}).encode(),
            "unknown key 'extra'",
        )
    )
    kinds.append(
        (
            json.dumps({"messages": [VALID["messages"][0], dict(VALID["messages"][1], weight=0.5)]}).encode(),
            "weight is 0 or 1",
        )
    )
    kinds.append((b'{"messages": [}', "is not valid JSON"))
    kinds.append((b"\x00\x01\x02", "is not valid JSON"))
    kinds.append((good.encode() + b" trailing", "is not valid JSON"))
    return kinds


def build(path: Path, malformed: int = 1100, seed: int = 3) -> tuple[list[tuple[int, str]], list[int]]:
    """Write the corpus; return [(line, expected fragment)] for bad lines and the valid lines' numbers."""
    rng = random.Random(seed)
    bad: list[tuple[int, str]] = []
    valid: list[int] = []
    with open(path, "wb") as out:
        out.write(b"\xef\xbb\xbf")  # a BOM before line 1
        number = 0

        def emit(data: bytes, crlf: bool = False) -> int:
            nonlocal number
            number += 1
            out.write(data + (b"\r\n" if crlf else b"\n"))
            return number

        valid.append(emit(json.dumps(VALID, ensure_ascii=False).encode()))
        while len(bad) < malformed:
            data, fragment = rng.choice(_kinds(rng))
            bad.append((emit(data, crlf=rng.random() < 0.3), fragment))
            if rng.random() < 0.5:
                record = json.loads(json.dumps(VALID))
                record["messages"][0]["content"] = f"問題 {number} 你好 ünïcødé 🚲"
                valid.append(
                    emit(json.dumps(record, ensure_ascii=rng.random() < 0.5).encode(), crlf=rng.random() < 0.3)
                )
            if rng.random() < 0.05:
                emit(b"")  # blank lines are skipped silently
        # one 50 MB line: a conversation whose user message is one huge string, then cut short
        huge = b'{"messages": [{"role": "user", "content": "' + b"x" * BIG_LINE_BYTES + b'"}'
        bad.append((emit(huge), "is not valid JSON"))
        valid.append(emit(json.dumps(VALID).encode()))
    return bad, valid
