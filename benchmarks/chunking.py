"""Chunk size, measured: retrieval quality and index size for several sizes.

    python benchmarks/chunking.py                          # bundled corpus + XQuAD, 5 sizes
    python benchmarks/chunking.py --sizes 200,300 --sets xquad_zh/test,drcd/dev

Each size builds a fresh knowledge base (in a temporary folder) and runs the evaluation in
the three modes. On the shared sets a document ranks where its best chunk ranks, so sizes are
compared fairly; on the bundled questions a chunk is relevant when it holds a gold string, which
favours long chunks (more text, more chances), so read that column with care. Prints JSON, then
a table.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from common import open_set, present, print_json, print_markdown

from corpus.chunking import ChunkSettings  # after common, which puts the repository on sys.path
from index.embedder import Embedder, load_embedder
from qa.evaluate import evaluate

MODES = ["lexical", "dense", "hybrid"]


def measure(name: str, size: int, embedder: Embedder, folder: Path) -> dict:
    service, queries = open_set(name, kb_dir=folder / f"{name.replace('/', '_')}-{size}", embedder=embedder,
                                chunking=ChunkSettings(size=size))
    snapshot = service.snapshot()
    report = evaluate(service, queries, MODES)
    return {
        "chunks": len(snapshot.chunks),
        "mean_chunk_chars": round(sum(len(c.text) for c in snapshot.chunks) / len(snapshot.chunks), 1),
        "vectors": len(snapshot.embeddings),
        **{mode: {k: report.results[mode][k] for k in ("mrr@10", "hit@5", "answer_hit")} for mode in MODES},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="seeds,xquad_zh/test")
    parser.add_argument("--sizes", default="150,200,300,450,600")
    args = parser.parse_args()
    embedder = load_embedder()
    results: dict[str, dict[int, dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in present(args.sets):
            results[name] = {int(s): measure(name, int(s), embedder, Path(tmp)) for s in args.sizes.split(",")}
    print_json(results)
    print_markdown(
        ("set", "size", "chunks", "mean chars", "lexical MRR@10", "dense MRR@10", "hybrid MRR@10", "hybrid hit@5", "answer hit"),
        ((name, size, row["chunks"], row["mean_chunk_chars"], *(f"{row[m]['mrr@10']:.3f}" for m in MODES),
          f"{row['hybrid']['hit@5']:.3f}", f"{row['hybrid']['answer_hit']:.3f}")
         for name, rows in results.items() for size, row in rows.items()),
    )


if __name__ == "__main__":
    main()
