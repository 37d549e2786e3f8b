"""`buxiban data ...`: the data toolkit's sub-commands. Errors travel up as exceptions to cli.main."""

from __future__ import annotations

import json
import sys

from ..errors import DataError, ModelLoadError, Problem

EXIT_PROBLEMS = 1


def add_data_commands(commands) -> None:
    data = commands.add_parser("data", help="check, show, redact, convert, split and mix training data")
    sub = data.add_subparsers(title="data commands", metavar="COMMAND")

    check = sub.add_parser("check", help="every format error with its line; duplicates, leakage, PII, token statistics")
    check.add_argument("file", help="OpenAI chat JSONL, or preference pairs (detected)")
    check.add_argument("--test", help="a held-out file: report test examples that leak from the training file")
    _model_arguments(check)
    check.add_argument(
        "--near-threshold", type=float, default=0.8, help="similarity that counts as a near-duplicate (default 0.8)"
    )
    check.add_argument("--strict", action="store_true", help="exit 1 on findings (duplicates, leakage, PII, …) too")
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.set_defaults(handler=cmd_check)

    show = sub.add_parser("show", help="render examples through the chat template, trained tokens highlighted")
    show.add_argument("file")
    show.add_argument("-n", type=int, default=3, help="how many examples (default 3)")
    _model_arguments(show)
    show.add_argument("--no-color", action="store_true", help="mark trained text with ⟦ ⟧ instead of colour")
    show.set_defaults(handler=cmd_show)

    redact = sub.add_parser("redact", help="write a copy with e-mails, phones, cards, IBANs and secrets masked")
    redact.add_argument("input")
    redact.add_argument("output")
    redact.set_defaults(handler=cmd_redact)

    convert = sub.add_parser("convert", help="ShareGPT, Alpaca or two-column CSV into OpenAI chat JSONL")
    convert.add_argument("input")
    convert.add_argument("output")
    convert.add_argument(
        "--from", dest="fmt", choices=("sharegpt", "alpaca", "csv"), help="input format (default: detected)"
    )
    convert.add_argument("--system", help="system prompt to put first in every conversation")
    convert.set_defaults(handler=cmd_convert)

    split = sub.add_parser("split", help="deterministic train/validation/test split by content hash")
    split.add_argument("file")
    split.add_argument("--out", required=True, help="directory for train.jsonl, validation.jsonl, test.jsonl")
    split.add_argument("--ratios", default="0.8,0.1,0.1", help="train,validation,test (default 0.8,0.1,0.1)")
    split.add_argument(
        "--stratify",
        help="keep the share of each value the same in every split: 'system' or a field such as metadata.category",
    )
    split.add_argument("--near-threshold", type=float, default=0.8, help="near-duplicates above this stay together")
    split.set_defaults(handler=cmd_split)

    mix = sub.add_parser("mix", help="mix general instructions into training data against forgetting")
    mix.add_argument("train")
    mix.add_argument("output")
    mix.add_argument("--general", default="builtin", help="'builtin' (shipped, 161 examples) or your own chat JSONL")
    mix.add_argument("--ratio", type=float, default=0.2, help="share of general examples in the output (default 0.2)")
    mix.add_argument("--seed", type=int, default=0)
    mix.set_defaults(handler=cmd_mix)


def _model_arguments(parser) -> None:
    parser.add_argument(
        "--model", default="embedded", help="whose tokenizer and chat template to use (default: embedded)"
    )
    parser.add_argument("--max-length", type=int, default=512, help="token budget per example (default 512)")
    parser.add_argument(
        "--template",
        default="auto",
        help="chat template for a model without one, or instead of its own: auto (default), a family (chatml, llama3, gemma, phi3, granite, mistral) or a .jinja file",
    )


def _tokenizer(spec: str, template: str = "auto"):
    from ..models.load import load_tokenizer, resolve

    return load_tokenizer(resolve(spec), template=template)


def cmd_check(args) -> int:
    from ..data.check import check_file

    tokenizer, note = None, ""
    try:
        tokenizer = _tokenizer(args.model, args.template)
    except ModelLoadError as exc:  # the format checks need no model: report them anyway
        note = f"token statistics skipped: {exc}"
    report = check_file(args.file, tokenizer, args.max_length, test_file=args.test, near_threshold=args.near_threshold)
    failed = not report.ok or (args.strict and bool(report.findings))
    if args.json:
        data = report.to_dict()
        if note:
            data["note"] = note
        print(json.dumps(data, indent=2, ensure_ascii=False))
        return EXIT_PROBLEMS if failed else 0
    for problem in report.problems:
        print(problem)
    unlisted = getattr(report.problems, "unlisted", 0)
    if unlisted:
        print(f"… and {unlisted:,} more problem(s) of the same file, not listed")
    if report.stats:
        print(format_stats(report, args.model))
    for finding in report.findings:
        print(f"warning: {finding}")
    if note:
        print(note, file=sys.stderr)
    if report.ok:
        extra = f", {len(report.findings)} warning(s)" if report.findings else ""
        print(f"{args.file}: OK, no format problems{extra}")
    else:
        print(
            f"{args.file}: {len(report.problems)} problem(s); {report.stats.get('examples', 0)} valid example(s)",
            file=sys.stderr,
        )
    return EXIT_PROBLEMS if failed else 0


def format_stats(report, model: str) -> str:
    s = report.stats
    kind = "preference pairs" if report.kind == "preference" else "examples"
    lines = [f"{s['examples']} {kind}", _spread_line("messages per example", s["messages_per_example"])]
    if "tokens_per_example" in s:
        lines += [
            f"tokens counted with the {model} tokenizer and chat template:",
            _spread_line("tokens per example", s["tokens_per_example"]),
            _spread_line("trained tokens per example", s["trained_tokens_per_example"]),
            f"  total: {s['total_tokens']:,} tokens, {s['total_trained_tokens']:,} trained ({s['trained_share']:.0%})",
        ]
    if "max_length" in s:
        lines.append(f"  over max length {s['max_length']}: {s['over_max_length']}")
    if "duplicates" in s:
        lines.append(f"duplicates: {s['duplicates']['exact']} exact, {s['duplicates']['near']} near")
    if "leakage" in s:
        lines.append(
            f"leakage into {s['leakage']['test_file']}: {s['leakage']['exact']} exact, {s['leakage']['near']} near"
        )
    if "personal_data" in s:
        found = ", ".join(f"{n} {k}" for k, n in s["personal_data"].items()) or "none found"
        lines.append(f"personal data: {found}")
    if "script" in s:  # answers in Chinese: which script they are written in
        lines.append("Chinese script of the answers: " + ", ".join(f"{n} {k}" for k, n in s["script"].items()))
    if "sufficiency" in s and s["sufficiency"]["level"] == "ok":  # a warning is printed as a finding
        lines.append(f"data size: {s['sufficiency']['advice']}")
    if report.preview:
        lines += ["first example, trained tokens in ⟦ ⟧ (the loss is computed on these only):", report.preview.rstrip()]
    return "\n".join(lines)


def _spread_line(name: str, spread: dict) -> str:
    return (
        f"  {name:<28} min {spread['min']:>5}  p50 {spread['p50']:>5}  p95 {spread['p95']:>5}  max {spread['max']:>5}"
    )


def cmd_show(args) -> int:
    from ..data.show import show_examples

    color = not args.no_color and sys.stdout.isatty()
    for block in show_examples(args.file, _tokenizer(args.model, args.template), args.n, color):
        print(block + "\n")
    return 0


def cmd_redact(args) -> int:
    from ..data.pii import redact_file

    try:
        totals, lines, problems = redact_file(args.input, args.output)
    except ValueError as exc:
        raise DataError("cannot redact", [Problem(args.output, str(exc))]) from exc
    found = ", ".join(f"{n} {k}" for k, n in sorted(totals.items())) or "nothing"
    print(f"masked {found} on {lines} line(s); wrote {args.output}")
    for problem in problems:
        print(f"warning: {problem} (copied unchanged)", file=sys.stderr)
    return 0


def cmd_convert(args) -> int:
    from ..data.convert import convert

    records, problems = convert(args.input, args.fmt, args.system)
    if not records:
        raise DataError(f"nothing converted from {args.input}", problems)
    with open(args.output, "w", encoding="utf-8") as out:
        out.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    print(f"converted {len(records)} conversation(s) to {args.output}")
    for problem in problems:
        print(f"skipped {problem}", file=sys.stderr)
    return EXIT_PROBLEMS if problems else 0


def cmd_split(args) -> int:
    from ..data.split import split_file

    try:
        ratios = [float(x) for x in args.ratios.split(",")]
    except ValueError as exc:
        raise DataError(
            "bad --ratios", [Problem("--ratios", args.ratios, fix="three numbers, e.g. 0.8,0.1,0.1")]
        ) from exc
    counts = split_file(args.file, args.out, ratios, args.stratify, args.near_threshold)
    print(", ".join(f"{name}: {n}" for name, n in counts.items()) + f" (written to {args.out})")
    return 0


def cmd_mix(args) -> int:
    from ..data.mix import mix_files

    counts = mix_files(args.train, args.output, args.general, args.ratio, args.seed)
    print(f"{counts['train']} training + {counts['general']} general = {counts['total']} examples in {args.output}")
    if counts["general"] < counts["general_wanted"]:
        print(
            f"warning: the ratio asked for {counts['general_wanted']} general examples but only "
            f"{counts['general_available']} exist; all were used once (pass --general FILE for more)",
            file=sys.stderr,
        )
    return 0
