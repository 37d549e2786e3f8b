"""Selective activation checkpointing: keep what is expensive to recompute, recompute the rest.

Full gradient checkpointing keeps only each block's input and runs the whole block forward again in
backward: the least memory, but every matmul twice. Most of what a block keeps for backward is not
matmul output, though: norm statistics and their fp32 inputs, bf16 casts of activations and weights,
rotary embeddings, SiLU and gate products, LoRA's dropout copies of each projection's input. Those
are cheap, memory-bound elementwise work. Here the big matmuls and attention keep their outputs and
everything else is recomputed in backward, the same values bit for bit (dropout replays its random
state), for a fraction of full checkpointing's extra time.

LoRA's second matmul (rank → width) has a full-width output but a tiny inner dimension: it is
cheaper to recompute than to store.
"""

from __future__ import annotations

import torch
from torch.utils.checkpoint import CheckpointPolicy, create_selective_checkpoint_contexts

CHEAP_INNER_DIM = 128  # a matmul contracting over at most this many values is recomputed (LoRA's B)


def _saved_ops() -> set:
    aten = torch.ops.aten
    names = (
        "_scaled_dot_product_flash_attention_for_cpu",
        "_scaled_dot_product_flash_attention",
        "_scaled_dot_product_efficient_attention",
        "_scaled_dot_product_cudnn_attention",
    )
    return {getattr(aten, name).default for name in names if hasattr(aten, name)}


ATTENTION_OPS = _saved_ops()
MATMUL_OPS = {torch.ops.aten.mm.default, torch.ops.aten.addmm.default, torch.ops.aten.bmm.default}


def inner_dim(op, args) -> int:
    first = args[1] if op is torch.ops.aten.addmm.default else args[0]
    return first.shape[-1]


def policy(ctx, op, *args, **kwargs) -> CheckpointPolicy:
    if op in ATTENTION_OPS:
        return CheckpointPolicy.MUST_SAVE
    if op in MATMUL_OPS and inner_dim(op, args) > CHEAP_INNER_DIM:
        return CheckpointPolicy.MUST_SAVE
    return CheckpointPolicy.PREFER_RECOMPUTE


def selective_context():
    return create_selective_checkpoint_contexts(policy)


def checkpointing_kwargs(mode: str) -> dict:
    """The arguments transformers passes on to torch.utils.checkpoint for `train.gradient_checkpointing`.
    Non-reentrant: works with frozen inputs (LoRA) without extra hooks."""
    kwargs = {"use_reentrant": False}
    if mode == "selective":
        kwargs["context_fn"] = selective_context
    return kwargs
