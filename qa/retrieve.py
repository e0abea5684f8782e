"""Hybrid retrieval: BM25 over folded text + dense e5 vectors, fused per query.

A chunk's dense score is the cosine of its best sentence (one vector per sentence unit). Fusion
is a convex combination of per-query z-scored scores over the union of both candidate lists:
rank fusion (RRF) throws away how *confident* each retriever is and falls below BM25 alone on
the span sets and the bundled corpus. The dense weight grows for short keyword queries, where
a handful of character bigrams cannot tell topically similar pages apart. Method and weights
were chosen on the shared dev sets with ``benchmarks/fusion.py`` (figures in the README).
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from corpus.folding import fold
from corpus.records import Chunk, Document
from index.backend import SearchView
from index.embedder import Embedder
from qa.fusion import fuse
from qa.query import QueryError, QueryPlan

MODES = ("hybrid", "dense", "lexical")
MAX_K = 1000  # results per query; more is never useful and costs memory
UNITS_PER_CANDIDATE = 4  # sentence vectors fetched per dense candidate chunk wanted
# Hybrid search runs BM25 here while the dense side runs on the caller's thread: both are
# compiled code and reads that release the GIL, so on two cores a query takes the longer of
# the two instead of their sum. One worker: concurrent askers queue for it, not oversubscribe.
_LEXICAL_WORKER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wendao-bm25")


@dataclass(frozen=True)
class FusionSettings:
    """How hybrid mode fuses the two retrievers (method names: ``qa.fusion.FUSIONS``).

    The dense weight is ``short_query_weight`` for queries of at most ``short_chars``
    characters, ``dense_weight`` from ``long_chars`` on, and linear in between.
    """

    method: str = "zscore"
    dense_weight: float = 0.5
    short_query_weight: float = 0.9
    short_chars: int = 12
    long_chars: int = 24
    candidates: int = 100

    def weight_for(self, query: str) -> float:
        length = len(query.strip())
        share = min(1.0, max(0.0, (length - self.short_chars) / max(1, self.long_chars - self.short_chars)))
        return self.short_query_weight + (self.dense_weight - self.short_query_weight) * share


@dataclass
class SearchHit:
    rank: int
    position: int  # the chunk's id in its view (a snapshot position locally, a chunk key in Milvus)
    chunk: Chunk
    document: Document
    score: float
    dense: float | None  # cosine of the chunk's best sentence
    lexical: float | None
    sentence_dense: list[float] | None = None  # cosine of each of chunk.sentences

    @cached_property
    def folded_context(self) -> str:
        """The document title and heading path, folded: what every sentence of the passage is about."""
        return fold(f"{self.document.title}\n{self.chunk.heading}")


def check_k(k: object) -> int:
    """How many results to return, from an untrusted caller: a whole number in 1..MAX_K."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= int(k) <= MAX_K:
        raise QueryError(f"k must be a whole number from 1 to {MAX_K}, got {k!r}")
    return int(k)


class Retriever:
    def __init__(self, snapshot: SearchView, embedder: Embedder | None, fusion: FusionSettings | None = None):
        self.snapshot = snapshot
        self.embedder = embedder
        self.fusion = fusion or FusionSettings()

    def embed(self, plans: list[QueryPlan]) -> None:
        """Give every plan without one its query vector: one batched call for many questions."""
        missing = [plan for plan in plans if plan.vector is None]
        if not missing:
            return
        started = time.perf_counter()
        for plan, vector in zip(missing, self.embedder.encode_queries([p.folded for p in missing])):
            plan.vector = vector
        if len(missing) == 1:
            missing[0].timings_ms["embed"] = _ms_since(started)

    def ensure_sentence_scores(self, plan: QueryPlan, hits: list[SearchHit]) -> None:
        """Sentence cosines for hits ranked without them (lexical mode): answering and abstention
        are calibrated on both signals, so a lexical answer still needs them (one query embedding;
        the sentence vectors are stored)."""
        lacking = [hit for hit in hits if hit.sentence_dense is None]
        if not lacking:
            return
        self.embed([plan])
        for hit in lacking:
            hit.sentence_dense = self.snapshot.unit_scores(plan.vector, np.array([hit.position]))[0].tolist()
            hit.dense = max(hit.sentence_dense)

    def search(
        self,
        plan: QueryPlan,
        mode: str = "hybrid",
        k: int = 10,
        doc_ids: set[str] | None = None,
    ) -> list[SearchHit]:
        if mode not in MODES:
            raise QueryError(f"unknown mode {mode!r}: choose one of {', '.join(MODES)}")
        check_k(k)
        if mode != "lexical":
            self.embed([plan])
        snapshot = self.snapshot
        if snapshot.is_empty(doc_ids):
            return []
        width = max(self.fusion.candidates, k)

        def run_lexical():
            started = time.perf_counter()
            result = snapshot.lexical(plan.tokens, width, doc_ids or None)
            return result, _ms_since(started)

        lexical_result = lexical_future = None
        if mode == "hybrid" and getattr(snapshot, "concurrent_search", False):
            lexical_future = _LEXICAL_WORKER.submit(run_lexical)
        elif mode != "dense":
            lexical_result, plan.timings_ms["lexical"] = run_lexical()

        started = time.perf_counter()
        dense_pool = np.zeros(0, dtype=np.int64)
        if mode != "lexical":
            dense_pool = snapshot.dense_search(plan.vector, width, doc_ids or None)
        dense_ms = _ms_since(started)
        if lexical_future is not None:
            lexical_result, plan.timings_ms["lexical"] = lexical_future.result()
        lexical_pool = lexical_result.top if lexical_result is not None else np.zeros(0, dtype=np.int64)
        started = time.perf_counter()
        pool = np.union1d(dense_pool, lexical_pool).astype(np.int64)
        unit_scores = chunk_dense = None
        if mode != "lexical" and len(pool):
            # Exact cosines of every sentence of every candidate (lexical ones included).
            unit_scores, offsets = snapshot.unit_scores(plan.vector, pool)
            chunk_dense = np.maximum.reduceat(unit_scores, offsets)
        plan.timings_ms["dense"] = round(dense_ms + _ms_since(started), 3)

        started = time.perf_counter()
        lexical = None
        if lexical_result is not None:  # BM25 of the dense candidates too (0 without a query term)
            lexical = lexical_result.scores_of(pool)
            plan.timings_ms["lexical"] += _ms_since(started)

        started = time.perf_counter()
        method = mode if mode != "hybrid" else self.fusion.method
        plan.dense_weight = self.fusion.weight_for(plan.text) if mode == "hybrid" else None
        fused = fuse(method, plan.dense_weight or 0.0, chunk_dense, lexical)
        best = np.argsort(-fused, kind="stable")[:k]
        hits = []
        best_chunks = snapshot.chunks_at(pool[best])
        for rank, j in enumerate(best, 1):
            position = int(pool[j])
            chunk = best_chunks[rank - 1]
            sentences = None
            if unit_scores is not None:
                start = int(offsets[j])
                end = int(offsets[j + 1]) if j + 1 < len(offsets) else len(unit_scores)
                sentences = unit_scores[start:end].tolist()
            hits.append(
                SearchHit(
                    rank=rank,
                    position=position,
                    chunk=chunk,
                    document=snapshot.documents[chunk.doc_id],
                    score=float(fused[j]),
                    dense=None if chunk_dense is None else float(chunk_dense[j]),
                    lexical=None if lexical is None else float(lexical[j]),
                    sentence_dense=sentences,
                )
            )
        plan.timings_ms["fusion"] = _ms_since(started)
        return hits


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
