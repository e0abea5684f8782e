"""Relevance judgments in the 问答 and 检索 tabs: mark a cited passage or a search result relevant /
not relevant, or the question as one wendao should abstain on (``qa.judgments`` stores them with
the knowledge base; ``wendao judgments`` exports them, ``wendao eval --judged`` evaluates on them).

The tab keeps what it last showed (the question and its passages' chunk ids, as JSON) in a
hidden textbox: a ``gr.State`` would make Gradio hold a heartbeat stream open for every page. The
passage is looked up in the knowledge base by its chunk id, so a client can only judge stored
passages, with the knowledge base's own span and text.
"""
from __future__ import annotations

import json

import gradio as gr

from corpus.errors import WendaoError
from qa.judgments import PassageJudgment, judge_passage, judge_question
from corpus.records import Chunk
from qa.retrieve import SearchHit
from qa.service import Wendao
from ui.web import render

NOTHING_SHOWN = "请先提问或检索，再标注段落。"
NO_PASSAGE = "请先选择要标注的段落。"


def shown(question: str, labelled_hits: list[tuple[str, SearchHit]]) -> tuple[str, dict]:
    """What the tab now shows (JSON for the hidden textbox) and the passage picker's update."""
    choices = [(f"{label} {hit.document.title or hit.chunk.doc_id}：{hit.chunk.text[:24]}…", index)
               for index, (label, hit) in enumerate(labelled_hits)]
    state = {"question": question, "passages": [[label, hit.chunk.chunk_id] for label, hit in labelled_hits]}
    return json.dumps(state, ensure_ascii=False), gr.update(choices=choices, value=0 if choices else None)


def _read(state: str | None) -> dict:
    try:
        value = json.loads(state or "{}")
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _stored_chunk(service: Wendao, chunk_id: str) -> Chunk | None:
    """The knowledge base's chunk of that id (its document's chunks are read by the id's prefix)."""
    doc_id = chunk_id.rpartition("#")[0]
    if not doc_id or service.document(doc_id) is None:
        return None
    return next((c for c in service.snapshot().chunks_of(doc_id) if c.chunk_id == chunk_id), None)


def mark_passage(service: Wendao, state: str | None, index: int | None, relevant: bool, origin: str) -> str:
    shown_now = _read(state)
    passages, question = shown_now.get("passages") or [], str(shown_now.get("question") or "")
    if not passages or not question:
        return render.message_html(NOTHING_SHOWN)
    try:
        index = int(index)
    except (TypeError, ValueError):
        return render.message_html(NO_PASSAGE)
    if not 0 <= index < len(passages):
        return render.message_html(NO_PASSAGE)
    label, chunk_id = (str(v) for v in passages[index][:2])
    try:
        chunk = _stored_chunk(service, chunk_id)
        if chunk is None:
            return render.message_html("这个段落已不在知识库中，无法标注。")
        judge_passage(service.kb_dir, PassageJudgment(question, chunk.doc_id, chunk.start, chunk.end,
                                                      chunk.chunk_id, chunk.text, relevant, origin))
    except (WendaoError, OSError) as error:
        return render.error_html("标注失败：", error)
    verdict = "相关" if relevant else "不相关"
    return render.message_html(f"已标注：{label} {chunk.doc_id} [{chunk.start}:{chunk.end}] 与问题{verdict}。", "info")


def mark_abstain(service: Wendao, state: str | None) -> str:
    question = str(_read(state).get("question") or "")
    if not question:
        return render.message_html(NOTHING_SHOWN)
    try:
        judge_question(service.kb_dir, question, True)
    except (WendaoError, OSError) as error:
        return render.error_html("标注失败：", error)
    return render.message_html("已标注：这个问题应当拒答（文档中没有答案）。", "info")


def build(service: Wendao, prefix: str, origin: str, state: gr.Textbox, abstain: bool) -> gr.Dropdown:
    """The controls (a passage picker, 相关 / 不相关, and 应拒答 where ``abstain``); returns the picker."""
    with gr.Accordion("标注（用于评测）", open=False, elem_id=f"{prefix}-panel"):
        with gr.Row():
            picker = gr.Dropdown(choices=[], label="段落", interactive=True, elem_id=f"{prefix}-passage", scale=4)
            relevant = gr.Button("相关", size="sm", elem_id=f"{prefix}-relevant", scale=1)
            irrelevant = gr.Button("不相关", size="sm", elem_id=f"{prefix}-irrelevant", scale=1)
            if abstain:
                should_abstain = gr.Button("应拒答", size="sm", elem_id=f"{prefix}-abstain", scale=1)
        status = gr.HTML(elem_id=f"{prefix}-status")
    relevant.click(lambda s, i: mark_passage(service, s, i, True, origin), [state, picker], status,
                   api_visibility="private", queue=False)
    irrelevant.click(lambda s, i: mark_passage(service, s, i, False, origin), [state, picker], status,
                     api_visibility="private", queue=False)
    if abstain:
        should_abstain.click(lambda s: mark_abstain(service, s), [state], status, api_visibility="private", queue=False)
    return picker
