"""Write a merged model as one GGUF file (llama.cpp, Ollama, LM Studio).

Laid out as llama.cpp's own converter (convert_hf_to_gguf.py) lays out each architecture: tensors under
llama.cpp's names (from the `gguf` package's name map for that architecture), the hyperparameters its
loader reads, 1-D tensors (norms) always float32, the output head left out when it is tied to the
embeddings, and the tokenizer (gguf_vocab.py) plus the chat template as metadata. Per architecture:
- Llama, Mistral (llama.cpp runs Mistral as a Llama, without the sliding window, as its converter does)
  and Granite: query and key projections permuted into llama.cpp's interleaved rotary layout;
  Granite's four multipliers as llama.cpp's scales;
- Qwen2, Qwen3, Phi-3: rotary halves as Hugging Face keeps them (llama.cpp's NeoX rotation);
  Phi-3's fused qkv and gate/up projections stay fused, as llama.cpp reads them;
- Gemma 3 (text): norms stored as 1 + weight (Gemma's RMSNorm scales by 1 + w), the sliding and global
  layers' pattern and rotary bases.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import AdapterError
from .gguf_vocab import add_tokenizer, tokenizer_metadata

GGUF_TYPES = ("f32", "f16", "bf16")


@dataclass(frozen=True)
class Layout:
    arch: str  # gguf.MODEL_ARCH member name
    interleave_rope: bool = False
    norm_shift: float = 0.0


LAYOUTS = {
    "llama": Layout("LLAMA", interleave_rope=True),
    "mistral": Layout("LLAMA", interleave_rope=True),
    "granite": Layout("GRANITE", interleave_rope=True),
    "qwen2": Layout("QWEN2"),
    "qwen3": Layout("QWEN3"),
    "phi3": Layout("PHI3"),
    "gemma3_text": Layout("GEMMA3", norm_shift=1.0),
}


def check_architecture(model_type: str | None) -> Layout:
    """Only the layouts this writer knows; anything else would load but compute garbage."""
    if model_type not in LAYOUTS:
        raise AdapterError(
            f"GGUF export supports {', '.join(LAYOUTS)} models, not '{model_type}'; "
            "use --format hf and llama.cpp's convert_hf_to_gguf.py"
        )
    return LAYOUTS[model_type]


def rope_settings(config) -> dict:
    """The global layers' rotary settings (Gemma 3 keeps one dict per layer type)."""
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    return rope.get("full_attention", rope)


def check_supported(config) -> Layout:
    layout = check_architecture(getattr(config, "model_type", None))
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    for settings in rope.values() if "full_attention" in rope else [rope]:
        kind = settings.get("rope_type", settings.get("type", "default"))
        if kind != "default":
            raise AdapterError(
                f"GGUF export does not handle rope scaling '{kind}'; use --format hf and llama.cpp's convert_hf_to_gguf.py"
            )
    if layout.arch == "GEMMA3" and getattr(config, "query_pre_attn_scalar", None) != head_dim_of(config):
        raise AdapterError(
            "GGUF export of Gemma 3 needs query_pre_attn_scalar == head_dim (llama.cpp scales attention by "
            "1/sqrt(head_dim)); use --format hf"
        )
    return layout


def head_dim_of(config) -> int:
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def rope_theta(config) -> float:
    return float(rope_settings(config).get("rope_theta", getattr(config, "rope_theta", 10000.0)))


def permute_for_rope(weight, heads: int):
    """HF keeps each head's rotary halves apart; llama.cpp's Llama interleaves them (its converter's permute)."""
    return (
        weight.reshape(heads, 2, weight.shape[0] // heads // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)
    )


def add_hyperparameters(writer, config, layout: Layout, name: str, file_type: int) -> None:
    head_dim = head_dim_of(config)
    writer.add_name(name)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads or config.num_attention_heads)
    writer.add_rope_freq_base(rope_theta(config))
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(config.vocab_size)
    writer.add_file_type(file_type)
    if layout.arch == "PHI3":
        rotary = float(
            rope_settings(config).get("partial_rotary_factor", getattr(config, "partial_rotary_factor", 1.0))
        )
        writer.add_rope_dimension_count(int(rotary * config.hidden_size) // config.num_attention_heads)
        original = getattr(config, "original_max_position_embeddings", None) or config.max_position_embeddings
        writer.add_rope_scaling_orig_ctx_len(original)
        writer.add_sliding_window(getattr(config, "sliding_window", None) or 0)  # 0: Phi-4, every layer global
        return
    writer.add_rope_dimension_count(head_dim)
    if head_dim != config.hidden_size // config.num_attention_heads or layout.arch == "GEMMA3":
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    if layout.arch == "GRANITE":
        writer.add_attention_scale(config.attention_multiplier)
        writer.add_embedding_scale(config.embedding_multiplier)
        writer.add_residual_scale(config.residual_multiplier)
        writer.add_logit_scale(config.logits_scaling)
    if layout.arch == "GEMMA3":
        local = (config.rope_parameters or {}).get("sliding_attention", {}).get("rope_theta")
        if local is not None:
            writer.add_rope_freq_base_swa(float(local))
        if getattr(config, "final_logit_softcapping", None):
            writer.add_final_logit_softcapping(config.final_logit_softcapping)
        if getattr(config, "sliding_window", None):
            writer.add_sliding_window(config.sliding_window)
            writer.add_sliding_window_pattern([kind == "sliding_attention" for kind in config.layer_types])


def gguf_tensors(model, layout: Layout, tensor_type: str):
    """(gguf name, array, raw dtype or None) for every weight, converted as llama.cpp expects."""
    import gguf
    import torch

    config = model.config
    names = gguf.get_tensor_name_map(getattr(gguf.MODEL_ARCH, layout.arch), config.num_hidden_layers)
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads or config.num_attention_heads
    tied = bool(getattr(config, "tie_word_embeddings", False))
    for hf_name, tensor in model.state_dict().items():
        if tied and hf_name == "lm_head.weight":
            continue  # llama.cpp reads a missing output.weight as "tied to token_embd"
        gguf_name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise AdapterError(f"no GGUF name for tensor '{hf_name}' in llama.cpp's {layout.arch.lower()} layout")
        array = tensor.detach().to(torch.float32).cpu().numpy()
        if layout.norm_shift and hf_name.endswith("norm.weight"):
            array = array + layout.norm_shift
        if layout.interleave_rope and gguf_name.endswith(("attn_q.weight", "attn_q.bias")):
            array = permute_for_rope(array, heads)
        elif layout.interleave_rope and gguf_name.endswith(("attn_k.weight", "attn_k.bias")):
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
    layout = check_supported(model.config)
    meta = tokenizer_metadata(tokenizer, model.config.vocab_size)  # validate before writing anything
    file_type = {
        "f32": gguf.LlamaFileType.ALL_F32,
        "f16": gguf.LlamaFileType.MOSTLY_F16,
        "bf16": gguf.LlamaFileType.MOSTLY_BF16,
    }[tensor_type]
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp")
    writer = gguf.GGUFWriter(str(temporary), gguf.MODEL_ARCH_NAMES[getattr(gguf.MODEL_ARCH, layout.arch)])
    written = 0
    try:
        add_hyperparameters(writer, model.config, layout, name, int(file_type))
        add_tokenizer(writer, meta)
        for gguf_name, array, raw_dtype in gguf_tensors(model, layout, tensor_type):
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
