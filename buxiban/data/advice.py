"""How much data is enough: the seeds' guidance (50–100 examples at the least, 500–1000 ideal)."""

from __future__ import annotations

MINIMUM, LOW, IDEAL_LOW, IDEAL_HIGH = 50, 100, 500, 1000


def sufficiency(examples: int) -> tuple[str, str]:
    """(level, advice) where level is 'warning' or 'ok'."""
    if examples < MINIMUM:
        return "warning", (
            f"{examples} examples is too few to fine-tune reliably (at least {MINIMUM}–{LOW}; "
            f"{IDEAL_LOW}–{IDEAL_HIGH} is ideal). Try a better prompt with few-shot examples first "
            "(`buxiban plan`), and collect more real conversations."
        )
    if examples < LOW:
        return "warning", (
            f"{examples} examples is at the bare minimum ({MINIMUM}–{LOW}); expect a modest change. "
            f"{IDEAL_LOW}–{IDEAL_HIGH} varied, carefully written examples is the ideal range."
        )
    if examples < IDEAL_LOW:
        return "ok", (
            f"{examples} examples is enough to start; quality beats quantity, and growing toward "
            f"{IDEAL_LOW}–{IDEAL_HIGH} covers more of what users ask. Add examples where eval shows mistakes."
        )
    if examples <= IDEAL_HIGH:
        return "ok", f"{examples} examples is in the ideal range ({IDEAL_LOW}–{IDEAL_HIGH})."
    return "ok", (
        f"{examples} examples is above the usual {IDEAL_LOW}–{IDEAL_HIGH}: fine if they are varied and "
        "correct; remove near-duplicates first, they add cost without teaching anything new."
    )
