"""A base model (no chat template) of each family trains with its family's format and stops where
training taught it to: tiny random models over the families' real tokenizers, trained through
buxiban's own loop, then asked through eval's generation (what `chat` and `serve` stop on too)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from buxiban.cli import main
from buxiban.config import load_config
from buxiban.data.tokenize import end_of_turn_ids
from buxiban.errors import ModelLoadError, RunDirError
from buxiban.models.templates import FAMILIES, choose_template
from buxiban.runs import read_manifest
from buxiban.runs.load import load_trained
from buxiban.train.sft import train_sft

from conftest import chat_record, write_jsonl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
from model_assets import assets_dir  # noqa: E402

TOKENIZERS = assets_dir() / "tokenizers"
QUESTION, ANSWER = "Is there a deposit?", "The deposit is NT$3,000."
# family template -> the real tokenizer of a base model of that family, and its end of turn
# (Gemma's own base model, the real one, goes end to end in test_slow_gemma.py)
CASES = [
    ("llama3", "llama3", "<|eot_id|>"),
    ("chatml", "qwen2", "<|im_end|>"),
    ("phi3", "phi3", "<|end|>"),
]


def base_model_dir(tokenizer_name: str, directory: Path) -> Path:
    """A 1-layer Llama over a real vocabulary, saved like a base model: a tokenizer without a template."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(str(TOKENIZERS / tokenizer_name))
    tokenizer.chat_template = None
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        initializer_range=0.3,
    )
    LlamaForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.mark.parametrize("family, tokenizer_name, end_of_turn", CASES, ids=[c[0] for c in CASES])
def test_a_base_model_trains_with_its_family_template_and_stops_at_its_end_of_turn(
    family, tokenizer_name, end_of_turn, tmp_path
):
    from buxiban.models.generate import generate_with_stats

    model_dir = base_model_dir(tokenizer_name, tmp_path / "base")
    data = write_jsonl(tmp_path / "train.jsonl", [chat_record(QUESTION, ANSWER)] * 8)
    out = tmp_path / "run"
    config = load_config(
        None,
        [
            f"model={model_dir}",
            f"data.train={data}",
            f"output_dir={out}",
            "data.validation_fraction=0",
            "train.batch_size=4",
            "train.max_steps=30",
            "train.learning_rate=1e-2",
            "train.warmup_ratio=0",
            "train.precision=fp32",
            "adapter=full",
        ],
    )
    train_sft(config, progress=False, log=lambda _: None)  # template: auto

    manifest = read_manifest(out)
    assert manifest.template["name"] == family and manifest.template["origin"] == "family"
    model, tokenizer, _ = load_trained(out)  # the run's template, with no flag to repeat
    assert tokenizer.chat_template == FAMILIES[family].template
    assert tokenizer.convert_ids_to_tokens(end_of_turn_ids(tokenizer)) == [end_of_turn]
    prompt = [
        {"role": "system", "content": "You are the assistant of Yunshan Cycles."},
        {"role": "user", "content": QUESTION},
    ]
    generated = generate_with_stats(model, tokenizer, [prompt], max_new_tokens=40)
    assert generated.answers[0].startswith("The")  # 30 steps from random weights: the shape, not every digit
    assert generated.new_tokens[0] < 40  # it stopped on the end of turn, not at max_new_tokens

    # naming the run's own template is fine; another is refused by eval and chat before a model loads
    assert load_trained(out, template=family)[1].chat_template == FAMILIES[family].template
    other = "gemma"
    with pytest.raises(
        RunDirError, match=f"trained with the chat template '{family}' \\(family\\).*--template {other}"
    ):
        load_trained(out, template=other)
    test_file = str(tmp_path / "train.jsonl")
    assert main(["eval", str(out), "--test", test_file, "--template", other, "--no-forgetting"]) != 0
    assert not (out / "eval").exists()
    assert main(["chat", "--run", str(out), "--template", other, "-m", QUESTION]) != 0


def test_a_base_model_without_known_markers_is_refused_with_the_choices():
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(TOKENIZERS / "llama2"))  # Llama 2's vocabulary: no turn markers
    tokenizer.chat_template = None
    with pytest.raises(ModelLoadError, match="has no chat template.*chatml.*llama3.*gemma"):
        choose_template(tokenizer, "auto", "llama-2-base")
    with pytest.raises(ModelLoadError, match=r"template: gemma needs <start_of_turn>, <end_of_turn> as single tokens"):
        choose_template(tokenizer, "gemma", "llama-2-base")
    assert choose_template(tokenizer, str(assets_dir() / "templates" / "google-gemma-2-2b-it.jinja")).origin == "file"
