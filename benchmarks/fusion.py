"""Tune and record how dense and lexical scores are fused, on the shared evaluation sets.

For every query of every set it computes both retrievers' scores for every chunk once, then
replays fusion functions and weights over them (no re-encoding), judges the rankings as
``wendao eval`` does (``qa.evaluate``: documents rank where their best chunk ranks; on the
bundled questions a chunk is relevant when it holds a gold string) and prints MRR@10 / nDCG@10
/ hit@5 per set from ranx, JSON first and then a table. The methods and lexical schemes compared
with the product's are in ``fusion_methods.py``.

    python benchmarks/fusion.py                      # all sets present in ../shared/evaldata
    python benchmarks/fusion.py --sets xquad_zh/test --weights 0.3,0.5

Knowledge bases are the cached ones ``wendao eval FOLDER`` builds (built here if missing).
"""
from __future__ import annotations

import argparse
import hashlib
from dataclasses import dataclass

import numpy as np
from common import SEEDS, open_set, present, print_json, simplified
from fusion_methods import METHODS, SCHEMES, LexicalVariant, candidates

from corpus.folding import fold  # after common, which puts the repository on sys.path
from corpus.records import Chunk
from index.lexical import DEFAULT_SCHEME, LexicalIndex
from qa.evaluate import gold, metric_scores, ranking
from qa.fusion import fuse
from qa.query import plan_query
from qa.retrieve import FusionSettings, Retriever
from qa.service import Wendao
from qa.testsets import EvalQuery

SETS = (SEEDS, "cmrc2018/dev", "xquad_zh/test", "drcd/dev", "dureader_demo/search")
CANDIDATES = 100
DEPTH = 10  # units ranked per query: the metrics stop at 10
MEASURES = ("mrr@10", "ndcg@10", "hit_rate@5")


@dataclass
class SetScores:
    """Per-query chunk scores of one evaluation set, ready for replaying fusion, and its gold."""

    name: str
    queries: list[EvalQuery]
    chunks: list[Chunk]
    qrels: dict[str, dict[str, int]]  # per query id: its relevant units (``qa.evaluate.gold``)
    dense: list[np.ndarray]  # per query: cosine of every chunk
    lexical: dict[str, list[np.ndarray]]  # per lexical variant, per query: BM25 of every chunk


def load_scores(name: str, service: Wendao, queries: list[EvalQuery], variants: list[str]) -> SetScores:
    retriever = service.retriever()
    snapshot = retriever.snapshot
    chunks = snapshot.chunks
    folded = [c.folded for c in chunks]
    qrels = {q.id: gold(q, chunks, folded) for q in queries}
    vectors = _query_vectors(service, retriever, queries)
    dense = [np.maximum.reduceat(snapshot.embeddings @ vector, snapshot.unit_starts) for vector in vectors]
    lexical: dict[str, list[np.ndarray]] = {}
    for spec in variants:
        variant = LexicalVariant.parse(spec)
        titles = {d: doc.title for d, doc in snapshot.documents.items()} if variant.title else {}
        index = LexicalIndex.build(
            [variant.tokens(fold(f"{titles.get(c.doc_id, '')}\n{c.heading}\n{c.text}")) for c in chunks],
            k1=variant.k1,
            b=variant.b,
        )  # with :title this is index.ingest.lexical_tokens, the product's tokens
        lexical[spec] = [index.scores(variant.query_tokens(q.question)) for q in queries]
    return SetScores(name, queries, chunks, qrels, dense, lexical)


def _query_vectors(service: Wendao, retriever: Retriever, queries: list[EvalQuery]) -> np.ndarray:
    """Query embeddings, cached next to the knowledge base (they cost minutes on 3k queries)."""
    digest = hashlib.sha256("\n".join(q.question for q in queries).encode()).hexdigest()[:16]
    path = service.kb_dir / f"query-vectors-{digest}.npy"
    if path.is_file():
        return np.load(path)
    plans = [plan_query(q.question) for q in queries]
    retriever.embed(plans)
    vectors = np.stack([p.vector for p in plans])
    np.save(path, vectors)
    return vectors


def replay(method: str, weight: float, dense: np.ndarray, lexical: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The retriever's candidate pool and fusion, exactly (the product finds dense candidates
    with HNSW; here every chunk's exact score is known, so the pool is the exact top lists)."""
    dense = None if method == "lexical" else dense
    lexical = None if method == "dense" else lexical
    pool = candidates(dense, lexical, CANDIDATES)
    fused = fuse(method, weight, None if dense is None else dense[pool], None if lexical is None else lexical[pool], METHODS)
    return pool, fused


def metrics(scores: SetScores, method: str, weight: float | str, variant: str) -> dict[str, float]:
    """MRR@10, nDCG@10 and hit@5 of one method and weight, judged by the library."""
    run: dict[str, dict[str, float]] = {}
    for query, dense, lexical in zip(scores.queries, scores.dense, scores.lexical[variant]):
        dense_weight = FusionSettings().weight_for(query.question) if weight == "auto" else weight
        pool, fused = replay(method, dense_weight, dense, lexical)
        order = pool[np.argsort(-fused, kind="stable")]
        run[query.id] = ranking(query, [scores.chunks[i] for i in order], depth=DEPTH)
    return metric_scores(scores.qrels, run, MEASURES)


def load_set(name: str, limit: int | None, variants: list[str], simplify_queries: bool = False) -> SetScores:
    """A set's on-topic questions (the first ``limit``) and their scores over its cached knowledge base."""
    service, queries = open_set(name)
    queries = [q for q in queries if not q.off_topic]
    if limit and name != SEEDS:
        queries = queries[:limit]
    if simplify_queries:
        queries = simplified(queries)
    suffix = " (queries in Simplified)" if simplify_queries else ""
    return load_scores(name + suffix, service, queries, variants)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default=",".join(SETS))
    parser.add_argument("--methods", default=",".join(("lexical", "dense", *METHODS)))
    parser.add_argument("--weights", default="0.3,0.4,0.5,0.6,0.7,auto",
                        help="dense weights; 'auto' is the product's query-length rule (FusionSettings)")
    parser.add_argument("--schemes", default=f"{DEFAULT_SCHEME}/stop:title",
                        help=f"lexical variants, scheme[/k1=..:b=..:stop:title]; schemes: {', '.join(SCHEMES)}")
    parser.add_argument("--limit", type=int, default=None, help="first N queries of each shared set")
    parser.add_argument("--cross-script", action="store_true", help="also DRCD with Simplified queries")
    args = parser.parse_args()
    weights = [w if w == "auto" else float(w) for w in args.weights.split(",")]
    methods = args.methods.split(",")
    variants = args.schemes.split(",")
    loaded = []
    for name in present(args.sets):
        loaded.append(load_set(name, args.limit, variants))
        if args.cross_script and name.startswith("drcd"):
            loaded.append(load_set(name, args.limit, variants, simplify_queries=True))
    results: dict[str, dict[str, dict[str, float]]] = {}
    for scores in loaded:
        row = results.setdefault(scores.name, {})
        row["dense"] = metrics(scores, "dense", 1.0, variants[0])
        for variant in variants:
            prefix = "" if len(variants) == 1 else f"{variant}:"
            row[f"{prefix}lexical"] = metrics(scores, "lexical", 0.0, variant)
            for method in methods:
                if method in ("lexical", "dense"):
                    continue
                for weight in weights:
                    row[f"{prefix}{method}@{weight}"] = metrics(scores, method, weight, variant)
    print_json(results)
    columns = list(next(iter(results.values())).keys()) if results else []
    print("\nMRR@10".ljust(28) + "".join(f" | {name[:24]:>24}" for name in results))
    for column in columns:
        print(f"{column:<28}" + "".join(f" | {results[name][column]['mrr@10']:>24.4f}" for name in results))


if __name__ == "__main__":
    main()
