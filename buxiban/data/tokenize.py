"""Render conversations with the model's own chat template and mark which tokens are trained.

The trained span of assistant turn i is the text between the generation-prompt render of
messages[:i] and the render of messages[:i+1], trailing whitespace removed. That is exactly what
the model must produce after the prompt the server will give it: the answer and its end-of-turn
token (so the model learns to stop), and nothing of the template's role headers or the user's text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import DataError, Problem

IGNORE_INDEX = -100  # the label torch's cross-entropy skips


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]  # IGNORE_INDEX where no loss is taken

    @property
    def trained_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


def template_messages(messages: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def render(tokenizer, messages: list[dict[str, Any]], add_generation_prompt: bool = False) -> str:
    if not getattr(tokenizer, "chat_template", None):
        raise DataError("the tokenizer has no chat template", [Problem(
            str(getattr(tokenizer, "name_or_path", "tokenizer")), "has no chat_template",
            fix="use an instruct/chat model, or add a chat_template to its tokenizer_config.json")])
    return tokenizer.apply_chat_template(template_messages(messages), tokenize=False,
                                         add_generation_prompt=add_generation_prompt)


def trained_char_spans(tokenizer, messages: list[dict[str, Any]], where: str = "") -> tuple[str, list[tuple[int, int]]]:
    """The full render and the character spans the loss is computed on."""
    full = render(tokenizer, messages)
    spans = []
    for index, message in enumerate(messages):
        if message["role"] != "assistant" or not message.get("weight", 1):
            continue
        prompt = render(tokenizer, messages[:index], add_generation_prompt=True)
        through = render(tokenizer, messages[: index + 1]).rstrip()
        if not (full.startswith(prompt) and full.startswith(through) and len(through) > len(prompt)):
            raise DataError("the chat template does not render conversations incrementally", [Problem(
                where or "conversation", "the template renders earlier turns differently once later ones follow",
                field=f"messages[{index}]", fix="use a template whose renders of a prefix are prefixes of the full render")])
        spans.append((len(prompt), len(through)))
    return full, spans


def encode_conversation(tokenizer, messages: list[dict[str, Any]], where: str = "") -> Encoded:
    """Token ids and labels; a token is trained when it starts inside a trained span."""
    full, spans = trained_char_spans(tokenizer, messages, where)
    encoding = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(encoding["input_ids"])
    labels = [IGNORE_INDEX] * len(ids)
    span_index = 0
    for position, (start, _end) in enumerate(encoding["offset_mapping"]):
        while span_index < len(spans) and start >= spans[span_index][1]:
            span_index += 1
        if span_index < len(spans) and spans[span_index][0] <= start:
            labels[position] = ids[position]
    return Encoded(ids, labels)


def encode_prompt(tokenizer, messages: list[dict[str, Any]]) -> list[int]:
    """What generation starts from: every message given, then the assistant header."""
    text = render(tokenizer, messages, add_generation_prompt=True)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])
