"""The stable JSON shapes of ``ask`` and ``search`` (documented in the README)."""
from __future__ import annotations

from qa.answer import Answer
from qa.query import QueryPlan
from qa.retrieve import SearchHit


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


def answer_json(answer: Answer) -> dict:
    citations = [
        {"n": c.n, **_passage(c.hit), "spans": [{"start": s, "end": e} for s, e in c.spans]} for c in answer.citations
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
