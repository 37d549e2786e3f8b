import json

import pytest

from buxiban.cli import main
from buxiban.config import load_config
from buxiban.errors import DataError, RunDirError
from buxiban.runs import read_manifest, read_metrics
from buxiban.train.sft import train_sft

from conftest import chat_record, write_jsonl


def tiny_config(tiny_model_dir, train_file, out, *extra):
    return load_config(
        None,
        [
            f"model={tiny_model_dir}",
            f"data.train={train_file}",
            f"output_dir={out}",
            "data.validation_fraction=0",
            "train.batch_size=2",
            "train.max_steps=40",
            "train.learning_rate=3e-3",
            "train.warmup_ratio=0",
            "train.precision=fp32",
            "lora.r=8",
            "lora.dropout=0",
            *extra,
        ],
    )


def test_training_lowers_the_loss_and_writes_a_complete_run(tiny_model_dir, tiny_chat_file, tmp_path):
    out = tmp_path / "run"
    result = train_sft(
        tiny_config(tiny_model_dir, tiny_chat_file, out, f"data.validation={tiny_chat_file}"),
        progress=False,
        log=lambda _: None,
    )
    steps = [m for m in read_metrics(out) if "loss" in m]
    assert len(steps) == result.steps == 40
    first, last = steps[0]["loss"], steps[-1]["loss"]
    assert last < first / 3, (first, last)  # four examples, 40 steps: it must nearly memorize them
    assert result.val_loss is not None and result.val_loss < first / 3

    manifest = read_manifest(out)
    assert manifest.status == "complete"
    assert manifest.base_model.kind == "local"
    assert manifest.data["train"]["sha256"].startswith("sha256:")
    assert manifest.data["train"]["examples"] == 4
    assert manifest.default_system_prompt == "You are the assistant of Yunshan Cycles."
    assert (out / "config.yaml").read_text().count("max_steps: 40") == 1
    adapter = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert adapter["peft_type"] == "LORA" and adapter["r"] == 8
    assert (out / "adapter" / "adapter_model.safetensors").is_file()


def test_same_seed_same_losses(tiny_model_dir, tiny_chat_file, tmp_path):
    losses = []
    for name in ("a", "b"):
        train_sft(
            tiny_config(tiny_model_dir, tiny_chat_file, tmp_path / name, "train.max_steps=5"),
            progress=False,
            log=lambda _: None,
        )
        losses.append([m["loss"] for m in read_metrics(tmp_path / name) if "loss" in m])
    assert losses[0] == losses[1]


def test_an_earlier_run_is_never_overwritten_by_accident(tiny_model_dir, tiny_chat_file, tmp_path):
    out = tmp_path / "run"
    config = tiny_config(tiny_model_dir, tiny_chat_file, out, "train.max_steps=1")
    train_sft(config, progress=False, log=lambda _: None)
    with pytest.raises(RunDirError, match="--overwrite"):
        train_sft(config, progress=False, log=lambda _: None)
    assert read_manifest(out).status == "complete"


def test_bad_data_fails_before_the_model_loads_and_names_the_line(tiny_chat_file, tmp_path):
    bad = write_jsonl(
        tmp_path / "bad.jsonl", [chat_record("Hi", "Hello."), '{"messages": [{"role": "usr", "content": "x"}]}']
    )
    config = load_config(None, ["model=/nonexistent/model", f"data.train={bad}", f"output_dir={tmp_path / 'run'}"])
    with pytest.raises(DataError) as caught:
        train_sft(config, progress=False)
    assert any(p.where == f"{bad}:2" and p.field == "messages[0].role" for p in caught.value.problems)
    assert not (tmp_path / "run").exists()


def test_over_length_examples_are_skipped_with_a_warning(tiny_model_dir, tmp_path):
    long = chat_record("How much is the City plan? " * 40, "The City plan costs NT$690 per month.")
    data = write_jsonl(tmp_path / "train.jsonl", [chat_record("Is there a deposit?", "The deposit is NT$3,000."), long])
    said = []
    result = train_sft(
        tiny_config(tiny_model_dir, data, tmp_path / "run", "train.max_steps=1", "data.max_length=64"),
        progress=False,
        log=said.append,
    )
    assert any(f"{data}:2" in line and "over data.max_length=64" in line for line in said)
    assert read_manifest(result.run_dir).data["train"]["examples"] == 1


def test_cli_train_prints_a_summary(tiny_model_dir, tiny_chat_file, tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text(
        f"model: {tiny_model_dir}\ndata:\n  train: {tiny_chat_file}\n  validation_fraction: 0\n"
        f"output_dir: {tmp_path / 'run'}\ntrain:\n  max_steps: 2\n  batch_size: 2\n"
    )
    assert main(["train", str(config), "train.precision=fp32", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "trained 2 steps" in out and f"run saved to {tmp_path / 'run'}" in out
