"""Every real chat template llama.cpp ships, over the real tokenizer of its family: buxiban either
trains and serves it correctly or refuses it with a clear error naming the template and the fix.

Correct means: the trained tokens of the answer are the answer plus what ends the turn (no role
header, no user or system text, no empty reasoning block); the prompt a server renders is the
training prefix token for token; the end of the turn is a token generation stops on.

The templates and vocabularies come from the llama-cpp-python source distribution on PyPI,
fetched and converted once by scripts/model_assets.py (scripts/setup.sh runs it)."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from buxiban.data.tokenize import IGNORE_INDEX, encode_many, encode_prompt, end_of_turn_ids
from buxiban.errors import DataError
from buxiban.models.generate import stop_token_ids
from buxiban.models.templates import choose_template, use_template

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from model_assets import assets_dir  # noqa: E402

ASSETS = assets_dir()
TEMPLATES = sorted((ASSETS / "templates").glob("*.jinja")) if (ASSETS / "templates").is_dir() else []
# the family tokenizer each template is paired with: the first fragment found in its name wins
TOKENIZER_OF = [
    ("Qwen3.5", "qwen35"),
    ("DeepSeek-R1-Distill-Llama", "llama3"),
    ("DeepSeek-R1-Distill-Qwen", "qwen2"),
    ("Qwen", "qwen2"),
    ("QwQ", "qwen2"),
    ("Llama-3", "llama3"),
    ("llama-3", "llama3"),
    ("functionary", "llama3"),
    ("SmolLM3", "llama3"),
    ("Phi-3", "phi3"),
    ("Apriel", "phi3"),
    ("deepseek", "deepseek"),
    ("gemma", "gemma3"),
    ("istral", "llama2"),
    ("Devstral", "llama2"),
]
SYSTEM, QUESTION, ANSWER = "Reply in one line.", "What is the deposit for the City plan?", "The deposit is NT$3,000."
FOLLOW_UP, SECOND = "And the monthly price?", "It costs NT$690 per month."
SINGLE = [
    {"role": "system", "content": SYSTEM},
    {"role": "user", "content": QUESTION},
    {"role": "assistant", "content": ANSWER},
]
MULTI = SINGLE + [{"role": "user", "content": FOLLOW_UP}, {"role": "assistant", "content": SECOND}]


def tokenizer_name(template: Path) -> str:
    return next((tokenizer for fragment, tokenizer in TOKENIZER_OF if fragment in template.stem), "qwen2")


@functools.cache
def family_tokenizer(name: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(ASSETS / "tokenizers" / name))


def test_the_suite_has_what_the_issue_asks_for():
    assert len(TEMPLATES) >= 30, f"run scripts/model_assets.py (found {len(TEMPLATES)} templates in {ASSETS})"
    assert len({tokenizer_name(t) for t in TEMPLATES}) >= 6
    assert (ASSETS / "LICENSE").is_file() and (ASSETS / "tokenizers" / "gemma3").is_dir()


def trained_runs(encoded) -> list[list[int]]:
    runs, current = [], []
    for token, label in zip(encoded.input_ids, encoded.labels):
        if label != IGNORE_INDEX:
            current.append(token)
        elif current:
            runs.append(current)
            current = []
    return runs + ([current] if current else [])


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda path: path.stem)
def test_template_trains_what_it_serves_or_is_refused_by_name(template):
    tokenizer = family_tokenizer(tokenizer_name(template))
    chosen = choose_template(tokenizer, str(template))
    use_template(tokenizer, chosen)
    tokenizer.buxiban_template = chosen
    for conversation in (SINGLE, MULTI):
        try:
            [encoded] = encode_many(tokenizer, [conversation], ["train.jsonl:1"])
        except DataError as refused:  # refused: the message names the template, the line and the fix
            assert repr(template.name) in str(refused)
            assert all(problem.fix and "train.jsonl:1" in str(problem) for problem in refused.problems)
            return
        runs = trained_runs(encoded)
        assert runs, "nothing trained"
        last = tokenizer.decode(runs[-1])
        answer = conversation[-1]["content"]
        assert answer in last, f"the answer is not what is trained: {last!r}"
        for foreign in (SYSTEM, QUESTION, FOLLOW_UP):
            assert all(foreign not in tokenizer.decode(run) for run in runs), f"{foreign!r} is trained"
        assert "<think>" not in last, f"an empty reasoning block is trained: {last!r}"
        assert last[last.index(answer) + len(answer) :].strip(), (
            "nothing after the answer: the model cannot learn to stop"
        )
        labels = encoded.labels
        first = max(
            i for i, label in enumerate(labels) if label != IGNORE_INDEX and (i == 0 or labels[i - 1] == IGNORE_INDEX)
        )
        assert encode_prompt(tokenizer, conversation[:-1]) == encoded.input_ids[:first], (
            "served prompt != trained prefix"
        )
        ends = end_of_turn_ids(tokenizer)
        if ends:  # a special token ends the turn: it is trained, and generation stops on it
            assert set(ends) & set(runs[-1])
            assert set(ends) <= set(stop_token_ids(SimpleNamespace(generation_config=None), tokenizer))
