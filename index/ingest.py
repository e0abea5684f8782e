"""Add, replace and remove documents in a knowledge base.

Only new or changed documents are embedded (embedding is the slow part: ~10–30 chunks/s on a
laptop CPU). An ingest commits as it goes, a batch at least every ``COMMIT_UNITS`` sentence
units or ``COMMIT_SECONDS`` of work (each batch one new segment, ``index.segments``), so a kill
loses at most the batch in flight and running the same command again carries on: committed files
are skipped by content hash and what was committed is searchable meanwhile. The model (seconds
and most of a gigabyte to load) is loaded only once something must be embedded.

No sentence unit is embedded twice (``index.embed_cache``: vectors kept with the knowledge base,
repeats within a batch encoded once), and files are read, cleaned and chunked on a thread while
the model encodes the batch before.
"""
from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
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
from index.backend import Catalog, Store, Writer
from index.embed_cache import EmbeddingCache, EncodeCounts
from index.embedder import Embedder
from index.lexical import TOKENIZER_VERSION, tokenize_folded
from index.migrate import convert
from index.pagestore import layout_line, lines_by_doc, save_original
from index.segments import FORMAT_VERSION
from index.store import IndexSettings, KnowledgeBaseError, KnowledgeBaseStore, check_compatible
from index.termids import text_ids

EMBED_TEMPLATE = "{title} > {heading}\n{sentence}"
ENCODE_BATCH = 64
COMMIT_UNITS = 256  # commit a batch once it holds this many sentence units ...
COMMIT_SECONDS = 30.0  # ... or once this much work went into it
PREPARE_AHEAD = 8  # files read, cleaned and chunked ahead of the one being embedded


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
    encoded_chunks: int = 0  # chunks written with new vectors
    units: EncodeCounts = field(default_factory=EncodeCounts)  # their sentence units: encoded, cached, repeated
    seconds: float = 0.0

    @property
    def failed(self) -> list[FileResult]:
        return [r for r in self.results if r.status == "failed"]


def built_chunking(settings: IndexSettings) -> ChunkSettings:
    """The chunking a knowledge base was built with (``min_size`` is not recorded: the default)."""
    return ChunkSettings(size=settings.chunk_size, overlap=settings.chunk_overlap)


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
        format_version=FORMAT_VERSION,
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


def lexical_ids(document: Document, chunk: Chunk) -> np.ndarray:
    """The ids (``index.termids``) of ``lexical_tokens``, computed without building the list."""
    return text_ids(fold(f"{document.title}\n{chunk.heading}\n{chunk.text}"))


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
        store: Store,
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
        self._cache: EmbeddingCache | None = None  # open during a write that embeds
        self._units = EncodeCounts()

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
        leaves the knowledge base's generation exactly as it was. Progress: ``read``, files done
        of all; ``embed``, chunks embedded of the total (estimated from the file sizes read so far).
        """
        started = time.perf_counter()
        pages = _with_page_progress(pages or PageOptions(), progress)
        files, results = discover(paths)
        with self.store.lock():
            catalog = self._open_compatible()
            batches = _Batches(self, catalog, progress, total_bytes=sum(_size(p) for p, _ in files))
            try:
                ahead = self._prepare_ahead(files, catalog, max_bytes, pages)
                for number, (path, result, prepared) in enumerate(ahead, 1):
                    if progress:
                        progress("read", number, len(files))
                    results.append(result)
                    batches.add(prepared, _size(path))
                batches.flush()
            finally:
                batches.close()
                units = self._close_cache()
            report = _totals(self.store.catalog() if self.store.head() else None)
            report.encoded_chunks = batches.encoded_chunks
            report.units = units
        report.results = results
        report.seconds = time.perf_counter() - started
        return report

    def _prepare(
        self, path: Path, doc_id: str, snapshot: Catalog | None, max_bytes: int, pages: PageOptions | None = None
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

    def _prepare_ahead(
        self, files: list[tuple[Path, str]], snapshot: Catalog | None, max_bytes: int, pages: PageOptions | None
    ) -> Iterator[tuple[Path, FileResult, PreparedDocument | None]]:
        """``_prepare`` of each file, in order, run on a thread up to ``PREPARE_AHEAD`` files
        ahead: loading, cleaning and chunking (and OCR) overlap the embedding of the batch before,
        which releases the GIL while torch runs, so the model does not wait for the next file."""
        pool = ThreadPoolExecutor(1, thread_name_prefix="wendao-prepare")
        queue: deque = deque()
        try:
            for path, doc_id in files:
                queue.append((path, pool.submit(self._prepare, path, doc_id, snapshot, max_bytes, pages)))
                if len(queue) > PREPARE_AHEAD:
                    path, future = queue.popleft()
                    yield (path, *future.result())
            while queue:
                path, future = queue.popleft()
                yield (path, *future.result())
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def ingest_prepared(self, documents: list[PreparedDocument], progress: ProgressCallback | None = None) -> IngestReport:
        """Ingest documents prepared in memory (BEIR corpora, tests)."""
        started = time.perf_counter()
        with self.store.lock():
            catalog = self._open_compatible()
            batches = _Batches(self, catalog, progress, total_bytes=sum(len(d.document.text) for d in documents))
            try:
                for prepared in documents:
                    batches.add(prepared, len(prepared.document.text))
                batches.flush()
            finally:
                batches.close()
                units = self._close_cache()
            report = _totals(self.store.catalog() if self.store.head() else None)
            report.encoded_chunks = batches.encoded_chunks
            report.units = units
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
                    f"no such document in {self.store.location}: {', '.join(missing)}", Fix("list_documents", self.store.location)
                )
            settings = self.store.read_settings()  # removing needs no model
            writer = self.store.writer(settings)
            try:
                writer.add([], [], np.zeros((0, settings.dimension), dtype=np.float32), [], remove=doc_ids)
            finally:
                writer.close()
            report = _totals(self.store.catalog())
        report.results = [FileResult(snapshot.documents[d].source, d, "removed") for d in doc_ids]
        return report

    def reindex(self, progress: ProgressCallback | None = None) -> IngestReport:
        """Re-chunk and re-embed every stored document with the current settings.

        Only the stored documents are read, so this also rebuilds an index whose settings or
        format no longer match (the fix the mismatch errors name).
        """
        with self.store.lock():
            prepared = []
            layouts: dict[str, str] = {}
            if self.store.head():
                stored = self.store.read_documents()
            else:  # the old format, whatever its settings: read its documents and page layouts
                old = KnowledgeBaseStore(self.store.root)
                stored = old.read_documents()
                layouts = lines_by_doc(old.current_generation())
            for doc in stored.values():
                again = prepare_text(doc.text, doc.doc_id, doc.source, self.chunking, title=doc.title, fmt=doc.format)
                kept = replace(doc, title=again.document.title or doc.title)
                prepared.append(PreparedDocument(kept, again.chunks))
            chunks = [c for p in prepared for c in p.chunks]
            documents = {p.document.doc_id: p.document for p in prepared}
            settings = self._settings_to_write(None, bool(chunks), progress)
            texts = [t for c in chunks for t in embedding_texts(documents[c.doc_id], c)]
            try:
                vectors = self._encode(texts, settings.dimension, progress)
            finally:
                units = self._close_cache()
            writer = self.store.writer(settings)
            try:
                if progress:
                    progress("index", 0, 1)
                token_ids = [lexical_ids(documents[c.doc_id], c) for c in chunks]
                writer.replace_all(settings, list(documents.values()), chunks, vectors, token_ids, layouts=layouts)
                writer.compact()
                if progress:
                    progress("index", 1, 1)
            finally:
                writer.close()
            report = _totals(self.store.catalog())
            report.encoded_chunks = len(chunks)
            report.units = units
        report.results = [FileResult(p.document.source, p.document.doc_id, "updated", len(p.chunks)) for p in prepared]
        return report

    # -- internals -------------------------------------------------------------------------
    def _open_compatible(self) -> Catalog | None:
        """The knowledge base's records as committed (converted first if of the old format)."""
        if self.store.legacy():
            convert(self.store)
        if not self.store.exists():
            return None
        stored = self.store.read_settings()
        # Before the model is loaded its dimension is unknown; _settings_to_write checks it.
        self._check(stored, self.settings(self._embedder.dimension if self._embedder else stored.dimension))
        return self.store.catalog()

    def _check(self, stored: IndexSettings, wanted: IndexSettings) -> None:
        check_compatible(stored, wanted, self.store.location)

    def _settings_to_write(self, stored: IndexSettings | None, embedding: bool, progress: ProgressCallback | None) -> IndexSettings:
        """The stored settings when nothing is embedded into an existing knowledge base (no
        model needed); otherwise the loaded model's, which must still match what is stored."""
        if stored is not None and not embedding and self._embedder is None:
            return self.settings(stored.dimension)
        loading = self._embedder is None and progress is not None
        if loading:
            progress("load", 0, 1)
        settings = self.settings(self.embedder.dimension)
        if loading:
            progress("load", 1, 1)
        if stored is not None:
            self._check(stored, settings)
        return settings

    def _encode(self, texts: list[str], dimension: int, progress: ProgressCallback | None) -> np.ndarray:
        """Passage vectors of ``texts``: from the knowledge base's embedding cache where it has
        them, the others encoded (each distinct text once) and added to it."""
        if not texts:
            return np.zeros((0, dimension), dtype=np.float32)
        if self._cache is None:
            self._cache = EmbeddingCache(self.store.root, self.embedder.fingerprint, EMBED_TEMPLATE, dimension)
        vectors, counts = self._cache.encode(self.embedder, texts, ENCODE_BATCH, progress)
        self._units.add(counts)
        return vectors

    def _close_cache(self) -> EncodeCounts:
        """Prune and close the embedding cache after a write; the sentence units of this call."""
        units, self._units = self._units, EncodeCounts()
        cache, self._cache = self._cache, None
        if cache is not None:
            try:
                cache.prune(self.store.unit_count())
            finally:
                cache.close()
        return units


class _Batches:
    """Collects prepared documents and commits them a batch at a time (see the module doc)."""

    def __init__(self, ingestor: Ingestor, catalog: Catalog | None, progress: ProgressCallback | None, total_bytes: int):
        self.ingestor = ingestor
        self.stored = ingestor.store.read_settings() if catalog is not None else None
        self.progress = progress
        self.total_bytes = max(total_bytes, 1)
        self.pending: list[PreparedDocument] = []
        self.units = 0
        self.started = time.perf_counter()
        self.bytes_done = 0
        self.chunks_done = 0
        self.encoded_chunks = 0
        self.writer: Writer | None = None

    def add(self, prepared: PreparedDocument | None, size: int) -> None:
        self.bytes_done += size
        if prepared is not None:
            self.pending.append(prepared)
            self.units += sum(len(c.sentences) for c in prepared.chunks)
        if self.units >= COMMIT_UNITS or (self.pending and time.perf_counter() - self.started >= COMMIT_SECONDS):
            self.flush()

    def flush(self) -> None:
        """Embed and commit what is pending as one segment, then merge if the policy says so."""
        if not self.pending:
            return
        ingestor = self.ingestor
        documents = {p.document.doc_id: p.document for p in self.pending}
        chunks = [c for p in self.pending for c in p.chunks]
        if self.writer is None:
            settings = ingestor._settings_to_write(self.stored, bool(chunks), self.progress)
            self.writer = ingestor.store.writer(settings)
        self._report(self.chunks_done)
        texts = [t for c in chunks for t in embedding_texts(documents[c.doc_id], c)]
        vectors = ingestor._encode(texts, self.writer.settings.dimension, None)
        layouts = {p.document.doc_id: layout_line(p.document, p.layout) for p in self.pending if p.layout is not None}
        token_ids = [lexical_ids(documents[c.doc_id], c) for c in chunks]
        self.writer.add(list(documents.values()), chunks, vectors, token_ids, layouts=layouts)
        self.chunks_done += len(chunks)
        self.encoded_chunks += len(chunks)
        self._report(self.chunks_done)
        self.pending, self.units, self.started = [], 0, time.perf_counter()
        self.writer.merge_in_background()

    def _report(self, done: int) -> None:
        """Chunks embedded of the estimated total: what is known so far, scaled by bytes read."""
        if self.progress:
            known = done + sum(len(p.chunks) for p in self.pending)
            estimate = max(known, round(known * self.total_bytes / max(self.bytes_done, 1)))
            self.progress("embed", done, estimate)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _with_page_progress(pages: PageOptions, progress: ProgressCallback | None) -> PageOptions:
    """Report pages read (per file) as the "pages" stage of the ingest progress."""
    if progress is None or pages.progress is not None:
        return pages
    return replace(pages, progress=lambda done, total: progress("pages", done, total))


def _totals(catalog: Catalog | None) -> IngestReport:
    """The report's totals: the knowledge base as it stands."""
    documents, chunks = catalog.counts if catalog else (0, 0)
    return IngestReport(documents=documents, chunks=chunks)
