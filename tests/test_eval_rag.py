"""`buxiban eval --rag`: the +RAG systems, scores per question kind, recall@k, and one prompt layout for
training data, chat and eval. Tiny chat model and tiny encoder; no download."""

from __future__ import annotations

import json

import pytest

from buxiban.cli import main
from buxiban.eval.compare import load_test_set
from buxiban.eval.rag import BASE_RAG, FINE_TUNED_RAG, Retrieval, by_kind, with_rag
from buxiban.eval.systems import default_systems
from buxiban.rag.index import build_index
from buxiban.rag.retrieve import RagIndex, rag_messages

from conftest import RECORDS, FakeEmbedder, chat_record, train_tiny, write_docs, write_jsonl


def labelled(question: str, answer: str, kind: str, source) -> dict:
    return {**chat_record(question, answer), "metadata": {"kind": kind, "source": source, "category": "faq"}}


TESTS = [
    labelled("How much is the City plan?", "The City plan costs NT$750 per month.", "changed", "pricing.md"),
    labelled("When is support open?", "Support is open 07:00 to 23:00 every day.", "changed", ["support.html"]),
    labelled("How much is the Cargo plan?", "The Cargo plan costs NT$1,890 per month.", "stable", "pricing.md"),
    labelled("The brakes failed", '{"team": "repairs", "priority": "urgent"}', "style", "sub/deposit.txt"),
]


@pytest.fixture(scope="module")
def rag_setup(tiny_model_dir, tiny_encoder_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("eval-rag")
    run = train_tiny(tiny_model_dir, write_jsonl(root / "train.jsonl", RECORDS), root / "run", steps=10)
    index = root / "index.db"
    build_index(write_docs(root / "docs"), index, embedder_spec=str(tiny_encoder_dir), bm25=True)
    return run, write_jsonl(root / "test.jsonl", TESTS), index


def test_eval_with_rag_scores_four_systems_per_kind_with_recall(rag_setup, tmp_path, capsys):
    from buxiban.rag.recall import read_questions, recall_at_k

    run, test, index = rag_setup
    out = tmp_path / "report"
    assert (
        main(
            [
                "eval",
                str(run),
                "--test",
                str(test),
                "--rag",
                str(index),
                "--rag-k",
                "2",
                "--shots",
                "0",
                "--no-forgetting",
                "--latency-samples",
                "0",
                "--max-new-tokens",
                "6",
                "--resamples",
                "200",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    report = json.loads((out / "eval.json").read_text())
    assert [s["name"] for s in report["systems"]] == ["base", BASE_RAG, "fine-tuned", FINE_TUNED_RAG]
    for row in report["examples"]:
        # both +RAG systems read the same two chunks; their prompts are longer by exactly the same tokens
        assert len(row["retrieved"]) == 2
        extra = row["prompt_tokens"][BASE_RAG] - row["prompt_tokens"]["base"]
        assert extra > 20 and row["prompt_tokens"][FINE_TUNED_RAG] - row["prompt_tokens"]["fine-tuned"] == extra

    # recall agrees with `buxiban rag eval` on the same index, questions and k
    expected = recall_at_k(RagIndex(index), read_questions(test), 2)
    assert report["retrieval"]["by_kind"] == pytest.approx(expected.by_kind)
    assert report["retrieval"]["recall"] == pytest.approx(expected.recall) and report["retrieval"]["questions"] == 4
    assert [r["retrieval_hit"] for r in report["examples"]] == [
        any(
            s.split(" > ")[0]
            in ([t["metadata"]["source"]] if isinstance(t["metadata"]["source"], str) else t["metadata"]["source"])
            for s in r["retrieved"]
        )
        for t, r in zip(TESTS, report["examples"])
    ]

    groups = report["by_kind"]["groups"]
    assert report["by_kind"]["field"] == "metadata.kind" and report["by_kind"]["leader"] == FINE_TUNED_RAG
    assert {kind: g["n"] for kind, g in groups.items()} == {"changed": 2, "stable": 1, "style": 1}
    for kind, group in groups.items():
        rows = [r for r in report["examples"] if r["kind"] == kind]
        for system in ("base", BASE_RAG, "fine-tuned", FINE_TUNED_RAG):
            assert group["summary"][system]["token_f1"] == pytest.approx(
                sum(r[system]["token_f1"] for r in rows) / len(rows), abs=1e-4
            )
        assert [t["b"] for t in group["significance"]] == ["base", BASE_RAG, "fine-tuned"]

    # what to fix is analysed for the system one would ship with documents too
    assert report["rag_errors"]["system"] == FINE_TUNED_RAG and report["rag_errors"]["n"] == 4
    assert report["rag_errors"]["failed"] == sum(not r[FINE_TUNED_RAG]["exact_match"] for r in report["examples"])
    assert (f"{FINE_TUNED_RAG} failures: " in printed) == (report["rag_errors"]["failed"] > 0)
    assert "exact match by metadata.kind:" in printed and "retrieval recall@2" in printed
    assert "| changed | 2 |" in printed and f"{FINE_TUNED_RAG} vs base" in printed
    assert "## Exact match by metadata.kind" in (out / "eval.md").read_text()
    html = (out / "eval.html").read_text()
    assert "By question kind (metadata.kind)" in html and "<th>retrieved</th>" in html and "recall@2" in html


def test_rag_options_are_checked_before_a_model_loads(rag_setup, tmp_path, capsys):
    run, test, index = rag_setup
    assert main(["eval", str(run), "--test", str(test), "--rag", str(tmp_path / "none.db"), "--rag-k", "0"]) == 2
    err = capsys.readouterr().err
    assert "--rag " in err and "no such index" in err and "--rag-k 0" in err
    typo = write_jsonl(
        tmp_path / "typo.jsonl", [labelled("How much is the City plan?", "NT$750.", "changed", "prices.md")]
    )
    assert main(["eval", str(run), "--test", str(typo), "--rag", str(index)]) == 1
    err = capsys.readouterr().err
    assert f"{typo}:1" in err and "metadata.source" in err and "'prices.md'" in err


def test_training_data_chat_and_eval_build_the_same_rag_prompt(tiny_model_dir, tmp_path):
    """A model trained on `rag augment` data must see the same layout when eval or chat adds documents."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from buxiban.cli.chat_session import ChatSession
    from buxiban.rag.augment import augment_records

    embedder = FakeEmbedder()
    build_index(write_docs(tmp_path / "docs"), tmp_path / "index.db", embedder=embedder)
    index = RagIndex(tmp_path / "index.db", embedder=embedder)
    record = chat_record("How much is the Cargo plan?", "The Cargo plan costs NT$1,890 per month.")
    trained = augment_records([record], index, k=2)[0][0]["messages"][:-1]
    evaluated = Retrieval(index, 2).prepare(record["messages"][:-1])
    session = ChatSession(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir),
        AutoTokenizer.from_pretrained(tiny_model_dir),
        "tiny",
        system=record["messages"][0]["content"],
        rag=index,
        rag_k=2,
    )
    session.history.append({"role": "user", "content": "How much is the Cargo plan?"})
    assert trained == evaluated == session.prompt_messages("How much is the Cargo plan?")
    assert trained == rag_messages(record["messages"][:-1], index.search("How much is the Cargo plan?", 2))


def test_rag_systems_sit_next_to_their_weights_and_kinds_fall_back_to_category(tmp_path):
    index = type("Index", (), {"path": "i.db"})()
    names = [s.name for s in with_rag(default_systems(lambda p: p, 2), Retrieval(index, 3))]
    assert names == ["base", "few-shot", BASE_RAG, "fine-tuned", FINE_TUNED_RAG]

    def row(category, base, tuned):
        return {
            "category": category,
            "base": {"exact_match": base, "token_f1": base},
            "fine-tuned": {"exact_match": tuned, "token_f1": tuned},
        }

    rows = [row("faq", 0.0, 1.0), row("faq", 0.0, 1.0), row("faq", 1.0, 0.0), row("router", 0.0, 0.0)]
    for r in rows:
        for s in ("base", "fine-tuned"):
            r[s]["refusal"] = False
    result = by_kind(rows, ["base", "fine-tuned"], 200, 0)
    assert result["field"] == "metadata.category" and result["leader"] == "fine-tuned"
    faq = result["groups"]["faq"]
    assert (faq["summary"]["fine-tuned"]["exact_match"], faq["summary"]["base"]["exact_match"]) == (0.6667, 0.3333)
    assert faq["significance"] == [
        {"a": "fine-tuned", "b": "base", "metric": "exact_match", "only_a": 2, "only_b": 1, "p_value": 1.0}
    ]
    assert by_kind(rows[:3], ["base"], 200, 0) == {}  # one kind only: the overall table says it all


def test_test_records_carry_kind_and_sources(tmp_path):
    tests = load_test_set(write_jsonl(tmp_path / "t.jsonl", TESTS))
    assert [(t["kind"], t["sources"]) for t in tests] == [
        ("changed", ["pricing.md"]),
        ("changed", ["support.html"]),
        ("stable", ["pricing.md"]),
        ("style", ["sub/deposit.txt"]),
    ]
