"""One object that the CLI and the web app share: a knowledge base, its model, ask and search.

The model loads lazily (seconds) and once, only for what embeds (a question, a new document):
removing documents, listing them or refusing a bad knowledge-base folder never loads it. The
index snapshot is reloaded whenever another process or thread has written a new generation, so
questions keep working during an ingest.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

from corpus.chunking import ChunkSettings
from corpus.layout import Page
from corpus.loaders import DEFAULT_MAX_BYTES
from corpus.pages import PageOptions
from corpus.pipeline import seed_paths
from corpus.progress import ProgressCallback
from corpus.records import Document
from index.backend import KbLocation, MilvusTarget, SearchView, kb_location, open_store
from index.copy import copy_knowledge_base
from index.embedder import Embedder, load_embedder
from index.ingest import Ingestor, IngestReport, built_chunking, index_settings
from index.migrate import migrate
from index.model import DEFAULT_MODEL, BuildDisplay
from index.pagestore import PageLayouts, read_original
from index.segments import CompactReport
from index.store import check_compatible
from qa.answer import Answer, AnswerSettings, build_answer
from qa.query import QueryPlan, plan_query
from qa.retrieve import FusionSettings, Retriever, SearchHit
from qa.terms import query_terms


def default_kb_dir() -> KbLocation:
    """The knowledge base used when none is named: $WENDAO_KB, else the user's data folder."""
    return kb_location(None)


@dataclass
class DocumentRow:
    """A stored document and how many passages it was cut into."""

    document: Document
    chunks: int


@dataclass
class LibraryStats:
    """What the knowledge base holds and how it was built (the web app's statistics)."""

    documents: int
    chunks: int
    characters: int
    model: str
    dimension: int
    chunk_size: int
    chunk_overlap: int
    disk_bytes: int
    generation: str
    location: str


class Wendao:
    """The facade both interfaces use: questions, documents and statistics of one knowledge base."""


    def __init__(
        self,
        kb_dir: Path | str | MilvusTarget | None = None,
        model: str | None = None,
        allow_network: bool = False,
        chunking: ChunkSettings | None = None,
        fusion: FusionSettings | None = None,
        answering: AnswerSettings | None = None,
        embedder: Embedder | None = None,
        model_display: BuildDisplay | None = None,
        device: str | None = None,
    ):
        # a folder, or a Milvus target (``index.backend.kb_location``: --kb / $WENDAO_KB spellings)
        self.kb_dir = kb_location(kb_dir)
        self.store = open_store(self.kb_dir)
        self._model_name = model
        self._allow_network = allow_network
        self._chunking = chunking  # None: the knowledge base's own (see ``chunking``)
        self.fusion = fusion or FusionSettings()
        self.answering = answering or AnswerSettings()
        self._embedder = embedder
        self._model_display = model_display  # shows a build of the model on first use
        self._device = device  # auto | cpu | cuda (None: $WENDAO_DEVICE, else auto)
        self._snapshot: SearchView | None = None
        self._layouts: PageLayouts | None = None
        self._lock = threading.RLock()
        # Loading the model only waits for itself: an ingest holding the knowledge base's write
        # lock loads it, while ensure_built holds self._lock waiting for that write lock.
        self._model_lock = threading.Lock()

    # -- resources -------------------------------------------------------------------------
    @property
    def model_name(self) -> str:
        """Explicit --model, else the model the knowledge base was built with, else the default."""
        if self._model_name:
            return self._model_name
        if self.store.exists():
            return self.store.read_settings().model
        return DEFAULT_MODEL

    @property
    def chunking(self) -> ChunkSettings:
        """Explicit settings, else those the knowledge base was built with, else the defaults: a
        knowledge base made with another chunk size (``wendao eval --chunk-size``) opens, and
        takes new documents, as it was built, where no command names a chunk size."""
        if self._chunking is not None:
            return self._chunking
        return built_chunking(self.store.read_settings()) if self.store.exists() else ChunkSettings()

    @property
    def embedder(self) -> Embedder:
        with self._model_lock:
            if self._embedder is None:
                self._embedder = load_embedder(
                    self.model_name, allow_network=self._allow_network, display=self._model_display, device=self._device
                )
            return self._embedder

    def ingestor(self) -> Ingestor:
        """An ingestor that loads the model only when it has something to embed."""
        if self._embedder is not None:
            return Ingestor(self.store, self._embedder, self.chunking)
        return Ingestor(self.store, lambda: self.embedder, self.chunking, model=self.model_name)

    def ensure_built(self, progress: ProgressCallback | None = None) -> None:
        """With no knowledge base yet, build one from the bundled seed documents."""
        if not self.store.exists():
            with self._lock:
                if not self.store.exists():
                    self.ingestor().ingest_paths(seed_paths(), progress)

    def snapshot(self) -> SearchView:
        """The current generation, reloaded when a writer has swapped in a new one."""
        self.ensure_built()
        with self._lock:
            migrate(self.store)  # a knowledge base of the old format is converted once, in place
            current = self.store.generation()
            if self._snapshot is None or self._snapshot.generation != current:
                snapshot = self.store.load()
                self._check_compatible(snapshot)
                self._snapshot = snapshot
            return self._snapshot

    def _check_compatible(self, snapshot: SearchView) -> None:
        """Searching an index built with other folding, chunking or model would silently mismatch."""
        stored = snapshot.settings
        wanted = index_settings(self._model_name or stored.model, stored.dimension, self._chunking or built_chunking(stored))
        check_compatible(stored, wanted, self.store.location)

    def retriever(self) -> Retriever:
        return Retriever(self.snapshot(), self.embedder, self.fusion)

    # -- questions -------------------------------------------------------------------------
    def search(
        self, query: str | QueryPlan, mode: str = "hybrid", k: int = 10, doc_ids: set[str] | None = None
    ) -> tuple[list[SearchHit], QueryPlan]:
        """Ranked passages and the planned query they answer (an empty query fails first)."""
        plan = query if isinstance(query, QueryPlan) else plan_query(query)
        return self.retriever().search(plan, mode=mode, k=k, doc_ids=doc_ids), plan

    def ask(self, question: str, mode: str = "hybrid") -> Answer:
        """Answer a question. The first question of a process also loads the index, the model
        and jieba's dictionary (seconds): that is reported as its own ``load`` timing, so the
        stage timings and ``total`` measure the question."""
        plan = plan_query(question)  # an empty question fails before anything is loaded
        loading_started = time.perf_counter()
        retriever = self.retriever()
        query_terms("预热")
        loading = _ms(loading_started)
        started = time.perf_counter()
        hits = retriever.search(plan, mode=mode, k=self.answering.passages)
        answer = self._answer(retriever, plan, hits)
        answer.timings_ms["total"] = _ms(started) + plan.timings_ms.get("fold", 0.0)
        if loading >= 100:
            answer.timings_ms["load"] = loading
        return answer

    def answer_from(self, plan: QueryPlan, hits: list[SearchHit]) -> Answer:
        """Answer a planned query from its ranked passages (used by ask and by evaluation)."""
        return self._answer(self.retriever(), plan, hits)

    def _answer(self, retriever: Retriever, plan: QueryPlan, hits: list[SearchHit]) -> Answer:
        started = time.perf_counter()
        hits = hits[: self.answering.passages]
        retriever.ensure_sentence_scores(plan, hits)
        answer = build_answer(plan, hits, self.answering)
        answer.timings_ms = {**plan.timings_ms, "answer": _ms(started)}
        return answer

    # -- documents and statistics ------------------------------------------------------------
    def documents(self) -> list[DocumentRow]:
        """Every document in stored order, with its passage count."""
        snapshot = self.snapshot()
        counts = snapshot.chunk_counts()
        return [DocumentRow(document, counts[doc_id]) for doc_id, document in snapshot.documents.items()]

    def document(self, doc_id: str) -> Document | None:
        """A stored document by id (only stored ones: an id is never a path)."""
        return self.snapshot().documents.get(doc_id)

    def stats(self) -> LibraryStats:
        snapshot = self.snapshot()
        settings = snapshot.settings
        return LibraryStats(
            documents=len(snapshot.documents),
            chunks=len(snapshot.chunks),
            characters=sum(len(d.text) for d in snapshot.documents.values()),
            model=settings.model,
            dimension=settings.dimension,
            chunk_size=settings.chunk_size,
            chunk_overlap=settings.chunk_overlap,
            disk_bytes=self.store.disk_bytes(),
            generation=snapshot.generation,
            location=self.store.location,
        )

    def warm_up(self) -> None:
        """Build the seed library if there is none and load the model now, not in a first question."""
        self.snapshot()
        self.embedder.encode_queries(["预热"])

    def sibling(self, kb_dir: KbLocation) -> Wendao:
        """Another knowledge base with this one's model (already loaded) and settings."""
        return Wendao(
            kb_dir=kb_dir,
            model=self._model_name,
            chunking=self._chunking,
            fusion=self.fusion,
            answering=self.answering,
            embedder=self._embedder,
            allow_network=self._allow_network,
            model_display=self._model_display,
            device=self._device,
        )

    # -- pages of PDFs and images -----------------------------------------------------------
    def page_layout(self, doc_id: str) -> list[Page] | None:
        """Where each character of a PDF or image document stands on its page (None: no pages)."""
        snapshot = self.snapshot()
        document = snapshot.documents.get(doc_id)
        if document is None or not document.pages:
            return None
        with self._lock:
            if self._layouts is None or self._layouts.generation != snapshot.generation:
                self._layouts = PageLayouts(snapshot.generation, snapshot.layout_line)
            layouts = self._layouts
        return layouts.get(document)

    def original(self, doc_id: str) -> bytes | None:
        """The stored file of a PDF or image document, to render its pages (None: not stored)."""
        document = self.snapshot().documents.get(doc_id)
        return read_original(self.store.root, document.sha256) if document is not None and document.pages else None

    # -- library ---------------------------------------------------------------------------
    def ingest(
        self,
        paths: list[Path],
        progress: ProgressCallback | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        pages: PageOptions | None = None,
    ) -> IngestReport:
        return self.ingestor().ingest_paths(paths, progress, max_bytes=max_bytes, pages=pages)

    def remove(self, doc_ids: list[str]) -> IngestReport:
        return self.ingestor().remove(doc_ids)

    def reindex(self, progress: ProgressCallback | None = None) -> IngestReport:
        return self.ingestor().reindex(progress)

    def copy_to(self, target: str | Path, progress: ProgressCallback | None = None) -> tuple[int, int]:
        """Copy this knowledge base into a new one at ``target`` (another folder, Milvus, Milvus
        Lite) without re-embedding; returns (documents, chunks) copied."""
        migrate(self.store)
        return copy_knowledge_base(self.store, open_store(kb_location(target)), progress)

    def compact(self) -> CompactReport:
        """Merge the knowledge base's segments, dropping removed chunks."""
        migrate(self.store)
        return self.store.compact()


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
