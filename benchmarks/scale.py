"""Storage at scale: knowledge bases of 10k, 100k and 1M chunks (README "Storage at scale").

    python benchmarks/scale.py                          # 10k, 100k, 1M chunks (builds once, into --workdir)
    python benchmarks/scale.py --sizes 10000 --queries 100
    python benchmarks/scale.py --build-only             # write the knowledge bases now, measure later

Chunk texts are real Chinese sentences of the shared evaluation sets' corpora, repeated and
shuffled (five sentences a chunk, one sentence a vector unit, twenty chunks a document). The
vectors are SYNTHETIC at every size (clustered unit vectors, 384 dimensions, e5-small's shape;
embedding 5M real sentences would take days on two cores): latency, memory and recall figures
are about the storage, not about the model. Per size it measures, each in a fresh process:

* ``add_s``: adding one ~3 KB document with ``wendao ingest`` semantics (real model, loaded
  beforehand; the time includes embedding its ~30 sentences, which does not depend on size);
  ``add_storage_s``: the same without the embedding (reading, chunking, writing, committing);
* ``open_s``: opening the knowledge base (``LocalStore.load``); ``first_query_ms``: the first
  question, which also reads the segments' approximate indexes;
* ``rss_mb``: resident memory of a process that opened it and answered the queries (no model
  loaded: the query vectors are given), ``rss_open_mb`` right after opening;
* ``p50_ms`` / ``p95_ms``: hybrid retrieval latency without the query embedding (real questions'
  tokens, synthetic query vectors near stored ones);
* ``recall10``: the dense candidates' top 10 against an exact scan of every vector.

Every figure is the median of ``--runs`` fresh processes (3). It prints JSON, then a table,
with each size's add time as a ratio to the smallest size's (measured in the same run).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from corpus.records import Chunk, Document  # noqa: E402
from index.lexical_segments import Postings  # noqa: E402
from index.local_store import LocalStore  # noqa: E402
from index.segments import SegmentData, write_segment  # noqa: E402
from index.termids import text_ids  # noqa: E402

EVALDATA = Path(__file__).resolve().parents[2] / "shared" / "evaldata"
CORPORA = ("xquad_zh/test", "cmrc2018/dev", "drcd/dev", "dureader_demo/search")
SENTENCES_PER_CHUNK = 5
CHUNKS_PER_DOC = 20
SEGMENT_CHUNKS = 100_000
DIM = 384
CLUSTERS = 2048
SPREAD = 1.1  # noise norm relative to the cluster centre: within-cluster cosines ~0.45


def sentences() -> list[str]:
    """Distinct folded sentences of the shared corpora, each ending in punctuation."""
    from corpus.folding import fold

    found: dict[str, None] = {}
    for name in CORPORA:
        path = EVALDATA / name / "corpus.jsonl"
        if not path.is_file():
            continue
        for line in path.open(encoding="utf-8"):
            text = json.loads(line).get("text", "")
            for piece in re.findall(r"[^。！？\n]+[。！？]?", text):
                piece = piece.strip()
                if 8 <= len(piece) <= 120:
                    found.setdefault(fold(piece if piece[-1] in "。！？" else piece + "。"), None)
    if not found:
        raise SystemExit(f"no corpus.jsonl under {EVALDATA}: the shared evaluation sets are needed")
    return list(found)


def synthetic_units(rng: np.random.Generator, centres: np.ndarray, chunks: int) -> np.ndarray:
    """Unit vectors: each chunk mostly near one cluster centre, float16."""
    own = rng.integers(0, len(centres), size=chunks)
    picks = np.where(rng.random((chunks, SENTENCES_PER_CHUNK)) < 0.7, own[:, None], rng.integers(0, len(centres), size=(chunks, SENTENCES_PER_CHUNK)))
    out = np.empty((chunks * SENTENCES_PER_CHUNK, DIM), dtype=np.float16)
    step = 50_000
    flat = picks.reshape(-1)
    for start in range(0, len(flat), step):
        part = centres[flat[start : start + step]] + rng.standard_normal((len(flat[start : start + step]), DIM), dtype=np.float32) * (SPREAD / np.sqrt(DIM))
        out[start : start + step] = part / np.linalg.norm(part, axis=1, keepdims=True)
    return out


def build(root: Path, size: int, settings, seed: int = 0) -> dict:
    """Write a knowledge base of ``size`` chunks as segments of SEGMENT_CHUNKS (one commit each)."""
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    pool = sentences()
    ids = [text_ids(s) for s in pool]
    id_lengths = np.array([len(i) for i in ids], dtype=np.int64)
    id_starts = np.cumsum(id_lengths) - id_lengths
    all_ids = np.concatenate(ids)
    lengths = np.array([len(s) for s in pool], dtype=np.int64)
    centres = rng.standard_normal((CLUSTERS, DIM), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    store = LocalStore(root)
    with store.lock():
        writer = store.writer(settings)
        for first in range(0, size, SEGMENT_CHUNKS):
            n = min(SEGMENT_CHUNKS, size - first)
            picks = rng.integers(0, len(pool), size=(n, SENTENCES_PER_CHUNK))
            flat = picks.reshape(-1)
            counts = id_lengths[flat]
            rows = np.repeat(id_starts[flat] - (np.cumsum(counts) - counts), counts) + np.arange(int(counts.sum()))
            chunk_of = np.repeat(np.arange(n, dtype=np.int64), id_lengths[picks].sum(axis=1))
            postings = Postings.build_flat(all_ids[rows], chunk_of, n)
            keys = writer.next_key + np.arange(n, dtype=np.int64)
            data = SegmentData(keys, np.full(n, SENTENCES_PER_CHUNK), synthetic_units(rng, centres, n), postings)
            name = write_segment(root, data, settings)
            documents, chunks = records(pool, lengths, picks, first)
            writer._commit(documents, chunks, [], writer.segments + [name])
            print(f"  {first + n:,} chunks written ({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)
        writer.close()
    return {"build_s": round(time.perf_counter() - started, 1)}


def records(pool: list[str], lengths: np.ndarray, picks: np.ndarray, first: int) -> tuple[list[Document], list[Chunk]]:
    documents, chunks = [], []
    for doc_start in range(0, len(picks), CHUNKS_PER_DOC):
        doc_id = f"doc{(first + doc_start) // CHUNKS_PER_DOC:07d}.txt"
        texts, offset, doc_chunks = [], 0, []
        for number, row in enumerate(picks[doc_start : doc_start + CHUNKS_PER_DOC]):
            spans, start = [], offset
            for s in row:
                spans.append((offset, offset + int(lengths[s])))
                offset += int(lengths[s])
            text = "".join(pool[s] for s in row)
            texts.append(text)
            doc_chunks.append(Chunk(f"{doc_id}#{number}", doc_id, start, offset, text, "", spans))
        body = "".join(texts)
        documents.append(Document(doc_id=doc_id, source=doc_id, title="", text=body, sha256=doc_id, format="txt", size=len(body.encode())))
        chunks += doc_chunks
    return documents, chunks


def add_document(root: Path) -> dict:
    """Time adding one ~3 KB document (the model is loaded first and not timed)."""
    from index.embedder import load_embedder
    from index.ingest import Ingestor

    embedder = load_embedder()
    pool = sentences()
    seed = time.time_ns()  # a new document every run (the same one would be skipped as unchanged)
    rng = np.random.default_rng(seed)
    text = ""
    while len(text.encode()) < 3000:
        text += pool[int(rng.integers(len(pool)))]
    path = root.parent / f"added-{root.name}-{seed}.txt"
    path.write_text(text, encoding="utf-8")
    embedder.encode_documents(["预热"])
    spent = []

    class Timed:  # the embedding's share, to report the storage's apart (the model is slow and noisy here)
        def __getattr__(self, name):
            return getattr(embedder, name)

        def encode_documents(self, texts, *args, **kwargs):
            started = time.perf_counter()
            try:
                return embedder.encode_documents(texts, *args, **kwargs)
            finally:
                spent.append(time.perf_counter() - started)

    ingestor = Ingestor(LocalStore(root), Timed())
    started = time.perf_counter()
    report = ingestor.ingest_paths([path])
    seconds = time.perf_counter() - started
    assert report.results[0].status == "added", report.results
    return {
        "add_s": round(seconds, 2),
        "add_storage_s": round(seconds - sum(spent), 2),
        "add_bytes": len(text.encode()),
        "add_chunks": report.results[0].chunks,
    }


def measure(root: Path, queries: int) -> dict:
    """Open, then ask: run in a fresh process so RSS is this knowledge base's alone."""
    from corpus.folding import fold  # noqa: F401  (imported before timing: not part of opening)
    from qa.query import plan_query
    from qa.retrieve import Retriever

    def status(field: str) -> float:
        for line in open("/proc/self/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
        return 0.0

    def rss() -> float:
        return status("VmRSS")

    base = rss()
    started = time.perf_counter()
    snapshot = LocalStore(root).load()
    open_s = time.perf_counter() - started
    rss_open = rss()
    questions = [json.loads(line)["text"] for line in (EVALDATA / "xquad_zh/test/queries.jsonl").open(encoding="utf-8")]
    rng = np.random.default_rng(11)
    retriever = Retriever(snapshot, None)
    vectors = []
    sizes = np.array([len(s.vectors.vectors) for s in snapshot.segments], dtype=np.float64)
    for _ in range(queries):  # near a stored vector drawn uniformly (not the one real added document's)
        segment = snapshot.segments[int(rng.choice(len(sizes), p=sizes / sizes.sum()))]
        v = np.asarray(segment.vectors.vectors[int(rng.integers(len(segment.vectors.vectors)))], dtype=np.float32)
        v = v + rng.standard_normal(DIM).astype(np.float32) * (0.6 / np.sqrt(DIM))
        vectors.append(v / np.linalg.norm(v))
    started = time.perf_counter()  # the first question also reads the segments' ANN indexes
    first = plan_query(questions[-1])
    first.vector = vectors[0]
    retriever.search(first, mode="hybrid", k=10)
    first_ms = (time.perf_counter() - started) * 1000
    times, stages = [], {"lexical": [], "dense": [], "fusion": []}
    for number in range(queries):
        plan = plan_query(questions[number % len(questions)])
        plan.vector = vectors[number]
        started = time.perf_counter()
        retriever.search(plan, mode="hybrid", k=10)
        times.append((time.perf_counter() - started) * 1000)
        for stage in stages:
            stages[stage].append(plan.timings_ms.get(stage, 0.0))
    rss_after, anon_after = rss(), status("RssAnon")
    recall = dense_recall(snapshot, np.array(vectors[: min(50, queries)]))
    return {
        "chunks": len(snapshot.keys),
        "units": int(snapshot.unit_counts.sum()),
        "segments": len(snapshot.segments),
        "open_s": round(open_s, 3),
        "first_query_ms": round(first_ms),
        "rss_imports_mb": round(base),
        "rss_anon_mb": round(anon_after),
        "rss_open_mb": round(rss_open),
        "rss_mb": round(rss_after),
        "p50_ms": round(float(np.percentile(times, 50)), 1),
        "p95_ms": round(float(np.percentile(times, 95)), 1),
        **{f"{stage}_p50_ms": round(float(np.percentile(v, 50)), 1) for stage, v in stages.items()},
        "recall10": round(recall, 4),
    }


def dense_recall(snapshot, queries: np.ndarray) -> float:
    """Top 10 of the dense candidates (as the retriever takes them) against an exact scan."""
    best = np.full((len(queries), len(snapshot.keys)), -np.inf, dtype=np.float32)
    for number, segment in enumerate(snapshot.segments):
        live = snapshot._live[number]
        counts = segment.unit_counts.astype(np.int64)
        starts = np.cumsum(counts) - counts
        matrix = segment.vectors.vectors
        chunk_best = np.empty((len(queries), len(counts)), dtype=np.float32)
        step = 50_000
        for c0 in range(0, len(counts), step):
            c1 = min(c0 + step, len(counts))
            u0, u1 = int(starts[c0]), int(starts[c1 - 1] + counts[c1 - 1])
            scores = np.asarray(matrix[u0:u1], dtype=np.float32) @ queries.T  # (units, queries)
            chunk_best[:, c0:c1] = np.maximum.reduceat(scores, starts[c0:c1] - u0, axis=0).T
        best[:, live.position : live.position + len(live.live_local)] = chunk_best[:, live.live_local]
    hits = 0
    for q, vector in enumerate(queries):
        exact = set(np.argpartition(-best[q], 10)[:10].tolist())
        pool = snapshot.dense_candidates(vector, 100)
        scores, offsets = snapshot.unit_scores(vector, pool)
        top = pool[np.argsort(-np.maximum.reduceat(scores, offsets), kind="stable")[:10]]
        hits += len(exact & set(top.tolist()))
    return hits / (10 * len(queries))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/wendao-scale"))
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3, help="fresh processes per measurement; medians are reported")
    parser.add_argument("--build-only", action="store_true", help="write the knowledge bases, measure nothing")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--add", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.queries)))
        return
    if args.add:
        print(json.dumps(add_document(args.add)))
        return
    from index.embedder import load_embedder
    from index.ingest import index_settings
    from corpus.chunking import ChunkSettings

    embedder = load_embedder()
    settings = index_settings(embedder.name, embedder.dimension, ChunkSettings())
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        root = args.workdir / f"kb-{size}"
        row = {"size": size, "vectors": "synthetic"}
        if not LocalStore(root).exists():
            print(f"building {size:,} chunks in {root}", file=sys.stderr, flush=True)
            row.update(build(root, size, settings))
        if args.build_only:
            continue
        script = [sys.executable, __file__, "--queries", str(args.queries)]
        for flag in ("--measure", "--add"):  # each run a fresh process; the median of each figure
            runs = [run_json([*script, flag, str(root)]) for _ in range(args.runs)]
            row.update(median_row(runs))
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    if not rows:
        return
    for row in rows:  # the goal: adding at 1M chunks costs at most 2x adding at 10k
        row["add_vs_smallest"] = round(row["add_s"] / rows[0]["add_s"], 2)
        row["add_storage_vs_smallest"] = round(row["add_storage_s"] / max(rows[0]["add_storage_s"], 1e-3), 2)
    print(json.dumps({"runs": args.runs, "vectors": "synthetic", "rows": rows}, indent=1))
    columns = ["size", "segments", "units", "add_s", "add_vs_smallest", "add_storage_s", "open_s", "first_query_ms", "rss_mb",
               "p50_ms", "p95_ms", "lexical_p50_ms", "dense_p50_ms", "recall10"]
    print(" | ".join(columns))
    print(" | ".join("---" for _ in columns))
    for row in rows:
        print(" | ".join(str(row.get(c, "")) for c in columns))
    print(f"medians of {args.runs} fresh processes; vectors: SYNTHETIC (clustered) at every size; texts: real sentences of the shared sets")


def run_json(command: list[str]) -> dict:
    return json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout.splitlines()[-1])


def median_row(runs: list[dict]) -> dict:
    """Each numeric figure's median over the runs (counts are the same in every run)."""
    return {key: (round(float(np.median([r[key] for r in runs])), 3) if isinstance(runs[0][key], float) else runs[-1][key]) for key in runs[0]}


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
