"""The Milvus backend of ``index.backend``: a knowledge base in a Milvus server or a Milvus Lite file.

Three collections per knowledge base (``C`` is the collection named in ``--kb``):

* ``C``: the records: one ``meta`` row (settings, commit number, counts, writes in flight) and the
  documents and their page layouts as JSON, cut into parts that fit a VARCHAR;
* ``C_chunks``: one row per chunk: its record, its document id and version, and ``terms``:
  wendao's own folded uni+bigram tokens (``index.termids``) written as hexadecimal words, which a
  whitespace analyzer splits back and Milvus' BM25 function (k1 0.9, b 0.4, as ``index.
  lexical_segments``) turns into the sparse vector it searches. Milvus' BM25 multiplies by
  k1 + 1; scores are divided by it, so they equal the local backend's;
* ``C_units``: one row per sentence unit: its vector (inner product: vectors are normalised),
  chunk key and order.

A write is atomic per document for readers: new chunks and units are inserted under a new
version first, then the document rows (the commit point), then the previous version's rows are
deleted; the versions in flight are noted in the ``meta`` row, so a writer killed midway is
cleaned up by the next one. Retrieval asks Milvus for both candidate lists with their scores,
re-scores every sentence of every candidate exactly from the stored vectors, and fuses on
wendao's side (``qa.fusion``), so answers and abstention behave as on the local backend.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time
import warnings
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import numpy as np
from platformdirs import user_data_dir

os.environ.setdefault("GRPC_VERBOSITY", "NONE")  # gRPC's keep-alive notices are not the user's business either
# milvus-lite 2.5 imports pkg_resources (hence setuptools < 81 in the extra), which warns on import
warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
from pymilvus import DataType, Function, FunctionType, MilvusClient
from pymilvus.exceptions import MilvusException

from corpus.errors import Fix
from corpus.records import Chunk, Document
from index import records_db
from index.backend import MilvusTarget, iter_batches
from index.lexical_segments import K1, B
from index.store import IndexSettings, KnowledgeBaseError
from index.termids import token_ids

for _name in ("milvus_lite", "pymilvus"):  # their retries and warnings are not the user's business
    logging.getLogger(_name).setLevel(logging.CRITICAL)

SCHEMA_VERSION = 1
PART_CHARS = 16_000  # characters of JSON per VARCHAR part (at most 4 bytes each: under 65,535)
MAX_VARCHAR = 65_535
ID_CHARS = 4_096
IN_BATCH = 512  # ids per `in [...]` filter
MAX_WINDOW = 16_384  # Milvus' limit on one search's or query's results
UNITS_PER_CANDIDATE = 4
UNIT_BATCH = 256  # chunks whose units one query reads
HNSW = {"M": 32, "efConstruction": 80}  # a server's unit index (Milvus Lite searches exactly)
HNSW_MIN_EF = 128
TIMEOUT_ENV = "WENDAO_MILVUS_TIMEOUT"


def terms_text(ids: np.ndarray) -> str:
    """Token ids as whitespace-separated ASCII words for the BM25 function's analyzer."""
    return " ".join(format(int(i), "x") for i in ids)


def _literal(value: str) -> str:
    """A string literal of Milvus' filter language."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _in(field: str, values) -> str:
    items = ", ".join(_literal(v) if isinstance(v, str) else str(int(v)) for v in values)
    return f"{field} in [{items}]"


def _where(*parts: str) -> str:
    return " and ".join(f"({p})" for p in parts if p)


def _parts(text: str) -> list[str]:
    return [text[i : i + PART_CHARS] for i in range(0, len(text), PART_CHARS)] or [""]


# ---------------------------------------------------------------------------------------------
# the store


class MilvusStore:
    """A knowledge base in Milvus. The client connects on first use; Milvus Lite's file may be
    open in one process only (a second one gets a one-line error saying so)."""

    def __init__(self, target: MilvusTarget):
        self.target = target
        self.location = target.spec
        self.main = target.collection
        self.chunks_name = f"{target.collection}_chunks"
        self.units_name = f"{target.collection}_units"
        if target.lite is not None:
            self.root = Path(f"{target.lite}.files")
        else:  # the originals of PDFs and images stay on this machine (README: what differs)
            address = target.uri.split("://", 1)[1].replace(":", "_")
            self.root = Path(user_data_dir("wendao")) / "milvus" / f"{address}_{target.collection}"
        self._client: MilvusClient | None = None
        self._lock = threading.RLock()  # the writers of this process (``lock``)
        self._connecting = threading.Lock()  # not the writers' lock: an ingest reads on worker threads
        self._loaded = False

    # -- connection ---------------------------------------------------------------------------
    @property
    def client(self) -> MilvusClient:
        with self._connecting:
            if self._client is None:
                self._client = self._connect()
            return self._client

    def _connect(self) -> MilvusClient:
        target = self.target
        if target.lite is not None:
            try:
                target.lite.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise KnowledgeBaseError(f"{target}: cannot create {target.lite.parent} ({exc.strerror or exc})") from None
            path = str(target.lite)
            # Before this process opens the file (after, testing the lock would release its own):
            # pymilvus only says "Open local milvus failed" when another process holds it.
            if path not in _OPENED and _locked_elsewhere(target.lite):
                raise KnowledgeBaseError(
                    f"{target}: Milvus Lite lets one process open {target.lite} at a time and another process "
                    "has it open (a `wendao serve`?); stop it, or put the knowledge base on a Milvus server "
                    "(milvus://HOST:19530/COLLECTION)"
                )
            try:
                client = MilvusClient(path)
            except Exception as exc:
                raise KnowledgeBaseError(f"{target}: Milvus Lite cannot open {target.lite} ({_reason(exc)})") from None
            _OPENED.add(path)
            return client
        timeout = float(os.environ.get(TIMEOUT_ENV) or 10)
        try:
            return MilvusClient(uri=target.uri, timeout=timeout)
        except Exception as exc:
            address = target.uri.split("://", 1)[1]
            raise KnowledgeBaseError(
                f"{target}: cannot reach the Milvus server at {address} ({_reason(exc)}); is it running?", Fix("retry_later")
            ) from None

    def close(self) -> None:
        with self._connecting:
            if self._client is not None:
                self._client.close()
                self._client = None

    @contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """A Milvus failure while reading or writing becomes one line naming the knowledge base."""
        try:
            yield
        except KnowledgeBaseError:
            raise
        except MilvusException as exc:
            raise KnowledgeBaseError(f"{self.location}: Milvus failed while {doing} ({_reason(exc)})") from None

    def _ensure_loaded(self) -> None:
        if not self._loaded:
            with self._errors("loading the collections"):
                for name in (self.main, self.chunks_name, self.units_name):
                    self.client.load_collection(name)
            self._loaded = True

    # -- reading ------------------------------------------------------------------------------
    def meta(self) -> dict | None:
        """The ``meta`` row, or None when there is no knowledge base in this collection."""
        client = self.client
        with self._errors("reading the knowledge base's settings"):
            if not client.has_collection(self.main):
                return None
            fields = {f["name"] for f in client.describe_collection(self.main)["fields"]}
            if not {"key", "kind", "body"} <= fields:
                raise KnowledgeBaseError(f"{self.location}: collection {self.main} exists but is not a wendao knowledge base")
            client.load_collection(self.main)
            rows = client.query(self.main, filter='key == "meta"', output_fields=["body"])
        if not rows:
            return None
        return json.loads(rows[0]["body"])

    def exists(self) -> bool:
        return self.meta() is not None

    def head(self) -> dict | None:
        return self.meta()

    def legacy(self) -> bool:
        return False

    def _meta_or_fail(self) -> dict:
        meta = self.meta()
        if meta is None:
            raise KnowledgeBaseError(f"{self.location}: no knowledge base here", Fix("ingest", self.location))
        return meta

    def generation(self) -> str:
        return f"gen-{int(self._meta_or_fail()['gen']):08d}"

    def read_settings(self) -> IndexSettings:
        return _settings(self._meta_or_fail(), self.location)

    def read_documents(self) -> dict[str, Document]:
        self._meta_or_fail()
        return {d.doc_id: d for d in self._all_documents()}

    def catalog(self) -> "MilvusCatalog":
        return MilvusCatalog(self, self._meta_or_fail())

    def load(self) -> "MilvusView":
        meta = self._meta_or_fail()
        settings = _settings(meta, self.location)
        self._check_collections(settings)
        self._ensure_loaded()
        return MilvusView(self, meta, settings)

    def _check_collections(self, settings: IndexSettings) -> None:
        client = self.client
        with self._errors("checking the collections"):
            for name in (self.chunks_name, self.units_name):
                if not client.has_collection(name):
                    raise KnowledgeBaseError(
                        f"{self.location}: collection {name} is missing (the knowledge base is incomplete)",
                        Fix("reindex", self.location),
                    )
            fields = client.describe_collection(self.units_name)["fields"]
        dimension = next((int(f.get("params", {}).get("dim", 0)) for f in fields if f["name"] == "vector"), 0)
        if dimension != settings.dimension:
            raise KnowledgeBaseError(
                f"{self.location}: collection {self.units_name} holds {dimension}-dimensional vectors but the knowledge "
                f"base's model {settings.model} has {settings.dimension}",
                Fix("reindex", self.location),
            )

    # documents and layouts, stored as JSON in parts
    def _query(self, collection: str, filter: str, fields: list[str], doing: str = "reading") -> list[dict]:
        with self._errors(doing):
            return self.client.query(collection, filter=filter, output_fields=fields)

    def _scan(self, collection: str, filter: str, fields: list[str]) -> Iterator[dict]:
        """Every row matching ``filter`` (no result window)."""
        with self._errors("reading"):
            iterator = self.client.query_iterator(collection, batch_size=2000, filter=filter, output_fields=fields)
            try:
                while True:
                    batch = iterator.next()
                    if not batch:
                        return
                    yield from batch
            finally:
                iterator.close()

    def _records(self, kind: str, doc_ids: list[str] | None) -> dict[str, str]:
        """Joined JSON bodies of the ``kind`` rows of some documents (all without ``doc_ids``)."""
        rows: list[dict] = []
        if doc_ids is None:
            rows = list(self._scan(self.main, f"kind == {_literal(kind)}", ["doc_id", "part", "body"]))
        else:
            for batch in iter_batches(doc_ids, IN_BATCH):
                rows += self._query(self.main, f"kind == {_literal(kind)} and {_in('doc_id', batch)}", ["doc_id", "part", "body"])
        parts: dict[str, list[tuple[int, str]]] = {}
        for row in rows:
            parts.setdefault(row["doc_id"], []).append((int(row["part"]), row["body"]))
        return {doc_id: "".join(body for _, body in sorted(p)) for doc_id, p in parts.items()}

    def _documents(self, doc_ids: list[str]) -> dict[str, Document]:
        return {d: Document(**json.loads(body)) for d, body in self._records("doc", doc_ids).items()}

    def _all_documents(self) -> list[Document]:
        documents = [Document(**json.loads(body)) for body in self._records("doc", None).values()]
        return sorted(documents, key=lambda d: (d.added, d.doc_id))

    def _document_ids(self) -> list[str]:
        return [r["doc_id"] for r in self._scan(self.main, 'kind == "doc" and part == 0', ["doc_id"])]

    def _chunk_keys(self, doc_ids: list[str], live: str = "") -> np.ndarray:
        keys: list[int] = []
        for batch in iter_batches(list(doc_ids), IN_BATCH):
            keys += [int(r["chunk_key"]) for r in self._scan(self.chunks_name, _where(_in("doc_id", batch), live), ["chunk_key"])]
        return np.sort(np.array(keys, dtype=np.int64))

    def _chunks(self, keys: np.ndarray) -> list[Chunk]:
        found: dict[int, Chunk] = {}
        for batch in iter_batches([int(k) for k in keys], IN_BATCH):
            for row in self._query(self.chunks_name, _in("chunk_key", batch), ["chunk_key", "record"]):
                found[int(row["chunk_key"])] = Chunk(**json.loads(row["record"]))
        return [found[int(k)] for k in keys]

    # -- writing ------------------------------------------------------------------------------
    @contextmanager
    def lock(self, timeout: float = 600) -> Iterator[None]:
        """One writer per process (Milvus Lite admits one process; on a server, running one
        writer at a time is the deployment's job: README)."""
        with self._lock:
            yield

    def writer(self, settings: IndexSettings) -> "MilvusWriter":
        return MilvusWriter(self, settings)

    def compact(self):
        """Milvus merges its own segments and drops deleted rows; a server is asked to now (the
        report counts the compactions asked for; segments are Milvus' own, not counted)."""
        from index.segments import CompactReport

        meta = self._meta_or_fail()
        asked = 0
        if self.target.lite is None:
            with self._errors("compacting"):
                for name in (self.main, self.chunks_name, self.units_name):
                    self.client.compact(name)
                    asked += 1
        return CompactReport(asked, 0, 0, 0, int(meta.get("chunks", 0)))

    def unit_count(self) -> int:
        if self.meta() is None:
            return 0
        with self._errors("counting"):
            return int(self.client.query(self.units_name, filter="chunk_key > 0", output_fields=["count(*)"])[0]["count(*)"])

    def disk_bytes(self) -> int:
        """The Milvus Lite file and the originals beside it (0 for a server: its storage is its own)."""
        files = [*self.root.rglob("*")] if self.root.is_dir() else []
        if self.target.lite is not None and self.target.lite.exists():
            files += [self.target.lite, *self.target.lite.rglob("*")] if self.target.lite.is_dir() else [self.target.lite]
        return sum(p.stat().st_size for p in files if p.is_file())


_OPENED: set[str] = set()  # Milvus Lite files this process has opened (its server holds their lock)


def _locked_elsewhere(db: Path) -> bool:
    """Whether another process holds Milvus Lite's lock on this file (its lock file, as it takes it)."""
    lock = db.parent / f".{db.name}.lock"
    if not lock.exists():
        return False
    with open(lock, "a") as handle:
        try:
            fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.lockf(handle, fcntl.LOCK_UN)
    return False


def _reason(exc: Exception) -> str:
    message = getattr(exc, "message", None) or str(exc)
    return " ".join(str(message).split())[:300]


def _settings(meta: dict, location: str) -> IndexSettings:
    try:
        return IndexSettings(**meta["settings"])
    except (KeyError, TypeError) as exc:
        raise KnowledgeBaseError(f"{location}: the index format is not this version's ({exc})", Fix("reindex", location)) from None


# ---------------------------------------------------------------------------------------------
# reading


class MilvusDocuments(Mapping):
    """The documents of the knowledge base, by id, fetched when asked (and kept for the view)."""

    def __init__(self, store: MilvusStore, count: int):
        self._store = store
        self._count = count
        self._cache: dict[str, Document | None] = {}

    def __getitem__(self, doc_id: str) -> Document:
        if doc_id not in self._cache:
            self._cache[doc_id] = self._store._documents([doc_id]).get(doc_id)
        document = self._cache[doc_id]
        if document is None:
            raise KeyError(doc_id)
        return document

    def fetch(self, doc_ids) -> None:
        """Read several documents in one query."""
        missing = [d for d in dict.fromkeys(doc_ids) if d not in self._cache]
        if missing:
            found = self._store._documents(missing)
            self._cache.update({d: found.get(d) for d in missing})

    def __iter__(self) -> Iterator[str]:
        return iter(d.doc_id for d in self.values())

    def __len__(self) -> int:
        return self._count

    def values(self):
        documents = self._store._all_documents()
        self._cache.update({d.doc_id: d for d in documents})
        return documents

    def items(self):
        return [(d.doc_id, d) for d in self.values()]


class MilvusCatalog:
    """What an ingest needs: documents by id, a document's chunks, the counts."""

    def __init__(self, store: MilvusStore, meta: dict):
        self.store = store
        self.documents = MilvusDocuments(store, int(meta.get("documents", 0)))
        self.counts = (int(meta.get("documents", 0)), int(meta.get("chunks", 0)))

    def chunks_of(self, doc_id: str) -> list[Chunk]:
        return self.store._chunks(self.store._chunk_keys([doc_id]))


class MilvusLexical:
    """BM25 of one query: Milvus' best chunks with their scores, others scored on demand."""

    def __init__(self, view: "MilvusView", text: str, top: np.ndarray, scores: dict[int, float]):
        self._view, self._text, self.top, self._known = view, text, top, scores

    def scores_of(self, ids: np.ndarray) -> np.ndarray:
        missing = [int(i) for i in ids if int(i) not in self._known]
        if missing and self._text:
            for batch in iter_batches(missing, IN_BATCH):
                self._known.update(self._view._bm25(self._text, len(batch), _in("chunk_key", batch)))
        return np.array([self._known.get(int(i), 0.0) for i in ids], dtype=np.float32)


class AllChunks(Sequence):
    """Every chunk in ingest order; counting reads nothing, the first look reads them all."""

    def __init__(self, view: "MilvusView"):
        self._view = view

    def __len__(self) -> int:
        return self._view._chunk_count

    def __getitem__(self, index):
        return self._view._every_chunk()[index]

    def __iter__(self):
        return iter(self._view._every_chunk())


class MilvusView:
    """The knowledge base as a reader sees it: ``index.backend.SearchView`` over Milvus (ids are
    chunk keys). Milvus has no snapshots: a view reads the latest commit (strong consistency)."""

    concurrent_search = False  # one client; the server runs both sides of a hybrid search anyway

    def __init__(self, store: MilvusStore, meta: dict, settings: IndexSettings):
        self.store = store
        self.settings = settings
        self.generation = f"gen-{int(meta['gen']):08d}"
        self.documents = MilvusDocuments(store, int(meta.get("documents", 0)))
        self._chunk_count = int(meta.get("chunks", 0))
        self._all: list[Chunk] | None = None
        self._keys_for: tuple[frozenset, np.ndarray] | None = None
        self._lite = store.target.lite is not None
        # rows of a write in flight (or of a writer killed midway) are not searched
        pending = [int(v) for v in meta.get("pending", [])]
        self._live = f"version not in [{', '.join(map(str, pending))}]" if pending else ""

    @property
    def client(self) -> MilvusClient:
        return self.store.client

    @property
    def chunks(self) -> "AllChunks":
        return AllChunks(self)

    def _every_chunk(self) -> list[Chunk]:
        if self._all is None:
            rows = self.store._scan(self.store.chunks_name, _where("chunk_key > 0", self._live), ["chunk_key", "record"])
            ordered = sorted((int(r["chunk_key"]), r["record"]) for r in rows)
            self._all = [Chunk(**json.loads(record)) for _, record in ordered]
        return self._all

    def _doc_keys(self, doc_ids: set[str]) -> np.ndarray:
        key = frozenset(doc_ids)
        if self._keys_for is None or self._keys_for[0] != key:
            self._keys_for = (key, self.store._chunk_keys(sorted(key), self._live))
        return self._keys_for[1]

    def is_empty(self, doc_ids: set[str] | None = None) -> bool:
        if doc_ids:
            return not len(self._doc_keys(doc_ids))
        return self._chunk_count == 0

    def _bm25(self, text: str, limit: int, filter: str = "") -> dict[int, float]:
        with self.store._errors("searching"):
            result = self.client.search(
                self.store.chunks_name, data=[text], anns_field="sparse", limit=min(limit, MAX_WINDOW), filter=filter,
                search_params={"metric_type": "BM25"},
            )
        return {int(hit["id"]): float(hit["distance"]) / (1 + K1) for hit in result[0]}

    def lexical(self, tokens: list[str], width: int, doc_ids: set[str] | None = None) -> MilvusLexical:
        text = terms_text(token_ids(tokens)) if tokens else ""
        if not text:
            return MilvusLexical(self, "", np.zeros(0, dtype=np.int64), {})
        scores = self._bm25(text, width, _where(_in("doc_id", sorted(doc_ids)) if doc_ids else "", self._live))
        ranked = sorted(((-s, k) for k, s in scores.items() if s > 0))
        return MilvusLexical(self, text, np.array([k for _, k in ranked], dtype=np.int64), scores)

    def dense_search(self, vector: np.ndarray, width: int, doc_ids: set[str] | None = None) -> np.ndarray:
        if doc_ids:
            return self._doc_keys(doc_ids)
        limit = min(width * UNITS_PER_CANDIDATE, MAX_WINDOW)
        params = {"metric_type": "IP"} if self._lite else {"metric_type": "IP", "params": {"ef": max(limit, HNSW_MIN_EF)}}
        with self.store._errors("searching"):
            result = self.client.search(
                self.store.units_name, data=[np.asarray(vector, dtype=np.float32).tolist()], anns_field="vector",
                limit=limit, output_fields=["chunk_key"], search_params=params, filter=self._live,
            )
        ranked = [int(hit["entity"]["chunk_key"]) for hit in result[0]]
        return np.array(list(dict.fromkeys(ranked))[:width], dtype=np.int64)

    def _units(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The sentence vectors of those chunks, concatenated in chunk order, and their counts."""
        ids = [int(i) for i in ids]
        rows: dict[int, list[tuple[int, list[float]]]] = {}
        fields = ["chunk_key", "seq", "vector"]
        for batch in iter_batches(ids, UNIT_BATCH):
            with self.store._errors("searching"):
                found = self.client.query(self.store.units_name, filter=_in("chunk_key", batch), output_fields=fields, limit=MAX_WINDOW)
            if len(found) >= MAX_WINDOW:  # a result window's worth: read them all
                found = list(self.store._scan(self.store.units_name, _in("chunk_key", batch), fields))
            for row in found:
                rows.setdefault(int(row["chunk_key"]), []).append((int(row["seq"]), row["vector"]))
        counts = np.array([len(rows.get(i, ())) for i in ids], dtype=np.int64)
        vectors = [v for i in ids for _, v in sorted(rows.get(i, ()), key=lambda r: r[0])]
        matrix = np.array(vectors, dtype=np.float32).reshape(-1, self.settings.dimension)
        return matrix, counts

    def unit_scores(self, vector: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Milvus computes the cosines: a search restricted to these chunks' units that asks for
        all of them (exact on Milvus Lite; a server brute-forces so selective a filter). Reading
        the vectors back instead took 25-50 times longer on Milvus Lite."""
        ids = [int(i) for i in ids]
        query = np.asarray(vector, dtype=np.float32).reshape(-1)
        found: dict[int, list[tuple[int, float]]] = {}
        params = {"metric_type": "IP"} if self._lite else {"metric_type": "IP", "params": {"ef": MAX_WINDOW}}
        for batch in iter_batches(ids, UNIT_BATCH):
            with self.store._errors("searching"):
                hits = self.client.search(
                    self.store.units_name, data=[query.tolist()], anns_field="vector", limit=MAX_WINDOW,
                    filter=_in("chunk_key", batch), output_fields=["chunk_key", "seq"], search_params=params,
                )[0]
            if len(hits) >= MAX_WINDOW:  # more units than one search returns: score them here
                matrix, counts = self._units(batch)
                scores = np.einsum("ij,j->i", matrix, query)
                runs = np.split(scores, np.cumsum(counts)[:-1])
                for key, run in zip(batch, runs):
                    found[key] = list(enumerate(run.tolist()))
                continue
            for hit in hits:
                found.setdefault(int(hit["entity"]["chunk_key"]), []).append((int(hit["entity"]["seq"]), float(hit["distance"])))
        counts = np.array([len(found.get(i, ())) for i in ids], dtype=np.int64)
        scores = [score for i in ids for _, score in sorted(found.get(i, ()))]
        return np.array(scores, dtype=np.float32), (np.cumsum(counts) - counts).astype(np.int64)

    def unit_vectors(self, ids: np.ndarray) -> np.ndarray:
        return self._units(ids)[0]

    def chunks_at(self, ids: np.ndarray) -> list[Chunk]:
        chunks = self.store._chunks(np.asarray(ids, dtype=np.int64))
        self.documents.fetch(c.doc_id for c in chunks)
        return chunks

    def ids_of(self, doc_id: str) -> np.ndarray:
        return self.store._chunk_keys([doc_id], self._live)

    def chunks_of(self, doc_id: str) -> list[Chunk]:
        return self.store._chunks(self.ids_of(doc_id))

    def chunk_counts(self) -> dict[str, int]:
        return dict(Counter(r["doc_id"] for r in self.store._scan(self.store.chunks_name, _where("chunk_key > 0", self._live), ["doc_id"])))

    def layout_line(self, doc_id: str) -> str | None:
        return self.store._records("layout", [doc_id]).get(doc_id)


# ---------------------------------------------------------------------------------------------
# writing


class MilvusWriter:
    """Commits to a Milvus knowledge base (see the module docstring for the order of a write)."""

    def __init__(self, store: MilvusStore, settings: IndexSettings):
        self.store = store
        self.settings = settings
        self.client = store.client
        meta = store.meta()
        if meta is None:
            self._create(settings)
            meta = {"schema": SCHEMA_VERSION, "settings": asdict(settings), "gen": 0, "documents": 0, "chunks": 0, "pending": []}
            self._put_meta(meta)
        else:
            store._check_collections(_settings(meta, store.location))
        store._ensure_loaded()
        store.root.mkdir(parents=True, exist_ok=True)  # the embedding cache and originals live there
        self.meta = meta
        self._last_key = 0
        if meta.get("pending"):
            self._recover(meta["pending"])

    def close(self) -> None:
        pass

    # -- collections --------------------------------------------------------------------------
    def _create(self, settings: IndexSettings, only_chunks: bool = False) -> None:
        client, store = self.client, self.store
        with store._errors("creating the collections"):
            if not only_chunks and not client.has_collection(store.main):
                schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
                schema.add_field("key", DataType.VARCHAR, is_primary=True, max_length=ID_CHARS + 32)
                schema.add_field("kind", DataType.VARCHAR, max_length=16)
                schema.add_field("doc_id", DataType.VARCHAR, max_length=ID_CHARS)
                schema.add_field("part", DataType.INT64)
                schema.add_field("version", DataType.INT64)
                schema.add_field("body", DataType.VARCHAR, max_length=MAX_VARCHAR)
                schema.add_field("_v", DataType.FLOAT_VECTOR, dim=2)  # Milvus wants a vector in every collection
                index = client.prepare_index_params()
                index.add_index(field_name="_v", index_type="FLAT", metric_type="L2")
                client.create_collection(store.main, schema=schema, index_params=index, consistency_level="Strong")
            if not client.has_collection(store.chunks_name):
                schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
                schema.add_field("chunk_key", DataType.INT64, is_primary=True)
                schema.add_field("doc_id", DataType.VARCHAR, max_length=ID_CHARS)
                schema.add_field("version", DataType.INT64)
                schema.add_field("record", DataType.VARCHAR, max_length=MAX_VARCHAR)
                schema.add_field("terms", DataType.VARCHAR, max_length=MAX_VARCHAR, enable_analyzer=True,
                                 analyzer_params={"tokenizer": "whitespace"})
                schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
                schema.add_function(Function(name="bm25", function_type=FunctionType.BM25,
                                             input_field_names=["terms"], output_field_names=["sparse"]))
                index = client.prepare_index_params()
                index.add_index(field_name="sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25",
                                params={"bm25_k1": K1, "bm25_b": B})
                client.create_collection(store.chunks_name, schema=schema, index_params=index, consistency_level="Strong")
            if not client.has_collection(store.units_name):
                schema = client.create_schema(auto_id=True, enable_dynamic_field=False)
                schema.add_field("unit_key", DataType.INT64, is_primary=True)
                schema.add_field("chunk_key", DataType.INT64)
                schema.add_field("doc_id", DataType.VARCHAR, max_length=ID_CHARS)
                schema.add_field("version", DataType.INT64)
                schema.add_field("seq", DataType.INT64)
                schema.add_field("vector", DataType.FLOAT_VECTOR, dim=settings.dimension)
                index = client.prepare_index_params()
                if store.target.lite is not None:
                    index.add_index(field_name="vector", index_type="FLAT", metric_type="IP")
                else:
                    index.add_index(field_name="vector", index_type="HNSW", metric_type="IP", params=HNSW)
                client.create_collection(store.units_name, schema=schema, index_params=index, consistency_level="Strong")
        store._loaded = False

    def _put_meta(self, meta: dict) -> None:
        body = json.dumps(meta, ensure_ascii=False)
        with self.store._errors("writing the knowledge base's settings"):
            self.client.upsert(self.store.main, [{"key": "meta", "kind": "meta", "doc_id": "", "part": 0, "version": 0,
                                                  "body": body, "_v": [0.0, 0.0]}])

    def _new_keys(self, count: int) -> int:
        """The first of ``count`` fresh keys: increasing with time, so chunks keep ingest order."""
        base = max(time.time_ns(), self._last_key + 1)
        self._last_key = base + count
        return base

    # -- commits ------------------------------------------------------------------------------
    def add(self, documents, chunks, vectors, chunk_token_ids, remove=(), layouts=None) -> int:
        store, client = self.store, self.client
        vectors = np.asarray(vectors, dtype=np.float32).reshape(-1, self.settings.dimension)
        if int(sum(len(c.sentences) for c in chunks)) != len(vectors):
            raise ValueError(f"{sum(len(c.sentences) for c in chunks)} sentence units but {len(vectors)} vectors")
        version = self._new_keys(len(chunks) + 1)
        keys = version + 1 + np.arange(len(chunks), dtype=np.int64)
        self.meta.update(pending=[int(version)], gen=int(self.meta["gen"]) + 1)  # readers reload and skip it
        self._put_meta(self.meta)
        chunk_rows, unit_rows = [], []
        row = 0
        for key, chunk, ids in zip(keys, chunks, chunk_token_ids):
            record, terms = records_db.chunk_row(chunk), terms_text(ids)
            if len(record.encode()) > MAX_VARCHAR or len(terms) > MAX_VARCHAR:
                raise KnowledgeBaseError(f"{chunk.doc_id}: a passage of this document is too long for a Milvus VARCHAR field")
            chunk_rows.append({"chunk_key": int(key), "doc_id": chunk.doc_id, "version": version, "record": record, "terms": terms})
            for seq in range(len(chunk.sentences)):
                unit_rows.append({"chunk_key": int(key), "doc_id": chunk.doc_id, "version": version, "seq": seq,
                                  "vector": vectors[row].tolist()})
                row += 1
        with store._errors("writing chunks"):
            for batch in iter_batches(chunk_rows, 500):
                client.insert(store.chunks_name, list(batch))
            for batch in iter_batches(unit_rows, 1000):
                client.insert(store.units_name, list(batch))
        records = []
        for document in documents:
            records += self._record_rows("doc", document.doc_id, records_db.document_row(document), version)
        for doc_id, line in (layouts or {}).items():
            records += self._record_rows("layout", doc_id, line, version)
        replaced = [d.doc_id for d in documents]
        with store._errors("writing documents"):
            for batch in iter_batches(records, 100):
                client.upsert(store.main, list(batch))  # the commit point of these documents
            self._drop_old(replaced, version)
            self._drop_old(list(remove), None)
        return self._commit()

    def _record_rows(self, kind: str, doc_id: str, body: str, version: int) -> list[dict]:
        if len(doc_id.encode()) > ID_CHARS:
            raise KnowledgeBaseError(f"{doc_id[:80]}…: document id longer than {ID_CHARS} bytes")
        return [{"key": f"{kind}:{doc_id}#{n}", "kind": kind, "doc_id": doc_id, "part": n, "version": version,
                 "body": part, "_v": [0.0, 0.0]} for n, part in enumerate(_parts(body))]

    def _drop_old(self, doc_ids: list[str], version: int | None) -> None:
        """Delete the rows of these documents of other versions than ``version`` (all with None)."""
        store, client = self.store, self.client
        other = "" if version is None else f" and version != {int(version)}"
        for batch in iter_batches(doc_ids, IN_BATCH):
            where = _in("doc_id", batch) + other
            client.delete(store.main, filter=f'kind != "meta" and {where}')
            client.delete(store.chunks_name, filter=where)
            client.delete(store.units_name, filter=where)

    def _commit(self) -> int:
        store = self.store
        with store._errors("counting"):
            documents = self.client.query(store.main, filter='kind == "doc" and part == 0', output_fields=["count(*)"])[0]["count(*)"]
            chunks = self.client.query(store.chunks_name, filter="chunk_key > 0", output_fields=["count(*)"])[0]["count(*)"]
        self.meta.update(gen=int(self.meta["gen"]) + 1, documents=int(documents), chunks=int(chunks), pending=[],
                         settings=asdict(self.settings), written=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        self._put_meta(self.meta)
        return self.meta["gen"]

    def _recover(self, pending: list[int]) -> None:
        """A writer was killed during a write: drop what it wrote that no document row names, and
        the older versions of the documents it did commit."""
        store = self.store
        with store._errors("cleaning up an interrupted write"):
            for version in pending:
                rows = store._query(store.main, f'kind == "doc" and version == {int(version)}', ["doc_id"])
                committed = sorted({r["doc_id"] for r in rows})
                if committed:
                    self._drop_old(committed, version)
                orphans = f"version == {int(version)}" + (f" and doc_id not in [{', '.join(map(_literal, committed))}]" if committed else "")
                self.client.delete(store.chunks_name, filter=orphans)
                self.client.delete(store.units_name, filter=orphans)
        self._commit()

    def replace_all(self, settings, documents, chunks, vectors, chunk_token_ids, layouts=None) -> int:
        """Reindex: the chunk and unit collections are rebuilt with the new settings; the
        documents stay in place until each is rewritten (a reindex killed midway can be rerun)."""
        store = self.store
        existing = store._document_ids()
        kept = store._records("layout", existing)
        with store._errors("rebuilding the collections"):
            for name in (store.chunks_name, store.units_name):
                self.client.drop_collection(name)
        self.settings = settings
        self._create(settings, only_chunks=True)
        store._ensure_loaded()
        names = {d.doc_id for d in documents}
        return self.add(documents, chunks, vectors, chunk_token_ids, remove=[d for d in existing if d not in names],
                        layouts={**{d: line for d, line in kept.items() if d in names}, **(layouts or {})})

    def maybe_merge(self) -> int:
        return 0  # Milvus merges its own segments

    def merge_in_background(self) -> bool:
        return False

    def compact(self) -> int:
        return 0
