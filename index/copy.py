"""Copy a knowledge base into another backend without re-embedding (``wendao copy``).

What moves a user's knowledge base from its folder to Milvus (or back): documents, chunks,
page layouts and the originals of PDFs and images are copied as they are, the stored sentence
vectors are read rather than recomputed, and the BM25 tokens are recomputed from the text (they
are a function of it). The target records the source's settings, so the same model answers.
"""
from __future__ import annotations

from collections.abc import Callable

from corpus.errors import Fix
from corpus.progress import ProgressCallback
from index.backend import Store
from index.ingest import COMMIT_UNITS, lexical_ids
from index.pagestore import read_original, save_original
from index.store import KnowledgeBaseError


def copy_knowledge_base(source: Store, target: Store, progress: ProgressCallback | None = None,
                        on_batch: Callable[[int], None] | None = None) -> tuple[int, int]:
    """Copy ``source`` into the empty ``target``; returns (documents, chunks) copied."""
    if not source.exists():
        raise KnowledgeBaseError(f"{source.location}: no knowledge base here", Fix("ingest", source.location))
    with target.lock():
        if target.exists():
            raise KnowledgeBaseError(f"{target.location}: already holds a knowledge base; copy into a new one")
        view = source.load()
        settings = view.settings
        documents = list(view.documents.values())
        writer = target.writer(settings)
        copied = chunks_copied = 0
        try:
            batch, units = [], 0
            for number, document in enumerate(documents, 1):
                ids = view.ids_of(document.doc_id)
                chunks = view.chunks_at(ids)
                batch.append((document, chunks, view.unit_vectors(ids)))
                units += sum(len(c.sentences) for c in chunks)
                if units >= COMMIT_UNITS or number == len(documents):
                    _write(writer, view, source, target, batch)
                    copied += len(batch)
                    chunks_copied += sum(len(c) for _, c, _ in batch)
                    batch, units = [], 0
                    if progress:
                        progress("index", number, len(documents))
            if not documents:  # an empty knowledge base still records its settings
                writer.add([], [], _empty(settings.dimension), [])
        finally:
            writer.close()
    return copied, chunks_copied


def _write(writer, view, source: Store, target: Store, batch) -> None:
    import numpy as np

    documents = [d for d, _, _ in batch]
    chunks = [c for _, cs, _ in batch for c in cs]
    by_id = {d.doc_id: d for d in documents}
    vectors = np.concatenate([v for _, _, v in batch]) if batch else _empty(writer.settings.dimension)
    layouts = {}
    for document in documents:
        if document.pages:
            line = view.layout_line(document.doc_id)
            if line is not None:
                layouts[document.doc_id] = line
            original = read_original(source.root, document.sha256)
            if original is not None:
                save_original(target.root, document.sha256, original)
    writer.add(documents, chunks, vectors, [lexical_ids(by_id[c.doc_id], c) for c in chunks], layouts=layouts)
    writer.maybe_merge()


def _empty(dimension: int):
    import numpy as np

    return np.zeros((0, dimension), dtype=np.float32)
