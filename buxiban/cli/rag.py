"""`buxiban rag ...`: build an index of documents, query it, score its retrieval. Errors travel up to cli.main."""

from __future__ import annotations

import json


def add_rag_commands(commands) -> None:
    rag = commands.add_parser("rag", help="index documents for retrieval-augmented answers; query and score the index")
    sub = rag.add_subparsers(title="rag commands", metavar="COMMAND")

    index = sub.add_parser("index", help="chunk and embed Markdown, text and HTML files; re-embeds only changed files")
    index.add_argument("docs", help="folder of .md, .txt and .html documents (searched recursively)")
    index.add_argument("--out", required=True, help="the index file (SQLite), created or updated")
    index.add_argument(
        "--embedder",
        help="'minilm' (the shipped all-MiniLM-L6-v2, English), 'use-multilingual' (Universal Sentence Encoder, "
        "Chinese and 15 other languages) or a sentence-transformers directory (default: the one the index was "
        "built with; for a new index, multilingual when the documents are mostly CJK)",
    )
    index.add_argument("--chunk-tokens", type=int, default=160, help="words and punctuation per chunk (default 160)")
    index.add_argument(
        "--overlap", type=int, default=32, help="tokens a chunk repeats from the one before (default 32)"
    )
    index.add_argument(
        "--bm25", action="store_true", help="also build a BM25 keyword index (FTS5) for hybrid retrieval"
    )
    index.add_argument("--json", action="store_true", help="print the report as JSON")
    index.set_defaults(handler=cmd_index)

    query = sub.add_parser("query", help="the chunks that best answer a question, with scores and sources")
    query.add_argument("index", help="an index built by `buxiban rag index`")
    query.add_argument("question")
    query.add_argument("-k", type=int, default=5, help="how many chunks (default 5)")
    query.add_argument("--dense", action="store_true", help="embedding similarity only, even if the index has BM25")
    query.add_argument("--json", action="store_true", help="print the chunks as JSON")
    query.set_defaults(handler=cmd_query)

    evaluate = sub.add_parser(
        "eval", help="retrieval recall@k on questions whose metadata.source names the answering document"
    )
    evaluate.add_argument("index")
    evaluate.add_argument(
        "--questions", required=True, help="OpenAI chat JSONL with metadata.source (and metadata.kind)"
    )
    evaluate.add_argument("-k", type=int, default=3, help="chunks retrieved per question (default 3)")
    evaluate.add_argument("--dense", action="store_true", help="embedding similarity only, even if the index has BM25")
    evaluate.add_argument("--json", action="store_true")
    evaluate.set_defaults(handler=cmd_eval)

    augment = sub.add_parser(
        "augment",
        help="copy training data with retrieved chunks in each prompt, so fine-tuning "
        "teaches the model to answer from documents",
    )
    augment.add_argument("train", help="OpenAI chat JSONL; the chunks for each conversation's last question go into it")
    augment.add_argument("--index", required=True, help="an index of documents that agree with the training answers")
    augment.add_argument("--out", required=True, help="where to write the augmented JSONL")
    augment.add_argument(
        "-k", type=int, default=3, help="chunks per conversation (default 3; use what chat --rag-k uses)"
    )
    augment.add_argument(
        "--share", type=float, default=1.0, help="fraction of conversations that get chunks (default 1)"
    )
    augment.add_argument(
        "--counterfactual",
        type=float,
        default=0.0,
        metavar="FRACTION",
        help="of the conversations with chunks, the fraction whose figures (prices, days, times) are "
        "changed in both the chunks and the answer, so the model learns to read figures from "
        "documents rather than memory (default 0; the example uses 0.5)",
    )
    augment.add_argument(
        "--seed", type=int, default=0, help="which conversations, when --share or --counterfactual is below 1"
    )
    augment.set_defaults(handler=cmd_augment)


def cmd_augment(args) -> int:
    from ..rag.augment import augment_file
    from ..rag.retrieve import RagIndex

    report = augment_file(
        args.train, RagIndex(args.index), args.out, args.k, args.share, args.seed, args.counterfactual
    )
    print(
        f"{report.with_documents} of {report.records} conversations now carry {args.k} retrieved chunks; wrote {args.out}"
    )
    if args.counterfactual:
        print(f"{report.counterfactual} of them with figures changed in the chunks and the answer")
    for path, count in sorted(report.sources.items(), key=lambda item: -item[1]):
        print(f"  {count:5d}  {path}")
    return 0


def cmd_index(args) -> int:
    from ..rag.index import build_index

    report = build_index(
        args.docs,
        args.out,
        embedder_spec=args.embedder,
        chunk_tokens=args.chunk_tokens,
        overlap=args.overlap,
        bm25=args.bm25,
    )
    if args.json:
        print(json.dumps(report.__dict__, indent=2))
        return 0
    if report.embedder_reason:
        print(f"embedder: {report.embedder} ({report.embedder_reason})")
    if report.rebuilt and report.rebuilt != "new index":
        print(f"re-embedding everything: {report.rebuilt}")
    print(
        f"{len(report.added)} added, {len(report.changed)} changed, {len(report.removed)} removed, "
        f"{report.unchanged} unchanged; {report.chunks_embedded} chunks embedded in {report.seconds:.1f}s"
    )
    print(f"{args.out}: {report.files} documents, {report.chunks} chunks{' (+ BM25)' if args.bm25 else ''}")
    return 0


def cmd_query(args) -> int:
    import time

    from ..rag.retrieve import RagIndex

    index = RagIndex(args.index)
    index.embedder.load_weights()  # so the time printed is the query's, as a running server would see it
    started = time.perf_counter()
    chunks = index.search(args.question, args.k, hybrid=False if args.dense else None)
    elapsed = time.perf_counter() - started
    if args.json:
        print(json.dumps([chunk.as_json() for chunk in chunks], indent=2, ensure_ascii=False))
        return 0
    mode = "hybrid (dense + BM25, reciprocal rank fusion)" if index.has_bm25 and not args.dense else "dense"
    print(f"{len(chunks)} chunks, {mode}, {elapsed * 1000:.0f} ms")
    for number, chunk in enumerate(chunks, start=1):
        detail = [f"score {chunk.score:.4f}"]
        if chunk.similarity is not None and mode != "dense":
            detail.append(f"cosine {chunk.similarity:.3f}")
        if chunk.keyword_rank is not None:
            detail.append(f"BM25 rank {chunk.keyword_rank}")
        print(f"\n[{number}] {chunk.source}  ({', '.join(detail)})")
        print(_indent(chunk.text))
    return 0


def cmd_eval(args) -> int:
    from ..rag.recall import read_questions, recall_at_k
    from ..rag.retrieve import RagIndex

    questions = read_questions(args.questions)
    report = recall_at_k(RagIndex(args.index), questions, args.k, hybrid=False if args.dense else None)
    if args.json:
        print(
            json.dumps(
                {
                    "k": report.k,
                    "recall": report.recall,
                    "by_kind": report.by_kind,
                    "questions": report.total,
                    "misses": [
                        {"where": q.where, "question": q.text, "sources": q.sources, "retrieved": paths}
                        for q, paths in report.misses
                    ],
                },
                indent=2,
            )
        )
        return 0
    print(f"recall@{report.k} {report.recall:.3f} on {report.total} questions")
    for kind, value in report.by_kind.items():
        print(f"  {kind or '(no kind)'}: {value:.3f}")
    for question, paths in report.misses:
        print(f"miss {question.where}: {question.text!r} wants {', '.join(question.sources)}; got {', '.join(paths)}")
    return 0


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())
