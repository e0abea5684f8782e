"""The README's quality table: every evaluation set, the three retrieval modes side by side.

    python benchmarks/quality.py                  # bundled sample questions + every shared set present
    python benchmarks/quality.py --limit 500      # first 500 questions of each shared set
    python benchmarks/quality.py --sets xquad_zh/test   # the bundled questions and one shared set
    python benchmarks/quality.py --kb-backend milvus-lite --sets cmrc2018/dev,xquad_zh/test,drcd/dev

Runs the evaluation of ``wendao eval`` (``qa.evaluate``) on the bundled corpus's sample questions
and on each BEIR folder in ``../shared/evaldata`` (indexed once into the user cache), and for
DRCD also with its questions converted to Simplified (cross-script). Prints JSON, then a
Markdown table.

``--kb-backend milvus-lite`` evaluates each set on both backends in the same run: the set's
local knowledge base and a Milvus Lite copy of it (``wendao copy``: the stored vectors, not
re-embedded; cached beside it), MRR@10 per mode side by side with the difference; then, also in
this run, ingest chunks/s of the bundled documents into a new knowledge base of each backend
(the same embedder: real embedding included) and the time of copying it (storage alone), and
retrieval latency (query vectors computed beforehand, so the embedding, equal on both, is left
out) median / p95 per mode over each set's first ``--latency-queries`` questions.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from common import SEEDS, cell, median_p95, open_set, present, print_json, print_markdown, simplified, timed

from qa.evaluate import evaluate  # noqa: E402  (common puts the repository on sys.path)

SETS = ("cmrc2018/dev", "xquad_zh/test", "drcd/dev", "dureader_demo/search")
MODES = ["lexical", "dense", "hybrid"]
COLUMNS = ("mrr@10", "ndcg@10", "hit@5", "answer_hit")
BUNDLED = "bundled corpus (sample questions)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="first N questions of each shared set")
    parser.add_argument("--sets", default=",".join(SETS), help=f"comma-separated shared sets (default: {','.join(SETS)})")
    parser.add_argument("--kb-backend", choices=("local", "milvus-lite"), default="local",
                        help="milvus-lite: every set on both backends, side by side (and ingest/latency figures)")
    parser.add_argument("--latency-queries", type=int, default=200)
    parser.add_argument("--quality-only", action="store_true", help="with --kb-backend: MRR@10 only (no latency, no ingest)")
    args = parser.parse_args()
    if args.kb_backend == "milvus-lite":
        compare_backends(args)
        return
    reports = {BUNDLED: evaluate(*open_set(SEEDS), MODES)}
    for name in present([s for s in args.sets.split(",") if s]):
        service, queries = open_set(name)
        queries = queries[: args.limit] if args.limit else queries
        reports[name] = evaluate(service, queries, MODES)
        if name.startswith("drcd"):
            reports[f"{name}, questions in Simplified"] = evaluate(service, simplified(queries), MODES)
    print_json({name: report.to_json() for name, report in reports.items()})
    print_markdown(
        ("set", "questions", "mode", *COLUMNS),
        ((name, report.queries, mode, *(cell(report.results[mode].get(c)) for c in COLUMNS))
         for name, report in reports.items() for mode in MODES),
    )
    seeds = reports[BUNDLED].results["hybrid"]
    print(f"\nbundled corpus, hybrid: abstained on {seeds['abstain_off_topic']:.0%} of off-topic questions "
          f"and on {seeds['abstain_on_topic']:.0%} of on-topic ones")


# -- both backends --------------------------------------------------------------------------
def milvus_copy(local):
    """A Milvus Lite copy of a set's local knowledge base, made once (beside it) by ``copy``."""
    import hashlib

    from qa.service import Wendao

    digest = hashlib.sha1(str(local.kb_dir).encode()).hexdigest()[:12]  # Milvus Lite wants short file names
    spec = f"milvus-lite:{Path(local.kb_dir).parent / f'milvus-{digest}.db'}"
    service = Wendao(kb_dir=spec, embedder=local._embedder)
    if service.store.exists() and service.store.catalog().counts != local.store.catalog().counts:  # an interrupted copy
        from milvus_lite.server_manager import server_manager_instance

        service.store.close()
        # the embedded server keeps the old file open and would go on serving it once deleted
        server_manager_instance.release_server(str(service.store.target.lite))
        for path in Path(local.kb_dir).parent.glob(f"*milvus-{digest}.db*"):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        service = Wendao(kb_dir=spec, embedder=local._embedder)
    if not service.store.exists():
        (_, chunks), seconds = timed(lambda: local.copy_to(spec))
        print(f"copied {local.kb_dir} into {spec}: {chunks} chunks in {seconds:.1f} s")
    return service


def retrieval_latency(service, plans, mode: str) -> dict[str, float]:
    """Milliseconds per search (vectors already computed), first one not counted."""
    retriever = service.retriever()
    retriever.search(plans[0], mode=mode, k=100)
    times = []
    for plan in plans[1:]:
        started = time.perf_counter()
        retriever.search(plan, mode=mode, k=100)
        times.append((time.perf_counter() - started) * 1000)
    return median_p95(times, 2)


def ingest_speed(embedder) -> dict[str, dict[str, float]]:
    """The bundled documents into a new knowledge base of each backend, then copied (no embedding)."""
    from corpus.pipeline import seed_paths
    from qa.service import Wendao

    figures = {}
    with tempfile.TemporaryDirectory() as tmp:
        for backend, spec, copy_spec in (("local", f"{tmp}/kb", f"{tmp}/copy"),
                                         ("milvus-lite", f"milvus-lite:{tmp}/kb.db", f"milvus-lite:{tmp}/copy.db")):
            service = Wendao(kb_dir=spec, embedder=embedder)
            report, seconds = timed(lambda: service.ingest(seed_paths()))
            source = Wendao(kb_dir=f"{tmp}/kb", embedder=embedder)
            _, copy_seconds = timed(lambda: source.copy_to(copy_spec))
            figures[backend] = {"chunks": report.chunks, "ingest_chunks_per_s": round(report.chunks / seconds, 2),
                                "copy_chunks_per_s": round(report.chunks / copy_seconds, 1)}
    return figures


def compare_backends(args) -> None:
    from qa.query import plan_query

    results: dict[str, dict] = {}
    sets = [*([] if args.quality_only else [SEEDS]), *present([s for s in args.sets.split(",") if s])]
    embedder = None
    for name in sets:
        local, queries = open_set(name, embedder=embedder)
        embedder = local.embedder
        queries = queries[: args.limit] if args.limit and name != SEEDS else queries
        milvus = milvus_copy(local)
        row = {}
        for backend, service in (("local", local), ("milvus-lite", milvus)):
            report = evaluate(service, queries, MODES)
            row[backend] = {mode: report.results[mode]["mrr@10"] for mode in MODES}
        if not args.quality_only:
            plans = [plan_query(q.question) for q in queries[: args.latency_queries]]
            local.retriever().embed(plans)
            row["latency_ms"] = {backend: {mode: retrieval_latency(service, plans, mode) for mode in MODES}
                                 for backend, service in (("local", local), ("milvus-lite", milvus))}
        row["questions"] = len(queries)
        results[BUNDLED if name == SEEDS else name] = row
        milvus.store.close()
    if not args.quality_only:
        results["ingest (bundled documents)"] = ingest_speed(embedder)
    print_json(results)
    if args.quality_only:
        print_markdown(("set", "questions", "mode", "MRR@10 local", "MRR@10 Milvus Lite", "difference"),
                       ((name, row["questions"], mode, f"{row['local'][mode]:.4f}", f"{row['milvus-lite'][mode]:.4f}",
                         f"{row['milvus-lite'][mode] - row['local'][mode]:+.4f}") for name, row in results.items() for mode in MODES))
        return
    print_markdown(
        ("set", "questions", "mode", "MRR@10 local", "MRR@10 Milvus Lite", "difference", "retrieval ms local (p50 / p95)",
         "retrieval ms Milvus Lite (p50 / p95)"),
        ((name, row["questions"], mode, f"{row['local'][mode]:.4f}", f"{row['milvus-lite'][mode]:.4f}",
          f"{row['milvus-lite'][mode] - row['local'][mode]:+.4f}",
          "{median} / {p95}".format(**row["latency_ms"]["local"][mode]), "{median} / {p95}".format(**row["latency_ms"]["milvus-lite"][mode]))
         for name, row in results.items() if "questions" in row for mode in MODES),
    )
    ingest = results["ingest (bundled documents)"]
    print_markdown(("backend", "chunks", "ingest chunks/s (embedding included)", "copy chunks/s (stored vectors)"),
                   ((b, f["chunks"], f["ingest_chunks_per_s"], f["copy_chunks_per_s"]) for b, f in ingest.items()))


if __name__ == "__main__":
    main()
