"""Query and passage embeddings through a sentence-transformers model.

The e5 family needs "query: " / "passage: " prefixes; they live in the model's prompts, so this
wrapper only chooses ``encode_query`` or ``encode_document`` and fixes the output format.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class Embedder:
    """A loaded model and the name it was resolved from (recorded in the index manifest)."""

    name: str
    model: Any  # sentence_transformers.SentenceTransformer
    batch_size: int = 32

    @property
    def dimension(self) -> int:
        return int(self.model.get_sentence_embedding_dimension())

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        return self._as_matrix(self.model.encode_query(texts, batch_size=self.batch_size, normalize_embeddings=True))

    def encode_documents(self, texts: list[str], progress: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self.model.encode_document(
            texts, batch_size=self.batch_size, normalize_embeddings=True, show_progress_bar=progress
        )
        return self._as_matrix(vectors)

    @staticmethod
    def _as_matrix(vectors) -> np.ndarray:
        return np.ascontiguousarray(np.asarray(vectors, dtype=np.float32).reshape(len(vectors), -1))


def load_embedder(name: str | None = None, *, allow_network: bool = False) -> Embedder:
    """Resolve and load a model by name or folder (see ``index.model``)."""
    from index.model import DEFAULT_MODEL, load_model

    name = name or DEFAULT_MODEL
    return Embedder(name=name, model=load_model(name, allow_network=allow_network))
