"""Retrieval and answer evaluation of a test set, modes side by side.

Two kinds of gold are supported, so any chunking can be compared fairly:
- ``answers``: a retrieved chunk is relevant when it contains a gold string after folding;
- ``relevant`` (or BEIR qrels): document ids; a document ranks where its best chunk ranks.
Metrics come from ranx. Questions marked ``"off_topic": true`` measure abstention instead.
The judging here (``gold``, ``ranking``, ``answer_hit``, ``metric_scores``) is also what the
benchmarks use, so every figure in the README is judged the same way. Test sets are read by
``qa.testsets``; tables are drawn by ``qa.eval_report``.
"""
from __future__ import annotations

import hashlib
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

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
from qa.testsets import EvalQuery, Passage, load_beir, load_queries

RANKED = 100  # chunks retrieved per query for the metrics
METRICS = ("mrr@10", "ndcg@10", "recall@1", "recall@3", "recall@5", "recall@10", "hit_rate@5")
NO_GOLD_CHUNK = "<answer not in any chunk>"  # the gold of a query whose answer no chunk holds


@dataclass
class Failure:
    """An on-topic question whose gold was not in the top 5, with what came back instead."""

    id: str
    question: str
    mode: str
    gold: list[str]
    retrieved: list[str]


@dataclass
class EvalReport:
    queries: int
    off_topic: int
    results: dict[str, dict[str, float]]
    failures: list[Failure] = field(default_factory=list)
    knowledge_base: str = ""

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
    return _eval_cache() / f"{re.sub(r'[^0-9A-Za-z_.-]+', '_', label)[:60]}-{digest.hexdigest()[:16]}"


def beir_service(service: Wendao, folder: Path, label: str | None = None) -> Wendao:
    """A BEIR folder's own cached knowledge base, with ``service``'s model and settings."""
    return service.sibling(beir_kb_dir(folder, service.chunking.size, service.model_name, label))


def seeds_kb_dir() -> Path:
    """The cached knowledge base of the bundled documents that the benchmarks share (it is
    built from them on first use, like any missing knowledge base); a new chunker or index
    format gets a new folder instead of a stale one."""
    return _eval_cache() / f"seeds-{ChunkSettings().size}-{hashlib.sha256(_settings_key()).hexdigest()[:8]}"


def _settings_key(chunk_size: int | None = None, model: str | None = None) -> bytes:
    return f"{chunk_size or ChunkSettings().size}|{model or DEFAULT_MODEL}|{CHUNKER_VERSION}|{FORMAT_VERSION}".encode()


def _eval_cache() -> Path:
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
) -> tuple[Wendao, list[EvalQuery]]:
    """The service to ask and the questions of a test set: a JSONL query file against a knowledge
    base, or a BEIR folder against its own corpus (indexed once into a cache folder keyed by its
    content and the settings, unless ``kb_dir`` is named)."""
    path = Path(path)
    if not path.exists():
        raise DataFileError(f"{path}: no such query file or folder")
    settings = {"model": model, "allow_network": allow_network, "chunking": chunking, "embedder": embedder}
    if not path.is_dir():
        return Wendao(kb_dir=kb_dir, **settings), load_queries(path)
    corpus, queries = load_beir(path)
    size = chunking.size if chunking else None
    service = Wendao(kb_dir=kb_dir or beir_kb_dir(path, size, model), **settings)
    build_beir_kb(service, corpus, progress)
    return service, queries


def evaluate_file(
    path: Path,
    kb_dir: Path | None = None,
    model: str | None = None,
    modes: list[str] | None = None,
    limit: int | None = None,
    progress: ProgressCallback | None = None,
    allow_network: bool = False,
) -> EvalReport:
    """``wendao eval``: open a test set (``open_test_set``) and evaluate it."""
    service, queries = open_test_set(path, kb_dir, model, progress, allow_network)
    return evaluate(service, queries[:limit] if limit else queries, modes or ["lexical", "dense", "hybrid"], progress)


# -- evaluating ------------------------------------------------------------------------------
def evaluate(
    service: Wendao,
    queries: list[EvalQuery],
    modes: list[str],
    progress: ProgressCallback | None = None,
) -> EvalReport:
    retriever = service.retriever()
    chunks = list(retriever.snapshot.chunks)  # read once from the records
    folded_chunks = [c.folded for c in chunks]
    plans = [plan_query(q.question) for q in queries]
    if any(m != "lexical" for m in modes):
        retriever.embed(plans)
    on_topic = [q for q in queries if not q.off_topic]
    off_topic = [q for q in queries if q.off_topic]
    results: dict[str, dict[str, float]] = {}
    failures: list[Failure] = []
    for mode in modes:
        run: dict[str, dict[str, float]] = {}
        qrels: dict[str, dict[str, int]] = {}
        answer_hits = abstained_on = abstained_off = 0
        for number, (query, plan) in enumerate(zip(queries, plans), 1):
            if progress:
                progress(mode, number, len(queries))
            hits = retriever.search(plan, mode=mode, k=RANKED)
            answer = service.answer_from(plan, hits)
            if query.off_topic:
                abstained_off += answer.abstained
                continue
            abstained_on += answer.abstained
            qrels[query.id] = gold(query, chunks, folded_chunks)
            run[query.id] = ranking(query, [h.chunk for h in hits])
            answer_hits += bool(answer_hit(query, answer.text))
            top5 = list(run[query.id])[:5]
            if not set(top5) & set(qrels[query.id]):
                failures.append(Failure(query.id, query.question, mode, query.answers or query.relevant,
                                        [h.chunk.text[:120] for h in hits[:3]]))
        row = metric_scores(qrels, run) if on_topic else {"hit@5": 0.0}
        with_answers = [q for q in on_topic if q.answers]
        row["answer_hit"] = round(answer_hits / len(with_answers), 4) if with_answers else None
        row["abstain_on_topic"] = round(abstained_on / len(on_topic), 4) if on_topic else None
        row["abstain_off_topic"] = round(abstained_off / len(off_topic), 4) if off_topic else None
        results[mode] = row
    return EvalReport(len(on_topic), len(off_topic), results, failures, str(service.kb_dir))


# -- judging -------------------------------------------------------------------------------
def _by_documents(query: EvalQuery) -> bool:
    return query.by_documents or not query.answers


def gold(query: EvalQuery, chunks: Sequence[Chunk], folded_chunks: Sequence[str]) -> dict[str, int]:
    """The relevant units of one query (a qrels row): chunks holding a gold answer string (inside
    the ``relevant`` documents when those are given), else the documents themselves (BEIR qrels)."""
    if _by_documents(query):
        return {d: 1 for d in query.relevant}
    golds = [fold(a) for a in query.answers if a.strip()]
    documents = set(query.relevant)
    relevant = {
        c.chunk_id: 1
        for c, text in zip(chunks, folded_chunks)
        if (not documents or c.doc_id in documents) and any(g in text for g in golds)
    }
    return relevant or {NO_GOLD_CHUNK: 1}


def ranking(query: EvalQuery, ranked: Sequence[Chunk], depth: int | None = None) -> dict[str, float]:
    """The units of a ranked chunk list, scored so that ranx keeps their order: chunks, or (when
    judged by documents) documents where their best chunk ranks; only the first ``depth`` units."""
    n = len(ranked)
    by_documents = _by_documents(query)
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


def metric_scores(
    qrels: dict[str, dict[str, int]], run: dict[str, dict[str, float]], metrics: Sequence[str] = METRICS
) -> dict[str, float]:
    """ranx metrics rounded to 4 places, ``hit_rate@k`` named ``hit@k``."""
    from ranx import Qrels, Run
    from ranx import evaluate as ranx_evaluate

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scores = ranx_evaluate(Qrels(qrels), Run(run), list(metrics))
    if len(metrics) == 1:
        scores = {metrics[0]: scores}
    return {name.replace("hit_rate@", "hit@"): round(float(value), 4) for name, value in scores.items()}
