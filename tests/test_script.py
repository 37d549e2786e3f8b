"""Traditional vs Simplified Chinese: the script check in `data check` and the per-system rate in eval."""

import json
from pathlib import Path

from buxiban.cli import main
from buxiban.eval.metrics import score_answer
from buxiban.script import is_traditional_text, script_of

from conftest import chat_record, write_jsonl

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_characters_both_scripts_write_do_not_count_as_simplified():
    taiwanese = "新台幣 3,800 元，每公里加收 30 元；只有一台車，週末與周末都營業，了解，准許，皇后大道，麵包。"
    assert script_of(taiwanese).name == "traditional" and is_traditional_text(taiwanese)
    assert script_of("搬家费用为新台币 3,800 元").simplified == "费为币"
    assert script_of("搬家費用为新台幣 3,800 元").name == "mixed"
    assert script_of("The deposit is NT$3,000.").name is None
    assert script_of("一二三").name is None  # identical in both scripts: no evidence either way


def test_data_check_flags_simplified_answers_in_a_traditional_data_set(tmp_path, capsys):
    records = [chat_record("押金多少？", "押金為新台幣 3,000 元。")] * 3 + [
        chat_record("訂金可以退嗎？", "订金在搬家后 5 个工作天内退还。"),
        chat_record("有發票嗎？", "我們開立電子发票。"),
    ]
    data = write_jsonl(tmp_path / "train.jsonl", records)
    main(["data", "check", str(data), "--model", "/nonexistent", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert report["stats"]["script"] == {"traditional": 3, "simplified": 1, "mixed": 1}
    [finding] = [f for f in report["findings"] if f["kind"] == "simplified script"]
    assert finding["count"] == 2 and finding["where"] == [f"{data}:5", f"{data}:4"]
    assert "发" in finding["message"] and "s2twp" in finding["message"]


def test_an_all_simplified_data_set_is_a_choice_not_a_slip(tmp_path, capsys):
    data = write_jsonl(tmp_path / "train.jsonl", [chat_record("押金多少？", "押金为人民币 300 元。")] * 3)
    main(["data", "check", str(data), "--model", "/nonexistent", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert report["stats"]["script"] == {"simplified": 3}
    assert not [f for f in report["findings"] if f["kind"] == "simplified script"]


def test_shipped_chinese_data_passes_the_script_check():
    answers = []
    for path in EXAMPLES.glob("*/*.jsonl"):
        for line in path.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            for message in record.get("messages", []) + record.get("preferred_output", []):
                if message["role"] == "assistant":
                    answers.append(message["content"])
    scripts = [script_of(answer) for answer in answers]
    assert not [s.simplified for s in scripts if s.simplified]
    assert sum(s.name == "traditional" for s in scripts) > 100  # the Chinese example is in the glob


def test_eval_scores_traditional_script_only_against_traditional_references():
    reference = "押金為新台幣 3,000 元。"
    assert score_answer("押金為新台幣 3,000 元。", reference)["traditional_script"] is True
    assert score_answer("押金为新台币 3,000 元。", reference)["traditional_script"] is False
    assert score_answer("The deposit is NT$3,000.", reference)["traditional_script"] is False
    assert "traditional_script" not in score_answer("The deposit is NT$3,000.", "The deposit is NT$3,000.")
