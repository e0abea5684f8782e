"""Sentence spans of a chunk: the units the dense model embeds and answers are built from.

A question usually targets one sentence; embedding whole 300-character chunks dilutes it among
the chunk's other facts. Measured with ``benchmarks/fusion.py`` (dense MRR@10, chunk vector →
best sentence vector): DRCD 0.87 → 0.96, XQuAD 0.93 → 0.95, bundled corpus 0.59 → 0.78, DuReader
unchanged (0.72 → 0.71). Answers use the same spans, so every answer sentence has a vector.
"""
from __future__ import annotations

import re

# A run up to sentence-final punctuation (or a line end), closing quotes kept with it.
_SENTENCE = re.compile(r"[^。！？!?；;\n]+[。！？!?；;]*[”’」』）)]*")
_WORD = re.compile(r"\w")
MIN_SENTENCE_CHARS = 4


def sentence_spans(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """Stripped sentences of ``text[start:end]`` as (start, end) offsets into ``text``.

    Pieces shorter than ``MIN_SENTENCE_CHARS`` (a stray "1." or "》") are not units of their own;
    a span with no sentence long enough is one unit as a whole.
    """
    spans = []
    for match in _SENTENCE.finditer(text, start, end):
        piece = match.group()
        stripped = piece.strip()
        if len(stripped) < MIN_SENTENCE_CHARS or not _WORD.search(stripped):
            continue
        left = match.start() + (len(piece) - len(piece.lstrip()))
        spans.append((left, left + len(stripped)))
    return spans or [(start, end)]
