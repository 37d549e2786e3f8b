"""Generation for a batch of requests at once: sampling settings, per-row incremental
detokenizing, stop strings, and per-row ends.

`RowSink` turns one row's token ids into text deltas that are safe to send (no half UTF-8
character, no prefix of a stop string that may yet complete) and knows when its row is done: a
stop string, an end-of-turn token, its own max_tokens, or a client that went away. `BatchSink` is
what `model.generate` streams into and asks whether to stop, row by row."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

MAX_STOPS = 4  # OpenAI's limit
BASE_ROW = "__base__"  # PEFT's name for "no adapter" in a mixed-adapter batch


@dataclass(frozen=True)
class Sampling:
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    n: int = 1

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    def batch_key(self):
        """Requests with equal keys can share one generate call; a seeded request runs alone, so
        its answer does not depend on what else happened to be queued."""
        if self.seed is not None:
            return None
        return ("greedy",) if self.greedy else ("sample", self.temperature, self.top_p)


# What a request's `emit` receives from the model thread: Delta and Finish events for each choice,
# then End, or Failure. Each leads with its `kind`, so it also reads as the plain tuple it is.


class Delta(NamedTuple):
    """More text for one choice, safe to send (no half character, no part of a stop string)."""

    kind: Literal["delta"]
    choice: int
    text: str


class Finish(NamedTuple):
    """One choice is done: why ("stop" or "length") and how many tokens it generated."""

    kind: Literal["finish"]
    choice: int
    reason: str
    completion_tokens: int


class End(NamedTuple):
    """Every choice of the request is done; nothing follows."""

    kind: Literal["end"] = "end"


class Failure(NamedTuple):
    """Generation raised; nothing follows."""

    kind: Literal["error"]
    message: str


GenerationEvent = Delta | Finish | End | Failure


@dataclass
class GenerationRequest:
    """What the HTTP handler queues and the model thread consumes. `emit` is thread-safe and gets
    Delta and Finish events for each choice, then End or Failure."""

    adapter: str | None  # a registered adapter name; None for the base model
    prompt_ids: list[int]
    sampling: Sampling
    emit: Callable[[GenerationEvent], None]
    cancelled: threading.Event = field(default_factory=threading.Event)


class RowSink:
    def __init__(self, tokenizer, request: GenerationRequest, choice: int, stop_ids: list[int]):
        self.tokenizer = tokenizer
        self.request = request
        self.choice = choice
        self.stops = request.sampling.stop
        self.stop_ids = set(stop_ids)
        self.limit = request.sampling.max_tokens
        self.ids: list[int] = []
        self.sent = 0  # characters of the decoded text already emitted
        self.text = ""
        self.reason: str | None = None  # set once the row is done

    @property
    def done(self) -> bool:
        return self.reason is not None or self.request.cancelled.is_set()

    def push(self, token: int) -> None:
        if self.done:
            return
        self.ids.append(token)
        if token in self.stop_ids:
            self.reason = "stop"
            self.ids.pop()  # the end-of-turn token is counted, never shown
            self._settle()
            self.ids.append(token)
            return
        decoded = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if not decoded.endswith("\ufffd"):  # else a multi-byte character is still arriving
            self.text = decoded
            cut = self._stop_position(decoded)
            if cut is not None:
                self.reason = "stop"
                self.text = decoded[:cut]
                self._flush(len(self.text))
                return
            hold = max((len(s) - 1 for s in self.stops), default=0)  # could be the start of a stop string
            self._flush(max(self.sent, len(decoded) - hold))
        if len(self.ids) >= self.limit:
            self.reason = "length"
            self._settle()

    def finish(self) -> None:
        """After generate returns: flush what is held back and report how the row ended."""
        if self.reason is None:
            self.reason = "stop" if self.request.cancelled.is_set() else "length"
            self._settle()
        self.request.emit(Finish("finish", self.choice, self.reason, len(self.ids)))

    def _settle(self) -> None:
        """Send what was held back as a possible stop-string start, now that the row is over."""
        decoded = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        cut = self._stop_position(decoded)
        self.text = decoded if cut is None else decoded[:cut]
        if cut is not None:
            self.reason = "stop"
        self._flush(len(self.text))

    def _stop_position(self, text: str) -> int | None:
        window_start = max(0, self.sent - max((len(s) for s in self.stops), default=0))
        found = [i for i in (text.find(s, window_start) for s in self.stops) if i >= 0]
        return min(found) if found else None

    def _flush(self, upto: int) -> None:
        if upto > self.sent:
            self.request.emit(Delta("delta", self.choice, self.text[self.sent : upto]))
            self.sent = upto


class BatchSink:
    """A `generate` streamer and stopping criterion in one, for every row of a batch."""

    def __init__(self, rows: list[RowSink]):
        self.rows = rows
        self.prompt_seen = False
        self.steps = 0  # decoding steps run: /health counts them, a cancelled request's stop early

    def put(self, value) -> None:  # first the prompt, then one token per row and step
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        self.steps += 1
        for row, token in zip(self.rows, value.reshape(-1).tolist()):
            row.push(int(token))

    def end(self) -> None:
        pass

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        return torch.tensor([row.done for row in self.rows], dtype=torch.bool, device=input_ids.device)


def generate_batch(
    model,
    tokenizer,
    rows: list[tuple[GenerationRequest, int]],
    stop_ids: list[int],
    adapter_names: list[str] | None = None,
) -> int:
    """One generate call for all rows (request, choice), left-padded; each row streams through its
    own request's emit. All rows share sampling settings (see Sampling.batch_key)."""
    import torch
    from transformers import StoppingCriteriaList

    sinks = [RowSink(tokenizer, request, choice, stop_ids) for request, choice in rows]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_ids[0]
    width = max(len(request.prompt_ids) for request, _ in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for index, (request, _) in enumerate(rows):
        input_ids[index, width - len(request.prompt_ids) :] = torch.tensor(request.prompt_ids)
        attention_mask[index, width - len(request.prompt_ids) :] = 1
    first, _ = rows[0]
    s = first.sampling
    sampling = (
        {"do_sample": True, "temperature": s.temperature, "top_p": s.top_p, "top_k": 0}
        if not s.greedy
        else {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    )
    extra = {"adapter_names": adapter_names} if adapter_names is not None else {}
    sink = BatchSink(sinks)
    device = next(model.parameters()).device
    with torch.no_grad():
        model.generate(
            input_ids=input_ids.to(device),
            attention_mask=attention_mask.to(device),
            max_new_tokens=max(request.sampling.max_tokens for request, _ in rows),
            eos_token_id=stop_ids,
            pad_token_id=pad_id,
            streamer=sink,
            stopping_criteria=StoppingCriteriaList([sink]),
            **sampling,
            **extra,
        )
    for row in sinks:
        row.finish()
    return sink.steps
