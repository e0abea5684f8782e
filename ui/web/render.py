"""HTML for answers, citation cards, search results and the source viewer.

Pure functions of backend records, so the page and the tests see the same markup. Every piece of
document text goes through ``html.escape``: documents are untrusted input.
"""
from __future__ import annotations

import html
from urllib.parse import urlencode

from corpus.errors import WendaoError
from corpus.folding import fold
from qa.answer import Answer, Citation
from qa.query import QueryError, QueryPlan, plan_query
from qa.retrieve import SearchHit
from ui.labels import error_text, web_fix, with_fix

SOURCE_ROUTE = "wendao/source"  # relative, so the links work under any root path
ASK_FRAME = "wd-source"  # the <iframe name> a tab's links load into (one viewer per tab)
SEARCH_FRAME = "wd-source-search"

TIMING_LABELS = {
    "fold": "归一化",
    "embed": "问题编码",
    "lexical": "关键词检索",
    "dense": "向量检索",
    "fusion": "融合排序",
    "answer": "抽取答案",
    "total": "总计",
    "load": "加载模型与索引",
}

Spans = list[tuple[int, int]]


def highlight(text: str, layers: dict[str, Spans], anchor: str | None = None) -> str:
    """``text`` escaped, with each labelled span layer wrapped in ``<mark class="label">``.

    Overlapping layers give one mark with both classes; the first mark of layer ``anchor`` gets
    ``id="cited"`` so a link can scroll to it.
    """
    size = len(text)
    cuts = {0, size}
    for spans in layers.values():
        cuts.update(min(max(p, 0), size) for span in spans for p in span)
    bounds = sorted(cuts)
    parts: list[str] = []
    anchored = False
    for start, end in zip(bounds, bounds[1:]):
        piece = html.escape(text[start:end])
        labels = [name for name, spans in layers.items() if any(s <= start and end <= e for s, e in spans)]
        if not labels:
            parts.append(piece)
            continue
        id_attr = ""
        if anchor in labels and not anchored:
            id_attr, anchored = ' id="cited"', True
        parts.append(f'<mark class="{" ".join(labels)}"{id_attr}>{piece}</mark>')
    return "".join(parts)


def source_url(doc_id: str, start: int, end: int, spans: Spans, question: str = "") -> str:
    """Link to the source viewer: the passage [start, end) with ``spans`` highlighted."""
    query = {"doc": doc_id, "start": start, "end": end, "hl": ",".join(f"{s}-{e}" for s, e in spans)}
    if question:
        query["q"] = question
    return f"{SOURCE_ROUTE}?{urlencode(query)}#cited"


def question_spans(question: str, passage: str) -> Spans:
    """Where a question from a link (``q``, maybe empty) occurs in ``passage`` (offsets into it)."""
    try:
        plan = plan_query(question)
    except QueryError:
        return []
    return plan.term_spans(fold(passage))


def _link(url: str, label: str, css: str, frame: str, title: str = "") -> str:
    title_attr = f' title="{html.escape(title)}"' if title else ""
    return f'<a class="{css}" href="{html.escape(url)}" target="{frame}"{title_attr}>{label}</a>'


def _fmt(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def scores_html(hit: SearchHit, dense_weight: float | None) -> str:
    """The score breakdown: why this passage ranked where it did."""
    if dense_weight is None:
        explain = "仅用一种检索：融合分即该检索的分数"
    else:
        dense_weight = round(dense_weight, 2)
        explain = f"融合分 = {dense_weight:g}×向量分(本次候选内归一化) + {round(1 - dense_weight, 2):g}×关键词分(归一化)"
    return (
        f'<div class="wd-scores" title="{html.escape(explain)}">'
        f'<span class="wd-score wd-fused">融合 <b>{_fmt(hit.score)}</b></span>'
        f'<span class="wd-score wd-dense">向量 <b>{_fmt(hit.dense)}</b></span>'
        f'<span class="wd-score wd-lexical">关键词 BM25 <b>{_fmt(hit.lexical, 2)}</b></span>'
        "</div>"
    )


def _heading(hit: SearchHit) -> str:
    return f'<div class="wd-heading">{html.escape(hit.chunk.heading)}</div>' if hit.chunk.heading else ""


def passage_html(hit: SearchHit, plan: QueryPlan, answer_spans: Spans = ()) -> str:
    """The passage with the answer sentences and the question's terms marked."""
    base = hit.chunk.start
    layers = {
        "answer": [(s - base, e - base) for s, e in answer_spans],
        "term": plan.term_spans(hit.chunk.folded),
    }
    return f'<div class="wd-passage">{highlight(hit.chunk.text, layers)}</div>'


def citation_card(citation: Citation, plan: QueryPlan) -> str:
    hit = citation.hit
    url = source_url(hit.chunk.doc_id, hit.chunk.start, hit.chunk.end, citation.spans, plan.text)
    return (
        f'<div class="wd-card" id="wd-cite-{citation.n}" data-doc="{html.escape(hit.chunk.doc_id)}">'
        f'<div class="wd-card-head"><span class="wd-n">[{citation.n}]</span>'
        f'<span class="wd-title">{html.escape(hit.document.title or hit.chunk.doc_id)}</span>'
        f'<span class="wd-doc-id">{html.escape(hit.chunk.doc_id)}</span></div>'
        f"{_heading(hit)}{passage_html(hit, plan, citation.spans)}"
        f'<div class="wd-card-foot">{scores_html(hit, plan.dense_weight)}'
        f'{_link(url, "查看原文", "wd-open", ASK_FRAME)}</div></div>'
    )


def answer_html(answer: Answer) -> str:
    """The answer with a clickable [n] after each sentence, or an explicit abstention."""
    if answer.abstained:
        return (
            '<div class="wd-abstain"><b>无法回答</b>：知识库中没有找到足够可靠的依据'
            f"（置信度 {answer.confidence:.2f}，低于回答阈值 {answer.threshold:.2f}）。"
            "可以换一种说法，或到“检索”页查看最接近的段落。</div>"
        )
    number = {c.hit.chunk.chunk_id: c.n for c in answer.citations}
    parts = []
    for sentence in answer.sentences:
        hit = sentence.hit
        n = number[hit.chunk.chunk_id]
        url = source_url(hit.chunk.doc_id, hit.chunk.start, hit.chunk.end, [(sentence.start, sentence.end)], answer.question)
        parts.append(html.escape(sentence.text) + _link(url, f"[{n}]", "wd-marker", ASK_FRAME, f"查看引用 {n} 的原文"))
    return (
        f'<div class="wd-answer">{"".join(parts)}</div>'
        f'<div class="wd-meta">置信度 {answer.confidence:.2f} · 引用 {len(answer.citations)} 处</div>'
    )


def timings_html(timings_ms: dict[str, float]) -> str:
    items = [f"{TIMING_LABELS.get(name, name)} {value:.0f} ms" for name, value in timings_ms.items()]
    return f'<div class="wd-timings">用时：{" · ".join(items)}</div>' if items else ""


def cards_html(answer: Answer) -> str:
    if not answer.citations:
        return ""
    cards = "".join(citation_card(c, answer.plan) for c in answer.citations)
    return f'<div class="wd-cards">{cards}</div>'


def search_results_html(plan: QueryPlan, hits: list[SearchHit]) -> str:
    if not hits:
        return '<div class="wd-empty">没有找到匹配的段落。</div>' + timings_html(plan.timings_ms)
    cards = []
    for hit in hits:
        url = source_url(hit.chunk.doc_id, hit.chunk.start, hit.chunk.end, [], plan.text)
        cards.append(
            f'<div class="wd-card wd-result" data-doc="{html.escape(hit.chunk.doc_id)}">'
            f'<div class="wd-card-head"><span class="wd-n">#{hit.rank}</span>'
            f'<span class="wd-title">{html.escape(hit.document.title or hit.chunk.doc_id)}</span>'
            f'<span class="wd-doc-id">{html.escape(hit.chunk.doc_id)}</span></div>'
            f"{_heading(hit)}{passage_html(hit, plan)}"
            f'<div class="wd-card-foot">{scores_html(hit, plan.dense_weight)}'
            f'{_link(url, "查看原文", "wd-open", SEARCH_FRAME)}</div></div>'
        )
    return timings_html(plan.timings_ms) + f'<div class="wd-cards">{"".join(cards)}</div>'


def error_html(prefix: str, error: Exception) -> str:
    """A failure as a visible notice: ``prefix``, the message, and the fix in the web app's words."""
    fix = web_fix(error.fix) if isinstance(error, WendaoError) else ""
    return message_html(prefix + with_fix(error_text(error), fix))


def message_html(text: str, kind: str = "error") -> str:
    """A visible notice in place of a result (``kind``: error, info)."""
    return f'<div class="wd-notice wd-{kind}">{html.escape(text)}</div>'


def viewer_frame_html(frame: str) -> str:
    """The source viewer: citation links load into this frame by its name."""
    return f'<iframe name="{frame}" class="wd-viewer" src="{SOURCE_ROUTE}" title="原文"></iframe>'
