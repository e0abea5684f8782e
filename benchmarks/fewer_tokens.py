"""Fewer tokens for the same sentence vectors? Prefix variants against the default, same run.

    python benchmarks/fewer_tokens.py                       # bundled corpus + xquad_zh/test
    python benchmarks/fewer_tokens.py --sets seeds

wendao embeds every sentence unit with its document title and heading path in front
(``index.ingest.EMBED_TEMPLATE``): often as many tokens as the sentence. Variants measured, each
over the same chunks (the set's documents prepared by the library's chunker):

* ``sentence+title+heading``: the default, one pass per sentence unit;
* ``sentence+title``: a shorter prefix, the title only;
* ``late chunking``: one pass per chunk, ``title > heading`` once in front of the whole chunk,
  each sentence's vector the mean of its own tokens' embeddings in that pass (token-span mean
  pooling; a chunk over the model's window falls back to the default for its sentences);
* ``late chunking+prefix``: the same pass, each sentence's mean also over the prefix's
  tokens (prompt, title, heading, specials), as a per-sentence pass pools them.

For each: tokens embedded, encode seconds (units/s, chars/s), and dense and hybrid MRR@10 /
hit@5 of a knowledge base written with those vectors (``Writer.replace_all``, the same records
and BM25 postings), judged by ``qa.evaluate``. A variant may replace the default only if its
MRR@10 stays within 0.005 on every set. Prints JSON, then a table.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from common import SEEDS, open_set, present, print_json, print_markdown, timed

from corpus.folding import fold  # noqa: E402  (common puts the repository on sys.path)
from corpus.records import Chunk, Document  # noqa: E402
from index.embed_cache import encode_passages  # noqa: E402
from index.embedder import Embedder, load_embedder  # noqa: E402
from index.ingest import ENCODE_BATCH, embedding_texts, index_settings, lexical_ids  # noqa: E402
from index.segments import SegmentStore  # noqa: E402
from qa.evaluate import evaluate  # noqa: E402
from qa.service import Wendao  # noqa: E402

MODES = ["dense", "hybrid"]
LATE_BATCH = 16


def title_only(document: Document, chunk: Chunk) -> list[str]:
    return [fold(f"{document.title}\n{document.text[s:e]}") for s, e in chunk.sentences]


def per_text(texts_of):
    def encode(embedder: Embedder, documents: dict[str, Document], chunks: list[Chunk]) -> tuple[np.ndarray, int]:
        texts = [t for c in chunks for t in texts_of(documents[c.doc_id], c)]
        return encode_passages(embedder, texts, ENCODE_BATCH), sum(embedder.token_counts(texts, "document"))

    return encode


def late_chunking(
    embedder: Embedder, documents: dict[str, Document], chunks: list[Chunk], with_prefix: bool = False
) -> tuple[np.ndarray, int]:
    """One pass per chunk with its prefix once; each sentence = mean of its tokens (see the
    docstring), with the prefix's (prompt, title, heading, specials) too when ``with_prefix``:
    what a per-sentence pass pools over."""
    import torch

    model, tokenizer = embedder.model, embedder.model.tokenizer
    prompt = embedder._prompt("document")
    rows = np.cumsum([0] + [len(c.sentences) for c in chunks])
    out = np.zeros((int(rows[-1]), embedder.dimension), dtype=np.float32)
    tokens_total = 0
    texts, spans, heads = [], [], []
    for number, chunk in enumerate(chunks):
        document = documents[chunk.doc_id]
        head = f"{prompt}{fold(f'{document.title} > {chunk.heading}')}\n"
        texts.append(head + fold(chunk.text))
        heads.append(len(head))
        spans.append([(len(head) + s - chunk.start, len(head) + e - chunk.start) for s, e in chunk.sentences])
    encoded = tokenizer(texts, add_special_tokens=True, return_offsets_mapping=True, truncation=False, verbose=False)
    order = sorted(range(len(chunks)), key=lambda i: -len(encoded["input_ids"][i]))
    usable = [i for i in order if len(encoded["input_ids"][i]) <= embedder.max_tokens]
    fallback = [i for i in order if len(encoded["input_ids"][i]) > embedder.max_tokens]
    for start in range(0, len(usable), LATE_BATCH):
        batch = usable[start : start + LATE_BATCH]
        features = dict(tokenizer.pad({"input_ids": [encoded["input_ids"][i] for i in batch]}, return_tensors="pt"))
        with torch.inference_mode():
            token_vectors = model(features)["token_embeddings"].float().numpy()
        for slot, i in enumerate(batch):
            offsets = np.array(encoded["offset_mapping"][i])
            tokens_total += len(offsets)
            real = offsets[:, 1] > offsets[:, 0]  # specials have empty spans
            prefix = (offsets[:, 1] <= heads[i]) if with_prefix else np.zeros(len(offsets), dtype=bool)
            for unit, (a, b) in enumerate(spans[i]):
                inside = (real & (offsets[:, 0] < b) & (offsets[:, 1] > a)) | prefix
                vector = token_vectors[slot, : len(offsets)][inside].mean(axis=0)
                out[rows[i] + unit] = vector / np.linalg.norm(vector)
    if fallback:
        texts_fb = [t for i in fallback for t in embedding_texts(documents[chunks[i].doc_id], chunks[i])]
        vectors = encode_passages(embedder, texts_fb, ENCODE_BATCH)
        tokens_total += sum(embedder.token_counts(texts_fb, "document"))
        at = 0
        for i in fallback:
            n = len(chunks[i].sentences)
            out[rows[i] : rows[i] + n] = vectors[at : at + n]
            at += n
    return out.astype(np.float16).astype(np.float32), tokens_total


VARIANTS = {
    "sentence+title+heading (default)": per_text(embedding_texts),
    "sentence+title": per_text(title_only),
    "late chunking": late_chunking,
    "late chunking+prefix": lambda e, d, c: late_chunking(e, d, c, with_prefix=True),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default=f"{SEEDS},xquad_zh/test")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args()
    embedder = load_embedder()
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in present(args.sets):
            base, queries = open_set(name, embedder=embedder)  # the cached knowledge base: its documents and chunks
            snapshot = base.snapshot()
            chunks = list(snapshot.chunks)
            documents = dict(snapshot.documents.items())
            characters = sum(len(d.text) for d in documents.values())
            token_ids = [lexical_ids(documents[c.doc_id], c) for c in chunks]
            results[name] = {}
            for variant in args.variants.split(","):
                (vectors, tokens), seconds = timed(lambda: VARIANTS[variant](embedder, documents, chunks))
                kb = Path(tmp) / f"{name.replace('/', '-')}-{len(results[name])}"
                store = SegmentStore(kb)
                with store.lock():
                    writer = store.writer(index_settings(embedder.name, embedder.dimension, base.chunking))
                    try:
                        writer.replace_all(writer.settings, list(documents.values()), chunks, vectors, token_ids)
                    finally:
                        writer.close()
                report = evaluate(Wendao(kb_dir=kb, embedder=embedder), queries, MODES)
                results[name][variant] = {
                    "units": len(vectors), "tokens": tokens, "seconds": round(seconds, 2),
                    "units_per_s": round(len(vectors) / seconds, 1), "chars_per_s": round(characters / seconds, 1),
                    **{f"{mode} {metric}": report.results[mode][metric] for mode in MODES for metric in ("mrr@10", "hit@5")},
                }
    print_json(results)
    print_markdown(
        ("set", "variant", "tokens", "units/s", "chars/s", "dense mrr@10", "hybrid mrr@10", "hybrid hit@5"),
        ((name, variant, r["tokens"], r["units_per_s"], r["chars_per_s"], r["dense mrr@10"], r["hybrid mrr@10"], r["hybrid hit@5"])
         for name, row in results.items() for variant, r in row.items()),
    )


if __name__ == "__main__":
    main()
