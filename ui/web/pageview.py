"""The source viewer for PDFs and images: the page itself, the cited sentence boxed on it.

The page image is rendered on demand from the original file the knowledge base keeps (see
``index/pagestore.py``), so it works after the source file has moved; the boxes come from the
stored character boxes: the cited sentence strongly, the question's terms lighter, the rest of
the passage faintly. The page's extracted text stands beside the image with the same
highlights, and links step through the pages. Request parameters are untrusted: the document
must be in the knowledge base and the page number within it.
"""
from __future__ import annotations

import html
import io
from collections import OrderedDict
from threading import Lock
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Response

from corpus.layout import Page, Rect, page_of, span_rects
from corpus.pages import render_page
from corpus.records import Document
from qa.service import Wendao
from ui.web.render import SOURCE_ROUTE, Spans, highlight, question_spans

PAGE_IMAGE_ROUTE = "wendao/page"  # relative, like SOURCE_ROUTE
LONG_SIDE = 1400  # pixels: sharp enough to read a scan, small enough to send quickly
_CACHE_SIZE = 24

STYLE = """<style>
header { z-index: 5; }
nav.pages { display: flex; gap: .75rem; align-items: center; font-size: .85rem; margin-top: .3rem; flex-wrap: wrap; }
nav.pages a { color: #4338ca; text-decoration: none; }
nav.pages a:hover { text-decoration: underline; }
nav.pages .off { color: #9ca3af; }
.pageview { display: grid; grid-template-columns: minmax(0, 3fr) minmax(0, 2fr); gap: 1rem; padding: 1rem; align-items: start; }
@media (max-width: 700px) { .pageview { grid-template-columns: 1fr; } }
#cited { scroll-margin-top: 35vh; }
.sheet { position: relative; margin: 0; border: 1px solid #d1d5db; box-shadow: 0 1px 4px rgba(0,0,0,.12); background: #fff; }
.sheet img { display: block; width: 100%; height: auto; }
.box { position: absolute; pointer-events: none; border-radius: 2px; }
.box.passage { background: rgba(99, 102, 241, .10); }
.box.term { background: rgba(250, 204, 21, .28); }
.box.answer { background: rgba(245, 158, 11, .35); outline: 2px solid #d97706; }
.box.cited-passage { outline: 2px solid #6366f1; }
.page-text { white-space: pre-wrap; word-break: break-word; font-size: .9rem; margin: 0; }
.page-text h2 { font-size: .8rem; color: #6b7280; font-weight: 500; margin: 0 0 .4rem; }
.ocr-note { color: #6b7280; font-size: .75rem; }
</style>"""


def _clip(spans: Spans, page: Page) -> Spans:
    """Spans of the document text, cut to one page and made relative to its text."""
    return [(max(s, page.start) - page.start, min(e, page.end) - page.start) for s, e in spans if s < page.end and e > page.start]


def _boxes(layout: list[Page], spans: Spans, number: int, label: str, anchor: bool = False) -> str:
    """Highlight rectangles over the page image (percentages: they scale with the image).
    With ``anchor``, the first one is ``#cited``, where a citation link scrolls to."""
    rects: list[Rect] = [r for s, e in spans for r in span_rects(layout, s, e) if r.page == number]
    ids = [' id="cited"' if anchor and not index else "" for index in range(len(rects))]
    return "".join(
        f'<div class="box {label}"{id_attr} style="left:{r.x0 * 100:.3f}%;top:{r.y0 * 100:.3f}%;'
        f'width:{(r.x1 - r.x0) * 100:.3f}%;height:{(r.y1 - r.y0) * 100:.3f}%"></div>'
        for id_attr, r in zip(ids, rects)
    )


def _here(query: dict, number: int) -> str:
    """This viewer at page ``number`` (0: the cited page), relative to the viewer's own URL."""
    return f"{SOURCE_ROUTE.rsplit('/', 1)[-1]}?{urlencode({**query, 'page': number})}#cited"


def _link(query: dict, number: int, label: str, enabled: bool, css: str) -> str:
    if not enabled:
        return f'<span class="off {css}">{label}</span>'
    return f'<a class="{css}" href="{html.escape(_here(query, number))}">{label}</a>'


def page_body(document: Document, layout: list[Page], start: int, end: int, answer: Spans, question: str, number: int) -> str:
    """The viewer's body for a paged document, showing page ``number`` (0: the cited page)."""
    cited = answer[0][0] if answer else start
    page = next((p for p in layout if p.number == number), None) or page_of(layout, cited) or layout[0]
    text = document.text
    terms = [(page.start + s, page.start + e) for s, e in question_spans(question, text[page.start : page.end])]
    passage = [(start, end)] if end > start else []
    overlays = _boxes(layout, passage, page.number, "passage") + _boxes(layout, terms, page.number, "term")
    boxed = _boxes(layout, answer, page.number, "answer", anchor=True) or _boxes(layout, passage, page.number, "cited-passage", anchor=True)
    overlays += boxed
    layers = {"passage": _clip(passage, page), "term": _clip(terms, page), "answer": _clip(answer, page)}
    query = {"doc": document.doc_id, "start": start, "end": end, "hl": ",".join(f"{s}-{e}" for s, e in answer), "q": question}
    total = len(layout)
    nav = (
        f'<nav class="pages">{_link(query, page.number - 1, "‹ 上一页", page.number > 1, "prev")}'
        f'<span class="at">第 {page.number} / {total} 页</span>'
        f'{_link(query, page.number + 1, "下一页 ›", page.number < total, "next")}'
        f'{_link(query, 0, "回到引用处", page.number != (page_of(layout, cited) or page).number, "back")}'
        f'<a class="wide" href="{html.escape(_here(query, page.number))}" target="_blank">在新窗口打开</a></nav>'
    )
    image = f"{PAGE_IMAGE_ROUTE.rsplit('/', 1)[-1]}?{urlencode({'doc': document.doc_id, 'page': page.number, 'v': document.sha256[:16]})}"
    how = "OCR 识别" if page.ocr else "PDF 文字层"
    meta = " · ".join(html.escape(p) for p in (document.doc_id, document.date or "", document.doc_number or "") if p)
    return (
        f'{STYLE}<header><h1>{html.escape(document.title or document.doc_id)}</h1><div class="meta">{meta}</div>{nav}</header>'
        f'<div class="pageview" data-page="{page.number}">'
        f'<figure class="sheet" style="aspect-ratio:{page.width:.2f}/{page.height:.2f}">'
        f'<img class="page-image" src="{html.escape(image)}" alt="第 {page.number} 页">{overlays}</figure>'
        f'<div class="doc page-text"><h2>第 {page.number} 页文字 <span class="ocr-note">（{how}）</span></h2>'
        f"{highlight(text[page.start : page.end], layers)}</div></div>"
    )


class _Rendered:
    """Recently shown pages as PNG bytes (rendering a page takes a fraction of a second)."""

    def __init__(self, size: int = _CACHE_SIZE):
        self.size = size
        self._items: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self._lock = Lock()

    def get(self, key: tuple[str, int], make) -> bytes:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = make()
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value


def page_image_router(service: Wendao) -> APIRouter:
    router = APIRouter()
    cache = _Rendered()

    @router.get(f"/{PAGE_IMAGE_ROUTE}", include_in_schema=False)
    def page_image(doc: str = "", page: int = Query(1, ge=1, le=100_000)) -> Response:
        document = service.snapshot().documents.get(doc)
        if document is None or not document.pages or page > document.pages:
            return Response("no such page", status_code=404, media_type="text/plain; charset=utf-8")

        def render() -> bytes:
            data = service.original(doc)
            if data is None:
                raise LookupError
            buffer = io.BytesIO()
            render_page(data, document.format, page, LONG_SIDE).save(buffer, format="PNG", optimize=False)
            return buffer.getvalue()

        try:
            png = cache.get((document.sha256, page), render)
        except LookupError:
            return Response("the original file is not in the knowledge base", status_code=404, media_type="text/plain; charset=utf-8")
        except Exception:  # noqa: BLE001 - a page that fails to render is a missing image, not a server error
            return Response("the page could not be rendered", status_code=500, media_type="text/plain; charset=utf-8")
        return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=86400"})

    return router
