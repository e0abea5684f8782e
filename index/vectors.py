"""Sentence vectors of one segment: float16 on disk, memory-mapped, plus an approximate index.

The float16 matrix (``vectors.npy``) is the only full copy; exact cosines of candidates are
computed from it, so a knowledge base of millions of vectors costs page cache, not heap. The
approximate index depends on the segment's size (measured: README "Storage at scale"):

* small segments (< ``IVF_MIN_UNITS`` vectors, i.e. every fresh ingest batch): FAISS HNSW over
  float32, the index today's store used, well under a millisecond per query;
* big segments (made by merges): IVF-PQ (product-quantised codes, a few dozen bytes a vector,
  in RAM), whose candidates are re-scored exactly from the memory-mapped float16 vectors. The
  coarse quantiser and the PQ codebooks are trained once per knowledge base (``codec-*.faiss``) and
  shared by all big segments, so merging big segments re-encodes nothing that is not new.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

HNSW_NEIGHBOURS = 32
HNSW_BUILD_DEPTH = 80
HNSW_MIN_SEARCH_DEPTH = 128
IVF_MIN_UNITS = 50_000
IVF_LISTS = 1024
IVF_PROBES = 32
IVF_RERANK = 3  # IVF-PQ candidates re-scored exactly per result wanted
TRAIN_SAMPLE = 60_000
_LOADING = threading.Lock()


def codec_name(model: str, dimension: int) -> str:
    """The shared codebooks are only valid for one model's vectors."""
    import hashlib

    return f"codec-{dimension}-{hashlib.sha1(model.encode()).hexdigest()[:10]}.faiss"


def pq_subquantizers(dimension: int) -> int:
    """Sub-vectors of 8 dimensions where the dimension allows (48 bytes for e5-small's 384)."""
    for size in (8, 6, 4, 3, 2, 1):
        if dimension % size == 0:
            return dimension // size
    return dimension


def train_codec(sample: np.ndarray, dimension: int) -> faiss.Index:
    """An empty, trained IVF-PQ index whose copies encode big segments."""
    lists = min(IVF_LISTS, max(1, len(sample) // 39))
    quantizer = faiss.IndexFlatIP(dimension)
    index = faiss.IndexIVFPQ(quantizer, dimension, lists, pq_subquantizers(dimension), 8, faiss.METRIC_INNER_PRODUCT)
    index.train(np.ascontiguousarray(sample, dtype=np.float32))
    return index


def load_or_train_codec(path: Path, vectors: np.ndarray, dimension: int) -> faiss.Index:
    if path.is_file():
        return faiss.read_index(str(path))
    rng = np.random.default_rng(0)
    pick = np.sort(rng.choice(len(vectors), size=min(TRAIN_SAMPLE, len(vectors)), replace=False))
    codec = train_codec(np.asarray(vectors[pick], dtype=np.float32), dimension)
    staging = path.with_name(f".{path.name}.tmp")
    faiss.write_index(codec, str(staging))
    from index.durable import fsync_dir, fsync_file

    fsync_file(staging)
    staging.replace(path)
    fsync_dir(path.parent)
    return codec


def build_ann(vectors: np.ndarray, dimension: int, codec: Path) -> faiss.Index | None:
    """The approximate index of a segment's vectors (None for an empty segment)."""
    if not len(vectors):
        return None
    if len(vectors) < IVF_MIN_UNITS:
        index = faiss.IndexHNSWFlat(dimension, HNSW_NEIGHBOURS, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_BUILD_DEPTH
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
        return index
    index = faiss.clone_index(load_or_train_codec(codec, vectors, dimension))
    step = 200_000
    for start in range(0, len(vectors), step):
        index.add(np.ascontiguousarray(vectors[start : start + step], dtype=np.float32))
    return index


@dataclass
class SegmentVectors:
    vectors: np.ndarray  # float16 (units, dimension), memory-mapped
    _ann: faiss.Index | None
    _ann_file: object | None = None  # opened at load, read at first search
    _file: tuple[int, int] | None = None  # (data offset, descriptor) of vectors.npy for pread

    @property
    def ann(self) -> faiss.Index | None:
        """The approximate index, read on first use: an ingest or a document listing opens a
        knowledge base without reading every segment's index. The file was opened with the
        segment, so a sweep that removes the folder meanwhile does not take it away."""
        if self._ann is None and self._ann_file is not None:
            with _LOADING:
                return self._load()
        return self._ann

    def _load(self) -> faiss.Index | None:
        if self._ann is None and self._ann_file is not None:
            handle = self._ann_file
            handle.seek(0)
            self._ann = faiss.deserialize_index(np.frombuffer(handle.read(), dtype=np.uint8))
            handle.close()
            self._ann_file = None
        return self._ann

    @ann.setter
    def ann(self, index: faiss.Index | None) -> None:
        self._ann, self._ann_file = index, None

    @classmethod
    def write(cls, folder: Path, vectors: np.ndarray, dimension: int, codec: Path) -> None:
        vectors = np.asarray(vectors, dtype=np.float16).reshape(-1, dimension)
        np.save(folder / "vectors.npy", vectors)
        ann = build_ann(vectors, dimension, codec)
        if ann is not None:
            faiss.write_index(ann, str(folder / "ann.faiss"))

    @classmethod
    def load(cls, folder: Path) -> "SegmentVectors":
        vectors = np.load(folder / "vectors.npy", mmap_mode="r")
        ann_path = folder / "ann.faiss"
        fd = os.open(folder / "vectors.npy", os.O_RDONLY)
        return cls(vectors, None, ann_path.open("rb") if ann_path.is_file() else None, (vectors.offset, fd))

    def __del__(self) -> None:
        if self._file is not None:
            try:
                os.close(self._file[1])
            except OSError:
                pass

    @property
    def exact_scores(self) -> bool:
        """Whether ``candidates`` gives exact cosines (HNSW over float32) or PQ estimates."""
        return isinstance(self.ann, faiss.IndexHNSW)

    def candidates(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """About the k nearest vectors: (cosines, exact or estimated, and local rows), best first.

        IVF-PQ estimates of all big segments are comparable (one codec), so a caller can merge
        the candidates of every segment and re-score only the best of them exactly.
        """
        k = min(k, len(self.vectors))
        if k == 0 or self.ann is None:
            return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64)
        row = np.ascontiguousarray(query, dtype=np.float32).reshape(1, -1)
        if self.exact_scores:
            params = faiss.SearchParametersHNSW(efSearch=max(k, HNSW_MIN_SEARCH_DEPTH))
        else:
            params = faiss.SearchParametersIVF(nprobe=IVF_PROBES)
        scores, rows = self.ann.search(row, k, params=params)
        keep = rows[0] >= 0
        return scores[0][keep], rows[0][keep]

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Approximately the k nearest vectors: (exact cosines, local rows), best first."""
        if self.exact_scores or self.ann is None:
            return self.candidates(query, k)
        _, rows = self.candidates(query, k * IVF_RERANK)
        exact = self.exact(query, rows)
        best = np.argsort(-exact, kind="stable")[:k]
        return exact[best], rows[best]

    def rows(self, rows: np.ndarray) -> np.ndarray:
        """Some stored vectors as float32, read with ``pread`` (one call per run of consecutive
        rows) rather than through the memory map: a mapped page fault maps its neighbours too
        (fault-around), and a process answering questions would soon hold the whole file."""
        rows = np.asarray(rows, dtype=np.int64)
        if self._file is None or not len(rows):
            return np.asarray(self.vectors[rows], dtype=np.float32)
        unique, inverse = np.unique(rows, return_inverse=True)
        breaks = np.flatnonzero(np.diff(unique) != 1) + 1
        starts = np.concatenate([[0], breaks])
        ends = np.concatenate([breaks, [len(unique)]])
        width = self.vectors.shape[1] * 2
        offset, fd = self._file
        chunks = [os.pread(fd, int(unique[e - 1] - unique[b] + 1) * width, offset + int(unique[b]) * width) for b, e in zip(starts, ends)]
        block = np.frombuffer(b"".join(chunks), dtype=np.float16).reshape(len(unique), -1)
        return block.astype(np.float32)[inverse]

    def exact(self, query: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Exact cosines of the query with some of the stored vectors."""
        if not len(rows):
            return np.zeros(0, dtype=np.float32)
        # einsum, not a BLAS matrix-vector product: BLAS threads waiting for busy cores cost
        # milliseconds here on a shared two-core machine, for a microsecond of arithmetic
        return np.einsum("ij,j->i", self.rows(rows), np.asarray(query, dtype=np.float32).reshape(-1))
