"""The source viewer: one stored document as a page, the cited span highlighted and scrolled to.

Served as a plain route beside the Gradio app (not a Gradio event), so a citation link opens at
once in the viewer frame or a new tab, without going through the queue. It reads only the text
stored in the index, so it works after the original file has moved.
"""
from __future__ import annotations

import html

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse

from qa.service import Wendao
from ui.web.pageview import page_body, page_image_router
from ui.web.render import SOURCE_ROUTE, Spans, highlight, question_spans

PAGE = """<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: "Noto Sans CJK SC", "PingFang SC", "Microsoft YaHei", sans-serif; margin: 0;
       color: #1f2937; background: #fff; line-height: 1.75; }}
header {{ position: sticky; top: 0; background: #f8fafc; border-bottom: 1px solid #e5e7eb;
          padding: .6rem 1rem; }}
header h1 {{ font-size: 1.05rem; margin: 0; }}
header .meta {{ color: #6b7280; font-size: .8rem; }}
.doc {{ white-space: pre-wrap; word-break: break-word; padding: 1rem; font-size: .95rem; }}
mark {{ background: none; color: inherit; }}
mark.passage {{ background: #eef2ff; }}
mark.term {{ background: #fef3c7; }}
mark.answer {{ background: #fde68a; box-shadow: inset 0 -2px #d97706; }}
#cited {{ scroll-margin-top: 30vh; }}
.empty {{ color: #6b7280; padding: 2rem 1rem; }}
</style></head><body>{body}</body></html>"""


def parse_spans(value: str) -> Spans:
    """``"12-30,41-55"`` → [(12, 30), (41, 55)]; malformed pieces are ignored (it is a link)."""
    spans = []
    for piece in value.split(","):
        start, _, end = piece.partition("-")
        if start.isdigit() and end.isdigit() and int(start) < int(end):
            spans.append((int(start), int(end)))
    return spans


def page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(PAGE.format(title=html.escape(title), body=body), status_code=status)


def source_page(service: Wendao, doc: str, start: int, end: int, hl: str, q: str, page_number: int = 0) -> HTMLResponse:
    if not doc:
        return page("原文", '<p class="empty">点击答案中的 [n] 或引用卡片上的“查看原文”，在这里查看原文。</p>')
    document = service.document(doc)
    if document is None:
        return page("找不到文档", f'<p class="empty">知识库中没有文档 {html.escape(doc)}（可能已被删除）。</p>', 404)
    text = document.text
    start, end = max(0, min(start, len(text))), max(0, min(end, len(text)))
    answer = parse_spans(hl)
    layout = service.page_layout(doc) if document.pages else None
    if layout:  # a PDF or an image: show the page with the citation boxed on it
        return page(document.title or document.doc_id, page_body(document, layout, start, end, answer, q, page_number))
    layers = {
        "passage": [(start, end)] if end > start else [],
        "term": [(start + s, start + e) for s, e in question_spans(q, text[start:end])],
        "answer": answer,
    }
    meta = " · ".join(
        html.escape(part)
        for part in (document.doc_id, document.date or "", document.doc_number or "", f"位置 {start}–{end}")
        if part
    )
    body = (
        f'<header><h1>{html.escape(document.title or document.doc_id)}</h1><div class="meta">{meta}</div></header>'
        f'<div class="doc">{highlight(text, layers, anchor="answer" if answer else "passage")}</div>'
    )
    return page(document.title or document.doc_id, body)


def source_router(service: Wendao) -> APIRouter:
    router = APIRouter()

    @router.get(f"/{SOURCE_ROUTE}", response_class=HTMLResponse, include_in_schema=False)
    def show(
        doc: str = "",
        start: int = Query(0, ge=0),
        end: int = Query(0, ge=0),
        hl: str = "",
        q: str = "",
        page: int = Query(0, ge=0, le=100_000),
    ) -> HTMLResponse:
        return source_page(service, doc, start, end, hl, q, page)

    router.include_router(page_image_router(service))

    return router
