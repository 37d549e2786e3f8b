"""What several test modules share, so that no test module imports another one.

Tiny in-process models: a byte-level BPE tokenizer trained on a few sentences and a 2-layer Llama
built from a config, saved as an ordinary Hugging Face directory, and a 1-layer BERT encoder with a
word vocabulary. No downloads; seconds to build. Beside them: chat records and JSONL files, a short
SFT run, a folder of company documents with a fake embedder for RAG, and `buxiban serve` in a
subprocess (`Server`).

Markers (registered in pyproject.toml): `slow` uses the real embedded model; `integration` starts
subprocess servers, a browser or several training processes. The fast set while developing:
`.venv/bin/python -m pytest -m "not slow and not integration"`."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

CORPUS = [
    "You are the assistant of Yunshan Cycles. Answer in one short sentence.",
    "How much is the City plan? The City plan costs NT$690 per month.",
    "Support is open 08:00 to 21:00 every day, including public holidays.",
    "Is there a deposit? The deposit is NT$3,000.",
    '{"team": "repairs", "priority": "urgent"} the brakes failed',
    "你好,請問營業時間? 我們每天 08:00 到 21:00 營業。",
]


def build_tiny_tokenizer():
    """A byte-level BPE trained on CORPUS with ChatML specials and template: deterministic, no download."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    core = Tokenizer(models.BPE(unk_token=None))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    core.train_from_iterator(
        CORPUS * 4,
        trainers.BpeTrainer(
            vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        ),
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )
    tokenizer.chat_template = CHATML
    return tokenizer


def build_tiny_model_dir(directory: Path, seed: int = 0) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = build_tiny_tokenizer()
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
        initializer_range=0.3,
    )  # wide enough embeddings for logits to move in a few steps
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_tiny_model_dir(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_dir):
    from buxiban.models.load import load_tokenizer, resolve

    return load_tokenizer(resolve(str(tiny_model_dir)))


def chat_record(*turns: str, system: str | None = "You are the assistant of Yunshan Cycles.") -> dict:
    messages = [{"role": "system", "content": system}] if system else []
    for index, text in enumerate(turns):
        messages.append({"role": "user" if index % 2 == 0 else "assistant", "content": text})
    return {"messages": messages}


def write_jsonl(path: Path, records) -> Path:
    path.write_text(
        "".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in records),
        encoding="utf-8",
    )
    return path


@pytest.fixture()
def tiny_chat_file(tmp_path) -> Path:
    records = [
        chat_record("How much is the City plan?", "The City plan costs NT$690 per month."),
        chat_record("Is there a deposit?", "The deposit is NT$3,000."),
        chat_record("When is support open?", "Support is open 08:00 to 21:00 every day."),
        chat_record("The brakes failed", '{"team": "repairs", "priority": "urgent"}'),
    ]
    return write_jsonl(tmp_path / "train.jsonl", records)


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """Tests never reach a model hub, even where one is reachable."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")


# ---- a short SFT run on four chat records -------------------------------------------------------------

RECORDS = [
    chat_record("How much is the City plan?", "The City plan costs NT$690 per month."),
    chat_record("Is there a deposit?", "The deposit is NT$3,000."),
    chat_record("When is support open?", "Support is open 08:00 to 21:00 every day."),
    chat_record("The brakes failed", '{"team": "repairs", "priority": "urgent"}'),
]


def train_tiny(model_dir, train_file, run_dir, steps=30):
    from buxiban.config import load_config
    from buxiban.train.sft import train_sft

    config = load_config(
        None,
        [
            f"model={model_dir}",
            f"data.train={train_file}",
            f"output_dir={run_dir}",
            "data.validation_fraction=0",
            f"train.max_steps={steps}",
            "train.batch_size=4",
            "train.learning_rate=1e-2",
            "train.precision=fp32",
            "lora.dropout=0",
        ],
    )
    train_sft(config, progress=False, log=lambda _: None)
    return run_dir


# ---- RAG: company documents, a fake embedder and a tiny real encoder ---------------------------------


class FakeEmbedder:
    """Unit vectors from hashed words: texts sharing words are similar, and every call is counted."""

    identity = "fake-bag-of-words:1"
    dimension = 64

    def __init__(self):
        self.calls = 0

    def embed(self, texts):
        import numpy as np

        self.calls += len(texts)
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                out[row, int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dimension] += 1.0
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)

    def load_weights(self):
        pass


def write_docs(folder):
    folder.mkdir(exist_ok=True)
    (folder / "pricing.md").write_text(
        "# Pricing\n\n## City\nThe City plan costs NT$750 per month.\n\n"
        "## Cargo\nThe Cargo plan costs NT$1,890 per month.\n",
        encoding="utf-8",
    )
    (folder / "support.html").write_text(
        "<h1>Support</h1><p>Support is open 07:00 to 23:00 every day.</p>", encoding="utf-8"
    )
    (folder / "sub").mkdir(exist_ok=True)
    (folder / "sub" / "deposit.txt").write_text(
        "The deposit is NT$2,000, refunded in 5 working days.", encoding="utf-8"
    )
    (folder / ".hidden.md").write_text("# Secret\nnot indexed", encoding="utf-8")
    (folder / "notes.pdf").write_bytes(b"%PDF")
    return folder


VOCAB = (
    "[PAD] [UNK] [CLS] [SEP] [MASK] the city cargo plan costs nt $ 750 1 890 per month support is open 07 00 "
    "to 23 every day deposit 2 000 refunded in 5 working days , . ? : how much when what pricing"
).split()


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory):
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    directory = tmp_path_factory.mktemp("tiny-encoder")
    (directory / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    torch.manual_seed(0)
    BertModel(
        BertConfig(
            vocab_size=len(VOCAB),
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            max_position_embeddings=64,
        )
    ).save_pretrained(directory)
    BertTokenizer(vocab_file=str(directory / "vocab.txt")).save_pretrained(directory)
    return directory


# ---- `buxiban serve` in a subprocess ------------------------------------------------------------------

KEY = "sk-test-buxiban"
SYSTEM = "You are the assistant of Yunshan Cycles."
QUESTIONS = ["How much is the City plan?", "Is there a deposit?", "When is support open?", "The brakes failed"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _file_size_limit(max_bytes: int):
    """A disk that fills up, for one process: writes past max_bytes fail with EFBIG (Python ignores
    the SIGXFSZ that would otherwise kill it)."""

    def limit():
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))

    return limit


class Server:
    """`python -m buxiban.cli serve ...` in its own process, so a test can SIGKILL it."""

    def __init__(self, model_dir: Path, home: Path, *extra: str, keyless: bool = False, max_file_bytes: int = 0):
        import httpx

        self.port = free_port()
        self.home = home
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = home.parent / f"server-{self.port}.log"
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
        env.pop("BUXIBAN_API_KEY", None)
        command = [
            sys.executable,
            "-m",
            "buxiban.cli",
            "serve",
            "--model",
            str(model_dir),
            "--home",
            str(home),
            "--port",
            str(self.port),
            *(() if keyless else ("--api-key", KEY)),
            "--threads",
            "1",
            "--train-set",
            "train.threads=1",
            *extra,
        ]
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                command,
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=_file_size_limit(max_file_bytes) if max_file_bytes else None,
            )
        deadline = time.time() + 90
        while time.time() < deadline:
            assert self.process.poll() is None, self.log.read_text()
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.3)
        raise AssertionError("server did not start:\n" + self.log.read_text())

    def client(self):
        from openai import OpenAI

        return OpenAI(base_url=self.url + "/v1", api_key=KEY, max_retries=0)

    def stop(self, sig=signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=30)


def ask(client, model: str, question: str) -> str:
    reply = client.chat.completions.create(
        model=model,
        temperature=0,
        max_tokens=16,
        messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}],
    )
    return reply.choices[0].message.content
