"""Sharded data parallelism: each of N processes holds 1/N of the weights, gradients and optimizer
state instead of a full copy, so a model N times larger fits (PyTorch FSDP2, `fully_shard`).

`train.sharding` picks the mode:
    none    every process holds everything; gradients are summed after backward (distributed.py)
    fsdp    = zero3: weights, gradients and optimizer state sharded; weights gathered per block for
            its forward and again for its backward
    zero3   DeepSpeed's name for the same thing
    zero2   weights stay gathered from forward to backward (one all-gather per block per step
            instead of two: faster, more memory); gradients and optimizer state sharded

DeepSpeed's ZeRO-2/3 names map to their FSDP2 equivalents rather than to DeepSpeed itself: the same
memory semantics without a second distributed runtime, and the loop stays one plain PyTorch loop.
Checkpoints and the final weights are always written whole, so a sharded run's adapter is the
same file a single process would write, and it loads anywhere.
"""

from __future__ import annotations

from typing import Any

import torch

from ..models.adapt import as_shard_of, transformer_blocks, whole


class Objective(torch.nn.Module):
    """The FSDP root. The losses call the transformer body and the output head separately (the head
    runs on trained positions only), so the model's own forward never runs and cannot be the
    root; this module's forward wraps the whole loss instead. While it runs, the root's weights
    (embeddings, final norm and the head tied to the embeddings) are gathered; each block gathers
    its own."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, loss_fn, **batch):
        return loss_fn(self.model, **batch)


def shard_model(model, mode: str, world_size: int) -> Objective | None:
    """Shard each transformer block, then the rest; return the root to call losses through, or
    None when nothing is sharded."""
    if mode == "none" or world_size == 1:
        return None
    from torch.distributed.fsdp import fully_shard

    reshard = mode != "zero2"
    units = list(transformer_blocks(model))
    for block in units:
        fully_shard(block, reshard_after_forward=reshard)
    root = Objective(model)
    fully_shard(root, reshard_after_forward=reshard)
    # The loop already divides each loss by the trained tokens of the whole global step, so the
    # ranks' gradients must be summed, not averaged (FSDP's default divides by N).
    for unit in units + [root]:
        unit.set_gradient_divide_factor(1.0)
        unit.set_force_sum_reduction_for_comms(True)  # Gloo (CPU) has no pre-scaled sum
    return root


def full_model_state(model) -> dict[str, torch.Tensor]:
    """Tied weights (embeddings and output head) stay one tensor under both names, so that
    save_pretrained recognizes the tie and writes the file an unsharded run would."""
    gathered: dict[int, torch.Tensor] = {}
    state = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        if id(tensor) not in gathered:
            gathered[id(tensor)] = whole(tensor.detach()).contiguous()
        state[name] = gathered[id(tensor)]
    return state


def full_optimizer_state(optimizer) -> dict[str, Any]:
    """optimizer.state_dict() with every shard gathered whole (collective), so sharded and unsharded
    runs write the same file; for an unsharded optimizer it is its state_dict()."""
    state = optimizer.state_dict()
    state["state"] = {
        index: {key: whole(value) if torch.is_tensor(value) else value for key, value in values.items()}
        for index, values in state["state"].items()
    }
    return state


def load_full_optimizer_state(optimizer, state: dict[str, Any]) -> None:
    """Load a whole optimizer state, then cut each moment back to this process's shard (nothing to
    cut for an unsharded optimizer)."""
    optimizer.load_state_dict(state)
    for group in optimizer.param_groups:
        for param in group["params"]:
            moments = optimizer.state.get(param, {})
            for key, value in moments.items():
                if torch.is_tensor(value) and value.dim() > 0:  # not the scalar step count
                    moments[key] = as_shard_of(value, param)
