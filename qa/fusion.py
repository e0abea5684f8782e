"""Fusion of dense and lexical chunk scores into one ranking.

The candidates are the union of each retriever's top ``width`` chunks, and both scores are
known exactly for every candidate, so fusion is a function of two score vectors over the pool.
``benchmarks/fusion.py`` replays every method here on the shared dev sets; the default in
``FusionSettings`` is the one that measured best there (see the README).
"""
from __future__ import annotations

import numpy as np

RRF_K = 60


def _minmax(values: np.ndarray) -> np.ndarray:
    low, high = float(values.min()), float(values.max())
    if high - low < 1e-9:
        return np.zeros_like(values)
    return (values - low) / (high - low)


def _zscore(values: np.ndarray) -> np.ndarray:
    std = float(values.std())
    if std < 1e-9:
        return np.zeros_like(values)
    return (values - float(values.mean())) / std


def _max_scaled(values: np.ndarray) -> np.ndarray:
    """BM25's theoretical minimum is 0: scale by the maximum only, keeping absolute gaps."""
    high = float(values.max())
    return values / high if high > 1e-9 else np.zeros_like(values)


def _rrf(values: np.ndarray) -> np.ndarray:
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[np.argsort(-values, kind="stable")] = np.arange(1, len(values) + 1)
    return 1.0 / (RRF_K + ranks)


def _convex(normalise):
    def fused(weight: float, dense: np.ndarray, lexical: np.ndarray) -> np.ndarray:
        return weight * normalise(dense) + (1 - weight) * normalise(lexical)

    return fused


def _tmm(weight: float, dense: np.ndarray, lexical: np.ndarray) -> np.ndarray:
    return weight * _minmax(dense) + (1 - weight) * _max_scaled(lexical)


DENSE_FLOOR = 0.75  # e5 cosines of unrelated Chinese texts sit near here


def _fixed(weight: float, dense: np.ndarray, lexical: np.ndarray) -> np.ndarray:
    """Cosine is comparable across queries, so it keeps its absolute scale (a flat dense list
    stays flat); BM25 is not, so it is scaled by the query's best score."""
    return weight * (dense - DENSE_FLOOR) / (1 - DENSE_FLOOR) + (1 - weight) * _max_scaled(lexical)


FUSIONS = {
    "lexical": lambda weight, dense, lexical: lexical,
    "dense": lambda weight, dense, lexical: dense,
    "minmax": _convex(_minmax),
    "tmm": _tmm,
    "fixed": _fixed,
    "zscore": _convex(_zscore),
    "rrf": _convex(_rrf),
}


def top_positions(values: np.ndarray, width: int, positive: bool = False) -> np.ndarray:
    """Indices of the ``width`` largest values (only positive ones when asked)."""
    width = min(width, len(values))
    if width <= 0:
        return np.zeros(0, dtype=np.int64)
    top = np.argpartition(-values, width - 1)[:width]
    return top[values[top] > 0] if positive else top


def candidates(dense: np.ndarray | None, lexical: np.ndarray | None, width: int) -> np.ndarray:
    """Union of both retrievers' top ``width`` over all-chunk score vectors (lexical: only chunks
    sharing a query token). The benchmark's exact replay of the retriever's candidate pool."""
    parts = []
    if dense is not None:
        parts.append(top_positions(dense, width))
    if lexical is not None:
        parts.append(top_positions(lexical, width, positive=True))
    return np.union1d(*parts).astype(np.int64) if len(parts) == 2 else parts[0].astype(np.int64)


def fuse(method: str, weight: float, dense: np.ndarray | None, lexical: np.ndarray | None) -> np.ndarray:
    """Fused scores of a candidate pool from its two score vectors; ``weight`` is dense's.

    In a single mode (or when one side is missing) the other side's scores are returned as they
    are, so a lexical search ranks by BM25 and a dense search by cosine.
    """
    if method == "lexical" or dense is None:
        return lexical.astype(np.float64)
    if method == "dense" or lexical is None:
        return dense.astype(np.float64)
    return FUSIONS[method](weight, dense.astype(np.float64), lexical.astype(np.float64))
