"""Scanned documents made offline from known text, for the OCR tests and benchmarks/ocr.py.

Three A4 pages of Chinese (Simplified paragraphs with numbers and dates, Traditional
paragraphs, a ruled table) are typeset with reportlab's built-in CJK font (STSong-Light, drawn
by pdfium with a system CJK font such as Debian's fonts-noto-cjk), then "scanned": rasterised by
pdfium at 200 dpi into an image-only PDF, and into PNG/JPEG with a slight rotation and noise.
Every drawn character's box is recorded, so a test can check where a highlight falls.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

FONT = "STSong-Light"
PAGE_W, PAGE_H = 595.2756, 841.8898  # A4 in points
MARGIN = 72.0
BODY = 12.0
TITLE = 16.0
LEADING = 1.9  # line height / font size
SCAN_DPI = 200
ASCENT, DESCENT = 0.88, 0.12  # of the font size: the glyph box around the baseline

TITLE_1 = "云溪市职业教育改革实施方案"
PAGE_1 = [
    (TITLE_1, "title"),
    ("云溪政发〔2024〕12号", "center"),
    ("为深化产教融合，提高技术技能人才培养质量，市人民政府决定自2024年3月15日起实施本方案。", "para"),
    ("一、到2026年底，全市建成省级高水平实训基地8个，培育产教融合型企业36家，中职学校在校生规模稳定在1.2万人左右。", "para"),
    ("二、市财政每年安排职业教育专项资金2,500万元，其中百分之四十用于双师型教师培养。", "para"),
    ("三、云溪市现代农业职业学院于2024年9月1日开设智慧农业技术专业，首批招收学生148名，合作企业为云溪农垦集团。", "para"),
]
PAGE_2 = [
    ("颱風防災演練實施要點", "title"),
    ("一、本市各級學校每學年應舉行颱風防災演練二次，分別於五月及九月辦理。", "para"),
    ("二、演練內容包括避難疏散、物資整備及通報聯繫，由校長擔任指揮官，學務處負責記錄。", "para"),
    ("三、自2024年起，補助每校演練經費新臺幣3萬5千元，並應於2024年10月31日前完成核銷。", "para"),
]
TABLE_TITLE = "云溪市职业教育专项资金分配表（2024年度）"
TABLE = [
    ("项目", "金额（万元）", "占比"),
    ("实训基地建设", "1,000", "40.0%"),
    ("双师型教师培养", "750", "30.0%"),
    ("专业课程开发", "500", "20.0%"),
    ("学生资助", "250", "10.0%"),
    ("合计", "2,500", "100%"),
]
TABLE_NOTE = "注：表中资金由市财政局于2024年4月20日前拨付到各学校。"

# A question about each page, with the words the right answer must contain.
QUESTIONS = [
    ("云溪市现代农业职业学院首批招收了多少名学生？", "148"),
    ("颱風防災演練每學年要舉行幾次？", "二次"),
    ("实训基地建设的资金是多少万元？", "1,000"),
]


@dataclass
class SamplePage:
    """One typeset page: its text line by line and every drawn character's box (points, top left)."""

    lines: list[str] = field(default_factory=list)
    chars: list[tuple[str, tuple[float, float, float, float]]] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def _font():
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont

    if FONT not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(UnicodeCIDFont(FONT))
    return pdfmetrics


def _wrap(text: str, width: float, size: float, indent: float) -> list[str]:
    """Greedy wrap by measured width (Chinese has no spaces to break at)."""
    metrics = _font()
    lines, current, room = [], "", width - indent
    for ch in text:
        if current and metrics.stringWidth(current + ch, FONT, size) > room:
            lines.append(current)
            current, room = "", width
        current += ch
    return lines + [current] if current else lines


class _Typesetter:
    """Draws lines on a reportlab canvas and records each character's box."""

    def __init__(self, canvas, page: SamplePage):
        self.canvas, self.page, self.y = canvas, page, PAGE_H - MARGIN

    def line(self, text: str, x: float, size: float) -> None:
        baseline = self.y - ASCENT * size
        self.canvas.setFont(FONT, size)
        self.canvas.drawString(x, baseline, text)
        self.page.lines.append(text)
        self._record(text, x, baseline, size)
        self.y -= LEADING * size

    def _record(self, text: str, x: float, baseline: float, size: float) -> None:
        metrics = _font()
        left = x
        for ch in text:
            right = left + metrics.stringWidth(ch, FONT, size)
            self.page.chars.append((ch, (left, PAGE_H - baseline - ASCENT * size, right, PAGE_H - baseline + DESCENT * size)))
            left = right

    def cell(self, text: str, x: float, baseline: float, size: float) -> None:
        self.canvas.setFont(FONT, size)
        self.canvas.drawString(x, baseline, text)
        self._record(text, x, baseline, size)


def _prose(canvas, items: list[tuple[str, str]]) -> SamplePage:
    page = SamplePage()
    pen = _Typesetter(canvas, page)
    metrics = _font()
    width = PAGE_W - 2 * MARGIN
    for text, kind in items:
        if kind in ("title", "center"):
            size = TITLE if kind == "title" else BODY
            pen.line(text, (PAGE_W - metrics.stringWidth(text, FONT, size)) / 2, size)
            if kind == "title":
                pen.y -= 0.4 * BODY
            continue
        indent = 2 * BODY
        for number, piece in enumerate(_wrap(text, width, BODY, indent)):
            pen.line(piece, MARGIN + (indent if number == 0 else 0), BODY)
        pen.y -= 0.5 * BODY
    return page


def _table(canvas) -> SamplePage:
    page = SamplePage()
    pen = _Typesetter(canvas, page)
    metrics = _font()
    pen.line(TABLE_TITLE, (PAGE_W - metrics.stringWidth(TABLE_TITLE, FONT, TITLE)) / 2, TITLE)
    pen.y -= BODY
    columns = [MARGIN, MARGIN + 190, MARGIN + 330, PAGE_W - MARGIN]
    row_h = 2.4 * BODY
    top = pen.y
    canvas.setLineWidth(0.8)
    for index, row in enumerate(TABLE):
        y_top = top - index * row_h
        baseline = y_top - row_h / 2 - 0.35 * BODY
        for column, value in enumerate(row):
            pen.cell(value, columns[column] + 10, baseline, BODY)
        page.lines.append("\t".join(row))
    bottom = top - len(TABLE) * row_h
    for index in range(len(TABLE) + 1):
        canvas.line(columns[0], top - index * row_h, columns[-1], top - index * row_h)
    for x in columns:
        canvas.line(x, top, x, bottom)
    pen.y = bottom - 1.5 * BODY
    pen.line(TABLE_NOTE, MARGIN, BODY)
    return page


def make_text_pdf(path: Path) -> list[SamplePage]:
    """The three pages as a PDF with a real text layer; returns what was drawn where."""
    from reportlab.pdfgen import canvas as pdf_canvas

    _font()
    canvas = pdf_canvas.Canvas(str(path), pagesize=(PAGE_W, PAGE_H))
    pages = [_prose(canvas, PAGE_1)]
    canvas.showPage()
    pages.append(_prose(canvas, PAGE_2))
    canvas.showPage()
    pages.append(_table(canvas))
    canvas.showPage()
    canvas.save()
    return pages


def scan(pdf_path: Path, dpi: int = SCAN_DPI) -> list:
    """Each page of a PDF as a greyscale "scan" (PIL images)."""
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(str(pdf_path))
    try:
        return [pdf[i].render(scale=dpi / 72, grayscale=True).to_pil().convert("L") for i in range(len(pdf))]
    finally:
        pdf.close()


def degrade(image, angle: float, noise: float, seed: int):
    """A slightly crooked, noisy copy of a scan, as a phone photo or a cheap scanner gives."""
    from PIL import Image

    rotated = image.rotate(angle, resample=Image.BICUBIC, expand=False, fillcolor=255)
    pixels = np.asarray(rotated, dtype=np.float32)
    pixels += np.random.default_rng(seed).normal(0.0, noise, pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def image_pdf(images: list, path: Path, garbage_layer: dict[int, str] | None = None) -> None:
    """An image-only PDF (one scan per page); ``garbage_layer``: page index -> invisible text
    whose font map is then broken, as a bad "searchable scan" has (its text layer is mojibake)."""
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfgen import canvas as pdf_canvas

    _font()
    canvas = pdf_canvas.Canvas(str(path), pagesize=(PAGE_W, PAGE_H))
    for index, image in enumerate(images):
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        canvas.drawImage(ImageReader(io.BytesIO(buffer.getvalue())), 0, 0, PAGE_W, PAGE_H)
        for number, text in enumerate((garbage_layer or {}).get(index, "").split("\n")):
            obj = canvas.beginText(MARGIN, PAGE_H - MARGIN - (number + 1) * LEADING * BODY)
            obj.setFont(FONT, BODY)
            obj.setTextRenderMode(3)
            obj.textOut(text)
            canvas.drawText(obj)
        canvas.showPage()
    canvas.save()
    if garbage_layer:
        _break_font_map(path)


def _break_font_map(path: Path) -> None:
    """Read the CJK font's codes as CIDs: pdfium then maps the text to the wrong characters."""
    data = path.read_bytes()
    broken = data.replace(b"/Encoding /UniGB-UCS2-H", b"/Encoding /Identity-H  ")  # same length: offsets hold
    assert broken != data, "the sample PDF has no UniGB-UCS2-H font to break"
    path.write_bytes(broken)


def mixed_pdf(text_pdf: Path, scans: list, path: Path) -> None:
    """Pages 1 and 3 typed (text layer), page 2 a scan with a mojibake text layer."""
    import pypdfium2 as pdfium

    scanned = path.with_suffix(".scan.pdf")
    image_pdf([scans[1]], scanned, garbage_layer={0: "\n".join(t for t, _ in PAGE_2)})
    out = pdfium.PdfDocument.new()
    typed, scan_pdf = pdfium.PdfDocument(str(text_pdf)), pdfium.PdfDocument(str(scanned))
    out.import_pages(typed, [0])
    out.import_pages(scan_pdf, [0])
    out.import_pages(typed, [2])
    out.save(str(path))
    for pdf in (out, typed, scan_pdf):
        pdf.close()
    scanned.unlink()


@dataclass
class SampleSet:
    """Paths of the sample documents and the drawn pages they show."""

    folder: Path
    pages: list[SamplePage]
    text_pdf: Path
    scanned_pdf: Path
    png: Path
    jpeg: Path
    mixed_pdf: Path


def make_samples(folder: Path) -> SampleSet:
    """Build the whole set in ``folder`` (a few seconds)."""
    folder.mkdir(parents=True, exist_ok=True)
    text_pdf = folder / "typed.pdf"
    pages = make_text_pdf(text_pdf)
    scans = scan(text_pdf)
    scanned_pdf = folder / "scanned.pdf"
    image_pdf(scans, scanned_pdf)
    png, jpeg = folder / "notice.png", folder / "typhoon.jpg"
    degrade(scans[0], 0.8, 12.0, seed=1).save(png)
    degrade(scans[1], -0.6, 10.0, seed=2).save(jpeg, quality=80)
    mixed = folder / "mixed.pdf"
    mixed_pdf(text_pdf, scans, mixed)
    return SampleSet(folder, pages, text_pdf, scanned_pdf, png, jpeg, mixed)


def visible(text: str) -> str:
    """Text without whitespace: line breaks and cell separators are layout, not characters."""
    return "".join(text.split())


def character_error_rate(reference: str, hypothesis: str) -> float:
    """Edit distance over the reference length, whitespace ignored (rapidfuzz's Levenshtein)."""
    from rapidfuzz.distance import Levenshtein

    ref, hyp = visible(reference), visible(hypothesis)
    return Levenshtein.distance(ref, hyp) / max(len(ref), 1)



def viewer_sample(folder: Path) -> tuple[Path, SamplePage]:
    """A two-page PDF for the viewer: page 1 scanned (OCR), page 2 typed (text layer).
    Returns its path and what page 1 shows."""
    import pypdfium2 as pdfium

    folder.mkdir(parents=True, exist_ok=True)
    typed = folder / "typed.pdf"
    pages = make_text_pdf(typed)
    scanned = folder / "page1-scan.pdf"
    image_pdf([scan(typed)[0]], scanned)
    path = folder / "yunxi-scan.pdf"
    out, first, second = pdfium.PdfDocument.new(), pdfium.PdfDocument(str(scanned)), pdfium.PdfDocument(str(typed))
    out.import_pages(first, [0])
    out.import_pages(second, [2])
    out.save(str(path))
    for pdf in (out, first, second):
        pdf.close()
    return path, pages[0]
