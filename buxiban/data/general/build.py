"""Build general.jsonl: everyday instructions and answers, written by the buxiban project
(Apache-2.0, like the code), mixed into company data against catastrophic forgetting.

Deterministic: `python -m buxiban.data.general.build` rewrites an identical file.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

SYSTEM = "You are a helpful assistant."
CAPITALS = [
    ("France", "Paris"),
    ("Japan", "Tokyo"),
    ("Germany", "Berlin"),
    ("Italy", "Rome"),
    ("Spain", "Madrid"),
    ("Canada", "Ottawa"),
    ("Australia", "Canberra"),
    ("Brazil", "Brasília"),
    ("Egypt", "Cairo"),
    ("India", "New Delhi"),
    ("Kenya", "Nairobi"),
    ("Mexico", "Mexico City"),
    ("Norway", "Oslo"),
    ("Peru", "Lima"),
    ("Portugal", "Lisbon"),
    ("South Korea", "Seoul"),
    ("Thailand", "Bangkok"),
    ("Vietnam", "Hanoi"),
    ("Argentina", "Buenos Aires"),
    ("Turkey", "Ankara"),
    ("Poland", "Warsaw"),
    ("Greece", "Athens"),
    ("Sweden", "Stockholm"),
    ("Ireland", "Dublin"),
    ("Chile", "Santiago"),
    ("Morocco", "Rabat"),
    ("Indonesia", "Jakarta"),
    ("Finland", "Helsinki"),
    ("Austria", "Vienna"),
    ("New Zealand", "Wellington"),
]
FACTS = [
    ("How many days are in a leap year?", "A leap year has 366 days."),
    ("What is the boiling point of water at sea level in Celsius?", "Water boils at 100 °C at sea level."),
    ("What gas do plants absorb from the air?", "Plants absorb carbon dioxide from the air."),
    ("How many continents are there?", "There are seven continents."),
    ("What is the largest planet in the solar system?", "Jupiter is the largest planet in the solar system."),
    ("What is the chemical symbol for gold?", "The chemical symbol for gold is Au."),
    ("How many minutes are in an hour?", "An hour has 60 minutes."),
    ("Which ocean is the largest?", "The Pacific Ocean is the largest."),
    ("What is the freezing point of water in Fahrenheit?", "Water freezes at 32 °F."),
    ("How many sides does a hexagon have?", "A hexagon has six sides."),
    ("What does a thermometer measure?", "A thermometer measures temperature."),
    ("What is the opposite of 'ancient'?", "The opposite of 'ancient' is 'modern'."),
    ("How many legs does a spider have?", "A spider has eight legs."),
    ("What is the square root of 81?", "The square root of 81 is 9."),
    ("Which planet is known as the Red Planet?", "Mars is known as the Red Planet."),
    ("What is H2O commonly called?", "H2O is water."),
    ("How many hours are in a day?", "A day has 24 hours."),
    ("What color do you get by mixing blue and yellow?", "Mixing blue and yellow gives green."),
    ("What is the main language spoken in Brazil?", "The main language of Brazil is Portuguese."),
    ("How many weeks are in a year?", "A year has 52 weeks and one or two days."),
]
TASKS = [
    ("Give me a synonym for 'happy'.", "A synonym for 'happy' is 'joyful'."),
    ("Suggest a name for a black cat.", "How about Shadow?"),
    (
        "Write a one-sentence thank-you note to a colleague who helped me move desks.",
        "Thank you so much for helping me move desks today; I couldn't have done it without you!",
    ),
    ("Give one tip for sleeping better.", "Keep a regular bedtime, even on weekends."),
    (
        "Write a polite reminder that a report is due on Friday.",
        "Just a friendly reminder that the report is due this Friday; let me know if you need anything.",
    ),
    ("Say good morning in Spanish.", "Good morning in Spanish is 'Buenos días'."),
    ("Say thank you in French.", "Thank you in French is 'merci'."),
    ("Say hello in Japanese.", "Hello in Japanese is 'konnichiwa'."),
    ("Give an example of a renewable energy source.", "Solar power is a renewable energy source."),
    ("Name a fruit that is yellow.", "A banana is yellow."),
    ("Write a haiku about rain.", "Soft rain on the roof\nthe street lamps blur into gold\nsomeone hums inside"),
    ("Explain in one sentence what a noun is.", "A noun is a word that names a person, place, thing or idea."),
    ("Give one reason to drink water.", "Water keeps your body hydrated so your organs work properly."),
    ("Suggest a healthy breakfast.", "Oatmeal with fruit and a handful of nuts is a healthy breakfast."),
    ("Write a short subject line for a meeting about the budget.", "Budget review meeting"),
    (
        "What should I do if I feel stressed at work?",
        "Take a short break, breathe slowly, and break your tasks into smaller steps.",
    ),
]
WORDS = [
    "apple",
    "river",
    "mountain",
    "pencil",
    "garden",
    "window",
    "planet",
    "candle",
    "forest",
    "bridge",
    "orange",
    "violin",
    "silver",
    "tunnel",
    "harbor",
    "meadow",
    "rocket",
    "lantern",
    "pebble",
    "anchor",
]


def chat(question: str, answer: str) -> dict:
    return {
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": question},
            {"role": "assistant", "content": answer},
        ]
    }


def build(seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    records = [
        chat(f"What is the capital of {country}?", f"The capital of {country} is {city}.") for country, city in CAPITALS
    ]
    records += [chat(q, a) for q, a in FACTS + TASKS]
    for _ in range(20):
        a, b = rng.randint(2, 99), rng.randint(2, 99)
        records.append(chat(f"What is {a} + {b}?", f"{a} + {b} = {a + b}."))
    for _ in range(15):
        a, b = rng.randint(2, 12), rng.randint(2, 12)
        records.append(chat(f"What is {a} times {b}?", f"{a} × {b} = {a * b}."))
    for _ in range(10):
        celsius = rng.randrange(-10, 40, 5)
        records.append(chat(f"Convert {celsius} °C to Fahrenheit.", f"{celsius} °C is {celsius * 9 / 5 + 32:g} °F."))
    for _ in range(10):
        km = rng.randint(2, 50)
        records.append(chat(f"How many metres are in {km} kilometres?", f"{km} kilometres is {km * 1000:,} metres."))
    for _ in range(15):
        picked = rng.sample(WORDS, 4)
        records.append(chat(f"Sort these words alphabetically: {', '.join(picked)}.", ", ".join(sorted(picked)) + "."))
    for _ in range(15):
        word = rng.choice(WORDS)
        records.append(chat(f"Write the word '{word}' in capital letters.", word.upper()))
    for _ in range(10):
        word = rng.choice(WORDS)
        records.append(chat(f"How many letters are in the word '{word}'?", f"'{word}' has {len(word)} letters."))
    for _ in range(10):
        numbers = rng.sample(range(1, 100), 5)
        records.append(
            chat(
                f"Which is the largest of these numbers: {', '.join(map(str, numbers))}?",
                f"The largest is {max(numbers)}.",
            )
        )
    unique = list({json.dumps(r, sort_keys=True): r for r in records}.values())
    rng.shuffle(unique)
    return unique


def main() -> None:
    path = Path(__file__).with_name("general.jsonl")
    records = build()
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    print(f"wrote {len(records)} general examples to {path}")


if __name__ == "__main__":
    main()
