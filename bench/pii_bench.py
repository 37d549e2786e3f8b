"""How long the PII scan takes on pathological input: 1 MB of e-mail addresses (every match a
finding, the case that was quadratic) and 1 MB of mixed phones, addresses and card numbers.

    .venv/bin/python bench/pii_bench.py
"""

from __future__ import annotations

import time

from buxiban.data.pii import find_pii


def timed(text: str) -> tuple[int, float]:
    started = time.perf_counter()
    found = find_pii(text)
    return len(found), time.perf_counter() - started


def main() -> None:
    emails = " ".join(f"user{i}@example{i % 97}.com" for i in range(60_000))[: 1 << 20]
    mixed = ("Call 0912-345-678 or mail a.b@c.com; card 4111 1111 1111 1111. " * 20_000)[: 1 << 20]
    for name, text in (("1 MB of e-mail addresses", emails), ("1 MB of mixed PII", mixed)):
        count, seconds = timed(text)
        print(f"{name}: {count:,} findings in {seconds:.2f} s")


if __name__ == "__main__":
    main()
