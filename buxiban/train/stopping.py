"""Validation bookkeeping: the best validation loss so far, early stopping, and the overfitting
warning. Its state travels in every checkpoint, so a resumed run stops where an unbroken one would."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..models.adapt import trainable_state


@dataclass
class EarlyStopping:
    patience: int | None  # validation passes without improvement before stopping; None: never stop
    min_delta: float
    log: Callable[[str], None]
    best_val: float | None = None
    best_step: int | None = None
    evals_since_best: int = 0
    history: list[tuple[float, float]] = field(default_factory=list)  # (train loss, val loss) per validation
    best_state: dict | None = None  # the best weights, kept only when early stopping may need them

    def observe(self, step: int, train_loss: float, val_loss: float, model) -> bool:
        """Take a validation pass's loss; return True when training should stop."""
        self.history.append((train_loss, val_loss))
        self._warn_on_overfitting(step)
        if self.best_val is None or val_loss < self.best_val - self.min_delta:
            self.best_val, self.best_step, self.evals_since_best = val_loss, step + 1, 0
            if self.patience is not None:
                self.best_state = trainable_state(model)
            return False
        self.evals_since_best += 1
        if self.patience is not None and self.evals_since_best >= self.patience:
            self.log(
                f"early stopping at step {step + 1}: no validation improvement in {self.evals_since_best} passes; "
                f"keeping the weights of step {self.best_step} (validation loss {self.best_val:.4f})"
            )
            return True
        return False

    def _warn_on_overfitting(self, step: int) -> None:
        if len(self.history) < 3:
            return
        (t0, v0), (t1, v1), (t2, v2) = self.history[-3:]
        if v2 > v1 > v0 and t2 < t1 < t0:  # two rises in a row while training loss keeps falling
            self.log(
                f"warning: step {step + 1}: validation loss rose twice ({v0:.4f} → {v2:.4f}) while training "
                "loss fell: the model is overfitting; fewer epochs, early stopping "
                "(train.early_stopping_patience) or more data will help"
            )

    def state(self) -> dict[str, Any]:
        return {
            "best_val": self.best_val,
            "best_step": self.best_step,
            "evals_since_best": self.evals_since_best,
            "history": self.history,
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.best_val, self.best_step = state.get("best_val"), state.get("best_step")
        self.evals_since_best = state.get("evals_since_best", 0)
        self.history = [tuple(h) for h in state.get("history", [])]
