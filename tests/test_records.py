import json

from buxiban.cli import main
from buxiban.data.records import read_chat_jsonl

from conftest import chat_record, write_jsonl

GOOD = json.dumps(chat_record("Hi", "Hello."))

# (line content, expected fragment of the problem, expected field path)
MISTAKES = [
    ('["not", "an", "object"]', "is a JSON list, not an object", ""),
    ('{"conversation": []}', "unknown key 'conversation'", "conversation"),
    ('{"messages": "hello"}', "must be a non-empty list", "messages"),
    ('{"messages": [{"content": "Hi"}, {"role": "assistant", "content": "Hello."}]}', "is missing", "messages[0].role"),
    (
        '{"messages": [{"role": "user"}, {"role": "assistant", "content": "Hello."}]}',
        "is missing",
        "messages[0].content",
    ),
    (
        '{"messages": [{"role": "user", "content": "Hi", "mood": "happy"}, {"role": "assistant", "content": "Hello."}]}',
        "unknown key 'mood'",
        "messages[0]",
    ),
    (
        '{"messages": [{"role": "user", "content": "Hi"}, {"role": "asistant", "content": "Hello."}]}',
        "did you mean 'assistant'?",
        "messages[1].role",
    ),
    (
        '{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": ""}]}',
        "is empty",
        "messages[1].content",
    ),
    (
        '{"messages": [{"role": "system", "content": "Be nice."}, {"role": "user", "content": "Hi"}]}',
        "has no assistant message",
        "messages",
    ),
    (
        '{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}, '
        '{"role": "user", "content": "Bye"}]}',
        "not the assistant",
        "messages[2]",
    ),
    ('{"messages": [{"role": "user", "content": "Hi"}', "is not valid JSON", ""),
    (
        '{"messages": [{"role": "user", "content": 42}, {"role": "assistant", "content": "Hello."}]}',
        "must be a string",
        "messages[0].content",
    ),
    (
        '{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello.", "weight": 2}]}',
        "weight is 0 or 1",
        "messages[1].weight",
    ),
]


def write_bad_file(tmp_path):
    lines = [GOOD]
    for content, _, _ in MISTAKES:
        lines.append(content)
        lines.append(GOOD)
    path = tmp_path / "bad.jsonl"
    body = "\n".join(lines).encode() + b"\n" + b'{"messages": "\xff\xfe broken"}\n'
    path.write_bytes(body)
    return path, len(lines) + 1


def test_every_mistake_is_reported_with_its_line_and_field(tmp_path):
    path, invalid_utf8_line = write_bad_file(tmp_path)
    conversations, problems = read_chat_jsonl(path)
    assert len(conversations) == len(MISTAKES) + 1  # the good lines between the bad ones all survive
    for number, (_, fragment, field) in enumerate(MISTAKES):
        line = 2 + 2 * number
        found = [p for p in problems if p.where == f"{path}:{line}"]
        assert found, f"nothing reported for line {line}"
        text = " ".join(str(p) for p in found)
        assert fragment in text, (line, text)
        assert field in {p.field for p in found}, (line, [p.field for p in found])
    utf8 = [p for p in problems if p.where == f"{path}:{invalid_utf8_line}"]
    assert utf8 and "not valid UTF-8" in utf8[0].message
    assert all(p.fix for p in problems), "every problem says how to fix it"


def test_cli_check_exits_1_and_prints_every_line(tmp_path, capsys):
    path, _ = write_bad_file(tmp_path)
    assert main(["data", "check", str(path)]) == 1
    out = capsys.readouterr().out
    for number in range(len(MISTAKES)):
        assert f"{path}:{2 + 2 * number}:" in out


def test_empty_file_is_an_error(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n  \n")
    _, problems = read_chat_jsonl(path)
    assert [p.message for p in problems] == ["is empty"]


def test_bom_crlf_and_chinese_are_fine(tmp_path):
    record = json.dumps(chat_record("營業時間?", "每天 08:00 到 21:00。"), ensure_ascii=False)
    path = tmp_path / "windows.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + (record + "\r\n" + record + "\r\n").encode("utf-8"))
    conversations, problems = read_chat_jsonl(path)
    assert problems == []
    assert [c.line for c in conversations] == [1, 2]
    assert conversations[0].messages[-1]["content"] == "每天 08:00 到 21:00。"


def test_text_parts_are_joined_and_weight_kept(tmp_path):
    record = {
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}]},
            {"role": "assistant", "content": "Draft.", "weight": 0},
            {"role": "user", "content": "Again"},
            {"role": "assistant", "content": "Final."},
        ]
    }
    conversations, problems = read_chat_jsonl(write_jsonl(tmp_path / "parts.jsonl", [record]))
    assert problems == []
    messages = conversations[0].messages
    assert messages[0]["content"] == "Hi there"
    assert [m.get("weight") for m in messages] == [None, 0, None, 1]


def test_problem_lists_keep_the_first_ones_and_count_the_rest():
    from buxiban.errors import DataError, Problem, Problems

    problems = Problems(keep=3)
    problems.extend(Problem(f"f.jsonl:{line}", "is not valid JSON") for line in range(1, 1001))
    assert len(problems) == 1000 and [p.where for p in problems] == ["f.jsonl:1", "f.jsonl:2", "f.jsonl:3"]
    assert problems.unlisted == 997 and problems  # truthy: there are problems
    error = DataError("f.jsonl: 1000 problem(s)", problems)
    assert str(error).endswith("f.jsonl:3: is not valid JSON\n  … and 997 more")
