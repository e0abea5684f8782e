"""Tune and record how dense and lexical scores are fused, on the shared evaluation sets.

For every query of every set it computes both retrievers' scores for every chunk once, then
replays fusion functions and weights over them (no re-encoding), ranking documents where
their best chunk ranks, and prints MRR@10 / nDCG@10 per set, JSON first and then a table.

    python benchmarks/fusion.py                      # all sets present in ../shared/evaldata
    python benchmarks/fusion.py --sets xquad_zh/test --weights 0.3,0.5

Knowledge bases are the cached ones ``wendao eval FOLDER`` builds (built here if missing).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from corpus.folding import fold  # noqa: E402
from index.lexical import DEFAULT_SCHEME, SCHEMES, LexicalIndex, tokenize_folded  # noqa: E402
from qa.evaluate import EvalQuery, beir_kb_dir, build_beir_kb, load_beir  # noqa: E402
from qa.fusion import FUSIONS, fuse  # noqa: E402
from qa.service import Wendao  # noqa: E402

EVALDATA = Path(__file__).resolve().parents[2] / "shared" / "evaldata"
SETS = ("cmrc2018/dev", "xquad_zh/test", "drcd/dev", "dureader_demo/search")
CANDIDATES = 100


@dataclass
class SetScores:
    """Per-query chunk scores of one evaluation set, ready for replaying fusion."""

    name: str
    queries: list[EvalQuery]
    chunk_docs: np.ndarray  # doc index of each chunk
    doc_ids: list[str]
    dense: list[np.ndarray]  # per query: cosine of every chunk
    lexical: dict[str, list[np.ndarray]]  # per tokenizer scheme, per query: BM25 of every chunk


def load_set(folder: Path, limit: int | None, schemes: list[str], simplify_queries: bool = False) -> SetScores:
    corpus, queries = load_beir(folder)
    if limit:
        queries = queries[:limit]
    if simplify_queries:
        import opencc

        converter = opencc.OpenCC("t2s")
        queries = [EvalQuery(q.id, converter.convert(q.question), q.answers, q.relevant) for q in queries]
    service = Wendao(kb_dir=beir_kb_dir(folder, service_chunk_size(), "multilingual-e5-small"))
    build_beir_kb(service, corpus, progress=True)
    retriever = service.retriever()
    snapshot = retriever.snapshot
    vectors = _query_vectors(service, retriever, queries)
    doc_ids = list(snapshot.documents)
    position = {d: i for i, d in enumerate(doc_ids)}
    chunk_docs = np.array([position[c.doc_id] for c in snapshot.chunks])
    dense = [snapshot.embeddings @ vector for vector in vectors]
    lexical: dict[str, list[np.ndarray]] = {}
    for scheme in schemes:
        index = LexicalIndex.build(
            [tokenize_folded(fold(f"{c.heading}\n{c.text}"), scheme) for c in snapshot.chunks]
        )
        lexical[scheme] = [index.scores(tokenize_folded(fold(q.question), scheme)) for q in queries]
    suffix = " (queries in Simplified)" if simplify_queries else ""
    return SetScores(folder.relative_to(EVALDATA).as_posix() + suffix, queries, chunk_docs, doc_ids, dense, lexical)


def service_chunk_size() -> int:
    from corpus.chunking import ChunkSettings

    return ChunkSettings().size


def _query_vectors(service: Wendao, retriever, queries: list[EvalQuery]) -> np.ndarray:
    """Query embeddings, cached next to the knowledge base (they cost minutes on 3k queries)."""
    digest = hashlib.sha256("\n".join(q.question for q in queries).encode()).hexdigest()[:16]
    path = service.kb_dir / f"query-vectors-{digest}.npy"
    if path.is_file():
        return np.load(path)
    plans = retriever.plans([q.question for q in queries])
    vectors = np.stack([p.vector for p in plans])
    np.save(path, vectors)
    return vectors


def doc_metrics(scores: SetScores, method: str, weight: float, scheme: str) -> dict[str, float]:
    """MRR@10 and nDCG@10 with documents ranked where their best chunk ranks."""
    rr, ndcg = [], []
    position = {d: i for i, d in enumerate(scores.doc_ids)}
    for query, dense, lexical in zip(scores.queries, scores.dense, scores.lexical[scheme]):
        candidates, fused = fuse(method, weight, dense, lexical, CANDIDATES)
        order = candidates[np.argsort(-fused, kind="stable")]
        ranked: list[int] = []
        for doc in scores.chunk_docs[order]:
            if doc not in ranked:
                ranked.append(doc)
            if len(ranked) == 10:
                break
        relevant = {position.get(d, -1) for d in query.relevant}
        gains = [1.0 if doc in relevant else 0.0 for doc in ranked]
        first = next((i for i, g in enumerate(gains) if g), None)
        rr.append(0.0 if first is None else 1.0 / (first + 1))
        dcg = sum(g / np.log2(i + 2) for i, g in enumerate(gains))
        ideal = sum(1.0 / np.log2(i + 2) for i in range(min(len(relevant), 10)))
        ndcg.append(dcg / ideal if ideal else 0.0)
    return {"mrr@10": round(float(np.mean(rr)), 4), "ndcg@10": round(float(np.mean(ndcg)), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default=",".join(SETS))
    parser.add_argument("--methods", default=",".join(FUSIONS))
    parser.add_argument("--weights", default="0.2,0.3,0.4,0.5,0.6,0.7")
    parser.add_argument("--schemes", default=DEFAULT_SCHEME, help=f"lexical tokenizers: {', '.join(SCHEMES)}")
    parser.add_argument("--limit", type=int, default=None, help="first N queries of each set")
    parser.add_argument("--cross-script", action="store_true", help="also DRCD with Simplified queries")
    args = parser.parse_args()
    weights = [float(w) for w in args.weights.split(",")]
    methods = args.methods.split(",")
    schemes = args.schemes.split(",")
    loaded = []
    for name in args.sets.split(","):
        folder = EVALDATA / name
        if not folder.is_dir():
            print(f"skipping {name}: {folder} not present", file=sys.stderr)
            continue
        loaded.append(load_set(folder, args.limit, schemes))
        if args.cross_script and name.startswith("drcd"):
            loaded.append(load_set(folder, args.limit, schemes, simplify_queries=True))
    results: dict[str, dict[str, dict[str, float]]] = {}
    for scores in loaded:
        row = results.setdefault(scores.name, {})
        row["dense"] = doc_metrics(scores, "dense", 1.0, schemes[0])
        for scheme in schemes:
            prefix = "" if len(schemes) == 1 else f"{scheme}:"
            row[f"{prefix}lexical"] = doc_metrics(scores, "lexical", 0.0, scheme)
            for method in methods:
                if method in ("lexical", "dense"):
                    continue
                for weight in weights:
                    row[f"{prefix}{method}@{weight:g}"] = doc_metrics(scores, method, weight, scheme)
    print(json.dumps(results, ensure_ascii=False, indent=1))
    columns = list(next(iter(results.values())).keys()) if results else []
    print("\nMRR@10".ljust(28) + "".join(f" | {name[:24]:>24}" for name in results))
    for column in columns:
        print(f"{column:<28}" + "".join(f" | {results[name][column]['mrr@10']:>24.4f}" for name in results))


if __name__ == "__main__":
    main()
