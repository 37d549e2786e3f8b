import json
from collections import Counter

from buxiban.cli import main
from buxiban.data.check import check_file
from buxiban.data.dedup import DuplicateIndex, shingles
from buxiban.data.split import split_file

from conftest import chat_record, write_jsonl

QUESTIONS = [
    "How much is the City plan per month for a student?",
    "When is the support desk open on holidays?",
    "Can I pause my subscription while I travel abroad?",
    "What happens if my bike is stolen at night?",
    "Where can I swap an empty battery near Taipei Main Station?",
    "Do you deliver bikes to Banqiao?",
]


def test_exact_and_near_duplicates_are_paired():
    index = DuplicateIndex(threshold=0.7)
    index.add(1, "How much is the City plan per month for a student in Taipei?")
    index.add(2, "Where can I swap an empty battery near Taipei Main Station?")
    index.add(3, "how much is the city plan per month, for a student in Taipei")  # same after normalizing
    index.add(4, "Hi! How much is the City plan per month for a student in Taipei?")
    assert index.exact_pairs == [(0, 2)]
    near = index.near_pairs()
    assert [(i, j) for i, j, _ in near] == [(0, 3)]
    assert near[0][2] >= 0.7


def test_chinese_text_is_shingled_by_character():
    assert shingles("營業時間") == {"營 業 時", "業 時 間"}


def test_check_reports_duplicates_and_leakage(tmp_path):
    records = [chat_record(q, f"Answer {i}.") for i, q in enumerate(QUESTIONS)]
    records.append(records[1])
    records.append(chat_record("Hello, " + QUESTIONS[2], "Answer 2."))
    train = write_jsonl(tmp_path / "train.jsonl", records)
    test = write_jsonl(
        tmp_path / "test.jsonl",
        [
            chat_record(QUESTIONS[4], "x"),
            chat_record("Totally new question here?", "y"),
            chat_record(QUESTIONS[5].replace("Banqiao", "Banqiao please"), "z"),
        ],
    )
    report = check_file(train, test_file=test, near_threshold=0.6)
    assert report.stats["duplicates"] == {"exact": 1, "near": 1}
    assert report.stats["leakage"] == {"test_file": str(test), "exact": 1, "near": 1}
    kinds = Counter(f.kind for f in report.findings)
    assert kinds["duplicate"] == 1 and kinds["near-duplicate"] == 1 and kinds["leakage"] == 2
    duplicate = next(f for f in report.findings if f.kind == "duplicate")
    assert duplicate.where == [f"{train}:7 = {train}:2"]


def test_split_is_deterministic_and_never_separates_duplicates(tmp_path):
    records = [chat_record(f"Question number {i} about plan {i % 7}?", f"Answer {i}.") for i in range(200)]
    records += [records[5], records[17]]  # exact duplicates
    records.append(chat_record("Question number 40 about plan 5? Thanks!", "Answer 40."))  # near duplicate of #40
    source = write_jsonl(tmp_path / "all.jsonl", records)
    counts = split_file(source, tmp_path / "a", (0.8, 0.1, 0.1), near_threshold=0.6)
    assert sum(counts.values()) == len(records)
    assert 158 <= counts["train"] <= 166 and 18 <= counts["validation"] <= 22
    split_file(
        write_jsonl(tmp_path / "shuffled.jsonl", list(reversed(records))),
        tmp_path / "b",
        (0.8, 0.1, 0.1),
        near_threshold=0.6,
    )
    side = {}
    for name in ("train", "validation", "test"):
        a = (tmp_path / "a" / f"{name}.jsonl").read_text().splitlines()
        b = (tmp_path / "b" / f"{name}.jsonl").read_text().splitlines()
        assert sorted(a) == sorted(b), "the split depends on content, not file order"
        for line in a:
            question = json.loads(line)["messages"][1]["content"].split("?")[0]
            side.setdefault(question, set()).add(name)
    assert all(len(sides) == 1 for sides in side.values()), "a duplicate straddles two splits"


def test_stratified_split_keeps_each_category_in_proportion(tmp_path, capsys):
    records = []
    for i in range(100):
        record = chat_record(f"Distinct question {i} on topic {i * 7919 % 1000}?", f"Answer {i}.")
        record["metadata"] = {"category": "billing" if i < 20 else "repairs"}
        records.append(record)
    source = write_jsonl(tmp_path / "all.jsonl", records)
    out = tmp_path / "split"
    assert (
        main(
            [
                "data",
                "split",
                str(source),
                "--out",
                str(out),
                "--ratios",
                "0.5,0.25,0.25",
                "--stratify",
                "metadata.category",
            ]
        )
        == 0
    )
    assert "train: 50, validation: 25, test: 25" in capsys.readouterr().out
    for name, share in (("train", 10), ("validation", 5), ("test", 5)):
        lines = (out / f"{name}.jsonl").read_text().splitlines()
        assert sum(json.loads(l)["metadata"]["category"] == "billing" for l in lines) == share


def test_split_refuses_bad_data_and_writes_nothing(tmp_path, capsys):
    source = write_jsonl(tmp_path / "bad.jsonl", [chat_record("Hi", "Hello."), '{"messages": 1}'])
    assert main(["data", "split", str(source), "--out", str(tmp_path / "out")]) == 1
    assert f"{source}:2" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
