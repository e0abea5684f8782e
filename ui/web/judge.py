"""Relevance judgments in the 问答 and 检索 tabs: mark a cited passage or a search result relevant /
not relevant, or the question as one wendao should abstain on (``qa.judgments`` stores them with
the knowledge base; ``wendao judgments`` exports them, ``wendao eval --judged`` evaluates on them).

The tab keeps what it last showed (the question and its passages) in a ``gr.State``; the
controls name a passage by its number there, so a judgment always refers to a passage the user saw.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import gradio as gr

from corpus.errors import WendaoError
from qa.judgments import PassageJudgment, judge_passage, judge_question
from qa.retrieve import SearchHit
from qa.service import Wendao
from ui.web import render

NOTHING_SHOWN = "请先提问或检索，再标注段落。"
NO_PASSAGE = "请先选择要标注的段落。"


@dataclass
class Shown:
    """What a tab last showed: the question and its passages (label, hit) in display order."""

    question: str = ""
    passages: list[tuple[str, SearchHit]] = field(default_factory=list)


def shown(question: str, labelled_hits: list[tuple[str, SearchHit]]) -> tuple[Shown, dict]:
    """The tab's new state and the passage picker's update."""
    choices = [(f"{label} {hit.document.title or hit.chunk.doc_id}：{hit.chunk.text[:24]}…", index)
               for index, (label, hit) in enumerate(labelled_hits)]
    return Shown(question, labelled_hits), gr.update(choices=choices, value=0 if choices else None)


def mark_passage(service: Wendao, state: Shown | None, index: int | None, relevant: bool, origin: str) -> str:
    if state is None or not state.passages:
        return render.message_html(NOTHING_SHOWN)
    if index is None or not 0 <= int(index) < len(state.passages):
        return render.message_html(NO_PASSAGE)
    label, hit = state.passages[int(index)]
    chunk = hit.chunk
    try:
        judge_passage(service.kb_dir, PassageJudgment(state.question, chunk.doc_id, chunk.start, chunk.end,
                                                      chunk.chunk_id, chunk.text, relevant, origin))
    except (WendaoError, OSError) as error:
        return render.error_html("标注失败：", error)
    verdict = "相关" if relevant else "不相关"
    return render.message_html(f"已标注：{label} {chunk.doc_id} [{chunk.start}:{chunk.end}] 与问题{verdict}。", "info")


def mark_abstain(service: Wendao, state: Shown | None) -> str:
    if state is None or not state.question:
        return render.message_html(NOTHING_SHOWN)
    try:
        judge_question(service.kb_dir, state.question, True)
    except (WendaoError, OSError) as error:
        return render.error_html("标注失败：", error)
    return render.message_html("已标注：这个问题应当拒答（文档中没有答案）。", "info")


def build(service: Wendao, prefix: str, origin: str, state: gr.State, abstain: bool) -> gr.Dropdown:
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
