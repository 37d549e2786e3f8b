"""`buxiban rag index/query/eval` and `chat --rag` end to end, with a tiny BERT encoder saved as a directory
(the `--embedder PATH` route) and the tiny chat model of conftest.py."""

from __future__ import annotations

import json

import numpy as np

from buxiban.cli import main
from buxiban.rag.embed import Embedder
from buxiban.rag.index import build_index
from buxiban.rag.retrieve import RagIndex

from conftest import FakeEmbedder, write_docs, write_jsonl


def test_embedding_ignores_padding_and_follows_the_pooling_config(tiny_encoder_dir, tmp_path):
    embedder = Embedder.load(str(tiny_encoder_dir))
    assert (embedder.pooling, embedder.normalize, embedder.dimension) == ("mean", True, 16)
    short, long = "the city plan", "how much is the cargo plan per month when support is open every day ?"
    alone, batched = embedder.embed([short]), embedder.embed([long, short])
    np.testing.assert_allclose(batched[1], alone[0], atol=1e-5)  # padding is masked out of the mean
    np.testing.assert_allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)
    assert embedder.calls == 3
    embedder.bf16 = not embedder.bf16  # the other precision gives the same directions, within bf16 rounding
    assert (embedder.embed([long, short]) * batched).sum(axis=1).min() > 0.99

    st_dir = tmp_path / "st"
    st_dir.mkdir()
    for path in tiny_encoder_dir.iterdir():
        (st_dir / path.name).write_bytes(path.read_bytes())
    (st_dir / "modules.json").write_text(
        json.dumps(
            [
                {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            ]
        )
    )
    (st_dir / "1_Pooling").mkdir()
    (st_dir / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True}))
    cls_embedder = Embedder.load(str(st_dir))
    assert (cls_embedder.pooling, cls_embedder.normalize) == ("cls", False)
    assert cls_embedder.identity != embedder.identity
    assert not np.allclose(cls_embedder.embed([short])[0], alone[0] * np.linalg.norm(cls_embedder.embed([short])[0]))


def test_index_query_and_eval_commands(tiny_encoder_dir, tmp_path, capsys):
    docs, out = write_docs(tmp_path / "docs"), tmp_path / "index.db"
    assert main(["rag", "index", str(docs), "--out", str(out), "--embedder", str(tiny_encoder_dir), "--bm25"]) == 0
    assert "3 added, 0 changed, 0 removed, 0 unchanged; 4 chunks embedded" in capsys.readouterr().out
    assert main(["rag", "index", str(docs), "--out", str(out), "--embedder", str(tiny_encoder_dir), "--bm25"]) == 0
    assert "0 added, 0 changed, 0 removed, 3 unchanged; 0 chunks embedded" in capsys.readouterr().out

    assert main(["rag", "query", str(out), "How much is the Cargo plan?", "-k", "2"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("2 chunks, hybrid (dense + BM25, reciprocal rank fusion)")
    assert "[1] pricing.md > Pricing > Cargo  (score" in text and "BM25 rank 1" in text
    assert "    The Cargo plan costs NT$1,890 per month." in text

    assert main(["rag", "query", str(out), "When is support open?", "-k", "3", "--dense", "--json"]) == 0
    chunks = json.loads(capsys.readouterr().out)
    assert len(chunks) == 3 and all(c["keyword_rank"] is None and c["score"] == c["similarity"] for c in chunks)
    assert [c["score"] for c in chunks] == sorted((c["score"] for c in chunks), reverse=True)
    assert all(c["source"] == (f"{c['path']} > {c['heading']}" if c["heading"] else c["path"]) for c in chunks)

    questions = write_jsonl(
        tmp_path / "q.jsonl",
        [
            {
                "messages": [{"role": "user", "content": "How much is the Cargo plan?"}],
                "metadata": {"source": "pricing.md", "kind": "stable"},
            },
            {
                "messages": [{"role": "user", "content": "When is support open?"}],
                "metadata": {"source": ["support.html"], "kind": "changed"},
            },
        ],
    )
    assert main(["rag", "eval", str(out), "--questions", str(questions), "-k", "3", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["questions"] == 2 and report["k"] == 3 and set(report["by_kind"]) == {"changed", "stable"}
    assert report["recall"] == (2 - len(report["misses"])) / 2

    train = write_jsonl(
        tmp_path / "train.jsonl",
        [
            {
                "messages": [
                    {"role": "user", "content": "How much is the Cargo plan?"},
                    {"role": "assistant", "content": "NT$1,890."},
                ]
            },
            {
                "messages": [
                    {"role": "user", "content": "When is support open?"},
                    {"role": "assistant", "content": "07:00."},
                ]
            },
        ],
    )
    assert (
        main(["rag", "augment", str(train), "--index", str(out), "--out", str(tmp_path / "aug.jsonl"), "-k", "2"]) == 0
    )
    assert "2 of 2 conversations now carry 2 retrieved chunks" in capsys.readouterr().out
    written = [json.loads(line) for line in (tmp_path / "aug.jsonl").read_text().splitlines()]
    assert [r["messages"][-1]["content"] for r in written] == ["NT$1,890.", "07:00."]
    assert all(r["messages"][0]["content"].startswith("Answer from these company documents") for r in written)
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"messages": [{"role": "asistant", "content": "x"}]}])
    assert main(["rag", "augment", str(bad), "--index", str(out), "--out", str(tmp_path / "x.jsonl")]) == 1
    assert "bad.jsonl:1" in capsys.readouterr().err and not (tmp_path / "x.jsonl").exists()


def test_rag_errors_name_the_problem(tiny_encoder_dir, tmp_path, capsys):
    assert main(["rag", "query", str(tmp_path / "missing.db"), "hello"]) == 1
    assert "no index there; build one with `buxiban rag index" in capsys.readouterr().err
    assert main(["rag", "index", str(tmp_path / "nowhere"), "--out", str(tmp_path / "i.db")]) == 1
    assert "not a directory" in capsys.readouterr().err
    assert (
        main(
            [
                "rag",
                "index",
                str(write_docs(tmp_path / "docs")),
                "--out",
                str(tmp_path / "i.db"),
                "--embedder",
                str(tmp_path),
            ]
        )
        == 1
    )
    assert "no config.json there" in capsys.readouterr().err
    (tmp_path / "docs" / "bad.md").write_bytes(b"\xff\xfe")
    (tmp_path / "docs" / "worse.txt").write_bytes(b"caf\xe9")
    assert (
        main(
            [
                "rag",
                "index",
                str(tmp_path / "docs"),
                "--out",
                str(tmp_path / "i.db"),
                "--embedder",
                str(tiny_encoder_dir),
            ]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert (
        "2 document(s) cannot be read; nothing was indexed" in err and "bad.md: not UTF-8" in err and "worse.txt" in err
    )
    (tmp_path / "docs" / "bad.md").unlink()
    (tmp_path / "docs" / "worse.txt").unlink()
    (tmp_path / "notes.txt").write_text("not a database, just notes " * 100)
    assert main(["rag", "query", str(tmp_path / "notes.txt"), "hello"]) == 1
    assert "not a buxiban RAG index" in capsys.readouterr().err
    import apsw

    apsw.Connection(str(tmp_path / "app.db")).execute("create table users (name text)")
    assert (
        main(
            [
                "rag",
                "index",
                str(tmp_path / "docs"),
                "--out",
                str(tmp_path / "app.db"),
                "--embedder",
                str(tiny_encoder_dir),
            ]
        )
        == 1
    )
    assert "not a buxiban RAG index; choose another --out" in capsys.readouterr().err
    out = tmp_path / "i.db"
    build_index(
        tmp_path / "docs", out, embedder=Embedder.load(str(tiny_encoder_dir)), embedder_spec=str(tiny_encoder_dir)
    )
    questions = write_jsonl(
        tmp_path / "q.jsonl",
        [
            {"messages": [{"role": "user", "content": "Cargo?"}], "metadata": {"source": "prices.md"}},
            {"messages": [{"role": "user", "content": "Support?"}]},
        ],
    )
    assert main(["rag", "eval", str(out), "--questions", str(questions)]) == 1
    assert "q.jsonl:2: metadata.source is missing" in capsys.readouterr().err


def test_chat_session_puts_retrieved_documents_in_the_prompt(tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from buxiban.cli.chat_session import ChatSession

    embedder = FakeEmbedder()
    build_index(write_docs(tmp_path / "docs"), tmp_path / "index.db", embedder=embedder)
    session = ChatSession(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir),
        AutoTokenizer.from_pretrained(tiny_model_dir),
        "tiny",
        system="Answer in one short sentence.",
        max_new_tokens=4,
        rag=RagIndex(tmp_path / "index.db", embedder=embedder),
        rag_k=2,
    )
    session.ask("How much is the City plan?")
    assert [c.source for c in session.last_sources][0] == "pricing.md > Pricing > City"
    assert session.history[0] == {"role": "user", "content": "How much is the City plan?"}  # history stays plain
    session.history.append({"role": "user", "content": "When is support open?"})  # as ask() does before prompting
    prompt = session.prompt_messages("When is support open?")
    assert prompt[0] == {"role": "system", "content": "Answer in one short sentence."}
    assert prompt[1]["content"] == "How much is the City plan?"  # earlier turns keep no documents
    assert prompt[-1]["content"].startswith("Answer from these company documents")
    assert "[1] support.html > Support\nSupport is open 07:00 to 23:00 every day." in prompt[-1]["content"]


def test_an_index_built_with_a_relative_embedder_path_is_queried_from_anywhere(
    tiny_encoder_dir, tmp_path, monkeypatch, capsys
):
    import os

    docs = write_docs(tmp_path / "docs")
    monkeypatch.chdir(docs)
    relative = os.path.relpath(tiny_encoder_dir, docs)
    assert main(["rag", "index", ".", "--out", "../index.db", "--embedder", relative]) == 0
    monkeypatch.chdir(tmp_path.parent)
    assert main(["rag", "query", str(tmp_path / "index.db"), "How much is the Cargo plan?", "-k", "1"]) == 0
    assert "1 chunks, dense" in capsys.readouterr().out  # the random tiny encoder ranks arbitrarily; it loaded
