"""What DPO must not break, watched at every validation pass: the model's own greedy answers on the
SFT run's validation conversations (exact match against their references) and the likelihood of the
chosen answers on the validation pairs. A rising reward margin alone says nothing about either: DPO
can widen it by pushing both answers down, or by breaking answers the pairs never mention.

The run keeps the validation pass with the best preference accuracy among the passes that broke at
most one of the answers the SFT model got right and kept the chosen answers' likelihood (within
CHOSEN_DROP nats per token); when no pass qualifies it keeps the weights it started from, and says so.
Broken answers count, not the net change: on harbor (bench/outcome) DPO at a harmful rate (2e-4, 3
epochs) broke 3 and fixed 2 of 37 validation answers by its second pass, a net loss of one, and the
weights of that pass lost 11 of 60 held-out answers (0.750 -> 0.567); answers that move on the
conversations the guard sees move more on phrasings it does not see. The end of the run prints the
start-vs-kept comparison, with a warning when exact match or the chosen likelihood fell.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..models.adapt import load_trainable_state, trainable_state
from ..models.generate import generate_with_stats
from ..text import exact_match

CHOSEN_DROP = 0.1  # nats per token the chosen answers may lose on average before a pass counts as harmful
MAX_CONVERSATIONS = 64  # greedy answers are the slow part of a pass on a CPU
BROKEN_ANSWERS_ALLOWED = 1


@dataclass(frozen=True)
class GuardPass:
    step: int
    correct: int  # greedy answers matching their reference
    broken: int  # answers right before DPO and wrong now
    chosen_change: float  # mean change of the chosen answers' log-likelihood per token, vs the reference model
    accuracy: float  # preference accuracy on the validation pairs
    margin: float


@dataclass
class DpoGuard:
    prompts: list  # chat messages up to the answer
    references: list[str]
    source: str  # where the conversations came from, for the report
    log: Callable[[str], None]
    start: GuardPass | None = None
    start_right: list[bool] = field(default_factory=list)  # which answers were right before DPO
    passes: list[GuardPass] = field(default_factory=list)
    kept: GuardPass | None = None
    start_state: dict | None = None
    kept_state: dict | None = None

    @classmethod
    def for_run(cls, from_run: str | None, pairs, log: Callable[[str], None]) -> DpoGuard:
        """The SFT run's validation conversations when its data is on this machine, else the
        validation pairs' prompts with their chosen answers as references."""
        conversations = _sft_validation(from_run) if from_run else None
        if conversations:
            prompts = [c.messages[:-1] for c in conversations]
            references = [c.messages[-1]["content"] for c in conversations]
            source = f"the {len(prompts)} validation conversations of {from_run}"
        else:
            prompts = [p.prompt for p in pairs]
            references = [p.chosen for p in pairs]
            source = f"the {len(prompts)} validation pairs' prompts (chosen answers as references)"
        return cls(prompts[:MAX_CONVERSATIONS], references[:MAX_CONVERSATIONS], source, log)

    def measure(self, model, tokenizer, step: int, chosen_change: float, accuracy: float, margin: float) -> GuardPass:
        budget = min(
            256, 2 * max(len(tokenizer(r, add_special_tokens=False)["input_ids"]) for r in self.references) + 16
        )
        answers = generate_with_stats(model, tokenizer, self.prompts, max_new_tokens=budget).answers
        right = [exact_match(a, r) for a, r in zip(answers, self.references)]
        broken = sum(was and not now for was, now in zip(self.start_right, right))  # 0 before the first pass
        correct = sum(right)
        measured = GuardPass(step, correct, broken, round(chosen_change, 4), round(accuracy, 4), round(margin, 5))
        if self.start is None:
            self.start, self.start_right, self.kept = measured, right, measured
            self.start_state = trainable_state(model)
            self.log(f"DPO guard: {correct}/{len(self.prompts)} answers right before training ({self.source})")
            return measured
        self.passes.append(measured)
        self.log(
            f"DPO guard at step {step}: {correct}/{len(self.prompts)} answers right "
            f"(start {self.start.correct}, {broken} broken), chosen likelihood {chosen_change:+.3f} nats/token, "
            f"preference accuracy {accuracy:.2f}"
        )
        if self.safe(measured) and (self.kept is self.start or _better(measured, self.kept)):
            self.kept, self.kept_state = measured, trainable_state(model)
        return measured

    def safe(self, measured: GuardPass) -> bool:
        return measured.broken <= BROKEN_ANSWERS_ALLOWED and measured.chosen_change >= -CHOSEN_DROP

    def finish(self, model) -> list[str]:
        """Load the kept weights into the model; the report lines (warnings first)."""
        if self.start is None:
            return []
        if self.kept is self.start and self.start_state is not None and self.passes:
            load_trainable_state(model, self.start_state)
        elif self.kept_state is not None and self.passes and self.kept is not self.passes[-1]:
            load_trainable_state(model, self.kept_state)
        return self.report()

    def report(self) -> list[str]:
        n, start, kept = len(self.prompts), self.start, self.kept
        last = self.passes[-1] if self.passes else start
        fixed = kept.correct - start.correct + kept.broken
        lines = []
        if any(not self.safe(p) for p in self.passes):
            worst = min(self.passes, key=lambda p: (-p.broken, p.correct, p.chosen_change))
            lines.append(
                f"warning: DPO made the model worse at step {worst.step}: {worst.correct}/{n} answers right "
                f"against {start.correct}/{n} before ({worst.broken} broken), chosen likelihood {worst.chosen_change:+.3f} nats/token; "
                "a lower train.learning_rate, a larger dpo.beta or dpo.sft_weight=1 keep the SFT answers"
            )
        if kept is start and self.passes:
            lines.append(
                "warning: no validation pass kept the SFT model's answers and the chosen answers' likelihood; "
                "the weights saved are the ones DPO started from"
            )
        elif kept is not last:
            lines.append(f"kept the weights of step {kept.step}, the best pass that kept the SFT answers")
        lines.append(
            f"SFT → DPO on {self.source}: exact match {start.correct}/{n} → {kept.correct}/{n} "
            f"({fixed} fixed, {kept.broken} broken), chosen likelihood {kept.chosen_change:+.3f} nats/token, "
            f"preference accuracy {start.accuracy:.2f} → {kept.accuracy:.2f}"
        )
        return lines

    def record(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "conversations": len(self.prompts),
            "start": asdict(self.start) if self.start else None,
            "kept": asdict(self.kept) if self.kept else None,
            "passes": [asdict(p) for p in self.passes],
            "chosen_drop_allowed": CHOSEN_DROP,
            "broken_answers_allowed": BROKEN_ANSWERS_ALLOWED,
        }


def _better(candidate: GuardPass, incumbent: GuardPass) -> bool:
    return (candidate.accuracy, candidate.correct, candidate.margin) > (
        incumbent.accuracy,
        incumbent.correct,
        incumbent.margin,
    )


def _sft_validation(from_run: str) -> list | None:
    """The SFT run's validation split, rebuilt from its config.yaml when its files are here."""
    from ..config import load_config
    from ..errors import BuxibanError
    from .datasets import sft_conversations

    config_file = Path(from_run) / "config.yaml"
    try:
        conversations = sft_conversations(load_config(config_file)).validation
    except (BuxibanError, OSError):
        return None
    return [c for c in conversations if c.messages and c.messages[-1].get("role") == "assistant"] or None
