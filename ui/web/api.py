"""The programmatic endpoints: ``/ask`` and ``/search`` return the CLI's stable JSON shapes.

They are plain functions registered with ``gr.api``, so ``gradio_client`` callers get exactly
``ui.output.answer_json`` / ``search_json`` and are unaffected by how the page lays things out.
"""
from __future__ import annotations

import gradio as gr

from corpus.errors import WendaoError
from qa.retrieve import MODES, check_k
from qa.service import Wendao
from ui.labels import web_fix, with_fix
from ui.output import answer_json, search_json
from ui.web import concurrency

EMPTY = "问题为空：请输入问题或关键词（the question is empty）"


def register(service: Wendao) -> None:
    """Add the endpoints to the Blocks being built (call inside ``gr.Blocks``)."""

    def ask(question: str) -> dict:
        """Answer a question: {question, answer, abstained, confidence, citations, timings_ms}."""
        if not (question or "").strip():
            raise gr.Error(EMPTY)
        try:
            return answer_json(service.ask(question), service.page_layout)
        except WendaoError as error:
            raise gr.Error(with_fix(str(error), web_fix(error.fix))) from None

    def search(query: str, mode: str = "hybrid", k: int = 10, doc_ids: list[str] | None = None) -> dict:
        """Rank passages: {query, mode, results: [{rank, doc_id, text, score, scores, ...}]}."""
        if not (query or "").strip():
            raise gr.Error(EMPTY)
        if mode not in MODES:
            raise gr.Error(f"unknown mode {mode!r}: choose one of {', '.join(MODES)}")
        if isinstance(doc_ids, str) or not all(isinstance(d, str) for d in doc_ids or []):
            raise gr.Error("doc_ids must be a list of document ids (strings)")
        if isinstance(k, float) and k.is_integer():
            k = int(k)  # JSON clients may send 10.0
        try:
            hits, plan = service.search(query, mode=mode, k=check_k(k), doc_ids=set(doc_ids or []) or None)
        except WendaoError as error:
            raise gr.Error(with_fix(str(error), web_fix(error.fix))) from None
        return search_json(plan, mode, hits)

    gr.api(ask, api_name="ask", **concurrency.QUESTIONS)
    gr.api(search, api_name="search", **concurrency.QUESTIONS)
