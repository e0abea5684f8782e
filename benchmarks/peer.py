"""wendao side by side with the LangChain stack a user would otherwise build, same model folder.

    pip install -e ".[bench]"                  # langchain-community, langchain-classic, rank_bm25
    python benchmarks/peer.py                  # bundled corpus + xquad_zh/test
    python benchmarks/peer.py --sets seeds --ingest-runs 3

The peer is what Langchain-Chatchat ships: ``RecursiveCharacterTextSplitter`` with Chinese
separators (250 characters, overlap 50), ``HuggingFaceEmbeddings`` over wendao's own model folder
(normalised; no e5 "query: "/"passage: " prefixes, as ``HuggingFaceEmbeddings`` sends none),
``FAISS.from_documents``, ``BM25Retriever`` with ``jieba.lcut``, and an ``EnsembleRetriever``
weighting both 0.5/0.5 (weighted reciprocal rank fusion). Both systems get the same documents
(the bundled files' text; a BEIR set's passages, whose titles only wendao uses, as its ingest
does) and the same questions, in one process, one after the other, on the same threads:

* ingest: a fresh index from the documents (wendao: load, clean, chunk, embed, segment and
  records written; the peer: split, embed, FAISS and BM25 built in memory), chunks/s and
  characters of input per second, median of ``--ingest-runs`` (1 for a shared set);
* query latency: one question at a time, top 10, wall time (wendao ``search`` in hybrid mode:
  plan, embedding, BM25, dense, fusion; the peer ``ensemble.invoke``), median and p95, the first
  question not counted; ingests alternate between the systems and so does which one answers a
  question first, so the machine's other load falls on both;
* quality: MRR@10 and hit@5, judged by wendao's own rules (``qa.evaluate.gold`` / ``ranking``:
  a document ranks where its best chunk ranks; on the bundled questions a chunk is relevant
  when it holds a gold answer after folding).

Prints JSON, then a table. The machine's other load skews times; ratios come from one run.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from common import SEEDS, median_p95, open_set, present, print_json, print_markdown, set_path, timed

from corpus.folding import fold  # noqa: E402  (common puts the repository on sys.path)
from index.embedder import Embedder, load_embedder  # noqa: E402
from qa.evaluate import gold, metric_scores, ranking  # noqa: E402
from qa.testsets import load_beir  # noqa: E402

PEER_SEPARATORS = ["\n\n", "\n", "。", "！", "？", "；", "，", "、", ""]
PEER_SIZE, PEER_OVERLAP = 250, 50
PEER_WEIGHTS = [0.5, 0.5]  # BM25, FAISS
TOP = 10


@dataclass(frozen=True)
class PeerChunk:
    """What wendao's judging reads of a chunk (``qa.evaluate.gold`` / ``ranking``)."""

    chunk_id: str
    doc_id: str


def documents_of(name: str) -> list[tuple[str, str, str]]:
    """(doc id, title, text) of a set's documents, as both systems receive them."""
    if name == SEEDS:
        from corpus.pipeline import seed_paths

        return [(p.name, "", p.read_text(encoding="utf-8")) for p in seed_paths()]
    corpus, _ = load_beir(set_path(name))
    return [(p.id, p.title, p.text) for p in corpus if p.text.strip()]


# -- the peer --------------------------------------------------------------------------------
class Peer:
    """The LangChain stack over one set's documents."""

    def __init__(self, model_folder: str):
        from langchain_community.embeddings import HuggingFaceEmbeddings

        self.embeddings = HuggingFaceEmbeddings(
            model_name=model_folder, model_kwargs={"device": "cpu"}, encode_kwargs={"normalize_embeddings": True, "batch_size": 32}
        )
        self.retriever = None
        self.chunks: list[PeerChunk] = []
        self.folded: list[str] = []

    def ingest(self, documents: list[tuple[str, str, str]]) -> int:
        import jieba
        from langchain_classic.retrievers import EnsembleRetriever
        from langchain_community.retrievers import BM25Retriever
        from langchain_community.vectorstores import FAISS
        from langchain_core.documents import Document
        from langchain_text_splitters import RecursiveCharacterTextSplitter

        splitter = RecursiveCharacterTextSplitter(
            separators=PEER_SEPARATORS, chunk_size=PEER_SIZE, chunk_overlap=PEER_OVERLAP, keep_separator="end"
        )
        pieces = splitter.split_documents([Document(page_content=text, metadata={"doc_id": d}) for d, _, text in documents])
        for number, piece in enumerate(pieces):
            piece.metadata["chunk_id"] = f"{piece.metadata['doc_id']}#{number}"
        vectors = FAISS.from_documents(pieces, self.embeddings)
        bm25 = BM25Retriever.from_documents(pieces, preprocess_func=jieba.lcut, k=TOP)
        self.retriever = EnsembleRetriever(
            retrievers=[bm25, vectors.as_retriever(search_kwargs={"k": TOP})], weights=PEER_WEIGHTS, id_key="chunk_id"
        )
        self.chunks = [PeerChunk(p.metadata["chunk_id"], p.metadata["doc_id"]) for p in pieces]
        self.folded = [fold(p.page_content) for p in pieces]
        return len(pieces)

    def search(self, question: str) -> list[PeerChunk]:
        return [PeerChunk(d.metadata["chunk_id"], d.metadata["doc_id"]) for d in self.retriever.invoke(question)[:TOP]]


# -- measuring -------------------------------------------------------------------------------
def ingest_figures(runs: list[tuple[float, int]], characters: int) -> dict:
    seconds = statistics.median(s for s, _ in runs)
    chunks = runs[0][1]
    return {"runs": len(runs), "seconds": [round(s, 2) for s, _ in runs], "chunks": chunks,
            "chunks_per_s": round(chunks / seconds, 2), "chars_per_s": round(characters / seconds, 1)}


def wendao_ingest(name: str, embedder: Embedder, kb: Path):
    """A fresh knowledge base of the set (timed by the caller); its service and questions."""
    shutil.rmtree(kb, ignore_errors=True)
    return open_set(name, kb_dir=kb, embedder=embedder)


def side_by_side(name: str, embedder: Embedder, peer: Peer, runs: int, folder: Path) -> dict:
    """Ingests alternate (wendao, peer, wendao, ...) and so do questions (one system first on
    even questions, the other on odd ones): load that comes and goes on a shared machine falls
    on both."""
    documents = documents_of(name)
    characters = sum(len(text) for _, _, text in documents)
    mine, theirs = [], []
    for _ in range(runs):
        (service, queries), seconds = timed(lambda: wendao_ingest(name, embedder, folder / "kb"))
        mine.append((seconds, len(service.snapshot().chunks)))
        count, seconds = timed(lambda: peer.ingest(documents))
        theirs.append((seconds, count))
    queries = [q for q in queries if not q.off_topic]
    chunks = list(service.snapshot().chunks)
    systems = {
        "wendao": (lambda q: [h.chunk for h in service.search(q, k=TOP)[0]], chunks, [c.folded for c in chunks]),
        "peer": (peer.search, peer.chunks, peer.folded),
    }
    times = {s: [] for s in systems}
    runs_of = {s: {} for s in systems}
    qrels = {s: {} for s in systems}
    for number, query in enumerate(queries):
        for system in (("wendao", "peer") if number % 2 == 0 else ("peer", "wendao")):
            search, its_chunks, folded = systems[system]
            ranked, seconds = timed(lambda: search(query.question))
            if number:  # the first question warms both up
                times[system].append(seconds * 1000)
            qrels[system][query.id] = gold(query, its_chunks, folded)
            runs_of[system][query.id] = ranking(query, ranked, depth=TOP)
    out = {"characters": characters, "documents": len(documents), "questions": len(queries)}
    for system, ingests in (("wendao", mine), ("peer", theirs)):
        scores = metric_scores(qrels[system], runs_of[system], ("mrr@10", "hit_rate@5"))
        out[system] = {"ingest": ingest_figures(ingests, characters), "query_ms": median_p95(times[system], 2),
                       "mrr@10": scores["mrr@10"], "hit@5": scores["hit@5"]}
    out["wendao"]["vectors"] = len(service.snapshot().embeddings)
    out["peer"]["vectors"] = len(peer.chunks)
    out["ingest_chars_ratio"] = round(out["wendao"]["ingest"]["chars_per_s"] / out["peer"]["ingest"]["chars_per_s"], 3)
    out["query_p50_ratio"] = round(out["wendao"]["query_ms"]["median"] / out["peer"]["query_ms"]["median"], 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default=f"{SEEDS},xquad_zh/test")
    parser.add_argument("--ingest-runs", type=int, default=3, help="fresh ingests of the bundled corpus (a shared set: 1)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for both systems")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    embedder = load_embedder()
    folder = embedder.source.path
    import jieba

    jieba.initialize()  # its dictionary loads once per process, for both (wendao's query terms use it too)
    peer = Peer(folder)  # its own copy of the model, loaded once like wendao's
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in present(args.sets):
            results[name] = side_by_side(name, embedder, peer, args.ingest_runs if name == SEEDS else 1, Path(tmp))
            print(f"{name}: {results[name]}", file=sys.stderr, flush=True)  # a long run's partial results
    results["machine"] = {"threads": args.threads, "cpus": os.cpu_count(), "load_avg_after": os.getloadavg()}
    print_json(results)
    rows = []
    for name, row in results.items():
        if name == "machine":
            continue
        for system in ("wendao", "peer"):
            r = row[system]
            rows.append((name, system, r["ingest"]["chunks"], r["vectors"], r["ingest"]["chunks_per_s"], r["ingest"]["chars_per_s"],
                         f"{r['query_ms']['median']:.1f} / {r['query_ms']['p95']:.1f}", f"{r['mrr@10']:.3f}", f"{r['hit@5']:.3f}"))
    print_markdown(("set", "system", "chunks", "vectors", "ingest chunks/s", "ingest chars/s", "query p50 / p95 ms", "mrr@10", "hit@5"), rows)


if __name__ == "__main__":
    main()
