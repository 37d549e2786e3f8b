import json
from collections import Counter
from pathlib import Path

from buxiban.cli import main
from buxiban.data.pii import find_pii, iban_valid, luhn_valid, redact_text

from conftest import chat_record, write_jsonl

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "yunshan"


def kinds(text):
    return [f.kind for f in find_pii(text)]


def test_each_kind_is_found():
    assert kinds("write to mei.lin+bikes@example.com.tw today") == ["email"]
    assert kinds("call +886 912 345 678 or 0912-345-678 or 02-2700-1234 or 0912345678") == ["phone"] * 4
    assert kinds("card 4111 1111 1111 1111 please") == ["card"]
    assert kinds("pay to GB82 WEST 1234 5698 7654 32") == ["iban"]
    assert kinds("key sk-proj-abcdefghijklmnopqrstuvwxyz123456") == ["secret"]
    assert kinds("token ghp_" + "A1b2" * 9) == ["secret"]
    assert kinds("AKIAIOSFODNN7EXAMPLE and hf_" + "x" * 34) == ["secret", "secret"]
    assert kinds("Authorization: Bearer abcdefghijklmnopqrstuvwxyz012345") == ["secret"]


def test_checksums_rule_out_look_alikes():
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    assert kinds("card 4111 1111 1111 1112") == []
    assert iban_valid("GB82 WEST 1234 5698 7654 32") and not iban_valid("GB83 WEST 1234 5698 7654 32")
    assert kinds("pay to GB83 WEST 1234 5698 7654 32") == []


def test_prices_times_ids_and_decimals_are_not_personal_data():
    for text in (
        "The Commuter plan costs NT$1,190 per month.",
        "Open 08:00 to 21:00.",
        "bike YS-1234",
        "pi is 3.14159265358",
        "order 2026-11-21",
        "version 10.2.3.4",
        "80 kg of cargo",
    ):
        assert kinds(text) == [], text


def test_shipped_examples_hold_no_personal_data():
    for name in ("train.jsonl", "test.jsonl", "preferences.jsonl"):
        assert kinds((EXAMPLES / name).read_text(encoding="utf-8")) == [], name


def test_redact_text_masks_and_counts():
    text, counts = redact_text("Mail a@b.io, call 0912-345-678, card 4111-1111-1111-1111.")
    assert text == "Mail [EMAIL], call [PHONE], card [CARD]."
    assert counts == Counter(email=1, phone=1, card=1)


def test_check_reports_pii_with_lines_and_redact_writes_a_clean_copy(tmp_path, capsys):
    clean = chat_record("Is there a deposit?", "The deposit is NT$3,000.")
    leaky = chat_record("My e-mail is ann@example.com and phone 0912-345-678", "Thanks, Ann.")
    source = write_jsonl(tmp_path / "in.jsonl", [clean, leaky, "{broken json", clean])
    assert main(["data", "check", str(source), "--model", "/nonexistent", "--json"]) == 1  # the broken line
    report = json.loads(capsys.readouterr().out)
    assert report["stats"]["personal_data"] == {"email": 1, "phone": 1}
    personal = [f for f in report["findings"] if f["kind"] == "personal data"]
    assert {tuple(f["where"]) for f in personal} == {(f"{source}:2",)}

    target = tmp_path / "out.jsonl"
    assert main(["data", "redact", str(source), str(target)]) == 0
    lines = target.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 4 and lines[2] == "{broken json"  # nothing lost, the bad line kept as it was
    assert json.loads(lines[1])["messages"][1]["content"] == "My e-mail is [EMAIL] and phone [PHONE]"
    assert lines[0] == json.dumps(clean, ensure_ascii=False)
    assert "masked 1 email, 1 phone on 1 line(s)" in capsys.readouterr().out
