"""Dense vector index: FAISS inner product over L2-normalised embeddings (= cosine)."""
from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np


class DenseIndex:
    """Exact search (IndexFlatIP): a laptop-sized knowledge base has at most ~10⁵ chunks, where
    exact search takes milliseconds and needs no training or tuning."""

    def __init__(self, index: faiss.Index):
        self._index = index

    @classmethod
    def build(cls, embeddings: np.ndarray, dimension: int) -> "DenseIndex":
        index = faiss.IndexFlatIP(dimension)
        if len(embeddings):
            index.add(np.ascontiguousarray(embeddings, dtype=np.float32))
        return cls(index)

    @property
    def size(self) -> int:
        return self._index.ntotal

    @property
    def dimension(self) -> int:
        return self._index.d

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, chunk positions) for one query vector."""
        k = min(k, self.size)
        if k == 0:
            return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64)
        scores, ids = self._index.search(np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32), k)
        return scores[0], ids[0]

    def vectors(self, positions: np.ndarray) -> np.ndarray:
        """Stored vectors of some chunks, to score fusion candidates found lexically."""
        return self._index.reconstruct_batch(np.asarray(positions, dtype=np.int64))

    def save(self, path: Path) -> None:
        faiss.write_index(self._index, str(path))

    @classmethod
    def load(cls, path: Path) -> "DenseIndex":
        return cls(faiss.read_index(str(path)))
