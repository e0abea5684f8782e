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
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from corpus.chunking import ChunkSettings  # noqa: E402
from corpus.pipeline import sample_queries_path, seed_paths  # noqa: E402
from index.embedder import load_embedder  # noqa: E402
from qa.evaluate import build_beir_kb, evaluate, load_beir, load_queries  # noqa: E402
from qa.service import Wendao  # noqa: E402

EVALDATA = Path(__file__).resolve().parents[2] / "shared" / "evaldata"
MODES = ["lexical", "dense", "hybrid"]


def measure(name: str, size: int, embedder, folder: Path) -> dict:
    service = Wendao(kb_dir=folder / f"{name.replace('/', '_')}-{size}", embedder=embedder,
                     chunking=ChunkSettings(size=size))
    if name == "seeds":
        service.ingest(seed_paths())
        queries = load_queries(sample_queries_path())
    else:
        corpus, queries = load_beir(EVALDATA / name)
        build_beir_kb(service, corpus)
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
        for name in args.sets.split(","):
            if name != "seeds" and not (EVALDATA / name).is_dir():
                print(f"skipping {name}: not present", file=sys.stderr)
                continue
            results[name] = {int(s): measure(name, int(s), embedder, Path(tmp)) for s in args.sizes.split(",")}
    print(json.dumps(results, ensure_ascii=False, indent=1))
    print("\n| set | size | chunks | mean chars | lexical MRR@10 | dense MRR@10 | hybrid MRR@10 | hybrid hit@5 | answer hit |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, rows in results.items():
        for size, row in rows.items():
            print(f"| {name} | {size} | {row['chunks']} | {row['mean_chunk_chars']} | {row['lexical']['mrr@10']:.3f} | "
                  f"{row['dense']['mrr@10']:.3f} | {row['hybrid']['mrr@10']:.3f} | {row['hybrid']['hit@5']:.3f} | "
                  f"{row['hybrid']['answer_hit']:.3f} |")


if __name__ == "__main__":
    main()
