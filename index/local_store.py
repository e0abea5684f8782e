"""The local backend of ``index.backend``: the segmented store of ``index.segments`` as it is,
plus the few read methods the retriever asks every backend for (ids are snapshot positions)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from index.segments import SEGMENTS, SegmentStore, Snapshot


class LocalLexical:
    """BM25 of every live chunk, computed once per query (the local index scores them all)."""

    def __init__(self, scores: np.ndarray, top: np.ndarray):
        self._scores = scores
        self.top = top

    def scores_of(self, ids: np.ndarray) -> np.ndarray:
        return self._scores[np.asarray(ids, dtype=np.int64)]


def top_ids(scores: np.ndarray, k: int) -> np.ndarray:
    """Ids of the ``k`` best scores that are positive, best first (the set ``qa.fusion.top_positions``
    picks, so the local ranking is what it was before backends)."""
    k = min(k, len(scores))
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    candidates = None
    step = 16
    if len(scores) >= 64 * step * k:
        # a threshold from every 16th score that about 2k scores reach: a partition of 1/16th
        # of the scores and one comparison instead of a partition of a million (5 ms)
        sample = scores[::step]
        rank = max(1, 2 * k // step)
        threshold = np.partition(sample, len(sample) - rank)[len(sample) - rank]
        if threshold > 0:
            candidates = np.flatnonzero(scores >= threshold)
            if len(candidates) < k:  # the sample misled: fall back to every positive score
                candidates = None
    if candidates is None:
        candidates = np.flatnonzero(scores > 0)
    if len(candidates) > k:
        candidates = candidates[np.argpartition(-scores[candidates], k - 1)[:k]]
    return candidates[np.argsort(-scores[candidates], kind="stable")]


class LocalView(Snapshot):
    """A snapshot of the segmented store with the ``SearchView`` methods."""

    _mask_for: tuple[frozenset, np.ndarray] | None = None
    concurrent_search = True  # BM25 state and the ANN indexes are each touched by one side only

    def _mask(self, doc_ids: set[str] | None) -> np.ndarray | None:
        if not doc_ids:
            return None
        key = frozenset(doc_ids)
        if self._mask_for is None or self._mask_for[0] != key:
            self._mask_for = (key, self.doc_mask(key))
        return self._mask_for[1]

    def is_empty(self, doc_ids: set[str] | None = None) -> bool:
        mask = self._mask(doc_ids)
        return not len(self.keys) or (mask is not None and not mask.any())

    def lexical(self, tokens: list[str], width: int, doc_ids: set[str] | None = None) -> LocalLexical:
        scores = self.lexical_scores(tokens)
        mask = self._mask(doc_ids)
        if mask is not None:
            scores = np.where(mask, scores, 0.0)
        return LocalLexical(scores, top_ids(scores, width))

    def dense_search(self, vector: np.ndarray, width: int, doc_ids: set[str] | None = None) -> np.ndarray:
        mask = self._mask(doc_ids)
        if mask is not None:  # the graph's nearest may all lie outside those documents
            return np.flatnonzero(mask)
        return self.dense_candidates(vector, width)

    def unit_vectors(self, ids: np.ndarray) -> np.ndarray:
        segments, rows, _ = self.unit_rows_of(ids)
        out = np.zeros((len(rows), self.settings.dimension), dtype=np.float32)
        for number in np.unique(segments):
            mask = segments == number
            out[mask] = self.segments[number].vectors.rows(rows[mask])
        return out

    def ids_of(self, doc_id: str) -> np.ndarray:
        keys = self.records.chunk_keys_of([doc_id])
        at = np.searchsorted(self.keys, keys)
        return at[(at < len(self.keys)) & (self.keys[np.minimum(at, len(self.keys) - 1)] == keys)].astype(np.int64)

    def chunk_counts(self) -> dict[str, int]:
        return self.records.chunk_counts()

    def layout_line(self, doc_id: str) -> str | None:
        return self.records.layout_line(doc_id)


class LocalStore(SegmentStore):
    """A knowledge-base folder (the default backend)."""

    @property
    def location(self) -> str:
        return str(self.root)

    view = LocalView

    def unit_count(self) -> int:
        """Sentence units stored (tombstoned ones included: an upper bound; sizes the embedding cache)."""
        head = self.head()
        total = 0
        for name in head[1]["segments"] if head else []:
            try:
                total += int(np.load(self.root / SEGMENTS / name / "unit_counts.npy").sum())
            except OSError:
                continue
        return total

    def disk_bytes(self) -> int:
        return sum(p.stat().st_size for p in Path(self.root).rglob("*") if p.is_file())
