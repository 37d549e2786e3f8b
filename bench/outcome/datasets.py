"""Held-out data sets besides the shipped examples, for measuring defaults, DPO and mixing
(bench/outcome/grid.py). The automatic hyperparameters were chosen while harbor and catalog were being
measured; pickup was written after they were fixed, so it alone is untouched by them:

- harbor: support tickets of a fictional fibre provider routed to one line of JSON
  ({"category": ..., "urgency": ...}); the test tickets describe the same 30 situations in phrasings
  never trained on.
- catalog: a synthetic parts catalogue (random part codes and prices), asked in 6 phrasings of which
  the test uses one or two held out per part: it measures facts memorized, not a format.
- pickup: courier pickup requests copied and normalized into JSON (pickup.py), written before any run.

Each gets train.jsonl, test.jsonl and preferences.jsonl (the right answer preferred over a plausible
wrong one). Deterministic: `python bench/outcome/datasets.py` rewrites byte-identical files.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pickup

HERE = Path(__file__).resolve().parent / "data"
HARBOR_SYSTEM = (
    "You route Harbor Fiber support tickets. Reply with JSON only: "
    '{"category": "billing|outage|installation|cancellation|equipment", "urgency": "high|normal|low"}.'
)
CATALOG_SYSTEM = "You are the parts desk of Kestrel Bikes. Answer with the part code and price only."

# category, urgency, six phrasings of the same situation
SITUATIONS = [
    (
        "billing",
        "normal",
        [
            "I was charged twice this month",
            "my bill shows the same charge two times",
            "there's a duplicate payment on my statement",
            "you took the monthly fee twice",
            "the invoice lists my plan twice",
            "I see two identical charges for one month",
        ],
    ),
    (
        "billing",
        "low",
        [
            "can I get my invoice by email instead of paper",
            "please switch my bills to e-invoice",
            "I'd like paperless billing",
            "stop mailing me paper bills please",
            "how do I receive the invoice electronically",
            "send my statements to my inbox instead",
        ],
    ),
    (
        "billing",
        "high",
        [
            "my card was charged 50,000 dollars by mistake",
            "you billed me a huge wrong amount today",
            "an enormous charge just emptied my account",
            "I got billed ten times my plan price",
            "a massive incorrect charge hit my bank account",
            "the payment taken is absurdly large",
        ],
    ),
    (
        "billing",
        "normal",
        [
            "the discount I was promised is missing",
            "my loyalty discount is not on the bill",
            "the promo price didn't apply",
            "I'm paying full price despite the offer",
            "where is the 20% discount you promised",
            "my bill ignores the promotion",
        ],
    ),
    (
        "billing",
        "low",
        [
            "what payment methods do you accept",
            "can I pay with a credit card",
            "is direct debit possible",
            "which ways can I pay my bill",
            "do you take bank transfers",
            "how can I set up automatic payment",
        ],
    ),
    (
        "billing",
        "normal",
        [
            "I was charged after I cancelled",
            "you keep billing me though I left",
            "there's a charge after my cancellation date",
            "my closed account still gets billed",
            "money was taken after I ended the contract",
            "why am I billed post-cancellation",
        ],
    ),
    (
        "outage",
        "high",
        [
            "the internet is completely down since this morning",
            "no connection at all for hours",
            "my fibre is dead and I work from home",
            "nothing connects, the whole line is out",
            "total outage, not a single device gets online",
            "the service dropped entirely today",
        ],
    ),
    (
        "outage",
        "high",
        [
            "the whole building lost internet",
            "all neighbours and I have no service",
            "the entire street is offline",
            "our block has had no internet since noon",
            "every flat here lost the connection",
            "the outage covers the whole neighbourhood",
        ],
    ),
    (
        "outage",
        "normal",
        [
            "the connection drops every evening",
            "internet cuts out for a minute each night",
            "the line disconnects now and then",
            "my service keeps dropping briefly",
            "intermittent disconnections most days",
            "the connection flickers off randomly",
        ],
    ),
    (
        "outage",
        "normal",
        [
            "speeds are much slower than my plan",
            "I pay for 1 gig but get 50 megabits",
            "the internet is really slow lately",
            "download speed is a fraction of what I pay for",
            "my bandwidth has dropped a lot",
            "speed tests show far below the plan",
        ],
    ),
    (
        "outage",
        "high",
        [
            "the internet at our clinic is down",
            "our shop's payment terminals are offline",
            "the office line is out and customers are waiting",
            "our restaurant can't take card payments, no internet",
            "business connection down during opening hours",
            "the clinic's booking system has no internet",
        ],
    ),
    (
        "outage",
        "low",
        [
            "is there planned maintenance this weekend",
            "will the service be interrupted for upgrades",
            "when is the next scheduled downtime",
            "are you doing network works soon",
            "do you announce maintenance windows",
            "is an outage planned in my area",
        ],
    ),
    (
        "installation",
        "normal",
        [
            "I want to book an installation appointment",
            "when can a technician install my fibre",
            "please schedule the setup visit",
            "I need the line installed at my new flat",
            "book the installer for me",
            "arrange the fibre installation",
        ],
    ),
    (
        "installation",
        "high",
        [
            "the installer didn't show up today",
            "the technician missed our appointment",
            "I took the day off and nobody came to install",
            "no-show for the installation this morning",
            "waited all day, the installer never arrived",
            "the setup visit was skipped without notice",
        ],
    ),
    (
        "installation",
        "normal",
        [
            "I'm moving and need the service at my new address",
            "transfer my line to the new flat",
            "please move my fibre to another address",
            "relocating next month, move my plan",
            "set up my internet at the place I'm moving to",
            "change my service address",
        ],
    ),
    (
        "installation",
        "low",
        [
            "can the socket be installed in another room",
            "I'd like the fibre outlet moved",
            "can you put the box in the living room instead",
            "relocate the wall socket please",
            "is it possible to change where the outlet goes",
            "move the fibre point to my office",
        ],
    ),
    (
        "installation",
        "normal",
        [
            "the installer drilled a hole in the wrong wall",
            "the technician damaged my wall",
            "the installation left a mess and a broken tile",
            "cables were left hanging after setup",
            "the setup visit scratched the floor",
            "installation work was done badly",
        ],
    ),
    (
        "installation",
        "low",
        [
            "how long does an installation take",
            "how many hours is the setup visit",
            "do I need to be home all day for installation",
            "what happens during the install",
            "what should I prepare for the technician",
            "how does fibre installation work",
        ],
    ),
    (
        "cancellation",
        "normal",
        [
            "I want to cancel my contract",
            "please end my subscription",
            "I'd like to terminate the service",
            "close my account please",
            "how do I cancel my plan",
            "I'm leaving, cancel everything",
        ],
    ),
    (
        "cancellation",
        "low",
        [
            "what is the notice period to cancel",
            "how early must I announce cancellation",
            "is there a fee for leaving early",
            "what does it cost to end the contract",
            "when can I cancel without penalty",
            "what are the cancellation terms",
        ],
    ),
    (
        "cancellation",
        "normal",
        [
            "I'm moving abroad and need to cancel",
            "leaving the country, end my plan",
            "I emigrate next month, stop the service",
            "moving overseas so please cancel",
            "relocating abroad, terminate my contract",
            "I won't live here anymore, cancel it",
        ],
    ),
    (
        "cancellation",
        "high",
        [
            "I cancelled but the service is still billed and active",
            "my cancellation was ignored",
            "you never processed my cancellation",
            "I asked to cancel twice and nothing happened",
            "still active weeks after I cancelled",
            "the cancellation I requested was not done",
        ],
    ),
    (
        "cancellation",
        "low",
        [
            "can I pause my plan for the summer",
            "is it possible to suspend service for two months",
            "put my subscription on hold please",
            "I want to freeze my plan while travelling",
            "can I stop the service temporarily",
            "pause my internet while I'm away",
        ],
    ),
    (
        "cancellation",
        "normal",
        [
            "I want to downgrade to a cheaper plan",
            "switch me to the basic plan",
            "move me to a lower speed tier",
            "I need a less expensive package",
            "reduce my plan to save money",
            "change to the smallest plan",
        ],
    ),
    (
        "equipment",
        "normal",
        [
            "the router keeps restarting",
            "my modem reboots by itself",
            "the box restarts every few minutes",
            "the router power cycles constantly",
            "my gateway keeps rebooting",
            "the modem turns itself off and on",
        ],
    ),
    (
        "equipment",
        "high",
        [
            "the router is smoking and smells burnt",
            "sparks came from the modem",
            "my router got very hot and melted",
            "the power adapter is burning",
            "there's smoke coming out of the box",
            "the modem caught fire",
        ],
    ),
    (
        "equipment",
        "low",
        [
            "how do I change my wifi password",
            "where can I rename my wifi network",
            "I want a new wifi name",
            "how to set a different wireless password",
            "change the SSID of my router",
            "update my wifi login details",
        ],
    ),
    (
        "equipment",
        "normal",
        [
            "wifi doesn't reach my bedroom",
            "weak signal upstairs",
            "the wireless is bad in the far rooms",
            "I need a mesh extender for coverage",
            "no wifi in the back of the house",
            "signal drops in half the flat",
        ],
    ),
    (
        "equipment",
        "low",
        [
            "how do I return the old router",
            "where do I send back the modem",
            "what to do with my old equipment",
            "return instructions for the box please",
            "do I have to give back the router",
            "how to hand in the old gateway",
        ],
    ),
    (
        "equipment",
        "normal",
        [
            "the router's lights are all red",
            "the modem shows a red light",
            "a red LED is blinking on the box",
            "the status light turned red",
            "my router has a flashing red indicator",
            "the gateway light is red now",
        ],
    ),
]
OPENERS = ["", "Hi,", "Hello,", "Good morning,", "Hey there,", "Dear support,"]
CLOSERS = ["", "Thanks.", "Please help.", "Thank you in advance.", "Can you check?", "Regards, {name}."]
NAMES = ["Mei", "Jun", "Ana", "Tomas", "Li", "Sara", "Ken", "Ravi", "Iris", "Omar"]

PARTS = [
    "rear brake pad",
    "front brake pad",
    "chain",
    "cassette",
    "derailleur hanger",
    "bottom bracket",
    "headset",
    "saddle clamp",
    "seat post",
    "handlebar tape",
    "inner tube",
    "tyre lever",
    "spoke",
    "rim tape",
    "brake cable",
    "shifter cable",
    "pedal",
    "crank bolt",
    "chainring",
    "kickstand",
    "mudguard",
    "bell",
    "front light",
    "rear light",
    "battery charger",
    "battery lock",
    "display unit",
    "motor sensor",
    "speed magnet",
    "valve cap",
]
QUESTIONS = [
    "What is the part code and price of the {part}?",
    "How much is a {part}, and what's its code?",
    "I need a {part}. Code and price?",
    "Price and part number for the {part}, please.",
    "Which code does the {part} have and what does it cost?",
    "Quote me the {part}: code and price.",
]


def chat(system: str, question: str, answer: str, kind: str) -> dict:
    return {
        "messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": question},
            {"role": "assistant", "content": answer},
        ],
        "metadata": {"kind": kind},
    }


def preference(system: str, question: str, chosen: str, rejected: str) -> dict:
    return {
        "input": {"messages": [{"role": "system", "content": system}, {"role": "user", "content": question}]},
        "preferred_output": [{"role": "assistant", "content": chosen}],
        "non_preferred_output": [{"role": "assistant", "content": rejected}],
    }


def ticket(rng: random.Random, phrasing: str) -> str:
    text = phrasing[0].upper() + phrasing[1:] + "."
    parts = [rng.choice(OPENERS), text, rng.choice(CLOSERS).format(name=rng.choice(NAMES))]
    return " ".join(part for part in parts if part)


def route(category: str, urgency: str) -> str:
    return json.dumps({"category": category, "urgency": urgency})


def harbor(rng: random.Random) -> dict[str, list[dict]]:
    train, test, preferences = [], [], []
    categories = sorted({category for category, _, _ in SITUATIONS})
    for category, urgency, phrasings in SITUATIONS:
        order = list(phrasings)
        rng.shuffle(order)
        held_out, seen = order[:2], order[2:]
        test += [chat(HARBOR_SYSTEM, ticket(rng, p), route(category, urgency), "ticket") for p in held_out]
        for _ in range(10):
            question = ticket(rng, rng.choice(seen))
            train.append(chat(HARBOR_SYSTEM, question, route(category, urgency), "ticket"))
        for _ in range(4):
            question = ticket(rng, rng.choice(seen))
            wrong = rng.choice([c for c in categories if c != category])
            rejected = rng.choice(
                [
                    route(wrong, urgency),
                    route(category, rng.choice([u for u in ("high", "normal", "low") if u != urgency])),
                ]
            )
            preferences.append(preference(HARBOR_SYSTEM, question, route(category, urgency), rejected))
    return {"train": train, "test": test, "preferences": preferences}


def catalog(rng: random.Random) -> dict[str, list[dict]]:
    train, test, preferences = [], [], []
    for index, part in enumerate(PARTS):
        code = f"{rng.choice('BCDFKMRST')}{rng.choice('ABEKLNPRW')}-{rng.randint(100, 999)}"
        price = rng.choice(range(80, 4000, 10))
        answer = f"Part {code}, NT${price:,}."
        order = list(QUESTIONS)
        rng.shuffle(order)
        held_out, seen = order[: 1 + index % 2], order[1 + index % 2 :]
        test += [chat(CATALOG_SYSTEM, q.format(part=part), answer, "part") for q in held_out]
        train += [chat(CATALOG_SYSTEM, q.format(part=part), answer, "part") for q in seen]
        for question in seen[:4]:
            wrong = f"Part {code}, NT${price + rng.choice([-1, 1]) * rng.randint(1, 20) * 10:,}."
            preferences.append(preference(CATALOG_SYSTEM, question.format(part=part), answer, wrong))
    rng.shuffle(train)
    return {"train": train, "test": test, "preferences": preferences}


def main() -> None:
    def pickup_set(rng: random.Random) -> dict[str, list[dict]]:
        return pickup.build(rng, chat, preference)

    for name, build in (("harbor", harbor), ("catalog", catalog), ("pickup", pickup_set)):
        sets = build(random.Random(f"buxiban-outcome-{name}"))
        rng = random.Random(f"order-{name}")
        rng.shuffle(sets["train"])
        folder = HERE / name
        folder.mkdir(parents=True, exist_ok=True)
        for split, records in sets.items():
            with (folder / f"{split}.jsonl").open("w", encoding="utf-8") as out:
                for record in records:
                    out.write(json.dumps(record, ensure_ascii=False) + "\n")
        print(name, {split: len(records) for split, records in sets.items()})


if __name__ == "__main__":
    main()
