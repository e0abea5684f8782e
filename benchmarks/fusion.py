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
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from corpus.folding import fold  # noqa: E402
from index.lexical import DEFAULT_SCHEME, SCHEMES, LexicalIndex, tokenize_folded  # noqa: E402
from corpus.pipeline import sample_queries_path  # noqa: E402
from qa.evaluate import EvalQuery, beir_kb_dir, build_beir_kb, load_beir, load_queries, seeds_kb_dir  # noqa: E402
from qa.fusion import FUSIONS, candidates, fuse  # noqa: E402
from qa.retrieve import FusionSettings  # noqa: E402
from qa.service import Wendao  # noqa: E402

EVALDATA = Path(__file__).resolve().parents[2] / "shared" / "evaldata"
SETS = ("seeds", "cmrc2018/dev", "xquad_zh/test", "drcd/dev", "dureader_demo/search")
CANDIDATES = 100


@dataclass
class SetScores:
    """Per-query chunk scores of one evaluation set, ready for replaying fusion.

    Units are what gets judged: documents for BEIR qrels (a document ranks where its best chunk
    ranks), chunks for the bundled query file (a chunk is relevant when it holds a gold string).
    """

    name: str
    queries: list[EvalQuery]
    unit_of_chunk: np.ndarray  # unit index of each chunk
    relevant: list[set[int]]  # per query: relevant unit indices
    dense: list[np.ndarray]  # per query: cosine of every chunk
    lexical: dict[str, list[np.ndarray]]  # per tokenizer scheme, per query: BM25 of every chunk


def _scores(name: str, service: Wendao, queries: list[EvalQuery], schemes: list[str], by_chunk: bool) -> SetScores:
    retriever = service.retriever()
    snapshot = retriever.snapshot
    vectors = _query_vectors(service, retriever, queries)
    chunks = snapshot.chunks
    if by_chunk:
        unit_of_chunk = np.arange(len(chunks))
        folded = [fold(c.text) for c in chunks]
        relevant = [
            {i for i, (c, text) in enumerate(zip(chunks, folded))
             if c.doc_id in (q.relevant or [c.doc_id]) and any(fold(a) in text for a in q.answers)}
            for q in queries
        ]
    else:
        position = {d: i for i, d in enumerate(snapshot.documents)}
        unit_of_chunk = np.array([position[c.doc_id] for c in chunks])
        relevant = [{position.get(d, -1) for d in q.relevant} for q in queries]
    dense = [np.maximum.reduceat(snapshot.embeddings @ vector, snapshot.unit_starts) for vector in vectors]
    lexical: dict[str, list[np.ndarray]] = {}
    for spec in schemes:
        variant = LexicalVariant.parse(spec)
        titles = {d: doc.title for d, doc in snapshot.documents.items()} if variant.title else {}
        index = LexicalIndex.build(
            [tokenize_folded(fold(f"{titles.get(c.doc_id, '')}\n{c.heading}\n{c.text}"), variant.scheme) for c in chunks],
            k1=variant.k1,
            b=variant.b,
        )  # with :title this is index.ingest.lexical_tokens, the product's tokens
        lexical[spec] = [index.scores(variant.query_tokens(q.question)) for q in queries]
    return SetScores(name, queries, unit_of_chunk, relevant, dense, lexical)


@dataclass(frozen=True)
class LexicalVariant:
    """A lexical configuration to compare: ``scheme[/k1=..:b=..:stop]``."""

    scheme: str
    k1: float = 0.9
    b: float = 0.4
    stop: bool = False  # drop question words (什么, 多少, ...) from the query
    title: bool = False  # index each chunk with its document's title

    @classmethod
    def parse(cls, spec: str) -> "LexicalVariant":
        scheme, _, options = spec.partition("/")
        values: dict = {}
        for option in filter(None, options.split(":")):
            key, _, value = option.partition("=")
            values[key] = True if key in ("stop", "title") else float(value)
        return cls(scheme, **values)

    def query_tokens(self, question: str) -> list[str]:
        tokens = tokenize_folded(fold(question), self.scheme)
        if not self.stop:
            return tokens
        from qa.terms import STOPWORDS

        return [t for t in tokens if t not in STOPWORDS]


def load_set(folder: Path, limit: int | None, schemes: list[str], simplify_queries: bool = False) -> SetScores:
    corpus, queries = load_beir(folder)
    if limit:
        queries = queries[:limit]
    if simplify_queries:
        import opencc

        converter = opencc.OpenCC("t2s")
        queries = [replace(q, question=converter.convert(q.question)) for q in queries]
    service = Wendao(kb_dir=beir_kb_dir(folder))
    build_beir_kb(service, corpus)
    suffix = " (queries in Simplified)" if simplify_queries else ""
    return _scores(folder.relative_to(EVALDATA).as_posix() + suffix, service, queries, schemes, by_chunk=False)


def load_seeds(schemes: list[str]) -> SetScores:
    """The bundled documents and their sample questions (on-topic ones), judged by gold strings."""
    queries = [q for q in load_queries(sample_queries_path()) if not q.off_topic]
    service = Wendao(kb_dir=seeds_kb_dir())
    return _scores("seeds", service, queries, schemes, by_chunk=True)


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


def replay(method: str, weight: float, dense: np.ndarray, lexical: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The retriever's candidate pool and fusion, exactly (the product finds dense candidates
    with HNSW; here every chunk's exact score is known, so the pool is the exact top lists)."""
    dense = None if method == "lexical" else dense
    lexical = None if method == "dense" else lexical
    pool = candidates(dense, lexical, CANDIDATES)
    return pool, fuse(method, weight, None if dense is None else dense[pool], None if lexical is None else lexical[pool])


def metrics(scores: SetScores, method: str, weight: float | str, scheme: str) -> dict[str, float]:
    """MRR@10, nDCG@10 and hit@5 over units ranked where their best chunk ranks."""
    rr, ndcg, hit5 = [], [], []
    for query, relevant, dense, lexical in zip(scores.queries, scores.relevant, scores.dense, scores.lexical[scheme]):
        dense_weight = FusionSettings().weight_for(query.question) if weight == "auto" else weight
        pool, fused = replay(method, dense_weight, dense, lexical)
        order = pool[np.argsort(-fused, kind="stable")]
        ranked: list[int] = []
        for unit in scores.unit_of_chunk[order]:
            if unit not in ranked:
                ranked.append(unit)
            if len(ranked) == 10:
                break
        gains = [1.0 if unit in relevant else 0.0 for unit in ranked]
        first = next((i for i, g in enumerate(gains) if g), None)
        rr.append(0.0 if first is None else 1.0 / (first + 1))
        hit5.append(float(first is not None and first < 5))
        dcg = sum(g / np.log2(i + 2) for i, g in enumerate(gains))
        ideal = sum(1.0 / np.log2(i + 2) for i in range(min(len(relevant), 10)))
        ndcg.append(dcg / ideal if ideal else 0.0)
    return {name: round(float(np.mean(values)), 4) for name, values in
            (("mrr@10", rr), ("ndcg@10", ndcg), ("hit@5", hit5))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default=",".join(SETS))
    parser.add_argument("--methods", default=",".join(FUSIONS))
    parser.add_argument("--weights", default="0.3,0.4,0.5,0.6,0.7,auto",
                        help="dense weights; 'auto' is the product's query-length rule (FusionSettings)")
    parser.add_argument("--schemes", default=f"{DEFAULT_SCHEME}/stop:title", help=f"lexical tokenizers: {', '.join(SCHEMES)}")
    parser.add_argument("--limit", type=int, default=None, help="first N queries of each set")
    parser.add_argument("--cross-script", action="store_true", help="also DRCD with Simplified queries")
    args = parser.parse_args()
    weights = [w if w == "auto" else float(w) for w in args.weights.split(",")]
    methods = args.methods.split(",")
    schemes = args.schemes.split(",")
    loaded = []
    for name in args.sets.split(","):
        if name == "seeds":
            loaded.append(load_seeds(schemes))
            continue
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
        row["dense"] = metrics(scores, "dense", 1.0, schemes[0])
        for scheme in schemes:
            prefix = "" if len(schemes) == 1 else f"{scheme}:"
            row[f"{prefix}lexical"] = metrics(scores, "lexical", 0.0, scheme)
            for method in methods:
                if method in ("lexical", "dense"):
                    continue
                for weight in weights:
                    row[f"{prefix}{method}@{weight}"] = metrics(scores, method, weight, scheme)
    print(json.dumps(results, ensure_ascii=False, indent=1))
    columns = list(next(iter(results.values())).keys()) if results else []
    print("\nMRR@10".ljust(28) + "".join(f" | {name[:24]:>24}" for name in results))
    for column in columns:
        print(f"{column:<28}" + "".join(f" | {results[name][column]['mrr@10']:>24.4f}" for name in results))


if __name__ == "__main__":
    main()
