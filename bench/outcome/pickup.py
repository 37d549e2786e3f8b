"""pickup: courier pickup requests turned into one line of JSON, a third held-out data set for the outcome
issue (bench/outcome/datasets.py writes it with the other two).

Its shape differs from both yunshan (answers in prose, triage labels) and harbor (labels for paraphrases):
every answer is copied and normalized out of the request itself (an order code never seen in training, a
parcel count written as a digit or a word, one of 12 cities, a date in four spellings turned into MM-DD).
The test requests use four of the sixteen sentence frames that training never shows, and order codes,
count/city/date combinations drawn fresh, so a right answer needs the fields read, not recalled.

It was written and committed before any model was trained or evaluated on it: nothing in buxiban's defaults
was chosen with it, so its result is evidence in a way harbor's (which the auto rules saw) is not.
"""

from __future__ import annotations

import json
import random

SYSTEM = (
    "You book Swiftpost courier pickups. Reply with JSON only: "
    '{"order": "SP-#####", "parcels": <count>, "city": "<city>", "date": "MM-DD"}.'
)
CITIES = [
    "Taipei",
    "New Taipei",
    "Taoyuan",
    "Hsinchu",
    "Taichung",
    "Tainan",
    "Kaohsiung",
    "Keelung",
    "Chiayi",
    "Yilan",
    "Hualien",
    "Pingtung",
]
MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
COUNT_WORDS = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
UNITS = ["parcels", "boxes", "packages", "cartons"]
FRAMES = [
    "Please collect {parcels} for order {order} in {city} on {date}.",
    "Order {order}: {parcels} ready for pickup at our {city} office, {date}.",
    "Can a driver come to {city} on {date}? It's {parcels}, order {order}.",
    "We have {parcels} to send (order {order}). Pickup in {city}, {date} please.",
    "Pickup request - {city}, {date}, {parcels}, ref {order}.",
    "I need {parcels} picked up from {city} on {date}; the order number is {order}.",
    "On {date} we'll have {parcels} waiting in {city} for order {order}.",
    "Book a collection for {order}: {parcels}, {city}, {date}.",
    "Your courier should stop by our {city} shop on {date} to take {parcels} (order {order}).",
    "Hello from {city}! {parcels} for {order} need collecting on {date}.",
    "Reference {order} - please pick up {parcels} on {date}, address in {city}.",
    "Could you schedule a pickup of {parcels} on {date}? We're in {city}. Order: {order}.",
    "For order {order} we need a pickup on {date} in {city}: {parcels}.",
    "{parcels} from our {city} warehouse, order {order}, collection date {date}.",
    "Please send someone to {city} on {date}; {parcels} are packed for order {order}.",
    "Arrange a courier for {date} in {city}, please - {parcels}, order {order}.",
]
OPENERS = ["", "Hi,", "Hello,", "Good morning,", "Dear Swiftpost,"]
CLOSERS = ["", "Thanks.", "Thank you.", "Regards, {name}.", "Cheers."]
NAMES = ["Mei", "Jun", "Ana", "Tomas", "Li", "Sara", "Ken", "Ravi", "Iris", "Omar"]


def ordinal(day: int) -> str:
    suffix = "th" if 10 <= day % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


def spoken_date(rng: random.Random, month: int, day: int) -> str:
    name = MONTHS[month - 1]
    return rng.choice([f"{name} {day}", f"{day} {name}", f"the {ordinal(day)} of {name}", f"{name[:3]} {ordinal(day)}"])


def spoken_count(rng: random.Random, count: int) -> str:
    unit = rng.choice(UNITS)
    if count == 1:
        return rng.choice(["a single " + unit[:-1], "one " + unit[:-1], "1 " + unit[:-1]])
    return f"{rng.choice([str(count), COUNT_WORDS[count - 1]])} {unit}"


def request(rng: random.Random, frame: str, order: str, count: int, city: str, month: int, day: int) -> str:
    body = frame.format(parcels=spoken_count(rng, count), order=order, city=city, date=spoken_date(rng, month, day))
    body = body[0].upper() + body[1:]
    parts = [rng.choice(OPENERS), body, rng.choice(CLOSERS).format(name=rng.choice(NAMES))]
    return " ".join(part for part in parts if part)


def answer(order: str, count: int, city: str, month: int, day: int) -> str:
    return json.dumps({"order": order, "parcels": count, "city": city, "date": f"{month:02d}-{day:02d}"})


def build(rng: random.Random, chat, preference) -> dict[str, list[dict]]:
    frames = list(FRAMES)
    rng.shuffle(frames)
    held_out, seen = frames[:4], frames[4:]
    orders = rng.sample(range(10000, 100000), 300 + 60 + 120)
    train, test, preferences = [], [], []

    def draw(frame_pool: list[str], number: int) -> tuple[str, str, tuple]:
        fields = (f"SP-{number}", rng.randint(1, 9), rng.choice(CITIES), rng.randint(1, 12), rng.randint(1, 28))
        return request(rng, rng.choice(frame_pool), *fields), answer(*fields), fields

    for number in orders[:300]:
        question, reply, _ = draw(seen, number)
        train.append(chat(SYSTEM, question, reply, "pickup"))
    for index, number in enumerate(orders[300:360]):
        question, reply, _ = draw([held_out[index % 4]], number)
        test.append(chat(SYSTEM, question, reply, "pickup"))
    for number in orders[360:]:
        question, reply, (order, count, city, month, day) = draw(seen, number)
        wrong = rng.choice(
            [
                answer(order, count % 9 + 1, city, month, day),
                answer(order, count, rng.choice([c for c in CITIES if c != city]), month, day),
                answer(order, count, city, month % 12 + 1, day),
            ]
        )
        preferences.append(preference(SYSTEM, question, reply, wrong))
    return {"train": train, "test": test, "preferences": preferences}
