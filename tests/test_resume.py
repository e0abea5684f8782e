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

from index.embed_cache import CACHE_DB
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


def cached_units(kb: Path) -> int:
    """Vectors in the knowledge base's embedding cache (read-only, beside the writer)."""
    if not (kb / CACHE_DB).is_file():
        return 0
    try:
        connection = sqlite3.connect(f"file:{kb / CACHE_DB}?mode=ro", uri=True, timeout=5)
        try:
            return int(connection.execute("SELECT count(*) FROM vectors").fetchone()[0])
        finally:
            connection.close()
    except sqlite3.OperationalError:
        return 0


def test_one_long_document_and_reindex_resume_after_kill(tmp_path: Path, embedder):
    """A single document of ~400 sentence units (committed as one segment, so readers never see
    half of it) and a ``reindex`` are both killed in the middle of their embedding and run again:
    the second run embeds only what the first had not finished (each forward pass is kept in the
    embedding cache as it ends), the document is committed once and nothing is left behind."""
    lines = [f"{SENTENCES[n % len(SENTENCES)][:-1]}，第{n}条。" for n in range(400)]
    path = tmp_path / "docs" / "长文档.txt"
    path.parent.mkdir()
    path.write_text("长文档\n" + "\n".join("".join(lines[i : i + 5]) for i in range(0, len(lines), 5)) + "\n", encoding="utf-8")
    kb = tmp_path / "kb"

    for step, args in (("ingest", [path]), ("reindex", ["--reindex"])):
        if step == "reindex":  # a knowledge base whose cache is gone (written before it existed)
            for name in (CACHE_DB, f"{CACHE_DB}-wal", f"{CACHE_DB}-shm"):
                (kb / name).unlink(missing_ok=True)
        before = commits(kb)
        first_log, second_log = tmp_path / f"{step}-1.log", tmp_path / f"{step}-2.log"
        process = subprocess.Popen([sys.executable, str(RUNNER), str(kb), str(first_log), "256", *map(str, args)],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        kill_when(process, lambda: cached_units(kb) >= 128, timeout=900)
        cached = cached_units(kb)
        assert commits(kb) == before  # killed before its one commit: the knowledge base as it was
        final = subprocess.run([sys.executable, str(RUNNER), str(kb), str(second_log), "256", *map(str, args)],
                               capture_output=True, text=True, timeout=600)
        assert final.returncode == 0, final.stderr[-2000:]
        snapshot = SegmentStore(kb).load()
        units = int(snapshot.unit_counts.sum())
        assert units >= 400 and list(snapshot.documents) == ["长文档.txt"]
        assert len({c.chunk_id for c in snapshot.chunks}) == len(snapshot.chunks)
        embedded_again = sum(int(n) for n in second_log.read_text().split())
        assert embedded_again <= units - cached, (step, units, cached, embedded_again)  # the cached work was kept
        embedded_first = sum(int(n) for n in first_log.read_text().split())
        assert embedded_first <= cached + ENCODE_BATCH  # the kill lost at most the pass in flight
        assert leftovers(kb) == []
    service = Wendao(kb_dir=kb, embedder=embedder)
    hits, _ = service.search("第217条", mode="lexical", k=1)
    assert "第217条" in hits[0].chunk.text


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


def test_an_interrupted_test_set_build_carries_on(tmp_path: Path, embedder):
    """``wendao eval`` on a BEIR folder builds its knowledge base once; a build cut short (here:
    only the first passages committed) is completed by the next run instead of being scored
    half-built, and passages already in it are not embedded again."""
    from qa.evaluate import build_beir_kb
    from qa.testsets import Passage

    corpus = [Passage(f"p{n}", f"{SENTENCES[n % len(SENTENCES)]}编号{n}q。", f"标题{n}") for n in range(12)]
    service = Wendao(kb_dir=tmp_path / "kb", embedder=embedder)
    build_beir_kb(service, corpus[:5])  # the part an interrupted build had committed
    counting = []
    service = Wendao(kb_dir=tmp_path / "kb", embedder=embedder)
    real = service.ingestor

    def counting_ingestor():
        ingestor = real()
        counting.append(ingestor)
        return ingestor

    service.ingestor = counting_ingestor
    build_beir_kb(service, corpus)
    assert sorted(SegmentStore(tmp_path / "kb").load().documents) == sorted(p.id for p in corpus)
    assert len(counting) == 1  # one ingest, of the seven missing passages
    build_beir_kb(service, corpus)
    assert len(counting) == 1  # complete: nothing to do
