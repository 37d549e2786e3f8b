"""Build or update an index: only files whose content hash changed are chunked and embedded again.

The index remembers the embedder's identity and the chunk settings; when either changes, every vector is
stale, so everything is re-embedded (and the report says so). Deleted files lose their chunks.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError, Problem, RagError
from ..text import CJK_CHARACTERS
from .documents import SUFFIXES, chunk_file, chunk_sections
from .embed import DEFAULT_EMBEDDER, Embedder, load_embedder
from .multilingual import NAME as MULTILINGUAL
from .store import KEYWORD_TOKENS, VectorStore

# The share of letters that are CJK above which a folder is Chinese (or Japanese) documents: the
# English-only default embedder finds their documents near-randomly.
CJK_SHARE_FOR_MULTILINGUAL = 0.3
_CJK = re.compile(rf"[{CJK_CHARACTERS}]")
_LETTER = re.compile(r"[^\W\d_]")


@dataclass
class IndexReport:
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0
    chunks_embedded: int = 0
    rebuilt: str = ""  # why every file was re-embedded, if it was
    files: int = 0
    chunks: int = 0
    seconds: float = 0.0
    embedder: str = ""  # the spec used: "minilm", "use-multilingual" or a directory
    embedder_reason: str = ""  # why, when it was chosen automatically


def document_files(docs_dir: Path) -> dict[str, Path]:
    """Relative POSIX path -> file, for every Markdown, text and HTML file under docs_dir (hidden ones skipped)."""
    if not docs_dir.is_dir():
        raise RagError(f"{docs_dir}: not a directory; give the folder that holds your .md, .txt and .html documents")
    found = {}
    for path in sorted(docs_dir.rglob("*")):
        relative = path.relative_to(docs_dir)
        if path.is_file() and path.suffix.lower() in SUFFIXES and not any(p.startswith(".") for p in relative.parts):
            found[relative.as_posix()] = path
    if not found:
        raise RagError(f"{docs_dir}: no documents ({', '.join(sorted(SUFFIXES))}) found in it or below it")
    return found


def choose_embedder(files: dict[str, Path], previous: dict) -> tuple[str, str]:
    """(spec, reason) when no --embedder was given: the one the index was built with, so an update
    never re-embeds everything because a document was added; else multilingual for mostly-CJK text."""
    if previous.get("embedder_spec"):
        return previous["embedder_spec"], "the embedder this index was built with"
    cjk = letters = 0
    for path in files.values():
        text = path.read_bytes()[:200_000].decode("utf-8", errors="ignore")
        cjk += len(_CJK.findall(text))
        letters += len(_LETTER.findall(text))
    share = cjk / max(letters, 1)
    if share >= CJK_SHARE_FOR_MULTILINGUAL:
        return MULTILINGUAL, f"{share:.0%} of the documents' letters are CJK; MiniLM knows only English"
    return DEFAULT_EMBEDDER, f"{share:.0%} of the documents' letters are CJK"


def embedding_text(heading: str, text: str) -> str:
    """The heading goes into the vector too: "Deposit" above "NT$2,000, refunded..." is what a question matches."""
    return f"{heading}\n{text}" if heading else text


def build_index(
    docs_dir: str | Path,
    out: str | Path,
    embedder: Embedder | None = None,
    embedder_spec: str | None = None,
    chunk_tokens: int = 160,
    overlap: int = 32,
    bm25: bool = False,
) -> IndexReport:
    started = time.perf_counter()
    docs_dir, out = Path(docs_dir), Path(out)
    files = document_files(docs_dir)
    chunk_sections([], chunk_tokens, overlap)  # validates the settings before the model loads
    store = VectorStore(out, create=True)
    try:
        report = IndexReport()
        previous = store.meta()
        if embedder_spec in (None, "", "auto"):
            embedder_spec, report.embedder_reason = choose_embedder(files, previous)
        if embedder is None:
            embedder = load_embedder(embedder_spec)
        # an absolute path, so that `rag query` from another directory finds the same model
        named = embedder_spec in (DEFAULT_EMBEDDER, MULTILINGUAL)
        spec = embedder_spec if named else str(Path(embedder_spec).resolve())
        report.embedder = spec
        settings = {
            "embedder": embedder.identity,
            "embedder_spec": spec,
            "chunk_tokens": chunk_tokens,
            "overlap": overlap,
            "bm25": bm25,
        }
        if bm25:
            settings["keyword_tokens"] = KEYWORD_TOKENS
        if any(previous.get(key) != value for key, value in settings.items() if key != "embedder_spec"):
            report.rebuilt = rebuild_reason(previous, settings)
            with store.transaction():
                store.create_tables(embedder.dimension, bm25)
        stored = store.file_hashes()
        hashes = {name: hashlib.sha256(path.read_bytes()).hexdigest() for name, path in files.items()}
        report.removed = sorted(set(stored) - set(files))
        report.added = [name for name in files if name not in stored]
        report.changed = [name for name in files if name in stored and stored[name] != hashes[name]]
        report.unchanged = len(files) - len(report.added) - len(report.changed)
        todo = report.added + report.changed
        chunked = chunk_all({name: files[name] for name in todo}, chunk_tokens, overlap)
        texts = [embedding_text(c.heading, c.text) for name in todo for c in chunked[name]]
        vectors = embedder.embed(texts) if texts else []  # one call: batches sorted by length across all files
        report.chunks_embedded = len(texts)
        with store.transaction():
            for name in report.removed + report.changed:
                store.remove_file(name)
            position = 0
            for name in todo:
                rows = [(c.heading, c.ordinal, c.text) for c in chunked[name]]
                store.add_file(name, hashes[name], rows, vectors[position : position + len(rows)])
                position += len(rows)
            store.set_meta(settings)
        report.files, report.chunks = store.counts()
    finally:
        store.close()
    report.seconds = time.perf_counter() - started
    return report


def chunk_all(files: dict[str, Path], chunk_tokens: int, overlap: int) -> dict:
    """Every file is read before anything is embedded, and every unreadable one is reported at once."""
    chunked, problems = {}, []
    for name, path in files.items():
        try:
            chunked[name] = chunk_file(path, chunk_tokens, overlap)
        except RagError as exc:
            problems.append(Problem(str(path), str(exc).removeprefix(f"{path}: ")))
    if problems:
        raise DataError(f"{len(problems)} document(s) cannot be read; nothing was indexed", problems)
    return chunked


def rebuild_reason(previous: dict, settings: dict) -> str:
    if not previous.get("embedder"):
        return "new index"
    changed = [key for key, value in settings.items() if key != "embedder_spec" and previous.get(key) != value]
    return "changed " + ", ".join(f"{key} ({previous.get(key)} -> {settings[key]})" for key in changed)
