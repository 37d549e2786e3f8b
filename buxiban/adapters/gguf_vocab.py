"""A Hugging Face fast tokenizer as llama.cpp's GGUF tokenizer metadata.

Two kinds, as llama.cpp's own converter writes them:
- byte-level BPE (GPT-2, SmolLM, Llama 3, Qwen): tokenizer model "gpt2", the merges, and the name of the
  pre-tokenizer split llama.cpp must apply, recognised from the split's regular expression;
- SentencePiece BPE with byte fallback (Llama 2, Mistral, Phi-3, Gemma): tokenizer model "llama", where
  llama.cpp merges the pair whose result has the highest score, so each merged piece scores minus its
  merge rank, which reproduces the merge order of tokenizer.json.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ..errors import AdapterError

# llama.cpp token types
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

# The regular expression of a Split pre-tokenizer identifies the split llama.cpp hard-codes under a name.
SPLIT_REGEXES = {
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+": "llama-bpe",
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+": "qwen2",
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+": "qwen35",
}
BYTE_PIECE = re.compile(r"<0x[0-9A-Fa-f]{2}>")


def tokenizer_metadata(tokenizer, vocab_size: int) -> dict[str, Any]:
    """Vocabulary, token types, merges or scores and special ids, padded to the model's embedding rows
    as llama.cpp requires."""
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    model = spec.get("model", {})
    if model.get("type") != "BPE":
        raise AdapterError(
            f"GGUF export supports BPE tokenizers (byte-level or SentencePiece with byte fallback); this one "
            f"is {model.get('type')}; use --format hf and llama.cpp's convert_hf_to_gguf.py"
        )
    sentencepiece = bool(model.get("byte_fallback"))
    tokens: dict[int, str] = {index: token for token, index in model["vocab"].items()}
    types = {
        index: (BYTE if sentencepiece and BYTE_PIECE.fullmatch(token) else NORMAL) for index, token in tokens.items()
    }
    for added in spec.get("added_tokens", []):
        tokens[added["id"]] = added["content"]
        types[added["id"]] = CONTROL if added.get("special") else USER_DEFINED
    if sentencepiece and tokenizer.unk_token_id is not None:
        types[tokenizer.unk_token_id] = UNKNOWN
    if max(tokens) >= vocab_size:
        raise AdapterError(f"the tokenizer has {max(tokens) + 1} tokens but the model only {vocab_size} embedding rows")
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    empty = tokenizer("", add_special_tokens=True)["input_ids"]
    template = tokenizer.chat_template
    if isinstance(template, dict):
        template = template.get("default") or next(iter(template.values()), None)
    meta = {
        "model": "llama" if sentencepiece else "gpt2",
        "pre": "default" if sentencepiece else pre_tokenizer_name(spec.get("pre_tokenizer")),
        "tokens": [tokens.get(i, f"[PAD{i}]") for i in range(vocab_size)],
        "types": [types.get(i, UNUSED) for i in range(vocab_size)],
        "bos": tokenizer.bos_token_id,
        "eos": tokenizer.eos_token_id,
        "unk": tokenizer.unk_token_id,
        "pad": tokenizer.pad_token_id,
        "add_bos": tokenizer.bos_token_id is not None and tokenizer.bos_token_id in empty,
        "add_eos": tokenizer.eos_token_id is not None and tokenizer.eos_token_id in empty,
        "chat_template": template,
    }
    if sentencepiece:
        meta["scores"] = merge_scores(merges, meta["tokens"], meta["types"])
        meta["add_space_prefix"] = adds_space_prefix(spec)
    else:
        meta["merges"] = merges
    return meta


def merge_scores(merges: list[str], tokens: list[str], types: list[int]) -> list[float]:
    """Minus the merge rank for every piece a merge makes, so llama.cpp applies the merges of
    tokenizer.json in their order; a longer normal piece no merge makes scores below all of them
    (tokenizer.json never makes it; llama.cpp makes it only when nothing else applies); characters,
    bytes and specials, which are never a merge's result, 0."""
    rank = {}
    for position, merge in enumerate(merges):
        rank.setdefault(merge.replace(" ", "", 1), position)
    unmade = -float(len(merges) + 1)
    return [
        -float(rank[token] + 1) if token in rank else (unmade if kind == NORMAL and len(token) > 1 else 0.0)
        for token, kind in zip(tokens, types)
    ]


def adds_space_prefix(spec: dict) -> bool:
    """SentencePiece's add_dummy_prefix, which tokenizer.json spells as a Prepend normalizer or a
    Metaspace pre-tokenizer that prepends."""
    steps = [spec.get("normalizer") or {}, spec.get("pre_tokenizer") or {}]
    flat = [inner for step in steps for inner in step.get("normalizers", step.get("pretokenizers", [step]))]
    return any(
        (step.get("type") == "Prepend" and step.get("prepend") == "\u2581")
        or (step.get("type") == "Metaspace" and step.get("prepend_scheme", "always") != "never")
        for step in flat
    )


def pre_tokenizer_name(pre: dict | None) -> str:
    steps = (pre or {}).get("pretokenizers", [pre] if pre else [])
    kinds = tuple(step.get("type") for step in steps)
    byte_level = steps[-1] if steps else {}
    digits_ok = all(step.get("individual_digits", True) for step in steps if step.get("type") == "Digits")
    if kinds == ("ByteLevel",) and byte_level.get("use_regex", True):
        return "gpt-2"
    if kinds == ("Digits", "ByteLevel") and byte_level.get("use_regex", True) and digits_ok:
        return "smollm"
    if kinds == ("Split", "ByteLevel") and not byte_level.get("use_regex", True):
        name = SPLIT_REGEXES.get((steps[0].get("pattern") or {}).get("Regex"))
        if name:
            return name
    raise AdapterError(
        f"GGUF export cannot name this tokenizer's pre-tokenizer ({' + '.join(map(str, kinds)) or 'none'}) "
        "for llama.cpp; supported: GPT-2 byte-level, SmolLM, Llama 3, Qwen 2/3, Qwen 3.5 and SentencePiece; "
        "use --format hf and llama.cpp's converter"
    )


def add_tokenizer(writer, meta: dict[str, Any]) -> None:
    writer.add_tokenizer_model(meta["model"])
    writer.add_tokenizer_pre(meta["pre"])
    writer.add_token_list(meta["tokens"])
    writer.add_token_types(meta["types"])
    if "scores" in meta:
        writer.add_token_scores(meta["scores"])
        writer.add_add_space_prefix(meta["add_space_prefix"])
    else:
        writer.add_token_merges(meta["merges"])
    for add, token_id in (
        (writer.add_bos_token_id, meta["bos"]),
        (writer.add_eos_token_id, meta["eos"]),
        (writer.add_unk_token_id, meta["unk"]),
        (writer.add_pad_token_id, meta["pad"]),
    ):
        if token_id is not None:
            add(token_id)
    writer.add_add_bos_token(meta["add_bos"])
    writer.add_add_eos_token(meta["add_eos"])
    if meta["chat_template"]:
        writer.add_chat_template(meta["chat_template"])
