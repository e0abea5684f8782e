"""A knowledge base that grows: immutable segments, records in SQLite, commits as manifests.

Layout of a knowledge-base folder (format 3)::

    records.db            SQLite (WAL): documents, chunks, tombstones, the commit log
    segments/<name>/      one immutable segment: chunk keys, sentence vectors (float16),
                          its approximate index, its BM25 postings (all ``.npy``, memory-mapped)
    codec-*.faiss         IVF-PQ codebooks shared by big segments (once the first one exists)
    write.lock            the writers' lock (an flock: a killed writer never leaves it stale)

A write puts new segment folders in place first (staged under ``segments/.tmp-*``, flushed,
renamed) and then commits one SQLite transaction holding its records, its tombstones and the new
manifest (the list of live segments). Until that transaction commits nothing a reader can see
has changed; a writer killed before it leaves only a folder no manifest names, which the next
writer sweeps under the lock. Nothing already written is rewritten: a new document is a new
segment, a removed or replaced one gets a tombstone (``gen_removed``) and disappears from
searches at once; merges (after a write, or ``compact``) are commits of their own.

Read interface (what ``qa`` uses; ``Snapshot`` is one generation, cheap to open):

* ``lexical_scores(tokens)``: BM25 score of every live chunk, in *position* order;
* ``dense_candidates(vector, width)``: positions of the chunks whose sentences are nearest;
* ``unit_scores(vector, positions)``: exact cosines of those chunks' sentence units,
  concatenated, and where each chunk's run begins;
* ``chunks[position]`` / ``chunks_at(positions)``, ``documents[doc_id]``, ``chunks_of(doc_id)``:
  records fetched by id from SQLite (opening reads no chunk text);
* ``doc_mask(doc_ids)``: which positions belong to some documents; ``len(chunks)``,
  ``len(documents)``, ``unit_counts``: counts.

A position is the index of a live chunk in the snapshot (segments in order, keys ascending).
"""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from corpus.errors import Fix
from corpus.records import Chunk, Document
from index import records_db
from index.durable import fsync_dir, fsync_file, storage_full
from index.lexical_segments import LiveSegment, Postings, SegmentedBM25
from index.pagestore import prune_originals
from index.records_db import Records
from index.store import POINTER, IndexSettings, KnowledgeBaseError, writer_lock
from index.termids import token_ids
from index.vectors import IVF_RERANK, SegmentVectors, codec_name

FORMAT_VERSION = 3  # 3: segments + SQLite records (2: one generation folder per write)
SEGMENTS = "segments"
KEEP_COMMITS = 2  # segments of the current and the previous commit stay on disk for readers
MERGE_FACTOR = 10  # this many trailing segments of one size class are merged into one
MAX_SEGMENT_CHUNKS = 250_000  # merges stop growing a segment past this


# ---------------------------------------------------------------------------------------------
# segments on disk


@dataclass
class SegmentData:
    """What a new segment holds: its chunks' keys, sentence counts, vectors and token ids."""

    keys: np.ndarray
    unit_counts: np.ndarray
    vectors: np.ndarray
    postings: Postings


def write_segment(root: Path, data: SegmentData, settings: IndexSettings) -> str:
    """Write a segment folder atomically (staged, flushed, renamed); returns its name."""
    folder_root = root / SEGMENTS
    folder_root.mkdir(parents=True, exist_ok=True)
    now = time.time_ns()
    name = f"seg-{now}-{os.getpid()}-{threading.get_native_id()}"  # merges write from a thread of their own
    staging = folder_root / f".tmp-{name}"
    staging.mkdir()
    try:
        if int(np.sum(data.unit_counts)) != len(data.vectors) or len(data.keys) != len(data.unit_counts):
            raise ValueError(f"{int(np.sum(data.unit_counts))} sentence units but {len(data.vectors)} vectors")
        np.save(staging / "chunk_keys.npy", np.asarray(data.keys, dtype=np.int64))
        np.save(staging / "unit_counts.npy", np.asarray(data.unit_counts, dtype=np.int32))
        data.postings.save(staging)
        SegmentVectors.write(staging, data.vectors, settings.dimension, root / codec_name(settings.model, settings.dimension))
        for path in staging.iterdir():
            fsync_file(path)
        staging.rename(folder_root / name)
        fsync_dir(folder_root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(folder_root / name, ignore_errors=True)  # renamed, but not durably
        raise
    return name


@dataclass
class Segment:
    """A segment opened for reading (everything big is memory-mapped)."""

    name: str
    keys: np.ndarray
    unit_counts: np.ndarray
    vectors: SegmentVectors
    postings: Postings

    @classmethod
    def open(cls, root: Path, name: str) -> "Segment":
        folder = root / SEGMENTS / name
        return cls(
            name=name,
            keys=np.load(folder / "chunk_keys.npy", mmap_mode="r"),
            unit_counts=np.load(folder / "unit_counts.npy"),
            vectors=SegmentVectors.load(folder),
            postings=Postings.load(folder),
        )

    @property
    def unit_starts(self) -> np.ndarray:
        counts = self.unit_counts.astype(np.int64)
        return np.cumsum(counts) - counts


# ---------------------------------------------------------------------------------------------
# one generation, read-only


class DocumentsView(Mapping):
    """The live documents of a generation, by id, read from SQLite when asked."""

    def __init__(self, records: Records):
        self._records = records

    def __getitem__(self, doc_id: str) -> Document:
        document = self._records.document(doc_id)
        if document is None:
            raise KeyError(doc_id)
        return document

    def __iter__(self) -> Iterator[str]:
        return iter(self._records.document_ids())

    def __len__(self) -> int:
        return self._records.count_documents()

    def values(self):  # one query instead of one per document
        return self._records.documents()

    def items(self):
        return [(d.doc_id, d) for d in self._records.documents()]


class ChunksView(Sequence):
    """The live chunks of a generation in position order, read from SQLite when asked."""

    def __init__(self, snapshot: "Snapshot"):
        self._snapshot = snapshot

    def __len__(self) -> int:
        return len(self._snapshot.keys)

    def __getitem__(self, index):
        keys = self._snapshot.keys
        if isinstance(index, slice):
            return self._snapshot.records.chunks(keys[index])
        if index < 0:
            index += len(keys)
        if not 0 <= index < len(keys):
            raise IndexError(index)
        return self._snapshot.records.chunks(keys[index : index + 1])[0]

    def __iter__(self) -> Iterator[Chunk]:
        keys = self._snapshot.keys
        if not len(keys):
            return
        for key, chunk in self._snapshot.records.iter_chunks(int(keys[0]), int(keys[-1])):
            at = np.searchsorted(keys, key)
            if at < len(keys) and keys[at] == key:
                yield chunk


class Catalog:
    """The records of the current commit without its segments: what an ingest needs to decide
    which files changed (documents by id, a document's chunks), cheap at any size."""

    def __init__(self, root: Path, gen: int, manifest: dict):
        self.records = Records(root, gen)
        self.documents = DocumentsView(self.records)
        self.manifest = manifest

    def chunks_of(self, doc_id: str) -> list[Chunk]:
        return self.records.chunks(self.records.chunk_keys_of([doc_id]))

    @property
    def counts(self) -> tuple[int, int]:
        """(documents, chunks) live in this commit."""
        return int(self.manifest.get("documents", 0)), int(self.manifest.get("chunks", 0))


class Snapshot:
    """One committed generation: the read interface of the module docstring."""

    def __init__(self, root: Path, gen: int, manifest: dict):
        self.root = root
        self.gen = gen
        self.generation = generation_name(gen)
        self.settings = settings_of(root, manifest)
        self.records = Records(root, gen)
        self.segments = [Segment.open(root, name) for name in manifest["segments"]]
        self.documents = DocumentsView(self.records)
        self.chunks = ChunksView(self)
        tombstones = self.records.tombstoned_keys()
        keys, counts, seg_of, local_of, live_parts = [], [], [], [], []
        position = 0
        for number, segment in enumerate(self.segments):
            live = ~np.isin(segment.keys, tombstones) if len(tombstones) else None
            if live is not None and live.all():
                live = None
            local = np.arange(len(segment.keys)) if live is None else np.flatnonzero(live)
            keys.append(np.asarray(segment.keys)[local])
            counts.append(segment.unit_counts[local].astype(np.int64))
            seg_of.append(np.full(len(local), number, dtype=np.int32))
            local_of.append(local)
            live_parts.append(LiveSegment(segment.postings, live, local, position))
            position += len(local)
        self.keys = np.concatenate(keys) if keys else np.zeros(0, dtype=np.int64)
        self.unit_counts = np.concatenate(counts) if counts else np.zeros(0, dtype=np.int64)
        self._segment_of = np.concatenate(seg_of) if seg_of else np.zeros(0, dtype=np.int32)
        self._local_of = np.concatenate(local_of) if local_of else np.zeros(0, dtype=np.int64)
        self._live = live_parts
        self._bm25: SegmentedBM25 | None = None
        self._unit_starts_local = [s.unit_starts for s in self.segments]
        self._unit_chunk: list[np.ndarray | None] = [None] * len(self.segments)

    # -- the read interface -------------------------------------------------------------------
    def lexical_scores(self, tokens: list[str]) -> np.ndarray:
        if self._bm25 is None:
            self._bm25 = SegmentedBM25(self._live)
        return self._bm25.scores(token_ids(tokens))

    def dense_candidates(self, vector: np.ndarray, width: int, units_per_chunk: int = 4) -> np.ndarray:
        """Positions of the ``width`` chunks with the nearest sentences, best first."""
        k = width * units_per_chunk
        scores, positions, segment_of, rows_of = [], [], [], []
        big = sum(not s.vectors.exact_scores for s in self.segments)
        # each big segment proposes its share of the k·IVF_RERANK to re-score (twice over), and never fewer than k
        per_big = max(k, -(-2 * k * IVF_RERANK // max(big, 1)))
        for number, segment in enumerate(self.segments):
            exact = segment.vectors.exact_scores
            found, rows = segment.vectors.candidates(vector, k if exact else per_big)
            if not len(rows):
                continue
            local = self._unit_chunks(number)[rows]
            live = self._live[number]
            if live.live is not None:
                alive = live.live[local]
                found, local, rows = found[alive], local[alive], rows[alive]
                local = np.searchsorted(live.live_local, local)
            scores.append(found)
            positions.append(local + live.position)
            segment_of.append(np.full(len(rows), -1 if exact else number))
            rows_of.append(rows)
        if not scores:
            return np.zeros(0, dtype=np.int64)
        scores_all, positions_all = np.concatenate(scores), np.concatenate(positions)
        segment_all, rows_all = np.concatenate(segment_of), np.concatenate(rows_of)
        # PQ estimates of every big segment compete together; only the best are re-scored exactly
        if (segment_all >= 0).any():
            keep = np.argsort(-scores_all, kind="stable")[: k * IVF_RERANK]
            scores_all, positions_all, segment_all, rows_all = scores_all[keep], positions_all[keep], segment_all[keep], rows_all[keep]
            for number in np.unique(segment_all[segment_all >= 0]):
                mask = segment_all == number
                scores_all[mask] = self.segments[number].vectors.exact(vector, rows_all[mask])
        order = np.argsort(-scores_all, kind="stable")[:k]
        ranked = positions_all[order]
        _, first = np.unique(ranked, return_index=True)
        return ranked[np.sort(first)][:width].astype(np.int64)

    def unit_rows_of(self, positions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Where the sentence units of the chunks at ``positions`` are stored, concatenated chunk
        after chunk: each unit's segment number and row in it, and where each chunk's run begins."""
        positions = np.asarray(positions, dtype=np.int64)
        counts = self.unit_counts[positions]
        offsets = np.cumsum(counts) - counts
        segments = np.repeat(self._segment_of[positions], counts)
        starts = np.array([self._unit_starts_local[s][l] for s, l in zip(self._segment_of[positions], self._local_of[positions])], dtype=np.int64)
        rows = np.repeat(starts - offsets, counts) + np.arange(int(counts.sum()))
        return segments, rows, offsets

    def unit_scores(self, vector: np.ndarray, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact cosines of every sentence unit of the chunks at ``positions`` (concatenated,
        chunk after chunk) and the offset where each chunk's units begin."""
        segments, rows, offsets = self.unit_rows_of(positions)
        out = np.zeros(len(rows), dtype=np.float32)
        for number in np.unique(segments):
            mask = segments == number
            out[mask] = self.segments[number].vectors.exact(vector, rows[mask])
        return out, offsets

    def chunks_at(self, positions) -> list[Chunk]:
        return self.records.chunks(self.keys[np.asarray(positions, dtype=np.int64)])

    def chunks_of(self, doc_id: str) -> list[Chunk]:
        return self.records.chunks(self.records.chunk_keys_of([doc_id]))

    def doc_mask(self, doc_ids) -> np.ndarray:
        keys = self.records.chunk_keys_of(list(doc_ids))
        mask = np.zeros(len(self.keys), dtype=bool)
        at = np.searchsorted(self.keys, keys)
        ok = at < len(self.keys)
        at = at[ok]
        mask[at[self.keys[at] == keys[ok]]] = True
        return mask

    # -- whole-matrix views (tests and small tools; they read every vector) -----------------
    @property
    def unit_starts(self) -> np.ndarray:
        return np.cumsum(self.unit_counts) - self.unit_counts

    def unit_rows(self, position: int) -> range:
        start = int(self.unit_starts[position])
        return range(start, start + int(self.unit_counts[position]))

    @property
    def embeddings(self) -> np.ndarray:
        """Every live sentence vector as float32, position after position (a full copy)."""
        parts = []
        for number, segment in enumerate(self.segments):
            local = self._live[number].live_local
            starts = self._unit_starts_local[number][local]
            counts = segment.unit_counts[local].astype(np.int64)
            rows = np.repeat(starts - (np.cumsum(counts) - counts), counts) + np.arange(int(counts.sum()))
            parts.append(np.asarray(segment.vectors.vectors[rows], dtype=np.float32))
        return np.vstack(parts) if parts else np.zeros((0, self.settings.dimension), dtype=np.float32)

    def _unit_chunks(self, number: int) -> np.ndarray:
        if self._unit_chunk[number] is None:
            counts = self.segments[number].unit_counts
            self._unit_chunk[number] = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
        return self._unit_chunk[number]


def generation_name(gen: int) -> str:
    return f"gen-{gen:08d}"


def settings_of(root: Path, manifest: dict) -> IndexSettings:
    try:
        return IndexSettings(**manifest["settings"])
    except (KeyError, TypeError) as exc:  # written by another wendao version
        raise KnowledgeBaseError(f"{root}: the index format is not this version's ({exc})", Fix("reindex", str(root))) from None


# ---------------------------------------------------------------------------------------------
# the store


@contextmanager
def write_errors(target: Path) -> Iterator[None]:
    """A full disk or another I/O error while writing becomes one KnowledgeBaseError line."""
    try:
        yield
    except KnowledgeBaseError:
        raise
    except Exception as error:  # FAISS reports a full disk inside a RuntimeError
        reason = storage_full(error, target if target.is_dir() else target.parent)
        if reason is None and isinstance(error, sqlite3.OperationalError) and "full" in str(error):
            reason = "no space left on device"
        if reason:
            raise KnowledgeBaseError(
                f"{reason} while writing {target}; the knowledge base is unchanged: free some space and try again"
            ) from error
        if not isinstance(error, (OSError, sqlite3.Error)):
            raise
        raise KnowledgeBaseError(f"cannot write {target}: {getattr(error, 'strerror', None) or error}; the knowledge base is unchanged") from error


@dataclass
class CompactReport:
    """What ``compact`` did: merges run, segments before and after, chunks of removed or
    replaced documents dropped from disk, live chunks."""

    merges: int
    segments_before: int
    segments_after: int
    dropped_chunks: int
    chunks: int


class SegmentStore:
    """A knowledge-base folder. Reads are lock-free; writes take ``write.lock``."""

    def __init__(self, root: Path):
        self.root = Path(root)

    # -- reading ------------------------------------------------------------------------------
    def exists(self) -> bool:
        return self.head() is not None or self.legacy()

    def legacy(self) -> bool:
        """A knowledge base of the previous format (generation folders), not yet migrated."""
        return (self.root / POINTER).is_file() and self.head() is None

    def head(self) -> tuple[int, dict] | None:
        if not (self.root / records_db.DB_NAME).is_file():
            return None
        connection = records_db.connect(self.root)
        try:
            return records_db.latest(connection)
        except sqlite3.OperationalError:  # created but no schema yet
            return None
        finally:
            connection.close()

    def _head(self) -> tuple[int, dict]:
        head = self.head()
        if head is None:
            if self.legacy():
                raise KnowledgeBaseError(
                    f"{self.root}: knowledge base of an older format; listing its documents (or any command "
                    "that opens it) converts it in place, without re-embedding",
                    Fix("list_documents", str(self.root)),
                )
            raise KnowledgeBaseError(f"{self.root}: no knowledge base here", Fix("ingest", str(self.root)))
        return head

    def generation(self) -> str:
        return generation_name(self._head()[0])

    def current_generation(self) -> Path:
        """The folder holding the current state (all of it: segments are shared by commits)."""
        self._head()
        return self.root

    def read_settings(self) -> IndexSettings:
        if self.legacy():  # what it was built with, until the first open converts it
            from index.store import KnowledgeBaseStore

            return KnowledgeBaseStore(self.root).read_settings()
        return settings_of(self.root, self._head()[1])

    def read_documents(self) -> dict[str, Document]:
        gen, _ = self._head()
        return {d.doc_id: d for d in Records(self.root, gen).documents()}

    def catalog(self) -> Catalog:
        return Catalog(self.root, *self._head())

    view: type = Snapshot  # what ``load`` opens (the storage interface's view, ``index.local_store``)

    def load(self) -> Snapshot:
        gen, manifest = self._head()
        try:
            return self.view(self.root, gen, manifest)
        except (OSError, ValueError) as exc:
            raise KnowledgeBaseError(f"{self.root}: a segment of generation {gen} cannot be read ({exc})", Fix("reindex", str(self.root))) from None

    # -- writing ------------------------------------------------------------------------------
    @contextmanager
    def lock(self, timeout: float = 600) -> Iterator[None]:
        """Hold the writers' lock; what a killed writer left is swept as soon as it is held,
        and what the holder's merges replaced before it is let go."""
        with writer_lock(self.root, timeout):
            if self.head() is not None:
                self.sweep()
            yield
            if self.head() is not None:  # what merges replaced, while still holding the lock
                self.sweep()

    def compact(self) -> "CompactReport":
        """Merge the segments (``MAX_SEGMENT_CHUNKS`` at most each) and drop tombstoned chunks
        for good. Needs no model: the stored settings are kept."""
        with self.lock():
            if self.head() is None:
                return CompactReport(0, 0, 0, 0, 0)
            writer = self.writer(self.read_settings())
            try:
                before, stored_before = len(writer.segments), sum(writer.sizes()) if writer.segments else 0
                merges = writer.compact()
                stored_after = sum(writer.sizes()) if writer.segments else 0
                return CompactReport(merges, before, len(writer.segments), stored_before - stored_after, writer.live_chunks or 0)
            finally:
                writer.close()

    def writer(self, settings: IndexSettings) -> "Writer":
        """A writer committing to this store. Caller holds ``lock()``."""
        return Writer(self, settings)

    def sweep(self) -> None:
        """Remove staged folders of killed writes and segments no kept commit names. Under the lock."""
        folder = self.root / SEGMENTS
        if not folder.is_dir():
            return
        kept = self.kept_segments()
        db = records_db.connect(self.root, write=True)
        try:
            purge(self, db, self.head()[0])
            prune_originals(self.root, self.kept_originals(db))
        finally:
            db.close()
        for path in folder.iterdir():
            if path.name not in kept:
                shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
        for path in self.root.glob(".codec-*.tmp"):
            path.unlink(missing_ok=True)
        # a migration killed after its commit: the old format's generations are leftovers now
        for path in [*self.root.glob("gen-*"), *self.root.glob(".staging-*"), *self.root.glob(f".{POINTER}.*.tmp"), self.root / POINTER]:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            elif path.exists():
                path.unlink(missing_ok=True)

    def kept_originals(self, db: sqlite3.Connection) -> set[str]:
        """sha256 of the paged documents live in a kept commit (their originals stay)."""
        gen = self._head()[0]
        # A paged document is one with a page layout row: joining on it reads no document record
        # (parsing every record cost seconds per sweep at a million chunks).
        rows = db.execute(
            "SELECT d.sha256 FROM documents d JOIN layouts l ON l.doc_key = d.doc_key "
            "WHERE d.gen_removed IS NULL OR d.gen_removed > ?",
            (gen - KEEP_COMMITS + 1,),
        ).fetchall()
        return {sha for (sha,) in rows}

    def kept_segments(self) -> set[str]:
        connection = records_db.connect(self.root)
        try:
            rows = connection.execute("SELECT manifest FROM commits ORDER BY gen DESC LIMIT ?", (KEEP_COMMITS,)).fetchall()
        finally:
            connection.close()
        return {name for (manifest,) in rows for name in json.loads(manifest)["segments"]}


def purge(store: SegmentStore, db: sqlite3.Connection, gen: int) -> None:
    """Delete records of tombstoned chunks that no kept commit's segments hold any more, and
    commits older than the kept ones. Under the lock."""
    root = store.root
    kept = store.kept_segments()
    in_use = np.concatenate([np.load(root / SEGMENTS / n / "chunk_keys.npy") for n in kept]) if kept else np.zeros(0, np.int64)
    rows = db.execute("SELECT c.chunk_key FROM documents d JOIN chunks c ON c.doc_key = d.doc_key WHERE d.gen_removed IS NOT NULL").fetchall()
    dead = np.array([r[0] for r in rows], dtype=np.int64)
    dead = dead[~np.isin(dead, in_use)]
    stale = db.execute("SELECT count(*) FROM commits WHERE gen <= ?", (gen - KEEP_COMMITS,)).fetchone()[0]
    if not len(dead) and not stale:
        return
    with write_errors(root / records_db.DB_NAME):
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany("DELETE FROM chunks WHERE chunk_key = ?", ((int(k),) for k in dead))
            db.execute(
                "DELETE FROM documents WHERE gen_removed IS NOT NULL AND gen_removed < ? "
                "AND NOT EXISTS (SELECT 1 FROM chunks c WHERE c.doc_key = documents.doc_key)",
                (gen,),
            )
            db.execute("DELETE FROM layouts WHERE doc_key NOT IN (SELECT doc_key FROM documents)")
            db.execute("DELETE FROM commits WHERE gen <= ?", (gen - KEEP_COMMITS,))
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise


class Writer:
    """Commits to a store: new segments, tombstones, merges. Every method is one atomic commit."""

    def __init__(self, store: SegmentStore, settings: IndexSettings):
        self.store = store
        self.root = store.root
        self.settings = settings
        with write_errors(self.root / records_db.DB_NAME):
            self.db = records_db.connect(self.root, write=True)
        head = records_db.latest(self.db)
        self.gen, manifest = head if head else (0, {"segments": []})
        self.segments: list[str] = list(manifest["segments"])
        self.live_chunks = manifest.get("chunks")
        self.next_key = int(self.db.execute("SELECT coalesce(max(chunk_key), -1) + 1 FROM chunks").fetchone()[0])
        # A background merge commits from its own thread: the segment list, the generation and
        # the connection are touched only under this lock.
        self._state = threading.Lock()
        self._merging: threading.Thread | None = None
        self._merge_error: BaseException | None = None

    def close(self) -> None:
        """Wait for a background merge, then let go of the database; a merge's failure is
        raised here (what was committed before it stays committed)."""
        try:
            self.wait_for_merges()
        finally:
            self.db.close()

    def add(
        self,
        documents: list[Document],
        chunks: list[Chunk],
        vectors: np.ndarray,
        chunk_token_ids: list[np.ndarray],
        remove: list[str] = (),
        layouts: dict[str, str] | None = None,
    ) -> int:
        """Commit new (or replacing) documents with their chunks, and tombstones for ``remove``;
        ``layouts`` holds the page layout lines of paged documents, by id."""
        segment = None
        if chunks:
            keys = self.next_key + np.arange(len(chunks), dtype=np.int64)
            data = SegmentData(keys, np.array([len(c.sentences) for c in chunks]), vectors, Postings.build(chunk_token_ids))
            with write_errors(self.root / SEGMENTS):
                segment = write_segment(self.root, data, self.settings)
        try:
            with self._state:
                return self._commit(documents, chunks, remove, self.segments + ([segment] if segment else []), layouts=layouts)
        except BaseException:
            if segment:
                shutil.rmtree(self.root / SEGMENTS / segment, ignore_errors=True)
            raise

    def _commit(
        self,
        documents: list[Document],
        chunks: list[Chunk],
        remove,
        segments: list[str],
        settings: IndexSettings | None = None,
        layouts: dict[str, str] | None = None,
    ) -> int:
        gen = self.gen + 1
        settings = settings or self.settings
        with write_errors(self.root / records_db.DB_NAME):
            db = self.db
            db.execute("BEGIN IMMEDIATE")
            try:
                replaced = [d.doc_id for d in documents] + list(remove)
                if self.live_chunks is None:  # written before manifests counted chunks
                    self.live_chunks = db.execute(
                        "SELECT count(*) FROM chunks c JOIN documents d ON c.doc_key = d.doc_key WHERE d.gen_removed IS NULL"
                    ).fetchone()[0]
                gone = sum(
                    db.execute(
                        "SELECT count(*) FROM chunks c JOIN documents d ON c.doc_key = d.doc_key WHERE d.doc_id = ? AND d.gen_removed IS NULL",
                        (doc_id,),
                    ).fetchone()[0]
                    for doc_id in dict.fromkeys(replaced)
                )
                db.executemany("UPDATE documents SET gen_removed = ? WHERE doc_id = ? AND gen_removed IS NULL", [(gen, d) for d in replaced])
                doc_keys = {}
                for document in documents:
                    cursor = db.execute(
                        "INSERT INTO documents(doc_id, sha256, gen_added, record) VALUES (?, ?, ?, ?)",
                        (document.doc_id, document.sha256, gen, records_db.document_row(document)),
                    )
                    doc_keys[document.doc_id] = cursor.lastrowid
                db.executemany(
                    "INSERT INTO layouts(doc_key, line) VALUES (?, ?)",
                    [(doc_keys[d], line) for d, line in (layouts or {}).items() if d in doc_keys],
                )
                db.executemany(
                    "INSERT INTO chunks(chunk_key, doc_key, record) VALUES (?, ?, ?)",
                    ((self.next_key + i, doc_keys[c.doc_id], records_db.chunk_row(c)) for i, c in enumerate(chunks)),
                )
                count = db.execute("SELECT count(*) FROM documents WHERE gen_removed IS NULL").fetchone()[0]
                manifest = {
                    "settings": asdict(settings),
                    "segments": segments,
                    "documents": count,
                    "chunks": self.live_chunks - gone + len(chunks),
                    "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                }
                db.execute("INSERT INTO commits(gen, manifest) VALUES (?, ?)", (gen, json.dumps(manifest, ensure_ascii=False)))
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:  # SQLite rolls back by itself on some errors (a full disk)
                    db.execute("ROLLBACK")
                raise
        self.gen, self.segments, self.next_key = gen, segments, self.next_key + len(chunks)
        self.live_chunks = manifest["chunks"]
        self.settings = settings
        return gen

    # -- merges -------------------------------------------------------------------------------
    def merge(self, names: list[str]) -> int:
        """Replace adjacent segments by one holding their live chunks (tombstones purged).

        Safe beside commits from another thread: new segments are only ever appended and one
        merge runs at a time, so ``names`` are still adjacent when the merge commits. Chunks
        tombstoned meanwhile are in the merged segment but stay hidden (liveness is read from
        the records) until a later merge drops them."""
        with self._state:
            gen, settings = self.gen, self.settings
        snapshot = Snapshot(self.root, gen, {"settings": asdict(settings), "segments": names})
        parts, keys, counts, vectors = [], [], [], []
        for number, segment in enumerate(snapshot.segments):
            local = snapshot._live[number].live_local
            parts.append((segment.postings, local))
            keys.append(np.asarray(segment.keys)[local])
            counts.append(segment.unit_counts[local])
            starts = snapshot._unit_starts_local[number][local]
            c = segment.unit_counts[local].astype(np.int64)
            rows = np.repeat(starts - (np.cumsum(c) - c), c) + np.arange(int(c.sum()))
            vectors.append(np.asarray(segment.vectors.vectors[rows]))
        data = SegmentData(np.concatenate(keys), np.concatenate(counts), np.concatenate(vectors), Postings.merge(parts))
        with write_errors(self.root / SEGMENTS):
            merged = write_segment(self.root, data, settings)
        try:
            with self._state:
                at = self.segments.index(names[0])
                assert self.segments[at : at + len(names)] == names, "only adjacent segments merge"
                gen = self._commit([], [], [], self.segments[:at] + [merged] + self.segments[at + len(names) :])
                self.purge()
        except BaseException:
            shutil.rmtree(self.root / SEGMENTS / merged, ignore_errors=True)
            raise
        return gen

    def sizes(self, names: list[str] | None = None) -> list[int]:
        return [len(np.load(self.root / SEGMENTS / n / "chunk_keys.npy", mmap_mode="r")) for n in (names or self.segments)]

    def merge_policy(self) -> list[list[str]]:
        """Runs of segments to merge: ``MERGE_FACTOR`` trailing segments of one size class
        (powers of ten), as Lucene's log merge policy does, so a knowledge base of N chunks has
        O(MERGE_FACTOR · log N) segments and adding a document never rewrites a big one."""
        with self._state:
            names = list(self.segments)
        sizes = self.sizes(names) if names else []
        level = [int(np.log10(max(s, 1))) for s in sizes]
        run = 1
        for i in range(len(sizes) - 1, 0, -1):
            if level[i - 1] > level[-1]:
                break
            run += 1
        start = len(sizes) - run
        if run >= MERGE_FACTOR and sum(sizes[start:]) <= MAX_SEGMENT_CHUNKS:
            return [names[start:]]
        return []

    def maybe_merge(self) -> int:
        """Run the merges the policy asks for, here and now; how many ran."""
        merges = 0
        while True:
            runs = self.merge_policy()
            if not runs:
                return merges
            self.merge(runs[0])
            merges += 1

    def merge_in_background(self) -> bool:
        """Start ``maybe_merge`` on a thread of its own unless one is running (True if started),
        so an ingest goes on embedding its next batch while the merge copies and commits; a
        failed merge is raised by the next call, or by ``wait_for_merges``/``close``."""
        if self._merging is not None and self._merging.is_alive():
            return False
        self.wait_for_merges()
        if not self.merge_policy():
            return False
        self._merging = threading.Thread(target=self._merge_worker, name="wendao-merge", daemon=True)
        self._merging.start()
        return True

    def wait_for_merges(self) -> None:
        if self._merging is not None:
            self._merging.join()
            self._merging = None
        error, self._merge_error = self._merge_error, None
        if error is not None:
            raise error

    def _merge_worker(self) -> None:
        try:
            self.maybe_merge()
        except BaseException as error:  # handed to the writer's thread
            self._merge_error = error

    def compact(self) -> int:
        """Merge segments into as few as ``MAX_SEGMENT_CHUNKS`` allows, dropping every tombstoned chunk."""
        self.wait_for_merges()
        merges = 0
        sizes = dict(zip(self.segments, self.sizes()))
        groups: list[list[str]] = [[]]
        total = 0
        for name in list(self.segments):
            if groups[-1] and total + sizes[name] > MAX_SEGMENT_CHUNKS:
                groups.append([])
                total = 0
            groups[-1].append(name)
            total += sizes[name]
        tombstones = Records(self.root, self.gen).tombstoned_keys()
        for group in groups:
            dirty = any(np.isin(np.load(self.root / SEGMENTS / n / "chunk_keys.npy", mmap_mode="r"), tombstones).any() for n in group)
            if len(group) > 1 or (group and dirty):
                self.merge(group)
                merges += 1
        return merges

    def purge(self) -> None:
        """``purge`` at this writer's generation. Caller holds ``_state`` or has no merge running."""
        purge(self.store, self.db, self.gen)

    def replace_all(
        self,
        settings: IndexSettings,
        documents: list[Document],
        chunks: list[Chunk],
        vectors: np.ndarray,
        chunk_token_ids: list[np.ndarray],
        layouts: dict[str, str] | None = None,
    ) -> int:
        """One commit that replaces everything (reindex, migration): new settings, new segments;
        the page layouts of documents kept by id are carried over unless ``layouts`` has new ones."""
        self.wait_for_merges()
        keys = self.next_key + np.arange(len(chunks), dtype=np.int64)
        segments = []
        if chunks:
            data = SegmentData(keys, np.array([len(c.sentences) for c in chunks]), vectors, Postings.build(chunk_token_ids))
            with write_errors(self.root / SEGMENTS):
                segments.append(write_segment(self.root, data, settings))
        existing = [r[0] for r in self.db.execute("SELECT doc_id FROM documents WHERE gen_removed IS NULL")]
        kept = dict(
            self.db.execute(
                "SELECT d.doc_id, l.line FROM documents d JOIN layouts l ON l.doc_key = d.doc_key WHERE d.gen_removed IS NULL"
            ).fetchall()
        )
        layouts = {**kept, **(layouts or {})}
        try:
            return self._commit(documents, chunks, existing, segments, settings=settings, layouts=layouts)
        except BaseException:
            for name in segments:
                shutil.rmtree(self.root / SEGMENTS / name, ignore_errors=True)
            raise
