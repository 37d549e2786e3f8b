"""Write the Hefeng Moving (禾豐搬家) example data set: train, held-out test and preference pairs.

Deterministic (one seeded RNG, no clock, no network): `python examples/hefeng/generate.py` rewrites
byte-identical files. The test set asks about the same company facts as the training set but only in
phrasings held out from training, and routes tickets whose text never appears in training, so a score
on it measures what the model learned, not what it memorized verbatim.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from facts import (ASSISTANT_SYSTEM, DISTRICTS, FACTS, GENERIC_ANSWERS, NAMES, ROUTER_SYSTEM, TICKET_CLOSERS,
                   TICKET_CONTEXTS, TICKET_OPENERS, TICKET_SITUATIONS)

HERE = Path(__file__).resolve().parent
HELD_OUT_PHRASINGS = 2
TWO_TURN_CONVERSATIONS = 70
TRAIN_TICKETS = 200  # with 110 (4-5 per situation) the router got the priority wrong on 11 of 24 new tickets
PREFERENCE_PAIRS = 80
# How a Taiwanese customer chains a second question onto the first; both read naturally before any
# phrasing in facts.py, including those that already start with 請問.
FOLLOW_UP_CONNECTORS = ["另外，", "還有，"]


def chat(system: str, *turns: str, category: str) -> dict:
    """`metadata.category` lets `buxiban eval` group failures by task."""
    messages = [{"role": "system", "content": system}]
    for index, text in enumerate(turns):
        messages.append({"role": "user" if index % 2 == 0 else "assistant", "content": text})
    return {"messages": messages, "metadata": {"category": category}}


def ticket_text(rng: random.Random, situation: str) -> str:
    # Order numbers look like HF-20261234 (year and a serial), as on the company's booking e-mails.
    fill = {"name": rng.choice(NAMES), "district": rng.choice(DISTRICTS), "order": f"HF-2026{rng.randint(1000, 9999)}"}
    parts = [rng.choice(TICKET_OPENERS), rng.choice(TICKET_CONTEXTS).format(**fill), situation,
             rng.choice(TICKET_CLOSERS).format(**fill)]
    return "".join(parts)  # Chinese runs sentences together without spaces


def fresh(text: str, used: set[str]) -> bool:
    """Whether a ticket is new. An empty opener, context or closer makes one ticket a substring of another
    (the same words minus a greeting), which a test must not count as unseen, so containment counts too."""
    return not any(text in other or other in text for other in used)


def route(team: str, priority: str) -> str:
    return json.dumps({"team": team, "priority": priority})


def build(seed: int = 20261121) -> dict[str, list[dict]]:
    rng = random.Random(seed)
    train: list[dict] = []
    test: list[dict] = []
    train_phrasings: dict[str, list[str]] = {}
    answers = {key: answer for key, answer, _ in FACTS}
    for key, answer, phrasings in FACTS:
        order = list(phrasings)
        rng.shuffle(order)
        held_out, seen = order[:HELD_OUT_PHRASINGS], order[HELD_OUT_PHRASINGS:]
        train_phrasings[key] = seen
        train.extend(chat(ASSISTANT_SYSTEM, question, answer, category="faq") for question in seen)
        test.extend(chat(ASSISTANT_SYSTEM, question, answer, category="faq") for question in held_out)
    keys = list(answers)
    pairs_seen: set[tuple[str, str]] = set()
    while len(pairs_seen) < TWO_TURN_CONVERSATIONS:
        first, second = rng.sample(keys, 2)
        if (first, second) in pairs_seen:
            continue
        pairs_seen.add((first, second))
        train.append(chat(ASSISTANT_SYSTEM, rng.choice(train_phrasings[first]), answers[first],
                          rng.choice(FOLLOW_UP_CONNECTORS) + rng.choice(train_phrasings[second]), answers[second],
                          category="faq-follow-up"))
    used_tickets: set[str] = set()
    for count, into in ((TRAIN_TICKETS, train), (len(TICKET_SITUATIONS), test)):
        situations = [TICKET_SITUATIONS[i % len(TICKET_SITUATIONS)] for i in range(count)]
        for team, priority, situation in situations:
            text = ticket_text(rng, situation)
            while not fresh(text, used_tickets):
                text = ticket_text(rng, situation)
            used_tickets.add(text)
            into.append(chat(ROUTER_SYSTEM, text, route(team, priority), category="ticket-router"))
    rng.shuffle(train)
    preferences = []
    candidates = [(key, question) for key in keys for question in train_phrasings[key]]
    for key, question in rng.sample(candidates, PREFERENCE_PAIRS):  # distinct pairs: a repeat teaches nothing
        preferences.append({
            "input": {"messages": [{"role": "system", "content": ASSISTANT_SYSTEM}, {"role": "user", "content": question}]},
            "preferred_output": [{"role": "assistant", "content": answers[key]}],
            "non_preferred_output": [{"role": "assistant", "content": GENERIC_ANSWERS[key]}],
        })
    return {"train": train, "test": test, "preferences": preferences}


def main() -> None:
    for name, records in build().items():
        path = HERE / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
        print(f"wrote {len(records):4d} records to {path.relative_to(HERE.parent.parent)}")


if __name__ == "__main__":
    main()
