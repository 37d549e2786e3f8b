"""What the same training would cost on OpenAI's fine-tuning API: the versioned price file, the
number of epochs OpenAI picks by default, and the tokens it bills.

The epoch rule and the per-example cap are the ones OpenAI publishes in its cookbook notebook
"Chat_finetuning_data_prep.ipynb" (section "Pricing and default n_epochs estimate"; the constants
are kept in prices.json with the link, so a change on their side is a data edit here):
3 epochs by default; raised to floor(100 / examples) when fewer than 100 example-passes would be
made; lowered to floor(25000 / examples) when more than 25,000 would be; never below 1 or above
25; every example billed for at most 16,385 tokens.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import PlanError
from .lifecycle import Lifecycle, parse_lifecycle

PRICE_FILE = "prices.json"
PRICE_KEYS = ("training", "input", "output")


@dataclass(frozen=True)
class EpochRule:
    target_epochs: int = 3
    min_target_examples: int = 100
    max_target_examples: int = 25_000
    min_epochs: int = 1
    max_epochs: int = 25
    max_tokens_per_example: int = 16_385


@dataclass(frozen=True)
class PriceTable:
    models: dict[str, dict[str, float]]
    rule: EpochRule
    read_on: str
    source: str
    version: int
    note: str = ""
    path: str = ""
    lifecycle: Lifecycle | None = None  # when each model stops taking jobs and being served

    def price(self, model: str) -> dict[str, float]:
        if model not in self.models:
            known = ", ".join(sorted(self.models))
            raise PlanError(
                f"no price for hosted model '{model}' in {self.path}: known models are {known} "
                "(add it to the price file, with the date you read it and the source)"
            )
        return self.models[model]


def load_prices(path: str | Path | None = None) -> PriceTable:
    """The shipped price file, or the user's own in the same format."""
    if path is None:
        text, where = resources.files(__package__).joinpath(PRICE_FILE).read_text(encoding="utf-8"), PRICE_FILE
    else:
        try:
            text, where = Path(path).read_text(encoding="utf-8"), str(path)
        except OSError as exc:
            raise PlanError(f"cannot read the price file {path}: {exc.strerror or exc}") from exc
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PlanError(f"{where}:{exc.lineno}: not valid JSON ({exc.msg})") from exc
    return _price_table(raw, where)


def _price_table(raw: Any, where: str) -> PriceTable:
    if not isinstance(raw, dict) or not isinstance(raw.get("models"), dict):
        raise PlanError(f"{where}: needs a 'models' mapping of model name to {{training, input, output}} prices")
    missing = [key for key in ("read_on", "source", "version") if not raw.get(key)]
    if missing:
        raise PlanError(f"{where}: missing {', '.join(missing)}: a price without its date and source cannot be trusted")
    models = {}
    for name, prices in raw["models"].items():
        bad = [k for k in PRICE_KEYS if not isinstance((prices or {}).get(k), (int, float)) or prices[k] < 0]
        if bad:
            raise PlanError(
                f"{where}: models.{name}: {', '.join(bad)} must be non-negative numbers (USD per 1M tokens)"
            )
        models[name] = {k: float(prices[k]) for k in PRICE_KEYS}
    known = EpochRule.__dataclass_fields__
    rule = EpochRule(**{k: int(v) for k, v in raw.get("epochs_rule", {}).items() if k in known})
    return PriceTable(
        models,
        rule,
        str(raw["read_on"]),
        str(raw["source"]),
        int(raw["version"]),
        str(raw.get("note", "")),
        where,
        parse_lifecycle(raw.get("lifecycle"), where),
    )


def auto_epochs(examples: int, rule: EpochRule = EpochRule()) -> int:
    """The epochs OpenAI trains for when n_epochs is "auto"."""
    if examples < 1:
        raise PlanError("no training examples: nothing to bill")
    if examples * rule.target_epochs < rule.min_target_examples:
        return min(rule.max_epochs, rule.min_target_examples // examples)
    if examples * rule.target_epochs > rule.max_target_examples:
        return max(rule.min_epochs, rule.max_target_examples // examples)
    return rule.target_epochs


def billed_tokens(lengths: Iterable[int], epochs: int, cap: int = EpochRule.max_tokens_per_example) -> int:
    """Σ min(tokens, cap) × epochs."""
    return sum(min(length, cap) for length in lengths) * epochs


def dollars(tokens: float, usd_per_million: float) -> float:
    return tokens * usd_per_million / 1_000_000


@dataclass
class HostedTraining:
    model: str
    epochs: int
    epochs_chosen: str  # "auto (OpenAI's rule)" or "given"
    dataset_tokens: int  # Σ min(tokens, cap), one epoch
    billed_tokens: int
    cost_usd: float
    prices: dict[str, float]
    tokenizer_note: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def hosted_training(
    lengths: list[int], model: str, table: PriceTable, epochs: int | None = None, tokenizer_note: str = ""
) -> HostedTraining:
    """Training cost on the hosted API; `epochs` None means OpenAI's automatic choice."""
    prices = table.price(model)
    chosen = epochs if epochs is not None else auto_epochs(len(lengths), table.rule)
    per_epoch = billed_tokens(lengths, 1, table.rule.max_tokens_per_example)
    billed = per_epoch * chosen
    return HostedTraining(
        model,
        chosen,
        "given" if epochs is not None else "auto (OpenAI's rule)",
        per_epoch,
        billed,
        dollars(billed, prices["training"]),
        prices,
        tokenizer_note,
    )
