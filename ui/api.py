"""The programmatic endpoints: ``/ask`` and ``/search`` return the CLI's stable JSON shapes.

They are plain functions registered with ``gr.api``, so ``gradio_client`` callers get exactly
``qa.output.answer_json`` / ``search_json`` and are unaffected by how the page lays things out.
"""
from __future__ import annotations

import gradio as gr

from index.store import KnowledgeBaseError
from qa.output import answer_json, search_json
from qa.retrieve import MODES, QueryError
from qa.service import Wendao
from ui import queue

EMPTY = "问题为空：请输入问题或关键词（the question is empty）"


def register(service: Wendao) -> None:
    """Add the endpoints to the Blocks being built (call inside ``gr.Blocks``)."""

    def ask(question: str) -> dict:
        """Answer a question: {question, answer, abstained, confidence, citations, timings_ms}."""
        if not (question or "").strip():
            raise gr.Error(EMPTY)
        try:
            return answer_json(service.ask(question), service.page_layout)
        except (QueryError, KnowledgeBaseError) as error:
            raise gr.Error(str(error)) from None

    def search(query: str, mode: str = "hybrid", k: int = 10, doc_ids: list[str] | None = None) -> dict:
        """Rank passages: {query, mode, results: [{rank, doc_id, text, score, scores, ...}]}."""
        if not (query or "").strip():
            raise gr.Error(EMPTY)
        if mode not in MODES:
            raise gr.Error(f"unknown mode {mode!r}: choose one of {', '.join(MODES)}")
        try:
            hits, plan = service.search(query, mode=mode, k=int(k), doc_ids=set(doc_ids or []) or None)
        except (QueryError, KnowledgeBaseError) as error:
            raise gr.Error(str(error)) from None
        return search_json(plan.text, mode, hits)

    gr.api(ask, api_name="ask", **queue.QUESTIONS)
    gr.api(search, api_name="search", **queue.QUESTIONS)
