"""Tiny in-process models: a byte-level BPE tokenizer trained on a few sentences and a 2-layer Llama
built from a config, saved as an ordinary Hugging Face directory. No downloads; seconds to build."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")

CORPUS = [
    "You are the assistant of Yunshan Cycles. Answer in one short sentence.",
    "How much is the City plan? The City plan costs NT$690 per month.",
    "Support is open 08:00 to 21:00 every day, including public holidays.",
    "Is there a deposit? The deposit is NT$3,000.",
    '{"team": "repairs", "priority": "urgent"} the brakes failed',
    "你好,請問營業時間? 我們每天 08:00 到 21:00 營業。",
]


def build_tiny_model_dir(directory: Path, seed: int = 0) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    core = Tokenizer(models.BPE(unk_token=None))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    core.train_from_iterator(CORPUS * 4, trainers.BpeTrainer(
        vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                        pad_token="<|endoftext|>", unk_token="<|endoftext|>")
    tokenizer.chat_template = CHATML
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True,
                         initializer_range=0.3)  # wide enough embeddings for logits to move in a few steps
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_tiny_model_dir(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_dir):
    from buxiban.models.load import load_tokenizer, resolve

    return load_tokenizer(resolve(str(tiny_model_dir)))


def chat_record(*turns: str, system: str | None = "You are the assistant of Yunshan Cycles.") -> dict:
    messages = [{"role": "system", "content": system}] if system else []
    for index, text in enumerate(turns):
        messages.append({"role": "user" if index % 2 == 0 else "assistant", "content": text})
    return {"messages": messages}


def write_jsonl(path: Path, records) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in records),
                    encoding="utf-8")
    return path


@pytest.fixture()
def tiny_chat_file(tmp_path) -> Path:
    records = [chat_record("How much is the City plan?", "The City plan costs NT$690 per month."),
               chat_record("Is there a deposit?", "The deposit is NT$3,000."),
               chat_record("When is support open?", "Support is open 08:00 to 21:00 every day."),
               chat_record("The brakes failed", '{"team": "repairs", "priority": "urgent"}')]
    return write_jsonl(tmp_path / "train.jsonl", records)


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """Tests never reach a model hub, even where one is reachable."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
