import json

import pytest

from buxiban.cli import main
from buxiban.config import load_config
from buxiban.eval.metrics import exact_match, normalize, token_f1
from buxiban.eval.report import word_diff
from buxiban.train.sft import train_sft


def test_exact_match_normalizes_text_and_compares_json_as_data():
    assert exact_match("the city plan costs NT$690 per month", "The City plan costs NT$690 per month.")
    assert not exact_match("The City plan costs NT$790 per month.", "The City plan costs NT$690 per month.")
    assert exact_match('{"priority": "urgent", "team": "repairs"}', '{"team": "repairs", "priority": "urgent"}')
    assert not exact_match('{"team": "repairs"}', '{"team": "repairs", "priority": "urgent"}')
    assert not exact_match("team repairs priority urgent", '{"team": "repairs", "priority": "urgent"}')
    assert normalize("  Ｈello,   WORLD! ") == "hello world"


def test_token_f1_numbers():
    assert token_f1("the deposit is NT$3,000", "The deposit is NT$3,000.") == 1.0
    assert token_f1("", "") == 1.0
    assert token_f1("completely different", "the deposit") == 0.0
    # 2 shared of 3 predicted and 4 expected: P=2/3, R=1/2, F1=4/7
    assert token_f1("deposit is huge", "the deposit is small") == pytest.approx(4 / 7)
    assert token_f1("每天營業", "我們每天營業") == pytest.approx(2 * 1 * (4 / 6) / (1 + 4 / 6))


def test_word_diff_marks_missing_and_extra_words():
    assert word_diff("The plan costs NT$790 monthly.", "The plan costs NT$690 per month.") == \
        "The plan costs [-NT$690 per month.-] {+NT$790 monthly.+}"


def test_eval_cli_writes_reports_with_both_systems(tiny_model_dir, tiny_chat_file, tmp_path, capsys):
    run = tmp_path / "run"
    config = load_config(None, [f"model={tiny_model_dir}", f"data.train={tiny_chat_file}", f"output_dir={run}",
                                "data.validation_fraction=0", "train.max_steps=30", "train.batch_size=4",
                                "train.learning_rate=1e-2", "train.precision=fp32", "lora.dropout=0"])
    train_sft(config, progress=False, log=lambda _: None)
    assert main(["eval", str(run), "--test", str(tiny_chat_file), "--max-new-tokens", "24"]) == 0
    out = capsys.readouterr().out
    assert "| base |" in out and "| fine-tuned |" in out
    report = json.loads((run / "eval" / "eval.json").read_text())
    assert [e["where"] for e in report["examples"]] == [f"{tiny_chat_file}:{n}" for n in range(1, 5)]
    for system in ("base", "fine-tuned"):
        assert report["summary"][system]["n"] == 4
        assert 0.0 <= report["summary"][system]["token_f1"] <= 1.0
    # trained on these very examples at a high rate, the adapter must beat the random base
    assert report["summary"]["fine-tuned"]["token_f1"] > report["summary"]["base"]["token_f1"]
    markdown = (run / "eval" / "eval.md").read_text()
    assert "## Every example" in markdown and "How much is the City plan?" in markdown

    assert main(["chat", "--run", str(run), "-m", "How much is the City plan?", "--max-new-tokens", "16"]) == 0
    assert capsys.readouterr().out.strip()


def test_interactive_chat_keeps_history_and_resets(tiny_model_dir, monkeypatch, capsys):
    from buxiban.serve.chat import ChatSession

    opened = []
    original = ChatSession.open.__func__

    def remember(cls, **kwargs):
        session = original(cls, **kwargs)
        opened.append(session)
        return session

    monkeypatch.setattr(ChatSession, "open", classmethod(remember))
    lines = iter(["Is there a deposit?", "And hours?", "/reset", "Hi", "/exit"])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(lines))
    assert main(["chat", "--model", str(tiny_model_dir), "--system", "Be brief.", "--max-new-tokens", "4"]) == 0
    history = opened[0].history
    assert [m["content"] for m in history if m["role"] == "user"] == ["Hi"]  # /reset dropped the first two
    assert opened[0].messages()[0] == {"role": "system", "content": "Be brief."}
    assert "chatting with base model" in capsys.readouterr().out
