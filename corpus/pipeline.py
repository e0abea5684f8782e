"""File or text in, a Document with its chunks out: load → clean → metadata → chunk.

This is the one place the corpus steps are put together, so the CLI, the web app, evaluation
and tests all prepare documents the same way.
"""
from __future__ import annotations

import hashlib
import time
from importlib import resources
from pathlib import Path

from corpus.chunking import ChunkSettings, chunk_document
from corpus.clean import clean
from corpus.errors import IngestError
from corpus.loaders import DEFAULT_MAX_BYTES, load_file
from corpus.metadata import extract_metadata
from corpus.pages import PageOptions
from corpus.records import Document, PreparedDocument

SEED_SUFFIX = ".txt"


def seed_dir() -> Path:
    """The bundled seed documents (installed with the package)."""
    return Path(str(resources.files("corpus") / "seeds"))


def seed_paths() -> list[Path]:
    """The five bundled documents, the default knowledge base."""
    return sorted(p for p in seed_dir().iterdir() if p.suffix == SEED_SUFFIX)


def sample_queries_path() -> Path:
    """The sample evaluation questions for the bundled documents."""
    return seed_dir() / "queries.jsonl"


def prepare_text(
    text: str,
    doc_id: str,
    source: str,
    chunking: ChunkSettings,
    title: str | None = None,
    fmt: str = "txt",
    title_hint: str | None = None,
    sha256: str | None = None,
    encoding: str = "utf-8",
    size: int | None = None,
) -> PreparedDocument:
    """Clean, describe and chunk a text whose every offset the chunks will refer to."""
    blocks = clean(text)
    if not blocks:
        raise IngestError(source, "no content left after removing boilerplate (empty or only menus/notices)")
    fallback = Path(source).stem or doc_id
    metadata = extract_metadata(text, blocks, title_hint, fallback)
    document = Document(
        doc_id=doc_id,
        source=source,
        title=title or metadata.title,
        text=text,
        sha256=sha256 or hashlib.sha256(text.encode("utf-8")).hexdigest(),
        format=fmt,
        encoding=encoding,
        date=metadata.date,
        doc_number=metadata.doc_number,
        size=len(text.encode("utf-8")) if size is None else size,
        added=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )
    return PreparedDocument(document, chunk_document(doc_id, text, blocks, chunking))


def prepare_file(
    path: Path, doc_id: str, chunking: ChunkSettings, max_bytes: int = DEFAULT_MAX_BYTES, pages: PageOptions | None = None
) -> PreparedDocument:
    """Load one file (any supported format) and prepare it; IngestError names the file."""
    loaded = load_file(Path(path), max_bytes=max_bytes, pages=pages)
    prepared = prepare_text(
        loaded.text,
        doc_id,
        str(path),
        chunking,
        fmt=loaded.format,
        title_hint=loaded.title_hint,
        sha256=loaded.sha256,
        encoding=loaded.encoding,
        size=loaded.size,
    )
    if loaded.pages is not None:
        prepared.document.pages = len(loaded.pages)
        prepared.layout, prepared.original = loaded.pages, loaded.data
    return prepared
