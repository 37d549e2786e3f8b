"""How sure a score is: Wilson intervals for 0/1 scores and bootstrap intervals for graded ones, and the exact McNemar test
for whether two systems differ on the same examples (paired, so it ignores the examples both get
right or both get wrong, which carry no evidence either way)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from math import comb, sqrt

RESAMPLES = 1000
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float

    def to_dict(self) -> dict[str, float]:
        return {"mean": round(self.mean, 4), "low": round(self.low, 4), "high": round(self.high, 4)}


def bootstrap_ci(
    values: Sequence[float], resamples: int = RESAMPLES, confidence: float = CONFIDENCE, seed: int = 0
) -> Interval:
    """Percentile bootstrap of the mean: resample the examples with replacement `resamples` times
    (seeded, so a report is reproducible) and take the middle `confidence` share of the means."""
    import numpy as np

    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return Interval(float("nan"), float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(resamples, data.size))].mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return Interval(float(data.mean()), float(low), float(high))


def wilson_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """Wilson score interval of a proportion (0/1 scores such as exact match). A bootstrap of 0 out of
    79 can only resample zeros and says [0, 0], claiming certainty; Wilson says [0, 0.046]."""
    from statistics import NormalDist

    n = len(values)
    if n == 0:
        return Interval(float("nan"), float("nan"), float("nan"))
    share = sum(values) / n
    z = NormalDist().inv_cdf(1 - (1 - confidence) / 2)
    centre = (share + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * sqrt(share * (1 - share) / n + z * z / (4 * n * n))
    # all-or-none scores reach the bound exactly (the formula lands a rounding error short of it)
    low = 0.0 if share == 0 else max(0.0, centre - half)
    high = 1.0 if share == 1 else min(1.0, centre + half)
    return Interval(share, low, high)


def interval_of(
    values: Sequence[float], binary: bool, resamples: int = RESAMPLES, confidence: float = CONFIDENCE, seed: int = 0
) -> Interval:
    """Wilson for a 0/1 score, the bootstrap for a graded one (token F1, chrF, a judge's scale)."""
    if binary:
        return wilson_interval(values, confidence)
    return bootstrap_ci(values, resamples=resamples, confidence=confidence, seed=seed)


@dataclass(frozen=True)
class McNemar:
    """`only_a`: examples A got right and B wrong; `only_b`: the reverse."""

    only_a: int
    only_b: int
    p_value: float

    def to_dict(self) -> dict[str, float]:
        return {"only_a": self.only_a, "only_b": self.only_b, "p_value": float(f"{self.p_value:.4g}")}


def mcnemar_exact(a_correct: Sequence[bool], b_correct: Sequence[bool]) -> McNemar:
    """Two-sided exact McNemar test: under "no difference", each discordant example is equally
    likely to favour A or B, so the count favouring one side is Binomial(discordant, 1/2); the
    p-value is twice the smaller tail, capped at 1."""
    if len(a_correct) != len(b_correct):
        raise ValueError(f"paired test needs the same examples: {len(a_correct)} vs {len(b_correct)}")
    only_a = sum(1 for a, b in zip(a_correct, b_correct) if a and not b)
    only_b = sum(1 for a, b in zip(a_correct, b_correct) if b and not a)
    discordant = only_a + only_b
    if discordant == 0:
        return McNemar(0, 0, 1.0)
    tail = sum(comb(discordant, k) for k in range(min(only_a, only_b) + 1)) / 2**discordant
    return McNemar(only_a, only_b, min(1.0, 2 * tail))
