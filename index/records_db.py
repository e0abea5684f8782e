"""Documents, chunks (with their sentence spans), tombstones and commits in SQLite.

One file, ``records.db``, in WAL mode: one writer (who also holds the knowledge base's lock)
and any number of readers, each reading a consistent state; a transaction that was not
committed when the process died is rolled back on the next open. Records are versioned by
commit number ("generation"): a document row is live from ``gen_added`` until ``gen_removed``
(its tombstone), so a reader pinned to generation G keeps seeing G's documents while a writer
commits G+1. The ``commits`` table is the manifest log: publishing a commit is inserting its row
in the same transaction as its records, which is what makes a write atomic.
"""
from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import asdict
from pathlib import Path

import numpy as np

from corpus.records import Chunk, Document

DB_NAME = "records.db"
SCHEMA = """
CREATE TABLE IF NOT EXISTS commits(gen INTEGER PRIMARY KEY, manifest TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents(
    doc_key INTEGER PRIMARY KEY, doc_id TEXT NOT NULL, sha256 TEXT NOT NULL,
    gen_added INTEGER NOT NULL, gen_removed INTEGER, record TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS documents_by_id ON documents(doc_id, gen_removed);
CREATE INDEX IF NOT EXISTS documents_removed ON documents(gen_removed);
CREATE TABLE IF NOT EXISTS chunks(chunk_key INTEGER PRIMARY KEY, doc_key INTEGER NOT NULL, record TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS chunks_by_doc ON chunks(doc_key);
CREATE TABLE IF NOT EXISTS layouts(doc_key INTEGER PRIMARY KEY, line TEXT NOT NULL);
"""
LIVE = "gen_added <= :gen AND (gen_removed IS NULL OR gen_removed > :gen)"


def connect(root: Path, write: bool = False) -> sqlite3.Connection:
    path = root / DB_NAME
    if write:
        connection = sqlite3.connect(path, timeout=60, isolation_level=None, check_same_thread=False)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        connection.executescript(SCHEMA)
    else:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=60, isolation_level=None, check_same_thread=False)
    return connection


def document_row(document: Document) -> str:
    return json.dumps(asdict(document), ensure_ascii=False)


def chunk_row(chunk: Chunk) -> str:
    record = asdict(chunk)
    record["sentences"] = [list(span) for span in chunk.sentences]
    return json.dumps(record, ensure_ascii=False)


def latest(connection: sqlite3.Connection) -> tuple[int, dict] | None:
    row = connection.execute("SELECT gen, manifest FROM commits ORDER BY gen DESC LIMIT 1").fetchone()
    return (int(row[0]), json.loads(row[1])) if row else None


class Records:
    """Read access to the records of one generation; a connection per thread (sqlite3 rule)."""

    def __init__(self, root: Path, gen: int):
        self.root = root
        self.gen = gen
        self._local = threading.local()

    @property
    def db(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._local.connection = connect(self.root)
        return connection

    def document(self, doc_id: str) -> Document | None:
        row = self.db.execute(f"SELECT record FROM documents WHERE doc_id = :id AND {LIVE}", {"id": doc_id, "gen": self.gen}).fetchone()
        return Document(**json.loads(row[0])) if row else None

    def document_ids(self) -> list[str]:
        return [r[0] for r in self.db.execute(f"SELECT doc_id FROM documents WHERE {LIVE} ORDER BY doc_key", {"gen": self.gen})]

    def documents(self) -> list[Document]:
        rows = self.db.execute(f"SELECT record FROM documents WHERE {LIVE} ORDER BY doc_key", {"gen": self.gen})
        return [Document(**json.loads(r[0])) for r in rows]

    def hashes(self) -> dict[str, str]:
        return dict(self.db.execute(f"SELECT doc_id, sha256 FROM documents WHERE {LIVE}", {"gen": self.gen}).fetchall())

    def count_documents(self) -> int:
        return int(self.db.execute(f"SELECT count(*) FROM documents WHERE {LIVE}", {"gen": self.gen}).fetchone()[0])

    def chunk_counts(self) -> dict[str, int]:
        """How many chunks each live document has, by id."""
        rows = self.db.execute(
            f"SELECT d.doc_id, count(c.chunk_key) FROM documents d LEFT JOIN chunks c ON c.doc_key = d.doc_key WHERE {LIVE} GROUP BY d.doc_key",
            {"gen": self.gen},
        )
        return dict(rows.fetchall())

    def layout_line(self, doc_id: str) -> str | None:
        """The page layout line (``index.pagestore.layout_line``) of a live paged document."""
        row = self.db.execute(
            f"SELECT l.line FROM documents d JOIN layouts l ON l.doc_key = d.doc_key WHERE d.doc_id = :id AND {LIVE}",
            {"id": doc_id, "gen": self.gen},
        ).fetchone()
        return row[0] if row else None

    def chunks(self, keys: np.ndarray) -> list[Chunk]:
        """Chunks by key, in the order asked."""
        keys = [int(k) for k in keys]
        found: dict[int, Chunk] = {}
        for start in range(0, len(keys), 900):
            part = keys[start : start + 900]
            query = f"SELECT chunk_key, record FROM chunks WHERE chunk_key IN ({','.join('?' * len(part))})"
            found.update((k, Chunk(**json.loads(r))) for k, r in self.db.execute(query, part))
        return [found[k] for k in keys]

    def iter_chunks(self, low: int, high: int):
        """(key, chunk) of every stored chunk with low <= key <= high, by key."""
        rows = self.db.execute("SELECT chunk_key, record FROM chunks WHERE chunk_key BETWEEN ? AND ? ORDER BY chunk_key", (low, high))
        for key, record in rows:
            yield key, Chunk(**json.loads(record))

    def chunk_keys_of(self, doc_ids: list[str]) -> np.ndarray:
        keys: list[int] = []
        for start in range(0, len(doc_ids), 900):
            part = doc_ids[start : start + 900]
            query = (
                "SELECT c.chunk_key FROM chunks c JOIN documents d ON c.doc_key = d.doc_key "
                f"WHERE d.doc_id IN ({','.join('?' * len(part))}) AND d.gen_added <= ? AND (d.gen_removed IS NULL OR d.gen_removed > ?)"
            )
            keys += [r[0] for r in self.db.execute(query, [*part, self.gen, self.gen])]
        return np.sort(np.array(keys, dtype=np.int64))

    def tombstoned_keys(self) -> np.ndarray:
        """Keys of chunks whose document was removed or replaced at or before this generation."""
        rows = self.db.execute(
            "SELECT c.chunk_key FROM documents d JOIN chunks c ON c.doc_key = d.doc_key "
            "WHERE d.gen_removed IS NOT NULL AND d.gen_removed <= ?",
            (self.gen,),
        )
        return np.sort(np.fromiter((r[0] for r in rows), dtype=np.int64))

    def close(self) -> None:
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None
