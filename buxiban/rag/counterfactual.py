"""Counterfactual figures: the same training conversation with a figure changed in the documents AND the answer.

RAFT-style data (documents in the prompt that agree with the answer) leaves a fine-tuned model free to keep
answering from memory: both routes reach zero loss. When documents and memory disagree later (a new price),
such a model keeps the old figure. In a conversation whose answer states a figure that the retrieved
chunks also state, we replace that figure consistently (in the chunks, the question and every answer) with
another of the same shape: the answer is now reachable only by reading the documents. The rest of the data
keeps the true figures, so memory of the facts stays for when retrieval is off.

A figure is a number as written in text: 690, 3,000, 1.5, 08:00. Its replacement keeps the shape (commas,
decimals, leading zeros, a valid hour) and the roundness (690 → 750, 3,000 → 2,000), and appears nowhere else
in the conversation or chunks, so the model cannot pick it up from a neighbouring sentence by accident.
"""

from __future__ import annotations

import random
import re

# a whole figure: not a piece of a longer number, a word or an identifier such as A12
FIGURE = re.compile(r"(?<![\w.,:])\d+(?:[.,:]\d+)*(?![\w]|[.,:]\d)")
TRIES = 50


def figures(text: str) -> list[str]:
    return FIGURE.findall(text)


def other_figure(figure: str, rng: random.Random, taken: set[str]) -> str | None:
    """A different figure of the same shape not in `taken`; None when there is none (a date such as 1.2.2027)."""
    for _ in range(TRIES):
        candidate = _draw(figure, rng)
        if candidate is not None and candidate != figure and candidate not in taken:
            return candidate
    return None


def _draw(figure: str, rng: random.Random) -> str | None:
    if re.fullmatch(r"\d{1,2}:\d{2}", figure):  # a time of day: another hour, same minutes
        hour, minutes = figure.split(":")
        new_hour = (int(hour) + rng.choice([-3, -2, -1, 1, 2, 3])) % 24
        return f"{new_hour:0{len(hour)}d}:{minutes}"
    if re.fullmatch(r"\d+\.\d+", figure):
        decimals = len(figure.split(".")[1])
        return f"{float(figure) * rng.uniform(0.5, 1.6):.{decimals}f}"
    if not re.fullmatch(r"\d{1,3}(,\d{3})+|\d+", figure):
        return None  # dates such as 1.2.2027 or other shapes: left alone
    value = int(figure.replace(",", ""))
    if value < 10:
        new = rng.randint(1, max(2 * value, 9))
    else:
        zeros = len(str(value)) - len(str(value).rstrip("0"))
        step = 10 ** min(zeros, len(str(value)) - 1)  # keeps 3,000 round and 690 at tens
        new = max(step, round(value * rng.uniform(0.5, 1.6) / step) * step)
    text = f"{new:,}" if "," in figure else str(new)
    if figure.startswith("0") and len(figure) > 1:
        text = text.zfill(len(figure))
    return text


def swap_figures(answer: str, context: list[str], rng: random.Random) -> dict[str, str]:
    """old → new for every figure of `answer` that the context states too (figures only the answer has
    cannot be read from the documents, so changing them would teach guessing)."""
    in_context = {f for text in context for f in figures(text)}
    taken = in_context | set(figures(answer))
    mapping: dict[str, str] = {}
    for figure in dict.fromkeys(figures(answer)):
        if figure in in_context:
            new = other_figure(figure, rng, taken)
            if new is not None:
                mapping[figure] = new
                taken.add(new)
    return mapping


def apply(mapping: dict[str, str], text: str) -> str:
    return FIGURE.sub(lambda match: mapping.get(match.group(0), match.group(0)), text) if mapping else text
