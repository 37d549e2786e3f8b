"""The widths of a transformer that memory estimates need, read once from its config: training's
peak (plan/memory.py) and how many rows generation can hold (models/generate.py)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelShape:
    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int

    @classmethod
    def from_config(cls, config) -> ModelShape:
        hidden = config.hidden_size
        heads = getattr(config, "num_attention_heads", 1)
        head_dim = getattr(config, "head_dim", None) or hidden // heads
        return cls(
            config.num_hidden_layers,
            hidden,
            getattr(config, "intermediate_size", 4 * hidden),
            heads,
            getattr(config, "num_key_value_heads", None) or heads,
            head_dim,
            config.vocab_size,
        )

    @property
    def q_width(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_width(self) -> int:
        return self.kv_heads * self.head_dim
