"""What ``fusion.py`` compares with the product: other fusion methods, lexical schemes and BM25
settings, and the exact replay of the retriever's candidate pool.

The product keeps only what measured best (z-score fusion in ``qa.fusion``, character unigrams
and bigrams in ``index.lexical``); the alternatives live here so they can be measured again.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import common  # noqa: F401  (puts the repository on sys.path)
import numpy as np

from corpus.folding import fold
from index.lexical import tokenize_folded
from qa.fusion import FUSIONS, Fusion, convex, top_positions

DENSE_FLOOR = 0.75  # e5 cosines of unrelated Chinese texts sit near here
RRF_K = 60


def minmax(values: np.ndarray) -> np.ndarray:
    low, high = float(values.min()), float(values.max())
    if high - low < 1e-9:
        return np.zeros_like(values)
    return (values - low) / (high - low)


def max_scaled(values: np.ndarray) -> np.ndarray:
    """BM25's theoretical minimum is 0: scale by the maximum only, keeping absolute gaps."""
    high = float(values.max())
    return values / high if high > 1e-9 else np.zeros_like(values)


def rrf(values: np.ndarray) -> np.ndarray:
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[np.argsort(-values, kind="stable")] = np.arange(1, len(values) + 1)
    return 1.0 / (RRF_K + ranks)


def tmm(weight: float, dense: np.ndarray, lexical: np.ndarray) -> np.ndarray:
    return weight * minmax(dense) + (1 - weight) * max_scaled(lexical)


def fixed(weight: float, dense: np.ndarray, lexical: np.ndarray) -> np.ndarray:
    """Cosine is comparable across queries, so it keeps its absolute scale (a flat dense list
    stays flat); BM25 is not, so it is scaled by the query's best score."""
    return weight * (dense - DENSE_FLOOR) / (1 - DENSE_FLOOR) + (1 - weight) * max_scaled(lexical)


METHODS: dict[str, Fusion] = {  # "lexical" and "dense" (either side alone) are measured too
    "minmax": convex(minmax),
    "tmm": tmm,
    "fixed": fixed,
    "zscore": FUSIONS["zscore"],
    "rrf": convex(rrf),
}


def candidates(dense: np.ndarray | None, lexical: np.ndarray | None, width: int) -> np.ndarray:
    """Union of both retrievers' top ``width`` over all-chunk score vectors (lexical: only chunks
    sharing a query token): the retriever's candidate pool, exactly."""
    parts = []
    if dense is not None:
        parts.append(top_positions(dense, width))
    if lexical is not None:
        parts.append(top_positions(lexical, width, positive=True))
    return np.union1d(*parts).astype(np.int64) if len(parts) == 2 else parts[0].astype(np.int64)


_CJK_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]{2,}")


def jieba_words(folded: str) -> list[str]:
    """jieba search-mode words (2+ characters) of CJK runs, marked so they never equal a gram."""
    import jieba

    words: list[str] = []
    for run in _CJK_RUN.findall(folded):
        words.extend("w:" + w for w in jieba.cut_for_search(run, HMM=False) if len(w) >= 2)
    return words


SCHEMES = {
    "uni+bi": tokenize_folded,  # the product's
    "uni+bi+jieba": lambda folded: tokenize_folded(folded) + jieba_words(folded),
}


@dataclass(frozen=True)
class LexicalVariant:
    """A lexical configuration to compare: ``scheme[/k1=..:b=..:stop:title]``."""

    scheme: str
    k1: float = 0.9
    b: float = 0.4
    stop: bool = False  # drop question words (什么, 多少, ...) from the query
    title: bool = False  # index each chunk with its document's title

    @classmethod
    def parse(cls, spec: str) -> "LexicalVariant":
        scheme, _, options = spec.partition("/")
        values: dict = {}
        for option in filter(None, options.split(":")):
            key, _, value = option.partition("=")
            values[key] = True if key in ("stop", "title") else float(value)
        return cls(scheme, **values)

    def tokens(self, folded: str) -> list[str]:
        return SCHEMES[self.scheme](folded)

    def query_tokens(self, question: str) -> list[str]:
        tokens = self.tokens(fold(question))
        if not self.stop:
            return tokens
        from qa.terms import STOPWORDS

        return [t for t in tokens if t not in STOPWORDS]
