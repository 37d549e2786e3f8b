"""End to end on the real embedded model (SmolLM2-135M-Instruct): a few training steps, eval, chat."""

import json
from pathlib import Path

import pytest

from buxiban.cli import main

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

pytestmark = pytest.mark.slow


def test_embedded_model_answers_a_general_question():
    from buxiban.cli.chat_session import ChatSession

    session = ChatSession.open(model="embedded", max_new_tokens=20)
    assert "paris" in session.ask("What is the capital of France?").lower()


def test_check_train_eval_chat_on_the_example_data(tmp_path, capsys):
    train = str(EXAMPLES / "yunshan" / "train.jsonl")
    assert main(["data", "check", train]) == 0
    out = capsys.readouterr().out
    assert "tokens counted with the embedded tokenizer" in out and "⟦" in out

    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                str(EXAMPLES / "yunshan" / "lora.yaml"),
                f"output_dir={run}",
                "train.max_steps=3",
                "train.batch_size=4",
                "--quiet",
            ]
        )
        == 0
    )
    manifest = json.loads((run / "buxiban-run.json").read_text())
    assert manifest["status"] == "complete" and manifest["base_model"]["name"] == "SmolLM2-135M-Instruct"

    assert (
        main(
            [
                "eval",
                str(run),
                "--test",
                str(EXAMPLES / "yunshan" / "test.jsonl"),
                "--limit",
                "4",
                "--max-new-tokens",
                "32",
            ]
        )
        == 0
    )
    report = json.loads((run / "eval" / "eval.json").read_text())
    assert report["summary"]["base"]["n"] == 4
    assert all(e["base"]["answer"] for e in report["examples"])  # the real model says something

    capsys.readouterr()
    assert main(["chat", "--run", str(run), "-m", "Is there a deposit?", "--max-new-tokens", "24"]) == 0
    assert capsys.readouterr().out.strip()
