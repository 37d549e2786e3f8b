"""`buxiban data check`: every format problem with its line, then what a careful reviewer would
flag — duplicates, train/test leakage, personal data, over-length examples, chat-template pitfalls,
too little data — and statistics measured with the model's own tokenizer and chat template.

The file is streamed: memory grows by a few hundred bytes per example, not with the text.
"""

from __future__ import annotations

import statistics
from array import array
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DataError, Problem, Problems
from ..script import script_of
from .advice import sufficiency
from .dedup import DuplicateIndex
from .jsonl import iter_jsonl
from .pii import KINDS as PII_KINDS
from .pii import scan_value
from .preference import is_preference_record, iter_preference_jsonl
from .records import Conversation, iter_chat_jsonl
from .tokenize import ENCODE_BATCH, IGNORE_INDEX, encode_many, encode_prompt, end_of_turn_ids, surely_over_length

TEMPLATE_SAMPLE = 200  # examples whose prompt tokens are compared with the generation-time prompt
LISTED = 20  # locations listed per finding; the count is always complete


@dataclass
class Finding:
    """Not a format error, but something to look at: duplicates, leakage, PII, length, template, size."""

    kind: str
    message: str
    where: list[str] = field(default_factory=list)
    count: int = 0

    def __str__(self) -> str:
        places = ", ".join(self.where[:5]) + (", …" if len(self.where) > 5 else "")
        return f"{self.kind}: {self.message}" + (f" ({places})" if places else "")


@dataclass
class CheckReport:
    path: str
    kind: str = "chat"  # chat | preference
    problems: list[Problem] = field(default_factory=Problems)
    findings: list[Finding] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    preview: str = ""  # the first example, trained text marked, so a user sees what the loss sees
    token_lengths: Sequence[int] = ()  # tokens of each tokenized example, for a histogram (not in to_dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "kind": self.kind,
            "ok": self.ok,
            "stats": self.stats,
            "preview": self.preview,
            "problems": [
                {"where": p.where, "field": p.field, "message": p.message, "fix": p.fix} for p in self.problems
            ],
            "problem_count": len(self.problems),  # all of them; the list keeps the first KEPT_PROBLEMS
            "findings": [
                {"kind": f.kind, "message": f.message, "count": f.count, "where": f.where[:LISTED]}
                for f in self.findings
            ],
        }


def percentile(values, q: float) -> int:
    """Nearest-rank percentile: always one of the observed values."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def spread(values) -> dict[str, float]:
    return {
        "min": min(values),
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "max": max(values),
        "mean": round(statistics.fmean(values), 1),
    }


KIND_PROBE_LINES = 1000  # a file whose first thousand lines are all broken is checked as chat data


def detect_kind(path: str | Path) -> str:
    for seen, (_, record, problem) in enumerate(iter_jsonl(path)):
        if problem is None:
            return "preference" if is_preference_record(record) else "chat"
        if seen >= KIND_PROBE_LINES:
            break
    return "chat"


def check_file(
    path: str | Path,
    tokenizer=None,
    max_length: int = 512,
    test_file: str | Path | None = None,
    near_threshold: float = 0.8,
    kind: str = "auto",
    stop_after: int | None = None,
) -> CheckReport:
    """`stop_after`: stop reading at that many problems (the server's upload check: a file that bad
    is refused either way, and reading the rest would only keep the client waiting)."""
    kind = detect_kind(path) if kind == "auto" else kind
    report = CheckReport(str(path), kind)
    duplicates = DuplicateIndex(threshold=near_threshold, sources=[str(path)])
    leakage = DuplicateIndex(threshold=near_threshold, sources=[str(path), str(test_file)]) if test_file else None
    pii_lines: dict[str, list[str]] = defaultdict(list)
    pii_counts: Counter = Counter()
    scripts = _ScriptTally()
    messages_per = array("i")
    token_stats = _TokenStats(tokenizer, max_length, report) if tokenizer is not None else None
    for item, problems in _stream(path, kind):
        report.problems.extend(problems)
        if stop_after is not None and len(report.problems) >= stop_after:
            report.stats["stopped_after_problems"] = len(report.problems)
            break
        if item is None:
            continue
        messages = item.messages if kind == "chat" else item.prompt + [{"role": "assistant", "content": item.chosen}]
        messages_per.append(len(messages))
        duplicates.add(item.line, _dialogue_text(messages, kind, item))
        if leakage is not None:
            leakage.add(item.line, _user_text(messages), group=0)
        found = scan_value([m["content"] for m in messages] + ([item.rejected] if kind == "preference" else []))
        for pii_kind, count in found.items():
            pii_counts[pii_kind] += count
            pii_lines[pii_kind].append(item.where)
        scripts.add(item.where, " ".join(m["content"] for m in messages if m["role"] == "assistant"))
        if token_stats is not None:
            token_stats.add(item if kind == "chat" else Conversation(messages, item.source, item.line))
    if token_stats is not None:
        token_stats.finish()
    if not messages_per:
        return report
    report.stats.update({"examples": len(messages_per), "messages_per_example": spread(messages_per)})
    _duplicate_findings(report, duplicates)
    if leakage is not None:
        _leakage_findings(report, leakage, Path(test_file))
    for pii_kind in PII_KINDS:
        if pii_counts[pii_kind]:
            report.findings.append(
                Finding(
                    "personal data",
                    f"{pii_counts[pii_kind]} {pii_kind} value(s) on "
                    f"{len(pii_lines[pii_kind])} line(s); `buxiban data redact` writes a masked copy",
                    pii_lines[pii_kind][:LISTED],
                    pii_counts[pii_kind],
                )
            )
    report.stats["personal_data"] = dict(pii_counts)
    scripts.report(report)
    level, advice = sufficiency(len(messages_per))
    report.stats["sufficiency"] = {"level": level, "advice": advice}
    if level == "warning":
        report.findings.append(Finding("too little data", advice, count=len(messages_per)))
    return report


def _stream(path, kind) -> Iterator[tuple[Any, list[Problem]]]:
    return iter_chat_jsonl(path) if kind == "chat" else iter_preference_jsonl(path)


class _ScriptTally:
    """Chinese script of the assistant answers. An answer that mixes the scripts is always a slip;
    a Simplified answer is one when the rest of the data set is Traditional (the brand's voice)."""

    def __init__(self):
        self.counts: Counter = Counter()
        self.slips: dict[str, list[str]] = defaultdict(list)
        self.examples: Counter = Counter()

    def add(self, where: str, answer: str) -> None:
        script = script_of(answer)
        if script.name is None:
            return
        self.counts[script.name] += 1
        if script.simplified and len(self.slips[script.name]) < LISTED:
            self.slips[script.name].append(where)
        self.examples.update(script.simplified)

    def report(self, report: CheckReport) -> None:
        if not self.counts:
            return
        report.stats["script"] = dict(self.counts)
        flagged = self.counts["mixed"] + (self.counts["simplified"] if self.counts["traditional"] else 0)
        if not flagged:
            return
        characters = "".join(char for char, _ in self.examples.most_common(8))
        report.findings.append(
            Finding(
                "simplified script",
                f"{flagged} answer(s) use Simplified characters ({characters}) in a data set written in "
                "Traditional Chinese; the model learns to mix scripts. Convert them to Taiwan's standard with "
                "OpenCC (`opencc -c s2twp.json`) and check the figures after",
                (self.slips["mixed"] + (self.slips["simplified"] if self.counts["traditional"] else []))[:LISTED],
                flagged,
            )
        )


def _dialogue_text(messages, kind, item) -> str:
    """What makes two examples the same: the user and assistant turns (a shared system prompt would
    make every pair look alike), plus the rejected answer for preference pairs."""
    text = "\n".join(m["content"] for m in messages if m["role"] != "system")
    return text + ("\n" + item.rejected if kind == "preference" else "")


def _user_text(messages) -> str:
    return "\n".join(m["content"] for m in messages if m["role"] == "user")


def _duplicate_findings(report: CheckReport, index: DuplicateIndex) -> None:
    if index.exact_pairs:
        places = [f"{index.label(j)} = {index.label(i)}" for i, j in index.exact_pairs]
        report.findings.append(
            Finding(
                "duplicate",
                f"{len(places)} example(s) repeat an earlier one exactly; "
                "a repeat weighs that example double and teaches nothing new",
                places[:LISTED],
                len(places),
            )
        )
    near = index.near_pairs()
    if near:
        places = [f"{index.label(j)} ~ {index.label(i)} ({score:.0%})" for i, j, score in near]
        report.findings.append(
            Finding(
                "near-duplicate",
                f"{len(places)} pair(s) are at least {index.threshold:.0%} similar; keep the better one of each",
                places[:LISTED],
                len(places),
            )
        )
    report.stats["duplicates"] = {"exact": len(index.exact_pairs), "near": len(near)}


def _leakage_findings(report: CheckReport, index: DuplicateIndex, test_file: Path) -> None:
    for conversation, problems in iter_chat_jsonl(test_file):
        if conversation is not None:
            index.add(conversation.line, _user_text(conversation.messages), group=1)
        elif problems and problems[0].message == "is empty":
            report.problems.extend(problems)
    exact = index.exact_pairs_across()
    near = index.near_pairs(across_groups=True)
    if exact:
        report.findings.append(
            Finding(
                "leakage",
                f"{len(exact)} test example(s) ask exactly what a training example "
                "asks; their scores would measure memory, not skill: remove them from one side",
                [f"{index.label(j)} = {index.label(i)}" for i, j in exact][:LISTED],
                len(exact),
            )
        )
    if near:
        report.findings.append(
            Finding(
                "leakage",
                f"{len(near)} test example(s) are near-duplicates of training "
                f"examples (user turns at least {index.threshold:.0%} similar)",
                [f"{index.label(j)} ~ {index.label(i)} ({s:.0%})" for i, j, s in near][:LISTED],
                len(near),
            )
        )
    report.stats["leakage"] = {"test_file": str(test_file), "exact": len(exact), "near": len(near)}


class _TokenStats:
    """Token statistics and chat-template checks, tokenizing in batches as examples stream past."""

    def __init__(self, tokenizer, max_length: int, report: CheckReport):
        self.tokenizer, self.max_length, self.report = tokenizer, max_length, report
        self.pending: list[Conversation] = []
        self.lengths = array("i")
        self.trained = array("i")
        self.over: list[str] = []
        self.no_trained: list[str] = []
        self.prompt_mismatch: list[str] = []
        self.untrained_end: list[str] = []
        self.context_only: list[str] = []  # conversations with assistant turns the template keeps as context
        self.bos_counts: Counter = Counter()
        self.template_failed = False
        stops = {tokenizer.eos_token_id, *end_of_turn_ids(tokenizer)}
        self.stops = {s for s in stops if s is not None}

    def add(self, conversation: Conversation) -> None:
        if surely_over_length(conversation.messages, self.max_length):
            self.over.append(conversation.where)  # counted, not tokenized: see surely_over_length
            return
        self.pending.append(conversation)
        if len(self.pending) >= ENCODE_BATCH:
            self._flush()

    def _flush(self) -> None:
        batch, self.pending = self.pending, []
        if not batch or self.template_failed:
            return
        try:
            encoded = encode_many(self.tokenizer, [c.messages for c in batch], [c.where for c in batch])
        except DataError as exc:  # the template itself is unusable: one report, not one per example
            self.report.problems.extend(exc.problems)
            self.template_failed = True
            return
        if not self.report.preview:
            self.report.preview = mark_trained(self.tokenizer, batch[0])
        for conversation, example in zip(batch, encoded):
            self.lengths.append(len(example.input_ids))
            self.trained.append(example.trained_tokens)
            if len(example.input_ids) > self.max_length:
                self.over.append(conversation.where)
            if example.trained_tokens == 0:
                self.no_trained.append(conversation.where)
            if example.context_turns:
                self.context_only.append(conversation.where)
            self._template_checks(conversation, example)

    def _template_checks(self, conversation: Conversation, example) -> None:
        ids, labels = example.input_ids, example.labels
        bos = self.tokenizer.bos_token_id
        leading = 0
        while bos is not None and leading < len(ids) and ids[leading] == bos and leading < 3:
            leading += 1
        self.bos_counts[leading] += 1
        for position in range(len(labels)):  # every trained stretch must end on the end-of-turn token
            ends_here = labels[position] != IGNORE_INDEX and (
                position + 1 == len(labels) or labels[position + 1] == IGNORE_INDEX
            )
            if ends_here and ids[position] not in self.stops:
                self.untrained_end.append(conversation.where)
                break
        if len(self.lengths) <= TEMPLATE_SAMPLE and example.trained_tokens:
            first = next(i for i, label in enumerate(labels) if label != IGNORE_INDEX)
            index = next(
                i for i, m in enumerate(conversation.messages) if m["role"] == "assistant" and m.get("weight", 1)
            )
            if ids[:first] != encode_prompt(self.tokenizer, conversation.messages[:index]):
                self.prompt_mismatch.append(conversation.where)

    def finish(self) -> None:
        self._flush()
        if not self.lengths and not self.over:
            return
        stats = self.report.stats
        self.report.token_lengths = self.lengths
        if self.lengths:
            stats.update(
                {
                    "tokens_per_example": spread(self.lengths),
                    "trained_tokens_per_example": spread(self.trained),
                    "total_tokens": sum(self.lengths),
                    "total_trained_tokens": sum(self.trained),
                    "trained_share": round(sum(self.trained) / max(1, sum(self.lengths)), 3),
                }
            )
        stats.update(
            {"max_length": self.max_length, "over_max_length": len(self.over), "over_max_length_at": self.over[:LISTED]}
        )
        findings = self.report.findings
        if self.over:
            findings.append(
                Finding(
                    "over length",
                    f"{len(self.over)} example(s) exceed {self.max_length} tokens: "
                    "training drops them (data.overlength=drop) or cuts them and keeps those with trained "
                    "tokens left (data.overlength=truncate)",
                    self.over[:LISTED],
                    len(self.over),
                )
            )
        if self.no_trained:
            findings.append(
                Finding(
                    "nothing to learn",
                    "every assistant message has weight 0",
                    self.no_trained[:LISTED],
                    len(self.no_trained),
                )
            )
        if self.prompt_mismatch:
            findings.append(
                Finding(
                    "template",
                    "the prompt tokens seen in training differ from the prompt the server "
                    "will send (the tokenizer merges across the turn boundary); answers may degrade",
                    self.prompt_mismatch[:LISTED],
                    len(self.prompt_mismatch),
                )
            )
        if self.context_only:
            findings.append(
                Finding(
                    "template",
                    "the chat template renders earlier assistant turns differently once later turns follow, so "
                    "those turns are context, not trained (their last turn is); to train each turn, give each its "
                    "own conversation ending there",
                    self.context_only[:LISTED],
                    len(self.context_only),
                )
            )
        if self.untrained_end:
            findings.append(
                Finding(
                    "template",
                    "an assistant turn does not end with the end-of-turn token "
                    f"{self.tokenizer.eos_token!r}: the model will not learn to stop",
                    self.untrained_end[:LISTED],
                    len(self.untrained_end),
                )
            )
        if any(count != 1 for count in self.bos_counts) and self.tokenizer.bos_token_id is not None:
            wrong = sum(n for count, n in self.bos_counts.items() if count != 1)
            findings.append(
                Finding(
                    "template",
                    f"{wrong} example(s) do not start with exactly one BOS token "
                    f"{self.tokenizer.bos_token!r} (counts: {dict(self.bos_counts)})",
                    count=wrong,
                )
            )
        stats["template"] = {
            "prompt_matches_generation": not self.prompt_mismatch,
            "end_of_turn_trained": not self.untrained_end,
            "leading_bos": dict(self.bos_counts),
        }


def mark_trained(tokenizer, conversation: Conversation, start: str = "⟦", end: str = "⟧") -> str:
    """The rendered conversation with each trained stretch wrapped in markers."""
    encoded = encode_many(tokenizer, [conversation.messages], [conversation.where])[0]
    # Decode runs of tokens, not single tokens: byte-level BPE splits a Chinese character over several.
    pieces, run, inside = [], [], False
    for token, label in zip(encoded.input_ids, encoded.labels):
        trained = label != IGNORE_INDEX
        if trained != inside:
            pieces.append(tokenizer.decode(run))
            pieces.append(start if trained else end)
            run, inside = [], trained
        run.append(token)
    pieces.append(tokenizer.decode(run))
    if inside:
        pieces.append(end)
    return "".join(pieces)
