"""`buxiban plan` end to end on the tiny model: the report's sections, the warning on too little
data, --limit, --json, and a time estimate whose step schedule is the training loop's own."""

import json

import pytest
import yaml

from buxiban.cli import main

from conftest import chat_record, write_jsonl

FAST = [
    "--calibration-steps",
    "2",
    "--warmup-steps",
    "1",
    "--max-new-tokens",
    "4",
    "--set",
    "train.precision=fp32",
    "--set",
    "train.threads=1",
]


@pytest.fixture()
def twenty(tmp_path):
    questions = ["How much is the City plan?", "Is there a deposit?", "When is support open?", "The brakes failed"]
    answers = [
        "The City plan costs NT$690 per month.",
        "The deposit is NT$3,000.",
        "Support is open 08:00 to 21:00 every day.",
        '{"team": "repairs", "priority": "urgent"}',
    ]
    train = [chat_record(f"{questions[i % 4]} ({i})", answers[i % 4]) for i in range(20)]
    test = [chat_record(f"Please: {q}", a) for q, a in zip(questions, answers)]
    return write_jsonl(tmp_path / "train.jsonl", train), write_jsonl(tmp_path / "test.jsonl", test)


def test_plan_on_twenty_examples_warns_and_says_what_to_do(tiny_model_dir, twenty, capsys):
    train, test = twenty
    code = main(
        [
            "plan",
            str(train),
            "--test",
            str(test),
            "--model",
            str(tiny_model_dir),
            "--limit",
            "2",
            "--shots",
            "2",
            "--price-per-hour",
            "1.5",
            "--target",
            "0.9",
            *FAST,
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "WARNING: 20 examples is too few to fine-tune reliably" in out
    assert "Try a better prompt with few-shot examples first" in out and "collect more real conversations" in out
    assert "2 of 4 test questions" in out and "(--limit)" in out
    assert "zero-shot" in out and "2-shot" in out and "short of the target 0.9" in out
    assert "× 5 epochs (auto (OpenAI's rule))" in out  # 20 examples: 100 // 20
    assert "tokenizer and chat template, not OpenAI's" in out
    assert "1 warm-up step(s)" in out and "2 step(s) after" in out
    for method in ("lora", "qlora", "full", "freeze"):
        assert f" {method} " in out
    assert "prompt tokens saved per request" in out and "self-hosted" in out


def test_plan_json_is_consistent_with_the_training_loop(tiny_model_dir, twenty, tmp_path, capsys):
    from buxiban.config import load_config
    from buxiban.runs import read_manifest
    from buxiban.train.sft import train_sft

    train, test = twenty
    code = main(["plan", str(train), "--model", str(tiny_model_dir), "--epochs", "2", "--json", *FAST])
    plan = json.loads(capsys.readouterr().out)
    assert code == 0
    assert "baseline" not in plan  # no --test: nothing to measure on
    hosted, local = plan["hosted"], plan["local"]
    assert hosted["epochs"] == 2 and hosted["epochs_chosen"] == "given"
    assert hosted["billed_tokens"] == 2 * hosted["dataset_tokens"] == 2 * plan["data"]["total_tokens"]
    assert hosted["cost_usd"] == pytest.approx(hosted["billed_tokens"] * 3 / 1e6)
    time = local["time"]
    assert time["seconds"] > 0 and time["seconds"] == pytest.approx(
        time["training_seconds"] + time["validation_seconds"], abs=0.2
    )
    assert local["calibration"]["measured_steps"] == 2 and local["calibration"]["padded_tokens"] > 0
    assert local["memory"]["full"]["trainable_parameters"] == local["memory"]["full"]["total_parameters"]

    run = tmp_path / "run"
    config = load_config(
        None,
        [
            f"model={tiny_model_dir}",
            f"data.train={train}",
            f"output_dir={run}",
            "train.epochs=2",
            "train.precision=fp32",
            "train.threads=1",
        ],
    )
    result = train_sft(config, progress=False, log=lambda _: None)
    assert result.steps == time["steps"]  # the schedule the estimate scaled by is the one training ran
    assert read_manifest(run).data["train"]["examples"] == time["train_examples"]


def test_plan_rejects_bad_options_before_loading_anything(tiny_model_dir, twenty, capsys):
    train, _ = twenty
    code = main(["plan", str(train), "--model", str(tiny_model_dir), "--target", "80", "--hosted-model", "gpt-4o-mini"])
    err = capsys.readouterr().err
    assert code == 1 and "--target" in err and "between 0 and 1" in err
    code = main(["plan", str(train), "--model", str(tiny_model_dir), "--hosted-model", "gpt-5"])
    assert code == 1 and "known models are" in capsys.readouterr().err


def test_malformed_data_stops_the_plan_before_any_training(tiny_model_dir, twenty, tmp_path, capsys):
    train, _ = twenty
    broken = tmp_path / "broken.jsonl"
    broken.write_text(train.read_text() + '{"messages": [{"role": "asistant", "content": "hi"}]}\n')
    code = main(["plan", str(broken), "--model", str(tiny_model_dir), *FAST])
    err = capsys.readouterr().err
    assert code == 1 and "broken.jsonl:21" in err and "calibrating" not in err


def test_plan_train_and_a_job_pick_the_same_hyperparameters(tiny_model_dir, twenty, tmp_path, capsys):
    """With nothing set, learning rate, epochs and batch size are chosen once, by train/auto.py, for
    `plan`, `buxiban train` and the fine-tuning jobs API alike, and the run records them with the reason."""
    from transformers import AutoModelForCausalLM

    from buxiban.config import load_config
    from buxiban.runs import read_manifest
    from buxiban.serve.tuning import hyper
    from buxiban.train.sft import train_sft

    train, _ = twenty
    assert main(["plan", str(train), "--model", str(tiny_model_dir), "--json", *FAST]) == 0
    planned = json.loads(capsys.readouterr().out)["local"]
    examples = planned["time"]["train_examples"]

    run = tmp_path / "run"
    said = []
    config = load_config(
        None, [f"model={tiny_model_dir}", f"data.train={train}", f"output_dir={run}", "train.precision=fp32"]
    )
    train_sft(config, progress=False, log=said.append)
    trained = read_manifest(run).hyperparameters
    written = yaml.safe_load((run / "config.yaml").read_text())["train"]
    assert [written[key] for key in ("learning_rate", "epochs", "batch_size")] == ["auto"] * 3  # as the user wrote

    base = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    job = hyper.resolve_auto(hyper.parse_method(None, {}), examples, sum(p.numel() for p in base.parameters()))
    job_rate = hyper.base_learning_rate("supervised", sum(p.numel() for p in base.parameters()))

    picks = {name: (planned["hyperparameters"][name]["value"], trained[name]["value"]) for name in trained}
    assert all(plan_value == train_value for plan_value, train_value in picks.values()), picks
    assert (job["n_epochs"], job["batch_size"], job_rate) == (
        trained["epochs"]["value"],
        trained["batch_size"]["value"],
        trained["learning_rate"]["value"],
    )
    assert all(choice["auto"] and choice["reason"] for choice in trained.values())
    assert any(line.startswith("learning rate 0.001 (auto: SFT of LoRA") for line in said), said
