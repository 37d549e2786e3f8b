"""Does the chosen model's tokenizer know the user's language? A cheap signal before any training.

A tokenizer that never saw much Chinese spells each character as two or three byte pieces, so the same
answer costs that many more tokens of compute and context, and the model behind it rarely writes the
language well (SmolLM2-135M on the Traditional Chinese example: about 1.7 tokens per character, exact
match far below a multilingual model's). Counted on the data's CJK text only, against what multilingual
tokenizers spend on the shipped Traditional Chinese example.
"""

from __future__ import annotations

import re
from typing import Any

from ..text import CJK_CHARACTERS

# Tokens per character on the CJK messages of examples/hefeng/train.jsonl (tests/test_language_fit.py
# recomputes them with the real tokenizers).
MULTILINGUAL_TOKENS_PER_CHARACTER = {"Gemma 3": 0.792, "Qwen2": 0.802}
WARN_AT = 1.5  # times the best multilingual figure
CJK_MESSAGE_SHARE = 0.3  # of a message's letters, for the message to count as CJK text
SAMPLE_MESSAGES = 2000
_CJK = re.compile(rf"[{CJK_CHARACTERS}]")
_LETTER = re.compile(r"[^\W\d_]")


def cjk_messages(conversations) -> list[str]:
    texts = []
    for conversation in conversations:
        for message in conversation.messages:
            content = message.get("content")
            if isinstance(content, str) and _is_cjk(content):
                texts.append(content)
                if len(texts) >= SAMPLE_MESSAGES:
                    return texts
    return texts


def _is_cjk(text: str) -> bool:
    letters = len(_LETTER.findall(text))
    return letters > 0 and len(_CJK.findall(text)) / letters >= CJK_MESSAGE_SHARE


def tokens_per_character(tokenizer, texts: list[str]) -> float:
    tokens = sum(len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"])
    return tokens / max(sum(len(text) for text in texts), 1)


def language_fit(conversations, tokenizer, model_name: str) -> dict[str, Any] | None:
    """None when the data has no CJK text; else the model's tokens per character, the multilingual
    reference and, when it spends WARN_AT times as many or more, a warning."""
    texts = cjk_messages(conversations)
    if not texts:
        return None
    spent = tokens_per_character(tokenizer, texts)
    best_name, best = min(MULTILINGUAL_TOKENS_PER_CHARACTER.items(), key=lambda item: item[1])
    fit: dict[str, Any] = {
        "cjk_messages": len(texts),
        "tokens_per_character": round(spent, 3),
        "multilingual_reference": dict(MULTILINGUAL_TOKENS_PER_CHARACTER),
    }
    if spent >= WARN_AT * best:
        fit["warning"] = (
            f"{model_name}'s tokenizer spends {spent:.2f} tokens per character on this data's Chinese text, "
            f"{spent / best:.1f}x what {best_name}'s does ({best:.2f}): the model has likely seen little of the "
            "language, and every example costs that much more compute and context. Consider a multilingual "
            "model (README, Traditional Chinese)"
        )
    return fit
