"""The words of a question that carry its meaning, weighted by how rare they are in Chinese.

Weights come from jieba's dictionary frequencies (a general background model), not from the
knowledge base: a question word that appears nowhere in the documents (红烧肉, 股价) must count
*against* an answer, while corpus IDF would give it weight zero and hide it. Question words
(什么, 多少, 哪些) and function words carry no weight at all.
"""
from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass
from functools import lru_cache

# Interrogatives, function words and fillers of questions (folded, i.e. Simplified).
STOPWORDS = frozenset(
    """
    的 地 得 了 着 过 是 在 有 和 与 及 或 并 而 吗 呢 吧 啊 呀 么 嘛 哦 被 把 对 从 到 给 让 向 为 以 于 由
    什么 啥 多少 哪 哪些 哪个 哪里 哪儿 哪家 哪所 哪位 哪种 哪年 哪一年 哪天 哪一天 怎么 怎样 怎么样 如何 为什么 为何
    几 几个 几家 几项 几次 几年 谁 是否 是不是 有没有 能否 可以 能 会 要 想 还 都 也 就 又 才 再 很 最 更
    这 那 这个 那个 这些 那些 其 此 该 一个 一 个 我 你 他 她 它 我们 你们 他们 请问 大概 大约 一般 一下 呢
    叫 叫做 称为 指 属于 目前 现在 主要 具体 分别 哪些方面 多大 多久 多长 多高 什么时候 时候
    """.split()
)
_WORD = re.compile(r"\w")
_MAX_WEIGHT = 14.0
_MIN_WEIGHT = 2.0


@lru_cache(maxsize=1)
def _dictionary():
    """jieba's tokenizer, initialised once (about a second: it reads its prefix dictionary).
    jieba imports ``pkg_resources``, whose deprecation warning would print above every answer."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
        import jieba

    jieba.setLogLevel(60)
    jieba.initialize()
    return jieba.dt


def word_weight(word: str) -> float:
    """Information content -log p(word) under jieba's frequencies, clipped to a sane band."""
    dictionary = _dictionary()
    frequency = dictionary.FREQ.get(word, 0)
    return min(_MAX_WEIGHT, max(_MIN_WEIGHT, math.log(dictionary.total / (frequency + 1))))


@dataclass(frozen=True)
class QueryTerms:
    """Content words of a question (folded) and their weights."""

    weights: dict[str, float]

    @property
    def total(self) -> float:
        return sum(self.weights.values())

    def coverage(self, folded_text: str) -> float:
        """Weighted share of the question's words that occur in ``folded_text``, in [0, 1]."""
        total = self.total
        if total == 0:
            return 0.0
        return sum(w for word, w in self.weights.items() if word in folded_text) / total


@lru_cache(maxsize=4096)
def query_terms(folded_question: str) -> QueryTerms:
    """Content words of a folded question (``QueryPlan.terms``): segmented after folding, so
    職業 and 职业 are one word."""
    dictionary = _dictionary()
    weights: dict[str, float] = {}
    for word in dictionary.cut(folded_question, HMM=True):
        word = word.strip()
        if word and word not in STOPWORDS and _WORD.search(word):
            weights[word] = word_weight(word)
    return QueryTerms(weights)
