import json
import math

import pytest
import torch

from buxiban.cli import main
from buxiban.config import load_config
from buxiban.errors import ConfigError, DataError, RunDirError
from buxiban.runs import read_manifest, read_metrics
from buxiban.train.neftune import token_lengths, use_neftune
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


# --- NEFTune (train/neftune.py) ---


def test_token_lengths_are_each_conversations_own():
    ids = torch.zeros(1, 10, dtype=torch.long)
    assert token_lengths(ids, packed_bounds=(0, 3, 10)).tolist() == [[3.0] * 3 + [7.0] * 7]
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    assert token_lengths(torch.zeros(2, 4, dtype=torch.long), mask).tolist() == [[2.0] * 4, [4.0] * 4]


def test_noise_is_bounded_per_conversation_and_absent_in_eval_mode(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    handles = use_neftune(model, alpha=5.0)
    captured = []  # registered after NEFTune's hook, so it sees the noisy output
    model.get_input_embeddings().register_forward_hook(
        lambda module, args, output: captured.append(output.detach().clone())
    )
    ids = torch.randint(5, 40, (1, 12))
    bounds = (0, 4, 12)
    model.eval()
    model.model(input_ids=ids, packed_bounds=bounds)
    clean = model.get_input_embeddings().weight[ids].detach()
    assert torch.equal(captured[-1], clean), "eval mode must see no noise"

    model.train()
    model.model(input_ids=ids, packed_bounds=bounds)
    noise = (captured[-1] - clean)[0].abs()
    hidden = clean.size(-1)
    for start, end in zip(bounds[:-1], bounds[1:]):
        bound = 5.0 / math.sqrt((end - start) * hidden)
        piece = noise[start:end]
        assert piece.max() <= bound * (1 + 1e-6)
        assert piece.max() > bound / 2, "uniform noise over 128+ elements reaches near its bound"
    assert noise[:4].max() > noise[4:].max(), "the shorter conversation gets the stronger noise"

    for handle in handles:
        handle.remove()
    model.model(input_ids=ids, packed_bounds=bounds)
    assert torch.equal(captured[-1], clean)


def test_a_run_with_neftune_trains_differently_and_still_learns(tiny_model_dir, tiny_chat_file, tmp_path):
    losses = {}
    for name, alpha in (("plain", 0), ("noisy", 1)):  # a 32-wide model: 5 would swamp its embeddings
        train_sft(
            tiny_config(tiny_model_dir, tiny_chat_file, tmp_path / name, f"train.neftune_alpha={alpha}"),
            progress=False,
            log=lambda _: None,
        )
        losses[name] = [m["loss"] for m in read_metrics(tmp_path / name) if "loss" in m]
    assert losses["plain"][0] == pytest.approx(losses["noisy"][0], rel=0.2)
    assert losses["plain"] != losses["noisy"]
    assert losses["noisy"][-1] < losses["noisy"][0] / 3


@pytest.mark.parametrize(
    "overrides, needle",
    [(["train.neftune_alpha=-1"], "train.neftune_alpha"), (["train.neftune_alpha=nan"], "train.neftune_alpha")],
)
def test_a_bad_strength_is_refused_by_name(overrides, needle):
    with pytest.raises(ConfigError, match=needle):
        load_config(None, ["data.train=x.jsonl", *overrides])


def test_neftune_is_refused_for_dpo():
    with pytest.raises(ConfigError, match="SFT only"):
        load_config(None, ["data.train=x.jsonl", "method=dpo", "train.neftune_alpha=5"])
