"""Sentence vectors already computed, so that no sentence unit is embedded twice.

Embedding is almost all of an ingest. A knowledge base keeps every vector it computed in
``embeddings.db`` (SQLite, WAL) next to ``records.db``, keyed by a hash of (model fingerprint,
embedding template, the exact text the model sees). Re-ingesting an edited document then embeds
only its changed sentences, ``reindex`` after a chunking change only the sentence units that
changed, and a sentence repeated within a batch (web boilerplate) is embedded once.

The cache is written after every forward pass, before the segment that uses its vectors is
committed: an ingest killed in the middle of a long document (thousands of sentence units,
committed as one segment so that readers never see half of it) or of a ``reindex`` loses only
the pass in flight, and running it again embeds only what the cache lacks. That is harmless
if the commit never lands: an entry is correct for its key whatever the knowledge base holds,
so a cache "ahead" of the records only saves work later. Entries are stored as float16, the
precision segments store, and every vector handed back (hit or miss) is rounded the same way,
so a segment written from the cache is bit-identical to one written from fresh encodings.

The cache only saves work: if it cannot be read or written (a full disk, a damaged file) the
ingest goes on without it, and the write's own storage errors are reported as always.

Old entries are pruned by last use, keeping at least twice the knowledge base's sentence
units (plus ``PRUNE_SLACK``), so the file stays proportional to what is indexed.
"""
from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

if TYPE_CHECKING:
    from index.embedder import Embedder

CACHE_DB = "embeddings.db"
PRUNE_SLACK = 10_000  # entries always kept beyond twice the live sentence units
SCHEMA = """
CREATE TABLE IF NOT EXISTS vectors(key BLOB PRIMARY KEY, used INTEGER NOT NULL, vector BLOB NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS vectors_used ON vectors(used);
CREATE TABLE IF NOT EXISTS meta(name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""
_LOOKUP = 900  # keys per SELECT (SQLite's variable limit is 999 on old builds)


@dataclass
class EncodeCounts:
    """How many texts one ``encode`` was asked for, and how many the model actually ran."""

    texts: int = 0
    encoded: int = 0  # distinct texts not found in the cache: the model's work
    cached: int = 0  # texts served from the cache
    repeated: int = 0  # texts that repeated another text of the same call

    def add(self, other: "EncodeCounts") -> None:
        self.texts += other.texts
        self.encoded += other.encoded
        self.cached += other.cached
        self.repeated += other.repeated


class EmbeddingCache:
    """The vectors of one knowledge base, for one model and one embedding template.

    Opened by the writer (under the knowledge base's lock); readers never use it.
    """

    def __init__(self, root: Path, fingerprint: str, template: str, dimension: int):
        self.root = Path(root)
        self.dimension = dimension
        self._salt = f"{fingerprint}\x1f{template}\x1f".encode()
        self.db: sqlite3.Connection | None = None
        self.clock = 0
        try:
            self.db = sqlite3.connect(self.root / CACHE_DB, timeout=60, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")  # losing the last entries to a power cut only costs re-embedding
            self.db.executescript(SCHEMA)
            row = self.db.execute("SELECT value FROM meta WHERE name = 'clock'").fetchone()
            self.clock = (row[0] if row else 0) + 1  # this session's use stamp
            self.db.execute("INSERT OR REPLACE INTO meta(name, value) VALUES ('clock', ?)", (self.clock,))
        except (sqlite3.Error, OSError):
            self._give_up()

    def _give_up(self) -> None:
        """Go on without the cache (see the module docstring)."""
        if self.db is not None:
            try:
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                self.db.close()
            except sqlite3.Error:
                pass
        self.db = None

    def close(self) -> None:
        if self.db is not None:
            try:
                self.db.close()
            except sqlite3.Error:
                pass
            self.db = None

    def key(self, text: str) -> bytes:
        return hashlib.blake2b(self._salt + text.encode("utf-8"), digest_size=16).digest()

    def lookup(self, keys: list[bytes]) -> dict[bytes, np.ndarray]:
        """The cached vectors among ``keys`` (float32 rows), marking them used now."""
        found: dict[bytes, np.ndarray] = {}
        if self.db is None:
            return found
        try:
            for start in range(0, len(keys), _LOOKUP):
                part = keys[start : start + _LOOKUP]
                rows = self.db.execute(f"SELECT key, vector FROM vectors WHERE key IN ({','.join('?' * len(part))})", part)
                for key, blob in rows:
                    vector = np.frombuffer(blob, dtype=np.float16)
                    if len(vector) == self.dimension:
                        found[key] = vector.astype(np.float32)
            if found:
                self.db.execute("BEGIN")
                self.db.executemany("UPDATE vectors SET used = ? WHERE key = ?", ((self.clock, k) for k in found))
                self.db.execute("COMMIT")
        except (sqlite3.Error, OSError):
            self._give_up()
        return found

    def store(self, keys: list[bytes], vectors: np.ndarray) -> None:
        if self.db is None:
            return
        half = np.asarray(vectors, dtype=np.float16)
        try:
            self.db.execute("BEGIN")
            self.db.executemany(
                "INSERT OR REPLACE INTO vectors(key, used, vector) VALUES (?, ?, ?)",
                ((k, self.clock, row.tobytes()) for k, row in zip(keys, half)),
            )
            self.db.execute("COMMIT")
        except (sqlite3.Error, OSError):
            self._give_up()

    def __len__(self) -> int:
        return 0 if self.db is None else int(self.db.execute("SELECT count(*) FROM vectors").fetchone()[0])

    def prune(self, live_units: int, slack: int = PRUNE_SLACK) -> int:
        """Drop the least recently used entries beyond ``2 * live_units + slack``; returns how many."""
        keep = 2 * live_units + slack
        try:
            extra = len(self) - keep
            if extra <= 0 or self.db is None:
                return 0
            self.db.execute("BEGIN")
            self.db.execute("DELETE FROM vectors WHERE key IN (SELECT key FROM vectors ORDER BY used LIMIT ?)", (extra,))
            self.db.execute("COMMIT")
        except (sqlite3.Error, OSError):
            self._give_up()
            return 0
        return extra

    def encode(
        self, embedder: Embedder, texts: list[str], encode_batch: int, progress: Callable[[str, int, int], None] | None = None
    ) -> tuple[np.ndarray, EncodeCounts]:
        """Vectors of ``texts`` (passages), embedding only distinct texts the cache lacks;
        ``progress("embed", done, total)`` counts the texts encoded."""
        counts = EncodeCounts(texts=len(texts))
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        if not texts:
            return out, counts
        keys = [self.key(t) for t in texts]
        first: dict[bytes, int] = {}
        for i, k in enumerate(keys):
            first.setdefault(k, i)
        counts.repeated = len(texts) - len(first)
        found = self.lookup(list(first))
        missing = [k for k in first if k not in found]
        if missing:

            def keep(rows: list[int], vectors: np.ndarray) -> None:
                self.store([missing[i] for i in rows], vectors)

            fresh = encode_passages(embedder, [texts[first[k]] for k in missing], encode_batch, progress, keep)
            fresh = fresh.astype(np.float16).astype(np.float32)  # what the cache and the segment hold
            found.update(zip(missing, fresh))
        counts.encoded = len(missing)
        counts.cached = len(first) - len(missing)
        for i, k in enumerate(keys):
            out[i] = found[k]
        return out, counts


def encode_passages(
    embedder: Embedder,
    texts: list[str],
    encode_batch: int = 0,
    progress: Callable[[str, int, int], None] | None = None,
    done_pass: Callable[[list[int], np.ndarray], None] | None = None,
) -> np.ndarray:
    """Passage vectors, longest first in batches sized by a token budget (``index.model.device``):
    each forward pass holds texts of similar length, so little of it is padding, and as many as
    the device takes (a few dozen short sentences on a CPU, thousands on a GPU), whatever order
    the documents came in. ``encode_batch`` (when > 0) caps the texts per pass. ``done_pass``
    gets each pass's rows and vectors as soon as it ends: the cache stores them then, so a kill
    in the middle of one long document, or of a ``reindex``, loses only the pass in flight."""
    from index.model.device import batch_budget

    out = np.zeros((len(texts), embedder.dimension), dtype=np.float32)
    budget, most = batch_budget(embedder.device)
    most = min(most, encode_batch) if encode_batch > 0 else most
    tokens = embedder.token_counts(texts, "document")
    order = sorted(range(len(texts)), key=lambda i: -tokens[i])
    done = 0
    for rows in token_batches(order, tokens, budget, most, min(embedder.max_tokens, max(tokens, default=0))):
        if progress:
            progress("embed", done, len(texts))
        out[rows] = embedder.encode_documents([texts[i] for i in rows], batch_size=len(rows))
        if done_pass is not None:
            done_pass(rows, out[rows])
        done += len(rows)
    if progress:
        progress("embed", len(texts), len(texts))
    return out


def token_batches(order: list[int], tokens: list[int], budget: int, most: int, cap: int) -> list[list[int]]:
    """``order`` (longest first) cut into runs whose count times their longest text (at most
    ``cap`` tokens: longer texts are windowed) stays within ``budget``, ``most`` texts at most."""
    batches: list[list[int]] = []
    for i in order:
        if batches and len(batches[-1]) < most and (len(batches[-1]) + 1) * min(tokens[batches[-1][0]], cap) <= budget:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches
