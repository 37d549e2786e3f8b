"""Model FLOPs utilization: the matmul FLOPs a run needed per real token, times its tokens per second,
over the peak this device reaches on one large matmul in the run's precision.

FLOPs per token: 6·N for a trained weight (forward, input gradient, weight gradient), 4·N for a frozen
weight the backward passes through (forward and input gradient), 2·N for a frozen weight below the
lowest trained block (forward only). N is in × out of each linear layer (LoRA's A and B included), and
the output head counts only on the share of positions it runs on (the trained ones, losses.py).
Attention's own matmuls are left out: at the ~100-token conversations of chat data they are about 2 %.
"""

from __future__ import annotations

import functools
import time

import torch

from ..models.adapt import transformer_blocks


def _linear_size(module: torch.nn.Linear) -> int:
    return module.in_features * module.out_features  # not weight.numel(): 4-bit and sharded weights pack it


def flops_per_token(model, head_share: float = 1.0) -> float:
    blocks = list(transformer_blocks(model))
    trained_blocks = [i for i, block in enumerate(blocks) if any(p.requires_grad for p in block.parameters())]
    lowest_trained = trained_blocks[0] if trained_blocks else len(blocks)
    total = 0.0
    for index, block in enumerate(blocks):
        for module in block.modules():
            if isinstance(module, torch.nn.Linear):
                if module.weight.requires_grad:
                    total += 6 * _linear_size(module)
                else:
                    total += (4 if index >= lowest_trained else 2) * _linear_size(module)
    head = model.get_output_embeddings()
    if isinstance(head, torch.nn.Linear):
        per_weight = 6 if head.weight.requires_grad else (4 if trained_blocks else 2)
        total += per_weight * _linear_size(head) * head_share
    return total


def _peak_matmul_size(device: torch.device) -> int:
    return 8192 if device.type == "cuda" else 2048  # big enough to reach the peak, short enough to time in a second


@functools.cache
def measured_peak_flops(device: torch.device, dtype: torch.dtype | None) -> float:
    """FLOP/s of the fastest of five square matmuls, after two warm-up ones; under a second, once
    per process."""
    size = _peak_matmul_size(device)
    a = torch.randn(size, size, device=device, dtype=dtype or torch.float32)
    b = torch.randn(size, size, device=device, dtype=dtype or torch.float32)
    best = float("inf")
    for attempt in range(7):
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        if attempt >= 2:
            best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best


def utilization(
    model,
    tokens_per_second: float,
    head_share: float,
    device: torch.device,
    dtype: torch.dtype | None,
    processes: int = 1,
) -> dict:
    per_token = flops_per_token(model, head_share)
    achieved = tokens_per_second * per_token
    peak = measured_peak_flops(device, dtype) * processes
    precision = {torch.bfloat16: "bf16", torch.float16: "fp16", None: "fp32"}.get(dtype, str(dtype))
    size = _peak_matmul_size(device)
    return {
        "flops_per_token": round(per_token),
        "achieved_tflops": round(achieved / 1e12, 4),
        "peak_tflops": round(peak / 1e12, 4),
        "mfu": round(achieved / peak, 4),
        "peak_from": f"{precision} {size}³ matmul" + (f" × {processes} processes" if processes > 1 else ""),
    }
