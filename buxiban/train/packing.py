"""Padding-free batches: a micro-batch's conversations laid end to end in one row, each attending
only to itself.

Random batches mix short FAQ answers with long tickets, so right-padding to the longest row spends a
large share of every matmul on pad tokens. Packed, the row is exactly as long as the real tokens.
Position ids restart at 0 for each conversation (so rotary embeddings see what they would see
unpacked) and attention runs once per conversation with a causal mask: the same math as the padded
batch, without the padding and without the wasted square of a block-diagonal mask.

Sliding-window layers (five of every six in Gemma 3, all of Mistral's) run per conversation too: a
conversation no longer than the window is plain causal attention there, a longer one gets the band
mask of its own length. Sent down transformers' path instead, those layers attended over the whole
packed row with a block-diagonal mask: on Gemma 3 270M (2 cores, rows of ~750 tokens) attention,
forward and backward, was about a seventh of each training step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from ..data.tokenize import IGNORE_INDEX, Encoded

VARLEN_ATTENTION = "buxiban_varlen"


def packs_rows(config) -> bool:
    """Whether a run asks for padding-free rows: SFT only, since DPO scores chosen and rejected rows
    separately. The model must also accept the packed attention (use_varlen_attention)."""
    return bool(config.train.padding_free) and config.method == "sft"


def collate_packed(examples: Sequence[Encoded]) -> dict[str, Any]:
    """One row holding every example, `position_ids` restarting per example and `packed_bounds`
    (start offsets and the total length, as Python ints so no layer has to ask the device)."""
    input_ids, labels, positions, bounds = [], [], [], [0]
    for example in examples:
        n = len(example.input_ids)
        input_ids += example.input_ids
        # An example's first token is never a target unpacked (nothing comes before it); packed, the
        # previous example's last position would otherwise be trained to predict it.
        labels += [IGNORE_INDEX] + list(example.labels[1:])
        positions += range(n)
        bounds.append(bounds[-1] + n)
    return {
        "input_ids": torch.tensor([input_ids]),
        "labels": torch.tensor([labels]),
        "position_ids": torch.tensor([positions]),
        "packed_bounds": tuple(bounds),
    }


def real_token_count(batch: dict[str, Any]) -> int:
    if "attention_mask" in batch:
        return int(batch["attention_mask"].sum())
    return int(batch["input_ids"].numel())


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def varlen_attention(
    module,
    query,
    key,
    value,
    attention_mask,
    dropout: float = 0.0,
    scaling: float | None = None,
    packed_bounds: tuple[int, ...] | None = None,
    **kwargs,
):
    """Attention per packed conversation; anything else (generation, an unpacked batch, soft-capped
    logits) goes to transformers' SDPA path with the mask it built."""
    if packed_bounds is None or kwargs.get("softcap") or query.size(0) != 1:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    window = kwargs.get("sliding_window") or getattr(module, "sliding_window", None)
    grouped = key.size(1) != query.size(1)  # grouped-query attention: fewer key/value heads
    low = torch.get_autocast_dtype("cpu") if query.device.type == "cpu" and torch.is_autocast_enabled("cpu") else None
    if low is not None:
        # fp32 on the CPU, with autocast off: autocast casts scaled_dot_product_attention's inputs to
        # bf16 even when they arrive in fp32, and torch's CPU flash attention runs its bf16 backward
        # far slower than its fp32 one (one layer over 8 conversations of ~100 tokens, forward and
        # backward: 50-75 ms in bf16, 20 in fp32 with SmolLM2's heads; 43-60 and 31 with Gemma 3's)
        with torch.autocast("cpu", enabled=False):
            return _per_conversation(
                query.float(), key.float(), value.float(), packed_bounds, window, grouped, dropout, scaling
            ).to(low), None
    return _per_conversation(query, key, value, packed_bounds, window, grouped, dropout, scaling), None


def _per_conversation(query, key, value, packed_bounds, window, grouped, dropout, scaling):
    pieces = []
    for start, end in zip(packed_bounds[:-1], packed_bounds[1:]):
        band = sliding_band(end - start, window, query.device)
        pieces.append(
            F.scaled_dot_product_attention(
                query[:, :, start:end],
                key[:, :, start:end],
                value[:, :, start:end],
                attn_mask=band,
                dropout_p=dropout,
                is_causal=band is None,
                scale=scaling,
                enable_gqa=grouped,
            )
        )
    return torch.cat(pieces, dim=2).transpose(1, 2).contiguous()


def sliding_band(length: int, window: int | None, device: torch.device) -> torch.Tensor | None:
    """The mask of a sliding window over `length` tokens (each sees itself and the window - 1 before
    it, transformers' rule), or None where causal attention alone is the same: no window, or a
    conversation that fits in it."""
    if not window or length <= window:
        return None
    positions = torch.arange(length, device=device)
    distance = positions[:, None] - positions[None, :]
    return (distance >= 0) & (distance < window)


def use_varlen_attention(model) -> bool:
    """Switch a model to the packed attention above; False when its architecture cannot switch."""
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import sdpa_mask

    AttentionInterface.register(VARLEN_ATTENTION, varlen_attention)
    AttentionMaskInterface.register(VARLEN_ATTENTION, sdpa_mask)  # unpacked calls still need SDPA's mask
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not getattr(base, "_can_set_attn_implementation", lambda: False)():
        return False
    base.set_attn_implementation(VARLEN_ATTENTION)
    return base.config._attn_implementation == VARLEN_ATTENTION


def trained_positions(batch: dict) -> int:
    """Positions with a target: every label but the first of each row, and not the masked ones."""
    return int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
