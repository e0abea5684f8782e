"""The dense index: HNSW candidates, exact cosines from the stored vectors, persistence."""
from __future__ import annotations

import gc
from pathlib import Path

import numpy as np

from index.dense import DenseIndex


def _unit_vectors(count: int, dimension: int, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(count, dimension)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_search_finds_the_exact_nearest_and_scores_are_exact_cosines():
    vectors = _unit_vectors(4000, 48)
    index = DenseIndex.build(vectors, 48)
    queries = _unit_vectors(20, 48, seed=1)
    recall = []
    for query in queries:
        scores, rows = index.search(query, 100)
        exact = np.argsort(-(vectors @ query))[:100]
        recall.append(len(set(rows.tolist()) & set(exact.tolist())) / 100)
        assert np.all(np.diff(scores) <= 1e-6), "best first"
        np.testing.assert_allclose(index.scores(query, rows), vectors[rows] @ query, atol=1e-5)
    assert np.mean(recall) >= 0.97, recall


def test_vectors_survive_save_load_and_outlive_the_index_object(tmp_path: Path):
    vectors = _unit_vectors(500, 16)
    DenseIndex.build(vectors, 16).save(tmp_path / "dense.faiss")
    loaded = DenseIndex.load(tmp_path / "dense.faiss")
    view = loaded.vectors
    assert view.shape == (500, 16) and not view.flags.writeable
    del loaded
    gc.collect()
    filler = [np.ones(1 << 20) for _ in range(16)]  # reuse freed memory, if it had been freed
    np.testing.assert_array_equal(view, vectors)
    assert len(filler) == 16


def test_empty_index_answers_nothing():
    index = DenseIndex.build(np.zeros((0, 8), dtype=np.float32), 8)
    scores, rows = index.search(np.ones(8, dtype=np.float32), 10)
    assert index.size == 0 and len(scores) == len(rows) == 0
    assert index.vectors.shape == (0, 8)
