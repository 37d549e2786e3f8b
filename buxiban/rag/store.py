"""The vector store: one SQLite file holding files, chunks, vectors (sqlite-vec) and BM25 text (FTS5).

Why sqlite-vec and not LanceDB: an index is one ordinary SQLite file next to the user's data, the install
is a ~1 MB loadable extension instead of pyarrow + lance (~150 MB), and chunk text, file hashes,
vectors and the FTS5 keyword index live in one database, updated in one transaction, so a crash mid-way
never leaves vectors without their text. Its brute-force KNN scans 10,000 chunks of 384 floats in a few
milliseconds, which is the scale of a company's documents; past a few million chunks, LanceDB's ANN
indexes would be the better pick.

Why apsw and not the standard library's sqlite3: many Python builds (this one, pyenv's default, the
python.org macOS installer) compile sqlite3 without loadable-extension support, so `sqlite_vec.load`
fails there. apsw ships a current SQLite with FTS5 and extension loading on every platform.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import RagError
from ..text import CJK_CHARACTERS

SCHEMA_VERSION = 1
# What the keyword table holds for CJK text; an index built before it (plain runs) is rebuilt.
KEYWORD_TOKENS = "cjk-bigrams"
_CJK_RUN = re.compile(rf"[{CJK_CHARACTERS}]+")


def keyword_text(text: str) -> str:
    """Text for FTS5 with every run of CJK characters written as its overlapping character pairs
    (押金多少 → 押金 金多 多少). Chinese has no spaces, so unicode61 would index a whole clause as one
    word and no question would ever match it; pairs are the classic unit for Chinese BM25 (most words
    are two characters) and need no dictionary. Other text passes through unchanged."""

    def pairs(match: re.Match) -> str:
        run = match.group()
        return " " + (" ".join(run[i : i + 2] for i in range(len(run) - 1)) if len(run) > 1 else run) + " "

    return _CJK_RUN.sub(pairs, text)


@dataclass(frozen=True)
class StoredChunk:
    id: int
    path: str  # relative to the indexed folder
    heading: str
    ordinal: int
    text: str


def apsw_error():
    import apsw

    return apsw.Error


def connect(path: Path, create: bool = False):
    try:
        import apsw
        import sqlite_vec
    except ImportError as exc:
        raise RagError(f"RAG needs apsw and sqlite-vec: pip install apsw sqlite-vec ({exc})") from exc
    if not create and not path.is_file():
        raise RagError(f"{path}: no index there; build one with `buxiban rag index DOCS --out {path}`")
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = apsw.SQLITE_OPEN_READWRITE | (apsw.SQLITE_OPEN_CREATE if create else 0)
    connection = apsw.Connection(str(path), flags=flags)
    connection.enable_load_extension(True)
    connection.load_extension(sqlite_vec.loadable_path())
    connection.enable_load_extension(False)
    return connection


class VectorStore:
    def __init__(self, path: Path, create: bool = False):
        self.path = Path(path)
        self.db = connect(self.path, create)
        try:
            self.prepare(create)
        except apsw_error() as exc:  # e.g. "file is not a database"
            self.db.close()
            raise RagError(f"{path}: not a buxiban RAG index ({exc}); choose another --out or delete the file") from exc

    def prepare(self, create: bool) -> None:
        tables = {row[0] for row in self.db.execute("select name from sqlite_master where type = 'table'")}
        if tables and "meta" not in tables:  # someone else's database: never write our tables into it
            raise RagError(f"{self.path}: an SQLite database that is not a buxiban RAG index; choose another --out")
        if create:
            self.db.execute("""
                create table if not exists meta (key text primary key, value text not null);
                create table if not exists files (path text primary key, sha256 text not null);
                create table if not exists chunks (id integer primary key, path text not null, heading text not null,
                                                   ordinal integer not null, text text not null);
                create index if not exists chunks_by_path on chunks(path);
            """)
        elif self.meta().get("schema") is None:
            raise RagError(f"{self.path}: not a buxiban RAG index (no meta table); rebuild it with `buxiban rag index`")
        self.has_bm25 = bool(self.meta().get("bm25"))

    def close(self) -> None:
        self.db.close()

    # -- settings ---------------------------------------------------------------------------------------
    def meta(self) -> dict:
        try:
            return {key: json.loads(value) for key, value in self.db.execute("select key, value from meta")}
        except apsw_error() as exc:  # no meta table: the file is SQLite but not ours
            raise RagError(f"{self.path}: not a buxiban RAG index ({exc})") from exc

    def set_meta(self, values: dict) -> None:
        for key, value in values.items():
            self.db.execute("insert or replace into meta(key, value) values (?, ?)", (key, json.dumps(value)))

    def create_tables(self, dimension: int, bm25: bool) -> None:
        """Drops every chunk and vector: called when the embedder or chunking changed, which invalidates all."""
        self.db.execute(
            "drop table if exists vectors; drop table if exists keywords; delete from chunks; delete from files;"
        )
        self.db.execute(
            f"create virtual table vectors using vec0(embedding float[{int(dimension)}] distance_metric=cosine)"
        )
        if bm25:
            # content-less would forbid deletes; a plain FTS5 table keyed by chunk id is simplest
            self.db.execute("create virtual table keywords using fts5(heading, text, tokenize='porter unicode61')")
        self.set_meta({"schema": SCHEMA_VERSION, "dimension": dimension, "bm25": bm25})
        self.has_bm25 = bm25

    # -- files and chunks -------------------------------------------------------------------------------
    def file_hashes(self) -> dict[str, str]:
        return dict(self.db.execute("select path, sha256 from files"))

    def remove_file(self, path: str) -> None:
        ids = [row[0] for row in self.db.execute("select id from chunks where path = ?", (path,))]
        for chunk_id in ids:
            self.db.execute("delete from vectors where rowid = ?", (chunk_id,))
            if self.has_bm25:
                self.db.execute("delete from keywords where rowid = ?", (chunk_id,))
        self.db.execute("delete from chunks where path = ?; delete from files where path = ?", (path, path))

    def add_file(self, path: str, sha256: str, chunks: list[tuple[str, int, str]], vectors) -> None:
        """chunks: (heading, ordinal, text) in order; vectors: one float32 row each."""
        for (heading, ordinal, text), vector in zip(chunks, vectors, strict=True):
            self.db.execute(
                "insert into chunks(path, heading, ordinal, text) values (?, ?, ?, ?)", (path, heading, ordinal, text)
            )
            chunk_id = self.db.last_insert_rowid()
            self.db.execute(
                "insert into vectors(rowid, embedding) values (?, ?)", (chunk_id, vector.astype("float32").tobytes())
            )
            if self.has_bm25:
                self.db.execute(
                    "insert into keywords(rowid, heading, text) values (?, ?, ?)",
                    (chunk_id, keyword_text(heading), keyword_text(text)),
                )
        self.db.execute("insert or replace into files(path, sha256) values (?, ?)", (path, sha256))

    def transaction(self):
        return self.db  # apsw: `with connection:` is one transaction, rolled back on an exception

    # -- reading ----------------------------------------------------------------------------------------
    def counts(self) -> tuple[int, int]:
        files = self.db.execute("select count(*) from files").fetchone()[0]
        chunks = self.db.execute("select count(*) from chunks").fetchone()[0]
        return files, chunks

    def chunks(self, ids: list[int]) -> dict[int, StoredChunk]:
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = self.db.execute(f"select id, path, heading, ordinal, text from chunks where id in ({marks})", ids)
        return {row[0]: StoredChunk(*row) for row in rows}

    def nearest(self, vector, k: int) -> list[tuple[int, float]]:
        """(chunk id, cosine similarity), best first."""
        rows = self.db.execute(
            "select rowid, distance from vectors where embedding match ? and k = ? order by distance",
            (vector.astype("float32").tobytes(), int(k)),
        )
        return [(chunk_id, 1.0 - distance) for chunk_id, distance in rows]

    def keyword_search(self, query: str, k: int) -> list[tuple[int, float]]:
        """(chunk id, BM25 score, higher is better), best first. FTS5's bm25() is negative-is-better."""
        if not query:
            return []
        rows = self.db.execute(
            "select rowid, bm25(keywords) from keywords where keywords match ? order by bm25(keywords) limit ?",
            (query, int(k)),
        )
        return [(chunk_id, -score) for chunk_id, score in rows]
