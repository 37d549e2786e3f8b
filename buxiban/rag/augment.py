"""Training data with retrieved documents in the prompt, so that a fine-tuned model learns to answer FROM them.

A model fine-tuned on bare questions answers from memory and ignores documents put in its prompt later
(measured on the Yunshan example: 0 of 9 changed facts picked up, with 1 or 3 chunks). Training on the
same conversations with the chunks retrieved for each question already in the prompt (the layout of
`rag_messages`, as chat and serve use it) teaches it to take the figure from the documents instead
(the RAFT recipe). The index must describe the world the training answers describe: documents that
contradict the answers would teach the model to ignore them again.

`share` keeps some conversations without documents, so the model still answers when retrieval is off.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from ..data.records import collect, iter_raw_chat_records, require_clean
from ..errors import RagError
from .retrieve import RagIndex, rag_messages


@dataclass
class AugmentReport:
    records: int
    with_documents: int
    sources: dict[str, int]  # document -> how many prompts it was put into


def augment_file(train: str | Path, index: RagIndex, out: str | Path, k: int = 3, share: float = 1.0,
                 seed: int = 0) -> AugmentReport:
    """Reads OpenAI chat JSONL (every problem reported before anything is retrieved), writes the copy."""
    rows, problems = collect(iter_raw_chat_records(train))
    require_clean(train, problems)
    records, report = augment_records([record for _, record in rows], index, k, share, seed)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return report


def augment_records(records: list[dict], index: RagIndex, k: int = 3, share: float = 1.0,
                    seed: int = 0) -> tuple[list[dict], AugmentReport]:
    """Copies of `records` in which a `share` of them (chosen by `seed`) carry the top-k chunks for their
    last user message; the chosen chunks are listed in `metadata.rag_sources`."""
    if not 0.0 <= share <= 1.0:
        raise RagError(f"share is {share}; use a fraction from 0 to 1 (1 = every conversation gets documents)")
    rng = random.Random(seed)
    out, counts, augmented = [], {}, 0
    for record in records:
        messages = record["messages"]
        # Only the prompt before the last answer changes: that answer stays the training target.
        last_answer = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=len(messages))
        questions = [m["content"] for m in messages[:last_answer] if m.get("role") == "user"]
        if not questions or not isinstance(questions[-1], str) or rng.random() >= share:
            out.append(record)
            continue
        chunks = index.search(questions[-1], k)
        metadata = dict(record.get("metadata") or {}) | {"rag_sources": [chunk.source for chunk in chunks]}
        out.append({**record, "messages": rag_messages(messages[:last_answer], chunks) + messages[last_answer:],
                    "metadata": metadata})
        augmented += 1
        for chunk in chunks:
            counts[chunk.path] = counts.get(chunk.path, 0) + 1
    return out, AugmentReport(len(records), augmented, dict(sorted(counts.items())))
