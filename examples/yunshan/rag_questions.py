"""Write rag_test.jsonl: questions for comparing fine-tuning with RAG on the Yunshan documents in docs/.

The documents in docs/ describe the company as of January 2027; the training data (facts.py) was written
before that, so some facts CHANGED. Three kinds of question, in `metadata.kind`:

- "changed": a fact whose figure or rule changed; the reference is the training data's own sentence with the
  new figure, so exact match rewards a model that answers from the documents in the house style;
- "stable": a fact the documents and the training data agree on;
- "style": a support ticket to route as JSON, the format task fine-tuning teaches and documents do not.

Questions use phrasings held out of train.jsonl. `metadata.source` names the document(s) that state the
answer (relative to docs/): `buxiban rag eval` scores retrieval recall@k against it. It also writes
docs-2026/, the documents as they were when the training data was written (see BEFORE_2027).
Deterministic: `python examples/yunshan/rag_questions.py` rewrites a byte-identical file.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

from facts import ASSISTANT_SYSTEM, FACTS, ROUTER_SYSTEM, TICKET_SITUATIONS
from generate import route, ticket_text

HERE = Path(__file__).resolve().parent
NEWS = "news/2027-01-price-and-policy-update.html"

# The house-style sentence of every fact that changed on 1 January 2027.
CHANGED = {
    "price_city": "The City plan costs NT$750 per month.",
    "deposit": "The deposit is NT$2,000, refunded within 5 working days after you return the bike.",
    "cancel": "Give us 7 days' notice in the app under Plan > Cancel.",
    "support_hours": "Support is open 07:00 to 23:00 every day, including public holidays.",
    "battery_swap": "Swap your battery for free at any of our 31 Swap Points; the app shows the nearest one.",
    "student": "Students get 20% off any plan with a valid student ID.",
    "referral": "You and your friend each get NT$500 credit when they subscribe with your code.",
    "theft_cover": "Theft cover costs NT$150 per month and lowers your theft fee to NT$2,000.",
    "payment": "We accept credit cards, LINE Pay, JKO Pay and Apple Pay; cash is not accepted.",
}

# Every document that states the fact; a retrieved chunk from any of them counts as a hit.
SOURCES = {
    "price_city": ["plans-and-pricing.md", NEWS],
    "price_commuter": ["plans-and-pricing.md"],
    "price_cargo": ["plans-and-pricing.md"],
    "deposit": ["deposit-and-payments.md", NEWS],
    "minimum_term": ["plans-and-pricing.md", "cancel-pause-return.md"],
    "cancel": ["cancel-pause-return.md", NEWS],
    "repair_time": ["customer-support.html"],
    "support_hours": ["customer-support.html", NEWS],
    "battery_swap": ["batteries-and-swap-points.md", "swap-point-list.md"],
    "student": ["discounts-and-referrals.txt", NEWS],
    "referral": ["discounts-and-referrals.txt", NEWS],
    "pause": ["cancel-pause-return.md"],
    "theft_cover": ["theft-and-damage.html", NEWS],
    "theft_fee": ["theft-and-damage.html"],
    "late_fee": ["deposit-and-payments.md"],
    "helmet": ["our-bikes.md"],
    "switch_plan": ["plans-and-pricing.md"],
    "delivery": ["getting-started.txt"],
    "payment": ["deposit-and-payments.md", NEWS],
    "cargo_load": ["our-bikes.md"],
    "range": ["batteries-and-swap-points.md"],
    "age": ["getting-started.txt"],
    "area": ["customer-support.html"],
    "damage": ["theft-and-damage.html"],
    "test_ride": ["getting-started.txt"],
    "return": ["cancel-pause-return.md"],
}
# docs-2026/: the same documents as they read before the changes (the news item did not exist yet). They
# agree with the training answers, so `buxiban rag augment` can put them into training prompts without
# contradicting the targets. Each replacement must match exactly once, so an edit of docs/ cannot
# silently leave a 2027 figure in the 2026 copy.
BEFORE_2027 = {
    "plans-and-pricing.md": [("valid from 1 January 2027", "valid from 1 January 2026"),
                             ("The City plan costs NT$750 per month.", "The City plan costs NT$690 per month.")],
    "deposit-and-payments.md": [
        ("The deposit is NT$2,000, refunded within 5 working days after you return the bike. We lowered the\n"
         "deposit from NT$3,000 and shortened the refund time on 1 January 2027; subscribers who paid the old\n"
         "deposit get the difference back automatically.",
         "The deposit is NT$3,000, refunded within 10 working days after you return the bike."),
        ("We accept credit cards, LINE Pay, JKO Pay and Apple Pay; cash is not accepted. Apple Pay was added in\n"
         "January 2027.", "We accept credit cards, LINE Pay and JKO Pay; cash is not accepted.")],
    "cancel-pause-return.md": [
        ("Give us 7 days' notice in the app under Plan > Cancel. The notice period was 14 days until the end of\n"
         "2026.", "Give us 14 days' notice in the app under Plan > Cancel.")],
    "customer-support.html": [
        ("Support is open 07:00 to 23:00 every day, including public holidays. We extended our hours in\n"
         "     January 2027 so that early and late commuters can reach us.",
         "Support is open 08:00 to 21:00 every day, including public holidays."),
        ("&copy; 2027", "&copy; 2026")],
    "batteries-and-swap-points.md": [("any of our 31 Swap Points", "any of our 23 Swap Points")],
    "discounts-and-referrals.txt": [
        ("valid from 1 January 2027", "valid from 1 January 2026"),
        ("Students get 20% off", "Students get 15% off"),
        (" (The student\ndiscount was 15% until 31 December 2026.)", ""),
        ("each get NT$500 credit", "each get NT$300 credit")],
    "theft-and-damage.html": [("Theft cover costs NT$150 per month", "Theft cover costs NT$120 per month")],
    "swap-point-list.md": [
        ("We run 31 Swap Points: 8 more than in 2026.", "We run 23 Swap Points."),
        ("- Neihu: Neihu Technology Park, Donghu, Wende\n", ""), ("Banqiao Station, Fuzhong, Xinpu", "Banqiao Station, Fuzhong"),
        ("- Xindian: Dapinglin, Qizhang\n- Tucheng: Yongning, Haishan\n", "")],
}
CHANGED_PHRASINGS = 2
STABLE_PHRASINGS = 1
STYLE_TICKETS = 12


def record(system: str, question: str, answer: str, **metadata) -> dict:
    return {"messages": [{"role": "system", "content": system}, {"role": "user", "content": question},
                         {"role": "assistant", "content": answer}], "metadata": metadata}


def seen_texts(*names: str) -> set[str]:
    texts = set()
    for name in names:
        for line in (HERE / name).read_text(encoding="utf-8").splitlines():
            texts.update(m["content"] for m in json.loads(line)["messages"] if m["role"] == "user")
    return texts


def build(seed: int = 2027) -> list[dict]:
    trained = seen_texts("train.jsonl")
    records = []
    for key, answer, phrasings in FACTS:
        held_out = [p for p in phrasings if p not in trained]
        kind = "changed" if key in CHANGED else "stable"
        count = CHANGED_PHRASINGS if key in CHANGED else STABLE_PHRASINGS
        for question in held_out[:count]:
            records.append(record(ASSISTANT_SYSTEM, question, CHANGED.get(key, answer), kind=kind,
                                  category="faq", fact=key, source=SOURCES[key]))
    rng = random.Random(seed)
    taken = seen_texts("train.jsonl", "test.jsonl")
    for team, priority, situation in rng.sample(TICKET_SITUATIONS, STYLE_TICKETS):
        text = ticket_text(rng, situation)
        while text in taken:
            text = ticket_text(rng, situation)
        taken.add(text)
        records.append(record(ROUTER_SYSTEM, text, route(team, priority), kind="style", category="ticket-router",
                              source=["ticket-routing.md"]))
    return records


def write_docs_2026(source: Path = HERE / "docs", target: Path = HERE / "docs-2026") -> int:
    if target.exists():
        shutil.rmtree(target)
    written = 0
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source).as_posix()
        if not path.is_file() or relative.startswith("news/"):
            continue
        text = path.read_text(encoding="utf-8")
        for new, old in BEFORE_2027.get(relative, []):
            if text.count(new) != 1:
                raise SystemExit(f"{path}: expected {new!r} once, found it {text.count(new)} times; update BEFORE_2027")
            text = text.replace(new, old)
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        (target / relative).write_text(text, encoding="utf-8")
        written += 1
    return written


def main() -> None:
    print(f"wrote {write_docs_2026()} documents to examples/yunshan/docs-2026 (before the January 2027 changes)")
    records = build()
    path = HERE / "rag_test.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    kinds = {kind: sum(r["metadata"]["kind"] == kind for r in records) for kind in ("changed", "stable", "style")}
    print(f"wrote {len(records)} questions to {path.relative_to(HERE.parent.parent)}: {kinds}")


if __name__ == "__main__":
    main()
