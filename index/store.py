"""On-disk knowledge base: documents, chunks, vectors and both indexes, written atomically.

Every write builds a complete new *generation* folder and then swaps the one-line ``CURRENT``
pointer with ``os.replace``. Readers only ever open the generation ``CURRENT`` names, so a crash,
a kill or a failed ingest at any point leaves the previous knowledge base usable. A write that
fails (a full disk) removes what it wrote and says so in one line; what a killed writer left is
swept by the next command that takes the writers' file lock, whether or not it writes.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
from filelock import FileLock, Timeout

from corpus.errors import Fix, WendaoError
from corpus.records import Chunk, Document
from index.dense import DenseIndex
from index.durable import fsync_dir, fsync_file, fsync_tree, storage_full
from index.lexical import LexicalIndex

FORMAT_VERSION = 2  # 2: one vector per sentence unit (Chunk.sentences), not per chunk
POINTER = "CURRENT"


class KnowledgeBaseError(WendaoError):
    """A knowledge base that cannot be opened as asked (missing, damaged or built differently)."""


@dataclass(frozen=True)
class IndexSettings:
    """Everything that changes what is stored; opening with different values needs a reindex."""

    model: str
    dimension: int
    fold_version: str
    tokenizer_version: str
    chunk_size: int
    chunk_overlap: int
    chunker_version: str
    embed_template: str
    format_version: int = FORMAT_VERSION

    def differences(self, other: "IndexSettings") -> list[str]:
        return [
            f"{f.name}: index has {getattr(self, f.name)!r}, asked for {getattr(other, f.name)!r}"
            for f in fields(self)
            if getattr(self, f.name) != getattr(other, f.name)
        ]


@dataclass
class Snapshot:
    """One generation of the knowledge base, loaded into memory.

    ``embeddings`` has one row per sentence unit, chunk after chunk in order: the rows of
    chunk ``i`` are ``unit_rows(i)``.
    """

    settings: IndexSettings
    documents: dict[str, Document]
    chunks: list[Chunk]
    dense: DenseIndex
    lexical: LexicalIndex
    generation: str

    def __post_init__(self) -> None:
        self.unit_counts = np.array([len(c.sentences) for c in self.chunks], dtype=np.int64)
        self.unit_starts = _starts(self.unit_counts)
        self.unit_chunk = np.repeat(np.arange(len(self.chunks)), self.unit_counts)

    @property
    def embeddings(self) -> np.ndarray:
        """The sentence vectors, read from the dense index (which holds the only copy)."""
        return self.dense.vectors

    def unit_rows(self, position: int) -> range:
        start = int(self.unit_starts[position])
        return range(start, start + int(self.unit_counts[position]))

    def units_of(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Vector rows of several chunks, concatenated, and where each chunk's rows begin."""
        counts = self.unit_counts[positions]
        offsets = _starts(counts)
        rows = np.repeat(self.unit_starts[positions] - offsets, counts) + np.arange(int(counts.sum()))
        return rows, offsets

    def chunks_of(self, doc_id: str) -> list[Chunk]:
        return [c for c in self.chunks if c.doc_id == doc_id]


def check_compatible(stored: IndexSettings, wanted: IndexSettings, root: Path) -> None:
    """Refuse a knowledge base built with other settings: its tokens and vectors would silently
    mismatch the queries (the fix is a reindex, which reads only the stored documents)."""
    differences = stored.differences(wanted)
    if differences:
        raise KnowledgeBaseError(f"{root} was built with other settings ({'; '.join(differences)})", Fix("reindex", str(root)))


@contextmanager
def writer_lock(root: Path, timeout: float = 600) -> Iterator[None]:
    """The one writer of a knowledge-base folder (created if missing). It is an flock, so a
    killed writer never leaves it stale; a wait past ``timeout`` is a clear error."""
    if root.exists() and not root.is_dir():
        raise KnowledgeBaseError(f"{root}: is a file, not a knowledge-base folder")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise KnowledgeBaseError(f"{root}: cannot be used as a knowledge-base folder ({exc.strerror or exc})") from exc
    lock = FileLock(str(root / "write.lock"))
    try:
        lock.acquire(timeout=timeout)
    except Timeout:
        raise KnowledgeBaseError(
            f"{root}: another wendao process has been writing this knowledge base for {timeout:g} s", Fix("retry_later")
        ) from None
    try:
        yield
    finally:
        lock.release()


class KnowledgeBaseStore:
    """A knowledge-base folder. Reads are lock-free; writes take ``write.lock``."""

    def __init__(self, root: Path):
        self.root = Path(root)

    @property
    def _reindex(self) -> Fix:
        return Fix("reindex", str(self.root))

    # -- reading ---------------------------------------------------------------------------
    def exists(self) -> bool:
        return (self.root / POINTER).is_file()

    def current_generation(self) -> Path:
        pointer = self.root / POINTER
        if not pointer.is_file():
            raise KnowledgeBaseError(f"{self.root}: no knowledge base here", Fix("ingest", str(self.root)))
        folder = self.root / pointer.read_text(encoding="utf-8").strip()
        if not (folder / "manifest.json").is_file():
            raise KnowledgeBaseError(f"{folder}: knowledge base generation is missing its manifest", self._reindex)
        return folder

    def read_settings(self) -> IndexSettings:
        return self._settings(self.current_generation())

    def read_documents(self) -> dict[str, Document]:
        """Only the documents: all a reindex needs, whatever else about the format changed."""
        return _read_documents(self.current_generation())

    def load(self) -> Snapshot:
        folder = self.current_generation()
        settings = self._settings(folder)
        documents = _read_documents(folder)
        chunks = [Chunk(**c) for c in _read_jsonl(folder / "chunks.jsonl")]
        dense = DenseIndex.load(folder / "dense.faiss")
        units = sum(len(c.sentences) for c in chunks)
        if dense.size != units or any(not c.sentences for c in chunks):
            raise KnowledgeBaseError(
                f"{folder}: {units} sentence units but {dense.size} vectors", self._reindex
            )
        return Snapshot(
            settings=settings,
            documents=documents,
            chunks=chunks,
            dense=dense,
            lexical=LexicalIndex.load(folder / "lexical", len(chunks)),
            generation=folder.name,
        )

    def _settings(self, folder: Path) -> IndexSettings:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        try:
            return IndexSettings(**manifest["settings"])
        except (KeyError, TypeError) as exc:  # written by another wendao version
            raise KnowledgeBaseError(
                f"{folder}: the index format is not this version's ({exc})", self._reindex
            ) from None

    # -- writing ---------------------------------------------------------------------------
    @contextmanager
    def lock(self, timeout: float = 600) -> Iterator[None]:
        """Hold the writers' lock; what a killed writer left is swept first."""
        with writer_lock(self.root, timeout):
            self._sweep()
            yield

    def write(
        self,
        settings: IndexSettings,
        documents: dict[str, Document],
        chunks: list[Chunk],
        embeddings: np.ndarray,
        token_lists: list[list[str]],
        extra: Callable[[Path], None] | None = None,
    ) -> str:
        """Write a complete generation and make it current. Caller holds ``lock()``.

        ``extra`` writes further files into the generation folder before it is made durable and
        current. Any failure before the swap removes everything this write created and leaves the
        knowledge base as it was; a full disk or another I/O error becomes one
        :class:`KnowledgeBaseError` line naming the file being written.
        """
        embeddings = np.asarray(embeddings, dtype=np.float32).reshape(-1, settings.dimension)
        units = sum(len(c.sentences) for c in chunks)
        if len(embeddings) != units:
            raise ValueError(f"{units} sentence units but {len(embeddings)} vectors")
        now = time.time_ns()
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now // 10**9))
        name = f"gen-{stamp}-{now % 10**9:09d}-{os.getpid()}"
        staging = self.root / f".staging-{name}"
        tmp_pointer = self.root / f".{POINTER}.{os.getpid()}.tmp"
        target = self.root  # what is being written when something fails
        written: list[Path] = []  # what to remove if the write fails before the swap
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            previous = self._pointer_target()
            manifest = {
                "settings": asdict(settings),
                "documents": len(documents),
                "chunks": len(chunks),
                "previous": previous,  # kept by sweeps: a reader may still be in it
                "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
            staging.mkdir()
            written.append(staging)
            target = staging / "documents.jsonl"
            _write_jsonl(target, (asdict(d) for d in documents.values()))
            target = staging / "chunks.jsonl"
            _write_jsonl(target, (asdict(c) for c in chunks))
            if extra is not None:  # the page layouts of PDFs and images (index/pagestore.py)
                target = staging
                extra(staging)
            target = staging / "dense.faiss"
            DenseIndex.build(embeddings, settings.dimension).save(target)
            target = staging / "lexical"
            LexicalIndex.build(token_lists).save(target)
            target = staging / "manifest.json"
            target.write_text(json.dumps(manifest, ensure_ascii=False, indent=1), encoding="utf-8")
            target = staging
            fsync_tree(staging)
            target = self.root / name
            staging.rename(target)
            written.append(target)
            target = tmp_pointer
            written.append(tmp_pointer)
            tmp_pointer.write_text(name + "\n", encoding="utf-8")
            fsync_file(tmp_pointer)
            target = self.root / POINTER
            os.replace(tmp_pointer, target)
        except BaseException as error:
            reason = storage_full(error, self.root)  # before removing: it may look at free space
            for path in reversed(written):
                _remove(path)
            if reason:
                raise KnowledgeBaseError(
                    f"{reason} while writing {target}; the knowledge base is unchanged: free some space and try again"
                ) from error
            if isinstance(error, OSError):
                raise KnowledgeBaseError(
                    f"cannot write {target}: {error.strerror or error}; the knowledge base is unchanged"
                ) from error
            raise
        fsync_dir(self.root)
        self._sweep()
        return name

    def _pointer_target(self) -> str:
        pointer = self.root / POINTER
        return pointer.read_text(encoding="utf-8").strip() if pointer.is_file() else ""

    def _sweep(self) -> None:
        """Remove what killed writes left and every generation but the current and previous one.

        Runs under the lock, so no writer is at work: a staging folder, a temporary pointer or a
        generation renamed into place by a writer killed before it swapped ``CURRENT`` is left
        over. The previous generation stays so a reader that opened it a moment ago can finish.
        Without a readable ``CURRENT`` no generation is touched (``reindex`` may need one).
        """
        for path in [*self.root.glob(".staging-*"), *self.root.glob(f".{POINTER}.*.tmp")]:
            _remove(path)
        try:
            current = self._pointer_target()
        except (OSError, UnicodeDecodeError):
            return
        if not current or not (self.root / current / "manifest.json").is_file():
            return
        generations = sorted(p.name for p in self.root.glob("gen-*") if p.is_dir())
        keep = {current, self._previous(current, generations)}
        for name in generations:
            if name not in keep:
                _remove(self.root / name)

    def _previous(self, current: str, generations: list[str]) -> str:
        """The generation that was current before ``current``, as its manifest records it;
        for a generation written before manifests recorded it, the newest older one by name
        (names start with the time they were written)."""
        try:
            manifest = json.loads((self.root / current / "manifest.json").read_text(encoding="utf-8"))
            if isinstance(manifest.get("previous"), str):
                return manifest["previous"]
        except (OSError, ValueError):
            pass
        older = [name for name in generations if name < current]
        return older[-1] if older else ""


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _read_documents(folder: Path) -> dict[str, Document]:
    return {d["doc_id"]: Document(**d) for d in _read_jsonl(folder / "documents.jsonl")}


def _read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _starts(counts: np.ndarray) -> np.ndarray:
    """Where each of consecutive runs of ``counts`` rows begins (exclusive cumulative sum)."""
    return (np.cumsum(counts) - counts).astype(np.int64)


def _write_jsonl(path: Path, rows) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
