"""Which engine for lexical search that grows? wendao's segmented BM25, tantivy and SQLite FTS5, measured.

    python benchmarks/lexical_choice.py                        # the three span sets + a 200k-chunk synthetic row
    python benchmarks/lexical_choice.py --sets xquad_zh/test --scale 0 --runs 1

All three index the same tokens: wendao's own (the chunks of ``corpus.pipeline.prepare_text``
with their title, folded, character uni+bigrams, ``index.ingest.lexical_ids``; questions through
``qa.query.plan_query``), each token written as its ``index.termids`` id in decimal, so that no
engine's analyzer can split or fold it (SQLite's unicode61 would split ``3.5%``):

* **wendao**: ``index.lexical_segments`` (one postings segment a commit, saved and flushed as
  ``index.segments.write_segment`` does, read back through ``Postings.load``; ``SegmentedBM25``
  with live-corpus statistics, k1 0.9, b 0.4);
* **tantivy** (tantivy-py): one text field with tantivy's ``whitespace`` tokenizer, term
  frequencies without positions, a u64 fast field for the chunk's position; one indexing thread;
  a query is a boolean OR of term queries (a repeated token counts twice, as in wendao), top k
  without counting (block-max WAND). Its BM25 is fixed at k1 1.2, b 0.75;
* **fts5**: a contentless SQLite FTS5 table (WAL), ``ORDER BY bm25(...)``, k1 1.2, b 0.75, IDF
  ``log((N-n+0.5)/(n+0.5))`` floored at 1e-6.

Quality rows also show ``wendao k1 1.2 b 0.75``: wendao's formula with the other engines'
constants, to tell the constants' share of a difference from the engine's.

Per set and engine: lexical MRR@10 and hit@5 (documents judged by the qrels, ranked where their
best chunk ranks, as ``qa.evaluate`` does), build time (tokens to a searchable committed index,
median of ``--runs``), adding one ~3 KB document of the set's sentences to the built index (a new
segment / commit, visible to the next search; median of 5), query latency to the top 10 chunk
positions (p50 and p95 of each run over the questions, median over ``--runs``), index size on disk.
The ``--scale`` row is SYNTHETIC: chunks of five real sentences of the shared sets, repeated and
shuffled as ``benchmarks/scale.py`` makes them, committed 100k chunks at a time; latency and add time
only (FTS5: 50 questions, one pass, its queries take seconds there). One process, 2 cores
shared with other work. Prints JSON, then a table.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common import EVALDATA, cell, median_p95, present, print_json, print_markdown

import index.lexical_segments as lexical_segments  # noqa: E402  (common put the repository on sys.path)
from index.durable import fsync_dir, fsync_file  # noqa: E402
from index.lexical_segments import LiveSegment, Postings, SegmentedBM25  # noqa: E402
from index.termids import token_ids  # noqa: E402
from qa.fusion import top_positions  # noqa: E402

SETS = ("cmrc2018/dev", "xquad_zh/test", "drcd/dev")
ENGINES = ("wendao", "tantivy", "fts5")
RANKED = 100  # chunks ranked per question for the metrics (qa.evaluate.RANKED)
LATENCY_K = 10
ADDS = 5
ADD_BYTES = 3000
FTS5_SCALE_QUERIES = 50


def terms(ids: np.ndarray) -> str:
    """A chunk's or question's tokens as whitespace-separated ASCII terms (their termids ids)."""
    return " ".join(map(str, ids.tolist()))


# -- engines -------------------------------------------------------------------------------
class Engine:
    """One lexical index in a folder: built from chunks' token ids, grown a document at a time."""

    name = ""

    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True)
        self.count = 0

    def build(self, chunks: Iterable[np.ndarray]) -> None:
        self.add(chunks)

    def add(self, chunks: Iterable[np.ndarray]) -> None:
        raise NotImplementedError

    def search(self, query: np.ndarray, k: int) -> np.ndarray:
        """Positions (insertion order) of the ``k`` best chunks, best first."""
        raise NotImplementedError

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.folder.rglob("*") if p.is_file())

    def close(self) -> None:
        pass


class WendaoEngine(Engine):
    """``index.lexical_segments``: a segment of postings per commit, live-corpus statistics."""

    name = "wendao"

    def __init__(self, folder: Path, k1: float = lexical_segments.K1, b: float = lexical_segments.B):
        super().__init__(folder)
        self.k1, self.b = k1, b
        self.live: list[LiveSegment] = []
        self.bm25 = SegmentedBM25([])

    def add(self, chunks: Iterable[np.ndarray]) -> None:
        chunks = list(chunks)
        staged = self.folder / f"seg-{len(self.live)}"
        staged.mkdir()
        Postings.build(chunks).save(staged)
        for path in staged.iterdir():  # flushed as index.segments.write_segment does
            fsync_file(path)
        fsync_dir(self.folder)
        self.live.append(LiveSegment(Postings.load(staged), None, np.arange(len(chunks)), self.count))
        self.count += len(chunks)
        with constants(self.k1, self.b):  # a new snapshot sees the new segment (Snapshot.lexical_scores)
            self.bm25 = SegmentedBM25(self.live)

    def scores(self, query: np.ndarray) -> np.ndarray:
        return self.bm25.scores(query)

    def search(self, query: np.ndarray, k: int) -> np.ndarray:
        scores = self.bm25.scores(query)
        top = top_positions(scores, k, positive=True)
        return top[np.argsort(-scores[top], kind="stable")]


@contextmanager
def constants(k1: float, b: float):
    """wendao's BM25 with other constants (``SegmentedBM25`` reads them when it is made)."""
    saved = lexical_segments.K1, lexical_segments.B
    lexical_segments.K1, lexical_segments.B = k1, b
    try:
        yield
    finally:
        lexical_segments.K1, lexical_segments.B = saved


class TantivyEngine(Engine):
    """tantivy-py, whitespace tokenizer, frequencies without positions, one indexing thread."""

    name = "tantivy"

    def __init__(self, folder: Path):
        import tantivy

        super().__init__(folder)
        self.tantivy = tantivy
        builder = tantivy.SchemaBuilder()
        builder.add_text_field("body", stored=False, tokenizer_name="whitespace", index_option="freq")
        builder.add_unsigned_field("pos", fast=True)
        self.schema = builder.build()
        self.index = tantivy.Index(self.schema, path=str(folder))
        self.writer = self.index.writer(heap_size=128_000_000, num_threads=1)
        self.searcher = None

    def add(self, chunks: Iterable[np.ndarray | str]) -> None:
        for ids in chunks:
            document = self.tantivy.Document()
            document.add_text("body", ids if isinstance(ids, str) else terms(ids))
            document.add_unsigned("pos", self.count)
            self.writer.add_document(document)
            self.count += 1
        self.writer.commit()
        self.index.reload()
        self.searcher = self.index.searcher()

    def search(self, query: np.ndarray, k: int) -> np.ndarray:
        tv = self.tantivy
        clauses = [(tv.Occur.Should, tv.Query.term_query(self.schema, "body", t, index_option="freq")) for t in map(str, query.tolist())]
        if not clauses:
            return np.zeros(0, dtype=np.int64)
        hits = self.searcher.search(tv.Query.boolean_query(clauses), k, count=False).hits
        return np.array(self.searcher.fast_field_values("pos", [address for _, address in hits]), dtype=np.int64)

    def size_bytes(self) -> int:
        self.writer.garbage_collect_files()
        return super().size_bytes()

    def close(self) -> None:
        self.writer.wait_merging_threads()


class Fts5Engine(Engine):
    """A contentless FTS5 table (the records live elsewhere), WAL, one transaction a commit."""

    name = "fts5"

    def __init__(self, folder: Path):
        super().__init__(folder)
        self.db = sqlite3.connect(folder / "lexical.db", isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")  # as index.records_db
        self.db.execute("CREATE VIRTUAL TABLE lex USING fts5(body, content='', tokenize='unicode61')")

    def add(self, chunks: Iterable[np.ndarray | str]) -> None:
        def rows():
            for ids in chunks:
                yield self.count, ids if isinstance(ids, str) else terms(ids)
                self.count += 1

        self.db.execute("BEGIN IMMEDIATE")
        self.db.executemany("INSERT INTO lex(rowid, body) VALUES (?, ?)", rows())
        self.db.execute("COMMIT")

    def search(self, query: np.ndarray, k: int) -> np.ndarray:
        if not len(query):
            return np.zeros(0, dtype=np.int64)
        rows = self.db.execute(
            "SELECT rowid FROM lex WHERE lex MATCH ? ORDER BY bm25(lex) LIMIT ?", (" OR ".join(map(str, query.tolist())), k)
        ).fetchall()
        return np.array([r[0] for r in rows], dtype=np.int64)

    def size_bytes(self) -> int:
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return super().size_bytes()

    def close(self) -> None:
        self.db.close()


FACTORIES = {"wendao": WendaoEngine, "tantivy": TantivyEngine, "fts5": Fts5Engine}


# -- data ----------------------------------------------------------------------------------
@dataclass
class SetData:
    """A set's chunks (wendao's chunker and tokens), its judged questions and their token ids."""

    chunks: list  # corpus.records.Chunk, in index order
    chunk_ids: list[np.ndarray]
    queries: list  # qa.testsets.EvalQuery
    query_ids: list[np.ndarray]
    sentences: list[str]  # for the added documents


def load_set(name: str) -> SetData:
    from corpus.chunking import ChunkSettings
    from corpus.errors import IngestError
    from corpus.pipeline import prepare_text
    from index.ingest import lexical_ids
    from qa.query import plan_query
    from qa.testsets import load_beir

    corpus, queries = load_beir(EVALDATA / name)
    chunks, chunk_ids, settings = [], [], ChunkSettings()
    for passage in corpus:
        try:
            prepared = prepare_text(passage.text, passage.id, passage.id, settings, title=passage.title or None)
        except IngestError:
            continue  # as qa.evaluate.build_beir_kb: a passage with no content is skipped
        for chunk in prepared.chunks:
            chunks.append(chunk)
            chunk_ids.append(lexical_ids(prepared.document, chunk))
    query_ids = [token_ids(plan_query(q.question).tokens) for q in queries]
    sentences = [s for p in corpus for s in re.findall(r"[^。！？\n]+[。！？]", p.text) if 8 <= len(s) <= 120]
    return SetData(chunks, chunk_ids, queries, query_ids, sentences)


def added_documents(sentences: Sequence[str], count: int, seed: int = 7) -> list[list[np.ndarray]]:
    """``count`` new ~3 KB documents of the set's sentences, chunked and tokenised as an ingest does."""
    from corpus.chunking import ChunkSettings
    from corpus.pipeline import prepare_text
    from index.ingest import lexical_ids

    rng = np.random.default_rng(seed)
    out = []
    for number in range(count):
        text = ""
        while len(text.encode()) < ADD_BYTES:
            text += sentences[int(rng.integers(len(sentences)))]
        prepared = prepare_text(text, f"added-{number}.txt", f"added-{number}.txt", ChunkSettings())
        out.append([lexical_ids(prepared.document, c) for c in prepared.chunks])
    return out


# -- measuring -----------------------------------------------------------------------------
def quality(engine: Engine, data: SetData) -> dict[str, float]:
    from qa.evaluate import gold, metric_scores, ranking

    qrels, run = {}, {}
    for query, ids in zip(data.queries, data.query_ids):
        ranked = [data.chunks[int(p)] for p in engine.search(ids, RANKED)]
        qrels[query.id] = gold(query, data.chunks, ())
        run[query.id] = ranking(query, ranked) or {"<nothing>": 1.0}
    return metric_scores(qrels, run, ("mrr@10", "hit_rate@5"))


def latency(engine: Engine, queries: Sequence[np.ndarray], runs: int) -> dict[str, float]:
    """p50 / p95 ms of each run over the questions, median over the runs (after one warm-up pass)."""
    for ids in queries[:20]:
        engine.search(ids, LATENCY_K)
    p50, p95 = [], []
    for _ in range(runs):
        times = []
        for ids in queries:
            started = time.perf_counter()
            engine.search(ids, LATENCY_K)
            times.append((time.perf_counter() - started) * 1000)
        p50.append(float(np.percentile(times, 50)))
        p95.append(float(np.percentile(times, 95)))
    return {"p50_ms": round(statistics.median(p50), 3), "p95_ms": round(statistics.median(p95), 3)}


def timed_adds(engine: Engine, documents: list[list[np.ndarray]]) -> dict[str, float]:
    """Seconds to add each document as its own commit, visible to the next search."""
    seconds = []
    for chunks in documents:
        started = time.perf_counter()
        engine.add(chunks)
        seconds.append(time.perf_counter() - started)
    return {"add_ms": median_p95([s * 1000 for s in seconds], 2)["median"]}


def measure_set(name: str, engines: Sequence[str], runs: int, workdir: Path, max_queries: int) -> list[dict]:
    started = time.perf_counter()
    data = load_set(name)
    print(f"{name}: {len(data.chunks):,} chunks, {len(data.queries):,} questions "
          f"(chunked and tokenised in {time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)
    documents = added_documents(data.sentences, ADDS)
    rows = []
    for engine_name in engines:
        builds, engine = [], None
        for number in range(runs):
            if engine is not None:
                engine.close()
            folder = workdir / f"{name.replace('/', '-')}-{engine_name}-{number}"
            engine = FACTORIES[engine_name](folder)
            begun = time.perf_counter()
            engine.build(data.chunk_ids)
            builds.append(time.perf_counter() - begun)
        row = {"set": name, "engine": engine_name, "chunks": len(data.chunks), "questions": len(data.queries)}
        row.update(quality(engine, data))
        row["build_s"] = round(statistics.median(builds), 3)
        row["size_mb"] = round(engine.size_bytes() / 1e6, 2)
        row.update(latency(engine, data.query_ids[:max_queries], runs))
        row.update(timed_adds(engine, documents))
        engine.close()
        rows.append(row)
        print(row, file=sys.stderr, flush=True)
        if engine_name == "wendao":  # the same engine with tantivy's and FTS5's constants (quality only)
            folder = workdir / f"{name.replace('/', '-')}-wendao-k1.2"
            variant = WendaoEngine(folder, k1=1.2, b=0.75)
            variant.build(data.chunk_ids)
            rows.append({"set": name, "engine": "wendao k1 1.2 b 0.75", "chunks": len(data.chunks),
                         "questions": len(data.queries), **quality(variant, data)})
            print(rows[-1], file=sys.stderr, flush=True)
    return rows


def measure_scale(size: int, engines: Sequence[str], runs: int, workdir: Path, max_queries: int) -> list[dict]:
    """SYNTHETIC: ``size`` chunks of five real sentences each (as benchmarks/scale.py makes them)."""
    import scale  # benchmarks/scale.py: its sentence pool and chunk shape
    from index.termids import text_ids
    from qa.query import plan_query

    pool = scale.sentences()
    pool_ids = [text_ids(s) for s in pool]
    pool_terms = [terms(i) for i in pool_ids]
    rng = np.random.default_rng(0)
    picks = rng.integers(0, len(pool), size=(size, scale.SENTENCES_PER_CHUNK))
    questions = [json.loads(line)["text"] for line in (EVALDATA / "xquad_zh/test/queries.jsonl").open(encoding="utf-8")]
    query_ids = [token_ids(plan_query(q).tokens) for q in questions[:max_queries]]
    documents = added_documents(pool, ADDS)
    rows = []
    for engine_name in engines:
        folder = workdir / f"scale-{size}-{engine_name}"
        engine = FACTORIES[engine_name](folder)
        begun = time.perf_counter()
        if engine_name == "wendao":  # segments of scale.SEGMENT_CHUNKS, built from the flat ids as scale.py does
            for first in range(0, size, scale.SEGMENT_CHUNKS):
                part = picks[first : first + scale.SEGMENT_CHUNKS]
                engine.add([np.concatenate([pool_ids[s] for s in row]) for row in part])
        else:
            step = scale.SEGMENT_CHUNKS  # one commit per 100k chunks, as the wendao build
            for first in range(0, size, step):
                engine.add(" ".join(pool_terms[s] for s in row) for row in picks[first : first + step])
        build_s = time.perf_counter() - begun
        # FTS5 computes bm25() for every row matching any token (a common character matches most):
        # over a second a question at 200k chunks, so it gets FTS5_SCALE_QUERIES questions and one pass
        asked, passes = (query_ids[:FTS5_SCALE_QUERIES], 1) if engine_name == "fts5" else (query_ids, runs)
        row = {"set": f"synthetic {size // 1000}k", "engine": engine_name, "chunks": size, "questions": len(asked),
               "build_s": round(build_s, 1), "size_mb": round(engine.size_bytes() / 1e6, 1)}
        row.update(latency(engine, asked, passes))
        row.update(timed_adds(engine, documents))
        engine.close()
        rows.append(row)
        print(row, file=sys.stderr, flush=True)
        shutil.rmtree(folder, ignore_errors=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", default=",".join(SETS))
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--runs", type=int, default=3, help="builds and latency passes per set (medians)")
    parser.add_argument("--queries", type=int, default=1000, help="questions per latency pass")
    parser.add_argument("--scale", type=int, default=200_000, help="chunks of the synthetic row (0: none)")
    parser.add_argument("--workdir", type=Path, default=None, help="where the indexes go (default: a temporary folder)")
    args = parser.parse_args()
    engines = [e for e in args.engines.split(",") if e]
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="wendao-lexchoice-"))
    rows = []
    try:
        for name in present(args.sets):
            rows += measure_set(name, engines, args.runs, workdir, args.queries)
        if args.scale:
            rows += measure_scale(args.scale, engines, args.runs, workdir, args.queries)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    print_json(rows)
    header = ["set", "engine", "chunks", "MRR@10", "hit@5", "build s", "add one doc ms", "p50 / p95 ms", "index MB"]
    print_markdown(header, [
        [r["set"], r["engine"], f"{r['chunks']:,}", cell(r.get("mrr@10"), ".4f"), cell(r.get("hit@5"), ".4f"),
         cell(r.get("build_s"), ".2f"), cell(r.get("add_ms"), ".1f"),
         "—" if "p50_ms" not in r else f"{r['p50_ms']:.2f} / {r['p95_ms']:.2f}", cell(r.get("size_mb"), ".1f")]
        for r in rows
    ])
    if args.scale:
        print(f"\nsynthetic {args.scale // 1000}k: real sentences of the shared sets, repeated and shuffled (no qrels: latency and add only)")


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
