"""Retrieval recall@k on questions that name the document(s) holding their answer.

A question file is OpenAI chat JSONL; the last user message is the question and `metadata.source` is
the answering document's path relative to the indexed folder (a string, or a list when several
documents state the fact). A question counts as recalled when any of its top-k chunks comes from one
of its sources. Recall is also split by `metadata.kind` (e.g. changed / stable / style).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError, Problem, RagError
from .retrieve import RagIndex


@dataclass(frozen=True)
class Question:
    text: str
    sources: tuple[str, ...]
    kind: str
    where: str  # file:line


@dataclass
class RecallReport:
    k: int
    recall: float
    by_kind: dict[str, float]
    misses: list[tuple[Question, list[str]]] = field(default_factory=list)  # question, the paths retrieved instead
    total: int = 0


def read_questions(path: str | Path) -> list[Question]:
    path = Path(path)
    if not path.is_file():
        raise RagError(f"{path}: no such question file")
    questions, problems = [], []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(Problem(where, f"not JSON ({exc.msg})"))
            continue
        users = [
            m.get("content") for m in record.get("messages", []) if isinstance(m, dict) and m.get("role") == "user"
        ]
        source = (record.get("metadata") or {}).get("source")
        sources = (source,) if isinstance(source, str) else tuple(source or ())
        if not users or not isinstance(users[-1], str):
            problems.append(Problem(where, "has no user message", "messages", "add the question as a user message"))
        elif not sources:
            problems.append(
                Problem(
                    where,
                    "is missing",
                    "metadata.source",
                    "name the document that answers it, relative to the indexed folder",
                )
            )
        else:
            questions.append(Question(users[-1], sources, str(record["metadata"].get("kind", "")), where))
    if problems:
        raise DataError(f"{path}: {len(problems)} question(s) cannot be scored", problems)
    return questions


def recall_at_k(index: RagIndex, questions: list[Question], k: int = 5, hybrid: bool | None = None) -> RecallReport:
    if not questions:
        raise RagError("no questions to score")
    indexed = index.store.file_hashes()
    unknown = [
        Problem(
            q.where,
            f"names {s!r}, which is not in the index",
            "metadata.source",
            "use the path relative to the indexed folder, e.g. pricing.md",
        )
        for q in questions
        for s in q.sources
        if s not in indexed
    ]
    if unknown:
        raise DataError(f"{len(unknown)} source(s) are not documents of {index.path}", unknown)
    hits_by_kind: dict[str, list[bool]] = {}
    misses = []
    for question in questions:
        paths = [chunk.path for chunk in index.search(question.text, k, hybrid)]
        hit = any(path in question.sources for path in paths)
        hits_by_kind.setdefault(question.kind, []).append(hit)
        if not hit:
            misses.append((question, paths))
    hits = [hit for group in hits_by_kind.values() for hit in group]
    return RecallReport(
        k, sum(hits) / len(hits), {kind: sum(g) / len(g) for kind, g in sorted(hits_by_kind.items())}, misses, len(hits)
    )
