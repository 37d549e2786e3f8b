"""Peak training memory for each method, from the model's shape and parameter counts.

peak ≈ framework + weights + gradients + AdamW state + low-precision weight copies + activations
       + output-head logits

- framework: the resident size of this process with torch and transformers loaded (measured);
- weights: every parameter in the dtype the loop loads (fp32), NF4 (~0.53 byte with double quant)
  for QLoRA's quantized linear layers, bf16 for LoRA's frozen block weights under bf16 autocast;
- gradients: fp32, one per trained parameter; AdamW: two fp32 states per trained parameter;
- bf16 autocast casts each fp32 linear weight per call and keeps that copy for the backward pass, so
  the fp32 linear layers the backward passes through (and the head) exist a second time in 2 bytes;
- activations: what autograd keeps per token per layer, counted below for a Llama-style block, times
  the most tokens one micro-batch holds (its real tokens with padding-free rows, batch size × its
  longest row with padded ones);
- logits: the loss sends at most 1024 trained positions through the head at once (train/losses.py);
- backward and allocator: the part of the peak beyond the saved tensors, a measured factor on them
  (ALLOCATOR_FACTOR).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..models.shape import ModelShape

MIB = 1024 * 1024
HEAD_CHUNK = 1024
NF4_BYTES = 0.53  # 4 bits + double-quantized block scales
# Resident memory grows past the saved tensors: the backward pass allocates gradients of the
# activations while they are still held, and the allocator keeps freed blocks. Measured on the
# example data with SmolLM2-135M (peak RSS minus framework, weights and optimizer state, divided by
# the saved tensors): 1.68 for LoRA after 2 steps, 1.9 after 20 (bench/results.json), 1.5 for full.
ALLOCATOR_FACTOR = 1.7
METHODS = ("lora", "qlora", "full", "freeze")


@dataclass(frozen=True)
class Counts:
    """Parameter counts of one method, from the real model built on the meta device."""

    trainable: int
    total: int
    block_linear: int  # weights of the linear layers inside the blocks (what QLoRA quantizes)
    trained_blocks: int  # blocks whose activations the backward needs


def activation_bytes(shape: ModelShape, adapter: str, autocast: bool, lora_rank: int = 16) -> int:
    """Bytes autograd keeps per token per block, for a Llama-style block.

    Counted with torch's saved-tensor hooks on SmolLM2-135M (batch 8 × 111 tokens, bf16 autocast),
    tensor by tensor, and written in terms of the widths so it carries to other sizes:
    - every method: 4 fp32 tensors as wide as the hidden size (the residual stream into and out of
      the two RMSNorms), 5 low-precision hidden-wide ones (casts of the norms' outputs, o_proj's
      input, the MLP output), 4 attention-wide ones (q, k and v after rotation and repetition for
      grouped-query attention, the attention output) and 4 intermediate-wide ones (gate, up, SiLU's
      output, down's input);
    - LoRA adds 4 hidden-wide and 1 intermediate-wide dropout masks (1 byte an element with
      train/dropout.py; torch's own CPU dropout kept 4-byte noise), 1 low-precision hidden-wide cast
      and 7 rank-wide outputs.
    Without autocast the low-precision tensors are fp32."""
    low = 2 if autocast else 4
    h, i, q = shape.hidden, shape.intermediate, shape.q_width
    per_token = 4 * h * 4 + (5 * h + 4 * q + 4 * i) * low
    if adapter in ("lora", "qlora"):
        per_token += (4 * h + i) * 1 + h * low + 7 * lora_rank * low
    return per_token


def checkpointed_activation_bytes(shape: ModelShape) -> int:
    """With gradient checkpointing each block keeps only its fp32 input."""
    return 4 * shape.hidden


def selective_activation_bytes(shape: ModelShape, adapter: str, autocast: bool, lora_rank: int = 16) -> int:
    """Selective checkpointing (train/recompute.py) keeps each block's fp32 input, the outputs of its
    seven projections and of attention (with its per-head log-sum-exp), and LoRA's rank-wide first
    matmul; everything elementwise is recomputed."""
    low = 2 if autocast else 4
    h, i, q = shape.hidden, shape.intermediate, shape.q_width
    per_token = 4 * h + (q + 2 * shape.kv_width + h + 2 * i + h) * low + q * low + 4 * shape.heads
    if adapter in ("lora", "qlora"):
        per_token += 7 * lora_rank * low
    return per_token


def estimate_peak(
    shape: ModelShape,
    counts: Counts,
    adapter: str,
    batch_tokens: int,
    trained_tokens: int,
    autocast: bool,
    framework_bytes: int,
    lora_rank: int = 16,
    gradient_checkpointing: bool | str = False,
) -> dict[str, Any]:
    """The parts of the peak, in MiB, and their sum. `batch_tokens`: the most tokens one micro-batch
    computes on; `gradient_checkpointing`: False, True (whole blocks) or "selective"."""
    tokens = batch_tokens
    if adapter == "qlora":
        weights = counts.block_linear * NF4_BYTES + (counts.total - counts.block_linear) * 4
    elif adapter == "lora" and autocast:  # frozen block weights stored in bf16 (models/adapt.py)
        weights = counts.block_linear * 2 + (counts.total - counts.block_linear) * 4
    else:
        weights = counts.total * 4
    casts = 0.0
    if autocast and adapter != "qlora":  # the head's weight in bf16, and the trained blocks' linear weights
        casts = shape.vocab * shape.hidden * 2
        if adapter != "lora":
            kept_blocks = 1 if gradient_checkpointing else counts.trained_blocks
            casts += counts.block_linear * 2 * kept_blocks / shape.layers
    per_layer = activation_bytes(shape, adapter, autocast, lora_rank)
    if gradient_checkpointing == "selective":
        activations = tokens * selective_activation_bytes(shape, adapter, autocast, lora_rank) * counts.trained_blocks
    elif gradient_checkpointing:
        activations = tokens * (checkpointed_activation_bytes(shape) * counts.trained_blocks + per_layer)
    else:
        activations = tokens * per_layer * counts.trained_blocks
    logits = min(trained_tokens, HEAD_CHUNK) * shape.vocab * ((2 if autocast else 4) + 4)  # head output + fp32 copy
    transient = (ALLOCATOR_FACTOR - 1) * (casts + activations + logits)
    parts = {
        "framework": framework_bytes,
        "weights": weights,
        "gradients": counts.trainable * 4,
        "optimizer": counts.trainable * 8,
        "weight_casts": casts,
        "activations": activations,
        "logits": logits,
        "backward_and_allocator": transient,
    }
    breakdown = {name: round(value / MIB, 1) for name, value in parts.items()}
    return {
        "method": adapter,
        "peak_mib": round(sum(parts.values()) / MIB, 1),
        "parts_mib": breakdown,
        "trainable_parameters": counts.trainable,
        "total_parameters": counts.total,
        "batch_tokens": tokens,
        "activation_bytes_per_token_per_layer": per_layer,
    }


def parameter_counts(
    model_dir: str, adapter: str, run_config, trust_remote_code: bool = False
) -> tuple[ModelShape, Counts]:
    """Build the model on the meta device (no memory, no weights read) and make it trainable the way
    training will, so the counts are the real ones for any architecture PEFT supports."""
    import copy

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from ..models.adapt import count_parameters, make_trainable, transformer_blocks

    hf_config = AutoConfig.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
    shape = ModelShape.from_config(hf_config)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(hf_config, trust_remote_code=trust_remote_code)
    blocks = transformer_blocks(model)
    block_linear = sum(m.weight.numel() for m in blocks.modules() if isinstance(m, torch.nn.Linear))
    config = copy.deepcopy(run_config)
    config.adapter = "lora" if adapter == "qlora" else adapter  # same adapter shapes; NF4 needs a GPU to build
    trainable, total = count_parameters(make_trainable(model, config))
    trained_blocks = min(config.freeze.layers, shape.layers) if adapter == "freeze" else shape.layers
    return shape, Counts(trainable, total, block_linear, trained_blocks)
