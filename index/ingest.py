"""Add, replace and remove documents in a knowledge base.

Only new or changed documents are embedded (embedding is the slow part: ~10–30 chunks/s on a
laptop CPU); vectors of unchanged chunks are carried over. The whole result is then written as a
new generation, so a failure anywhere leaves the previous knowledge base as it was. The model
(seconds and most of a gigabyte to load) is loaded only once something must be embedded.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, Literal

import numpy as np

from corpus.chunking import CHUNKER_VERSION, ChunkSettings
from corpus.errors import Fix, IngestError
from corpus.folding import FOLD_VERSION, fold
from corpus.loaders import DEFAULT_MAX_BYTES, check_file, file_sha256, scan_path, supported_list
from corpus.pages import PageOptions
from corpus.pipeline import prepare_file, prepare_text
from corpus.progress import ProgressCallback
from corpus.records import Chunk, Document, PreparedDocument
from index.embedder import Embedder
from index.lexical import TOKENIZER_VERSION, tokenize_folded
from index.pagestore import layout_line, pages_writer, prune_originals, save_original
from index.store import IndexSettings, KnowledgeBaseError, KnowledgeBaseStore, Snapshot, check_compatible

EMBED_TEMPLATE = "{title} > {heading}\n{sentence}"
ENCODE_BATCH = 64



FileStatus = Literal["added", "updated", "unchanged", "removed", "failed"]


@dataclass
class FileResult:
    """What happened to one input: added, updated, unchanged, removed or failed (with reason)."""

    source: str
    doc_id: str
    status: FileStatus
    chunks: int = 0
    reason: str = ""
    fix: Fix | None = None  # what the user can do about a failure (worded by the interface)


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


def index_settings(model: str, dimension: int, chunking: ChunkSettings) -> IndexSettings:
    return IndexSettings(
        model=model,
        dimension=dimension,
        fold_version=FOLD_VERSION,
        tokenizer_version=TOKENIZER_VERSION,
        chunk_size=chunking.size,
        chunk_overlap=chunking.overlap,
        chunker_version=CHUNKER_VERSION,
        embed_template=EMBED_TEMPLATE,
    )


def embedding_texts(document: Document, chunk: Chunk) -> list[str]:
    """What the dense model sees, one text per sentence unit: the folded sentence with the
    title and heading path in front, so that "目标是什么" still knows whose goal it is."""
    return [
        fold(EMBED_TEMPLATE.format(title=document.title, heading=chunk.heading, sentence=document.text[start:end]))
        for start, end in chunk.sentences
    ]


def lexical_tokens(document: Document, chunk: Chunk) -> list[str]:
    """BM25 tokens of a chunk with its document title and heading path: a question naming
    the document's subject (衢州, 崇州) and a detail only the chunk has should match both."""
    return tokenize_folded(fold(f"{document.title}\n{chunk.heading}\n{chunk.text}"))


def discover(paths: Iterable[Path]) -> tuple[list[tuple[Path, str]], list[FileResult]]:
    """Files under each path with their doc ids: the file name, or the path below a given folder.

    A path given twice is read once; two different files with one id in a batch cannot both be
    kept, so the later one is reported rather than silently mixing their chunks.
    """
    found: dict[str, Path] = {}
    problems: list[FileResult] = []
    for root in map(Path, paths):
        try:
            scan = scan_path(root)
        except IngestError as error:
            problems.append(FileResult(str(root), "", "failed", reason=error.reason, fix=error.fix))
            continue
        files = scan.files
        problems += [FileResult(e.source, "", "failed", reason=e.reason, fix=e.fix) for e in scan.skipped]
        if root.is_dir() and not files:
            reason = f"no supported files in this folder (supported: {supported_list()})"
            problems.append(FileResult(source=str(root), doc_id="", status="failed", reason=reason))
        for path in files:
            doc_id = path.relative_to(root).as_posix() if root.is_dir() else path.name
            first = found.setdefault(doc_id, path)
            if first.resolve() != path.resolve():
                reason = f"document id {doc_id!r} is already used by {first} in this batch; rename one of the files"
                problems.append(FileResult(source=str(path), doc_id=doc_id, status="failed", reason=reason))
    return list((path, doc_id) for doc_id, path in found.items()), problems


class Ingestor:
    """Applies document changes to one store with one embedder and chunking configuration.

    ``embedder`` may be a function that loads it, with ``model`` its name: it is then called
    only when something must be embedded, never to remove documents, skip unchanged files or
    refuse a bad knowledge-base folder (until then the stored dimension stands in for its own).
    """

    def __init__(
        self,
        store: KnowledgeBaseStore,
        embedder: Embedder | Callable[[], Embedder],
        chunking: ChunkSettings | None = None,
        model: str | None = None,
    ):
        self.store = store
        self.chunking = chunking or ChunkSettings()
        if callable(embedder):
            if model is None:
                raise TypeError("a lazily loaded embedder needs its model name")
            self._embedder, self._load, self.model = None, embedder, model
        else:
            self._embedder, self._load, self.model = embedder, None, embedder.name

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = self._load()
        return self._embedder

    def settings(self, dimension: int) -> IndexSettings:
        return index_settings(self.model, dimension, self.chunking)

    def ingest_paths(
        self,
        paths: Iterable[Path],
        progress: ProgressCallback | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        pages: PageOptions | None = None,
    ) -> IngestReport:
        """Ingest files and folders; a file that fails is reported and the rest go on.

        Nothing is written when no document changed, so a batch of bad or unchanged files
        leaves the knowledge base's generation exactly as it was.
        """
        started = time.perf_counter()
        pages = _with_page_progress(pages or PageOptions(), progress)
        files, results = discover(paths)
        with self.store.lock():
            snapshot = self._open_compatible()
            upserts: list[PreparedDocument] = []
            for number, (path, doc_id) in enumerate(files, 1):
                if progress:
                    progress("read", number, len(files))
                result, prepared = self._prepare(path, doc_id, snapshot, max_bytes, pages)
                results.append(result)
                if prepared:
                    upserts.append(prepared)
            report = self._apply(snapshot, upserts, removals=[], progress=progress) if upserts else _totals(snapshot)
        report.results = results
        report.seconds = time.perf_counter() - started
        return report

    def _prepare(
        self, path: Path, doc_id: str, snapshot: Snapshot | None, max_bytes: int, pages: PageOptions | None = None
    ) -> tuple[FileResult, PreparedDocument | None]:
        """Read one file unless its content hash is already indexed; failures become a result."""
        previous = snapshot.documents.get(doc_id) if snapshot else None
        try:
            check_file(path, max_bytes)
            # (a PDF indexed before page views existed is read again, to gain them)
            if previous and previous.sha256 == file_sha256(path) and (previous.pages or previous.format != "pdf"):
                return FileResult(str(path), doc_id, "unchanged", len(snapshot.chunks_of(doc_id))), None
            prepared = prepare_file(path, doc_id, self.chunking, max_bytes, pages)
            if prepared.original is not None:  # stored now: a batch never holds every file in memory
                save_original(self.store.root, prepared.document.sha256, prepared.original)
                prepared.original = None
        except IngestError as error:
            return FileResult(str(path), doc_id, "failed", reason=error.reason, fix=error.fix), None
        status = "updated" if previous else "added"
        # Same id from another file (a/通知.txt, later b/通知.txt): say so, it is easy to miss.
        note = f"replaces {previous.source}" if previous and Path(previous.source) != path else ""
        return FileResult(str(path), doc_id, status, len(prepared.chunks), reason=note), prepared

    def ingest_prepared(self, documents: list[PreparedDocument], progress: ProgressCallback | None = None) -> IngestReport:
        """Ingest documents prepared in memory (BEIR corpora, tests)."""
        started = time.perf_counter()
        with self.store.lock():
            report = self._apply(self._open_compatible(), documents, removals=[], progress=progress)
        report.results = [FileResult(d.document.source, d.document.doc_id, "added", len(d.chunks)) for d in documents]
        report.seconds = time.perf_counter() - started
        return report

    def remove(self, doc_ids: list[str]) -> IngestReport:
        doc_ids = list(dict.fromkeys(doc_ids))
        with self.store.lock():
            snapshot = self._open_compatible()
            missing = [d for d in doc_ids if not snapshot or d not in snapshot.documents]
            if missing:
                raise KnowledgeBaseError(
                    f"no such document in {self.store.root}: {', '.join(missing)}", Fix("list_documents", str(self.store.root))
                )
            report = self._apply(snapshot, [], removals=doc_ids, progress=None)
        report.results = [FileResult(snapshot.documents[d].source, d, "removed") for d in doc_ids]
        return report

    def reindex(self, progress: ProgressCallback | None = None) -> IngestReport:
        """Re-chunk and re-embed every stored document with the current settings.

        Only the stored documents are read, so this also rebuilds an index whose settings or
        format no longer match (the fix the mismatch errors name).
        """
        with self.store.lock():
            prepared = []
            for doc in self.store.read_documents().values():
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
        # Before the model is loaded its dimension is unknown; _settings_to_write checks it.
        self._check(stored, self.settings(self._embedder.dimension if self._embedder else stored.dimension))
        return self.store.load()

    def _check(self, stored: IndexSettings, wanted: IndexSettings) -> None:
        check_compatible(stored, wanted, self.store.root)

    def _settings_to_write(self, snapshot: Snapshot | None, embedding: bool, progress: ProgressCallback | None) -> IndexSettings:
        """The stored settings when nothing is embedded into an existing knowledge base (no
        model needed); otherwise the loaded model's, which must still match what is stored."""
        if snapshot is not None and not embedding and self._embedder is None:
            return self.settings(snapshot.settings.dimension)
        loading = self._embedder is None and progress is not None
        if loading:
            progress("load", 0, 1)
        settings = self.settings(self.embedder.dimension)
        if loading:
            progress("load", 1, 1)
        if snapshot is not None:
            self._check(snapshot.settings, settings)
        return settings

    def _apply(
        self,
        snapshot: Snapshot | None,
        upserts: list[PreparedDocument],
        removals: list[str],
        progress: ProgressCallback | None,
    ) -> IngestReport:
        replaced = {p.document.doc_id for p in upserts} | set(removals)
        settings = self._settings_to_write(snapshot, any(p.chunks for p in upserts), progress)
        documents: dict[str, Document] = {}
        chunks: list[Chunk] = []
        kept_vectors = np.zeros((0, settings.dimension), dtype=np.float32)
        if snapshot:
            documents = {k: v for k, v in snapshot.documents.items() if k not in replaced}
            keep = [i for i, c in enumerate(snapshot.chunks) if c.doc_id not in replaced]
            chunks = [snapshot.chunks[i] for i in keep]
            kept_vectors = snapshot.embeddings[snapshot.units_of(np.array(keep, dtype=np.int64))[0]]
        new_chunks = [c for p in upserts for c in p.chunks]
        for prepared in upserts:
            documents[prepared.document.doc_id] = prepared.document
        texts = [t for c in new_chunks for t in embedding_texts(documents[c.doc_id], c)]
        new_vectors = self._encode(texts, settings.dimension, progress)
        chunks += new_chunks
        if progress:
            progress("index", 0, 1)
        layouts = {p.document.doc_id: layout_line(p.document, p.layout) for p in upserts if p.layout is not None}
        previous = self.store.current_generation() if self.store.exists() else None
        self.store.write(
            settings,
            documents,
            chunks,
            np.vstack([kept_vectors, new_vectors]),
            [lexical_tokens(documents[c.doc_id], c) for c in chunks],
            extra=pages_writer(documents, layouts, previous),
        )
        prune_originals(self.store.root, self.store.root.glob("gen-*"))
        if progress:
            progress("index", 1, 1)
        return IngestReport(documents=len(documents), chunks=len(chunks), encoded_chunks=len(new_chunks))

    def _encode(self, texts: list[str], dimension: int, progress: ProgressCallback | None) -> np.ndarray:
        batches = [self.embedder.encode_documents(texts[i : i + ENCODE_BATCH]) for i in _batch_starts(texts, progress)]
        return np.vstack(batches) if batches else np.zeros((0, dimension), dtype=np.float32)


def _with_page_progress(pages: PageOptions, progress: ProgressCallback | None) -> PageOptions:
    """Report pages read (per file) as the "pages" stage of the ingest progress."""
    if progress is None or pages.progress is not None:
        return pages
    return replace(pages, progress=lambda done, total: progress("pages", done, total))


def _totals(snapshot: Snapshot | None) -> IngestReport:
    """The report of a batch that changed nothing: the knowledge base as it stands."""
    return IngestReport(documents=len(snapshot.documents) if snapshot else 0, chunks=len(snapshot.chunks) if snapshot else 0)


def _batch_starts(texts: list[str], progress: ProgressCallback | None):
    for start in range(0, len(texts), ENCODE_BATCH):
        if progress:
            progress("embed", start, len(texts))
        yield start
    if progress and texts:
        progress("embed", len(texts), len(texts))
