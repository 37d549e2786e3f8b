"""Retrieval over Chinese documents: CJK-aware chunking and keywords, and the multilingual embedder
chosen for a Chinese folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from buxiban.rag.documents import count_tokens, split_paragraphs
from buxiban.rag.index import build_index, choose_embedder, document_files
from buxiban.rag.recall import read_questions, recall_at_k
from buxiban.rag.retrieve import RagIndex, fts_query
from buxiban.rag.store import keyword_text

from conftest import FakeEmbedder

HEFENG = Path(__file__).resolve().parent.parent / "examples" / "hefeng"
YUNSHAN = Path(__file__).resolve().parent.parent / "examples" / "yunshan"


def test_chinese_text_is_chunked_by_character_and_unwrapped_without_spaces():
    assert count_tokens("押金為新台幣 3,000 元。") == 11  # 7 characters, 3 pieces of the number, the stop
    assert split_paragraphs("押金為新台幣 3,000 元，搬家後\n5 個工作天內退還。") == [
        "押金為新台幣 3,000 元，搬家後 5 個工作天內退還。"
    ]
    assert split_paragraphs("訂金在搬家\n當天退還。") == ["訂金在搬家當天退還。"]


def test_keywords_are_character_pairs_so_a_chinese_question_finds_its_document(tmp_path):
    assert keyword_text("押金多少").split() == ["押金", "金多", "多少"]
    assert fts_query("押金多少？ deposit") == '"押金" OR "金多" OR "多少" OR "deposit"'
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "deposit.md").write_text("# 押金\n押金為新台幣 3,000 元，搬家後 5 個工作天內退還。", encoding="utf-8")
    (docs / "hours.md").write_text("# 營業時間\n客服每天 08:00 至 22:00 提供服務。", encoding="utf-8")
    (docs / "piano.md").write_text("# 鋼琴\n鋼琴搬運每台加收新台幣 3,000 元。", encoding="utf-8")
    index_path = tmp_path / "index.db"
    build_index(docs, index_path, embedder=FakeEmbedder(), bm25=True)
    index = RagIndex(index_path, embedder=FakeEmbedder())
    # the fake embedder sees one "word" per Chinese clause, so only the keyword side can find these
    assert [hit for hit, _ in index.store.keyword_search(fts_query("請問押金什麼時候退？"), 3)][:1] == [1]
    assert index.search("客服幾點開始服務？", k=1)[0].path == "hours.md"


def test_a_new_chinese_folder_gets_the_multilingual_embedder_and_an_index_keeps_its_own(tmp_path):
    spec, reason = choose_embedder(document_files(HEFENG / "docs"), {})
    assert spec == "use-multilingual" and "CJK" in reason
    assert choose_embedder(document_files(YUNSHAN / "docs"), {})[0] == "minilm"
    assert choose_embedder(document_files(HEFENG / "docs"), {"embedder_spec": "minilm"})[0] == "minilm"


@pytest.mark.slow
def test_multilingual_retrieval_on_the_chinese_example_beats_the_english_embedder(tmp_path):
    """The numbers in the README's Traditional Chinese section: recall@3 on the fact questions."""
    questions = [q for q in read_questions(HEFENG / "rag_test.jsonl") if q.kind in ("changed", "stable")]
    recall = {}
    for spec in ("minilm", "use-multilingual"):
        build_index(HEFENG / "docs", tmp_path / f"{spec}.db", embedder_spec=spec)
        recall[spec] = recall_at_k(RagIndex(tmp_path / f"{spec}.db"), questions, k=3).recall
    assert recall["use-multilingual"] >= 0.9 and recall["minilm"] < 0.6, recall


def test_the_chinese_rag_questions_are_new_and_their_documents_state_the_answers():
    """The generator's determinism is tested with Yunshan's in test_rag_examples.py."""
    import json
    import re

    from buxiban.rag.documents import read_sections

    figure = re.compile(r"\d[\d,:]*\d%?|\d%?")
    records = [json.loads(line) for line in (HEFENG / "rag_test.jsonl").read_text(encoding="utf-8").splitlines()]
    trained = {
        m["content"]
        for line in (HEFENG / "train.jsonl").read_text(encoding="utf-8").splitlines()
        for m in json.loads(line)["messages"]
        if m["role"] == "user"
    }
    assert not [r for r in records if r["messages"][1]["content"] in trained]
    for record in records:
        meta, reference = record["metadata"], record["messages"][-1]["content"]
        for source in meta["source"]:
            text = " ".join(p for s in read_sections(HEFENG / "docs" / source) for p in s.paragraphs)
            if meta["kind"] != "style":
                assert all(f in text for f in figure.findall(reference)), (source, reference)
