import json

from buxiban.cli import main
from buxiban.data.check import check_file
from buxiban.data.mix import builtin_general_path
from buxiban.data.preference import read_preference_jsonl
from buxiban.data.prepare import prepare
from buxiban.data.records import read_chat_jsonl

from conftest import chat_record, write_jsonl


def test_show_highlights_trained_tokens(tiny_model_dir, tiny_chat_file, capsys):
    assert main(["data", "show", str(tiny_chat_file), "-n", "2", "--model", str(tiny_model_dir), "--no-color"]) == 0
    out = capsys.readouterr().out
    assert f"── {tiny_chat_file}:1" in out and f"── {tiny_chat_file}:2" in out and f"{tiny_chat_file}:3" not in out
    assert "⟦The City plan costs NT$690 per month.<|im_end|>⟧" in out
    assert "⟦How much" not in out  # the user's words are context, never a target

    from buxiban.data.show import show_examples
    from buxiban.models.load import load_tokenizer, resolve

    colored = show_examples(tiny_chat_file, load_tokenizer(resolve(str(tiny_model_dir))), 1, color=True)[0]
    assert "\x1b[1;32mThe City plan costs NT$690 per month.<|im_end|>\x1b[0m" in colored


def test_check_with_a_tokenizer_reports_template_health_and_size_advice(tiny_tokenizer, tiny_chat_file):
    report = check_file(tiny_chat_file, tiny_tokenizer, max_length=512)
    template = report.stats["template"]
    assert template == {"prompt_matches_generation": True, "end_of_turn_trained": True, "leading_bos": {1: 4}}
    assert report.stats["sufficiency"]["level"] == "warning"
    assert [f.kind for f in report.findings] == ["too little data"]


def test_strict_check_fails_on_findings(tiny_model_dir, tiny_chat_file, capsys):
    assert main(["data", "check", str(tiny_chat_file), "--model", str(tiny_model_dir)]) == 0
    assert main(["data", "check", str(tiny_chat_file), "--model", str(tiny_model_dir), "--strict"]) == 1
    assert "warning: too little data" in capsys.readouterr().out


def test_over_length_is_dropped_or_truncated_as_configured(tiny_tokenizer, tmp_path):
    long_answer = "The deposit is NT$3,000. " * 30
    path = write_jsonl(
        tmp_path / "d.jsonl",
        [chat_record("Is there a deposit?", long_answer), chat_record("How much is the City plan? " * 40, "NT$690.")],
    )
    conversations, _ = read_chat_jsonl(path)
    dropped = prepare(conversations, tiny_tokenizer, 64, "drop")
    assert dropped.examples == [] and [w for w, _ in dropped.over_length] == [f"{path}:1", f"{path}:2"]
    cut = prepare(conversations, tiny_tokenizer, 64, "truncate")
    assert len(cut.examples) == 1 and len(cut.examples[0].input_ids) == 64  # the answer starts inside the budget
    assert cut.truncated[0][0] == f"{path}:1" and cut.truncated[0][1] > 0
    assert [w for w, _ in cut.over_length] == [f"{path}:2"]  # no trained token left after cutting


def test_both_preference_formats_parse_and_errors_name_the_line(tmp_path):
    openai = {
        "input": {"messages": [{"role": "user", "content": "Is there a deposit?"}]},
        "preferred_output": [{"role": "assistant", "content": "The deposit is NT$3,000."}],
        "non_preferred_output": [{"role": "assistant", "content": "No deposit."}],
    }
    common = {"prompt": "Is there a deposit?", "chosen": "The deposit is NT$3,000.", "rejected": "No deposit."}
    messages = {
        "prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hours?"}],
        "chosen": [{"role": "assistant", "content": "08:00 to 21:00."}],
        "rejected": "Always open.",
    }
    bad = [
        {"prompt": "x", "chosen": "same", "rejected": "same"},
        {"prompt": "x", "chosen": "a"},
        {
            "input": {"messages": [{"role": "assistant", "content": "hi"}]},
            "preferred_output": [],
            "non_preferred_output": [{"role": "assistant", "content": "b"}],
        },
        {"prompt": "x", "chosen": "a", "rejectd": "b"},
    ]
    path = write_jsonl(tmp_path / "prefs.jsonl", [openai, common, messages] + bad)
    pairs, problems = read_preference_jsonl(path)
    assert [(p.line, p.chosen, p.rejected) for p in pairs] == [
        (1, "The deposit is NT$3,000.", "No deposit."),
        (2, "The deposit is NT$3,000.", "No deposit."),
        (3, "08:00 to 21:00.", "Always open."),
    ]
    assert pairs[2].prompt[0] == {"role": "system", "content": "Be brief."}
    text = "\n".join(str(p) for p in problems)
    assert f"{path}:4: chosen the two answers are identical" in text
    assert f"{path}:5: rejected is missing" in text
    assert f"{path}:6: input.messages[0] ends with a 'assistant' message" in text
    assert f"{path}:6: preferred_output must be a list holding one assistant message" in text
    assert "did you mean 'rejected'?" in text
    report = check_file(path)
    assert report.kind == "preference" and report.stats["examples"] == 3


def test_convert_sharegpt_alpaca_and_csv(tmp_path, capsys):
    sharegpt = write_jsonl(
        tmp_path / "s.jsonl",
        [
            {
                "conversations": [
                    {"from": "human", "value": "Hi"},
                    {"from": "gpt", "value": "Hello!"},
                    {"from": "human", "value": "dangling"},
                ]
            },
            {"conversations": [{"from": "alien", "value": "?"}]},
        ],
    )
    out = tmp_path / "s.out.jsonl"
    assert main(["data", "convert", str(sharegpt), str(out), "--system", "Be kind."]) == 1  # one record skipped
    assert f"{sharegpt}:2" in capsys.readouterr().err
    assert [json.loads(l) for l in out.read_text().splitlines()] == [
        {
            "messages": [
                {"role": "system", "content": "Be kind."},
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello!"},
            ]
        }
    ]

    alpaca = tmp_path / "a.json"
    alpaca.write_text(
        json.dumps(
            [{"instruction": "Add", "input": "2 and 3", "output": "5"}, {"instruction": "Greet", "output": "Hi!"}]
        )
    )
    out = tmp_path / "a.out.jsonl"
    assert main(["data", "convert", str(alpaca), str(out)]) == 0
    converted = [json.loads(l)["messages"] for l in out.read_text().splitlines()]
    assert converted[0][0] == {"role": "user", "content": "Add\n\n2 and 3"} and converted[1][1]["content"] == "Hi!"

    table = tmp_path / "faq.csv"
    table.write_text(
        'question,answer\n"Is there a deposit?","Yes:\nNT$3,000."\n,\nHours?,08:00 to 21:00\nonly one\n',
        encoding="utf-8",
    )
    out = tmp_path / "faq.jsonl"
    assert main(["data", "convert", str(table), str(out)]) == 1
    assert f"{table}:6: needs two non-empty columns" in capsys.readouterr().err
    rows = [json.loads(l)["messages"] for l in out.read_text().splitlines()]
    assert rows == [
        [{"role": "user", "content": "Is there a deposit?"}, {"role": "assistant", "content": "Yes:\nNT$3,000."}],
        [{"role": "user", "content": "Hours?"}, {"role": "assistant", "content": "08:00 to 21:00"}],
    ]
    assert read_chat_jsonl(out)[1] == []


def test_mix_adds_general_data_at_the_ratio(tiny_chat_file, tmp_path, capsys):
    general, problems = read_chat_jsonl(builtin_general_path())
    assert problems == [] and len(general) >= 150
    out = tmp_path / "mixed.jsonl"
    assert main(["data", "mix", str(tiny_chat_file), str(out), "--ratio", "0.5", "--seed", "1"]) == 0
    mixed = [json.loads(l) for l in out.read_text().splitlines()]
    company = [json.loads(l) for l in tiny_chat_file.read_text().splitlines()]
    assert len(mixed) == 8 and sum(r in company for r in mixed) == 4
    again = tmp_path / "again.jsonl"
    main(["data", "mix", str(tiny_chat_file), str(again), "--ratio", "0.5", "--seed", "1"])
    assert again.read_text() == out.read_text()
    assert "4 training + 4 general = 8 examples" in capsys.readouterr().out


def test_general_set_generator_is_deterministic(tmp_path, monkeypatch):
    from buxiban.data.general import build

    records = build.build()
    assert json.dumps(records, ensure_ascii=False) == json.dumps(
        [json.loads(l) for l in builtin_general_path().read_text(encoding="utf-8").splitlines()], ensure_ascii=False
    )
