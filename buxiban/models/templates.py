"""Which chat template renders a model's conversations, and which token ends an assistant turn in it.

A template is part of the model being trained: the run records the one it used, and everything that
renders a prompt for that run (eval, chat, serve, merge, export) renders with it. `template:` in the
run config (and `--template` on the commands) takes

- `auto`: the model's own template; for a model without one (a base model), the official instruct
  format of its family, recognized by that family's special tokens in the vocabulary;
- a family name (FAMILIES below), which must find its special tokens in the vocabulary, since a
  marker the tokenizer splits into pieces would silently teach the model something else;
- a path to a Jinja file.

The family templates render each family's published instruct format (Gemma folds a system prompt
into the first user turn, as Gemma's own template does). They are written to be incremental: the
render of a conversation's first turns is a prefix of the render of the whole, which the loss mask
depends on (data/tokenize.py).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelLoadError

AUTO = "auto"
MAX_TEMPLATE_BYTES = 1 << 20  # the largest real templates are about 30 KB


@dataclass(frozen=True)
class Family:
    markers: tuple[str, ...]  # special tokens the format needs as single tokens
    template: str
    models: str  # who uses it, for the error that lists the choices


FAMILIES: dict[str, Family] = {
    "chatml": Family(
        ("<|im_start|>", "<|im_end|>"),
        "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content']"
        " + '<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
        "{% endif %}",
        "Qwen 2/2.5, SmolLM2, Hermes",
    ),
    "llama3": Family(
        ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"),
        "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role']"
        " + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}",
        "Llama 3, 3.1, 3.2, 3.3",
    ),
    "gemma": Family(
        ("<start_of_turn>", "<end_of_turn>"),
        "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{% set prefix = messages[0]['content'] | trim"
        " + '\n\n' %}{% set turns = messages[1:] %}{% else %}{% set prefix = '' %}{% set turns = messages %}"
        "{% endif %}{% for message in turns %}{{ '<start_of_turn>' + ('model' if message['role'] == "
        "'assistant' else message['role']) + '\n' + (prefix if loop.first else '') + message['content']"
        " | trim + '<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}"
        "{{ '<start_of_turn>model\n' }}{% endif %}",
        "Gemma 2, Gemma 3",
    ),
    "phi3": Family(
        ("<|user|>", "<|assistant|>", "<|end|>"),
        "{% for message in messages %}{{ '<|' + message['role'] + '|>\n' + message['content'] + '<|end|>\n' }}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}",
        "Phi-3, Phi-3.5",
    ),
    "granite": Family(
        ("<|start_of_role|>", "<|end_of_role|>", "<|end_of_text|>"),
        "{% for message in messages %}{{ '<|start_of_role|>' + message['role'] + '<|end_of_role|>'"
        " + message['content'] + '<|end_of_text|>\n' }}{% endfor %}{% if add_generation_prompt %}"
        "{{ '<|start_of_role|>assistant<|end_of_role|>' }}{% endif %}",
        "Granite 3, Granite 4",
    ),
    "mistral": Family(
        ("[INST]", "[/INST]"),
        "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{% set prefix = messages[0]['content']"
        " + '\n\n' %}{% set turns = messages[1:] %}{% else %}{% set prefix = '' %}"
        "{% set turns = messages %}{% endif %}{% for message in turns %}{% if message['role'] == 'user' %}"
        "{{ '[INST]' + (prefix if loop.first else '') + message['content'] + '[/INST]' }}{% else %}"
        "{{ message['content'] + eos_token }}{% endif %}{% endfor %}",
        "Mistral 7B v0.3, Mistral Nemo, Mistral Small (control-token vocabularies)",
    ),
}
ALIASES = {
    "qwen": "chatml",
    "qwen2": "chatml",
    "smollm": "chatml",
    "llama": "llama3",
    "gemma3": "gemma",
    "phi": "phi3",
    "phi-3": "phi3",
}


@dataclass(frozen=True)
class ChosenTemplate:
    text: str
    name: str  # the family, "model" (the tokenizer's own), or the file's name
    origin: str  # model | family | file

    @property
    def sha256(self) -> str:
        return "sha256:" + hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    def record(self) -> dict[str, str]:
        return {"name": self.name, "origin": self.origin, "sha256": self.sha256, "text": self.text}


def choices() -> str:
    return "; ".join(f"{name} ({family.models})" for name, family in FAMILIES.items())


def _in_vocabulary(tokenizer, marker: str) -> bool:
    ids = tokenizer.convert_tokens_to_ids(marker)
    return (
        ids is not None
        and ids != tokenizer.unk_token_id
        and len(tokenizer.encode(marker, add_special_tokens=False)) == 1
    )


def detect_family(tokenizer) -> str | None:
    for name, family in FAMILIES.items():
        if all(_in_vocabulary(tokenizer, marker) for marker in family.markers):
            return name
    return None


def choose_template(tokenizer, spec: str | None = AUTO, model_name: str = "the model") -> ChosenTemplate:
    """The template a run uses, from `template:`; raises ModelLoadError naming the choices."""
    spec = (spec or AUTO).strip()
    if spec == AUTO:
        own = getattr(tokenizer, "chat_template", None)
        if isinstance(own, str) and own.strip():
            return ChosenTemplate(own, "model", "model")
        family = detect_family(tokenizer)
        if family is None:
            raise ModelLoadError(
                f"{model_name} has no chat template (a base model?) and its vocabulary has none of the "
                f"known families' turn markers; set template: to a Jinja file, or to one of: {choices()}"
            )
        return ChosenTemplate(FAMILIES[family].template, family, "family")
    name = ALIASES.get(spec.lower(), spec.lower())
    if name in FAMILIES:
        missing = [m for m in FAMILIES[name].markers if not _in_vocabulary(tokenizer, m)]
        if missing:
            detected = detect_family(tokenizer)
            hint = f"; its vocabulary fits template: {detected}" if detected else ""
            raise ModelLoadError(
                f"template: {name} needs {', '.join(missing)} as single tokens, and {model_name}'s "
                f"vocabulary lacks them{hint}"
            )
        return ChosenTemplate(FAMILIES[name].template, name, "family")
    path = Path(spec).expanduser()
    if path.suffix in (".jinja", ".j2", ".txt") or path.exists():
        try:
            if path.stat().st_size > MAX_TEMPLATE_BYTES:
                raise ModelLoadError(f"template file {path} is over {MAX_TEMPLATE_BYTES >> 10} KiB; is it a template?")
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ModelLoadError(f"cannot read the template file {path}: {exc}") from exc
        return ChosenTemplate(text, path.name, "file")
    raise ModelLoadError(
        f"template: {spec!r} is neither auto, a family name nor a .jinja file; the families are: {choices()}"
    )


def use_template(tokenizer, chosen: ChosenTemplate) -> None:
    tokenizer.chat_template = chosen.text
    if hasattr(tokenizer, "_buxiban_renderer"):  # data/tokenize.py caches the compiled template
        del tokenizer._buxiban_renderer
