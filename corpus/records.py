"""Records shared by the corpus pipeline, the index and the answerer."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from corpus.folding import fold
from corpus.layout import Page


@dataclass
class Document:
    """One source document. ``text`` is the original text every offset refers to.

    For .txt/.md it is the decoded file; for .html/.pdf/.docx it is the text extracted from the
    file, stored in the index so citations can be shown without the source file.
    """

    doc_id: str
    source: str
    title: str
    text: str
    sha256: str
    format: str
    encoding: str = "utf-8"
    date: str | None = None
    doc_number: str | None = None
    size: int = 0
    added: str = ""
    pages: int = 0  # PDFs and images: pages that can be shown with their character boxes


@dataclass
class Chunk:
    """A retrievable passage: ``text == document.text[start:end]`` always holds."""

    chunk_id: str
    doc_id: str
    start: int
    end: int
    text: str
    heading: str = ""
    sentences: list[tuple[int, int]] = field(default_factory=list)  # offsets in the document text

    def __post_init__(self) -> None:
        self.sentences = [tuple(span) for span in self.sentences]  # JSON gives lists

    @cached_property
    def folded(self) -> str:
        """``text`` folded for matching, once per loaded chunk (same length: same offsets).

        Not a dataclass field, so it is never written to the knowledge base."""
        return fold(self.text)


@dataclass
class PreparedDocument:
    """A document and its chunks, ready to be indexed."""

    document: Document
    chunks: list[Chunk] = field(default_factory=list)
    layout: list[Page] | None = None  # PDFs and images: each page's character boxes
    original: bytes | None = None  # PDFs and images: the file, stored once so pages can be shown
