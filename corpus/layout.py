"""Where every character of a paged document stands: per-page character boxes.

PDF pages (from the text layer or OCR) and images are turned into text one page at a time. Each
page keeps, for every character of its text, the rectangle it occupies on the page, so any span
of the stored text (a cited sentence, a matched term) maps back to rectangles on the page image.

Coordinates are in the page's own units (PDF points or image pixels), origin at the top left,
x to the right and y down; ``width``/``height`` are the page size in the same units.

Lines come in as recognised (OCR) or extracted (text layer); ``assemble`` puts them in reading
order and joins the lines of a paragraph, the way the text would have been typed: a wrapped line
continues its paragraph, while an indent, a short last line, a wide vertical gap or a table row
starts a new one. Characters the assembly adds (line breaks, tabs, spaces) have no box.
"""
from __future__ import annotations

import re
import statistics
from dataclasses import dataclass, field

Box = tuple[float, float, float, float]  # x0, y0, x1, y1
LAYOUT_VERSION = 1

# A line indented by more than this many character heights starts a paragraph (Chinese
# paragraphs open with a two-character indent); a line ending this far short of the right
# margin ends one; a vertical gap this many times the page's usual gap separates paragraphs.
_INDENT = 1.2
_SHORT_END = 1.5
_GAP = 1.6
_CELL_GAP = 3.0  # characters further apart than this many heights are in different table cells
# A line ending a sentence, or one opening with an article or list marker (第三条, 二、, （一）,
# 1.), is taken as a paragraph boundary even at full width: splitting a paragraph at a sentence
# end costs nothing, while running two articles together would hide the second one's heading.
_SENTENCE_END = set("。！？!?；;：:")
_MARKER = re.compile(r"第[一二三四五六七八九十百零〇\d]+[条章节款條章節]|[一二三四五六七八九十]+、|[（(][一二三四五六七八九十\d]+[)）]|\d+[.、．]\D")
_NEWLINES = {"\r", "\n", "\u2028", "\u2029", "\x0b", "\x0c"}


@dataclass
class Line:
    """One line of text as found on a page: characters with their boxes (``None``: no ink)."""

    chars: list[str]
    boxes: list[Box | None]

    def __post_init__(self) -> None:
        if len(self.chars) != len(self.boxes):
            raise ValueError("a line needs one box (or None) per character")

    @property
    def bbox(self) -> Box | None:
        return union([b for b in self.boxes if b is not None])

    @property
    def text(self) -> str:
        return "".join(self.chars)


@dataclass
class Page:
    """One page of a paged document. ``boxes[i]`` is the box of ``text[start + i]``."""

    number: int  # 1-based
    width: float
    height: float
    start: int = 0
    end: int = 0
    ocr: bool = False  # True: the text was read by OCR; False: taken from the PDF's text layer
    boxes: list[Box | None] = field(default_factory=list)

    def to_json(self) -> dict:
        flat: list[float | None] = []
        for box in self.boxes:  # compact: four numbers per character, one null for none
            flat.extend((round(v, 1) for v in box) if box is not None else (None,))
        return {
            "number": self.number, "width": round(self.width, 2), "height": round(self.height, 2),
            "start": self.start, "end": self.end, "ocr": self.ocr, "boxes": flat,
        }

    @classmethod
    def from_json(cls, row: dict) -> "Page":
        flat, boxes, i = row["boxes"], [], 0
        while i < len(flat):
            if flat[i] is None:
                boxes.append(None)
                i += 1
            else:
                boxes.append(tuple(flat[i : i + 4]))
                i += 4
        return cls(row["number"], row["width"], row["height"], row["start"], row["end"], row["ocr"], boxes)


@dataclass
class PagedText:
    """A paged document's text and its pages: ``text[page.start:page.end]`` is one page."""

    text: str
    pages: list[Page]


def union(boxes: list[Box]) -> Box | None:
    if not boxes:
        return None
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


def _height(box: Box) -> float:
    return box[3] - box[1]


def _same_row(a: Box, b: Box) -> bool:
    """Two pieces of text on one row: they share most of the smaller one's height."""
    overlap = min(a[3], b[3]) - max(a[1], b[1])
    return overlap > 0.5 * min(_height(a), _height(b))


def split_at_gaps(line: Line, gap: float = _CELL_GAP) -> list[Line]:
    """Cut a recognised line where characters stand far apart: table cells read as one line."""
    pieces: list[Line] = []
    chars: list[str] = []
    boxes: list[Box | None] = []
    previous: Box | None = None
    for ch, box in zip(line.chars, line.boxes):
        if box is not None and previous is not None and box[0] - previous[2] > gap * max(_height(box), _height(previous)):
            while chars and boxes[-1] is None and chars[-1].isspace():  # the gap's filler spaces
                chars.pop()
                boxes.pop()
            pieces.append(Line(chars, boxes))
            chars, boxes = [], []
        chars.append(ch)
        boxes.append(box)
        previous = box if box is not None else previous
    pieces.append(Line(chars, boxes))
    return pieces


def rows_in_reading_order(lines: list[Line]) -> list[list[Line]]:
    """Top to bottom; pieces on one row (table cells, OCR fragments) left to right."""
    lines = [piece for line in lines for piece in split_at_gaps(line)]
    placed = sorted((line for line in lines if line.bbox is not None), key=lambda line: (line.bbox[1], line.bbox[0]))
    rows: list[list[Line]] = []
    for line in placed:
        if rows and _same_row(union([piece.bbox for piece in rows[-1]]), line.bbox):
            rows[-1].append(line)
        else:
            rows.append([line])
    return [sorted(row, key=lambda line: line.bbox[0]) for row in rows]


def _is_word_char(ch: str) -> bool:
    return ch.isascii() and ch.isalnum()


def assemble(rows: list[list[Line]]) -> tuple[str, list[Box | None]]:
    """The page's text and one box per character: rows joined into paragraphs.

    Pieces of one row are joined by a tab (a table row, as .docx rows are); rows of one
    paragraph are joined directly (with a space between two Latin words); paragraphs by a line break.
    """
    rows = [row for row in rows if any(line.bbox for line in row)]
    if not rows:
        return "", []
    bboxes = [union([line.bbox for line in row]) for row in rows]
    char_height = statistics.median(_char_height(row) for row in rows)
    left = min(b[0] for b in bboxes)
    right = max(b[2] for b in bboxes)
    gaps = [nxt[1] - prev[3] for prev, nxt in zip(bboxes, bboxes[1:]) if nxt[1] > prev[3]]
    usual_gap = statistics.median(gaps) if gaps else char_height
    chars: list[str] = []
    boxes: list[Box | None] = []
    for index, row in enumerate(rows):
        if index:
            separator = _separator(rows[index - 1], row, bboxes[index - 1], bboxes[index], left, right, char_height, usual_gap)
            if separator == " " and not (chars and _is_word_char(chars[-1]) and _is_word_char(row[0].chars[0])):
                separator = ""
            chars.extend(separator)
            boxes.extend([None] * len(separator))
        for number, line in enumerate(row):
            if number:
                chars.append("\t")
                boxes.append(None)
            for ch, box in zip(line.chars, line.boxes):
                if ch in _NEWLINES:  # keep one character per character: offsets stay exact
                    ch, box = " ", None
                chars.append(ch)
                boxes.append(box)
    return "".join(chars), boxes


def _char_height(row: list[Line]) -> float:
    heights = [_height(b) for line in row for b in line.boxes if b is not None and _height(b) > 0]
    return statistics.median(heights) if heights else 1.0


def _separator(
    prev_row: list[Line], row: list[Line], prev: Box, box: Box, left: float, right: float, char_height: float, usual_gap: float
) -> str:
    """What goes between two rows: nothing or a space (same paragraph) or a line break."""
    if len(prev_row) > 1 or len(row) > 1:
        return "\n"  # table rows stay rows
    ended = prev_row[-1].text.rstrip()
    if (ended and ended[-1] in _SENTENCE_END) or _MARKER.match(row[0].text.lstrip()):
        return "\n"
    if box[1] < prev[1]:
        return "\n"  # back up the page: another column or block (a text layer's own order)
    if box[0] - left > _INDENT * char_height:
        return "\n"  # indented: a new paragraph
    if right - prev[2] > _SHORT_END * char_height:
        return "\n"  # the previous line stopped short: it ended its paragraph
    if box[1] - prev[3] > max(_GAP * usual_gap, 0.5 * char_height):
        return "\n"  # a wider gap than between the lines of a paragraph
    return " "


def page_from_lines(number: int, width: float, height: float, lines: list[Line], ocr: bool, ordered: bool) -> tuple[str, Page]:
    """Assemble one page; ``ordered``: the lines are already in reading order (a PDF text layer)."""
    if ordered:
        rows = [[piece for piece in split_at_gaps(line) if piece.bbox is not None] for line in lines if line.bbox is not None]
    else:
        rows = rows_in_reading_order(lines)
    text, boxes = assemble(rows)
    return text, Page(number=number, width=width, height=height, ocr=ocr, boxes=boxes)


def join_pages(parts: list[tuple[str, Page]]) -> PagedText:
    """Pages one after another, separated by a blank line; each page learns its offsets."""
    texts: list[str] = []
    position = 0
    for text, page in parts:
        if texts:
            texts.append("\n\n")
            position += 2
        page.start, page.end = position, position + len(text)
        texts.append(text)
        position += len(text)
    return PagedText("".join(texts), [page for _, page in parts])


def page_of(pages: list[Page], offset: int) -> Page | None:
    """The page holding the character at ``offset`` (a separator belongs to the page after it)."""
    for page in pages:
        if offset < page.end:
            return page
    return pages[-1] if pages else None


@dataclass
class Rect:
    """A highlighted rectangle on a page, as fractions of the page's width and height."""

    page: int
    x0: float
    y0: float
    x1: float
    y1: float

    def to_json(self) -> dict:
        return {"page": self.page, "x0": round(self.x0, 4), "y0": round(self.y0, 4), "x1": round(self.x1, 4), "y1": round(self.y1, 4)}


def span_rects(pages: list[Page], start: int, end: int) -> list[Rect]:
    """Rectangles covering ``text[start:end]``: one per line of characters on each page.

    Consecutive characters are merged while they stay on one row, so a sentence that wraps gives
    one rectangle per line it occupies.
    """
    rects: list[Rect] = []
    for page in pages:
        lo, hi = max(start, page.start), min(end, page.end)
        if lo >= hi:
            continue
        current: list[Box] = []
        for box in page.boxes[lo - page.start : hi - page.start]:
            if box is None:
                continue
            if current and not _same_row(union(current), box):
                rects.append(_fraction(page, union(current)))
                current = []
            current.append(box)
        if current:
            rects.append(_fraction(page, union(current)))
    return rects


def _fraction(page: Page, box: Box) -> Rect:
    width, height = page.width or 1.0, page.height or 1.0
    x0, y0, x1, y1 = box
    clamp = lambda v: min(max(v, 0.0), 1.0)  # noqa: E731
    return Rect(page.number, clamp(x0 / width), clamp(y0 / height), clamp(x1 / width), clamp(y1 / height))
