"""LoRA's dropout with a 1-byte mask saved for backward instead of a 4-byte noise tensor.

On a CPU, torch's dropout draws an fp32 noise tensor the size of its input, scales it by 1/(1-p)
and multiplies; autograd keeps that noise for the backward pass. PEFT puts a dropout in front of
every adapted projection (seven per block), so those fp32 copies of each block's inputs were about a
third of everything a LoRA step keeps. This draws the same noise from the same generator (the same
masks, bit for bit, so a seed gives the run it gave before), keeps only which elements survived,
and rebuilds the scaled noise in backward, where it has exactly the values it had in forward.
"""

from __future__ import annotations

import torch


class _MaskedDropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, inputs: torch.Tensor, p: float) -> torch.Tensor:
        noise = torch.empty_like(inputs).bernoulli_(1 - p)  # torch's own CPU dropout, step by step
        ctx.save_for_backward(noise.bool())
        ctx.p = p
        return inputs * noise.div_(1 - p)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (kept,) = ctx.saved_tensors
        return grad * kept.to(grad.dtype).div_(1 - ctx.p), None


class MaskedDropout(torch.nn.Dropout):
    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0 or not torch.is_grad_enabled() or inputs.device.type != "cpu":
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
