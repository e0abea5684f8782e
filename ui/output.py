"""The stable JSON shapes of ``ask``, ``search`` and ``compact`` (documented in the README)."""
from __future__ import annotations

from dataclasses import asdict
from typing import Callable

from corpus.layout import Page, page_of, span_rects
from index.segments import CompactReport
from qa.answer import Answer, Citation
from qa.query import QueryPlan
from qa.retrieve import SearchHit

PageLookup = Callable[[str], "list[Page] | None"]  # doc_id -> its pages (PDFs and images)


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)


def _passage(hit: SearchHit) -> dict:
    """Where a passage comes from; ``start``/``end`` are offsets into the document's text."""
    return {
        "doc_id": hit.chunk.doc_id,
        "title": hit.document.title,
        "source": hit.document.source,
        "heading": hit.chunk.heading,
        "start": hit.chunk.start,
        "end": hit.chunk.end,
        "text": hit.chunk.text,
        "score": _round(hit.score),
        "scores": {"dense": _round(hit.dense), "lexical": _round(hit.lexical)},
    }


def _on_the_page(citation: Citation, pages: PageLookup | None) -> dict:
    """For a PDF or image: the page of the cited sentence and its rectangles on that page
    (``boxes``: fractions of the page's width and height, origin top left, one per line)."""
    layout = pages(citation.hit.chunk.doc_id) if pages else None
    if not layout:
        return {}
    spans = citation.spans or [(citation.hit.chunk.start, citation.hit.chunk.end)]
    page = page_of(layout, spans[0][0])
    rects = [rect for start, end in spans for rect in span_rects(layout, start, end)]
    return {"page": page.number if page else None, "boxes": [rect.to_json() for rect in rects]}


def answer_json(answer: Answer, pages: PageLookup | None = None) -> dict:
    """``pages`` (the service's ``page_layout``) adds ``page`` and ``boxes`` to PDF/image citations."""
    citations = [
        {"n": c.n, **_passage(c.hit), "spans": [{"start": s, "end": e} for s, e in c.spans], **_on_the_page(c, pages)}
        for c in answer.citations
    ]
    return {
        "question": answer.question,
        "answer": answer.text,
        "abstained": answer.abstained,
        "confidence": _round(answer.confidence),
        "citations": citations,
        "timings_ms": answer.timings_ms,
    }


def search_json(plan: QueryPlan, mode: str, hits: list[SearchHit]) -> dict:
    return {
        "query": plan.text,
        "mode": mode,
        "results": [
            {
                "rank": hit.rank,
                "chunk_id": hit.chunk.chunk_id,
                **_passage(hit),
                "matches": [
                    {"start": hit.chunk.start + s, "end": hit.chunk.start + e}
                    for s, e in plan.term_spans(hit.chunk.folded)
                ],
            }
            for hit in hits
        ],
    }


def compact_json(report: CompactReport) -> dict:
    """``wendao compact --json``: merges, segments before/after, dropped and live chunks."""
    return asdict(report)
