"""HNSW or IVF for a segment's vectors? Memory, build time, latency and recall@10, measured.

    python benchmarks/ann_choice.py --units 100000

Synthetic clustered unit vectors of e5-small's shape (384 dimensions), stored float16 as the
segment store keeps them; queries are stored vectors plus noise; recall@10 is against an exact
scan. HNSW is FAISS ``IndexHNSWFlat`` (M 32, efConstruction 80, efSearch 128: today's dense
index); IVF is ``IndexIVFPQ`` (1024 lists, 48 bytes a vector, 48 probes) whose top 8×k candidates
are re-scored exactly from the float16 vectors (``index.vectors``). Prints JSON.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import index.vectors as vectors  # noqa: E402

DIM = 384


def data(units: int, queries: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((2048, DIM), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    x = centres[rng.integers(0, 2048, units)] + rng.standard_normal((units, DIM), dtype=np.float32) * (1.1 / np.sqrt(DIM))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = x[rng.integers(0, units, queries)] + rng.standard_normal((queries, DIM), dtype=np.float32) * (0.6 / np.sqrt(DIM))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return x.astype(np.float16), q


def measure(name: str, build, search, x16: np.ndarray, q: np.ndarray, exact: np.ndarray) -> dict:
    started = time.perf_counter()
    index = build()
    build_s = time.perf_counter() - started
    found, times = [], []
    for row in q:
        started = time.perf_counter()
        found.append(search(index, row))
        times.append((time.perf_counter() - started) * 1000)
    recall = np.mean([len(set(f[:10]) & set(e)) / 10 for f, e in zip(found, exact)])
    size = faiss.serialize_index(index).nbytes
    return {
        "index": name, "units": len(x16), "build_s": round(build_s, 1), "index_bytes_per_vector": round(size / len(x16)),
        "ram_at_5M_units_gb": round(size / len(x16) * 5e6 / 1e9, 2), "p50_ms": round(float(np.percentile(times, 50)), 2),
        "p95_ms": round(float(np.percentile(times, 95)), 2), "recall10": round(float(recall), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--units", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=100)
    args = parser.parse_args()
    x16, q = data(args.units, args.queries)
    x = x16.astype(np.float32)
    exact = [np.argsort(-(x @ row))[:10] for row in q]
    results = []

    def hnsw():
        index = faiss.IndexHNSWFlat(DIM, vectors.HNSW_NEIGHBOURS, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = vectors.HNSW_BUILD_DEPTH
        index.add(x)
        return index

    def hnsw_search(index, row):
        params = faiss.SearchParametersHNSW(efSearch=vectors.HNSW_MIN_SEARCH_DEPTH)
        return index.search(row.reshape(1, -1), 10, params=params)[1][0]

    segment = vectors.SegmentVectors(x16, None)

    def ivf():
        codec = vectors.train_codec(x[np.random.default_rng(1).choice(len(x), min(len(x), vectors.TRAIN_SAMPLE), replace=False)], DIM)
        codec.add(x)
        segment.ann = codec
        return codec

    def ivf_search(index, row):
        return segment.search(row, 10)[1]

    results.append(measure("ivf-pq+rescore", ivf, ivf_search, x16, q, exact))
    print(json.dumps(results[-1]), flush=True)
    results.append(measure("hnsw-flat", hnsw, hnsw_search, x16, q, exact))
    print(json.dumps(results[-1]), flush=True)


if __name__ == "__main__":
    main()
