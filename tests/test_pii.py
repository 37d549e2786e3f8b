import json
from collections import Counter
from pathlib import Path

from buxiban.cli import main
from buxiban.data.pii import find_pii, iban_valid, id_number_valid, luhn_valid, redact_text, tax_id_valid

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


def test_taiwanese_phone_numbers_in_their_common_spellings_even_inside_chinese_text():
    for number in (
        "0912-345-678",
        "0912 345 678",
        "0912345678",
        "0912-345678",
        "+886 912 345 678",
        "+886-912-345-678",
        "02-2700-1234",
        "(02)2700-1234",
        "(02) 2700 1234",
        "07-123-4567",
        "+886-2-2700-1234",
    ):
        assert [(f.kind, f.start, f.end) for f in find_pii(f"電話{number}，謝謝")] == [("phone", 2, 2 + len(number))]


def test_taiwanese_id_numbers_pass_only_with_their_check_digit():
    assert id_number_valid("A123456789") and not id_number_valid("A123456788")
    assert id_number_valid("A800000014") and not id_number_valid("A800000015")  # resident, new format
    assert id_number_valid("AC01234567") and not id_number_valid("AC01234568")  # resident, old format
    assert kinds("身分證字號A123456789，居留證號A800000014與AC01234567") == ["id_number"] * 3
    assert kinds("身分證字號A123456788") == []
    assert kinds("型號 XA12345678 與 A1234567890") == []  # embedded in a longer code


def test_company_tax_ids_need_their_label_and_checksum():
    assert tax_id_valid("04595257") and tax_id_valid("22099131") and not tax_id_valid("04595258")
    assert tax_id_valid("12345675")  # seventh digit 7: 28 counts as 1
    text, counts = redact_text("公司統一編號：22099131，統編04595257，VAT No. 04595257")
    assert text == "公司統一編號：[TAX_ID]，統編[TAX_ID]，VAT No. [TAX_ID]" and counts == Counter(tax_id=3)
    assert kinds("統一編號：04595258") == []
    assert kinds("訂單編號 22099131 已出貨") == []  # eight digits without the label are an order number


def test_chinese_prices_dates_and_order_numbers_are_not_personal_data():
    for text in (
        "搬家費用為新台幣 3,800 元，訂金新台幣 1,000 元。",
        "新台幣3,800元",
        "預約日期 2026/12/01 或 2026-12-01 上午 08:00",
        "訂單編號 HF-20261234",
        "訂單 20261201 與 0201",
        "5 噸貨車每趟新台幣 6,500 元，樓層加價每層 300 元",
    ):
        assert kinds(text) == [], text


def test_shipped_examples_hold_no_personal_data():
    for example in sorted(EXAMPLES.parent.iterdir()):
        for name in ("train.jsonl", "test.jsonl", "preferences.jsonl"):
            if (example / name).exists():
                assert kinds((example / name).read_text(encoding="utf-8")) == [], example / name


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
