"""Retrieve chunks for a question (dense, or dense + BM25 fused by reciprocal rank) and put them in a prompt.

The two functions the chat, server and eval call:

    chunks = retrieve(index, question, k)          # index: a path or an opened RagIndex
    messages = rag_messages(messages, chunks)      # same conversation, documents in the last user turn

Prompt layout (`rag_messages`): the system message is left exactly as it was, because a fine-tuned model
keys its house style on it; the documents go into the LAST user message, just before the question, where
a small model attends most, and earlier turns stay as they were said:

    Answer from these company documents; they are newer than anything you remember.

    [1] pricing.md > Plans > City plan
    The City plan costs NT$750 per month from 1 January 2027. ...

    [2] ...

    Question: How much is the City plan?
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path

from ..data.records import content_text
from ..errors import RagError
from .embed import Embedder, load_embedder
from .store import StoredChunk, VectorStore, keyword_text

RRF_K = 60  # the constant from Cormack et al. (2009): damps the weight of the very first ranks
CONTEXT_HEADER = "Answer from these company documents; they are newer than anything you remember."
STOPWORDS = frozenset(
    "a an the is are was were be do does did i you we my your our of to in on for at by with "
    "and or it this that what which how when where who can will would should me".split()
)


@dataclass(frozen=True)
class Chunk:
    path: str
    heading: str
    text: str
    score: float  # what the ranking used: cosine similarity (dense) or the fused RRF score (hybrid)
    similarity: float | None = None  # cosine similarity to the question, if the chunk was among the dense hits
    keyword_rank: int | None = None  # 1-based BM25 rank, if the chunk was among the keyword hits
    id: int = 0

    @property
    def source(self) -> str:
        return f"{self.path} > {self.heading}" if self.heading else self.path

    def as_json(self) -> dict:
        """What an API response or a report carries for a source."""
        return {**asdict(self), "source": self.source}


class RagIndex:
    """An opened index and its embedding model: open once, query many times."""

    def __init__(self, path: str | Path, embedder: Embedder | None = None):
        self.path = Path(path)
        self.store = VectorStore(self.path)
        meta = self.store.meta()
        if not meta.get("embedder"):
            raise RagError(f"{self.path}: the index was never finished; run `buxiban rag index` again")
        self.embedder = embedder or load_embedder(meta["embedder_spec"])
        if self.embedder.identity != meta["embedder"]:
            raise RagError(
                f"{self.path}: built with embedder {meta['embedder']} but {self.embedder.identity} is loaded; "
                f"query with the same model or re-index with this one"
            )
        self.has_bm25 = self.store.has_bm25

    def search(self, question: str, k: int = 5, hybrid: bool | None = None) -> list[Chunk]:
        """Top-k chunks. Hybrid (the default when the index has BM25) fuses the dense and keyword
        rankings by reciprocal rank, so neither score scale has to be calibrated against the other."""
        if k < 1:
            raise RagError(f"k is {k}; ask for at least 1 chunk")
        if not question.strip():
            raise RagError("the question is empty")
        hybrid = self.has_bm25 if hybrid is None else hybrid
        if hybrid and not self.has_bm25:
            raise RagError(f"{self.path}: built without BM25; re-index with --bm25 for hybrid retrieval")
        depth = max(4 * k, 20) if hybrid else k
        dense = self.store.nearest(self.embedder.embed([question])[0], depth)
        if not hybrid:
            found = self.store.chunks([chunk_id for chunk_id, _ in dense])
            return [_chunk(found[i], similarity, similarity, None) for i, similarity in dense]
        keyword = self.store.keyword_search(fts_query(question), depth)
        fused = reciprocal_rank_fusion([[i for i, _ in dense], [i for i, _ in keyword]])[:k]
        similarity = dict(dense)
        keyword_rank = {chunk_id: rank for rank, (chunk_id, _) in enumerate(keyword, start=1)}
        found = self.store.chunks([i for i, _ in fused])
        return [_chunk(found[i], score, similarity.get(i), keyword_rank.get(i)) for i, score in fused]

    def close(self) -> None:
        self.store.close()


def _chunk(stored: StoredChunk, score: float, similarity: float | None, keyword_rank: int | None) -> Chunk:
    return Chunk(
        stored.path,
        stored.heading,
        stored.text,
        float(score),
        None if similarity is None else float(similarity),
        keyword_rank,
        stored.id,
    )


def reciprocal_rank_fusion(rankings: list[list[int]], k: int = RRF_K) -> list[tuple[int, float]]:
    """(id, sum over rankings of 1 / (k + rank)), best first; ties broken by id for a stable order."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda pair: (-pair[1], pair[0]))


def fts_query(question: str) -> str:
    """Any of the question's content words, each quoted so FTS5 syntax in user text (AND, *, ") is inert.
    Chinese runs become the same overlapping character pairs the index stores (store.keyword_text)."""
    words = [w for w in re.findall(r"\w+", keyword_text(question).lower()) if w not in STOPWORDS]
    return " OR ".join(f'"{w}"' for w in dict.fromkeys(words))


_OPEN: dict[Path, RagIndex] = {}


def open_index(path: str | Path) -> RagIndex:
    """One RagIndex per index file per process: the embedding model loads once, not per question."""
    key = Path(path).resolve()
    if key not in _OPEN:
        _OPEN[key] = RagIndex(key)
    return _OPEN[key]


def retrieve(index: RagIndex | str | Path, question: str, k: int = 5) -> list[Chunk]:
    index = index if isinstance(index, RagIndex) else open_index(index)
    return index.search(question, k)


def context_block(chunks: list[Chunk]) -> str:
    return "\n\n".join(f"[{number}] {chunk.source}\n{chunk.text}" for number, chunk in enumerate(chunks, start=1))


def rag_messages(messages: list[dict], chunks: list[Chunk]) -> list[dict]:
    """A copy of `messages` whose last user message carries the documents; unchanged if no chunks."""
    last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=None)
    if last_user is None:
        raise RagError("rag_messages needs a user message to attach the documents to")
    if not chunks:
        return [dict(m) for m in messages]
    out = [dict(m) for m in messages]
    question = content_text(messages[last_user]["content"])  # text parts joined, as the chat template sees them
    if question is None:
        raise RagError("the last user message has non-text content; retrieval needs a text question")
    out[last_user]["content"] = f"{CONTEXT_HEADER}\n\n{context_block(chunks)}\n\nQuestion: {question}"
    return out


def format_sources(chunks: list[Chunk]) -> str:
    return "\n".join(f"[{number}] {chunk.source} ({chunk.score:.3f})" for number, chunk in enumerate(chunks, start=1))
