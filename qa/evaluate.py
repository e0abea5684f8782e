"""Retrieval and answer evaluation on query files or BEIR folders, modes side by side.

Two kinds of gold are supported, so any chunking can be compared fairly:
- ``answers``: a retrieved chunk is relevant when it contains a gold string after folding;
- ``relevant`` (or BEIR qrels): document ids; a document ranks where its best chunk ranks.
Metrics come from ranx. Questions marked ``"off_topic": true`` measure abstention instead.
"""
from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from platformdirs import user_cache_dir

from corpus.chunking import CHUNKER_VERSION, ChunkSettings
from corpus.errors import IngestError
from corpus.folding import fold
from corpus.pipeline import prepare_text
from index.ingest import Progress
from index.model import DEFAULT_MODEL
from index.store import FORMAT_VERSION
from qa.jsonl import read_jsonl
from qa.retrieve import SearchHit
from qa.service import Wendao

RANKED = 100  # chunks retrieved per query for the metrics
METRICS = ("mrr@10", "ndcg@10", "recall@1", "recall@3", "recall@5", "recall@10", "hit_rate@5")


@dataclass
class EvalQuery:
    id: str
    question: str
    answers: list[str] = field(default_factory=list)
    relevant: list[str] = field(default_factory=list)
    off_topic: bool = False
    by_documents: bool = False  # judge ranking by ``relevant`` ids even when answers are known


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


def load_queries(path: Path) -> list[EvalQuery]:
    """A JSONL file of {"id","question", "answers"|"relevant"|"off_topic"}; errors name the line."""
    rows = []
    for number, row in read_jsonl(path):
        question = row.get("question")
        if not isinstance(question, str) or not question.strip():
            raise ValueError(f'{path}:{number}: missing "question" text')
        answers, relevant = row.get("answers") or [], row.get("relevant") or []
        if not all(isinstance(v, list) and all(isinstance(x, str) for x in v) for v in (answers, relevant)):
            raise ValueError(f'{path}:{number}: "answers" and "relevant" must be lists of strings')
        if not (answers or relevant or row.get("off_topic")):
            raise ValueError(f'{path}:{number}: needs "answers", "relevant" or "off_topic": true')
        rows.append(EvalQuery(str(row.get("id", number)), question, answers, relevant, bool(row.get("off_topic"))))
    if not rows:
        raise ValueError(f"{path}: no queries")
    return rows


def load_beir(folder: Path) -> tuple[list[dict], list[EvalQuery]]:
    """corpus.jsonl + queries.jsonl + qrels.tsv (+ answers.jsonl when present)."""
    for name in ("corpus.jsonl", "queries.jsonl", "qrels.tsv"):
        if not (folder / name).is_file():
            raise ValueError(f"{folder}: not a BEIR folder (missing {name})")
    corpus = [row for _, row in read_jsonl(folder / "corpus.jsonl")]
    relevant: dict[str, list[str]] = {}
    with (folder / "qrels.tsv").open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            fields = line.rstrip("\n").split("\t")
            if number == 1 and not fields[-1].replace(".", "").isdigit():
                continue  # header
            if len(fields) < 3:
                raise ValueError(f"{folder / 'qrels.tsv'}:{number}: expected query-id, corpus-id, score")
            if float(fields[2]) > 0:
                relevant.setdefault(fields[0], []).append(fields[1])
    answers: dict[str, list[str]] = {}
    if (folder / "answers.jsonl").is_file():
        for _, row in read_jsonl(folder / "answers.jsonl"):
            if row.get("extractive", True):
                answers[row["_id"]] = row["answers"]
    queries = [
        EvalQuery(row["_id"], row["text"], answers.get(row["_id"], []), relevant[row["_id"]], by_documents=True)
        for _, row in read_jsonl(folder / "queries.jsonl")
        if row["_id"] in relevant
    ]
    return corpus, queries


def beir_kb_dir(folder: Path, chunk_size: int | None = None, model: str | None = None) -> Path:
    """A cache folder per corpus file content and settings, so a set is embedded only once
    (default chunk size and model unless named)."""
    digest = hashlib.sha256((folder / "corpus.jsonl").read_bytes())
    digest.update(f"{chunk_size or ChunkSettings().size}|{model or DEFAULT_MODEL}|{CHUNKER_VERSION}|{FORMAT_VERSION}".encode())
    return _eval_cache() / f"{folder.parent.name}-{folder.name}-{digest.hexdigest()[:16]}"


def seeds_kb_dir() -> Path:
    """The cached knowledge base of the bundled documents that the benchmarks share (it is
    built from them on first use, like any missing knowledge base)."""
    return _eval_cache() / f"seeds-{ChunkSettings().size}"


def _eval_cache() -> Path:
    return Path(user_cache_dir("wendao")) / "eval"


def build_beir_kb(service: Wendao, corpus: list[dict], progress: Progress | None = None) -> list[str]:
    """Ingest a BEIR corpus (once); returns the ids of passages skipped as having no content."""
    if service.store.exists():
        return []
    prepared, skipped = [], []
    for row in corpus:
        try:
            prepared.append(
                prepare_text(row["text"], row["_id"], row["_id"], service.chunking, title=row.get("title") or None)
            )
        except IngestError:
            skipped.append(row["_id"])  # e.g. a web page that is only a "join this group" button
    service.ingestor().ingest_prepared(prepared, progress=progress)
    return skipped


def evaluate_file(
    path: Path,
    kb_dir: Path | None = None,
    model: str | None = None,
    modes: list[str] | None = None,
    limit: int | None = None,
    progress: Progress | None = None,
    allow_network: bool = False,
) -> EvalReport:
    """Evaluate a JSONL query file against a knowledge base, or a BEIR folder against its own
    corpus (indexed once into a cache folder keyed by its content and the settings)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such query file or folder")
    if path.is_dir():
        corpus, queries = load_beir(path)
        service = Wendao(
            kb_dir=kb_dir or beir_kb_dir(path, model=model),
            model=model,
            allow_network=allow_network,
        )
        build_beir_kb(service, corpus, progress)
    else:
        queries = load_queries(path)
        service = Wendao(kb_dir=kb_dir, model=model, allow_network=allow_network)
    return evaluate(service, queries[:limit] if limit else queries, modes or ["lexical", "dense", "hybrid"], progress)


def evaluate(
    service: Wendao,
    queries: list[EvalQuery],
    modes: list[str],
    progress: Progress | None = None,
) -> EvalReport:
    from ranx import Qrels, Run, evaluate as ranx_evaluate

    retriever = service.retriever()
    folded_chunks = [fold(c.text) for c in retriever.snapshot.chunks]
    plans = retriever.plans([q.question for q in queries], need_vector=any(m != "lexical" for m in modes))
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
            qrels[query.id], run[query.id] = _judge(query, hits, retriever.snapshot.chunks, folded_chunks)
            if query.answers and any(fold(a) in fold(answer.text) for a in query.answers):
                answer_hits += 1
            top5 = list(run[query.id])[:5]
            if not set(top5) & set(qrels[query.id]):
                failures.append(Failure(query.id, query.question, mode, query.answers or query.relevant,
                                        [h.chunk.text[:120] for h in hits[:3]]))
        scores = {}
        if on_topic:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                scores = ranx_evaluate(Qrels(qrels), Run(run), list(METRICS))
        row = {name: round(float(value), 4) for name, value in scores.items()}
        row["hit@5"] = row.pop("hit_rate@5", 0.0)
        with_answers = [q for q in on_topic if q.answers]
        row["answer_hit"] = round(answer_hits / len(with_answers), 4) if with_answers else None
        row["abstain_on_topic"] = round(abstained_on / len(on_topic), 4) if on_topic else None
        row["abstain_off_topic"] = round(abstained_off / len(off_topic), 4) if off_topic else None
        results[mode] = row
    return EvalReport(len(on_topic), len(off_topic), results, failures, str(service.kb_dir))


def _judge(query: EvalQuery, hits: list[SearchHit], chunks, folded_chunks: list[str]) -> tuple[dict[str, int], dict[str, float]]:
    """Gold and ranking for one query: chunks holding a gold answer string (inside the
    ``relevant`` documents when those are given), else the documents themselves (BEIR qrels)."""
    n = len(hits)
    if query.by_documents or not query.answers:
        ranking: dict[str, float] = {}
        for hit in hits:  # a document ranks where its best chunk ranks
            ranking.setdefault(hit.chunk.doc_id, float(n - hit.rank + 1))
        return {d: 1 for d in query.relevant}, ranking
    golds = [fold(a) for a in query.answers if a.strip()]
    documents = set(query.relevant)
    relevant = {
        c.chunk_id: 1
        for c, text in zip(chunks, folded_chunks)
        if (not documents or c.doc_id in documents) and any(g in text for g in golds)
    }
    ranking = {hit.chunk.chunk_id: float(n - hit.rank + 1) for hit in hits}
    return relevant or {"<answer not in any chunk>": 1}, ranking


def render_table(report: EvalReport):
    from rich.table import Table

    table = Table(title=f"{report.queries} questions, {report.off_topic} off-topic", caption=report.knowledge_base)
    table.add_column("metric")
    for mode in report.results:
        table.add_column(mode, justify="right")
    names = list(next(iter(report.results.values())).keys()) if report.results else []
    for name in names:
        cells = [report.results[m].get(name) for m in report.results]
        table.add_row(name, *("—" if v is None else f"{v:.3f}" for v in cells))
    return table
