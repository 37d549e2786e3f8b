"""One loaded base model; registered LoRA adapters attached to it by name and chosen per request.

A single model thread serves a bounded queue. It takes the oldest request together with the queued
ones right behind it that share its sampling settings, whatever their adapters, and generates them
in one batch: PEFT's per-row `adapter_names` runs each row under its own adapter (or none, for the
base), so requests for different adapters are in flight together, each streamed as its tokens come.
One thread because the weights are shared and attaching or activating an adapter mutates the model.
A full queue answers 429 with a Retry-After from measured times.

Full and freeze runs carry their own base weights, so they cannot share this model: they are
refused with the command that serves them (`buxiban serve --model RUN/model`)."""

from __future__ import annotations

import collections
import logging
import math
import queue
import re
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ...adapters.registry import AdapterEntry, Registry
from ...errors import AdapterError, ServeError
from ..safety import Busy
from .generation import BASE_ROW, End, Failure, GenerationRequest, generate_batch

if TYPE_CHECKING:
    from peft import PeftModel

log = logging.getLogger(__name__)
MAX_BATCH_ROWS = 8  # rows generated together; on a CPU more mostly adds latency to each


class ModelNotFound(ServeError):
    status = 404
    code = "model_not_found"


def model_name(name: str) -> str:
    """A base model's name as it appears in model ids and in ft:<base>:... names."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "base"


def load_base_safely(spec: str, template: str = "auto"):
    """The base model from safetensors only (a pickle-based .bin can run code when loaded), and
    never remote code."""
    from transformers import AutoModelForCausalLM

    from ...errors import ModelLoadError
    from ...models.load import load_tokenizer, resolve, with_contiguous_head_input

    source = resolve(spec, trust_remote_code=False)
    if not any(Path(source.path).glob("*.safetensors")):
        raise ModelLoadError(
            f"{source.path} has no .safetensors weights; the server loads no pickled weights "
            "(convert them with transformers: model.save_pretrained(dir, safe_serialization=True))"
        )
    tokenizer = load_tokenizer(source, trust_remote_code=False, template=template)
    try:
        model = AutoModelForCausalLM.from_pretrained(source.path, use_safetensors=True, trust_remote_code=False)
    except Exception as exc:
        raise ModelLoadError(f"cannot load the model {spec}: {exc}") from exc
    import torch

    if torch.cuda.is_available():  # adapters attached later follow the model's device
        model.to("cuda")
    model.eval()
    return with_contiguous_head_input(model), tokenizer, source


class ModelPool:
    def __init__(self, spec: str, registry: Registry, queue_size: int = 16, template: str = "auto"):
        from ...models.generate import stop_token_ids

        self.registry = registry
        self.base, self.tokenizer, self.source = load_base_safely(spec, template)
        self.base_id = model_name(self.source.name)
        self.parameters = sum(p.numel() for p in self.base.parameters())  # tied weights counted once
        self.aliases = {self.base_id, spec, self.source.name}
        self.model_aliases: dict[str, str] = {}  # --alias: another name -> a registered adapter or the base
        self.context = int(getattr(self.base.config, "max_position_embeddings", 0) or 2048)
        self.stop_ids = stop_token_ids(self.base, self.tokenizer)
        self.peft: PeftModel | None = None  # wraps self.base once the first adapter is attached
        self.attached: dict[tuple[str, str], str] = {}  # (name, run_dir) -> PEFT adapter slot
        self.queue: queue.Queue[GenerationRequest | None] = queue.Queue(maxsize=queue_size)  # None: stop
        self.seconds_per_request = 1.0  # running mean; feeds Retry-After
        # shown on /health: how much batching happens, and how much decoding it took
        self.served = {"requests": 0, "batches": 0, "decoding_steps": 0}
        self.thread = threading.Thread(target=self._serve, name="buxiban-model", daemon=True)
        self.thread.start()

    # --- called from request handlers (any thread): checks only, no model access ---------------

    def resolve_adapter(self, model: str) -> str | None:
        """The adapter name a request's `model` selects (None: the base), or a 404 that says why."""
        model = self.model_aliases.get(model, model)
        if model in self.aliases:
            return None
        try:
            entry = self.registry.get(model)
        except AdapterError as exc:
            raise ModelNotFound(
                f"the model '{model}' does not exist: {exc}; GET /v1/models lists what this server serves", "model"
            ) from exc
        problem = self.unservable(entry)
        if problem:
            raise ServeError(f"the model '{model}' cannot be served here: {problem}", "model")
        return model

    def unservable(self, entry: AdapterEntry) -> str | None:
        if not entry.manifest.complete:
            return f"its run directory {entry.run_dir} is missing or unfinished"
        if entry.weights != "adapter":
            return (
                f"it is a {entry.manifest.adapter} run with its own weights, which cannot share this "
                f"server's base model; serve it with `buxiban serve --model {entry.run_dir / 'model'}`"
                if entry.weights == "model"
                else f"it is a {entry.manifest.adapter} run; merge it first (`buxiban adapters merge`)"
            )
        if entry.manifest.base_model.fingerprint != self.source.fingerprint:
            return f"it was trained on {entry.base_model}, not on this server's base model {self.source.name}"
        trained_with = (entry.manifest.template or {}).get("sha256")
        if trained_with and trained_with != self.tokenizer.buxiban_template.sha256:
            return (
                f"it was trained with the chat template {entry.manifest.template.get('name')!r}, and this server "
                f"renders prompts with {self.tokenizer.buxiban_template.name!r}; start it with "
                f"--template {entry.manifest.template.get('name')} (or the run's template file)"
            )
        if not (entry.run_dir / "adapter" / "adapter_model.safetensors").is_file():  # PEFT would fall back to a pickle
            return f"{entry.run_dir / 'adapter'} holds no adapter_model.safetensors"
        return None

    def submit(self, request: GenerationRequest) -> None:
        try:
            self.queue.put_nowait(request)
        except queue.Full:
            wait = math.ceil(self.seconds_per_request * (self.queue.qsize() + 1))
            raise Busy(
                f"the server is busy: {self.queue.maxsize} requests are already waiting for the model; "
                f"retry in about {wait} s",
                max(1, wait),
            ) from None

    # --- the model thread ------------------------------------------------------------------------

    def _serve(self) -> None:
        pending: collections.deque[GenerationRequest | None] = (
            collections.deque()
        )  # taken from the queue but not batchable with the last
        while True:
            batch = self._next_batch(pending)
            if batch is None:
                return
            started = time.perf_counter()
            try:
                live = [r for r in batch if not r.cancelled.is_set()]
                if live:
                    self.served["decoding_steps"] += self._generate(live)
                for request in batch:
                    request.emit(End())
            except Exception as exc:  # one bad batch must not end the thread that serves all of them
                log.exception("generation failed")
                for request in batch:
                    request.emit(Failure("error", f"{type(exc).__name__}: {exc}"))
            self.served["requests"] += len(batch)
            self.served["batches"] += 1
            spent = (time.perf_counter() - started) / len(batch)
            self.seconds_per_request = 0.8 * self.seconds_per_request + 0.2 * spent

    def _next_batch(self, pending: collections.deque[GenerationRequest | None]) -> list[GenerationRequest] | None:
        """The oldest request, plus the queued ones right behind it that can share its generate call
        (same sampling settings; any adapters), up to MAX_BATCH_ROWS rows. FIFO order is kept."""
        first = pending.popleft() if pending else self.queue.get()
        if first is None:
            return None
        batch, rows, key = [first], first.sampling.n, first.sampling.batch_key()
        while key is not None and rows < MAX_BATCH_ROWS:
            try:
                following = self.queue.get_nowait()
            except queue.Empty:
                break
            if (
                following is None
                or following.sampling.batch_key() != key
                or rows + following.sampling.n > MAX_BATCH_ROWS
            ):
                pending.append(following)
                break
            batch.append(following)
            rows += following.sampling.n
        return batch

    def _generate(self, batch: list[GenerationRequest]) -> int:
        """Rows are (request, choice); each runs under its request's adapter: one generate call with
        PEFT's per-row adapter_names when the batch mixes adapters, or one call per adapter where
        PEFT cannot mix them (DoRA)."""
        import torch

        slots = {request.adapter: self._slot(request.adapter) for request in batch}
        if batch[0].sampling.seed is not None:  # alone in its batch; seeded after attaching, which draws random numbers
            torch.manual_seed(batch[0].sampling.seed)
        rows = [(request, choice) for request in batch for choice in range(request.sampling.n)]
        names = [slots[request.adapter] for request, _ in rows]
        if len(set(names)) > 1 and not any(self.peft.peft_config[n].use_dora for n in set(names) - {None}):
            return generate_batch(self.peft, self.tokenizer, rows, self.stop_ids, [n or BASE_ROW for n in names])
        return sum(  # each adapter's rows together, in arrival order
            self._generate_one_adapter(slot, [row for row, name in zip(rows, names) if name == slot])
            for slot in dict.fromkeys(names)
        )

    def _generate_one_adapter(self, slot: str | None, rows) -> int:
        if slot is not None:
            self.peft.set_adapter(slot)
            return generate_batch(self.peft, self.tokenizer, rows, self.stop_ids)
        if self.peft is None:
            return generate_batch(self.base, self.tokenizer, rows, self.stop_ids)
        with self.peft.disable_adapter():
            return generate_batch(self.peft, self.tokenizer, rows, self.stop_ids)

    def _slot(self, name: str | None) -> str | None:
        """The PEFT adapter slot for a registered name, attaching the adapter on first use. Slot
        names cannot hold '.' or ':', so registered names map to adapter_0, adapter_1, ..."""
        if name is None:
            return None
        entry = self.registry.get(name)
        key = (name, str(entry.run_dir))
        if key not in self.attached:
            from peft import PeftModel

            slot = f"adapter_{len(self.attached)}"
            path = str(entry.run_dir / "adapter")
            if self.peft is None:
                self.peft = PeftModel.from_pretrained(self.base, path, adapter_name=slot)
            else:
                self.peft.load_adapter(path, adapter_name=slot)
            self.peft.eval()
            self.attached[key] = slot
        return self.attached[key]

    def close(self) -> None:
        self.queue.put(None)
