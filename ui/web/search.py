"""检索 tab: ranked passages for a query, by mode, k and document, with each score shown."""
from __future__ import annotations

import gradio as gr

from corpus.errors import WendaoError
from qa.retrieve import SearchHit
from qa.service import Wendao
from ui.web import concurrency, judge, render

MODE_CHOICES = [("混合（向量 + 关键词）", "hybrid"), ("向量（语义）", "dense"), ("关键词（BM25）", "lexical")]
EMPTY_QUERY = "请输入检索内容：查询不能为空。"


def document_choices(service: Wendao) -> list[tuple[str, str]]:
    """(label, doc id) for every document, for filters and removal pickers."""
    documents = sorted((row.document for row in service.documents()), key=lambda d: d.doc_id)
    return [(f"{d.title or d.doc_id}（{d.doc_id}）", d.doc_id) for d in documents]


def _search(service: Wendao, query: str, mode: str, k: float, doc_ids: list[str] | None) -> tuple[str, list[SearchHit]]:
    if not (query or "").strip():
        return render.message_html(EMPTY_QUERY), []
    try:
        hits, plan = service.search(query, mode=mode, k=int(k), doc_ids=set(doc_ids or []) or None)
    except WendaoError as error:
        return render.message_html(f"检索失败：{error}"), []
    return render.search_results_html(plan, hits), hits


def search(service: Wendao, query: str, mode: str, k: float, doc_ids: list[str] | None) -> str:
    return _search(service, query, mode, k, doc_ids)[0]


def search_and_offer_judging(service: Wendao, query: str, mode: str, k: float, doc_ids: list[str] | None) -> tuple:
    """``search``, plus its results offered for judging."""
    results, hits = _search(service, query, mode, k, doc_ids)
    state, picker = judge.shown((query or "").strip(), [(f"#{h.rank}", h) for h in hits])
    return results, state, picker


def build(service: Wendao) -> gr.Dropdown:
    """The tab's components and events; returns the document filter so the app can refresh it."""
    with gr.Row(equal_height=False):
        with gr.Column(scale=5):
            query = gr.Textbox(label="检索内容", placeholder="关键词或问题", elem_id="wd-search-query")
            with gr.Row():
                mode = gr.Radio(MODE_CHOICES, value="hybrid", label="检索方式", elem_id="wd-search-mode")
                k = gr.Slider(1, 50, value=10, step=1, label="返回段落数 k", elem_id="wd-search-k")
            documents = gr.Dropdown(
                choices=document_choices(service),
                multiselect=True,
                label="只在这些文档中检索（留空 = 全部）",
                elem_id="wd-search-docs",
            )
            submit = gr.Button("检索", variant="primary", elem_id="wd-search")
            shown = gr.Textbox(visible=False)  # what is shown, for judging (ui.web.judge)
            picker = judge.build(service, "wd-search-judge", "search", shown, abstain=False)
            results = gr.HTML(elem_id="wd-search-results")
        with gr.Column(scale=4):
            gr.HTML(render.viewer_frame_html(render.SEARCH_FRAME), elem_id="wd-search-viewer")
    gr.on(
        [submit.click, query.submit],
        lambda text, mode_, k_, docs: search_and_offer_judging(service, text, mode_, k_, docs),
        inputs=[query, mode, k, documents],
        outputs=[results, shown, picker],
        api_visibility="private",
        **concurrency.QUESTIONS,
    )
    return documents
