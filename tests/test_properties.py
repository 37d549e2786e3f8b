"""Property-based: whatever bytes or JSON values arrive, the record parsers only ever report
problems or raise the project's own DataError, never anything else."""

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from buxiban.data.preference import parse_preference
from buxiban.data.records import load_chat_jsonl, read_chat_jsonl, validate_chat_record
from buxiban.errors import DataError

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "messages",
                    "role",
                    "content",
                    "weight",
                    "name",
                    "x",
                    "prompt",
                    "chosen",
                    "rejected",
                    "input",
                    "preferred_output",
                    "non_preferred_output",
                ]
            )
            | st.text(max_size=5),
            children,
            max_size=4,
        )
    ),
    max_leaves=20,
)
roles = st.sampled_from(["system", "user", "assistant", "tool", "asistant", "", "USER"])
messages = st.lists(
    st.fixed_dictionaries({"role": roles, "content": st.text(max_size=30) | st.none() | st.integers()}), max_size=5
)
near_records = st.fixed_dictionaries({"messages": messages}) | json_values
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FAST
@given(near_records)
def test_validation_returns_problems_never_raises(record):
    problems = validate_chat_record(record, "f.jsonl:1")
    assert all(p.where == "f.jsonl:1" and p.message for p in problems)


@FAST
@given(near_records)
def test_preference_parser_returns_problems_never_raises(record):
    pair, problems = parse_preference(record, "p.jsonl", 1)
    assert (pair is None) == bool(problems)


@FAST
@given(st.lists(st.binary(max_size=60) | near_records.map(lambda r: json.dumps(r).encode()), max_size=8))
def test_any_file_content_only_raises_data_error(tmp_path, lines):
    path = tmp_path / "data.jsonl"
    path.write_bytes(b"\n".join(lines))
    conversations, problems = read_chat_jsonl(path)
    assert all(c.messages[-1]["role"] == "assistant" for c in conversations)
    try:
        load_chat_jsonl(path)
    except DataError as exc:
        assert exc.problems
