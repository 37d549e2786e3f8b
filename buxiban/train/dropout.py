"""LoRA's dropout, drawn fast and kept as a 1-byte mask for backward.

PEFT puts a dropout in front of every adapted projection (seven per block). On a CPU torch's
dropout draws an fp32 Bernoulli sample per element, one generator call each, then scales and
multiplies; autograd keeps that fp32 noise for backward. Profiled on Gemma 3 270M (LoRA, 2 cores),
those draws were a quarter of each training step, four times the cost of the query projection's
matmul. Here one 64-bit draw gives four 16-bit uniform numbers, an element is kept when its number
falls below (1 - p) · 65536 (the rate exact to 1/65536), the kept ones are scaled by the inverse of
that exact keep rate (so the expectation is unchanged), and only the bool mask is saved: about 3×
faster than torch's dropout here and a quarter of the saved bytes. The draws come from torch's
default generator, so a seed (and a checkpoint's saved RNG state) gives the same masks again.
"""

from __future__ import annotations

import torch

UNIFORM_LEVELS = 1 << 16
HALF_RANGE = 1 << 15  # int16 numbers run from -32768: the threshold is shifted by it
FULL_INT64 = (-(1 << 63), (1 << 63) - 1)  # random_()'s default range would leave the top bit 0


def keep_mask(shape: torch.Size, p: float) -> tuple[torch.Tensor, float]:
    """A bool mask keeping each element with probability round((1 - p) · 65536) / 65536, and the
    scale 1 / that probability."""
    levels = max(1, round((1 - p) * UNIFORM_LEVELS))
    count = shape.numel()
    words = torch.empty((count + 3) // 4, dtype=torch.int64).random_(*FULL_INT64)
    mask = words.view(torch.int16)[:count].view(shape) < levels - HALF_RANGE
    return mask, UNIFORM_LEVELS / levels


class _MaskedDropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, inputs: torch.Tensor, p: float) -> torch.Tensor:
        kept, scale = keep_mask(inputs.shape, p)
        ctx.save_for_backward(kept)
        ctx.scale = scale
        return torch.where(kept, inputs * scale, 0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (kept,) = ctx.saved_tensors
        return torch.where(kept, grad * ctx.scale, 0), None


class MaskedDropout(torch.nn.Dropout):
    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if not self.training or not 0 < self.p < 1 or not torch.is_grad_enabled() or inputs.device.type != "cpu":
            return super().forward(inputs)  # CUDA's fused dropout already keeps a 1-byte mask
        return _MaskedDropout.apply(inputs, self.p)


def use_masked_dropout(model) -> int:
    """Swap every PEFT LoRA dropout for MaskedDropout; returns how many were swapped."""
    swapped = 0
    for module in model.modules():
        dropouts = getattr(module, "lora_dropout", None)
        if not isinstance(dropouts, torch.nn.ModuleDict):
            continue
        for name, dropout in dropouts.items():
            if type(dropout) is torch.nn.Dropout:
                dropouts[name] = MaskedDropout(dropout.p)
                swapped += 1
    return swapped


def disable_dropout(model) -> int:
    """Set every dropout's rate to 0; returns how many had a rate above 0."""
    disabled = 0
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout) and module.p > 0:
            module.p = 0.0
            disabled += 1
    return disabled
