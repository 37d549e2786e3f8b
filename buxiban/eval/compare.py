"""Evaluate a run: every system answers the same held-out prompts greedily; scores, intervals,
paired tests, refusals, the forgetting check, costs and error analysis go into one EvalResult."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data.records import collect, iter_raw_chat_records, load_chat_jsonl
from ..errors import DataError, Problem
from ..models.generate import Generation, generate_with_stats
from ..runs import file_sha256, read_manifest
from ..runs.load import check_remote_code, check_template_request
from . import scoring
from .analysis import analyze
from .endpoint import Endpoint, endpoint_answers
from .inputs import load_refusals, resolve_train_file
from .rag import FINE_TUNED_RAG, Retrieval, by_kind, check_sources, mark_retrieval, with_rag
from .systems import BASE, FEW_SHOT, FINE_TUNED, LocalWeights, System, default_systems, few_shot_prepare

PROBE_TOKENS = 48  # every probe's answer is a word or a sentence
MAX_BUDGET = 512


@dataclass
class EvalOptions:
    shots: int = 3  # few-shot examples; 0 leaves the few-shot system out
    train_file: str | None = None  # where shots come from; default: the run's own training file
    endpoints: Sequence[Endpoint] = ()
    judge: Endpoint | None = None
    refusals: str | None = None
    forgetting: bool = False
    max_forgetting: float | None = None
    latency_samples: int = 3  # requests timed one at a time for the savings table; 0 skips
    resamples: int = scoring.RESAMPLES
    seed: int = 0
    batch_size: int | None = None  # None: as many rows as fit in memory (models/generate.py)
    rag: str | None = None  # an index: adds "base + RAG" and "fine-tuned + RAG" (see eval/rag.py)
    rag_k: int = 3
    template: str | None = None  # --template: accepted only when it is the run's own (runs/load.py)
    trust_remote_code: bool = False  # --trust-remote-code of the command, never the run's manifest


@dataclass
class EvalResult:
    run_dir: str
    test_file: str
    base_model: str
    examples: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    systems: list[dict[str, Any]] = field(default_factory=list)
    intervals: dict[str, Any] = field(default_factory=dict)
    significance: list[dict[str, Any]] = field(default_factory=list)
    costs: dict[str, dict[str, float]] = field(default_factory=dict)
    savings: dict[str, Any] | None = None
    refusals: dict[str, Any] | None = None
    forgetting: dict[str, Any] | None = None
    errors: dict[str, Any] | None = None
    test_sha256: str = ""
    max_new_tokens: int = 0
    retrieval: dict[str, Any] | None = None  # recall@k of the +RAG systems' chunks
    by_kind: dict[str, Any] = field(default_factory=dict)  # scores per metadata.kind (or category)
    rag_errors: dict[str, Any] | None = None  # the error analysis of fine-tuned + RAG, the system to ship with --rag
    # cost per 1,000 requests as sentences, when the command priced the answers (plan's prices sit
    # above eval in the pipeline, so the command writes them and the reports only show them)
    cost_notes: list[str] = field(default_factory=list)

    @property
    def system_names(self) -> list[str]:
        return [s["name"] for s in self.systems] or [BASE, FINE_TUNED]

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_dir": self.run_dir,
            "test_file": self.test_file,
            "test_sha256": self.test_sha256,
            "base_model": self.base_model,
            "max_new_tokens": self.max_new_tokens,
            "systems": self.systems,
            "summary": self.summary,
            "intervals": self.intervals,
            "significance": self.significance,
            "seconds": self.seconds,
            "costs": self.costs,
            "savings": self.savings,
            "refusals": self.refusals,
            "forgetting": self.forgetting,
            "errors": self.errors,
            "retrieval": self.retrieval,
            "by_kind": self.by_kind,
            "rag_errors": self.rag_errors,
            "cost_notes": self.cost_notes,
            "examples": self.examples,
        }


def split_prompt(messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str]:
    """Everything before the last assistant message is the prompt; that message is the reference."""
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    return messages[:last], messages[last]["content"]


def load_test_set(test_file: str | Path, limit: int | None = None) -> list[dict[str, Any]]:
    """One dict per test conversation: where, prompt, question, reference, and from its metadata the
    category, the kind (changed / stable / style, for RAG reports) and the sources (documents that answer it)."""
    conversations = load_chat_jsonl(test_file)[:limit]
    if not conversations:
        raise DataError(f"{test_file} has no test examples", [Problem(str(test_file), "is empty")])
    raw, _ = collect(iter_raw_chat_records(test_file))
    metadata = {line: record.get("metadata") or {} for line, record in raw}
    tests = []
    for index, conversation in enumerate(conversations):
        prompt, reference = split_prompt(conversation.messages)
        test = {
            "index": index,
            "where": conversation.where,
            "question": prompt[-1]["content"] if prompt else "",
            "reference": reference,
            "prompt": prompt,
        }
        meta = metadata.get(conversation.line, {})
        for key in ("category", "kind"):
            if meta.get(key) is not None:
                test[key] = str(meta[key])
        source = meta.get("source")
        if source:
            test["sources"] = [source] if isinstance(source, str) else [str(s) for s in source]
        tests.append(test)
    return tests


def answer_budget(tokenizer, references: Sequence[str]) -> int:
    """Twice the longest reference plus 16 tokens, at most 512: an answer longer than that is wrong
    already (and counted as too long), so generating the rest of it would only cost time. Base models
    that ramble would otherwise spend most of the evaluation on words nobody scores."""
    if tokenizer is None:
        return MAX_BUDGET // 2
    longest = max(len(tokenizer(r, add_special_tokens=False)["input_ids"]) for r in references)
    return min(MAX_BUDGET, 2 * longest + 16)


def evaluate_run(
    run_dir: str | Path,
    test_file: str | Path,
    max_new_tokens: int | None = None,
    limit: int | None = None,
    batch_size: int | None = None,
    options: EvalOptions | None = None,
    systems: Sequence[System] | None = None,
    log: Callable[[str], None] = lambda _: None,
) -> EvalResult:
    options = options or EvalOptions(batch_size=batch_size)
    manifest = read_manifest(run_dir)  # every input is checked before a model loads
    check_template_request(manifest, run_dir, options.template)
    check_remote_code(manifest, run_dir, options.trust_remote_code)
    tests = load_test_set(test_file, limit)
    refusal_prompts = load_refusals(options.refusals, manifest.default_system_prompt) if options.refusals else []
    if systems is None:
        few_shot = None
        if options.shots > 0:
            train_file = options.train_file or resolve_train_file(run_dir)
            if train_file:
                train = [c.messages for c in load_chat_jsonl(train_file)]
                few_shot = few_shot_prepare(train, options.shots, options.seed)
            else:
                log("few-shot left out: the run's training file is not on this machine (pass --train FILE)")
        systems = default_systems(few_shot, options.shots, options.endpoints)
    retrieval = None
    if options.rag:
        retrieval = Retrieval.open(options.rag, options.rag_k)
        check_sources(tests, retrieval)
        systems = with_rag(list(systems), retrieval)
    prompts = [t["prompt"] for t in tests]

    result = EvalResult(
        str(run_dir),
        str(test_file),
        manifest.base_model.name,
        test_sha256=file_sha256(test_file),
        systems=[s.to_dict() for s in systems],
    )
    local = (
        LocalWeights.load(run_dir, options.trust_remote_code)
        if any(s.weights for s in systems) or options.forgetting
        else None
    )
    if max_new_tokens is None:
        max_new_tokens = answer_budget(local.tokenizer if local else None, [t["reference"] for t in tests])
        log(
            f"answers limited to {max_new_tokens} new tokens (twice the longest reference plus 16; --max-new-tokens overrides)"
        )
    result.max_new_tokens = max_new_tokens
    answers = Answers()
    if local is not None:
        _answer_locally(local, systems, prompts, refusal_prompts, options, max_new_tokens, answers, log)
    for system in systems:
        if system.endpoint is not None:
            answers.generations[system.name] = endpoint_answers(
                system.endpoint, [system.prepare(p) for p in prompts], max_new_tokens
            )
            if refusal_prompts:
                answers.refusals[system.name] = endpoint_answers(
                    system.endpoint, refusal_prompts, max_new_tokens
                ).answers
            log(f"{system.name}: {len(prompts)} answers in {answers.generations[system.name].seconds:.1f} s")
    generations = answers.generations
    result.seconds.update(answers.seconds)

    names = [s.name for s in systems]
    public_tests = [{k: v for k, v in t.items() if k != "prompt"} for t in tests]
    result.examples = scoring.example_rows(public_tests, {n: generations[n].answers for n in names})
    for row in result.examples:
        row["prompt_tokens"] = {n: generations[n].prompt_tokens[row["index"]] for n in names}
    if options.judge is not None:
        from .judge import judge_answers

        for name in names:
            judge_answers(options.judge, result.examples, name)
        log(f"judge {options.judge.model}: graded {len(names) * len(tests)} answers")
    result.summary, result.intervals = scoring.summarize(result.examples, names, options.resamples, options.seed)
    if retrieval is not None:
        result.retrieval = mark_retrieval(result.examples, prompts, retrieval)
    result.by_kind = by_kind(result.examples, names, options.resamples, options.seed)
    if FINE_TUNED in names:
        result.significance = scoring.paired_tests(result.examples, FINE_TUNED, names)
        result.errors = analyze(result.examples, FINE_TUNED)
    if FINE_TUNED_RAG in names:
        result.rag_errors = analyze(result.examples, FINE_TUNED_RAG)
    for name in names:
        generation = generations[name]
        result.seconds[name] = round(generation.seconds, 2)
        result.costs[name] = scoring.cost_summary(generation.prompt_tokens, generation.new_tokens, generation.seconds)
        result.costs[name]["cpu_seconds"] = round(generation.cpu_seconds, 2)
        if getattr(generation, "latency", None) is not None:
            result.costs[name]["latency_s"] = round(generation.latency, 3)
    result.savings = scoring.savings(result.costs, FINE_TUNED, FEW_SHOT)
    if answers.refusals:
        result.refusals = {
            "file": options.refusals,
            "questions": [p[-1]["content"] for p in refusal_prompts],
            "answers": answers.refusals,
            "systems": scoring.refusal_summary(answers.refusals, options.resamples, options.seed),
        }
    if options.forgetting:
        from .forgetting import ForgettingResult, load_probes, score_probes

        scores, per_probe = score_probes(load_probes(), answers.probes)
        result.forgetting = ForgettingResult(scores, answers.perplexity, per_probe, options.max_forgetting).to_dict()
    return result


@dataclass
class Answers:
    generations: dict[str, Generation] = field(default_factory=dict)  # system -> test answers
    refusals: dict[str, list[str]] = field(default_factory=dict)  # system -> answers to the decline set
    probes: dict[str, list[str]] = field(default_factory=dict)  # weights -> forgetting probe answers
    perplexity: dict[str, float] = field(default_factory=dict)  # weights -> perplexity on general text
    seconds: dict[str, float] = field(default_factory=dict)  # time spent on the forgetting check and latency


def _answer_locally(
    local: LocalWeights,
    systems: Sequence[System],
    prompts,
    refusal_prompts,
    options: EvalOptions,
    max_new_tokens: int,
    answers: Answers,
    log: Callable[[str], None],
) -> None:
    """Base weights first, then fine-tuned: the adapter is switched once, not per system."""
    # the savings line compares the two answering alone; without both, timing one of them is wasted
    timed_alone = options.latency_samples > 0 and {FEW_SHOT, FINE_TUNED} <= {s.name for s in systems}
    for weights in (BASE, FINE_TUNED):
        mine = [s for s in systems if s.weights == weights]
        if not mine and not options.forgetting:
            continue
        with local.use(weights) as (model, tokenizer):
            for system in mine:
                sent = [system.prepare(p) for p in prompts]
                answers.generations[system.name] = generate_with_stats(
                    model, tokenizer, sent, max_new_tokens, options.batch_size
                )
                done = answers.generations[system.name]
                log(f"{system.name}: {len(prompts)} answers in {done.seconds:.1f} s ({done.cpu_seconds:.1f} s of CPU)")
                if refusal_prompts:
                    answers.refusals[system.name] = generate_with_stats(
                        model,
                        tokenizer,
                        [system.prepare(p) for p in refusal_prompts],
                        max_new_tokens,
                        options.batch_size,
                    ).answers
                if timed_alone and system.name in (FEW_SHOT, FINE_TUNED):
                    started = time.perf_counter()
                    answers.generations[system.name].latency = _latency(
                        model, tokenizer, sent, options.latency_samples, max_new_tokens
                    )
                    answers.seconds["latency"] = answers.seconds.get("latency", 0) + round(
                        time.perf_counter() - started, 2
                    )
            if options.forgetting:
                from .forgetting import general_text, load_probes, nothing_to_lose, perplexity, score_probes

                started, cpu_started = time.perf_counter(), time.process_time()
                probes = load_probes()
                # only the fine-tuned pass can be skipped, so only it scores the base answers
                base_answers = answers.probes.get(BASE) if weights == FINE_TUNED else None
                base_score = score_probes(probes, {BASE: base_answers})[0][BASE] if base_answers else None
                if base_score is not None and nothing_to_lose(base_score, options.max_forgetting):
                    log(
                        f"forgetting check: the base model passed {base_score:.3f} of the probes, too few to lose; not asked"
                    )
                else:
                    answers.probes[weights] = generate_with_stats(
                        model,
                        tokenizer,
                        [p.prompt() for p in probes],
                        min(PROBE_TOKENS, max_new_tokens),
                        options.batch_size,
                    ).answers
                answers.perplexity[weights] = perplexity(model, tokenizer, general_text())
                answers.seconds["forgetting"] = answers.seconds.get("forgetting", 0) + round(
                    time.perf_counter() - started, 2
                )
                log(
                    f"forgetting check on {weights} weights: {len(answers.probes.get(weights, []))} probes, "
                    f"perplexity {answers.perplexity[weights]:.2f} "
                    f"({time.perf_counter() - started:.1f} s, {time.process_time() - cpu_started:.1f} s of CPU)"
                )


def _latency(model, tokenizer, prompts: Sequence[list[dict[str, Any]]], samples: int, max_new_tokens: int) -> float:
    """Seconds per request answered alone (batch of one), as a deployed model answers a single user."""
    started = time.perf_counter()
    chosen = list(prompts[:samples])
    for prompt in chosen:
        generate_with_stats(model, tokenizer, [prompt], max_new_tokens, batch_size=1)
    return (time.perf_counter() - started) / max(len(chosen), 1)
