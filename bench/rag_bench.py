"""RAG speed acceptance: index 1,000 documents in under 2 minutes on 2 cores; a query under 100 ms once
the embedding model is loaded. Written as JSON, with the machine's load so a busy run reads as one.

    OMP_NUM_THREADS=2 python bench/rag_bench.py                       # 1,000 documents, 2 threads
    OMP_NUM_THREADS=2 python bench/rag_bench.py --docs 200 --out /tmp/rag.json

The corpus is generated (seeded, no network): a third each Markdown, HTML and plain text, in 2–5
headed sections of company-style prose with figures; the 1,000 documents hold 340,160 words (340 a
document, about 4 chunks at the default 160 tokens: 3,991 chunks, ~120 WordPiece tokens each). Timed: a full index build from an empty index (model load
included, as a user waits for it), a re-index with one file changed, and 100 queries (dense and
hybrid) after a warm-up query.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TOPICS = [
    "pricing",
    "deposit",
    "battery",
    "repairs",
    "delivery",
    "insurance",
    "returns",
    "accounts",
    "safety",
    "swap points",
    "students",
    "companies",
    "helmets",
    "cargo",
    "commuting",
    "app",
    "invoices",
    "privacy",
]
WORDS = (
    "bike plan month customer battery swap point support app payment invoice deposit refund repair technician "
    "delivery helmet cargo commuter city district station rider account discount referral notice policy cover "
    "theft damage range charge hours weekend holiday team ticket priority service area contract term"
).split()
VERBS = "includes covers starts ends needs lets shows costs takes gives keeps opens closes".split()


def sentence(rng: random.Random) -> str:
    words = rng.sample(WORDS, rng.randint(5, 10))
    figure = rng.choice(
        ["", f" NT${rng.randint(1, 40) * 50}", f" {rng.randint(2, 30)} days", f" {rng.randint(5, 95)}%"]
    )
    return f"The {words[0]} {rng.choice(VERBS)} {' '.join(words[1:])}{figure}."


def section(rng: random.Random, words: int) -> list[str]:
    paragraphs, count = [], 0
    while count < words:
        paragraph = " ".join(sentence(rng) for _ in range(rng.randint(2, 5)))
        paragraphs.append(paragraph)
        count += len(paragraph.split())
    return paragraphs


def write_corpus(folder: Path, documents: int, seed: int = 0) -> int:
    rng = random.Random(seed)
    total_words = 0
    for number in range(documents):
        title = f"{rng.choice(TOPICS).title()} guide {number}"
        parts, target = rng.randint(2, 5), rng.randint(120, 420)
        sections = [(f"{rng.choice(TOPICS).title()} {part}", section(rng, target // parts)) for part in range(parts)]
        total_words += sum(len(p.split()) for _, paragraphs in sections for p in paragraphs)
        kind = number % 3
        if kind == 0:
            body = f"# {title}\n\n" + "\n\n".join(f"## {h}\n\n" + "\n\n".join(ps) for h, ps in sections)
            (folder / f"doc{number:04d}.md").write_text(body, encoding="utf-8")
        elif kind == 1:
            body = "".join(f"<h2>{h}</h2>" + "".join(f"<p>{p}</p>" for p in ps) for h, ps in sections)
            (folder / f"doc{number:04d}.html").write_text(
                f"<html><head><title>{title}</title><style>p{{margin:0}}</style></head><body><h1>{title}</h1>"
                f"{body}<script>track({number})</script></body></html>",
                encoding="utf-8",
            )
        else:
            body = f"{title}\n\n" + "\n\n".join(f"{h}\n\n" + "\n\n".join(ps) for h, ps in sections)
            (folder / f"doc{number:04d}.txt").write_text(body, encoding="utf-8")
    return total_words


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "rag-results.json"))
    args = parser.parse_args()

    import torch

    from buxiban.rag.index import build_index
    from buxiban.rag.retrieve import RagIndex

    threads = int(os.environ.get("OMP_NUM_THREADS", "2"))
    torch.set_num_threads(threads)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        docs, index_path = Path(tmp) / "docs", Path(tmp) / "index.db"
        docs.mkdir()
        words = write_corpus(docs, args.docs)
        full = build_index(docs, index_path, bm25=True)
        changed = sorted(docs.iterdir())[0]
        changed.write_text(changed.read_text(encoding="utf-8") + "\n\nOne more paragraph.\n", encoding="utf-8")
        incremental = build_index(docs, index_path, bm25=True)
        index = RagIndex(index_path)
        rng = random.Random(1)
        questions = [
            f"How does the {rng.choice(WORDS)} {rng.choice(VERBS)} the {rng.choice(WORDS)}?"
            for _ in range(args.queries)
        ]
        index.search("warm-up question", 5)
        timings = {}
        for mode, hybrid in (("dense", False), ("hybrid", True)):
            samples = []
            for question in questions:
                started = time.perf_counter()
                index.search(question, 5, hybrid=hybrid)
                samples.append((time.perf_counter() - started) * 1000)
            samples.sort()
            timings[mode] = {
                "median_ms": round(statistics.median(samples), 2),
                "p95_ms": round(samples[int(0.95 * (len(samples) - 1))], 2),
                "max_ms": round(samples[-1], 2),
            }
        index_bytes = index_path.stat().st_size
    result = {
        "documents": args.docs,
        "words": words,
        "chunks": full.chunks,
        "threads": threads,
        "index_seconds": round(full.seconds, 1),
        "index_chunks_per_second": round(full.chunks / full.seconds, 1),
        "reindex_one_changed_seconds": round(incremental.seconds, 2),
        "reindex_chunks_embedded": incremental.chunks_embedded,
        "query": timings,
        "index_megabytes": round(index_bytes / 2**20, 1),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
