"""The systems an evaluation compares, and the local weights that answer for them.

A system is a name, the weights that answer ("base" or "fine-tuned" from the run, or an
OpenAI-compatible endpoint), and `prepare`: what the test prompt becomes before it is sent. Zero-shot
and fine-tuned send the prompt as is; few-shot puts training conversations in front of it. A RAG
variant is one more `prepare` (retrieved passages added to the prompt) on the weights of choice:
build it with `System(name, weights, prepare=...)` and pass it to `evaluate_run(..., systems=...)`."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..runs import Manifest
from .endpoint import Endpoint
from .fewshot import pick_shots, with_shots

Messages = list[dict[str, Any]]
BASE, FEW_SHOT, FINE_TUNED = "base", "few-shot", "fine-tuned"


def unchanged(prompt: Messages) -> Messages:
    return prompt


@dataclass
class System:
    name: str
    weights: str | None  # "base" or "fine-tuned" (the run's), None for an endpoint
    description: str
    prepare: Callable[[Messages], Messages] = unchanged
    endpoint: Endpoint | None = None
    shots: int = 0

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "weights": self.weights, "description": self.description}
        if self.endpoint:
            out["endpoint"] = {"url": self.endpoint.url, "model": self.endpoint.model}
        if self.shots:
            out["shots"] = self.shots
        return out


def system_text(prompt: Messages) -> str:
    return prompt[0]["content"] if prompt and prompt[0]["role"] == "system" else ""


def few_shot_prepare(train: Sequence[Messages], k: int, seed: int = 0) -> Callable[[Messages], Messages]:
    """Shots drawn from the training conversations that share the test prompt's system message (its
    task: a FAQ answer and a JSON ticket route need different examples), the same draw for every
    prompt of that task; from all of them when no training conversation shares it."""
    by_task: dict[str, list[Messages]] = {}
    for conversation in train:
        by_task.setdefault(system_text(conversation), []).append(conversation)
    drawn = {task: pick_shots(group, k, seed) for task, group in by_task.items()}
    fallback = pick_shots(list(train), k, seed)
    return lambda prompt: with_shots(prompt, drawn.get(system_text(prompt), fallback))


def default_systems(
    few_shot: Callable[[Messages], Messages] | None, shots: int = 0, endpoints: Sequence[Endpoint] = ()
) -> list[System]:
    """Base zero-shot, base few-shot (when a few-shot prompt builder is given), fine-tuned, then each endpoint."""
    systems = [System(BASE, BASE, "the base model, the test prompt as is")]
    if few_shot is not None:
        systems.append(
            System(
                FEW_SHOT,
                BASE,
                f"the base model with {shots} training conversations of the same task before the prompt",
                prepare=few_shot,
                shots=shots,
            )
        )
    systems.append(System(FINE_TUNED, FINE_TUNED, "the fine-tuned model, the test prompt as is"))
    systems += [System(e.name, None, f"{e.model} at {e.url}", endpoint=e) for e in endpoints]
    return systems


@dataclass
class LocalWeights:
    """The run's model with its adapter, switched between base and fine-tuned without a second copy
    where the run is an adapter; full and freeze runs changed the weights themselves, so their base
    is loaded again when a base system needs it."""

    run_dir: Path
    model: Any
    tokenizer: Any
    manifest: Manifest
    trust_remote_code: bool = False  # the command's flag, never the manifest's
    _base: tuple[Any, Any] | None = field(default=None, repr=False)
    _merged: bool = False

    @classmethod
    def load(cls, run_dir: str | Path, trust_remote_code: bool = False) -> LocalWeights:
        from ..runs.load import load_trained

        model, tokenizer, manifest = load_trained(run_dir, trust_remote_code=trust_remote_code)
        return cls(Path(run_dir), model, tokenizer, manifest, trust_remote_code)

    @contextmanager
    def use(self, weights: str) -> Iterator[tuple[Any, Any]]:
        if weights == FINE_TUNED:
            if not self._merged and self.manifest.adapter in ("lora", "dora") and hasattr(self.model, "merge_adapter"):
                # folded into the weights, the adapter costs nothing per token: each layer does one
                # matmul instead of three (switching it off for a base system later unmerges it)
                self.model.merge_adapter()
                self._merged = True
            yield self.model, self.tokenizer
        elif hasattr(self.model, "disable_adapter"):
            if self._merged:
                self.model.unmerge_adapter()
                self._merged = False
            with self.model.disable_adapter():
                yield self.model, self.tokenizer
        else:
            if self._base is None:
                from ..models.load import load

                base, tokenizer, _ = load(self.manifest.base_model.spec, self.trust_remote_code)
                base.eval()
                self._base = (base, tokenizer)
            yield self._base
