"""`buxiban eval`: score a run against its base model (and few-shot prompting, and any endpoint) on
held-out data, check forgetting, and compare two runs example by example."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EXIT_FORGETTING = 1
EXIT_USAGE = 2


def add_eval_commands(commands) -> None:
    evaluate = commands.add_parser(
        "eval",
        help="base vs few-shot vs fine-tuned (each with RAG too: --rag) on held-out conversations; --compare two runs",
    )
    evaluate.add_argument("run", nargs="?", help="a run directory written by `buxiban train`")
    evaluate.add_argument("--test", help="held-out OpenAI chat JSONL; the last assistant message is the reference")
    evaluate.add_argument("--out", help="where to write eval.json, eval.md and eval.html (default: RUN/eval)")
    evaluate.add_argument("--limit", type=int, help="only the first N test examples")
    evaluate.add_argument(
        "--max-new-tokens",
        type=int,
        metavar="N",
        help="answer length limit (default: twice the longest reference plus 16 tokens, at most 512)",
    )
    evaluate.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="prompts generated together (default: as many as fit in a quarter of the free memory, at most 64)",
    )
    evaluate.add_argument(
        "--shots",
        type=int,
        default=3,
        metavar="K",
        help="training conversations in the few-shot baseline's prompt (default 3; 0 leaves it out)",
    )
    evaluate.add_argument(
        "--train", metavar="FILE", help="where the few-shot examples come from (default: the run's training file)"
    )
    evaluate.add_argument(
        "--endpoint",
        action="append",
        default=[],
        metavar="NAME=URL[,model=M][,key_env=VAR]",
        help="an OpenAI-compatible endpoint as one more system (repeatable)",
    )
    evaluate.add_argument(
        "--rag",
        metavar="INDEX",
        help="an index from `buxiban rag index`: adds base + RAG and fine-tuned + RAG (top chunks in "
        "the prompt), retrieval recall@k from metadata.source, and scores per metadata.kind",
    )
    evaluate.add_argument(
        "--rag-k", type=int, default=3, metavar="K", help="chunks per question with --rag (default 3)"
    )
    evaluate.add_argument(
        "--judge",
        metavar="URL[,model=M][,key_env=VAR]",
        help="grade every answer with an LLM judge at this OpenAI-compatible endpoint",
    )
    evaluate.add_argument(
        "--refusals",
        metavar="FILE",
        help="questions the assistant should decline (one per line, or JSONL): refusal rate per system",
    )
    evaluate.add_argument(
        "--forgetting",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="general probes and perplexity, base vs fine-tuned (default on; --no-forgetting skips)",
    )
    evaluate.add_argument(
        "--max-forgetting",
        type=float,
        metavar="X",
        help="exit 1 (after writing the report) when the probe score drops by more than X, e.g. 0.1",
    )
    evaluate.add_argument(
        "--latency-samples",
        type=int,
        default=3,
        metavar="N",
        help="requests timed one at a time for the savings line (default 3; 0 skips)",
    )
    evaluate.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples for the intervals")
    evaluate.add_argument("--seed", type=int, default=0, help="seed for the few-shot draw and the bootstrap")
    evaluate.add_argument(
        "--compare",
        nargs=2,
        metavar=("RUN_A", "RUN_B"),
        help="list the test examples RUN_B fixed and broke relative to RUN_A (runs or eval.json files)",
    )
    evaluate.add_argument(
        "--template",
        help="the chat template the run trained with is always used; naming another is refused "
        "(a family, a .jinja file, or auto)",
    )
    evaluate.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="allow a run whose model needs its repository's code (never taken from the run directory)",
    )
    evaluate.add_argument(
        "--price-per-hour",
        type=float,
        metavar="USD",
        help="cost per 1,000 requests for each system: local ones from their measured time at this price, "
        "endpoints from the price file (their price= option, or guessed from the model id)",
    )
    evaluate.add_argument(
        "--prices", metavar="FILE", help="price file for the endpoints' costs (default: buxiban/plan/prices.json)"
    )
    evaluate.add_argument("--json", action="store_true", help="print the summary as JSON")
    evaluate.set_defaults(handler=cmd_eval)


def usage_problems(args) -> list[str]:
    """Every bad option at once, before a model loads."""
    checks = [
        (args.train and not Path(args.train).is_file(), f"--train {args.train}: no such file"),
        (
            args.max_forgetting is not None and not 0 <= args.max_forgetting <= 1,
            f"--max-forgetting {args.max_forgetting}: use a drop in probe score between 0 and 1, e.g. 0.1",
        ),
        (args.shots < 0, f"--shots {args.shots}: use 0 (no few-shot system) or more"),
        (args.resamples < 100, f"--resamples {args.resamples}: use at least 100 (1000 is the default)"),
        (args.latency_samples < 0, f"--latency-samples {args.latency_samples}: use 0 (skip) or more"),
        (args.batch_size is not None and args.batch_size < 1, f"--batch-size {args.batch_size}: use 1 or more"),
        (
            args.max_new_tokens is not None and args.max_new_tokens < 1,
            f"--max-new-tokens {args.max_new_tokens}: use 1 or more",
        ),
        (args.limit is not None and args.limit < 1, f"--limit {args.limit}: use 1 or more"),
        (
            args.rag and not Path(args.rag).is_file(),
            f"--rag {args.rag}: no such index; build one with `buxiban rag index DOCS --out {args.rag}`",
        ),
        (args.rag_k < 1, f"--rag-k {args.rag_k}: use 1 or more (3 is the default)"),
        (
            args.price_per_hour is not None and args.price_per_hour < 0,
            f"--price-per-hour {args.price_per_hour}: give the machine's cost in USD per hour, e.g. 0.5",
        ),
    ]
    return [message for failed, message in checks if failed]


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cmd_eval(args) -> int:
    if args.compare:
        return cmd_compare(args)
    if not args.run or not args.test:
        print("error: buxiban eval needs RUN and --test FILE (or --compare RUN_A RUN_B --test FILE)", file=sys.stderr)
        return EXIT_USAGE
    problems = usage_problems(args)
    if problems:
        print("error: " + "\n  ".join(problems), file=sys.stderr)
        return EXIT_USAGE
    from ..eval.compare import EvalOptions, evaluate_run
    from ..eval.endpoint import parse_endpoint
    from ..eval.report import terminal_summary
    from ..eval.reports import write_reports

    endpoints = [parse_endpoint(s) for s in args.endpoint]
    pricing = _pricing(args, endpoints)  # a bad price file or price= fails before any model loads
    options = EvalOptions(
        shots=args.shots,
        train_file=args.train,
        endpoints=endpoints,
        judge=parse_endpoint(args.judge, named=False) if args.judge else None,
        refusals=args.refusals,
        forgetting=args.forgetting or args.max_forgetting is not None,
        max_forgetting=args.max_forgetting,
        latency_samples=args.latency_samples,
        resamples=args.resamples,
        seed=args.seed,
        batch_size=args.batch_size,
        rag=args.rag,
        rag_k=args.rag_k,
        template=args.template,
        trust_remote_code=args.trust_remote_code,
    )
    result = evaluate_run(
        args.run, args.test, max_new_tokens=args.max_new_tokens, limit=args.limit, options=options, log=_log
    )
    priced = _price_answers(result, endpoints, *pricing) if pricing else {}
    if priced:
        from ..plan.answer_costs import cost_lines

        result.cost_notes = cost_lines(priced)
    json_path, _, html_path = write_reports(result, args.out or Path(args.run) / "eval")
    if args.json:
        print(
            json.dumps(
                {
                    "summary": result.summary,
                    "intervals": result.intervals,
                    "significance": result.significance,
                    "by_kind": result.by_kind,
                    "retrieval": result.retrieval,
                    "seconds": result.seconds,
                    "savings": result.savings,
                    "cost_per_1000_requests": priced,
                    "forgetting_failed": bool(result.forgetting and result.forgetting["failed"]),
                    "report": str(json_path),
                },
                indent=2,
            )
        )
    else:
        print("\n".join([terminal_summary(result, html_path), *result.cost_notes]))
    return EXIT_FORGETTING if result.forgetting and result.forgetting["failed"] else 0


def _pricing(args, endpoints):
    """(price table, price per hour) when costs were asked for: --price-per-hour, --prices or an
    endpoint's price= option; None otherwise. Checked before any model loads."""
    if args.price_per_hour is None and args.prices is None and not any(e.price for e in endpoints):
        return None
    from ..errors import EndpointError
    from ..plan.answer_costs import HOURLY
    from ..plan.hosted import load_prices

    table = load_prices(args.prices)
    for endpoint in endpoints:
        if endpoint.price and endpoint.price != HOURLY and endpoint.price not in table.models:
            raise EndpointError(
                f"endpoint {endpoint.name}: price={endpoint.price} is not in {table.path}; use one of "
                f"{', '.join(sorted(table.models))}, or price=hourly for a server of your own"
            )
    return table, args.price_per_hour


def _price_answers(result, endpoints, table, price_per_hour) -> dict:
    """Cost per 1,000 requests per system, also kept in eval.json beside each system's token and time costs."""
    from ..plan.answer_costs import answer_costs

    priced = answer_costs(result.costs, result.systems, {e.name: e.price for e in endpoints}, table, price_per_hour)
    for name, cost in priced.items():
        result.costs[name]["per_1000_requests"] = cost
    return priced


def cmd_compare(args) -> int:
    from ..errors import RunDirError
    from ..eval.compare import EvalOptions, evaluate_run
    from ..eval.iterate import compare_evals, comparison_markdown, reusable_eval

    evaluations = []
    for run in args.compare:
        found = reusable_eval(run, args.test)
        if found is None:
            if not args.test:
                raise RunDirError(f"{run} has no evaluation on a known test file: pass --test FILE")
            _log(f"evaluating {run} on {args.test}")
            options = EvalOptions(shots=0, latency_samples=0, batch_size=args.batch_size)
            found = evaluate_run(
                run,
                args.test,
                max_new_tokens=args.max_new_tokens,
                limit=args.limit,
                options=options,
                systems=_fine_tuned_only(),
                log=_log,
            ).to_dict()
        evaluations.append(found)
    comparison = compare_evals(*evaluations, label_a=args.compare[0], label_b=args.compare[1])
    out_dir = Path(args.out) if args.out else _default_compare_dir(args.compare[1])
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "compare.json").write_text(json.dumps(comparison, indent=2, ensure_ascii=False), encoding="utf-8")
    (out_dir / "compare.md").write_text(comparison_markdown(comparison), encoding="utf-8")
    if args.json:
        print(json.dumps(comparison, indent=2, ensure_ascii=False))
    else:
        print(comparison_markdown(comparison))
        print(f"written to {out_dir / 'compare.md'}")
    return 0


def _fine_tuned_only():
    from ..eval.systems import FINE_TUNED, System

    return [System(FINE_TUNED, FINE_TUNED, "the fine-tuned model, the test prompt as is")]


def _default_compare_dir(run_b: str) -> Path:
    path = Path(run_b)
    return (path.parent if path.is_file() else path / "eval") / "compare"
