"""Where a knowledge base lives, and the interface every storage backend gives the layers above.

Two backends implement it: the local segmented store (``index.local_store``, a folder; the
default) and Milvus (``index.milvus_store``: a Milvus server, ``milvus://HOST:PORT/COLLECTION``,
or an embedded Milvus Lite file, ``milvus-lite:PATH.db``). Ingest writes through ``Store`` and
``Writer``; retrieval reads a ``SearchView``; both are duck-typed protocols, so a backend is a
module of its own and nothing above ``index`` knows which one it talks to.

A view names chunks by *ids* of its own (positions in a local snapshot, chunk keys in Milvus):
the retriever only passes them back. Scores are the same on both: BM25 (k1 0.9, b 0.4) over
wendao's folded tokens and exact cosines of sentence vectors; fusion stays in ``qa``.
"""
from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from corpus.errors import Fix
from corpus.records import Chunk, Document
from index.store import IndexSettings, KnowledgeBaseError

KB_ENV = "WENDAO_KB"
MILVUS_SCHEME = "milvus://"
LITE_SCHEME = "milvus-lite:"
LITE_NAME_CHARS = 36  # milvus-lite refuses longer file names


@dataclass(frozen=True)
class MilvusTarget:
    """A knowledge base in Milvus: a server's address and collection, or a Milvus Lite file."""

    spec: str  # as the user wrote it (messages and fixes name it)
    uri: str  # what pymilvus connects to: http://HOST:PORT, or the Lite file's path
    collection: str
    lite: Path | None = None

    def __str__(self) -> str:
        return self.spec


KbLocation = Path | MilvusTarget


def default_kb_dir() -> Path:
    from platformdirs import user_data_dir

    return Path(user_data_dir("wendao")) / "kb"


def kb_location(value: str | Path | MilvusTarget | None) -> KbLocation:
    """``--kb`` (or ``$WENDAO_KB``, else the user data folder) as a folder or a Milvus target.

    Only the exact spellings ``milvus://HOST:PORT/COLLECTION`` and ``milvus-lite:PATH.db`` name
    Milvus; anything else is a folder (a ``Path`` has already collapsed ``//``, so the caller
    passes the text the user typed)."""
    if isinstance(value, MilvusTarget):
        return value
    if value is None or value == "":
        value = os.environ.get(KB_ENV) or default_kb_dir()
    if isinstance(value, Path):
        return value
    text = str(value)
    if text.startswith(MILVUS_SCHEME):
        return _server(text)
    if text.startswith(LITE_SCHEME):
        return _lite(text)
    return Path(text).expanduser()


def _server(text: str) -> MilvusTarget:
    address, _, collection = text[len(MILVUS_SCHEME) :].partition("/")
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not collection or not _valid_name(collection):
        raise KnowledgeBaseError(
            f"{text}: a Milvus knowledge base is written milvus://HOST:PORT/COLLECTION "
            "(COLLECTION: letters, digits and _, starting with a letter or _)"
        )
    return MilvusTarget(text, f"http://{host}:{port}", collection)


def _lite(text: str) -> MilvusTarget:
    path = Path(text[len(LITE_SCHEME) :]).expanduser()
    if path.suffix != ".db" or not path.stem:
        raise KnowledgeBaseError(f"{text}: a Milvus Lite knowledge base is written milvus-lite:PATH.db (a file name ending in .db)")
    if len(path.name) > LITE_NAME_CHARS:
        raise KnowledgeBaseError(f"{text}: Milvus Lite takes file names of at most {LITE_NAME_CHARS} characters ({path.name!r} has {len(path.name)})")
    path = path.absolute()
    return MilvusTarget(text, str(path), "wendao", lite=path)


def _valid_name(name: str) -> bool:
    return (name[0].isascii() and (name[0].isalpha() or name[0] == "_")) and all(
        c.isascii() and (c.isalnum() or c == "_") for c in name
    ) and len(name) <= 200


def open_store(location: KbLocation) -> "Store":
    """The store of a knowledge base (nothing is created or connected until it is used)."""
    if isinstance(location, MilvusTarget):
        try:
            from index.milvus_store import MilvusStore
        except ImportError as error:
            raise KnowledgeBaseError(
                f"{location}: Milvus support is not installed ({error.name or error})", Fix("install_milvus")
            ) from None
        return MilvusStore(location)
    from index.local_store import LocalStore

    return LocalStore(location)


# ---------------------------------------------------------------------------------------------
# the interface (what ingest and retrieval use)


class LexicalResult(Protocol):
    """BM25 of one query: the best chunks and a way to score any others."""

    top: np.ndarray  # ids of the chunks with a positive score, best first (at most the width asked)

    def scores_of(self, ids: np.ndarray) -> np.ndarray:
        """BM25 scores of these chunks (0 for one without a query term)."""


class SearchView(Protocol):
    """A knowledge base as one reader sees it (``Store.load``)."""

    settings: IndexSettings
    generation: str
    documents: Mapping[str, Document]
    # whether ``lexical`` may run on another thread while ``dense_search`` and ``unit_scores``
    # run on this one (the retriever overlaps them: each is I/O and GIL-free compiled code)
    concurrent_search: bool

    @property
    def chunks(self) -> Sequence[Chunk]:
        """Every live chunk (read on demand; evaluation and small tools)."""

    def is_empty(self, doc_ids: set[str] | None = None) -> bool:
        """No chunk to search (among those documents' chunks, when named)."""

    def lexical(self, tokens: list[str], width: int, doc_ids: set[str] | None = None) -> LexicalResult: ...

    def dense_search(self, vector: np.ndarray, width: int, doc_ids: set[str] | None = None) -> np.ndarray:
        """Ids of the ``width`` chunks with the nearest sentences, best first (with ``doc_ids``:
        every chunk of those documents)."""

    def unit_scores(self, vector: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact cosines of every sentence unit of those chunks (concatenated) and where each
        chunk's run begins."""

    def unit_vectors(self, ids: np.ndarray) -> np.ndarray:
        """The stored sentence vectors of those chunks, concatenated (float32)."""

    def chunks_at(self, ids: np.ndarray) -> list[Chunk]: ...

    def ids_of(self, doc_id: str) -> np.ndarray:
        """The ids of a document's chunks, in order."""

    def chunks_of(self, doc_id: str) -> list[Chunk]: ...

    def chunk_counts(self) -> dict[str, int]: ...

    def layout_line(self, doc_id: str) -> str | None: ...


class Catalog(Protocol):
    """What an ingest needs to decide which files changed."""

    documents: Mapping[str, Document]
    counts: tuple[int, int]

    def chunks_of(self, doc_id: str) -> list[Chunk]: ...


class Writer(Protocol):
    """Commits to a store; every ``add`` is atomic for the documents it names."""

    settings: IndexSettings

    def add(
        self,
        documents: list[Document],
        chunks: list[Chunk],
        vectors: np.ndarray,
        chunk_token_ids: list[np.ndarray],
        remove: Sequence[str] = (),
        layouts: dict[str, str] | None = None,
    ) -> int: ...

    def replace_all(self, settings: IndexSettings, documents: list[Document], chunks: list[Chunk], vectors: np.ndarray,
                    chunk_token_ids: list[np.ndarray], layouts: dict[str, str] | None = None) -> int: ...

    def maybe_merge(self) -> int: ...

    def merge_in_background(self) -> bool: ...

    def compact(self) -> int: ...

    def close(self) -> None: ...


class Store(Protocol):
    """A knowledge base: where it is, whether it exists, how to read and write it."""

    root: Path  # a local folder for the files beside the index (originals of PDFs and images)
    location: str  # how messages and fixes name it (the folder, or the --kb spelling)

    def exists(self) -> bool: ...

    def head(self) -> object | None: ...

    def legacy(self) -> bool: ...

    def generation(self) -> str: ...

    def read_settings(self) -> IndexSettings: ...

    def read_documents(self) -> dict[str, Document]: ...

    def catalog(self) -> Catalog: ...

    def load(self) -> SearchView: ...

    def lock(self, timeout: float = 600) -> AbstractContextManager[None]: ...

    def writer(self, settings: IndexSettings) -> Writer: ...

    def compact(self) -> object:
        """Merge what the backend merges; a report ``ui.output.compact_json`` words."""

    def unit_count(self) -> int:
        """Sentence units stored (sizes the embedding cache)."""

    def disk_bytes(self) -> int: ...


def iter_batches(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
