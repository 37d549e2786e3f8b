"""Incremental indexing, the sqlite-vec store round trip, hybrid fusion and prompt assembly.

A fake embedder (hashed bag of words) keeps these tests at milliseconds and counts every text embedded;
the real model is exercised in test_rag_cli.py (a tiny encoder directory) and test_rag_recall.py (MiniLM)."""

from __future__ import annotations

import numpy as np
import pytest

from buxiban.errors import RagError
from buxiban.rag.index import build_index
from buxiban.rag.retrieve import RagIndex, rag_messages, reciprocal_rank_fusion, retrieve
from buxiban.rag.store import VectorStore

from conftest import FakeEmbedder, write_docs


def test_reindex_embeds_only_changed_files_and_drops_deleted_ones(tmp_path):
    docs, out, embedder = write_docs(tmp_path / "docs"), tmp_path / "index.db", FakeEmbedder()
    first = build_index(docs, out, embedder=embedder, bm25=True)
    assert sorted(first.added) == ["pricing.md", "sub/deposit.txt", "support.html"]
    assert (first.files, first.chunks, first.chunks_embedded, embedder.calls) == (3, 4, 4, 4)

    again = build_index(docs, out, embedder=embedder, bm25=True)
    assert (again.unchanged, again.chunks_embedded, embedder.calls) == (3, 0, 4)

    (docs / "support.html").write_text(
        "<h1>Support</h1><p>Support is open 06:00 to 22:00.</p><h2>Repairs</h2><p>Within 48 hours.</p>",
        encoding="utf-8",
    )
    (docs / "sub" / "deposit.txt").unlink()
    (docs / "new.md").write_text("Helmets are included free.", encoding="utf-8")
    third = build_index(docs, out, embedder=embedder, bm25=True)
    assert (third.changed, third.removed, third.added) == (["support.html"], ["sub/deposit.txt"], ["new.md"])
    assert (third.chunks_embedded, embedder.calls) == (3, 7)  # 2 support chunks + 1 new, nothing else
    assert (third.files, third.chunks) == (3, 5)

    index = RagIndex(out, embedder=embedder)
    paths = {c.path for c in index.search("deposit refunded working days", k=5, hybrid=False)}
    assert "sub/deposit.txt" not in paths
    assert index.store.db.execute("select count(*) from vectors").fetchone()[0] == 5  # no orphan vectors
    assert index.store.db.execute("select count(*) from keywords").fetchone()[0] == 5
    assert index.search("06:00 support", k=1)[0].text == "Support is open 06:00 to 22:00."


def test_changing_chunk_settings_or_embedder_reembeds_everything(tmp_path):
    docs, out, embedder = write_docs(tmp_path / "docs"), tmp_path / "index.db", FakeEmbedder()
    build_index(docs, out, embedder=embedder)
    report = build_index(docs, out, embedder=embedder, chunk_tokens=100, overlap=10)
    assert report.rebuilt.startswith("changed chunk_tokens (160 -> 100), overlap (32 -> 10)")
    assert report.chunks_embedded == 4 and report.chunks == 4
    other = FakeEmbedder()
    other.identity = "another-model"
    assert build_index(docs, out, embedder=other, chunk_tokens=100, overlap=10).chunks_embedded == 4
    with pytest.raises(RagError, match="built with embedder another-model"):
        RagIndex(out, embedder=embedder)


def test_store_round_trip_keeps_text_sources_and_vectors(tmp_path):
    docs, out, embedder = write_docs(tmp_path / "docs"), tmp_path / "index.db", FakeEmbedder()
    build_index(docs, out, embedder=embedder)
    store = VectorStore(out)
    rows = store.db.execute("select id, path, heading, text from chunks order by id").fetchall()
    assert [(path, heading) for _, path, heading, _ in rows] == [
        ("pricing.md", "Pricing > City"),
        ("pricing.md", "Pricing > Cargo"),
        ("sub/deposit.txt", ""),
        ("support.html", "Support"),
    ]
    for chunk_id, _, heading, text in rows:
        stored = store.db.execute("select embedding from vectors where rowid = ?", (chunk_id,)).fetchone()[0]
        expected = embedder.embed([f"{heading}\n{text}" if heading else text])[0]
        np.testing.assert_array_equal(np.frombuffer(stored, dtype=np.float32), expected)
    best = store.nearest(embedder.embed(["Pricing > Cargo\nThe Cargo plan costs NT$1,890 per month."])[0], 2)
    assert best[0][0] == rows[1][0] and best[0][1] == pytest.approx(1.0, abs=1e-5) and best[1][1] < 0.9
    assert store.meta()["chunk_tokens"] == 160 and not store.has_bm25
    store.close()


def test_reciprocal_rank_fusion_numbers():
    fused = reciprocal_rank_fusion([[1, 2, 3], [3, 4]], k=60)
    scores = dict(fused)
    assert scores[3] == pytest.approx(1 / 63 + 1 / 61)
    assert scores[1] == pytest.approx(1 / 61) and scores[4] == pytest.approx(1 / 62)
    assert [item for item, _ in fused] == [3, 1, 2, 4]


def test_hybrid_finds_an_exact_code_that_dense_ranks_low(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    # Dense similarity favours the chunks that repeat the question's common words; only BM25 weighs the rare code.
    for i in range(6):
        (docs / f"noise{i}.md").write_text(
            f"# Error codes\nError code guide page {i}: what does the error code on the "
            f"display mean and what does it mean for riding.",
            encoding="utf-8",
        )
    (docs / "e42.md").write_text("# Motor\nE42 means the motor overheated; rest for ten minutes.", encoding="utf-8")
    embedder = FakeEmbedder()
    build_index(docs, tmp_path / "index.db", embedder=embedder, bm25=True)
    index = RagIndex(tmp_path / "index.db", embedder=embedder)
    question = "What does the error code E42 on the display mean?"
    dense = index.search(question, k=3, hybrid=False)
    hybrid = index.search(question, k=3)
    assert "e42.md" not in [c.path for c in dense]
    assert hybrid[0].path == "e42.md" and hybrid[0].keyword_rank == 1
    dense_rank = [c.path for c in index.search(question, k=7, hybrid=False)].index("e42.md") + 1
    assert dense_rank > 3 and hybrid[0].score == pytest.approx(1 / 61 + 1 / (60 + dense_rank))
    assert retrieve(index, question, 2)[0].path == "e42.md"


def test_rag_messages_puts_documents_in_the_last_user_turn_only(tmp_path):
    docs, out, embedder = write_docs(tmp_path / "docs"), tmp_path / "index.db", FakeEmbedder()
    build_index(docs, out, embedder=embedder)
    chunks = retrieve(RagIndex(out, embedder=embedder), "How much is the City plan?", 2)
    messages = [
        {"role": "system", "content": "Answer in one short sentence."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "How much is the City plan?"},
    ]
    out_messages = rag_messages(messages, chunks)
    assert out_messages[:3] == messages[:3] and messages[3]["content"] == "How much is the City plan?"
    prompt = out_messages[3]["content"]
    assert prompt.endswith("\n\nQuestion: How much is the City plan?")
    assert "[1] pricing.md > Pricing > City\nThe City plan costs NT$750 per month." in prompt
    assert prompt.index("[1]") < prompt.index("[2]") < prompt.index("Question:")
    assert rag_messages(messages, []) == messages
    parts = messages[:3] + [{"role": "user", "content": [{"type": "text", "text": "How much is the City plan?"}]}]
    assert rag_messages(parts, chunks)[3]["content"] == prompt  # text parts read as the chat template reads them
    with pytest.raises(RagError, match="user message"):
        rag_messages(messages[:1], chunks)


def test_augment_puts_documents_before_the_last_answer_and_keeps_targets(tmp_path):
    from buxiban.rag.augment import augment_records

    docs, out, embedder = write_docs(tmp_path / "docs"), tmp_path / "index.db", FakeEmbedder()
    build_index(docs, out, embedder=embedder)
    index = RagIndex(out, embedder=embedder)
    records = [
        {
            "messages": [
                {"role": "system", "content": "S"},
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello!"},
                {"role": "user", "content": "How much is the Cargo plan?"},
                {"role": "assistant", "content": "NT$1,890."},
            ],
            "metadata": {"category": "faq"},
        }
    ]
    records += [
        {
            "messages": [
                {"role": "user", "content": f"When is support open, question {i}?"},
                {"role": "assistant", "content": "07:00 to 23:00."},
            ]
        }
        for i in range(40)
    ]
    augmented, report = augment_records(records, index, k=2)
    first = augmented[0]
    assert first["messages"][:3] == records[0]["messages"][:3] and first["messages"][4] == records[0]["messages"][4]
    assert first["messages"][3]["content"].endswith("Question: How much is the Cargo plan?")
    assert first["metadata"] == {
        "category": "faq",
        "rag_sources": ["pricing.md > Pricing > Cargo", first["metadata"]["rag_sources"][1]],
    }
    assert (report.records, report.with_documents, sum(report.sources.values())) == (41, 41, 82)
    assert records[0]["messages"][3]["content"] == "How much is the Cargo plan?"  # the input is not modified

    half, half_report = augment_records(records, index, k=1, share=0.5, seed=3)
    again, _ = augment_records(records, index, k=1, share=0.5, seed=3)
    assert half == again and 10 < half_report.with_documents < 31
    assert sum("rag_sources" in (r.get("metadata") or {}) for r in half) == half_report.with_documents
    with pytest.raises(RagError, match="share is 1.5"):
        augment_records(records, index, share=1.5)
