"""Add, replace and remove documents in a knowledge base.

Only new or changed documents are embedded (embedding is the slow part: ~10–30 chunks/s on a
laptop CPU); vectors of unchanged chunks are carried over. The whole result is then written as a
new generation, so a failure anywhere leaves the previous knowledge base as it was.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from corpus.chunking import ChunkSettings
from corpus.errors import IngestError
from corpus.folding import fold
from corpus.loaders import iter_supported_files
from corpus.pipeline import prepare_file, prepare_text
from corpus.records import Chunk, Document, PreparedDocument
from index.embedder import Embedder
from index.lexical import TOKENIZER_VERSION, tokenize_folded
from index.store import IndexSettings, KnowledgeBaseError, KnowledgeBaseStore, Snapshot

FOLD_VERSION = "opencc-t2s+width+lower-1"
EMBED_TEMPLATE = "{title} > {heading}\n{text}"
ENCODE_BATCH = 64

Progress = Callable[[str, int, int], None]


@dataclass
class FileResult:
    """What happened to one input: added, updated, unchanged, removed or failed (with reason)."""

    source: str
    doc_id: str
    status: str
    chunks: int = 0
    reason: str = ""


@dataclass
class IngestReport:
    results: list[FileResult] = field(default_factory=list)
    documents: int = 0
    chunks: int = 0
    encoded_chunks: int = 0
    seconds: float = 0.0

    @property
    def failed(self) -> list[FileResult]:
        return [r for r in self.results if r.status == "failed"]


def index_settings(embedder: Embedder, chunking: ChunkSettings) -> IndexSettings:
    return IndexSettings(
        model=embedder.name,
        dimension=embedder.dimension,
        fold_version=FOLD_VERSION,
        tokenizer_version=TOKENIZER_VERSION,
        chunk_size=chunking.size,
        chunk_overlap=chunking.overlap,
        embed_template=EMBED_TEMPLATE,
    )


def embedding_text(document: Document, chunk: Chunk) -> str:
    """What the dense model sees: folded title and heading path give a passage its context."""
    return fold(EMBED_TEMPLATE.format(title=document.title, heading=chunk.heading, text=chunk.text))


def lexical_tokens(chunk: Chunk) -> list[str]:
    return tokenize_folded(fold(f"{chunk.heading}\n{chunk.text}"))


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def discover(paths: Iterable[Path]) -> tuple[list[tuple[Path, str]], list[FileResult]]:
    """Files under each path with their doc ids: the file name, or the path below a given folder."""
    found: list[tuple[Path, str]] = []
    problems: list[FileResult] = []
    for root in map(Path, paths):
        try:
            for path in iter_supported_files([root]):
                doc_id = path.name if root.is_file() else path.relative_to(root).as_posix()
                found.append((path, doc_id))
        except IngestError as error:
            problems.append(FileResult(source=str(root), doc_id="", status="failed", reason=error.reason))
    return found, problems


class Ingestor:
    """Applies document changes to one store with one embedder and chunking configuration."""

    def __init__(self, store: KnowledgeBaseStore, embedder: Embedder, chunking: ChunkSettings | None = None):
        self.store = store
        self.embedder = embedder
        self.chunking = chunking or ChunkSettings()
        self.settings = index_settings(embedder, self.chunking)

    def ingest_paths(self, paths: Iterable[Path], progress: Progress | None = None) -> IngestReport:
        """Ingest files and folders; a file that fails is reported and the rest go on."""
        started = time.perf_counter()
        files, results = discover(paths)
        with self.store.lock():
            snapshot = self._open_compatible()
            known = snapshot.documents if snapshot else {}
            upserts: list[PreparedDocument] = []
            for number, (path, doc_id) in enumerate(files, 1):
                if progress:
                    progress("read", number, len(files))
                result = FileResult(source=str(path), doc_id=doc_id, status="added")
                try:
                    previous = known.get(doc_id)
                    if previous and previous.sha256 == file_sha256(path):
                        result.status, result.chunks = "unchanged", len(snapshot.chunks_of(doc_id))
                    else:
                        prepared = prepare_file(path, doc_id, self.chunking)
                        upserts.append(prepared)
                        result.status = "updated" if previous else "added"
                        result.chunks = len(prepared.chunks)
                except (IngestError, OSError) as error:
                    result.status, result.reason = "failed", getattr(error, "reason", str(error))
                results.append(result)
            report = self._apply(snapshot, upserts, removals=[], progress=progress)
        report.results = results
        report.seconds = time.perf_counter() - started
        return report

    def ingest_prepared(self, documents: list[PreparedDocument], progress: Progress | None = None) -> IngestReport:
        """Ingest documents prepared in memory (BEIR corpora, tests)."""
        started = time.perf_counter()
        with self.store.lock():
            report = self._apply(self._open_compatible(), documents, removals=[], progress=progress)
        report.results = [FileResult(d.document.source, d.document.doc_id, "added", len(d.chunks)) for d in documents]
        report.seconds = time.perf_counter() - started
        return report

    def remove(self, doc_ids: list[str]) -> IngestReport:
        with self.store.lock():
            snapshot = self._open_compatible()
            missing = [d for d in doc_ids if not snapshot or d not in snapshot.documents]
            if missing:
                raise KnowledgeBaseError(f"no such document in {self.store.root}: {', '.join(missing)}")
            report = self._apply(snapshot, [], removals=doc_ids, progress=None)
        report.results = [FileResult(snapshot.documents[d].source, d, "removed") for d in doc_ids]
        return report

    def reindex(self, progress: Progress | None = None) -> IngestReport:
        """Re-chunk and re-embed every stored document with the current settings."""
        with self.store.lock():
            old = self.store.load()
            prepared = []
            for doc in old.documents.values():
                again = prepare_text(doc.text, doc.doc_id, doc.source, self.chunking, title=doc.title, fmt=doc.format)
                kept = replace(doc, title=again.document.title or doc.title)
                prepared.append(PreparedDocument(kept, again.chunks))
            report = self._apply(None, prepared, removals=[], progress=progress)
        report.results = [FileResult(p.document.source, p.document.doc_id, "updated", len(p.chunks)) for p in prepared]
        return report

    # -- internals -------------------------------------------------------------------------
    def _open_compatible(self) -> Snapshot | None:
        if not self.store.exists():
            return None
        stored = self.store.read_settings()
        differences = stored.differences(self.settings)
        if differences:
            raise KnowledgeBaseError(
                f"{self.store.root} was built with other settings ({'; '.join(differences)}); "
                f"run `wendao reindex --kb {self.store.root}` to rebuild it with the current ones"
            )
        return self.store.load()

    def _apply(
        self,
        snapshot: Snapshot | None,
        upserts: list[PreparedDocument],
        removals: list[str],
        progress: Progress | None,
    ) -> IngestReport:
        replaced = {p.document.doc_id for p in upserts} | set(removals)
        documents: dict[str, Document] = {}
        chunks: list[Chunk] = []
        kept_vectors = np.zeros((0, self.settings.dimension), dtype=np.float32)
        if snapshot:
            documents = {k: v for k, v in snapshot.documents.items() if k not in replaced}
            keep = [i for i, c in enumerate(snapshot.chunks) if c.doc_id not in replaced]
            chunks = [snapshot.chunks[i] for i in keep]
            kept_vectors = snapshot.embeddings[keep]
        new_chunks = [c for p in upserts for c in p.chunks]
        for prepared in upserts:
            documents[prepared.document.doc_id] = prepared.document
        new_vectors = self._encode([embedding_text(documents[c.doc_id], c) for c in new_chunks], progress)
        chunks += new_chunks
        if progress:
            progress("index", 0, 1)
        self.store.write(
            self.settings,
            documents,
            chunks,
            np.vstack([kept_vectors, new_vectors]),
            [lexical_tokens(c) for c in chunks],
        )
        if progress:
            progress("index", 1, 1)
        return IngestReport(documents=len(documents), chunks=len(chunks), encoded_chunks=len(new_chunks))

    def _encode(self, texts: list[str], progress: Progress | None) -> np.ndarray:
        batches = [self.embedder.encode_documents(texts[i : i + ENCODE_BATCH]) for i in _batch_starts(texts, progress)]
        return np.vstack(batches) if batches else np.zeros((0, self.settings.dimension), dtype=np.float32)


def _batch_starts(texts: list[str], progress: Progress | None):
    for start in range(0, len(texts), ENCODE_BATCH):
        if progress:
            progress("embed", start, len(texts))
        yield start
    if progress and texts:
        progress("embed", len(texts), len(texts))
