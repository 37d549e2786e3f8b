"""Tool calls are trained through templates that render them, and refused by line where a template
would drop them: nothing a user wrote is trained as an empty answer without a word."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from buxiban.data.records import iter_chat_jsonl
from buxiban.data.tokenize import IGNORE_INDEX, encode_many
from buxiban.errors import DataError
from buxiban.models.templates import choose_template, use_template

from conftest import write_jsonl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
from model_assets import assets_dir  # noqa: E402

ASSETS = assets_dir()
# Mistral templates take 9-character alphanumeric call ids, as Mistral's API makes them
CALL = {"id": "abc123456", "type": "function", "function": {"name": "lookup_plan", "arguments": '{"plan": "City"}'}}
RECORD = {
    "messages": [
        {"role": "user", "content": "How much is the City plan?"},
        {"role": "assistant", "content": "", "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "abc123456", "content": '{"price": "NT$690"}'},
        {"role": "assistant", "content": "The City plan costs NT$690 per month."},
    ]
}


def tokenizer_with(tokenizer_name: str, template: str):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(ASSETS / "tokenizers" / tokenizer_name))
    tokenizer.chat_template = None
    chosen = choose_template(tokenizer, template)
    use_template(tokenizer, chosen)
    tokenizer.buxiban_template = chosen
    return tokenizer


def conversation(tmp_path):
    [(parsed, problems)] = list(iter_chat_jsonl(write_jsonl(tmp_path / "tools.jsonl", [RECORD])))
    assert not problems
    return parsed


@pytest.mark.parametrize(
    "tokenizer_name, template",
    [
        ("qwen2", "Qwen-Qwen2.5-7B-Instruct.jinja"),
        ("llama3", "meta-llama-Llama-3.1-8B-Instruct.jinja"),
        ("llama2", "mistralai-Mistral-Nemo-Instruct-2407.jinja"),
    ],
)
def test_a_call_only_turn_trains_the_call(tokenizer_name, template, tmp_path):
    tokenizer = tokenizer_with(tokenizer_name, str(ASSETS / "templates" / template))
    parsed = conversation(tmp_path)
    assert parsed.messages[1]["tool_calls"] == [CALL]  # kept from the file for the template
    [encoded] = encode_many(tokenizer, [parsed.messages], [parsed.where])
    trained = tokenizer.decode([label for label in encoded.labels if label != IGNORE_INDEX])
    assert "lookup_plan" in trained and "City" in trained  # the call is what the model learns
    assert "NT$690 per month" in trained and '"price"' not in trained  # the tool's result is context


def test_a_template_without_tools_is_refused_by_line_and_field(tmp_path):
    tokenizer = tokenizer_with("qwen2", "chatml")
    parsed = conversation(tmp_path)
    with pytest.raises(DataError, match="'chatml' does not render tool calls") as refused:
        encode_many(tokenizer, [parsed.messages], [parsed.where])
    [problem] = refused.value.problems
    assert problem.where.endswith("tools.jsonl:1") and problem.field == "messages[1].tool_calls[0].function.name"
    assert "template" in problem.fix


def test_a_template_that_re_renders_the_call_turn_keeps_it_as_context_and_says_so(tmp_path):
    # Qwen3 writes an empty reasoning block into the turn being answered and none into earlier ones, so
    # the call turn, once a result follows, is not what the model saw when it made the call
    from buxiban.data.check import check_file

    tokenizer = tokenizer_with("qwen2", str(ASSETS / "templates" / "Qwen-Qwen3-0.6B.jinja"))
    parsed = conversation(tmp_path)
    [encoded] = encode_many(tokenizer, [parsed.messages], [parsed.where])
    assert encoded.context_turns == 1
    report = check_file(tmp_path / "tools.jsonl", tokenizer)
    [finding] = [f for f in report.findings if "context, not trained" in f.message]
    assert finding.count == 1
