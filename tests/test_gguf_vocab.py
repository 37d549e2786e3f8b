"""GGUF export's tokenizer metadata against llama.cpp's own: the vocabulary GGUFs llama.cpp ships were
written by its converter from the original tokenizers; buxiban's converted copies of them
(scripts/model_assets.py) must come back out as the same vocabulary, merges and pre-tokenizer name, or
for SentencePiece vocabularies the same merge order through the scores."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy
import pytest

from buxiban.adapters.gguf_vocab import BYTE, UNKNOWN, pre_tokenizer_name, tokenizer_metadata
from buxiban.errors import AdapterError

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from model_assets import assets_dir  # noqa: E402

ASSETS = assets_dir()
# buxiban's tokenizer directory, llama.cpp's vocabulary file, llama.cpp's pre-tokenizer name.
# Qwen 3.5's own split differs from Qwen 2's only on combining marks, but transformers' Qwen2 tokenizer
# class applies Qwen 2's split to it, and the export names what training actually ran.
# gguf's reader takes ~12 s to open a 150k-token vocabulary, so one byte-level case runs in the fast set.
BYTE_LEVEL = [
    ("qwen2", "qwen2", "qwen2"),
    pytest.param("llama3", "llama-bpe", "llama-bpe", marks=pytest.mark.slow),
    pytest.param("qwen35", "qwen35", "qwen2", marks=pytest.mark.slow),
]
SENTENCEPIECE = [("llama2", "llama-spm"), ("phi3", "phi-3")]


def fields(vocab: str) -> dict:
    import gguf

    reader = gguf.GGUFReader(str(ASSETS / "gguf" / f"ggml-vocab-{vocab}.gguf"))
    return {key: field.contents() for key, field in reader.fields.items() if key.startswith("tokenizer.ggml.")}


def metadata(name: str, rows: int) -> dict:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(ASSETS / "tokenizers" / name))
    return tokenizer_metadata(tokenizer, max(rows, len(tokenizer)))


@pytest.mark.parametrize(("name", "vocab", "pre"), BYTE_LEVEL)
def test_byte_level_vocabularies_come_back_as_llama_cpp_wrote_them(name, vocab, pre):
    original = fields(vocab)
    rows = len(original["tokenizer.ggml.tokens"])
    meta = metadata(name, rows)
    assert (meta["model"], meta["pre"]) == ("gpt2", pre)
    assert meta["tokens"][:rows] == original["tokenizer.ggml.tokens"]
    assert meta["types"][:rows] == original["tokenizer.ggml.token_type"]
    assert meta["merges"] == original["tokenizer.ggml.merges"]
    assert meta["eos"] == original["tokenizer.ggml.eos_token_id"]


@pytest.mark.parametrize(("name", "vocab"), SENTENCEPIECE)
def test_sentencepiece_vocabularies_keep_llama_cpp_merge_order(name, vocab):
    original = fields(vocab)
    rows = len(original["tokenizer.ggml.tokens"])
    meta = metadata(name, rows)
    assert (meta["model"], meta["pre"], meta["add_space_prefix"]) == ("llama", "default", True)
    assert meta["tokens"][:rows] == original["tokenizer.ggml.tokens"]
    types = numpy.array(meta["types"][:rows])
    assert (types == BYTE).sum() == 256 and (numpy.array(original["tokenizer.ggml.token_type"]) == BYTE).sum() == 256
    assert types[meta["unk"]] == UNKNOWN
    # llama.cpp merges the pair whose result scores highest: the scores must rank merged pieces as
    # SentencePiece's own scores do (ties there and byte pieces aside, almost exactly)
    ours = numpy.array(meta["scores"][:rows])
    theirs = numpy.array(original["tokenizer.ggml.scores"])
    merged = ours < 0
    assert merged.sum() > 0.9 * rows
    rank_ours, rank_theirs = (numpy.argsort(numpy.argsort(s[merged])) for s in (ours, theirs))
    assert numpy.corrcoef(rank_ours, rank_theirs)[0, 1] > 0.99


def test_pre_tokenizer_names_by_split_and_refuses_the_unknown():
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}
    assert pre_tokenizer_name(byte_level) == "gpt-2"
    smollm = {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True}, byte_level]}
    assert pre_tokenizer_name(smollm) == "smollm"  # SmolLM2's own tokenizer.json
    for unknown in (
        {"type": "Metaspace"},
        {**byte_level, "use_regex": False},
        None,
        {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": False}, byte_level]},
        {
            "type": "Sequence",
            "pretokenizers": [{"type": "Split", "pattern": {"Regex": r"\p{N}+"}}, {**byte_level, "use_regex": False}],
        },
    ):
        with pytest.raises(AdapterError, match="cannot name this tokenizer's pre-tokenizer"):
            pre_tokenizer_name(unknown)
