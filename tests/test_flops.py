"""The FLOPs count behind the model FLOPs utilization that `buxiban train` prints, against a count by
hand for the tiny model's shapes (hidden 32, MLP 64, 2 blocks, 4 query and 2 key/value heads)."""

import pytest

from buxiban.config import load_config
from buxiban.models.adapt import make_trainable
from buxiban.models.load import load_model, resolve
from buxiban.runs import read_manifest
from buxiban.train.flops import flops_per_token
from buxiban.train.sft import train_sft

from conftest import chat_record, write_jsonl

BLOCK = 32 * 32 * 2 + 32 * 16 * 2 + 32 * 64 * 3  # q, o; k, v; gate, up, down
LORA_PER_RANK = (32 + 32) * 2 + (32 + 16) * 2 + (32 + 64) * 3  # A and B of every adapted projection


def trainable_tiny_model(tiny_model_dir, *overrides):
    config = load_config(None, [f"model={tiny_model_dir}", "data.train=x.jsonl", *overrides])
    return make_trainable(load_model(resolve(str(tiny_model_dir))), config)


@pytest.mark.parametrize("head_share", [1.0, 0.25])
def test_lora_counts_frozen_weights_twice_over_and_adapters_three_times(tiny_model_dir, head_share):
    model = trainable_tiny_model(tiny_model_dir, "adapter=lora", "lora.r=4")
    head = model.get_output_embeddings().in_features * model.get_output_embeddings().out_features
    expected = 2 * (4 * BLOCK + 6 * 4 * LORA_PER_RANK) + 4 * head * head_share
    assert flops_per_token(model, head_share) == pytest.approx(expected)


def test_freeze_counts_only_the_forward_pass_below_the_trained_block(tiny_model_dir):
    model = trainable_tiny_model(tiny_model_dir, "adapter=freeze", "freeze.layers=1", "freeze.train_head=true")
    head = model.get_output_embeddings().in_features * model.get_output_embeddings().out_features
    assert flops_per_token(model) == pytest.approx(2 * BLOCK + 6 * BLOCK + 6 * head)


def test_a_finished_run_reports_its_utilization(tiny_model_dir, tmp_path):
    data = write_jsonl(tmp_path / "train.jsonl", [chat_record(f"Plan {i}?", f"NT${i}00.") for i in range(4)])
    out = tmp_path / "run"
    result = train_sft(
        load_config(
            None,
            [
                f"model={tiny_model_dir}",
                f"data.train={data}",
                f"output_dir={out}",
                "data.validation_fraction=0",
                "train.max_steps=2",
                "train.precision=fp32",
            ],
        ),
        progress=False,
        log=lambda _: None,
    )
    reported = read_manifest(out).utilization
    assert reported == result.utilization
    assert 0 < reported["mfu"] < 1 and reported["peak_from"] == "fp32 2048³ matmul"
    assert reported["achieved_tflops"] == pytest.approx(
        result.tokens_per_second * reported["flops_per_token"] / 1e12, rel=1e-3, abs=1e-4
    )
