"""Extractive answers: pick the 1–3 sentences of the top passages that answer the question.

There is no generator: every answer sentence is a verbatim span of a document, so each one can be
cited to its passage and exact character offsets. Sentences are scored by the share of the
question's words they hold (weighted by rarity in Chinese, matched after folding), their own
cosine to the question, their passage's coverage and rank, and whether they carry the number or
date the question asks for. Weights and the abstention threshold were measured with
``benchmarks/answers.py`` on the shared dev sets plus off-topic questions.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from corpus.sentences import MAX_SENTENCE_CHARS, cap_span
from qa.query import QueryPlan
from qa.retrieve import SearchHit

_HAS_NUMBER = re.compile(r"\d|[一二三四五六七八九十百千万亿两]+[个家项所名人次倍%％]")
# A date, or a duration (1个月, 三年, 两周): folded text, so 個 is already 个.
_HAS_TIME = re.compile(
    r"(19|20)\d\d|[一二〇零]{4}年|\d+月|\d+日|[\d一二三四五六七八九十两半]+\s*(个)?\s*(年|月|周|星期|天|小时|学时|课时)"
)


@dataclass(frozen=True)
class AnswerSettings:
    """Answer extraction and abstention; values measured with ``benchmarks/answers.py``."""

    passages: int = 5
    max_sentences: int = 3
    follow_ratio: float = 0.85  # a further sentence must score this share of the best one (0.75: +0.02 answer hit, +0.4 sentences)
    min_chars: int = 6
    max_sentence_chars: int = MAX_SENTENCE_CHARS  # longer units (an index built with another cap) are cut
    sentence_words: float = 0.4  # share of the question's words in the sentence (and its headings)
    sentence_meaning: float = 0.15  # the sentence's own cosine to the question
    passage_words: float = 0.1  # share of the question's words in the whole passage
    missing_type_penalty: float = 0.8  # asked for a number/time, sentence has none
    dense_band: tuple[float, float] = (0.83, 0.94)  # best-sentence cosines of off- and on-topic questions
    dense_share: float = 0.7
    abstain_below: float = 0.41


@dataclass
class Sentence:
    hit: SearchHit
    start: int  # offsets into the document's original text
    end: int
    text: str
    folded: str  # ``text`` folded for matching (a slice of the chunk's folded text: same offsets)
    dense: float | None = None  # cosine between the question and this sentence's vector
    score: float = 0.0
    coverage: float = 0.0


@dataclass
class Citation:
    n: int
    hit: SearchHit
    spans: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class Answer:
    """The answer to one planned question; ``threshold`` is the confidence it was judged against."""

    plan: QueryPlan
    text: str
    abstained: bool
    confidence: float
    threshold: float
    citations: list[Citation]
    sentences: list[Sentence]
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def question(self) -> str:
        return self.plan.text


def split_sentences(hit: SearchHit, max_chars: int = MAX_SENTENCE_CHARS) -> list[Sentence]:
    """The passage's sentence units (``Chunk.sentences``), with their cosine when known.

    A unit longer than ``max_chars`` is cut into bounded pieces that share its cosine, so an
    answer never quotes a whole unpunctuated page whatever the index holds.
    """
    text, folded, base = hit.chunk.text, hit.chunk.folded, hit.chunk.start
    cosines = hit.sentence_dense or [None] * len(hit.chunk.sentences)
    sentences = []
    for (start, end), cosine in zip(hit.chunk.sentences, cosines):
        local = (start - base, end - base)
        pieces = [local] if end - start <= max_chars else cap_span(text, *local, max_chars)
        for a, b in pieces:  # offsets in the chunk text
            sentences.append(Sentence(hit, base + a, base + b, text[a:b], folded[a:b], dense=cosine))
    return sentences


def score_sentences(plan: QueryPlan, hits: list[SearchHit], settings: AnswerSettings) -> list[Sentence]:
    """Sentences of the top passages, best first.

    A sentence is read in its context: question words found in the document title or the
    heading path count as covered for every sentence under them (衢州…方案 is the topic of the
    whole passage), so what decides between sentences is the rest of the question (颁布 → the
    line with the date). The passage's own coverage and rank score help; a question asking for
    a quantity or a time prefers sentences that contain one. Title and heading lines are
    labels, not answers, and are skipped.
    """
    terms = plan.terms
    top_score = max((h.score for h in hits), default=1.0) or 1.0
    scored = []
    for hit in hits[: settings.passages]:
        passage_weight = max(hit.score, 0.0) / top_score
        context = hit.folded_context
        labels = {_compact(hit.document.title), *(_compact(h) for h in hit.chunk.heading.split(" > "))}
        passage = terms.coverage(f"{context}\n{hit.chunk.folded}")
        for sentence in split_sentences(hit, settings.max_sentence_chars):
            if len(sentence.text) < settings.min_chars or _compact(sentence.text) in labels:
                continue
            folded = sentence.folded
            sentence.coverage = terms.coverage(f"{context}\n{folded}")
            meaning = _band(sentence.dense, settings.dense_band) if sentence.dense is not None else sentence.coverage
            score = (
                settings.sentence_words * sentence.coverage
                + settings.sentence_meaning * meaning
                + settings.passage_words * passage
                + (1 - settings.sentence_words - settings.sentence_meaning - settings.passage_words) * passage_weight
            )
            if plan.wants_number and not _HAS_NUMBER.search(folded):
                score *= settings.missing_type_penalty
            if plan.wants_time and not _HAS_TIME.search(folded):
                score *= settings.missing_type_penalty
            sentence.score = score
            scored.append(sentence)
    scored.sort(key=lambda s: -s.score)
    return scored


def _compact(text: str) -> str:
    return "".join(text.split())


def passage_confidence(plan: QueryPlan, hits: list[SearchHit], settings: AnswerSettings) -> float:
    """How surely the best passages answer the question, in [0, 1].

    Two signals that fail differently: the dense cosine of the best passage (e5 places related
    query/passage pairs in roughly 0.78–0.92, so that band is mapped onto [0, 1]) and the share
    of the question's words, weighted by their rarity in Chinese, found in the best passage.
    """
    if not hits:
        return 0.0
    top = hits[: settings.passages]
    coverage = max(plan.terms.coverage(f"{h.folded_context}\n{h.chunk.folded}") for h in top)
    dense = max((h.dense for h in top if h.dense is not None), default=None)
    if dense is None:
        return coverage
    return settings.dense_share * _band(dense, settings.dense_band) + (1 - settings.dense_share) * coverage


def _band(cosine: float, band: tuple[float, float]) -> float:
    """e5 cosines live in a narrow band; map it onto [0, 1]."""
    low, high = band
    return float(np.clip((cosine - low) / (high - low), 0.0, 1.0))


def build_answer(plan: QueryPlan, hits: list[SearchHit], settings: AnswerSettings | None = None) -> Answer:
    settings = settings or AnswerSettings()
    confidence = round(passage_confidence(plan, hits, settings), 4)
    ranked = score_sentences(plan, hits, settings)
    if not ranked or confidence < settings.abstain_below:
        return Answer(plan, "", True, confidence, settings.abstain_below, [], [])
    chosen = [ranked[0]]
    for sentence in ranked[1:]:
        if len(chosen) == settings.max_sentences or sentence.score < settings.follow_ratio * ranked[0].score:
            break
        if any(_overlaps(sentence, c) or _repeats(sentence, c) for c in chosen):
            continue
        chosen.append(sentence)
    # Keep document order inside one passage so the answer reads naturally.
    chosen.sort(key=lambda s: (hits.index(s.hit), s.start))
    citations: dict[str, Citation] = {}
    parts = []
    for sentence in chosen:
        key = sentence.hit.chunk.chunk_id
        if key not in citations:
            citations[key] = Citation(n=len(citations) + 1, hit=sentence.hit)
        citations[key].spans.append((sentence.start, sentence.end))
        parts.append(f"{sentence.text}[{citations[key].n}]")
    return Answer(plan, "".join(parts), False, confidence, settings.abstain_below, list(citations.values()), chosen)


def _repeats(a: Sentence, b: Sentence) -> bool:
    """One says no more than the other (the same date line quoted in two places)."""
    x, y = _compact(a.folded), _compact(b.folded)
    return x in y or y in x


def _overlaps(a: Sentence, b: Sentence) -> bool:
    return a.hit.chunk.doc_id == b.hit.chunk.doc_id and a.start < b.end and b.start < a.end
