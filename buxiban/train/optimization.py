"""The optimizer and its schedule: AdamW over the trained parameters, the learning rate as a pure
function of the step (so a resumed run continues on the same curve), and gradient clipping."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config import TrainConfig
from .datasets import StepCounts
from .distributed import World
from .schedule import learning_rate


@dataclass
class Optimization:
    params: list
    optimizer: torch.optim.Optimizer
    settings: TrainConfig
    counts: StepCounts

    @classmethod
    def over(cls, model, settings: TrainConfig, counts: StepCounts) -> Optimization:
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=settings.learning_rate, weight_decay=settings.weight_decay)
        return cls(params, optimizer, settings, counts)

    def step(self, step: int, world: World, gradients_already_summed: bool) -> tuple[float, float]:
        """Sum gradients across processes (FSDP already has), clip their global norm, take the step at
        this step's learning rate and clear them; returns (gradient norm before clipping, rate)."""
        t = self.settings
        if not gradients_already_summed:
            world.sum_gradients(self.params)
        limit = t.max_grad_norm if t.max_grad_norm > 0 else float("inf")
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, limit))
        rate = learning_rate(step, self.counts.total_steps, t.learning_rate, self.counts.warmup_steps, t.lr_schedule)
        for group in self.optimizer.param_groups:
            group["lr"] = rate
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return grad_norm, rate
