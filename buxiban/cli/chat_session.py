"""A chat session over a base model or a trained run: history, system prompt, streamed answers."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

import torch

from ..data.tokenize import encode_prompt
from ..models.generate import stop_token_ids


@dataclass
class ChatSession:
    model: Any
    tokenizer: Any
    label: str
    system: str | None = None
    max_new_tokens: int = 256
    history: list[dict[str, str]] = field(default_factory=list)
    rag: Any = None  # an opened buxiban.rag.RagIndex: each question gets the top `rag_k` chunks in its prompt
    rag_k: int = 3
    last_sources: list = field(default_factory=list)  # the chunks behind the latest answer

    @classmethod
    def open(
        cls,
        run: str | None = None,
        model: str = "embedded",
        system: str | None = None,
        max_new_tokens: int = 256,
        adapter: str | None = None,
        template: str = "auto",
        trust_remote_code: bool = False,
    ) -> ChatSession:
        if adapter:  # a registered name stands for its run directory
            from ..adapters.registry import Registry

            run = str(Registry().get(adapter).run_dir)
        if run:
            from ..runs.load import load_trained

            loaded, tokenizer, manifest = load_trained(run, template, trust_remote_code)
            system = system if system is not None else manifest.default_system_prompt
            return cls(loaded, tokenizer, f"run {run} ({manifest.base_model.name} + adapter)", system, max_new_tokens)
        from ..models.load import load

        loaded, tokenizer, source = load(model, trust_remote_code, template=template)
        return cls(loaded, tokenizer, f"base model {source.name}", system, max_new_tokens)

    def reset(self) -> None:
        self.history.clear()

    def messages(self) -> list[dict[str, str]]:
        return ([{"role": "system", "content": self.system}] if self.system else []) + self.history

    def prompt_messages(self, question: str) -> list[dict[str, str]]:
        """The conversation as the model sees it. With RAG, documents join only this question's turn;
        the history keeps the plain question, so earlier documents do not pile up in later prompts."""
        if self.rag is None:
            return self.messages()
        from ..rag import rag_messages, retrieve

        self.last_sources = retrieve(self.rag, question, self.rag_k)
        return rag_messages(self.messages(), self.last_sources)

    @torch.no_grad()
    def ask(self, text: str, stream: bool = False) -> str:
        """Greedy answer to `text` given the conversation so far; streamed to stdout if asked."""
        from transformers import TextStreamer

        self.history.append({"role": "user", "content": text})
        ids = torch.tensor([encode_prompt(self.tokenizer, self.prompt_messages(text))])
        streamer = TextStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True) if stream else None
        device = next(self.model.parameters()).device
        output = self.model.generate(
            input_ids=ids.to(device),
            attention_mask=torch.ones_like(ids).to(device),
            max_new_tokens=self.max_new_tokens,
            do_sample=False,
            streamer=streamer,
            eos_token_id=stop_token_ids(self.model, self.tokenizer),
            pad_token_id=self.tokenizer.pad_token_id,
            temperature=None,
            top_p=None,
            top_k=None,
        )
        answer = self.tokenizer.decode(output[0, ids.shape[1] :], skip_special_tokens=True).strip()
        if stream:
            sys.stdout.flush()
        self.history.append({"role": "assistant", "content": answer})
        return answer
