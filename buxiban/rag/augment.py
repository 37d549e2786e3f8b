"""Training data with retrieved documents in the prompt, so that a fine-tuned model learns to answer FROM them.

A model fine-tuned on bare questions answers from memory and ignores documents put in its prompt later
(measured on the Yunshan example: 0 of 9 changed facts picked up, with 1 or 3 chunks). Training on the
same conversations with the chunks retrieved for each question already in the prompt (the layout of
`rag_messages`, as chat and serve use it) teaches it to take the figure from the documents instead
(the RAFT recipe). The index must describe the world the training answers describe: documents that
contradict the answers would teach the model to ignore them again.

`share` keeps some conversations without documents, so the model still answers when retrieval is off.
`counterfactual` changes a figure in the documents and the answer of some of the others (see
counterfactual.py), so that the documents, not memory, are the only way to the right answer there.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, replace
from pathlib import Path

from ..data.records import collect, iter_raw_chat_records, require_clean
from ..errors import RagError
from . import counterfactual as cf
from .retrieve import Chunk, RagIndex, rag_messages


@dataclass
class AugmentReport:
    records: int
    with_documents: int
    sources: dict[str, int]  # document -> how many prompts it was put into
    counterfactual: int = 0  # conversations whose figures were changed in documents and answer


def augment_file(
    train: str | Path,
    index: RagIndex,
    out: str | Path,
    k: int = 3,
    share: float = 1.0,
    seed: int = 0,
    counterfactual: float = 0.0,
) -> AugmentReport:
    """Reads OpenAI chat JSONL (every problem reported before anything is retrieved), writes the copy."""
    rows, problems = collect(iter_raw_chat_records(train))
    require_clean(train, problems)
    records, report = augment_records([record for _, record in rows], index, k, share, seed, counterfactual)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return report


def augment_records(
    records: list[dict], index: RagIndex, k: int = 3, share: float = 1.0, seed: int = 0, counterfactual: float = 0.0
) -> tuple[list[dict], AugmentReport]:
    """Copies of `records` in which a `share` of them (chosen by `seed`) carry the top-k chunks for their
    last user message; the chosen chunks are listed in `metadata.rag_sources`. Of those, a `counterfactual`
    share has its figures changed (`metadata.rag_counterfactual` maps old to new)."""
    for name, value in (("share", share), ("counterfactual", counterfactual)):
        if not 0.0 <= value <= 1.0:
            raise RagError(f"{name} is {value}; use a fraction from 0 to 1")
    rng = random.Random(seed)
    # a second stream, so that adding counterfactuals does not change which conversations get documents
    figure_rng = random.Random(seed + 1)
    out, counts, augmented, swapped = [], {}, 0, 0
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
        if figure_rng.random() < counterfactual:
            messages, chunks, mapping = with_other_figures(messages, chunks, last_answer, figure_rng)
            if mapping:
                metadata["rag_counterfactual"] = mapping
                swapped += 1
        out.append(
            {
                **record,
                "messages": rag_messages(messages[:last_answer], chunks) + messages[last_answer:],
                "metadata": metadata,
            }
        )
        augmented += 1
        for chunk in chunks:
            counts[chunk.path] = counts.get(chunk.path, 0) + 1
    return out, AugmentReport(len(records), augmented, dict(sorted(counts.items())), swapped)


def with_other_figures(
    messages: list[dict], chunks: list[Chunk], last_answer: int, rng: random.Random
) -> tuple[list[dict], list[Chunk], dict[str, str]]:
    answer = messages[last_answer]["content"]
    if not isinstance(answer, str):
        return messages, chunks, {}
    mapping = cf.swap_figures(answer, [chunk.text for chunk in chunks], rng)
    if not mapping:
        return messages, chunks, {}
    # the system prompt is the task's instruction and stays as trained; every other turn must agree
    new_messages = [
        m
        if m.get("role") == "system" or not isinstance(m.get("content"), str)
        else {**m, "content": cf.apply(mapping, m["content"])}
        for m in messages
    ]
    return new_messages, [replace(chunk, text=cf.apply(mapping, chunk.text)) for chunk in chunks], mapping
