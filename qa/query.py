"""A question prepared once and carried through retrieval, answering and highlighting.

Everything derived from the question's text (its bounded form, the folded form used for every
match, the BM25 tokens, the weighted content words, the kind of answer it asks for, the grams
that highlight it, the embedding) is computed here, once per question, and read by every later
stage: none of them re-folds or re-segments the question.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from corpus.errors import WendaoError
from corpus.folding import fold
from index.lexical import tokenize_folded
from qa.terms import STOPWORDS, QueryTerms, query_terms

MAX_QUERY_CHARS = 2000  # a pasted page is cut to this, not refused
HIGHLIGHT_GRAM = 2  # question words are highlighted by their character bigrams (and whole ASCII words)

_NUMBER_QUESTION = re.compile(r"多少|几[个家项所人名年次倍万亿天]|比例|比率|占比|百分之|多大|多长|多高|数量|规模|金额|率是")
_TIME_QUESTION = re.compile(r"哪一?年|何时|什么时候|哪一?天|日期|时间|几月|多久|多长时间")
_HIGHLIGHT_RUNS = re.compile(r"[\u4e00-\u9fff]+|[a-z0-9]+")


class QueryError(WendaoError, ValueError):
    """A query that cannot be searched (empty, bad k or mode); the message says why."""


def normalise_query(query: str | None) -> str:
    """Strip and bound the query; very long queries are cut, not rejected, so pasting works."""
    text = (query or "").strip()
    if not text:
        raise QueryError("the question is empty: type a question or keywords")
    return text[:MAX_QUERY_CHARS]


@dataclass
class QueryPlan:
    """One question, prepared once. ``text`` is what the user typed (bounded), shown and cited
    as it is; ``folded`` (Simplified, half-width, lower case, same length) is what is matched."""

    text: str
    folded: str
    tokens: list[str]  # BM25 tokens of the folded question, question words dropped
    wants_number: bool  # 多少 / 几个 / 比例 …: the answer should hold a quantity
    wants_time: bool  # 哪一年 / 何时 …: the answer should hold a date or a duration
    vector: np.ndarray | None = None  # the e5 query embedding, filled in when a mode needs it
    dense_weight: float | None = None  # the dense share hybrid fusion gave it (set by the search)
    timings_ms: dict[str, float] = field(default_factory=dict)

    @cached_property
    def terms(self) -> QueryTerms:
        """Content words with their rarity weights (jieba; only answering needs them)."""
        return query_terms(self.folded)

    @cached_property
    def highlight_grams(self) -> tuple[str, ...]:
        """What marks the question in a passage: CJK bigrams of each run, whole ASCII words."""
        grams: list[str] = []
        for run in _HIGHLIGHT_RUNS.findall(self.folded):
            if run.isascii():
                grams.append(run)
            elif len(run) <= HIGHLIGHT_GRAM:
                if len(run) == HIGHLIGHT_GRAM:
                    grams.append(run)
            else:
                grams += [run[i : i + HIGHLIGHT_GRAM] for i in range(len(run) - 1)]
        return tuple(dict.fromkeys(grams))

    def term_spans(self, folded_text: str) -> list[tuple[int, int]]:
        """Where the question's words occur in a folded text; folding keeps lengths, so these
        are offsets into the original text too."""
        spans = [(m.start(), m.end()) for gram in self.highlight_grams for m in re.finditer(re.escape(gram), folded_text)]
        return merge_spans(spans)


def plan_query(query: str | None) -> QueryPlan:
    """Prepare a question (raises QueryError when it is empty)."""
    text = normalise_query(query)
    started = time.perf_counter()
    folded = fold(text)
    plan = QueryPlan(
        text=text,
        folded=folded,
        tokens=[t for t in tokenize_folded(folded) if t not in STOPWORDS],  # 什么/多少/的 only add noise
        wants_number=bool(_NUMBER_QUESTION.search(folded)),
        wants_time=bool(_TIME_QUESTION.search(folded)),
    )
    plan.timings_ms["fold"] = round((time.perf_counter() - started) * 1000, 3)
    return plan


def merge_spans(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted, with overlapping or touching spans joined."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged
