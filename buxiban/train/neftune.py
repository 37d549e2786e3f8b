"""NEFTune (Jain et al., 2023): uniform noise on the input embeddings while training.

Each embedding element gets noise drawn from U(-m, m) with m = alpha / sqrt(L · d), L the length of
its conversation and d the hidden width, so a short conversation is not drowned and a long one is not
left untouched. Peers (TRL, LLaMA-Factory, Axolotl) take L as the padded row length; here L is each
conversation's own real length, so a padding-free row of eight conversations gets the noise each
would get alone, and padding does not shrink it. Validation, evaluation and generation run in eval
mode and see no noise.
"""

from __future__ import annotations

import torch

from .losses import backbone_and_head


def token_lengths(input_ids: torch.Tensor, attention_mask=None, packed_bounds=None) -> torch.Tensor:
    """Per token, the real length of the conversation it belongs to ([rows, positions], float)."""
    rows, width = input_ids.shape
    if packed_bounds is not None:
        sizes = torch.tensor([end - start for start, end in zip(packed_bounds[:-1], packed_bounds[1:])])
        return sizes.repeat_interleave(sizes).to(input_ids.device, torch.float32)[None].expand(rows, width)
    if attention_mask is not None:
        real = attention_mask.sum(dim=1, keepdim=True).clamp(min=1)
        return real.to(torch.float32).expand(rows, width)
    return torch.full((rows, width), float(width), device=input_ids.device)


def use_neftune(model, alpha: float) -> list:
    """Add NEFTune noise of strength `alpha` to `model`'s input embeddings in training mode; returns
    the hook handles (remove them to switch it off)."""
    body, _, base = backbone_and_head(model)
    embeddings = base.get_input_embeddings()
    pending: dict[str, torch.Tensor] = {}

    def note_lengths(module, args, kwargs):
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        if input_ids is not None:
            pending["lengths"] = token_lengths(input_ids, kwargs.get("attention_mask"), kwargs.get("packed_bounds"))

    def add_noise(module, args, output):
        lengths = pending.pop("lengths", None)
        if not module.training or lengths is None or lengths.shape != output.shape[:2]:
            return output
        bound = alpha / torch.sqrt(lengths * output.size(-1))
        noise = torch.rand_like(output, dtype=torch.float32).mul_(2).sub_(1)
        return output + (noise * bound[..., None]).to(output.dtype)

    return [
        body.register_forward_pre_hook(note_lengths, with_kwargs=True),
        embeddings.register_forward_hook(add_noise),
    ]
