"""A knowledge base of the previous format (generation folders) is converted on first open:
same documents, chunks, vectors and answers, nothing re-embedded, no old folders left."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from index.ingest import lexical_tokens
from index.segments import SegmentStore
from index.store import KnowledgeBaseStore
from qa.service import Wendao

QUESTIONS = ("衢州职业教育的目标是什么", "崇州市职教中心引进了多少名企业工程师", "台风")


class CountingEmbedder:
    """The real embedder, counting the passages it is asked to embed."""

    def __init__(self, inner):
        self._inner = inner
        self.documents = 0

    def encode_documents(self, texts, *args, **kwargs):
        self.documents += len(texts)
        return self._inner.encode_documents(texts, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._inner, name)


def test_old_format_is_converted_without_reembedding(seed_service: Wendao, embedder, tmp_path: Path):
    source = seed_service.snapshot()
    documents = dict(source.documents.items())
    chunks = list(source.chunks)
    kb = tmp_path / "old"
    old = KnowledgeBaseStore(kb)
    with old.lock():  # written by the previous format's own writer
        old.write(replace(source.settings, format_version=2), documents, chunks, source.embeddings,
                  [lexical_tokens(documents[c.doc_id], c) for c in chunks])
    assert SegmentStore(kb).legacy()

    counting = CountingEmbedder(embedder)
    service = Wendao(kb_dir=kb, embedder=counting)
    converted = service.snapshot()
    assert counting.documents == 0
    assert sorted(p.name for p in kb.iterdir()) == ["records.db", "records.db-shm", "records.db-wal", "segments", "write.lock"]
    assert converted.settings == source.settings
    assert dict(converted.documents.items()) == documents and list(converted.chunks) == chunks
    np.testing.assert_array_equal(converted.embeddings, source.embeddings)
    for question in QUESTIONS:
        for mode in ("lexical", "hybrid"):
            expected, _ = seed_service.search(question, mode=mode, k=5)
            found, _ = service.search(question, mode=mode, k=5)
            assert [h.chunk.chunk_id for h in found] == [h.chunk.chunk_id for h in expected]
            # lexical scores are exact; fused ones move a little with the candidate pool (the
            # source has two segments, the converted knowledge base one)
            tolerance = 1e-5 if mode == "lexical" else 0.02
            np.testing.assert_allclose([h.score for h in found], [h.score for h in expected], rtol=tolerance)
            if mode == "hybrid":
                np.testing.assert_allclose([h.dense for h in found], [h.dense for h in expected], rtol=1e-6)


def test_old_format_page_layouts_survive_conversion_and_reindex(embedder, tmp_path: Path):
    """A PDF's page layout (where each character stands on its page) written by the old format
    is carried into the new one both by the conversion on open and by ``reindex`` run on the
    old folder itself; its original file stays readable, and no old folder is left."""
    import shutil

    from index.pagestore import ORIGINALS, PAGES_FILE
    from tests.scan_samples import make_text_pdf

    pdf = tmp_path / "docs" / "scan.pdf"
    pdf.parent.mkdir()
    make_text_pdf(pdf)
    new = Wendao(kb_dir=tmp_path / "new", embedder=embedder)
    new.ingest([pdf])
    source = new.snapshot()
    documents = dict(source.documents.items())
    chunks = list(source.chunks)
    layout = source.records.layout_line("scan.pdf")
    assert layout and documents["scan.pdf"].pages

    for name in ("converted", "reindexed"):
        kb = tmp_path / name
        old = KnowledgeBaseStore(kb)
        with old.lock():
            old.write(replace(source.settings, format_version=2), documents, chunks, source.embeddings,
                      [lexical_tokens(documents[c.doc_id], c) for c in chunks],
                      extra=lambda folder: (folder / PAGES_FILE).write_text(layout + "\n", encoding="utf-8"))
        shutil.copytree(tmp_path / "new" / ORIGINALS, kb / ORIGINALS)
        assert SegmentStore(kb).legacy()

    counting = CountingEmbedder(embedder)
    converted = Wendao(kb_dir=tmp_path / "converted", embedder=counting)
    assert converted.page_layout("scan.pdf") == new.page_layout("scan.pdf")
    assert converted.original("scan.pdf") == pdf.read_bytes()
    assert counting.documents == 0

    reindexed = Wendao(kb_dir=tmp_path / "reindexed", embedder=embedder)
    reindexed.reindex()
    assert not SegmentStore(tmp_path / "reindexed").legacy()
    assert not list((tmp_path / "reindexed").glob("gen-*")) and not (tmp_path / "reindexed" / "CURRENT").exists()
    assert reindexed.page_layout("scan.pdf") == new.page_layout("scan.pdf")
    assert reindexed.original("scan.pdf") == pdf.read_bytes()
    assert [c.chunk_id for c in reindexed.snapshot().chunks] == [c.chunk_id for c in chunks]
    question = documents["scan.pdf"].text[40:60]
    assert reindexed.search(question, mode="hybrid", k=1)[0][0].chunk.chunk_id == new.search(question, mode="hybrid", k=1)[0][0].chunk.chunk_id
