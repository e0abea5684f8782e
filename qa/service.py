"""One object that the CLI and the web app share: a knowledge base, its model, ask and search.

The model loads lazily (seconds) and once; the index snapshot is reloaded whenever another
process or thread has written a new generation, so questions keep working during an ingest.
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from platformdirs import user_data_dir

from corpus.chunking import CHUNKER_VERSION, ChunkSettings
from corpus.loaders import DEFAULT_MAX_BYTES
from corpus.pipeline import seed_paths
from index.embedder import Embedder, load_embedder
from index.ingest import EMBED_TEMPLATE, FOLD_VERSION, IngestReport, Ingestor, Progress
from index.lexical import TOKENIZER_VERSION
from index.model import DEFAULT_MODEL
from index.migrate import migrate
from index.segments import FORMAT_VERSION, SegmentStore, Snapshot
from index.store import KnowledgeBaseError
from qa.answer import Answer, AnswerSettings, build_answer
from qa.retrieve import FusionSettings, QueryPlan, Retriever, SearchHit, normalise_query
from qa.terms import query_terms

KB_ENV = "WENDAO_KB"


def default_kb_dir() -> Path:
    """The knowledge base used when none is named: $WENDAO_KB, else the user's data folder."""
    return Path(os.environ.get(KB_ENV) or Path(user_data_dir("wendao")) / "kb")


class Wendao:
    def __init__(
        self,
        kb_dir: Path | None = None,
        model: str | None = None,
        allow_network: bool = False,
        chunking: ChunkSettings | None = None,
        fusion: FusionSettings | None = None,
        answering: AnswerSettings | None = None,
        embedder: Embedder | None = None,
    ):
        self.kb_dir = Path(kb_dir) if kb_dir else default_kb_dir()
        self.store = SegmentStore(self.kb_dir)
        self._model_name = model
        self._allow_network = allow_network
        self.chunking = chunking or ChunkSettings()
        self.fusion = fusion or FusionSettings()
        self.answering = answering or AnswerSettings()
        self._embedder = embedder
        self._snapshot: Snapshot | None = None
        self._lock = threading.RLock()

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
    def embedder(self) -> Embedder:
        with self._lock:
            if self._embedder is None:
                self._embedder = load_embedder(self.model_name, allow_network=self._allow_network)
            return self._embedder

    def ingestor(self) -> Ingestor:
        return Ingestor(self.store, self.embedder, self.chunking)

    def ensure_built(self, progress: Progress | None = None) -> None:
        """With no knowledge base yet, build one from the bundled seed documents."""
        if not self.store.exists():
            with self._lock:
                if not self.store.exists():
                    self.ingestor().ingest_paths(seed_paths(), progress)

    def snapshot(self) -> Snapshot:
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

    def _check_compatible(self, snapshot: Snapshot) -> None:
        """Searching an index built with other folding, chunking or model would silently mismatch."""
        stored = snapshot.settings
        expected = replace(
            stored,
            model=self._model_name or stored.model,
            fold_version=FOLD_VERSION,
            tokenizer_version=TOKENIZER_VERSION,
            chunk_size=self.chunking.size,
            chunk_overlap=self.chunking.overlap,
            chunker_version=CHUNKER_VERSION,
            embed_template=EMBED_TEMPLATE,
            format_version=FORMAT_VERSION,
        )
        differences = stored.differences(expected)
        if differences:
            raise KnowledgeBaseError(
                f"{self.kb_dir} was built with other settings ({'; '.join(differences)}); "
                f"run `wendao reindex --kb {self.kb_dir}` to rebuild it"
            )

    def retriever(self) -> Retriever:
        return Retriever(self.snapshot(), self.embedder, self.fusion)

    # -- questions -------------------------------------------------------------------------
    def search(
        self, query: str, mode: str = "hybrid", k: int = 10, doc_ids: set[str] | None = None
    ) -> tuple[list[SearchHit], QueryPlan]:
        normalise_query(query)  # an empty query fails before the model is loaded
        retriever = self.retriever()
        plan = retriever.plan(query, need_vector=mode != "lexical")
        return retriever.search(plan, mode=mode, k=k, doc_ids=doc_ids), plan

    def load(self) -> float:
        """Load the index, the model and jieba's dictionary now; milliseconds it took.

        The first question of a process pays seconds for these; ``ask`` reports that as its
        own ``load`` timing, so the per-stage timings and ``total`` measure the question.
        """
        started = time.perf_counter()
        self.retriever()
        query_terms("预热")
        return _ms(started)

    def ask(self, question: str, mode: str = "hybrid") -> Answer:
        normalise_query(question)  # an empty query fails before anything is loaded
        loading = self.load()
        started = time.perf_counter()
        hits, plan = self.search(question, mode=mode, k=self.answering.passages)
        answer = self.answer_from(plan, hits)
        answer.timings_ms["total"] = _ms(started)
        if loading >= 100:
            answer.timings_ms["load"] = loading
        return answer

    def answer_from(self, plan: QueryPlan, hits: list[SearchHit]) -> Answer:
        """Answer a planned query from its ranked passages (used by ask and by evaluation)."""
        started = time.perf_counter()
        hits = hits[: self.answering.passages]
        if any(hit.dense is None for hit in hits):
            # Abstention is calibrated on both signals: a lexical-mode answer still needs the
            # passages' cosines (one query embedding; the passage vectors are stored).
            if plan.vector is None:
                plan.vector = self.embedder.encode_queries([plan.folded])[0]
            snapshot = self.snapshot()
            for hit in hits:
                hit.sentence_dense = snapshot.unit_scores(plan.vector, np.array([hit.position]))[0].tolist()
                hit.dense = max(hit.sentence_dense)
        answer = build_answer(plan.text, hits, self.answering)
        answer.timings_ms = {**plan.timings_ms, "answer": _ms(started)}
        return answer

    # -- library ---------------------------------------------------------------------------
    def ingest(
        self, paths: list[Path], progress: Progress | None = None, max_bytes: int = DEFAULT_MAX_BYTES
    ) -> IngestReport:
        return self.ingestor().ingest_paths(paths, progress, max_bytes=max_bytes)

    def remove(self, doc_ids: list[str]) -> IngestReport:
        return self.ingestor().remove(doc_ids)

    def reindex(self, progress: Progress | None = None) -> IngestReport:
        return self.ingestor().reindex(progress)

    def compact(self) -> int:
        """Merge the knowledge base's segments, dropping removed chunks; how many merges ran."""
        migrate(self.store)
        return self.store.compact()


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
