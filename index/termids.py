"""Integer ids for the lexical tokens of ``index.lexical`` (CJK uni+bigrams, Latin words).

Segments store postings under a *global* integer id computed from the token itself, so no
vocabulary has to be kept, loaded or merged: a CJK character is its code point (< 2**16), a
CJK bigram is ``c1 << 16 | c2`` (< 2**32), a Latin/digit word a 40-bit hash above 2**32.
The ids of a text are computed with numpy over its code points; ``token_ids`` of the tokens
``index.lexical.tokenize_folded`` gives are the same multiset (tests check it).
"""
from __future__ import annotations

import hashlib
import re

import numpy as np

from index.lexical import _CJK

_LATIN = re.compile(r"[a-z0-9]+(?:[.%][a-z0-9]+)*")
_WORD_BASE = 1 << 32
_CJK_RANGES = ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF))


def token_id(token: str) -> int:
    """The id of one token as ``tokenize_folded`` produces it."""
    if len(token) <= 2 and token and all(_CJK.match(c) for c in token):
        return ord(token[0]) if len(token) == 1 else (ord(token[0]) << 16) | ord(token[1])
    digest = hashlib.blake2b(token.encode("utf-8"), digest_size=5).digest()
    return _WORD_BASE + int.from_bytes(digest, "little")


def token_ids(tokens: list[str]) -> np.ndarray:
    return np.fromiter((token_id(t) for t in tokens), dtype=np.int64, count=len(tokens))


def _is_cjk(points: np.ndarray) -> np.ndarray:
    mask = np.zeros(len(points), dtype=bool)
    for low, high in _CJK_RANGES:
        mask |= (points >= low) & (points <= high)
    return mask


def text_ids(folded: str) -> np.ndarray:
    """Ids of every token of already-folded text (the uni+bigram scheme), vectorised."""
    points = np.frombuffer(folded.encode("utf-32-le"), dtype="<u4").astype(np.int64)
    cjk = _is_cjk(points)
    unigrams = points[cjk]
    pairs = cjk[:-1] & cjk[1:]
    bigrams = (points[:-1][pairs] << 16) | points[1:][pairs]
    parts = [unigrams, bigrams]
    if len(points) - len(unigrams) and _LATIN.search(folded):
        parts.append(token_ids(_LATIN.findall(folded)))
    return np.concatenate(parts)


def reference_ids(folded: str) -> np.ndarray:
    """Ids via the tokenizer itself (slow path; tests compare it with ``text_ids``)."""
    from index.lexical import tokenize_folded

    return token_ids(tokenize_folded(folded))

