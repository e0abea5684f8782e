"""Sentence spans of a chunk: the units the dense model embeds and answers are built from.

A question usually targets one sentence; embedding whole 300-character chunks dilutes it among
the chunk's other facts. Measured with ``benchmarks/fusion.py`` (dense MRR@10, chunk vector →
best sentence vector): DRCD 0.87 → 0.96, XQuAD 0.93 → 0.95, bundled corpus 0.59 → 0.78, DuReader
unchanged (0.72 → 0.71). Answers use the same spans, so every answer sentence has a vector.

A unit is at most ``MAX_SENTENCE_CHARS`` (200) characters: a longer sentence is cut at its
commas and colons, then 、, closing quotes, spaces, else between tokens (``corpus.bounded``), into balanced
pieces. 200 is above all but 0.5% of the sentences of the shared dev sets and the bundled pages
(p99 = 158; 5 of 507 seed sentences are longer, all comma-rich lists), so real sentences keep
their shape, while a page with no 。！？ no longer becomes one "sentence" that an answer would
quote whole: three answer sentences stay within 600 characters, two chunks' worth.
"""
from __future__ import annotations

import re

from corpus.bounded import CLAUSE_BREAKS, CLOSING_BREAKS, LIST_BREAKS, SPACE_BREAKS, bounded_spans

# A run up to sentence-final punctuation (or a line end), closing quotes kept with it.
_SENTENCE = re.compile(r"[^。！？!?；;\n]+[。！？!?；;]*[”’」』）)]*")
_WORD = re.compile(r"\w")
MIN_SENTENCE_CHARS = 4
MAX_SENTENCE_CHARS = 200
_BREAKS = (CLAUSE_BREAKS, LIST_BREAKS, CLOSING_BREAKS, SPACE_BREAKS)


def cap_span(text: str, start: int, end: int, limit: int = MAX_SENTENCE_CHARS) -> list[tuple[int, int]]:
    """``text[start:end]`` (stripped) as pieces of at most ``limit`` characters, cut at clause
    punctuation, 、, closing quotes or spaces where it has them; one piece when it already fits."""
    return bounded_spans(text, start, end, limit, _BREAKS)


def sentence_spans(text: str, start: int, end: int, max_chars: int = MAX_SENTENCE_CHARS) -> list[tuple[int, int]]:
    """Stripped sentences of ``text[start:end]`` as (start, end) offsets into ``text``.

    Pieces shorter than ``MIN_SENTENCE_CHARS`` (a stray "1." or "》") are not units of their own;
    a span with no sentence long enough is one unit as a whole (cut by ``cap_span`` if long).
    """
    spans = []
    for match in _SENTENCE.finditer(text, start, end):
        piece = match.group()
        stripped = piece.strip()
        if len(stripped) < MIN_SENTENCE_CHARS or not _WORD.search(stripped):
            continue
        left = match.start() + (len(piece) - len(piece.lstrip()))
        for unit_start, unit_end in cap_span(text, left, left + len(stripped), max_chars):
            unit = text[unit_start:unit_end]
            if len(unit) >= MIN_SENTENCE_CHARS and _WORD.search(unit):
                spans.append((unit_start, unit_end))
    return spans or cap_span(text, start, end, max_chars) or [(start, end)]
