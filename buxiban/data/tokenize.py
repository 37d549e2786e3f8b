"""Render conversations with the model's own chat template and mark which tokens are trained.

The trained span of assistant turn i is the text between the generation-prompt render of
messages[:i] and the render of messages[:i+1], trailing whitespace removed. That is exactly what
the model must produce after the prompt the server will give it: the answer and its end-of-turn
token (so the model learns to stop), and nothing of the template's role headers or the user's text.

Text is tokenized in pieces cut at every trained span's start and end, and a served prompt is cut
at the same places (its assistant turns' spans), so the prompt a server sends is the training prefix
token for token even where a tokenizer would merge characters across a turn's edge.

Thinking templates (Qwen3, DeepSeek R1, GLM, ...) render with `enable_thinking=False`: an answer
without reasoning is trained and served after the template's own empty reasoning block, which is
part of the prompt, so no `<think></think>` scaffolding is trained. Templates that re-render earlier
assistant turns once a later user turn follows (they drop earlier reasoning) train the turns whose
render is stable, the last one always; the others stay in the conversation as context, counted.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import DataError, Problem
from .records import TOOL_KEYS

IGNORE_INDEX = -100  # the label torch's cross-entropy skips
ENCODE_BATCH = 512
TEMPLATE_OPTIONS = {"enable_thinking": False}  # every render, training and serving alike
EMPTY_REASONING = re.compile(r"\s*<think>\s*</think>")


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]  # IGNORE_INDEX where no loss is taken
    context_turns: int = 0  # assistant turns kept as context because the template re-renders them

    @property
    def trained_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


def surely_over_length(messages: list[dict[str, Any]], max_length: int) -> bool:
    """True for text so long that tokenizing it only to learn it is too long would cost seconds and
    gigabytes (a 50 MB line): no tokenizer packs more than 32 characters into a token on real text."""
    return sum(len(m["content"]) for m in messages) > 32 * max_length + 100_000


def template_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{key: m[key] for key in ("role", "content", *TOOL_KEYS) if key in m} for m in messages]


def _tool_texts(message: dict[str, Any]) -> list[tuple[str, str]]:
    """(field, text) that a render of this message must contain: each call's name, a tool's result."""
    texts = []
    for number, call in enumerate(message.get("tool_calls") or []):
        function = call.get("function", {}) if isinstance(call, dict) else {}
        if function.get("name"):
            texts.append((f"tool_calls[{number}].function.name", str(function["name"])))
    if message["role"] == "tool" and message["content"].strip():
        texts.append(("content", message["content"].strip()))
    return texts


def _rendered(text: str, full: str) -> bool:
    """In the render as written, or as a JSON string (templates that pass results through tojson)."""
    import json

    return text in full or json.dumps(text, ensure_ascii=False)[1:-1] in full or json.dumps(text)[1:-1] in full


def check_tools_rendered(tokenizer, messages: list[dict[str, Any]], full: str, where: str) -> None:
    """A template without tool support renders a call-only turn as an empty answer: refuse it by line."""
    for index, message in enumerate(messages):
        for field, text in _tool_texts(message):
            if not _rendered(text, full):
                raise DataError(
                    f"the chat template {template_name(tokenizer)} does not render tool calls",
                    [
                        Problem(
                            where or "conversation",
                            f"the template drops {text[:60]!r}, so it would not be trained",
                            field=f"messages[{index}].{field}",
                            fix="choose a template that renders tools (the model's own for Qwen 2.5/3, Llama 3.1, Hermes, "
                            "Mistral: template: auto, or a .jinja file), or remove the tool turns",
                        )
                    ],
                )


class _FastTemplate:
    """The tokenizer's chat template compiled once. `apply_chat_template` re-validates its inputs on
    every call, which dominated checking 100k examples; the compiled template renders the same text
    (verified against `apply_chat_template` before it is used, falling back to it otherwise)."""

    def __init__(self, tokenizer):
        import jinja2
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        def raise_exception(message):
            raise jinja2.exceptions.TemplateError(message)

        environment = ImmutableSandboxedEnvironment(
            trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
        )
        environment.globals["raise_exception"] = raise_exception
        self.template = environment.from_string(tokenizer.chat_template)
        self.specials = {k: v for k, v in tokenizer.special_tokens_map.items() if isinstance(v, str)}

    def __call__(self, messages, add_generation_prompt: bool) -> str:
        return self.template.render(
            messages=messages, add_generation_prompt=add_generation_prompt, **self.specials, **TEMPLATE_OPTIONS
        )


def _renderer(tokenizer):
    cached = getattr(tokenizer, "_buxiban_renderer", None)
    if cached is not None:
        return cached

    def slow(messages, add_generation_prompt):
        return tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=add_generation_prompt, **TEMPLATE_OPTIONS
        )

    chosen = slow
    try:
        fast = _FastTemplate(tokenizer)
        probe = [
            {"role": "system", "content": "S"},
            {"role": "user", "content": "U 你好"},
            {"role": "assistant", "content": "A"},
            {"role": "user", "content": "V"},
        ]
        if all(fast(probe[:n], g) == slow(probe[:n], g) for n in (2, 3, 4) for g in (False, True)):
            chosen = fast
    except Exception:  # any template the fast path cannot reproduce exactly takes the slow one
        chosen = slow
    try:
        tokenizer._buxiban_renderer = chosen
    except AttributeError:
        pass
    return chosen


def template_name(tokenizer) -> str:
    chosen = getattr(tokenizer, "buxiban_template", None)
    return repr(chosen.name) if chosen is not None else "of the model"


def render(tokenizer, messages: list[dict[str, Any]], add_generation_prompt: bool = False, where: str = "") -> str:
    if not getattr(tokenizer, "chat_template", None):
        raise DataError(
            "the tokenizer has no chat template",
            [
                Problem(
                    str(getattr(tokenizer, "name_or_path", "tokenizer")),
                    "has no chat_template",
                    fix="use an instruct/chat model, or add a chat_template to its tokenizer_config.json",
                )
            ],
        )
    try:
        return _renderer(tokenizer)(template_messages(messages), add_generation_prompt)
    except Exception as exc:  # jinja's TemplateError from raise_exception(), or a template's own bug
        name = template_name(tokenizer)
        roles = ", ".join(m["role"] for m in messages)
        raise DataError(
            f"the chat template {name} cannot render this conversation",
            [
                Problem(
                    where or str(getattr(tokenizer, "name_or_path", "tokenizer")),
                    f"template {name} refuses a conversation of roles [{roles}]: {str(exc)[:300]}",
                    fix="reshape the data as the template requires (many refuse a system message or two turns of one role "
                    "in a row), or choose another template with template: / --template",
                )
            ],
        ) from exc


def trained_char_spans(
    tokenizer, messages: list[dict[str, Any]], where: str = ""
) -> tuple[str, list[tuple[int, int]], int]:
    """The full render, the character spans the loss is computed on, and how many assistant turns
    stay context only because the template renders them differently once later turns follow."""
    full = render(tokenizer, messages, where=where)
    check_tools_rendered(tokenizer, messages, full, where)
    spans, context = [], 0
    wanted = [i for i, m in enumerate(messages) if m["role"] == "assistant" and m.get("weight", 1)]
    for index in wanted:
        prompt = render(tokenizer, messages[:index], add_generation_prompt=True, where=where)
        through = render(tokenizer, messages[: index + 1], where=where).rstrip()
        if not (full.startswith(prompt) and full.startswith(through) and len(through) > len(prompt)):
            if index != wanted[-1]:
                context += 1
                continue
            raise DataError(
                f"the chat template {template_name(tokenizer)} does not render conversations incrementally",
                [
                    Problem(
                        where or "conversation",
                        "the template renders this turn differently once it is complete",
                        field=f"messages[{index}]",
                        fix="use a template whose renders of a prefix are prefixes of the full render",
                    )
                ],
            )
        if through[len(prompt) :].strip() == messages[index]["content"].strip():
            raise DataError(
                f"the chat template {template_name(tokenizer)} marks no end of an assistant turn",
                [
                    Problem(
                        where or "conversation",
                        "the template renders an answer with nothing after it, so a model trained "
                        "with it never learns to stop",
                        field=f"messages[{index}]",
                        fix="choose a template that ends each assistant turn with an end-of-turn token (template:)",
                    )
                ],
            )
        if EMPTY_REASONING.match(through[len(prompt) :]):
            raise DataError(
                f"the chat template {template_name(tokenizer)} trains an empty reasoning block",
                [
                    Problem(
                        where or "conversation",
                        "the template writes an empty <think></think> into every answer while its "
                        "generation prompt leaves it out, so the model would learn to emit it",
                        field=f"messages[{index}]",
                        fix="choose the family's non-thinking template (template: chatml for Qwen/Kimi-style models) or a "
                        "template file whose generation prompt holds the empty block",
                    )
                ],
            )
        if (
            spans and len(prompt) < spans[-1][1]
        ):  # overlaps an earlier span: a template this odd trains the last turn only
            context += len(spans)
            spans = []
        spans.append((len(prompt), len(through)))
    return full, spans, context


def _pieces(text: str, spans: list[tuple[int, int]]) -> list[tuple[str, bool]]:
    """The text cut at every span's start and end: (piece, trained)."""
    pieces, at = [], 0
    for start, end in spans:
        if start > at:
            pieces.append((text[at:start], False))
        pieces.append((text[start:end], True))
        at = end
    if at < len(text):
        pieces.append((text[at:], False))
    return pieces


def encode_many(tokenizer, conversations: Sequence[list[dict[str, Any]]], wheres: Sequence[str] = ()) -> list[Encoded]:
    """Encode conversations, tokenizing in batches (the fast tokenizer parallelizes a batch in Rust)."""
    out: list[Encoded] = []
    for start in range(0, len(conversations), ENCODE_BATCH):
        chunk = conversations[start : start + ENCODE_BATCH]
        rendered = [
            trained_char_spans(tokenizer, messages, wheres[start + i] if wheres else "")
            for i, messages in enumerate(chunk)
        ]
        pieces = [_pieces(text, spans) for text, spans, _ in rendered]
        flat = [piece for conversation in pieces for piece, _ in conversation]
        ids_of = iter(tokenizer(flat, add_special_tokens=False)["input_ids"]) if flat else iter(())
        for conversation, (_, _, context) in zip(pieces, rendered):
            ids, labels = [], []
            for _, trained in conversation:
                piece_ids = list(next(ids_of))
                ids += piece_ids
                labels += piece_ids if trained else [IGNORE_INDEX] * len(piece_ids)
            out.append(Encoded(ids, labels, context))
    return out


def encode_conversation(tokenizer, messages: list[dict[str, Any]], where: str = "") -> Encoded:
    return encode_many(tokenizer, [messages], [where] if where else ())[0]


def encode_prompt(tokenizer, messages: list[dict[str, Any]]) -> list[int]:
    """What generation starts from: every message given, then the assistant header; cut where
    training cut the same conversation, so earlier answers tokenize as they were trained."""
    text = render(tokenizer, messages, add_generation_prompt=True)
    spans: list[tuple[int, int]] = []
    if any(m["role"] == "assistant" for m in messages):
        try:
            full, spans, _ = trained_char_spans(tokenizer, messages)
            spans = spans if text.startswith(full) else []
        except DataError:  # a conversation training would refuse: plain tokenization
            spans = []
    ids: list[int] = []
    for piece, _ in _pieces(text, spans):
        ids += tokenizer(piece, add_special_tokens=False)["input_ids"]
    return ids


def end_of_turn_ids(tokenizer) -> list[int]:
    """The token(s) that end an assistant turn in the tokenizer's template: the first special token
    rendered after an answer (Gemma's <end_of_turn>, Llama 3's <|eot_id|>, ChatML's <|im_end|>, Phi's
    <|end|>). Derived from the template itself, so a template chosen by the user stops where it trains."""
    answer = "Fine, thanks."
    conversation = [{"role": "user", "content": "How are you?"}, {"role": "assistant", "content": answer}]
    try:
        prompt = render(tokenizer, conversation[:1], add_generation_prompt=True)
        full = render(tokenizer, conversation)
    except Exception:  # a template that cannot render this probe: eos is all we know
        return []
    at = full.find(answer, len(prompt) if full.startswith(prompt) else 0)
    if at < 0:
        return []
    suffix = full[at + len(answer) :]
    special = set(tokenizer.all_special_ids) | set(getattr(tokenizer, "added_tokens_decoder", {}) or {})
    for token in tokenizer(suffix, add_special_tokens=False)["input_ids"]:
        if token in special:
            return [token]
    return []
