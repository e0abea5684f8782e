"""Ingest, update, remove and reindex a real knowledge base (real model, FAISS, files on disk).

Covers mixed batches (good files in, bad ones reported by name and reason), skipping unchanged
files by content hash, replacing a changed file's chunks, removing documents, settings
mismatches naming `wendao reindex`, and crash safety of the generation store.
"""
from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from sample_texts import GREENING, TYPHOON

from corpus.chunking import ChunkSettings
from corpus.errors import Fix
from index.model import DEFAULT_MODEL, cache_dir
from index.segments import SegmentStore
from index.store import KnowledgeBaseError
from qa.service import Wendao

pytestmark = pytest.mark.slow  # the real model encodes (the seed knowledge base, new files)
WENDAO = str(Path(sys.executable).with_name("wendao"))

WATER = """Greenfield Water Treatment Plant

The Greenfield plant processes 40,000 cubic meters of water per day.
Water quality is tested every four hours by the on-site laboratory.
"""


def kb_state(kb: Path) -> tuple[str, dict[str, str], list[tuple[str, int, int, str]]]:
    snapshot = SegmentStore(kb).load()
    documents = {doc_id: doc.sha256 for doc_id, doc in snapshot.documents.items()}
    return snapshot.generation, documents, [(c.chunk_id, c.start, c.end, c.text) for c in snapshot.chunks]


def cli(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "WENDAO_KB"}
    return subprocess.run([WENDAO, *args], capture_output=True, text=True, timeout=600, env=env)


def one_line(text: str) -> str:
    return " ".join(text.split())


def test_mixed_batch_ingests_good_files_and_reports_bad_ones(seed_kb_copy: Path, embedder, tmp_path: Path):
    inbox = tmp_path / "inbox"
    (inbox / "sub").mkdir(parents=True)
    (inbox / "greening.txt").write_bytes(GREENING.encode("gbk"))
    (inbox / "sub" / "typhoon.txt").write_bytes(TYPHOON.encode("big5"))
    (inbox / "empty.txt").write_bytes(b"")
    (inbox / "tool.txt").write_bytes(bytes(range(256)) * 8)
    (inbox / "notes.xlsx").write_bytes(b"PK\x03\x04")  # unsupported inside a folder: skipped silently
    (inbox / ".hidden.txt").write_text("隐藏文件", encoding="utf-8")  # hidden: skipped
    water = tmp_path / "water.txt"
    water.write_text(WATER, encoding="utf-8")
    other_greening = tmp_path / "elsewhere" / "greening.txt"  # same id as inbox/greening.txt
    other_greening.parent.mkdir()
    other_greening.write_text("另一份同名文件。", encoding="utf-8")
    missing = tmp_path / "missing.md"
    before_snapshot = SegmentStore(seed_kb_copy).load()
    service = Wendao(kb_dir=seed_kb_copy, embedder=embedder)

    report = service.ingest([missing, inbox, water, water, other_greening])

    outcome = {(Path(r.source).relative_to(tmp_path).as_posix(), r.doc_id, r.status): r.reason for r in report.results}
    assert outcome == {
        ("missing.md", "", "failed"): "no such file or directory",
        ("elsewhere/greening.txt", "greening.txt", "failed"): (
            f"document id 'greening.txt' is already used by {inbox / 'greening.txt'} in this batch; rename one of the files"
        ),
        ("inbox/empty.txt", "empty.txt", "failed"): "empty file (0 bytes)",
        ("inbox/greening.txt", "greening.txt", "added"): "",
        ("inbox/sub/typhoon.txt", "sub/typhoon.txt", "added"): "",
        ("inbox/tool.txt", "tool.txt", "failed"): "binary file (contains NUL bytes), not text",
        ("water.txt", "water.txt", "added"): "",  # named twice, read once
    }
    snapshot = service.snapshot()
    assert set(snapshot.documents) == set(before_snapshot.documents) | {"greening.txt", "sub/typhoon.txt", "water.txt"}
    assert snapshot.documents["greening.txt"].text == GREENING
    assert snapshot.documents["sub/typhoon.txt"].text == TYPHOON
    assert (report.documents, report.chunks) == (len(snapshot.documents), len(snapshot.chunks))
    # the seed documents' chunks and vectors are carried over untouched
    kept = [i for i, c in enumerate(snapshot.chunks) if c.doc_id in before_snapshot.documents]
    assert [snapshot.chunks[i] for i in kept] == list(before_snapshot.chunks)
    kept_rows = [row for i in kept for row in snapshot.unit_rows(i)]
    np.testing.assert_array_equal(snapshot.embeddings[kept_rows], before_snapshot.embeddings)
    hits, _ = service.search("台风防灾演练每学年举行几次", k=1)
    assert hits[0].chunk.doc_id == "sub/typhoon.txt"


def test_unchanged_skipped_changed_replaced_removed(seed_kb_copy: Path, embedder, tmp_path: Path):
    path = tmp_path / "greening.txt"
    path.write_text(GREENING, encoding="utf-8")
    service = Wendao(kb_dir=seed_kb_copy, embedder=embedder)
    assert [r.status for r in service.ingest([path]).results] == ["added"]
    first = kb_state(seed_kb_copy)

    again = service.ingest([path])
    assert [(r.status, r.chunks) for r in again.results] == [("unchanged", len(service.snapshot().chunks_of("greening.txt")))]
    assert again.encoded_chunks == 0
    assert kb_state(seed_kb_copy) == first  # nothing written, not even a new generation

    path.write_text(GREENING.replace("三千万元", "五千万元") + "第四条 本规定自2025年1月1日起施行。\n", encoding="utf-8")
    updated = service.ingest([path])
    assert [r.status for r in updated.results] == ["updated"]
    chunks = service.snapshot().chunks_of("greening.txt")
    text = service.snapshot().documents["greening.txt"].text
    assert "五千万元" in text and all(c.text == text[c.start : c.end] for c in chunks)
    assert not any("三千万元" in c.text for c in service.snapshot().chunks)
    assert updated.encoded_chunks == len(chunks)
    hits, _ = service.search("城市公共绿地养护资金每年多少", k=1)
    assert hits[0].chunk.doc_id == "greening.txt" and "五千万元" in hits[0].chunk.text

    before_remove = kb_state(seed_kb_copy)
    with pytest.raises(KnowledgeBaseError, match=r"no such document in .*: nope\.txt$") as caught:
        service.remove(["greening.txt", "nope.txt"])
    assert caught.value.fix == Fix("list_documents", str(seed_kb_copy))
    assert kb_state(seed_kb_copy) == before_remove  # all or nothing

    removed = service.remove(["greening.txt"])
    assert [(r.doc_id, r.status) for r in removed.results] == [("greening.txt", "removed")]
    generation, documents, chunk_rows = kb_state(seed_kb_copy)
    assert "greening.txt" not in documents and not any(row[0].startswith("greening.txt#") for row in chunk_rows)
    assert chunk_rows == [row for row in before_remove[2] if not row[0].startswith("greening.txt#")]
    assert [r.status for r in service.ingest([path]).results] == ["added"]  # a removed file comes back as new


def test_settings_mismatch_names_reindex_and_reindex_fixes_it(embedder, tmp_path: Path):
    kb = tmp_path / "kb"
    files = [tmp_path / "greening.txt", tmp_path / "water.txt"]
    files[0].write_text(GREENING, encoding="utf-8")
    files[1].write_text(WATER, encoding="utf-8")
    Wendao(kb_dir=kb, embedder=embedder).ingest(files)
    before = kb_state(kb)

    default_size = ChunkSettings().size
    smaller = Wendao(kb_dir=kb, embedder=embedder, chunking=ChunkSettings(size=60))
    for action in (lambda: smaller.ingest(files), lambda: smaller.search("绿化")):
        with pytest.raises(KnowledgeBaseError, match=rf"chunk_size: index has {default_size}, asked for 60") as caught:
            action()
        assert caught.value.fix == Fix("reindex", str(kb))
    assert kb_state(kb) == before

    smaller.reindex()
    generation, documents, chunks = kb_state(kb)
    assert documents == before[1]  # same documents, same content hashes
    assert SegmentStore(kb).read_settings().chunk_size == 60
    assert len(chunks) > len(before[2])
    hits, _ = smaller.search("How much water does the plant process per day?", k=1)
    assert hits[0].chunk.doc_id == "water.txt"

    # where no chunk size is named (every command but `wendao eval --chunk-size`), the knowledge
    # base opens and takes documents as it was built
    plain = Wendao(kb_dir=kb, embedder=embedder)
    typhoon = tmp_path / "typhoon.txt"
    typhoon.write_text(TYPHOON, encoding="utf-8")
    assert [r.status for r in plain.ingest([typhoon]).results] == ["added"]
    assert SegmentStore(kb).read_settings().chunk_size == 60
    hits, _ = plain.search("台风", k=1)
    assert hits[0].chunk.doc_id == "typhoon.txt"
    plain.remove(["typhoon.txt"])

    # an index written by another version (unknown settings field): the same error, the same fix
    gen, manifest = SegmentStore(kb).head()
    manifest["settings"]["future_setting"] = 1
    with sqlite3.connect(kb / "records.db") as db:
        db.execute("UPDATE commits SET manifest = ? WHERE gen = ?", (json.dumps(manifest), gen))
    with pytest.raises(KnowledgeBaseError, match=r"index format is not this version's") as caught:
        smaller.ingest(files)
    assert caught.value.fix == Fix("reindex", str(kb))
    smaller.reindex()
    assert kb_state(kb)[1] == before[1]
    assert [r.status for r in smaller.ingest(files).results] == ["unchanged", "unchanged"]


def test_cli_ingest_docs_remove_model_mismatch_and_reindex(embedder, tmp_path: Path):
    kb = tmp_path / "kb"
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "greening.txt").write_bytes(GREENING.encode("gbk"))
    (inbox / "water.md").write_text(WATER, encoding="utf-8")
    (inbox / "empty.txt").write_bytes(b"")
    missing = tmp_path / "missing.txt"

    done = cli("ingest", str(inbox), str(missing), "--kb", str(kb))
    assert done.returncode == 1, done.stderr  # some files failed; the others are in
    errors = one_line(done.stderr)
    assert f"failed: {missing}: no such file or directory" in errors
    assert f"failed: {inbox / 'empty.txt'}: empty file (0 bytes)" in errors
    assert "2 documents" in done.stdout and "added" in done.stdout

    listed = cli("docs", "--json", "--kb", str(kb))
    assert listed.returncode == 0, listed.stderr
    assert sorted(row["doc_id"] for row in json.loads(listed.stdout)) == ["greening.txt", "water.md"]

    unknown = cli("remove", "nope.txt", "--kb", str(kb))
    assert unknown.returncode == 2
    assert "no such document" in unknown.stderr and "nope.txt" in unknown.stderr and "Traceback" not in unknown.stderr

    # the same model under another name (its folder) is other settings: refuse, name the fix
    before = kb_state(kb)
    folder = str(cache_dir(DEFAULT_MODEL))
    mismatch = cli("ingest", str(inbox / "water.md"), "--kb", str(kb), "--model", folder)
    assert mismatch.returncode == 2
    assert f"model: index has '{DEFAULT_MODEL}', asked for '{folder}'" in one_line(mismatch.stderr)
    assert f"run `wendao reindex --kb {kb}`" in one_line(mismatch.stderr)
    assert kb_state(kb) == before

    removed = cli("remove", "greening.txt", "--kb", str(kb))
    assert removed.returncode == 0, removed.stderr
    assert "removed" in removed.stdout
    generation, documents, chunks = kb_state(kb)
    assert list(documents) == ["water.md"]
    assert chunks == [row for row in before[2] if row[0].startswith("water.md#")]

    rebuilt = cli("reindex", "--kb", str(kb), "--model", folder)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert SegmentStore(kb).read_settings().model == folder
    assert kb_state(kb)[1:] == (documents, chunks)  # same documents and chunks, new vectors


def test_knowledge_base_path_problems_are_clear_errors(embedder, tmp_path: Path):
    not_a_folder = tmp_path / "kb.txt"
    not_a_folder.write_text("x", encoding="utf-8")
    document = tmp_path / "water.txt"
    document.write_text(WATER, encoding="utf-8")
    with pytest.raises(KnowledgeBaseError, match=f"^{not_a_folder}: is a file, not a knowledge-base folder$"):
        Wendao(kb_dir=not_a_folder, embedder=embedder).ingest([document])

    store = SegmentStore(tmp_path / "kb")
    with store.lock():
        held = subprocess.run(
            [sys.executable, "-c", f"from index.segments import SegmentStore\nwith SegmentStore({str(store.root)!r}).lock(timeout=0.5): pass"],
            capture_output=True, text=True, timeout=120,
        )
    assert held.returncode == 1
    assert "another wendao process has been writing this knowledge base for 0.5 s" in held.stderr
    with pytest.raises(KnowledgeBaseError) as caught, store.lock(), SegmentStore(store.root).lock(timeout=0.1):
        pass  # flock is per open file: a second handle in this process waits like another process
    assert caught.value.fix == Fix("retry_later")


WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    import numpy as np
    from corpus.records import Chunk, Document
    from index.segments import FORMAT_VERSION, SegmentStore
    from index.store import IndexSettings
    from index.termids import text_ids

    store = SegmentStore(Path(sys.argv[1]))
    settings = IndexSettings("m", 16, "f", "t", 300, 0, "c", "e", FORMAT_VERSION)
    rng = np.random.default_rng(int(sys.argv[2]))
    print("ready", flush=True)
    while True:  # commit batches back to back until killed: new documents, replacements, removals
        count = int(rng.integers(1, 8))
        ids = [f"d{int(i)}" for i in rng.integers(0, 12, size=count)]
        documents = [Document(d, "s", "t", "数据安全" * 100, "x", "txt") for d in dict.fromkeys(ids)]
        chunks = [
            Chunk(f"{d.doc_id}#{j}", d.doc_id, 4 * j, 4 * j + 4, "数据安全", sentences=[(4 * j, 4 * j + 4)])
            for d in documents
            for j in range(100)
        ]
        vectors = rng.random((len(chunks), 16), dtype=np.float32)
        with store.lock():
            writer = store.writer(settings)
            remove = [f"d{int(rng.integers(12, 14))}"] if rng.random() < 0.3 else []
            writer.add(documents, chunks, vectors, [text_ids(c.text) for c in chunks], remove=remove)
            writer.maybe_merge()
            writer.close()
    """
)


def test_store_survives_sigkill_at_any_point_of_a_write(tmp_path: Path):
    """SIGKILL a process committing back to back: every time, the store loads whole."""
    kb = tmp_path / "kb"
    interrupted_writes = 0
    rng = random.Random(5)
    for attempt in range(10):
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(kb), str(attempt)], stdout=subprocess.PIPE, text=True)
        assert writer.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.5, 1.5))
        writer.send_signal(signal.SIGKILL)
        assert writer.wait(timeout=30) == -signal.SIGKILL
        interrupted_writes += (kb / "segments").is_dir() and any(p.name.startswith(".tmp-") for p in (kb / "segments").iterdir())
        if not SegmentStore(kb).head():
            continue
        snapshot = SegmentStore(kb).load()
        assert len(snapshot.chunks) == 100 * len(snapshot.documents) == len(snapshot.embeddings)
        assert {c.doc_id for c in snapshot.chunks} == set(snapshot.documents)
        assert len({c.chunk_id for c in snapshot.chunks}) == len(snapshot.chunks)  # no document twice
    assert interrupted_writes >= 1, "no kill landed inside a write; the test proved nothing"

    store = SegmentStore(kb)
    with store.lock(timeout=5):  # the killed writers' lock is free, and their leftovers are swept
        pass
    assert {p.name for p in (kb / "segments").iterdir()} == store.kept_segments()
