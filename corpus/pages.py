"""PDFs and images into text, page by page, with every character's box on its page.

A PDF page whose text layer is usable gives its text and character boxes through pdfium; a page
with no usable text layer (none at all, a scan with only a page number stamped on it, or
mojibake from a broken font map) is rendered and read by OCR. The decision is made per page,
so a PDF of typed pages with a few scanned ones OCRs only the scanned ones. Images (.png .jpg
.jpeg .tif .tiff .bmp .webp; every frame of a multi-page TIFF) are read by OCR.

The same functions render a stored page for the source viewer, so what the viewer shows is
what was read.
"""
from __future__ import annotations

import ctypes
import importlib
import io
import threading
import time
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np

from corpus.errors import Fix, IngestError
from corpus.layout import Box, Line, PagedText, join_pages, page_from_lines

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
DEFAULT_MAX_PAGES = 500
# OCR resolution: the longer side of a page is rendered at this many pixels (RapidOCR's own
# detection limit; A4 at ~170 dpi), never above 300 dpi.
OCR_LONG_SIDE = 2000
MAX_OCR_DPI = 300
MAX_IMAGE_PIXELS = 80_000_000  # a 9,000 x 9,000 scan; larger images are refused, not decoded

# A text layer is usable when most of it reads as text: common hanzi, ASCII, CJK punctuation.
_MIN_TEXT_SCORE = 0.75
_MAX_MAP_ERRORS = 0.1  # share of characters pdfium could not map to Unicode
# A page with almost no text over a page-sized picture is a scan (the text is a stamped page number).
_SCAN_TEXT_CHARS = 30
_SCAN_IMAGE_SHARE = 0.3

_pdfium_lock = threading.Lock()  # pdfium is not thread-safe


def _library(module: str, source: str):
    """Import a reading library; a broken install fails this file with a clear reason, not the batch."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise IngestError(source, f"cannot read this file: the library {module!r} failed to import ({exc}); reinstall wendao") from None

PageProgress = Callable[[int, int], None]


@dataclass
class PageOptions:
    """Limits for paged documents: at most ``max_pages`` pages, ``ocr_timeout`` s of OCR per page."""

    max_pages: int = DEFAULT_MAX_PAGES
    ocr_timeout: float | None = None  # None: corpus.ocr.DEFAULT_PAGE_TIMEOUT
    progress: PageProgress | None = None  # (pages done, pages in the file)
    denoise: bool = True  # a 3x3 median filter before OCR (see ocr_lines)


def _timeout(options: PageOptions) -> float:
    from corpus.ocr import DEFAULT_PAGE_TIMEOUT

    return options.ocr_timeout if options.ocr_timeout is not None else DEFAULT_PAGE_TIMEOUT


def _check_page_count(count: int, options: PageOptions, source: str) -> None:
    if count > options.max_pages:
        raise IngestError(source, f"{count} pages is over the {options.max_pages}-page limit", Fix("raise_page_limit"))


# -- OCR of one page image ------------------------------------------------------------------------
def ocr_lines(image, scale: float, options: PageOptions, source: str, number: int) -> list[Line]:
    """OCR a PIL image; boxes divided by ``scale`` (pixels per page unit).

    A 3x3 median filter first removes scanner speckle, which makes the recogniser drop
    characters (on the noisy sample image: character error rate 0.026 without, 0.004 with).
    """
    from corpus.ocr import OcrFailure, OcrTimeout, engine

    started = time.monotonic()
    try:
        found = engine().recognise(np.asarray(image.convert("RGB")), timeout=_timeout(options), denoise=options.denoise)
    except OcrTimeout:
        limit = _timeout(options)
        raise IngestError(
            source,
            f"page {number}: OCR stopped after {time.monotonic() - started:.0f} s, over the {limit:g} s per-page limit",
            Fix("raise_ocr_timeout"),
        ) from None
    except OcrFailure as exc:
        raise IngestError(source, f"page {number}: {exc}") from None
    return [
        Line(list(item.text), [(b[0] / scale, b[1] / scale, b[2] / scale, b[3] / scale) for b in item.boxes])
        for item in found
        if item.text
    ]


# -- PDF ---------------------------------------------------------------------------------------------
def _open_pdf(data: bytes, source: str):
    pdfium = _library("pypdfium2", source)

    try:
        return pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        if "password" in str(exc).lower():
            raise IngestError(source, "encrypted PDF: cannot extract text without the password") from None
        raise IngestError(source, f"corrupt or unreadable PDF: {exc}") from None


def _text_layer(page, textpage) -> tuple[list[Line], str, int]:
    """The text layer as pdfium orders it: lines of characters with their boxes (top-left
    origin, in points), the layer's text and how many characters had no Unicode mapping."""
    import pypdfium2.raw as pdfium_c

    width, height = page.get_size()
    count = textpage.count_chars()
    lines: list[Line] = []
    chars: list[str] = []
    boxes: list[Box | None] = []
    map_errors = 0
    rect = pdfium_c.FS_RECTF()
    device = (ctypes.c_int(), ctypes.c_int())
    for index in range(count):
        code = pdfium_c.FPDFText_GetUnicode(textpage.raw, index)
        ch = chr(code) if 0 < code < 0x110000 and not 0xD800 <= code < 0xE000 else "\ufffd"
        generated = pdfium_c.FPDFText_IsGenerated(textpage.raw, index) == 1
        if ch in "\r\n" and generated:  # pdfium's own line break
            if ch == "\n" and chars:
                lines.append(Line(chars, boxes))
                chars, boxes = [], []
            continue
        map_errors += pdfium_c.FPDFText_HasUnicodeMapError(textpage.raw, index) == 1
        box: Box | None = None
        # the loose box spans the font's ascent to descent, as a text selection does
        if not generated and not ch.isspace() and pdfium_c.FPDFText_GetLooseCharBox(textpage.raw, index, ctypes.byref(rect)):
            box = _to_page(page, width, height, (rect.left, rect.bottom, rect.right, rect.top), device)
        chars.append(ch)
        boxes.append(box)
    if chars:
        lines.append(Line(chars, boxes))
    return lines, "".join(line.text for line in lines), map_errors


def _to_page(page, width: float, height: float, rect: tuple[float, float, float, float], device) -> Box:
    """PDF user space (origin bottom left, page rotation not applied) -> the page as displayed."""
    import pypdfium2.raw as pdfium_c

    xs, ys = [], []
    scale = 100  # device coordinates are integers: work in hundredths of a point
    for x, y in ((rect[0], rect[1]), (rect[2], rect[3])):
        pdfium_c.FPDF_PageToDevice(
            page.raw, 0, 0, round(width * scale), round(height * scale), 0, x, y, ctypes.byref(device[0]), ctypes.byref(device[1])
        )
        xs.append(device[0].value / scale)
        ys.append(device[1].value / scale)
    return (min(xs), min(ys), max(xs), max(ys))


def _image_share(page, width: float, height: float) -> float:
    """How much of the page its pictures cover (a scan is one page-sized picture)."""
    import pypdfium2.raw as pdfium_c

    covered = 0.0
    for obj in page.get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_IMAGE], max_depth=2):
        x0, y0, x1, y1 = obj.get_bounds()
        covered += max(0.0, x1 - x0) * max(0.0, y1 - y0)
    return min(1.0, covered / max(width * height, 1.0))


def text_layer_usable(text: str, map_errors: int, image_share: float) -> bool:
    """Whether a page's text layer can be used as it is (else the page is OCR'd)."""
    from corpus.loaders import text_score

    visible = "".join(text.split())
    if not visible:
        return False
    if map_errors > _MAX_MAP_ERRORS * len(visible) or text_score(visible) < _MIN_TEXT_SCORE:
        return False  # mojibake: a font without a usable Unicode map
    return not (len(visible) < _SCAN_TEXT_CHARS and image_share >= _SCAN_IMAGE_SHARE)


def ocr_scale(width: float, height: float) -> float:
    """Pixels per point for OCR rendering: the long side at OCR_LONG_SIDE pixels, at most 300 dpi."""
    return min(OCR_LONG_SIDE / max(width, height, 1.0), MAX_OCR_DPI / 72)


def read_pdf(data: bytes, source: str, options: PageOptions | None = None) -> PagedText:
    """Each page from its text layer when usable, else by OCR of the rendered page."""
    options = options or PageOptions()
    with _pdfium_lock:
        pdf = _open_pdf(data, source)
    try:
        count = len(pdf)
        _check_page_count(count, options, source)
        parts = []
        for number in range(1, count + 1):
            parts.append(_read_pdf_page(pdf, number, options, source))
            if options.progress:
                options.progress(number, count)
    finally:
        with _pdfium_lock:
            pdf.close()
    return join_pages(parts)


def _read_pdf_page(pdf, number: int, options: PageOptions, source: str):
    pdfium = _library("pypdfium2", source)

    try:
        with _pdfium_lock:
            page = pdf[number - 1]
            width, height = page.get_size()
            textpage = page.get_textpage()
            lines, text, map_errors = _text_layer(page, textpage)
            usable = text_layer_usable(text, map_errors, _image_share(page, width, height))
            image = None if usable else page.render(scale=ocr_scale(width, height)).to_pil()
            textpage.close()
            page.close()
    except pdfium.PdfiumError as exc:
        raise IngestError(source, f"corrupt or unreadable PDF (page {number}): {exc}") from None
    if usable:
        return page_from_lines(number, width, height, lines, ocr=False, ordered=True)
    lines = ocr_lines(image, ocr_scale(width, height), options, source, number)
    return page_from_lines(number, width, height, lines, ocr=True, ordered=False)


# -- images ------------------------------------------------------------------------------------------
def _open_image(data: bytes, source: str):
    image_module = _library("PIL.Image", source)
    too_large = f"image too large: over {MAX_IMAGE_PIXELS / 1e6:.0f} megapixels"
    try:
        with warnings.catch_warnings():  # the size is checked just below, with our own limit
            warnings.simplefilter("ignore", image_module.DecompressionBombWarning)
            image = image_module.open(io.BytesIO(data))  # reads the header only
        if image.width * image.height > MAX_IMAGE_PIXELS:
            raise IngestError(source, too_large)
        image.verify()  # a damaged file fails here, before decoding pixels
        return image_module.open(io.BytesIO(data))
    except image_module.DecompressionBombError:
        raise IngestError(source, too_large) from None
    except image_module.UnidentifiedImageError:
        raise IngestError(source, "corrupt or unreadable image: not a PNG, JPEG, TIFF, BMP or WebP image") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise IngestError(source, f"corrupt or unreadable image: {exc}") from None


def _frame(image, index: int):
    """Frame ``index`` of an image (a page of a multi-page TIFF) in RGB, stood the right way up."""
    from PIL import ImageOps

    image.seek(index)
    return ImageOps.exif_transpose(image.convert("RGB"))  # a phone photo's orientation tag


def read_image(data: bytes, source: str, options: PageOptions | None = None) -> PagedText:
    """OCR of an image file (each frame of a multi-page TIFF is a page); coordinates in pixels."""
    options = options or PageOptions()
    image = _open_image(data, source)
    count = getattr(image, "n_frames", 1)
    _check_page_count(count, options, source)
    parts = []
    try:
        for number in range(1, count + 1):
            frame = _frame(image, number - 1)
            lines = ocr_lines(frame, 1.0, options, source, number)
            parts.append(page_from_lines(number, frame.width, frame.height, lines, ocr=True, ordered=False))
            if options.progress:
                options.progress(number, count)
    except IngestError:
        raise
    except (OSError, SyntaxError, ValueError) as exc:  # a frame that fails to decode
        raise IngestError(source, f"corrupt or unreadable image: {exc}") from None
    return join_pages(parts)


# -- the source viewer ---------------------------------------------------------------------------------
def render_page(data: bytes, fmt: str, number: int, long_side: int = 1400):
    """A stored page as a PIL image for the viewer, its longer side at most ``long_side`` pixels."""
    if fmt == "pdf":
        with _pdfium_lock:
            pdf = _open_pdf(data, "stored PDF")
            try:
                page = pdf[number - 1]
                width, height = page.get_size()
                image = page.render(scale=long_side / max(width, height, 1.0)).to_pil()
                page.close()
            finally:
                pdf.close()
        return image
    frame = _frame(_open_image(data, "stored image"), number - 1)
    frame.thumbnail((long_side, long_side))
    return frame
