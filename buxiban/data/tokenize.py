"""Render conversations with the model's own chat template and mark which tokens are trained.

The trained span of assistant turn i is the text between the generation-prompt render of
messages[:i] and the render of messages[:i+1], trailing whitespace removed. That is exactly what
the model must produce after the prompt the server will give it: the answer and its end-of-turn
token (so the model learns to stop), and nothing of the template's role headers or the user's text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from ..errors import DataError, Problem

IGNORE_INDEX = -100  # the label torch's cross-entropy skips
ENCODE_BATCH = 512


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]  # IGNORE_INDEX where no loss is taken

    @property
    def trained_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


def surely_over_length(messages: list[dict[str, Any]], max_length: int) -> bool:
    """True for text so long that tokenizing it only to learn it is too long would cost seconds and
    gigabytes (a 50 MB line): no tokenizer packs more than 32 characters into a token on real text."""
    return sum(len(m["content"]) for m in messages) > 32 * max_length + 100_000


def template_messages(messages: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [{"role": m["role"], "content": m["content"]} for m in messages]


class _FastTemplate:
    """The tokenizer's chat template compiled once. `apply_chat_template` re-validates its inputs on
    every call, which dominated checking 100k examples; the compiled template renders the same text
    (verified against `apply_chat_template` before it is used, falling back to it otherwise)."""

    def __init__(self, tokenizer):
        import jinja2
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        def raise_exception(message):
            raise jinja2.exceptions.TemplateError(message)

        environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                                    extensions=["jinja2.ext.loopcontrols"])
        environment.globals["raise_exception"] = raise_exception
        self.template = environment.from_string(tokenizer.chat_template)
        self.specials = {k: v for k, v in tokenizer.special_tokens_map.items() if isinstance(v, str)}

    def __call__(self, messages, add_generation_prompt: bool) -> str:
        return self.template.render(messages=messages, add_generation_prompt=add_generation_prompt, **self.specials)


def _renderer(tokenizer):
    cached = getattr(tokenizer, "_buxiban_renderer", None)
    if cached is not None:
        return cached

    def slow(messages, add_generation_prompt):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)

    chosen = slow
    try:
        fast = _FastTemplate(tokenizer)
        probe = [{"role": "system", "content": "S"}, {"role": "user", "content": "U 你好"},
                 {"role": "assistant", "content": "A"}, {"role": "user", "content": "V"}]
        if all(fast(probe[:n], g) == slow(probe[:n], g) for n in (2, 3, 4) for g in (False, True)):
            chosen = fast
    except Exception:  # any template the fast path cannot reproduce exactly takes the slow one
        chosen = slow
    try:
        tokenizer._buxiban_renderer = chosen
    except AttributeError:
        pass
    return chosen


def render(tokenizer, messages: list[dict[str, Any]], add_generation_prompt: bool = False) -> str:
    if not getattr(tokenizer, "chat_template", None):
        raise DataError("the tokenizer has no chat template", [Problem(
            str(getattr(tokenizer, "name_or_path", "tokenizer")), "has no chat_template",
            fix="use an instruct/chat model, or add a chat_template to its tokenizer_config.json")])
    return _renderer(tokenizer)(template_messages(messages), add_generation_prompt)


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


def encode_many(tokenizer, conversations: Sequence[list[dict[str, Any]]], wheres: Sequence[str] = ()) -> list[Encoded]:
    """Encode conversations, tokenizing in batches (the fast tokenizer parallelizes a batch in Rust)."""
    out: list[Encoded] = []
    for start in range(0, len(conversations), ENCODE_BATCH):
        chunk = conversations[start:start + ENCODE_BATCH]
        rendered = [trained_char_spans(tokenizer, messages, wheres[start + i] if wheres else "")
                    for i, messages in enumerate(chunk)]
        encodings = tokenizer([text for text, _ in rendered], add_special_tokens=False, return_offsets_mapping=True)
        for (_, spans), ids, offsets in zip(rendered, encodings["input_ids"], encodings["offset_mapping"]):
            out.append(Encoded(list(ids), _labels(ids, offsets, spans)))
    return out


def _labels(ids: Sequence[int], offsets, spans: list[tuple[int, int]]) -> list[int]:
    """A token is trained when it starts inside a trained span."""
    labels = [IGNORE_INDEX] * len(ids)
    span_index = 0
    for position, (start, _end) in enumerate(offsets):
        while span_index < len(spans) and start >= spans[span_index][1]:
            span_index += 1
        if span_index < len(spans) and spans[span_index][0] <= start:
            labels[position] = ids[position]
    return labels


def encode_conversation(tokenizer, messages: list[dict[str, Any]], where: str = "") -> Encoded:
    return encode_many(tokenizer, [messages], [where] if where else ())[0]


def encode_prompt(tokenizer, messages: list[dict[str, Any]]) -> list[int]:
    """What generation starts from: every message given, then the assistant header."""
    text = render(tokenizer, messages, add_generation_prompt=True)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])
