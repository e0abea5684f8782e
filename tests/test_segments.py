"""The segment store on real files: BM25 with live-corpus statistics equals one bm25s index over
the live chunks, tombstones hide removed documents at once, merges and compaction keep every
answer, dense candidates match exact search, and a reader pinned to a generation keeps it.

The vectors here are random unit vectors and the texts real Chinese sentences: the store does
not care where vectors come from, and these tests need no model (the ingest tests use it).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import index.segments as segments
import index.vectors as vectors
from corpus.folding import fold
from corpus.records import Chunk, Document
from index.lexical import LexicalIndex, tokenize_folded
from index.segments import SegmentStore
from index.store import IndexSettings
from index.termids import reference_ids, text_ids
from tests.sample_texts import GREENING, TYPHOON

DIM = 16
SETTINGS = IndexSettings(
    model="test", dimension=DIM, fold_version="f", tokenizer_version="t", chunk_size=300, chunk_overlap=0,
    chunker_version="c", embed_template="e", format_version=segments.FORMAT_VERSION,
)
SENTENCES = [s for s in (GREENING + TYPHOON).replace("\n", "").split("。") if s]


def make_document(doc_id: str, rng: np.random.Generator, n_chunks: int = 3) -> tuple[Document, list[Chunk], np.ndarray]:
    texts = ["。".join(rng.choice(SENTENCES, size=2)) + "。" + doc_id for _ in range(n_chunks)]
    text = "".join(texts)
    chunks, start = [], 0
    for number, chunk_text in enumerate(texts):
        end = start + len(chunk_text)
        middle = start + len(chunk_text) // 2
        chunks.append(Chunk(f"{doc_id}#{number}", doc_id, start, end, chunk_text, "", [(start, middle), (middle, end)]))
        start = end
    document = Document(doc_id=doc_id, source=doc_id, title=doc_id, text=text, sha256=doc_id, format="txt")
    units = rng.normal(size=(2 * n_chunks, DIM)).astype(np.float32)
    return document, chunks, units / np.linalg.norm(units, axis=1, keepdims=True)


def add(store: SegmentStore, docs, remove=()) -> None:
    with store.lock():
        writer = store.writer(SETTINGS)
        try:
            writer.add(
                [d for d, _, _ in docs],
                [c for _, cs, _ in docs for c in cs],
                np.vstack([v for _, _, v in docs]) if docs else np.zeros((0, DIM), np.float32),
                [text_ids(fold(f"{d.title}\n{c.heading}\n{c.text}")) for d, cs, _ in docs for c in cs],
                remove=list(remove),
            )
        finally:
            writer.close()


def live_reference(live: dict[str, tuple]) -> tuple[list[Chunk], np.ndarray, LexicalIndex]:
    """The expected state: one bm25s index and one matrix over the live documents (in key order)."""
    chunks = [c for _, cs, _ in live.values() for c in cs]
    vectors_ = np.vstack([v for _, _, v in live.values()]).astype(np.float16).astype(np.float32)
    tokens = [tokenize_folded(fold(f"{d.title}\n{c.heading}\n{c.text}")) for d, cs, _ in live.values() for c in cs]
    return chunks, vectors_, LexicalIndex.build(tokens)


def check_against_reference(store: SegmentStore, live: dict[str, tuple]) -> None:
    snapshot = store.load()
    chunks, vectors_, lexical = live_reference(live)
    assert [c.chunk_id for c in snapshot.chunks] == [c.chunk_id for c in chunks]
    assert set(snapshot.documents) == set(live)
    assert store.catalog().counts == (len(live), len(chunks))
    for query in ("台风 防御", "绿化 面积 城市", "2020年", "不存在的词"):
        tokens = tokenize_folded(fold(query))
        np.testing.assert_allclose(snapshot.lexical_scores(tokens), lexical.scores(tokens), rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(snapshot.embeddings, vectors_)
    query = vectors_[5] + 0.1
    positions = np.arange(len(chunks))
    scores, offsets = snapshot.unit_scores(query, positions)
    np.testing.assert_allclose(scores, vectors_ @ query, rtol=1e-5, atol=1e-6)
    exact_best = np.maximum.reduceat(vectors_ @ query, offsets)
    top = snapshot.dense_candidates(query, 5)
    assert list(top) == list(np.argsort(-exact_best, kind="stable")[:5])


def test_token_ids_equal_the_tokenizer():
    for text in (GREENING, TYPHOON, "COVID-19 疫情 3.5% 增长, abc.def 中文ABC混排"):
        folded = fold(text)
        assert sorted(text_ids(folded)) == sorted(reference_ids(folded))


def test_segments_tombstones_merges_and_compaction(tmp_path: Path, monkeypatch):
    rng = np.random.default_rng(1)
    store = SegmentStore(tmp_path / "kb")
    live: dict[str, tuple] = {}
    for batch in range(4):  # four commits, four segments
        docs = [make_document(f"d{batch}-{i}", rng) for i in range(3)]
        add(store, docs)
        live.update((d.doc_id, (d, c, v)) for d, c, v in docs)
    assert len(store.load().segments) == 4
    check_against_reference(store, live)

    pinned = store.load()  # a reader that opened generation G keeps seeing G
    before = [c.chunk_id for c in pinned.chunks]

    # remove one, replace another: tombstones hide them at once, statistics follow
    add(store, [], remove=["d0-1"])
    del live["d0-1"]
    replacement = make_document("d1-0", rng, n_chunks=2)
    add(store, [replacement])
    del live["d1-0"]
    live["d1-0"] = replacement
    check_against_reference(store, live)
    assert store.load().documents["d1-0"].text == replacement[0].text
    assert [c.chunk_id for c in pinned.chunks] == before
    assert pinned.documents["d0-1"].doc_id == "d0-1"

    # the merge policy bounds the number of segments (10 trailing small ones merge into one)
    for i in range(12):
        doc = make_document(f"e{i}", rng, n_chunks=1)
        add(store, [doc])
        live[doc[0].doc_id] = doc
    with store.lock():
        writer = store.writer(SETTINGS)
        merges = writer.maybe_merge()
        writer.close()
    assert merges >= 1 and len(store.load().segments) < 10
    check_against_reference(store, live)

    # compaction: one segment, the removed chunks' records gone for good, answers unchanged
    with store.lock():
        writer = store.writer(SETTINGS)
        writer.compact()
        writer.close()
    snapshot = store.load()
    assert len(snapshot.segments) == 1
    check_against_reference(store, live)
    last = make_document("last", rng)
    add(store, [last])  # the next writers sweep the segments and records no kept commit names
    live["last"] = last
    with store.lock():
        pass
    folders = {p.name for p in (store.root / "segments").iterdir()}
    assert folders == store.kept_segments() and len(folders) == 2
    snapshot = store.load()
    keys = {int(k) for (k,) in snapshot.records.db.execute("SELECT chunk_key FROM chunks")}
    assert keys == {int(k) for k in snapshot.keys}
    check_against_reference(store, live)


def test_big_segments_use_ivf_with_exact_rescoring(tmp_path: Path, monkeypatch):
    """Past IVF_MIN_UNITS a merged segment is IVF-PQ; its candidates still match exact search."""
    monkeypatch.setattr(vectors, "IVF_MIN_UNITS", 2000)
    rng = np.random.default_rng(2)
    store = SegmentStore(tmp_path / "kb")
    centres = rng.normal(size=(40, DIM))
    live = {}
    for batch in range(3):
        docs = []
        for i in range(120):
            document, chunks, _ = make_document(f"b{batch}-{i}", rng, n_chunks=3)
            units = centres[rng.integers(0, 40, size=6)] + 0.3 * rng.normal(size=(6, DIM))
            docs.append((document, chunks, (units / np.linalg.norm(units, axis=1, keepdims=True)).astype(np.float32)))
        add(store, docs)
        live.update((d.doc_id, (d, c, v)) for d, c, v in docs)
    with store.lock():
        writer = store.writer(SETTINGS)
        writer.compact()
        writer.close()
    snapshot = store.load()
    assert len(snapshot.segments) == 1 and not hasattr(snapshot.segments[0].vectors.ann, "hnsw")
    _, matrix, _ = live_reference(live)
    offsets = snapshot.unit_starts
    recall = []
    for q in range(30):
        query = matrix[rng.integers(len(matrix))] + 0.05 * rng.normal(size=DIM).astype(np.float32)
        exact = np.argsort(-np.maximum.reduceat(matrix @ query, offsets), kind="stable")[:10]
        found = snapshot.dense_candidates(query, 10)
        recall.append(len(set(exact) & set(found)) / 10)
    assert np.mean(recall) >= 0.95
    check_against_reference(store, live)


def test_failed_write_leaves_the_knowledge_base_and_nothing_behind(tmp_path: Path):
    rng = np.random.default_rng(3)
    store = SegmentStore(tmp_path / "kb")
    add(store, [make_document("a", rng)])
    state = [c.chunk_id for c in store.load().chunks], store.generation()
    document, chunks, units = make_document("b", rng)
    with pytest.raises(Exception):  # a vector too few: the segment is written, the commit is not
        with store.lock():
            writer = store.writer(SETTINGS)
            writer.add([document], chunks, units[:-1], [text_ids(c.text) for c in chunks])
    assert ([c.chunk_id for c in store.load().chunks], store.generation()) == state
    assert [p.name for p in (store.root / "segments").iterdir() if p.name.startswith(".tmp")] == []
    assert len(list((store.root / "segments").iterdir())) == 1


def test_background_merge_beside_commits(tmp_path: Path, monkeypatch):
    """A merge running on its own thread while the writer commits new documents and removes one
    whose chunks are being merged: every commit lands, the removed document stays hidden, the
    merged state equals the reference, and ``wendao compact --json`` reports what it dropped."""
    import json
    import threading

    from typer.testing import CliRunner

    from ui.cli.app import app

    rng = np.random.default_rng(4)
    store = SegmentStore(tmp_path / "kb")
    live: dict[str, tuple] = {}
    for i in range(segments.MERGE_FACTOR):  # ten one-document segments of one size class
        doc = make_document(f"m{i}", rng, n_chunks=1)
        add(store, [doc])
        live[doc[0].doc_id] = doc

    merging, committed = threading.Event(), threading.Event()
    real_write = segments.write_segment

    def held_write(root, data, settings):  # the merge's write waits until the main thread committed
        if threading.current_thread().name == "wendao-merge":
            merging.set()
            assert committed.wait(30)
        return real_write(root, data, settings)

    monkeypatch.setattr(segments, "write_segment", held_write)
    with store.lock():
        writer = store.writer(SETTINGS)
        try:
            assert writer.merge_in_background()
            assert merging.wait(30)
            new = make_document("during", rng)
            writer.add([new[0]], new[1], new[2], [text_ids(fold(f"{new[0].title}\n\n{c.text}")) for c in new[1]], remove=["m3"])
            live["during"] = new
            del live["m3"]
            committed.set()
            writer.wait_for_merges()
            assert not writer.merge_in_background()  # nothing left to merge
        finally:
            writer.close()
    snapshot = store.load()
    assert len(snapshot.segments) == 2  # the ten merged into one, then the one committed meanwhile
    assert "m3" not in snapshot.documents
    check_against_reference(store, live)

    result = CliRunner().invoke(app, ["compact", "--kb", str(store.root), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    # m3's chunk was merged while it was being removed: compaction drops it for good
    assert report == {"merges": 1, "segments_before": 2, "segments_after": 1, "dropped_chunks": 1, "chunks": sum(len(cs) for _, cs, _ in live.values())}
    check_against_reference(store, live)


def test_overlapped_hybrid_search_equals_one_after_the_other(tmp_path: Path):
    """Hybrid search runs BM25 on a worker thread while the dense side runs (``concurrent_search``):
    the hits equal those of the two run one after the other, on segments with tombstones (scored
    beside) and without (scored in place), and the sampled-threshold top-k equals a full sort."""
    from index.local_store import LocalStore, top_ids
    from qa.query import plan_query
    from qa.retrieve import Retriever

    rng = np.random.default_rng(5)
    store = LocalStore(tmp_path / "kb")
    docs = [make_document(f"d{i}", rng, n_chunks=4) for i in range(30)]
    add(store, docs[:15])
    add(store, docs[15:], remove=["d3", "d7"])
    view = store.load()
    assert view.concurrent_search and any(live.live is not None for live in view._live)
    for question in ("台风来临前如何防御？", "城市绿化面积是多少", "d12"):
        plan = plan_query(question)
        plan.vector = docs[int(rng.integers(30))][2][0]
        overlapped = Retriever(view, None).search(plan, mode="hybrid", k=10)
        view.concurrent_search = False
        try:
            sequential = Retriever(view, None).search(plan, mode="hybrid", k=10)
        finally:
            del view.concurrent_search
        assert [(h.position, h.score, h.lexical, h.dense) for h in overlapped] == [(h.position, h.score, h.lexical, h.dense) for h in sequential]
        assert overlapped and all(h.document.doc_id not in ("d3", "d7") for h in overlapped)
    for size, k in ((2_000_000, 100), (300_000, 100), (5_000, 10)):
        scores = rng.random(size) * (rng.random(size) < 0.8)
        scores[rng.integers(size, size=50)] = scores.max()  # ties at the top
        best = top_ids(scores, k)
        assert len(best) == k and np.all(np.diff(scores[best]) <= 0)
        np.testing.assert_array_equal(np.sort(scores[best]), np.sort(scores)[-k:])
