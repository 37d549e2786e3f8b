"""`plan`'s warning that a model's tokenizer does not know the data's language, with real tokenizers."""

import sys
from pathlib import Path

import pytest

from buxiban.data.records import load_chat_jsonl
from buxiban.models.load import load_tokenizer, resolve
from buxiban.plan.language import MULTILINGUAL_TOKENS_PER_CHARACTER, cjk_messages, language_fit, tokens_per_character

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from model_assets import assets_dir  # noqa: E402

TOKENIZERS = assets_dir() / "tokenizers"
CHINESE = load_chat_jsonl(ROOT / "examples" / "hefeng" / "train.jsonl")
ENGLISH = load_chat_jsonl(ROOT / "examples" / "yunshan" / "train.jsonl")


def family(name: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(TOKENIZERS / name))


@pytest.mark.parametrize(("label", "name"), [("Gemma 3", "gemma3"), ("Qwen2", "qwen2")])
def test_the_multilingual_reference_is_what_those_tokenizers_spend_on_the_chinese_example(label, name):
    texts = cjk_messages(CHINESE)
    assert len(texts) > 500
    assert tokens_per_character(family(name), texts) == pytest.approx(
        MULTILINGUAL_TOKENS_PER_CHARACTER[label], abs=0.005
    )


def test_the_embedded_english_model_is_warned_about_chinese_data_and_a_multilingual_one_is_not():
    embedded = load_tokenizer(resolve("embedded", False), False, None)
    fit = language_fit(CHINESE, embedded, "SmolLM2-135M-Instruct")
    assert fit["tokens_per_character"] > 1.5 and "SmolLM2-135M-Instruct's tokenizer spends" in fit["warning"]
    assert "warning" not in language_fit(CHINESE, family("llama3"), "Llama 3")  # 0.93: knows Chinese well enough
    assert "warning" in language_fit(CHINESE, family("llama2"), "Llama 2")  # byte-fallback pieces: 1.64
    assert language_fit(ENGLISH, embedded, "SmolLM2-135M-Instruct") is None  # no Chinese: nothing to say
