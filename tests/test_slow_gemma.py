"""End to end on the real Gemma 3 270M base model (`model: gemma3-270m`, from the PyPI chunk
packages), which has no chat template of its own: no hand edits, and the fine-tuned answers end at
<end_of_turn> instead of running to the token limit."""

import json
from pathlib import Path

import pytest

from buxiban.cli import main

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

pytestmark = pytest.mark.slow


def test_gemma3_base_checks_trains_evaluates_and_chats_with_its_family_template(tmp_path, capsys):
    train = str(EXAMPLES / "yunshan" / "train.jsonl")
    assert main(["data", "check", train, "--model", "gemma3-270m"]) == 0
    out = capsys.readouterr().out
    assert "<start_of_turn>model\n⟦" in out and "<end_of_turn>⟧" in out  # the family format, end of turn trained
    assert "will not learn to stop" not in out

    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                str(EXAMPLES / "yunshan" / "lora.yaml"),
                "model=gemma3-270m",
                f"output_dir={run}",
                "train.max_steps=20",
                "--quiet",
            ]
        )
        == 0
    )  # 20 steps of 8: enough to learn where a turn ends
    manifest = json.loads((run / "buxiban-run.json").read_text())
    assert manifest["template"]["name"] == "gemma" and manifest["template"]["origin"] == "family"
    saved = json.loads((run / "adapter" / "tokenizer_config.json").read_text())
    chat_template = saved.get("chat_template") or (run / "adapter" / "chat_template.jinja").read_text()
    assert chat_template == manifest["template"]["text"]  # the adapter carries the template it was trained with

    assert (
        main(
            [
                "eval",
                str(run),
                "--test",
                str(EXAMPLES / "yunshan" / "test.jsonl"),
                "--limit",
                "6",
                "--shots",
                "0",
                "--no-forgetting",
            ]
        )
        == 0
    )
    report = json.loads((run / "eval" / "eval.json").read_text())
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(run / "adapter"))
    lengths = [
        len(tokenizer(e["fine-tuned"]["answer"], add_special_tokens=False)["input_ids"]) for e in report["examples"]
    ]
    assert max(lengths) < report["max_new_tokens"] - 8, lengths  # each answer stopped on its own
    assert report["summary"]["fine-tuned"]["token_f1"] > report["summary"]["base"]["token_f1"]

    capsys.readouterr()
    assert main(["chat", "--run", str(run), "-m", "How much is the City plan?", "--max-new-tokens", "60"]) == 0
    answer = capsys.readouterr().out.strip()
    assert answer and len(tokenizer(answer)["input_ids"]) < 50
