"""Cut a cleaned document into retrievable chunks with exact offsets and heading paths.

Invariants (tested): ``chunk.text == text[chunk.start:chunk.end]``; chunks are stripped and
non-empty; a chunk never spans text that cleaning removed; a chunk is at most ``settings.size``
characters, on any text. The splitter cuts at paragraphs, lines, 。！？；, then ，、; a piece with
none of these (a page without punctuation, a flattened table row) is cut at closing quotes, then
spaces, then between two tokens (``corpus.bounded``): never inside a number (50.58%, 1,200), a
Latin word or a surrogate pair. The one overshoot: a chunk ending with a single number or word
that straddles the limit keeps it whole, so it may reach ``size + OVERSHOOT`` (32) characters.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from langchain_text_splitters import RecursiveCharacterTextSplitter

from corpus.bounded import CLOSING_BREAKS, SPACE_BREAKS, bounded_spans
from corpus.clean import Block
from corpus.records import Chunk
from corpus.sentences import sentence_spans

# Bump whenever cleaning, chunk boundaries, headings or sentence units change: knowledge bases
# record it, and one built by another version asks for `wendao reindex`.
CHUNKER_VERSION = "3"  # 3: the chunk size holds on text without punctuation; long sentence units are cut


@dataclass(frozen=True)
class ChunkSettings:
    """Chunk size and overlap in characters; chunks under ``min_size`` join a neighbour."""

    size: int = 300
    overlap: int = 0
    min_size: int = 20


# Paragraph, line, sentence end (closing quotes stay with the sentence), clause comma.
# No "" separator: langchain would cut numbers apart; a piece with none of these that is still
# too long goes to ``bounded_spans`` with FALLBACK_BREAKS (a piece that fits is left as it was).
SEPARATORS = [
    r"\n\s*\n",
    r"\n",
    r"[。！？!?；;…][”’」』\"')）]*",
    r"\.(?=\s)",
    r"[，、]",
    r"(?<!\d),|,(?!\d)",
]
FALLBACK_BREAKS = (CLOSING_BREAKS, SPACE_BREAKS)

_CJK = "\u3400-\u9fff\uf900-\ufaff"
_HEADING_PATTERNS: list[tuple[re.Pattern[str], int]] = [
    (re.compile(r"^(#{1,6})\s+\S"), 0),  # markdown: level = number of #
    (re.compile(r"^第[一二三四五六七八九十百零〇\d]+[编編篇部章]"), 1),
    (re.compile(r"^第[一二三四五六七八九十百零〇\d]+[节節]"), 2),
    (re.compile(r"^[一二三四五六七八九十百]+[、.．]"), 3),
    (re.compile(r"^[（(][一二三四五六七八九十百]+[)）]"), 4),
    (re.compile(r"^第[一二三四五六七八九十百零〇\d]+[条條]"), 5),
    (re.compile(r"^\d+[、.．](?!\d)"), 5),
    (re.compile(r"^[（(]\d+[)）]"), 6),
    (re.compile(r"^[①②③④⑤⑥⑦⑧⑨⑩]"), 7),
]
_TITLE_LEVEL = 1  # standalone title-like lines ("政策核心架构解析", "●...") and bullet headlines
_INNER_PUNCT = re.compile(r"[。！？!?；;，,]")
_BULLET_TITLE = re.compile(r"^[●■◆▲★]")
_TRAILING_PAREN = re.compile(r"\s*[（(][^（()）]*[)）]$")
_CLAUSE_PUNCT = re.compile(r"[。；;，,]")
_TABLE_LIKE = re.compile(r"\d%|\d{2,}\D+\d{2,}|\t")


@lru_cache(maxsize=64)
def _splitter(size: int, overlap: int) -> RecursiveCharacterTextSplitter:
    return RecursiveCharacterTextSplitter(
        separators=SEPARATORS,
        keep_separator="end",
        is_separator_regex=True,
        chunk_size=max(1, size),
        chunk_overlap=max(0, min(overlap, size - 1)),
        strip_whitespace=True,
    )


def split_span(
    text: str, start: int, end: int, size: int, overlap: int = 0, limit: int | None = None
) -> list[tuple[int, int]]:
    """Split ``text[start:end]`` with the Chinese-aware splitter; return exact (start, end) spans.

    Pieces the separators could not bring under ``limit`` (default ``size``) are cut by
    ``bounded_spans``; pieces within it are exactly what the splitter made.
    """
    limit = size if limit is None else limit
    spans: list[tuple[int, int]] = []
    for piece_start, piece_end in _splitter_spans(text, start, end, size, overlap):
        if piece_end - piece_start > limit:
            spans.extend(bounded_spans(text, piece_start, piece_end, limit, FALLBACK_BREAKS))
        else:
            spans.append((piece_start, piece_end))
    return spans


def _splitter_spans(text: str, start: int, end: int, size: int, overlap: int) -> list[tuple[int, int]]:
    """langchain's pieces of ``text[start:end]`` as exact spans (unsplittable ones may exceed size)."""
    region = text[start:end]
    if len(region) <= size:
        stripped = region.strip()
        if not stripped:
            return []
        lead = len(region) - len(region.lstrip())
        return [(start + lead, start + lead + len(stripped))]
    spans: list[tuple[int, int]] = []
    cursor = 0
    for piece in _splitter(size, overlap).split_text(region):
        piece = piece.strip()  # langchain leaves pieces it cannot split (len >= size) unstripped
        if not piece:
            continue
        index = region.find(piece, cursor)
        if index < 0:  # cannot happen with strip-only pieces; search from the start to be safe
            index = region.find(piece)
        spans.append((start + index, start + index + len(piece)))
        cursor = max(index + 1, index + len(piece) - overlap - 1) if overlap else index + len(piece)
    return spans


# --- headings -------------------------------------------------------------------------------


def heading_level(line: str, standalone: bool) -> int | None:
    """Level of a heading line (smaller = higher), or None for body text.

    Numbered headings (一、 （一） 1. 第X章 #) count wherever they stand if they are short;
    an unnumbered line counts only when it stands alone as a paragraph and looks like a title.
    """
    body = _display_heading(line)
    if not body or len(body) > 80:
        return None
    for pattern, level in _HEADING_PATTERNS:
        match = pattern.match(body)
        if match is None:
            continue
        if level == 0:
            return len(match.group(1))
        rest = body[match.end():].rstrip("。：:")
        if len(rest) > 30 or _INNER_PUNCT.search(rest):
            return None
        return level + 6  # below markdown levels 1-6
    if not standalone or "。" in body:
        return None
    if _BULLET_TITLE.match(body):
        return _TITLE_LEVEL + 6
    # A trailing parenthetical (authors, a 文号) does not make a title a sentence; ? and ! do not
    # either: "产教融合难题何解?亮出北京答案!" is an article title.
    core = _TRAILING_PAREN.sub("", body)
    if len(core) > 45 or _TABLE_LIKE.search(core) or _CLAUSE_PUNCT.search(core) or re.search(r"[:：]", core):
        return None
    return _TITLE_LEVEL + 6


def _display_heading(text: str) -> str:
    """Heading text for display: whitespace inside CJK runs (a stray tab) removed."""
    text = re.sub(rf"(?<=[{_CJK}])\s+(?=[{_CJK}])", "", text.strip())
    return " ".join(text.split())


# --- chunking -------------------------------------------------------------------------------


@dataclass
class _Section:
    headings: list[Block]
    body: list[Block]

    @property
    def start(self) -> int:
        return (self.headings or self.body)[0].start

    @property
    def end(self) -> int:
        return (self.body or self.headings)[-1].end


def _groups(text: str, blocks: list[Block]) -> list[list[Block]]:
    """Runs of blocks separated only by whitespace: nothing removed lies inside a run."""
    groups: list[list[Block]] = []
    for block in blocks:
        if groups and not text[groups[-1][-1].end : block.start].strip():
            groups[-1].append(block)
        else:
            groups.append([block])
    return groups


def _is_whole_line(text: str, block: Block) -> bool:
    line_start = text.rfind("\n", 0, block.start) + 1
    line_end = text.find("\n", block.end)
    line_end = len(text) if line_end < 0 else line_end
    return not text[line_start : block.start].strip() and not text[block.end : line_end].strip()


def _levels(text: str, group: list[Block]) -> list[int | None]:
    levels: list[int | None] = []
    for index, block in enumerate(group):
        if not _is_whole_line(text, block):
            levels.append(None)
            continue
        before = group[index - 1].end if index else None
        after = group[index + 1].start if index + 1 < len(group) else None
        alone = (before is None or text.count("\n", before, block.start) >= 2) and (
            after is None or text.count("\n", block.end, after) >= 2
        )
        levels.append(heading_level(text[block.start : block.end], alone))
    return levels


def _sections(text: str, group: list[Block]) -> list[tuple[_Section, list[int]]]:
    """Split a run at headings; a run of headings with no body joins the next section."""
    sections: list[tuple[_Section, list[int]]] = []
    pending_heads: list[Block] = []
    pending_levels: list[int] = []
    for block, level in zip(group, _levels(text, group)):
        if level is not None:
            pending_heads.append(block)
            pending_levels.append(level)
            continue
        if pending_heads:
            sections.append((_Section(pending_heads, [block]), pending_levels))
            pending_heads, pending_levels = [], []
        elif sections:
            sections[-1][0].body.append(block)
        else:
            sections.append((_Section([], [block]), []))
    if pending_heads:
        sections.append((_Section(pending_heads, []), pending_levels))
    return sections


def _section_spans(text: str, section: _Section, settings: ChunkSettings) -> list[tuple[int, int]]:
    """Spans of one section; its headings are glued to the start of the first body piece.

    When the headings leave less than ``min_size`` of room, they are a chunk of their own
    rather than push the first chunk over the size.
    """
    if not section.body:
        return split_span(text, section.start, section.end, settings.size)
    body_start = section.body[0].start
    pieces = split_span(text, body_start, section.end, settings.size, settings.overlap)
    if not section.headings:
        return pieces
    head_start = section.headings[0].start
    first_start, first_end = pieces[0]
    if first_end - head_start > settings.size:
        room = settings.size - (body_start - head_start)
        if room < max(settings.min_size, 1):
            return split_span(text, head_start, section.headings[-1].end, settings.size) + pieces
        sub = split_span(text, first_start, first_end, room, 0, limit=settings.size)
        if sub[0][1] - sub[0][0] > room:  # the splitter could not make the first piece fit
            sub = bounded_spans(text, sub[0][0], sub[0][1], room, FALLBACK_BREAKS) + sub[1:]
        pieces = sub + pieces[1:]
    pieces[0] = (head_start, pieces[0][1])
    return pieces


def _merge_small(chunks: list[dict], settings: ChunkSettings) -> list[dict]:
    """Join chunks under ``min_size`` to a contiguous neighbour when the result still fits."""
    result: list[dict] = []
    for chunk in chunks:
        size = chunk["end"] - chunk["start"]
        if (
            result
            and size <= settings.min_size
            and chunk["group"] == result[-1]["group"]
            and chunk["end"] - result[-1]["start"] <= settings.size
            and result[-1]["start"] < chunk["start"]
        ):
            result[-1]["end"] = max(result[-1]["end"], chunk["end"])
            continue
        if (
            result
            and result[-1]["end"] - result[-1]["start"] <= settings.min_size
            and chunk["group"] == result[-1]["group"]
            and chunk["end"] - result[-1]["start"] <= settings.size
        ):
            result[-1]["end"] = max(result[-1]["end"], chunk["end"])
            continue
        result.append(dict(chunk))
    return result


def chunk_document(doc_id: str, text: str, blocks: list[Block], settings: ChunkSettings) -> list[Chunk]:
    """Chunks of the kept blocks of ``text``, each with the heading path in force at its start."""
    stack: list[tuple[int, str]] = []
    raw: list[dict] = []
    for group_index, group in enumerate(_groups(text, blocks)):
        for section, levels in _sections(text, group):
            for head, level in zip(section.headings, levels):
                while stack and stack[-1][0] >= level:
                    stack.pop()
                stack.append((level, _display_heading(text[head.start : head.end])))
            heading = " > ".join(name for _, name in stack)
            for start, end in _section_spans(text, section, settings):
                raw.append({"start": start, "end": end, "heading": heading, "group": group_index})
    chunks = []
    for index, item in enumerate(_merge_small(raw, settings)):
        start, end = item["start"], item["end"]
        chunks.append(
            Chunk(
                chunk_id=f"{doc_id}#{index}",
                doc_id=doc_id,
                start=start,
                end=end,
                text=text[start:end],
                heading=item["heading"],
                sentences=sentence_spans(text, start, end),
            )
        )
    return chunks
