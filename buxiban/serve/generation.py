"""One request's generation: sampling settings, incremental detokenizing, stop strings.

`TextSink` is what `model.generate` streams into. It turns token ids into text deltas that are
safe to send (no half UTF-8 character, no prefix of a stop string that may yet complete) and tells
generate to stop when a stop string appears or the client went away."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable

MAX_STOPS = 4  # OpenAI's limit


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


@dataclass
class GenerationRequest:
    """What the HTTP handler queues and the model thread consumes. `emit` is thread-safe and gets
    ("delta", choice, text), ("finish", choice, reason, completion_tokens), then ("end",) or
    ("error", message)."""

    adapter: str | None  # a registered adapter name; None for the base model
    prompt_ids: list[int]
    sampling: Sampling
    emit: Callable[[tuple], None]
    cancelled: threading.Event = field(default_factory=threading.Event)


class TextSink:
    """A `generate` streamer and stopping criterion in one."""

    def __init__(self, tokenizer, stops: tuple[str, ...], on_text: Callable[[str], None], cancelled: threading.Event):
        self.tokenizer = tokenizer
        self.stops = stops
        self.on_text = on_text
        self.cancelled = cancelled
        self.ids: list[int] = []
        self.sent = 0  # characters of the decoded text already handed to on_text
        self.text = ""
        self.hit_stop = False
        self.prompt_seen = False

    # streamer protocol: the first put is the prompt, then one token per step
    def put(self, value) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        if self.hit_stop:
            return
        self.ids.extend(int(v) for v in value.reshape(-1).tolist())
        decoded = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if decoded.endswith("\ufffd"):  # a multi-byte character is still arriving
            return
        self.text = decoded
        cut = self._stop_position(decoded)
        if cut is not None:
            self.hit_stop = True
            self.text = decoded[:cut]
            self._flush(len(self.text))
            return
        hold = max((len(s) - 1 for s in self.stops), default=0)  # could be the start of a stop string
        self._flush(max(self.sent, len(decoded) - hold))

    def end(self) -> None:
        if not self.hit_stop:
            self.text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
            self._flush(len(self.text))

    def _stop_position(self, text: str) -> int | None:
        window_start = max(0, self.sent - max((len(s) for s in self.stops), default=0))
        found = [text.find(s, window_start) for s in self.stops]
        found = [i for i in found if i >= 0]
        return min(found) if found else None

    def _flush(self, upto: int) -> None:
        if upto > self.sent:
            self.on_text(self.text[self.sent:upto])
            self.sent = upto

    # stopping-criterion protocol
    def __call__(self, input_ids, scores, **kwargs):
        import torch

        done = self.hit_stop or self.cancelled.is_set()
        return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)

    def finish_reason(self, stop_ids: list[int], max_tokens: int) -> str:
        if self.hit_stop or (self.ids and self.ids[-1] in stop_ids):
            return "stop"
        return "length" if len(self.ids) >= max_tokens else "stop"


def generate_choice(model, tokenizer, request: GenerationRequest, choice: int, stop_ids: list[int]) -> None:
    """Generate one choice into request.emit; `model` already has the right adapter active."""
    import torch
    from transformers import StoppingCriteriaList

    s = request.sampling
    sink = TextSink(tokenizer, s.stop, lambda text: request.emit(("delta", choice, text)), request.cancelled)
    ids = torch.tensor([request.prompt_ids], device=next(model.parameters()).device)
    sampling = ({"do_sample": True, "temperature": s.temperature, "top_p": s.top_p, "top_k": 0} if not s.greedy
                else {"do_sample": False, "temperature": None, "top_p": None, "top_k": None})
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_ids[0]
    with torch.no_grad():
        model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=s.max_tokens,
                       eos_token_id=stop_ids, pad_token_id=pad_id, streamer=sink,
                       stopping_criteria=StoppingCriteriaList([sink]), **sampling)
    request.emit(("finish", choice, sink.finish_reason(stop_ids, s.max_tokens), len(sink.ids)))
