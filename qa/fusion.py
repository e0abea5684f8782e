"""Fusion of dense and lexical chunk scores into one ranking.

The candidates are the union of each retriever's top ``width`` chunks, and both scores are
known exactly for every candidate, so fusion is a function of two score vectors over the pool:
a convex combination of per-query z-scores. ``benchmarks/fusion.py`` compares it with other
methods (min-max, RRF, ...) on the shared dev sets; z-score measured best there (see the README).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

Fusion = Callable[[float, np.ndarray, np.ndarray], np.ndarray]  # (dense weight, dense, lexical)


def zscore(values: np.ndarray) -> np.ndarray:
    std = float(values.std())
    if std < 1e-9:
        return np.zeros_like(values)
    return (values - float(values.mean())) / std


def convex(normalise: Callable[[np.ndarray], np.ndarray]) -> Fusion:
    """``weight * normalise(dense) + (1 - weight) * normalise(lexical)``."""

    def fused(weight: float, dense: np.ndarray, lexical: np.ndarray) -> np.ndarray:
        return weight * normalise(dense) + (1 - weight) * normalise(lexical)

    return fused


FUSIONS: dict[str, Fusion] = {"zscore": convex(zscore)}


def top_positions(values: np.ndarray, width: int, positive: bool = False) -> np.ndarray:
    """Indices of the ``width`` largest values (only positive ones when asked)."""
    width = min(width, len(values))
    if width <= 0:
        return np.zeros(0, dtype=np.int64)
    top = np.argpartition(-values, width - 1)[:width]
    return top[values[top] > 0] if positive else top


def fuse(
    method: str,
    weight: float,
    dense: np.ndarray | None,
    lexical: np.ndarray | None,
    methods: Mapping[str, Fusion] = FUSIONS,
) -> np.ndarray:
    """Fused scores of a candidate pool from its two score vectors; ``weight`` is dense's.

    In a single mode (or when one side is missing) the other side's scores are returned as they
    are, so a lexical search ranks by BM25 and a dense search by cosine. ``methods`` lets the
    fusion benchmark replay methods the product does not use.
    """
    if method == "lexical" or dense is None:
        return lexical.astype(np.float64)
    if method == "dense" or lexical is None:
        return dense.astype(np.float64)
    return methods[method](weight, dense.astype(np.float64), lexical.astype(np.float64))
