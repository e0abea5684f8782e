"""Length-preserving text folding for matching (never for display).

``fold(text)[i]`` always corresponds to ``text[i]``: the index and the highlighter map match
positions in folded text straight back to offsets in the original text.
"""
from __future__ import annotations

import re
from functools import lru_cache

import opencc

# Bump whenever fold() changes what it returns: knowledge bases record it (their tokens and
# vectors were made from folded text), and one built with another version asks for a reindex.
FOLD_VERSION = "opencc-t2s+width+ocr+lower-2"  # 2: OCR look-alikes (brackets, O/0 l/1 in numbers)

# Full-width ASCII forms (！ .. ～) -> ASCII, ideographic space -> space. Chinese punctuation
# such as 。，、「」 is deliberately left alone: it is not a width variant of anything.
_WIDTH_TABLE = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)}
_WIDTH_TABLE[0x3000] = 0x20
# What OCR confuses, folded so that either reading matches the other: CJK brackets around a
# 文号's year (〔2024〕 read as [2024]), and inside a number the letters O/o and l/I/| for the
# digits 0 and 1 and a full stop or middle dot for the decimal point.
_WIDTH_TABLE.update({ord(c): ord("[") for c in "〔【〖"})
_WIDTH_TABLE.update({ord(c): ord("]") for c in "〕】〗"})
_OCR_IN_NUMBER = re.compile(r"(?<=\d)[Oo]+(?=\d)|(?<=\d)[lI|]+(?=\d)|(?<=\d)[。·・](?=\d)")
_OCR_DIGITS = str.maketrans({"O": "0", "o": "0", "l": "1", "I": "1", "|": "1", "。": ".", "·": ".", "・": "."})

# OpenCC works phrase by phrase; lines (and, on a length change, clauses) are the units we
# convert so that a length change stays local and the rest of the text keeps phrase context.
_LINE = re.compile(r"[^\n]*\n|[^\n]+")
_CLAUSE = re.compile(r"[^\s。，、；：！？,.;:!?()（）《》“”\"']+|.", re.S)


@lru_cache(maxsize=1)
def _converter() -> opencc.OpenCC:
    """Built once: loading the OpenCC dictionaries costs far more than converting."""
    return opencc.OpenCC("t2s")


@lru_cache(maxsize=65536)
def _char_t2s(ch: str) -> str:
    out = _converter().convert(ch)
    return out if len(out) == 1 else ch


def _t2s_same_length(segment: str) -> str:
    """Phrase-level conversion; char-by-char where the phrase result changes the length."""
    out = _converter().convert(segment)
    if len(out) == len(segment):
        return out
    parts = []
    for clause in _CLAUSE.findall(segment):
        converted = _converter().convert(clause)
        if len(converted) != len(clause):
            converted = "".join(_char_t2s(ch) for ch in clause)
        parts.append(converted)
    return "".join(parts)


def _lower_same_length(text: str) -> str:
    lowered = text.lower()
    if len(lowered) == len(text):
        return lowered
    # A few characters (e.g. 'İ') lower to two code points: keep those as they are.
    return "".join(low if len(low := ch.lower()) == 1 else ch for ch in text)


def fold(text: str) -> str:
    """Traditional->Simplified, full-width->half-width, OCR look-alikes in numbers, lowercase;
    same length as ``text``."""
    if not text:
        return text
    # Line by line so that a length-changing phrase can never be masked by another one
    # elsewhere in the text that changes the length the other way.
    converted = "".join(_t2s_same_length(line) for line in _LINE.findall(text))
    widened = converted.translate(_WIDTH_TABLE)
    widened = _OCR_IN_NUMBER.sub(lambda m: m.group().translate(_OCR_DIGITS), widened)
    result = _lower_same_length(widened)
    assert len(result) == len(text)
    return result
