"""Retrieval and answer evaluation of a test set, modes side by side.

Two kinds of gold are supported, so any chunking can be compared fairly:
- ``answers``: a retrieved chunk is relevant when it contains a gold string after folding;
- ``relevant`` (or BEIR qrels): document ids; a document ranks where its best chunk ranks.
Metrics come from ranx. Questions marked ``"off_topic": true`` measure abstention instead.
The judging here (``gold``, ``ranking``, ``answer_hit``, ``metric_scores``) is also what the
benchmarks use, so every figure in the README is judged the same way. Test sets are read by
``qa.testsets``; tables are drawn by ``qa.eval_report``. Every question's ranking and answer is
kept (``EvalRun``), so a run can be saved (``qa.runstore``), exported (``qa.trec``) and compared
(``qa.compare``) without asking again.
"""
from __future__ import annotations

import hashlib
import re
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path

import numpy as np
from platformdirs import user_cache_dir

from corpus.chunking import CHUNKER_VERSION, ChunkSettings
from corpus.errors import IngestError
from corpus.folding import fold
from corpus.pipeline import prepare_text
from corpus.progress import ProgressCallback
from corpus.records import Chunk
from index.embedder import Embedder
from index.model import DEFAULT_MODEL
from index.segments import FORMAT_VERSION
from qa.jsonl import DataFileError
from qa.query import plan_query
from qa.service import Wendao
from qa.judgments import judged_queries
from qa.workbench_db import location_name
from qa.testsets import EvalQuery, JudgedPassage, Passage, load_beir, load_queries, read_qrels

RANKED = 100  # chunks retrieved per query for the metrics
METRICS = ("mrr@10", "ndcg@10", "recall@1", "recall@3", "recall@5", "recall@10", "hit_rate@5")
NO_GOLD_CHUNK = "<answer not in any chunk>"  # the gold of a query whose answer no chunk holds
_NOTHING = "\0"  # the unit an empty ranking or judgment gets for ranx: no chunk or document has this id
SNIPPETS = 10  # chunk texts a run keeps per question (to show rankings side by side)
SNIPPET_CHARS = 160


@dataclass
class Failure:
    """An on-topic question whose gold was not in the top 5, with what came back instead."""

    id: str
    question: str
    mode: str
    gold: list[str]
    retrieved: list[str]


@dataclass(frozen=True)
class Ranked:
    """One retrieved chunk of a question's ranking (what a run keeps of a hit)."""

    chunk_id: str
    doc_id: str
    score: float


@dataclass
class QuestionResult:
    """One question in one mode: its ranking (``RANKED`` chunks), the answer and what it cited."""

    ranked: list[Ranked]
    answer: str = ""
    confidence: float = 0.0
    abstained: bool = False
    cited: list[str] = field(default_factory=list)  # chunk ids of the citations, in order
    snippets: dict[str, str] = field(default_factory=dict)  # chunk id -> text, for the top ``SNIPPETS``


@dataclass
class EvalRun:
    """Everything one evaluation produced, per mode and question, with the knowledge base it ran
    on: enough to recompute every metric, export TREC files and compare with another run."""

    queries: list[EvalQuery]
    gold: dict[str, dict[str, int]]  # on-topic query id -> relevant units (a qrels row)
    results: dict[str, dict[str, QuestionResult]]  # mode -> query id -> result
    metrics: dict[str, dict[str, float | None]]
    kb: str = ""
    generation: str = ""
    settings: dict = field(default_factory=dict)
    test_set: str = ""
    created: str = ""

    @property
    def modes(self) -> list[str]:
        return list(self.results)

    @cached_property
    def _by_id(self) -> dict[str, EvalQuery]:
        return {q.id: q for q in self.queries}

    def query(self, query_id: str) -> EvalQuery:
        return self._by_id[query_id]

    def units(self, mode: str, query_id: str, depth: int | None = None) -> dict[str, float]:
        """The ranked units (chunks, or documents) of one question, as ranx reads them."""
        return ranking(self.query(query_id), self.results[mode][query_id].ranked, depth)

    def ranx_run(self, mode: str) -> dict[str, dict[str, float]]:
        return {qid: self.units(mode, qid) for qid in self.gold}


@dataclass
class EvalReport:
    queries: int
    off_topic: int
    results: dict[str, dict[str, float]]
    failures: list[Failure] = field(default_factory=list)
    knowledge_base: str = ""
    run: EvalRun | None = None

    def to_json(self) -> dict:
        return {"queries": self.queries, "off_topic": self.off_topic, "results": self.results}


# -- the knowledge base of a test set -------------------------------------------------------
def beir_kb_dir(folder: Path, chunk_size: int | None = None, model: str | None = None, label: str | None = None) -> Path:
    """A cache folder per corpus file content and settings, so a set is embedded only once
    (default chunk size and model unless named). ``label`` only makes the name readable (an
    uploaded zip's name: its unpacked folder is a fresh temporary one every time)."""
    digest = hashlib.sha256((folder / "corpus.jsonl").read_bytes())
    digest.update(_settings_key(chunk_size, model))
    label = label or f"{folder.parent.name}-{folder.name}"
    return eval_cache() / f"{re.sub(r'[^0-9A-Za-z_.-]+', '_', label)[:60]}-{digest.hexdigest()[:16]}"


def beir_service(service: Wendao, folder: Path, label: str | None = None) -> Wendao:
    """A BEIR folder's own cached knowledge base, with ``service``'s model and settings."""
    return service.sibling(beir_kb_dir(folder, service.chunking.size, service.model_name, label))


def seeds_kb_dir() -> Path:
    """The cached knowledge base of the bundled documents that the benchmarks share (it is
    built from them on first use, like any missing knowledge base); a new chunker or index
    format gets a new folder instead of a stale one."""
    return eval_cache() / f"seeds-{ChunkSettings().size}-{hashlib.sha256(_settings_key()).hexdigest()[:8]}"


def _settings_key(chunk_size: int | None = None, model: str | None = None) -> bytes:
    return f"{chunk_size or ChunkSettings().size}|{model or DEFAULT_MODEL}|{CHUNKER_VERSION}|{FORMAT_VERSION}".encode()


def eval_cache() -> Path:
    return Path(user_cache_dir("wendao")) / "eval"


def build_beir_kb(service: Wendao, corpus: list[Passage], progress: ProgressCallback | None = None) -> list[str]:
    """Ingest a BEIR corpus (once); returns the ids of passages skipped as having no content.

    A build that was interrupted carries on where its last commit left it (passages already in
    the knowledge base are not prepared again, and the embedding cache keeps the batch in
    flight), rather than leaving a half-built knowledge base that later runs would score."""
    done = set(service.store.catalog().documents) if service.store.exists() else set()
    prepared, skipped = [], []
    for passage in (p for p in corpus if p.id not in done):
        try:
            prepared.append(prepare_text(passage.text, passage.id, passage.id, service.chunking, title=passage.title or None))
        except IngestError:
            skipped.append(passage.id)  # e.g. a web page that is only a "join this group" button
    if prepared:
        service.ingestor().ingest_prepared(prepared, progress=progress)
    return skipped


def open_test_set(
    path: Path,
    kb_dir: Path | None = None,
    model: str | None = None,
    progress: ProgressCallback | None = None,
    allow_network: bool = False,
    chunking: ChunkSettings | None = None,
    embedder: Embedder | None = None,
    qrels: Path | None = None,
) -> tuple[Wendao, list[EvalQuery]]:
    """The service to ask and the questions of a test set: a JSONL query file against a knowledge
    base (its gold from ``qrels`` when named), or a BEIR folder against its own corpus (indexed
    once into a cache folder keyed by its content and the settings, unless ``kb_dir`` is named)."""
    path = Path(path)
    if not path.exists():
        raise DataFileError(f"{path}: no such query file or folder")
    settings = {"model": model, "allow_network": allow_network, "chunking": chunking, "embedder": embedder}
    if not path.is_dir():
        queries = load_queries(path, gold_required=qrels is None)
        judged = read_qrels(qrels) if qrels else None  # read (and checked) before anything is opened
        service = Wendao(kb_dir=kb_dir, **settings)
        return service, with_qrels(queries, judged, service, qrels) if judged is not None else queries
    corpus, queries = load_beir(path)
    size = chunking.size if chunking else None
    service = Wendao(kb_dir=kb_dir or beir_kb_dir(path, size, model), **settings)
    build_beir_kb(service, corpus, progress)
    return service, queries


def with_qrels(queries: list[EvalQuery], judged: dict[str, dict[str, int]], service: Wendao, source: Path) -> list[EvalQuery]:
    """Queries judged by a qrels file: its ids that are chunk ids of the knowledge base (as
    ``--qrels-out`` writes them) judge chunks, the others documents. Queries without a positive
    judgment are dropped, unless off-topic."""
    chunk_ids = {c.chunk_id for c in service.snapshot().chunks}
    kept = []
    for query in queries:
        relevant = [unit for unit, grade in judged.get(query.id, {}).items() if grade > 0]
        if query.off_topic:
            kept.append(query)
        elif relevant:
            chunks = [u for u in relevant if u in chunk_ids]
            kept.append(EvalQuery(query.id, query.question, relevant=[u for u in relevant if u not in chunk_ids],
                                  relevant_chunks=chunks, by_documents=not chunks))
    if not kept:
        raise DataFileError(f"{source}: judges none of the questions' ids")
    return kept


def evaluate_file(
    path: Path | None,
    kb_dir: Path | None = None,
    model: str | None = None,
    modes: list[str] | None = None,
    limit: int | None = None,
    progress: ProgressCallback | None = None,
    allow_network: bool = False,
    chunk_size: int | None = None,
    qrels: Path | None = None,
    judged: bool = False,
) -> EvalReport:
    """``wendao eval``: open a test set (``open_test_set``, or the knowledge base's own judgments)
    and evaluate it."""
    chunking = ChunkSettings(size=chunk_size) if chunk_size else None
    if judged:
        service = Wendao(kb_dir=kb_dir, model=model, allow_network=allow_network, chunking=chunking)
        queries, test_set = judged_queries(service.kb_dir), "judgments"
    else:
        service, queries = open_test_set(path, kb_dir, model, progress, allow_network, chunking, qrels=qrels)
        test_set = str(Path(path).resolve())
    return evaluate(service, queries[:limit] if limit else queries, modes or ["lexical", "dense", "hybrid"], progress,
                    test_set)


# -- evaluating ------------------------------------------------------------------------------
def evaluate(
    service: Wendao,
    queries: list[EvalQuery],
    modes: list[str],
    progress: ProgressCallback | None = None,
    test_set: str = "",
) -> EvalReport:
    retriever = service.retriever()
    snapshot = retriever.snapshot
    chunks = list(snapshot.chunks)  # read once from the records
    folded_chunks = [c.folded for c in chunks]
    plans = [plan_query(q.question) for q in queries]
    if any(m != "lexical" for m in modes):
        retriever.embed(plans)
    on_topic = [q for q in queries if not q.off_topic]
    qrels = {q.id: gold(q, chunks, folded_chunks) for q in on_topic}
    results: dict[str, dict[str, QuestionResult]] = {}
    for mode in modes:
        results[mode] = {}
        for number, (query, plan) in enumerate(zip(queries, plans), 1):
            if progress:
                progress(mode, number, len(queries))
            hits = retriever.search(plan, mode=mode, k=RANKED)
            answer = service.answer_from(plan, hits)
            results[mode][query.id] = QuestionResult(
                [Ranked(h.chunk.chunk_id, h.chunk.doc_id, round(float(h.score), 6)) for h in hits],
                answer.text,
                round(float(answer.confidence), 4),
                bool(answer.abstained),
                [c.hit.chunk.chunk_id for c in answer.citations],
                {h.chunk.chunk_id: h.chunk.text[:SNIPPET_CHARS] for h in hits[:SNIPPETS]},
            )
    run = EvalRun(
        queries, qrels, results, {}, location_name(service.kb_dir), snapshot.generation,
        asdict(snapshot.settings) | {"fusion": asdict(service.fusion), "answering": asdict(service.answering)},
        test_set, datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    chunk_text = {c.chunk_id: text for c, text in zip(chunks, folded_chunks)}
    run.metrics = {mode: run_metrics(run, mode, chunk_text) for mode in modes}
    return EvalReport(len(on_topic), len(queries) - len(on_topic), run.metrics, failures(run), str(service.kb_dir), run)


def run_metrics(run: EvalRun, mode: str, folded_text: dict[str, str]) -> dict[str, float | None]:
    """One mode's row: ranx's ranking metrics over the on-topic questions, then answer quality
    (answer hit, citation precision) and abstention (on- and off-topic). ``folded_text`` maps a
    cited chunk id to its folded text."""
    on_topic = [q for q in run.queries if not q.off_topic]
    off_topic = [q for q in run.queries if q.off_topic]
    results = run.results[mode]
    row: dict[str, float | None] = metric_scores(run.gold, run.ranx_run(mode)) if on_topic else {"hit@5": 0.0}
    with_answers = [q for q in on_topic if q.answers]
    row["answer_hit"] = _share(sum(bool(answer_hit(q, results[q.id].answer)) for q in with_answers), len(with_answers))
    precisions = [
        citation_precision(q, [folded_text.get(c, "") for c in results[q.id].cited])
        for q in with_answers
        if not results[q.id].abstained
    ]
    row["citation_precision"] = _share(sum(precisions), len(precisions))
    row["abstain_on_topic"] = _share(sum(results[q.id].abstained for q in on_topic), len(on_topic))
    row["abstain_off_topic"] = _share(sum(results[q.id].abstained for q in off_topic), len(off_topic))
    return row


def _share(count: float, total: int) -> float | None:
    return round(count / total, 4) if total else None


def failures(run: EvalRun) -> list[Failure]:
    """On-topic questions whose gold was not in the top 5, per mode."""
    found = []
    for mode, results in run.results.items():
        for query_id, relevant in run.gold.items():
            if not set(run.units(mode, query_id, depth=5)) & set(relevant):
                query, result = run.query(query_id), results[query_id]
                found.append(Failure(query_id, query.question, mode, query.answers or query.relevant or list(relevant),
                                     [result.snippets.get(r.chunk_id, "")[:120] for r in result.ranked[:3]]))
    return found


# -- judging -------------------------------------------------------------------------------
def judged_by_documents(query: EvalQuery) -> bool:
    """Whether a query's ranking is judged by documents (a document ranks where its best chunk
    does) rather than by chunks."""
    return query.by_documents or not (query.answers or query.relevant_chunks or query.passages)


def gold(query: EvalQuery, chunks: Sequence[Chunk], folded_chunks: Sequence[str]) -> dict[str, int]:
    """The relevant units of one query (a qrels row): chunks holding a gold answer string (inside
    the ``relevant`` documents when those are given), else the documents themselves (BEIR qrels)."""
    if query.passages:  # judged passages: the chunks overlapping them (any chunking)
        judged = {c.chunk_id: 1 for c in chunks if any(_covers(c, p) for p in query.passages)}
        return judged or {NO_GOLD_CHUNK: 1}
    if query.relevant_chunks:
        return {c: 1 for c in query.relevant_chunks}
    if judged_by_documents(query):
        return {d: 1 for d in query.relevant}
    golds = [fold(a) for a in query.answers if a.strip()]
    documents = set(query.relevant)
    relevant = {
        c.chunk_id: 1
        for c, text in zip(chunks, folded_chunks)
        if (not documents or c.doc_id in documents) and any(g in text for g in golds)
    }
    return relevant or {NO_GOLD_CHUNK: 1}


def _covers(chunk: Chunk, passage: JudgedPassage) -> bool:
    """A chunk stands for a judged passage when it holds at least half of it, or the passage
    holds at least half of the chunk (so a re-chunked knowledge base keeps its judgments)."""
    if chunk.doc_id != passage.doc_id:
        return False
    overlap = min(chunk.end, passage.end) - max(chunk.start, passage.start)
    return overlap > 0 and 2 * overlap >= min(chunk.end - chunk.start, passage.end - passage.start)


def ranking(query: EvalQuery, ranked: Sequence[Chunk | Ranked], depth: int | None = None) -> dict[str, float]:
    """The units of a ranked chunk list, scored so that ranx keeps their order: chunks, or (when
    judged by documents) documents where their best chunk ranks; only the first ``depth`` units."""
    n = len(ranked)
    by_documents = judged_by_documents(query)
    units: dict[str, float] = {}
    for position, chunk in enumerate(ranked):
        units.setdefault(chunk.doc_id if by_documents else chunk.chunk_id, float(n - position))
        if depth is not None and len(units) == depth:
            break
    return units


def answer_hit(query: EvalQuery, text: str) -> bool | None:
    """Whether an answer text holds one of the query's gold strings (after folding); None
    when the query has none."""
    if not query.answers:
        return None
    folded = fold(text)
    return any(fold(a) in folded for a in query.answers)


def citation_precision(query: EvalQuery, cited_folded: Sequence[str]) -> float:
    """The share of an answer's cited passages (folded texts) that hold one of the gold strings."""
    if not cited_folded:
        return 0.0
    golds = [fold(a) for a in query.answers if a.strip()]
    return sum(any(g in text for g in golds) for text in cited_folded) / len(cited_folded)


def ranx_scores(
    qrels: dict[str, dict[str, int]], run: dict[str, dict[str, float]], metrics: Sequence[str], per_query: bool = False
) -> dict[str, float | np.ndarray]:
    """ranx's scores by ranx metric name: the means, or with ``per_query`` one array per metric
    in the qrels' order. ranx gets plain dicts, the run's queries in the qrels' order (it pairs
    the two by position, not by id) and an empty ranking or judgment as one unjudged placeholder
    (its array conversion fails on an empty one; it scores 0 either way). Not ranx's
    ``Qrels``/``Run``: those are numba typed dicts whose key check JIT-compiles on first use,
    about 5 s of every ``wendao eval`` process; the scores are the same."""
    from ranx import evaluate as ranx_evaluate

    if qrels.keys() != run.keys():
        raise ValueError(f"qrels and run hold different questions: {sorted(qrels.keys() ^ run.keys())[:5]}")
    judged = {query_id: units or {_NOTHING: 0} for query_id, units in qrels.items()}
    ranked = {query_id: run[query_id] or {_NOTHING: 0.0} for query_id in qrels}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scores = ranx_evaluate(judged, ranked, list(metrics), return_mean=not per_query)
    return scores if len(metrics) > 1 else {metrics[0]: scores}


def metric_scores(
    qrels: dict[str, dict[str, int]], run: dict[str, dict[str, float]], metrics: Sequence[str] = METRICS
) -> dict[str, float]:
    """ranx metrics rounded to 4 places, ``hit_rate@k`` named ``hit@k``."""
    scores = ranx_scores(qrels, run, metrics)
    return {name.replace("hit_rate@", "hit@"): round(float(value), 4) for name, value in scores.items()}
