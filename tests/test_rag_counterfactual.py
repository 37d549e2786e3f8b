"""Counterfactual figures in `rag augment`: a figure changed in the documents and the answer together, so the
answer can only come from the documents."""

from __future__ import annotations

import random
import re

import pytest

from buxiban.rag import counterfactual as cf
from buxiban.rag.augment import augment_records
from buxiban.rag.index import build_index
from buxiban.rag.retrieve import RagIndex

from conftest import FakeEmbedder, chat_record, write_docs


def test_figures_are_whole_numbers_as_written():
    text = "NT$3,000 in 10 days, 08:00 to 21:00, 1.5 km, model A12, 1.2.2027 and 15%."
    assert cf.figures(text) == ["3,000", "10", "08:00", "21:00", "1.5", "1.2.2027", "15"]
    # 690 inside 1,690 or 6900 is not the figure 690
    assert cf.apply({"690": "750"}, "NT$690, NT$1,690, 6900 and 690.") == "NT$750, NT$1,690, 6900 and 750."


@pytest.mark.parametrize(
    "figure, shape",
    [
        ("690", r"\d+0"),
        ("3,000", r"\d,000"),
        ("1,190", r"\d{1,3}(,\d{3})?|\d{3}"),
        ("08:00", r"\d\d:00"),
        ("1.5", r"\d+\.\d"),
        ("7", r"\d{1,2}"),
        ("07", r"\d\d"),
    ],
)
def test_a_new_figure_keeps_the_shape_and_is_new(figure, shape):
    rng = random.Random(0)
    drawn = {cf.other_figure(figure, rng, {"750"}) for _ in range(40)}
    assert figure not in drawn and "750" not in drawn and None not in drawn and len(drawn) > 1
    assert all(re.fullmatch(shape, new) for new in drawn), drawn
    assert all(0 <= int(new.split(":")[0]) <= 23 for new in drawn if ":" in new)
    assert cf.other_figure("1.2.2027", rng, set()) is None  # a date is not a quantity to change


def test_only_figures_the_documents_state_are_changed():
    mapping = cf.swap_figures(
        "The City plan costs NT$690 per month, 3 months at least.",
        ["The City plan costs NT$690 per month."],
        random.Random(1),
    )
    assert list(mapping) == ["690"] and mapping["690"] != "690"


def test_augment_changes_figures_in_documents_and_answer_together(tmp_path):
    embedder = FakeEmbedder()
    build_index(write_docs(tmp_path / "docs"), tmp_path / "index.db", embedder=embedder)
    index = RagIndex(tmp_path / "index.db", embedder=embedder)
    records = [
        chat_record("How much is the Cargo plan?", "The Cargo plan costs NT$1,890 per month."),
        chat_record("When is support open?", "Support is open 07:00 to 23:00 every day."),
        chat_record("The brakes failed", '{"team": "repairs", "priority": "urgent"}'),
    ] * 4
    plain, _ = augment_records(records, index, k=2, share=0.75, seed=5)
    changed, report = augment_records(records, index, k=2, share=0.75, seed=5, counterfactual=1.0)
    # the same conversations get documents either way: counterfactuals draw from their own random stream
    assert [r.get("metadata", {}).get("rag_sources") for r in plain] == [
        r.get("metadata", {}).get("rag_sources") for r in changed
    ]
    swapped = [r for r in changed if "rag_counterfactual" in r.get("metadata", {})]
    assert report.counterfactual == len(swapped) > 0
    for record in swapped:
        prompt, answer = record["messages"][-2]["content"], record["messages"][-1]["content"]
        for old, new in record["metadata"]["rag_counterfactual"].items():
            assert old not in cf.figures(prompt + answer) and new in cf.figures(answer) and new in cf.figures(prompt)
        assert record["messages"][0] == records[0]["messages"][0]  # the system prompt stays as trained
    # a ticket's JSON answer has no figure, and an answer the documents do not state stays true
    assert all(
        "rag_counterfactual" not in r.get("metadata", {})
        for r in changed
        if r["messages"][-1]["content"].startswith("{")
    )
    assert [r["messages"][-1]["content"] for r in plain] == [r["messages"][-1]["content"] for r in records]
    assert augment_records(records, index, k=2, share=0.75, seed=5, counterfactual=1.0)[0] == changed
    with pytest.raises(Exception, match="counterfactual is 2"):
        augment_records(records, index, counterfactual=2)
