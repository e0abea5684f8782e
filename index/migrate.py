"""Convert a knowledge base of the generation format (format 2) to segments, without re-embedding.

The old generation's vectors are read from its FAISS index and written as float16; its lexical
tokens are recomputed from the chunk texts (cheap, and the same tokens); its documents and chunks
become SQLite records. The conversion is one commit: until it lands, the old generation is the
knowledge base, and a conversion killed half-way is swept and redone by the next open. After it
the old generation folders and ``CURRENT`` pointer are removed.
"""
from __future__ import annotations

import shutil
from dataclasses import replace

from corpus.errors import Fix
from corpus.folding import fold
from index.pagestore import lines_by_doc
from index.segments import FORMAT_VERSION, SegmentStore
from index.store import POINTER, KnowledgeBaseError, KnowledgeBaseStore
from index.termids import text_ids


def migrate(store: SegmentStore) -> bool:
    """Convert ``store`` if it holds only the old format; True when it did. Takes the lock."""
    if not store.legacy():
        return False
    with store.lock():
        return convert(store)


def convert(store: SegmentStore) -> bool:
    """``migrate`` for a caller that already holds the lock."""
    if not store.legacy():  # another process converted it while we waited
        return False
    old = KnowledgeBaseStore(store.root)
    try:
        snapshot = old.load()
    except KnowledgeBaseError as error:
        raise KnowledgeBaseError(f"{error.message}; this knowledge base cannot be converted", Fix("reindex", str(store.root))) from None
    settings = replace(snapshot.settings, format_version=FORMAT_VERSION)
    documents = list(snapshot.documents.values())
    chunks = snapshot.chunks
    token_ids = [text_ids(fold(f"{snapshot.documents[c.doc_id].title}\n{c.heading}\n{c.text}")) for c in chunks]
    writer = store.writer(settings)
    try:
        layouts = lines_by_doc(old.current_generation())
        writer.replace_all(settings, documents, chunks, snapshot.embeddings, token_ids, layouts=layouts)
    finally:
        writer.close()
    for path in [*store.root.glob("gen-*"), *store.root.glob(".staging-*"), *store.root.glob(f".{POINTER}.*.tmp")]:
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    (store.root / POINTER).unlink(missing_ok=True)
    return True
