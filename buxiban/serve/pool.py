"""One loaded base model; registered LoRA adapters attached to it by name and switched per request.

A single model thread serves a bounded queue. Requests for different adapters are in flight
together (queued, and each streamed as soon as its turn comes); the thread activates the request's
adapter (PEFT `set_adapter`, or `disable_adapter` for the base) and generates. One thread because
the weights are shared and switching adapters mutates the model: two generations at once would
race on which adapter is active. A full queue answers 429 with a Retry-After from measured times.

Full and freeze runs carry their own base weights, so they cannot share this model: they are
refused with the command that serves them (`buxiban serve --model RUN/model`)."""

from __future__ import annotations

import logging
import math
import queue
import re
import threading
import time
from pathlib import Path

from ..adapters.registry import Registry
from ..errors import AdapterError, ServeError
from .generation import GenerationRequest, generate_choice
from .safety import Busy

log = logging.getLogger(__name__)


class ModelNotFound(ServeError):
    status = 404
    code = "model_not_found"


def model_name(name: str) -> str:
    """A base model's name as it appears in model ids and in ft:<base>:... names."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "base"


def load_base_safely(spec: str):
    """The base model from safetensors only (a pickle-based .bin can run code when loaded), and
    never remote code."""
    from transformers import AutoModelForCausalLM

    from ..errors import ModelLoadError
    from ..models.load import load_tokenizer, resolve

    source = resolve(spec, trust_remote_code=False)
    if not any(Path(source.path).glob("*.safetensors")):
        raise ModelLoadError(f"{source.path} has no .safetensors weights; the server loads no pickled weights "
                             "(convert them with transformers: model.save_pretrained(dir, safe_serialization=True))")
    tokenizer = load_tokenizer(source, trust_remote_code=False)
    try:
        model = AutoModelForCausalLM.from_pretrained(source.path, use_safetensors=True, trust_remote_code=False)
    except Exception as exc:
        raise ModelLoadError(f"cannot load the model {spec}: {exc}") from exc
    model.eval()
    return model, tokenizer, source


class ModelPool:
    def __init__(self, spec: str, registry: Registry, queue_size: int = 16):
        from ..eval.generate import stop_token_ids

        self.registry = registry
        self.base, self.tokenizer, self.source = load_base_safely(spec)
        self.base_id = model_name(self.source.name)
        self.aliases = {self.base_id, spec, self.source.name}
        self.context = int(getattr(self.base.config, "max_position_embeddings", 0) or 2048)
        self.stop_ids = stop_token_ids(self.base, self.tokenizer)
        self.peft = None  # the PeftModel wrapping self.base once the first adapter is attached
        self.attached: dict[tuple[str, str], str] = {}  # (name, run_dir) -> PEFT adapter slot
        self.queue: queue.Queue[GenerationRequest] = queue.Queue(maxsize=queue_size)
        self.seconds_per_request = 1.0  # running mean; feeds Retry-After
        self.switches: list[float] = []  # seconds spent attaching or switching adapters, for the bench
        self.thread = threading.Thread(target=self._serve, name="buxiban-model", daemon=True)
        self.thread.start()

    # --- called from request handlers (any thread): checks only, no model access ---------------

    def resolve(self, model: str) -> str | None:
        """The adapter name a request's `model` selects (None: the base), or a 404 that says why."""
        if model in self.aliases:
            return None
        try:
            entry = self.registry.get(model)
        except AdapterError as exc:
            raise ModelNotFound(f"the model '{model}' does not exist: {exc}; GET /v1/models lists what this server "
                                f"serves", "model") from exc
        problem = self.unservable(entry)
        if problem:
            raise ServeError(f"the model '{model}' cannot be served here: {problem}", "model")
        return model

    def unservable(self, entry) -> str | None:
        if entry.manifest.get("status") != "complete":
            return f"its run directory {entry.run_dir} is missing or unfinished"
        if entry.weights != "adapter":
            return (f"it is a {entry.manifest.get('adapter')} run with its own weights, which cannot share this "
                    f"server's base model; serve it with `buxiban serve --model {entry.run_dir / 'model'}`"
                    if entry.weights == "model" else
                    f"it is a {entry.manifest.get('adapter')} run; merge it first (`buxiban adapters merge`)")
        if entry.manifest.get("base_model", {}).get("fingerprint") != self.source.fingerprint:
            return f"it was trained on {entry.base_model}, not on this server's base model {self.source.name}"
        if not (entry.run_dir / "adapter" / "adapter_model.safetensors").is_file():  # PEFT would fall back to a pickle
            return f"{entry.run_dir / 'adapter'} holds no adapter_model.safetensors"
        return None

    def submit(self, request: GenerationRequest) -> None:
        try:
            self.queue.put_nowait(request)
        except queue.Full:
            wait = math.ceil(self.seconds_per_request * (self.queue.qsize() + 1))
            raise Busy(f"the server is busy: {self.queue.maxsize} requests are already waiting for the model; "
                       f"retry in about {wait} s", max(1, wait)) from None

    # --- the model thread ------------------------------------------------------------------------

    def _serve(self) -> None:
        while True:
            request = self.queue.get()
            if request is None:
                return
            started = time.perf_counter()
            try:
                if not request.cancelled.is_set():
                    self._run(request)
                request.emit(("end",))
            except Exception as exc:  # one bad request must not end the thread that serves all of them
                log.exception("generation failed")
                request.emit(("error", f"{type(exc).__name__}: {exc}"))
            self.seconds_per_request = 0.8 * self.seconds_per_request + 0.2 * (time.perf_counter() - started)

    def _run(self, request: GenerationRequest) -> None:
        import torch

        model = self._activate(request.adapter)
        if request.sampling.seed is not None:
            torch.manual_seed(request.sampling.seed)
        for choice in range(request.sampling.n):
            if request.cancelled.is_set():
                return
            if model is self.peft and request.adapter is None:
                with self.peft.disable_adapter():
                    generate_choice(self.peft, self.tokenizer, request, choice, self.stop_ids)
            else:
                generate_choice(model, self.tokenizer, request, choice, self.stop_ids)

    def _activate(self, name: str | None):
        if name is None:
            return self.peft if self.peft is not None else self.base
        started = time.perf_counter()
        entry = self.registry.get(name)
        key = (name, str(entry.run_dir))
        slot = self.attached.get(key)
        if slot is None:  # PEFT slot names cannot hold '.' or ':', so registered names map to slots
            from peft import PeftModel

            slot = f"adapter_{len(self.attached)}"
            path = str(entry.run_dir / "adapter")
            if self.peft is None:
                self.peft = PeftModel.from_pretrained(self.base, path, adapter_name=slot)
            else:
                self.peft.load_adapter(path, adapter_name=slot)
            self.peft.eval()
            self.attached[key] = slot
        self.peft.set_adapter(slot)
        self.switches.append(time.perf_counter() - started)
        del self.switches[:-100]
        return self.peft

    def close(self) -> None:
        self.queue.put(None)
