"""Cut a span into pieces of bounded length where its own separators have run out.

A page with no 。！？ (or no punctuation at all) must still become chunks and sentence units of a
bounded size: one 8,000-character "sentence" is useless as an answer and as a vector. Boundaries
are tried in the caller's order (clause commas, closing quotes, spaces); where none lies in the
window, the cut falls between two characters that are not inside one token:

- a number with its inner . , : / - and a trailing %, a sign or a currency mark
  (50.58%, 1,200, 2019-2023, 12:30, ¥300, -5), or a Latin word (IPv6, GB/T, naïve);
- a surrogate pair, or a character and the combining marks / ZWJ / variation selectors after it.

A token longer than the limit is kept whole when it ends within ``OVERSHOOT`` characters past
the limit; a longer run (a hash, 700 digits in a row) is not a number anyone reads and is cut at
the limit. Pieces are balanced (a 320-character span with limit 300 becomes two of about 160,
not 300 + 20), stripped and non-empty, so ``text[start:end]`` of a piece is the piece.
"""
from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

OVERSHOOT = 32  # at most this many characters past the limit, to keep one number or word whole

_ALNUM = r"0-9A-Za-z\u00c0-\u024f\u0370-\u03ff\u0400-\u04ff\uff10-\uff19\uff21-\uff3a\uff41-\uff5a"
_RUN = rf"(?:[{_ALNUM}]|\d)(?:[{_ALNUM}\u0300-\u036f]|\d)*"  # combining accents stay with their letter
# A number or Latin word: alphanumeric runs joined by . / - _ ' (only between two of them) or by
# , : between digits, with an optional sign or currency mark in front and % or a unit behind.
TOKEN = re.compile(
    rf"(?:[-+−¥￥$€£](?=\d))?{_RUN}(?:[./\-_'’·．]{_RUN}|(?<=\d)[,:](?=\d){_RUN})*[%％‰℃°]?"
)
_TOKEN_CHAR = re.compile(rf"[{_ALNUM}]|\d")
# Where a sentence may be cut: after a clause comma or colon (not inside 1,200 or 12:30), else
# after an enumeration comma (that cuts a list of items, so it comes second).
CLAUSE_BREAKS = re.compile(r"[，：]|(?<!\d)[,:]|[,:](?!\d)")
LIST_BREAKS = re.compile(r"、")
# After a closing quote or bracket run: “纲要”“规划” lists, （注）.
CLOSING_BREAKS = re.compile(r"[”’」』》〉）)\]】]+")
# Before a run of white space (the piece is stripped, the next one starts after the run).
SPACE_BREAKS = re.compile(r"(?<=\S)(?=\s)")


def _glued(text: str, position: int) -> bool:
    """True when ``position`` lies inside one user-perceived character (never cut there)."""
    if not 0 < position < len(text):
        return False
    before, after = text[position - 1], text[position]
    if "\ud800" <= before <= "\udbff" and "\udc00" <= after <= "\udfff":
        return True
    if before == "\u200d" or after == "\u200d":
        return True
    return unicodedata.category(after) in ("Mn", "Me", "Mc") or "\U0001f3fb" <= after <= "\U0001f3ff"


def _safe(text: str, cursor: int, cut: int, end: int) -> int:
    """Move ``cut`` off a surrogate pair or combining sequence: back if possible, else forward."""
    position = cut
    while position > cursor + 1 and _glued(text, position):
        position -= 1
    if not _glued(text, position):
        return position
    position = cut
    while position < end and _glued(text, position):
        position += 1
    return position


def _nearest(candidates: list[int], target: int) -> int | None:
    return min(candidates, key=lambda p: (abs(p - target), p)) if candidates else None


def _cut(text: str, cursor: int, end: int, limit: int, pieces: int, breaks: Sequence[re.Pattern[str]]) -> int:
    """The end of the piece that starts at ``cursor``, one of ``pieces`` still to make: the best
    boundary near an even share, never so early that the rest would need another piece."""
    target = cursor + -(-(end - cursor) // pieces)
    high = cursor + limit
    low = max(cursor + max(1, limit // 3), end - (pieces - 1) * limit)
    look = min(end, high + 8)  # lookaheads (``,(?!\d)``) must see past the window
    for pattern in breaks:
        found = [m.end() for m in pattern.finditer(text, low - 1, look) if low <= m.end() <= high]
        best = _nearest(found, target)
        if best is not None:
            return best
    # No boundary: cut between tokens. Only a bounded stretch is scanned, so a run of millions
    # of digits costs no more than ordinary text.
    return _safe(text, cursor, _token_cut(text, cursor, end, limit, target, low, high), end)


def _token_cut(text: str, cursor: int, end: int, limit: int, target: int, low: int, high: int) -> int:
    """A cut near ``target`` that is not inside a number or word (see the module docstring)."""
    stop = min(end, high + OVERSHOOT + 1)
    for token in TOKEN.finditer(text, cursor, stop):
        if token.start() >= target:
            break
        if token.end() <= target:
            continue
        # ``target`` falls inside this token
        best = _nearest([p for p in (token.start(), token.end()) if low <= p <= high], target)
        if best is not None:
            return best
        if token.start() > cursor:
            return token.start()
        continuing = cursor > 0 and _TOKEN_CHAR.match(text[cursor - 1]) is not None  # rest of a run already cut
        if token.end() - cursor <= limit + OVERSHOOT and not continuing:
            return token.end()  # one unbreakable number or word, kept whole
        break  # longer than any number: cut it at the target like any other run
    return target


def bounded_spans(
    text: str, start: int, end: int, limit: int, breaks: Sequence[re.Pattern[str]] = (SPACE_BREAKS,)
) -> list[tuple[int, int]]:
    """Stripped, non-empty pieces of ``text[start:end]`` of at most ``limit`` characters each
    (``limit + OVERSHOOT`` for a piece that ends with one unbreakable token), in order."""
    limit = max(1, limit)
    spans: list[tuple[int, int]] = []
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    cursor = start
    while cursor < end:
        remaining = end - cursor
        if remaining <= limit:
            spans.append((cursor, end))
            break
        cut = _cut(text, cursor, end, limit, -(-remaining // limit), breaks)
        piece_end = cut
        while piece_end > cursor and text[piece_end - 1].isspace():
            piece_end -= 1
        if piece_end > cursor:
            spans.append((cursor, piece_end))
        cursor = cut
        while cursor < end and text[cursor].isspace():
            cursor += 1
    return spans
