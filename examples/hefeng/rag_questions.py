"""Write rag_test.jsonl: questions for comparing fine-tuning with RAG on the Hefeng Moving documents in docs/.

The documents in docs/ describe the company as of January 2027; the training data (facts.py) was written
before that, so some facts CHANGED. Three kinds of question, in `metadata.kind`:

- "changed": a fact whose figure or rule changed; the reference is the training data's own sentence with the
  new figure, so exact match rewards a model that answers from the documents in the house style;
- "stable": a fact the documents and the training data agree on;
- "style": a support ticket to route as JSON, the format task fine-tuning teaches and documents do not.

Questions use phrasings held out of train.jsonl. `metadata.source` names the document(s) that state the
answer (relative to docs/): `buxiban rag eval` scores retrieval recall@k against it. It also writes
docs-2026/, the documents as they were when the training data was written (see BEFORE_2027).
Deterministic: `python examples/hefeng/rag_questions.py` rewrites a byte-identical file.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

from facts import ASSISTANT_SYSTEM, FACTS, ROUTER_SYSTEM, TICKET_SITUATIONS
from generate import fresh, route, ticket_text

HERE = Path(__file__).resolve().parent
NEWS = "news/2027-01-price-and-policy-update.md"

# The house-style sentence of every fact that changed on 1 January 2027.
CHANGED = {
    "price_35": "3.5 噸貨車搬家每趟新台幣 4,800 元，含 2 位搬運師傅。",
    "stairs": "沒有電梯的話，2 樓起每層加收新台幣 400 元。",
    "cancel": "搬家日 2 天前取消可全額退還訂金，2 天內取消則訂金不退。",
    "support_hours": "客服每天 08:00 至 22:00 提供服務，國定假日照常。",
    "area": "目前服務台北市、新北市與基隆市。",
    "boxes_free": "每筆訂單免費提供 30 個紙箱。",
    "insurance": "每次搬家都含搬運保險，每筆訂單最高理賠新台幣 150,000 元。",
    "payment": "可用信用卡、LINE Pay、街口支付、Apple Pay 或銀行轉帳付款，不收現金。",
}

# Every document that states the fact; a retrieved chunk from any of them counts as a hit.
SOURCES = {
    "price_small": ["pricing.md"],
    "price_35": ["pricing.md", NEWS],
    "price_5": ["pricing.md"],
    "stairs": ["pricing.md", NEWS],
    "deposit": ["booking-and-cancellation.md"],
    "cancel": ["booking-and-cancellation.md", NEWS],
    "lead_time": ["booking-and-cancellation.md"],
    "moving_hours": ["booking-and-cancellation.md"],
    "support_hours": ["service-area-and-hours.md", NEWS],
    "area": ["service-area-and-hours.md", NEWS],
    "boxes_free": ["packing-materials.txt", NEWS],
    "boxes_extra": ["packing-materials.txt"],
    "piano": ["pricing.md"],
    "insurance": ["insurance-and-claims.html", NEWS],
    "claim": ["insurance-and-claims.html"],
    "payment": ["payment-and-invoices.md", NEWS],
    "invoice": ["payment-and-invoices.md"],
    "weekend": ["pricing.md"],
    "night": ["pricing.md"],
    "disposal": ["extra-services.md"],
    "storage": ["extra-services.md"],
    "estimate": ["booking-and-cancellation.md"],
    "student": ["discounts-and-referrals.txt"],
    "referral": ["discounts-and-referrals.txt"],
}
# docs-2026/: the same documents as they read before the changes (the news item did not exist yet). They
# agree with the training answers, so `buxiban rag augment` can put them into training prompts without
# contradicting the targets. Each replacement must match exactly once, so an edit of docs/ cannot
# silently leave a 2027 figure in the 2026 copy. Chinese paragraphs sit on one line each (a wrapped line
# would be joined with a space), which also keeps these replacements to single lines.
BEFORE_2027 = {
    "pricing.md": [
        ("以下價格自 2027 年 1 月 1 日起適用。", "以下價格自 2026 年 1 月 1 日起適用。"),
        ("3.5 噸貨車搬家每趟新台幣 4,800 元", "3.5 噸貨車搬家每趟新台幣 4,500 元"),
        ("沒有電梯的話，2 樓起每層加收新台幣 400 元。", "沒有電梯的話，2 樓起每層加收新台幣 300 元。"),
        ("（2026 年底以前是每層加收新台幣 300 元。）", "")],
    "booking-and-cancellation.md": [
        ("搬家日 2 天前取消可全額退還訂金，2 天內取消則訂金不退。（2026 年底以前，要在搬家日 3 天前取消才能退還訂金。）",
         "搬家日 3 天前取消可全額退還訂金，3 天內取消則訂金不退。")],
    "insurance-and-claims.html": [
        ("每筆訂單最高理賠新台幣 150,000 元。保費已經包含在搬家費用裡，不需要另外購買。2027 年 1 月 1 日起，理賠上限從新台幣 100,000 元提高。",
         "每筆訂單最高理賠新台幣 100,000 元。保費已經包含在搬家費用裡，不需要另外購買。"),
        ("&copy; 2027", "&copy; 2026")],
    "payment-and-invoices.md": [
        ("可用信用卡、LINE Pay、街口支付、Apple Pay 或銀行轉帳付款，不收現金。Apple Pay 從 2027 年 1 月起開放使用。",
         "可用信用卡、LINE Pay、街口支付或銀行轉帳付款，不收現金。")],
    "packing-materials.txt": [
        ("2027 年 1 月 1 日起適用", "2026 年 1 月 1 日起適用"),
        ("每筆訂單免費提供 30 個紙箱。", "每筆訂單免費提供 20 個紙箱。"),
        ("（2026 年底以前每筆訂單提供 20 個。）", "")],
    "service-area-and-hours.md": [
        ("目前服務台北市、新北市與基隆市。基隆市從 2027 年 1 月起加入服務區域。", "目前只服務台北市與新北市。"),
        ("客服每天 08:00 至 22:00 提供服務，國定假日照常。2027 年起客服時間延長，早上與晚上各多 1 小時，方便上班族下班後聯絡。",
         "客服每天 09:00 至 21:00 提供服務，國定假日照常。")],
    "discounts-and-referrals.txt": [("2027 年 1 月 1 日起適用", "2026 年 1 月 1 日起適用")],
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
        while not fresh(text, taken):
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
    print(f"wrote {write_docs_2026()} documents to examples/hefeng/docs-2026 (before the January 2027 changes)")
    records = build()
    path = HERE / "rag_test.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    kinds = {kind: sum(r["metadata"]["kind"] == kind for r in records) for kind in ("changed", "stable", "style")}
    print(f"wrote {len(records)} questions to {path.relative_to(HERE.parent.parent)}: {kinds}")


if __name__ == "__main__":
    main()
