"""Kill -9 and resume, readers during a write, two writers: real processes, the real model.

An ingest of a few hundred small files is SIGKILLed at several points (before its first commit,
right after a commit, in the middle of a batch) and run again until it finishes. Afterwards no
document is lost or duplicated, every file is found by its own code word, the work redone is at
most one batch per kill, and nothing killed writers left is still on disk.
"""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from index.ingest import ENCODE_BATCH
from index.segments import SegmentStore
from qa.service import Wendao
from tests.sample_texts import GREENING, TYPHOON

RUNNER = Path(__file__).with_name("ingest_runner.py")
COMMIT_UNITS = 64  # commits of the runs here (the default, 256, would make a few hundred files one or two commits)
SENTENCES = [s + "。" for s in (GREENING + TYPHOON).replace("\n", "").split("。") if len(s) > 8]


def write_files(folder: Path, count: int, prefix: str) -> dict[str, str]:
    """Small documents, each with its own code word (a Latin token no other file has)."""
    folder.mkdir(parents=True)
    codes = {}
    for n in range(count):
        code = f"{prefix}{n}q"
        lines = [SENTENCES[(n * 3 + k) % len(SENTENCES)] for k in range(2)]
        (folder / f"{prefix}{n:03d}.txt").write_text(f"档案{code}\n{lines[0]}{lines[1]}编号{code}。\n", encoding="utf-8")
        codes[f"{prefix}{n:03d}.txt"] = code
    return codes


def commits(kb: Path) -> int:
    if not (kb / "records.db").is_file():
        return 0
    try:
        connection = sqlite3.connect(f"file:{kb / 'records.db'}?mode=ro", uri=True, timeout=5)
        try:
            row = connection.execute("SELECT max(gen) FROM commits").fetchone()
        finally:
            connection.close()
        return int(row[0] or 0)
    except sqlite3.OperationalError:
        return 0


def start(kb: Path, log: Path, *paths: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(RUNNER), str(kb), str(log), str(COMMIT_UNITS), *map(str, paths)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def kill_when(process: subprocess.Popen, ready, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert process.poll() is None, f"the ingest ended before it could be killed: {process.communicate()}"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()


def leftovers(kb: Path) -> list[str]:
    segments = kb / "segments"
    names = [p.name for p in segments.iterdir()] if segments.is_dir() else []
    return [n for n in names if n.startswith(".tmp")] + [n for n in names if not n.startswith(".") and n not in SegmentStore(kb).kept_segments()]


def test_kill_9_at_several_points_then_resume(tmp_path: Path, embedder):
    docs = tmp_path / "docs"
    codes = write_files(docs, 200, "k")
    kb, log = tmp_path / "kb", tmp_path / "embedded.log"
    plans = [
        lambda p: (lambda started=time.monotonic(): lambda: time.monotonic() - started > 2.0)(),  # before any commit
        lambda p: (lambda base=commits(kb): lambda: commits(kb) > base)(),  # right after a commit
        lambda p: (lambda base=commits(kb): (lambda: commits(kb) > base and time.sleep(0.4) is None))(),  # mid-batch
    ]
    seen_leftovers = []
    for plan in plans:
        process = start(kb, log, docs)
        kill_when(process, plan(process))
        seen_leftovers.append(len(leftovers(kb)))
        if commits(kb):  # what was committed is whole and searchable while nothing runs
            snapshot = SegmentStore(kb).load()
            assert len(set(snapshot.documents)) == len(snapshot.documents)
    final = start(kb, log, docs)
    out, err = final.communicate(timeout=600)
    assert final.returncode == 0, err[-2000:]

    store = SegmentStore(kb)
    snapshot = store.load()
    assert sorted(snapshot.documents) == sorted(codes)  # none lost, none twice
    rows = snapshot.records.db.execute("SELECT doc_id, count(*) FROM documents WHERE gen_removed IS NULL GROUP BY doc_id").fetchall()
    assert all(count == 1 for _, count in rows) and len(rows) == len(codes)
    chunk_docs = [c.doc_id for c in snapshot.chunks]
    assert len(chunk_docs) == len(codes) == len(set(chunk_docs))  # one chunk per small file, none twice

    service = Wendao(kb_dir=kb, embedder=embedder)
    for doc_id, code in list(codes.items())[::7]:
        hits, _ = service.search(code, mode="lexical", k=1)
        assert hits[0].document.doc_id == doc_id
    answer = service.ask("台风来临前要做哪些准备？")
    assert not answer.abstained and answer.citations

    units = int(snapshot.unit_counts.sum())
    embedded = sum(int(line) for line in log.read_text().split())
    largest_file = max(int(c) for c in snapshot.unit_counts)
    batch = COMMIT_UNITS + largest_file + ENCODE_BATCH
    assert units <= embedded <= units + len(plans) * batch, (units, embedded)
    assert leftovers(kb) == []  # the last writer swept what the killed ones left
    assert max(seen_leftovers) <= 1  # at most the one segment a kill interrupted, never growing


def test_readers_during_a_write_and_two_writers(seed_kb_copy: Path, embedder, tmp_path: Path):
    """Askers keep getting whole answers while two processes ingest at once; both land."""
    first = write_files(tmp_path / "a", 30, "a")
    second = write_files(tmp_path / "b", 30, "b")
    before = set(SegmentStore(seed_kb_copy).load().documents)
    writers = [start(seed_kb_copy, tmp_path / "a.log", tmp_path / "a"), start(seed_kb_copy, tmp_path / "b.log", tmp_path / "b")]
    service = Wendao(kb_dir=seed_kb_copy, embedder=embedder)
    seen, errors = [], []

    def ask_until_done():
        while any(w.poll() is None for w in writers):
            try:
                hits, _ = service.search("城市绿化养护", mode="lexical", k=3)
                snapshot = service.snapshot()
                for hit in hits:
                    assert hit.document.text[hit.chunk.start : hit.chunk.end] == hit.chunk.text
                seen.append(len(snapshot.documents))
            except Exception as error:  # noqa: BLE001 - any failure of a reader is the bug
                errors.append(repr(error))
            time.sleep(0.05)

    reader = threading.Thread(target=ask_until_done)
    reader.start()
    for writer in writers:
        _, err = writer.communicate(timeout=600)
        assert writer.returncode == 0, err[-2000:]
    reader.join()
    assert errors == []
    assert seen == sorted(seen) and len(set(seen)) > 1  # counts only grow, and grew meanwhile
    documents = set(SegmentStore(seed_kb_copy).load().documents)
    assert documents == before | set(first) | {f"{d}" for d in second}
    assert np.all(np.diff(seen) >= 0)
