"""RAG in an evaluation: the "+ RAG" systems, retrieval recall@k, and scores split by question kind.

Fine-tuning and retrieval win on different questions (stable facts and house style vs facts that changed
after training), so one overall score hides the answer to "which mix should I ship?". With `--rag INDEX`
the base and the fine-tuned weights each answer a second time with the top-k chunks in the prompt, laid out
by `buxiban.rag.rag_messages` exactly as `chat --rag`, the server and `rag augment` training data do. Each
question is retrieved once and both "+ RAG" systems see the same chunks, so they differ only in weights.

Test records may say what kind of question they are (`metadata.kind`, e.g. changed / stable / style; else
`metadata.category` groups them) and which documents answer them (`metadata.source`, a path relative to
the indexed folder, or a list): the report then gives every system's scores per kind, the paired test of
fine-tuned + RAG against each other system per kind, and recall@k of the retrieval itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DataError, Problem
from . import scoring
from .systems import BASE, FINE_TUNED, System

BASE_RAG, FINE_TUNED_RAG = "base + RAG", "fine-tuned + RAG"
Messages = list[dict[str, Any]]


@dataclass
class Retrieval:
    """Chunks per question from one index, cached: both "+ RAG" systems and the report use the same ones."""

    index: Any  # an opened buxiban.rag.RagIndex
    k: int
    found: dict[str, list] = field(default_factory=dict)  # question text -> chunks

    @classmethod
    def open(cls, index_path: str | Path, k: int) -> Retrieval:
        from ..rag.retrieve import RagIndex

        return cls(RagIndex(index_path), k)

    def chunks(self, prompt: Messages) -> list:
        from ..rag.retrieve import retrieve

        question = last_question(prompt)
        if question not in self.found:
            self.found[question] = retrieve(self.index, question, self.k)
        return self.found[question]

    def prepare(self, prompt: Messages) -> Messages:
        from ..rag.retrieve import rag_messages

        return rag_messages(prompt, self.chunks(prompt))


def last_question(prompt: Messages) -> str:
    from ..data.records import content_text

    users = [m for m in prompt if m.get("role") == "user"]
    if not users:
        return ""
    return content_text(users[-1]["content"]) or ""


def with_rag(systems: list[System], retrieval: Retrieval) -> list[System]:
    """`base + RAG` right after the base systems and `fine-tuned + RAG` right after fine-tuned, so the
    report reads each pair side by side."""
    rag = {
        BASE: System(
            BASE_RAG,
            BASE,
            f"the base model with the top {retrieval.k} chunks of {retrieval.index.path} in the prompt",
            prepare=retrieval.prepare,
        ),
        FINE_TUNED: System(
            FINE_TUNED_RAG,
            FINE_TUNED,
            f"the fine-tuned model with the top {retrieval.k} chunks of {retrieval.index.path} in the prompt",
            prepare=retrieval.prepare,
        ),
    }
    out = list(systems)
    for weights, rag_system in rag.items():
        last = max((i for i, s in enumerate(out) if s.weights == weights), default=len(out) - 1)
        out.insert(last + 1, rag_system)
    return out


def check_sources(tests: Sequence[dict[str, Any]], retrieval: Retrieval) -> None:
    """Every `metadata.source` must be a document of the index, checked before any model loads: a typo
    would otherwise read as a retrieval miss."""
    indexed = retrieval.index.store.file_hashes()
    problems = [
        Problem(
            test["where"],
            f"names {source!r}, which is not a document of {retrieval.index.path}",
            "metadata.source",
            "use the path relative to the indexed folder, e.g. pricing.md",
        )
        for test in tests
        for source in test.get("sources", ())
        if source not in indexed
    ]
    if problems:
        raise DataError(f"{len(problems)} test source(s) are not in the index", problems)


def mark_retrieval(rows: list[dict[str, Any]], prompts: Sequence[Messages], retrieval: Retrieval) -> dict[str, Any]:
    """Writes each row's retrieved sources (and whether one answers it) and returns recall@k, overall and
    per kind, over the rows whose test record names its sources."""
    hits: dict[str, list[bool]] = {}
    for row, prompt in zip(rows, prompts, strict=True):
        chunks = retrieval.chunks(prompt)
        row["retrieved"] = [chunk.source for chunk in chunks]
        if row.get("sources"):
            row["retrieval_hit"] = any(chunk.path in row["sources"] for chunk in chunks)
            hits.setdefault(group_of(row), []).append(row["retrieval_hit"])
    scored = [hit for group in hits.values() for hit in group]
    out: dict[str, Any] = {"index": str(retrieval.index.path), "k": retrieval.k, "questions": len(scored)}
    if scored:
        out["recall"] = round(sum(scored) / len(scored), 4)
        out["by_kind"] = {kind: round(sum(group) / len(group), 4) for kind, group in sorted(hits.items())}
    return out


def group_of(row: dict[str, Any]) -> str:
    return str(row.get("kind") or row.get("category") or "(none)")


def by_kind(rows: Sequence[dict[str, Any]], systems: Sequence[str], resamples: int, seed: int) -> dict[str, Any]:
    """Per kind (or category): every system's scores with intervals, and the paired exact-match test of
    the best-informed system (fine-tuned + RAG when present, else fine-tuned) against each other one.
    Empty when the test set has a single kind: the overall table already says everything."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(group_of(row), []).append(row)
    if len(groups) < 2:
        return {}
    field_name = "kind" if any(row.get("kind") for row in rows) else "category"
    leader = FINE_TUNED_RAG if FINE_TUNED_RAG in systems else FINE_TUNED
    out: dict[str, Any] = {"field": f"metadata.{field_name}", "leader": leader, "groups": {}}
    for kind, members in sorted(groups.items()):
        summary, intervals = scoring.summarize(members, systems, resamples, seed)
        entry = {"n": len(members), "summary": summary, "intervals": intervals}
        if leader in systems:
            entry["significance"] = scoring.paired_tests(members, leader, systems)
        out["groups"][kind] = entry
    return out
