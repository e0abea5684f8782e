"""Ingest throughput and per-stage query latency, on the bundled corpus and a shared set.

    python benchmarks/pipeline.py                         # bundled corpus + DuReader (largest set)
    python benchmarks/pipeline.py --sets seeds --ingest-runs 3 --queries 100

Ingest: a fresh knowledge base is built from the documents (load, clean, chunk, embed,
index, atomic write) ``--ingest-runs`` times; chunks per second, median of the runs. After
each ingest the model alone encodes the same sentence units (the texts the ingest embedded, in
the ingest's own batches: ``index.embed_cache.encode_passages``): the ingest's units per second
over the model's, in the same run, says how much the stages around the model cost.
Queries: ``wendao ask`` in hybrid mode over the set's questions; median and p95 per stage
(fold, embed, lexical, dense, fusion, answer) and the ratio of everything but the query
embedding to the embedding. Prints JSON, then a table.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
from pathlib import Path

from common import SEEDS, median_p95, open_set, present, print_json, timed

from index.embed_cache import encode_passages  # after common, which puts the repository on sys.path
from index.embedder import Embedder, load_embedder
from index.ingest import ENCODE_BATCH, embedding_texts
from qa.service import Wendao

STAGES = ("fold", "embed", "lexical", "dense", "fusion", "answer")


def ingest_once(name: str, embedder: Embedder, folder: Path) -> tuple[float, int, int, float]:
    """Seconds, chunks and sentence units of one fresh ingest of the set's documents, then the
    seconds the model alone takes to encode those units."""
    kb = folder / "kb"
    shutil.rmtree(kb, ignore_errors=True)
    (service, _), seconds = timed(lambda: open_set(name, kb_dir=kb, embedder=embedder))
    snapshot = service.snapshot()
    chunks = list(snapshot.chunks)
    documents = dict(snapshot.documents.items())
    texts = list(dict.fromkeys(t for c in chunks for t in embedding_texts(documents[c.doc_id], c)))
    _, model_seconds = timed(lambda: encode_passages(embedder, texts, ENCODE_BATCH))
    return seconds, len(chunks), len(texts), model_seconds


def query_latency(service: Wendao, texts: list[str]) -> dict[str, dict[str, float]]:
    """Median and p95 (ms) per stage; the first question warms up and is not counted."""
    service.ask(texts[0])
    per_stage: dict[str, list[float]] = {stage: [] for stage in (*STAGES, "total")}
    for text in texts[1:]:
        timings = service.ask(text).timings_ms
        for stage in per_stage:
            per_stage[stage].append(timings.get(stage, 0.0))
    rest = [sum(t for s, t in zip(STAGES, values) if s != "embed") for values in zip(*(per_stage[s] for s in STAGES))]
    per_stage["all but embed"] = rest
    return {stage: median_p95(values) for stage, values in per_stage.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="seeds,dureader_demo/search")
    parser.add_argument("--ingest-runs", type=int, default=3, help="fresh ingests of the bundled corpus")
    parser.add_argument("--large-ingest-runs", type=int, default=1,
                        help="fresh ingests of a shared set (0: latency only, on the set's cached knowledge base)")
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    embedder = load_embedder()
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in present(args.sets):
            count = args.ingest_runs if name == SEEDS else args.large_ingest_runs
            runs = [ingest_once(name, embedder, Path(tmp)) for _ in range(count)]
            # after the runs, their knowledge base; with none, the cached one ``wendao eval`` uses
            service, queries = open_set(name, kb_dir=Path(tmp) / "kb" if runs else None, embedder=embedder)
            latency = query_latency(service, [q.question for q in queries][: args.queries + 1])
            embed = latency["embed"]["median"]
            results[name] = {
                "ingest": None if not runs else {
                    "chunks": runs[0][1], "units": runs[0][2], "runs": len(runs), "seconds": [round(r[0], 2) for r in runs],
                    "chunks_per_s_median": round(statistics.median(r[1] / r[0] for r in runs), 2),
                    "units_per_s_median": round(statistics.median(r[2] / r[0] for r in runs), 2),
                    "model_units_per_s_median": round(statistics.median(r[2] / r[3] for r in runs), 2),
                    "ingest_over_model": round(statistics.median(r[3] / r[0] for r in runs), 3)},
                "chunks": len(service.snapshot().chunks),
                "vectors": len(service.snapshot().embeddings),
                "query_ms": latency,
                "rest_over_embed": round(latency["all but embed"]["median"] / embed, 4) if embed else None,
            }
    print_json(results)
    for name, row in results.items():
        ingest = row["ingest"]
        speed = (f"{ingest['chunks_per_s_median']} chunks/s, {ingest['units_per_s_median']} units/s = "
                 f"{ingest['ingest_over_model']}x the model's own {ingest['model_units_per_s_median']} units/s "
                 f"(median of {ingest['runs']})") if ingest else "ingest not run"
        print(f"\n{name}: {row['chunks']} chunks, {row['vectors']} sentence vectors; {speed}; "
              f"all-but-embedding / embedding = {row['rest_over_embed']}")
        print(f"{'stage':<14} | {'median ms':>10} | {'p95 ms':>10}")
        for stage, value in row["query_ms"].items():
            print(f"{stage:<14} | {value['median']:>10.2f} | {value['p95']:>10.2f}")


if __name__ == "__main__":
    main()
