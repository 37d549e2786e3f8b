"""Write a merged Llama-architecture model as one GGUF file (llama.cpp, Ollama, LM Studio).

Laid out as llama.cpp's own converter lays out a Llama: tensors under llama.cpp's names (from the
`gguf` package's name map), the query and key projections permuted into llama.cpp's rotary layout,
1-D tensors (norms) always float32, the output head left out when it is tied to the embeddings, and
the tokenizer (byte-level BPE vocabulary, merges, special ids) plus the chat template as metadata.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..errors import AdapterError

GGUF_TYPES = ("f32", "f16", "bf16")

# llama.cpp picks its pre-tokenizer split by this name; these are the two layouts buxiban can tell
# apart from a tokenizer.json with certainty (GPT-2's regex alone, or SmolLM's digits split first).
PRE_TOKENIZERS = {
    ("ByteLevel",): "gpt-2",
    ("Digits", "ByteLevel"): "smollm",
}

# llama.cpp token types
NORMAL, CONTROL, USER_DEFINED, UNUSED = 1, 3, 4, 5


def check_architecture(model_type: str | None) -> None:
    """Only the layout this writer knows; anything else would load but compute garbage."""
    if model_type != "llama":
        raise AdapterError(
            f"GGUF export supports Llama-architecture models (SmolLM2, Llama, TinyLlama), not "
            f"'{model_type}'; use --format hf and llama.cpp's convert_hf_to_gguf.py"
        )


def check_llama(config) -> None:
    check_architecture(getattr(config, "model_type", None))
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    if rope.get("rope_type", rope.get("type", "default")) != "default":
        raise AdapterError(
            f"GGUF export does not handle rope scaling '{rope.get('rope_type', rope.get('type'))}'; "
            "use --format hf and llama.cpp's convert_hf_to_gguf.py"
        )


def rope_theta(config) -> float:
    rope = getattr(config, "rope_parameters", None) or {}
    return float(rope.get("rope_theta", getattr(config, "rope_theta", 10000.0)))


def permute_for_rope(weight, heads: int):
    """HF keeps each head's rotary halves apart; llama.cpp interleaves them (its converter's permute)."""
    return (
        weight.reshape(heads, 2, weight.shape[0] // heads // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)
    )


def tokenizer_metadata(tokenizer, vocab_size: int) -> dict[str, Any]:
    """Vocabulary, token types, merges and special ids of a byte-level BPE tokenizer, padded to
    the model's embedding rows as llama.cpp requires."""
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    model = spec.get("model", {})
    if model.get("type") != "BPE" or model.get("byte_fallback"):
        raise AdapterError(
            "GGUF export supports byte-level BPE tokenizers (GPT-2 style, as SmolLM2 uses); "
            f"this one is {model.get('type')}{' with byte fallback' if model.get('byte_fallback') else ''}"
        )
    pre = pre_tokenizer_name(spec.get("pre_tokenizer"))
    tokens: dict[int, str] = {index: token for token, index in model["vocab"].items()}
    types = {index: NORMAL for index in tokens}
    for added in spec.get("added_tokens", []):
        tokens[added["id"]] = added["content"]
        types[added["id"]] = CONTROL if added.get("special") else USER_DEFINED
    if max(tokens) >= vocab_size:
        raise AdapterError(f"the tokenizer has {max(tokens) + 1} tokens but the model only {vocab_size} embedding rows")
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    empty = tokenizer("", add_special_tokens=True)["input_ids"]
    template = tokenizer.chat_template
    if isinstance(template, dict):
        template = template.get("default") or next(iter(template.values()), None)
    return {
        "pre": pre,
        "tokens": [tokens.get(i, f"[PAD{i}]") for i in range(vocab_size)],
        "types": [types.get(i, UNUSED) for i in range(vocab_size)],
        "merges": merges,
        "bos": tokenizer.bos_token_id,
        "eos": tokenizer.eos_token_id,
        "unk": tokenizer.unk_token_id,
        "pad": tokenizer.pad_token_id,
        "add_bos": tokenizer.bos_token_id is not None and tokenizer.bos_token_id in empty,
        "add_eos": tokenizer.eos_token_id is not None and tokenizer.eos_token_id in empty,
        "chat_template": template,
    }


def pre_tokenizer_name(pre: dict | None) -> str:
    steps = (pre or {}).get("pretokenizers", [pre] if pre else [])
    kinds = tuple(step.get("type") for step in steps)
    byte_level = steps[-1] if steps else {}
    digits_ok = all(step.get("individual_digits", True) for step in steps if step.get("type") == "Digits")
    if kinds in PRE_TOKENIZERS and byte_level.get("use_regex", True) and digits_ok:
        return PRE_TOKENIZERS[kinds]
    raise AdapterError(
        f"GGUF export cannot name this tokenizer's pre-tokenizer ({' + '.join(map(str, kinds)) or 'none'}) "
        "for llama.cpp; supported: GPT-2 byte-level, SmolLM; use --format hf and llama.cpp's converter"
    )


def add_tokenizer(writer, meta: dict[str, Any]) -> None:
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(meta["pre"])
    writer.add_token_list(meta["tokens"])
    writer.add_token_types(meta["types"])
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


def add_hyperparameters(writer, config, name: str, file_type: int) -> None:
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    writer.add_name(name)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads or config.num_attention_heads)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(rope_theta(config))
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(config.vocab_size)
    writer.add_file_type(file_type)
    if head_dim != config.hidden_size // config.num_attention_heads:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)


def gguf_tensors(model, tensor_type: str):
    """(gguf name, array, raw dtype or None) for every weight, converted as llama.cpp expects."""
    import gguf
    import torch

    config = model.config
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config.num_hidden_layers)
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads or config.num_attention_heads
    tied = bool(getattr(config, "tie_word_embeddings", False))
    for hf_name, tensor in model.state_dict().items():
        if tied and hf_name == "lm_head.weight":
            continue  # llama.cpp reads a missing output.weight as "tied to token_embd"
        gguf_name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise AdapterError(f"no GGUF name for tensor '{hf_name}'; this model is not a plain Llama")
        array = tensor.detach().to(torch.float32).cpu().numpy()
        if gguf_name.endswith(("attn_q.weight", "attn_q.bias")):
            array = permute_for_rope(array, heads)
        elif gguf_name.endswith(("attn_k.weight", "attn_k.bias")):
            array = permute_for_rope(array, kv_heads)
        if array.ndim == 1 or tensor_type == "f32":
            yield gguf_name, array, None
        elif tensor_type == "f16":
            yield gguf_name, array.astype("float16"), None
        else:
            yield gguf_name, gguf.quants.quantize(array, gguf.GGMLQuantizationType.BF16), gguf.GGMLQuantizationType.BF16


def write_gguf(model, tokenizer, path: str | Path, tensor_type: str = "f16", name: str = "model") -> dict[str, Any]:
    """Write the file atomically (a temporary name, then a rename) and read it back to check it."""
    import gguf

    if tensor_type not in GGUF_TYPES:
        raise AdapterError(f"--gguf-type '{tensor_type}' is not one of {', '.join(GGUF_TYPES)}")
    check_llama(model.config)
    meta = tokenizer_metadata(tokenizer, model.config.vocab_size)  # validate before writing anything
    file_type = {
        "f32": gguf.LlamaFileType.ALL_F32,
        "f16": gguf.LlamaFileType.MOSTLY_F16,
        "bf16": gguf.LlamaFileType.MOSTLY_BF16,
    }[tensor_type]
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp")
    writer = gguf.GGUFWriter(str(temporary), "llama")
    written = 0
    try:
        add_hyperparameters(writer, model.config, name, int(file_type))
        add_tokenizer(writer, meta)
        for gguf_name, array, raw_dtype in gguf_tensors(model, tensor_type):
            writer.add_tensor(gguf_name, array, raw_dtype=raw_dtype)
            written += 1
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    except BaseException:
        writer.close()
        temporary.unlink(missing_ok=True)
        raise
    writer.close()
    os.replace(temporary, path)
    return check_gguf(path, written)


def check_gguf(path: Path, expected: int) -> dict[str, Any]:
    """Read the file back with the gguf reader: it parses, and every tensor written is there."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    if len(reader.tensors) != expected:
        raise AdapterError(f"{path} holds {len(reader.tensors)} tensors, expected {expected}; the file is incomplete")
    architecture = reader.fields["general.architecture"].contents()
    return {"tensors": len(reader.tensors), "architecture": architecture, "bytes": path.stat().st_size}
