"""Bad input, one kind at a time, against a copy of the seed knowledge base.

Each input gives either a clear message naming the file (or the field) with the knowledge base
exactly as it was (same generation, documents and chunks), or a correct result.
"""
from __future__ import annotations

import json
import os
import pty
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from filelock import FileLock
from sample_texts import GREENING

from corpus.errors import Fix
from corpus.pipeline import seed_paths
from index.segments import SegmentStore
from qa.retrieve import QueryError
from qa.service import Wendao

pytestmark = pytest.mark.slow  # the real model encodes (the seed knowledge base, new files)
WENDAO = str(Path(sys.executable).with_name("wendao"))
SEED_QUESTION = "崇州市职教中心2023年引进了多少名企业工程师？"
SEED_QUESTION_DOC = "000_9f677896c333216d.txt"

# 碁 and 裏 exist in cp950 (the Big5 that real files use) but not in Big5 proper.
BIG5_TEXT = """颱風防災演練實施要點

一、本市各級學校每學年應舉行颱風防災演練二次，分別於五月及九月辦理。
二、演練內容包括避難疏散、物資整備及通報聯繫，由校長擔任指揮官，碁盤式路線圖放在教室裏。
三、演練結束後應於十日內將檢討報告送教育局備查。
"""
ENGLISH_TEXT = """Greenfield Water Treatment Plant

The Greenfield plant processes 40,000 cubic meters of water per day.
Water quality is tested every four hours by the on-site laboratory.
The plant was commissioned in 2016 and serves about 250,000 residents.
"""


def kb_state(kb: Path) -> tuple[str, dict[str, str], list[tuple[str, int, int, str]]]:
    """What must not change when input is rejected: generation, documents, chunks."""
    snapshot = SegmentStore(kb).load()
    documents = {doc_id: doc.sha256 for doc_id, doc in snapshot.documents.items()}
    return snapshot.generation, documents, [(c.chunk_id, c.start, c.end, c.text) for c in snapshot.chunks]


def cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "WENDAO_KB"}
    return subprocess.run([WENDAO, *args], capture_output=True, text=True, timeout=timeout, env=env)


def one_line(text: str) -> str:
    return " ".join(text.split())


# --- rejected files ---------------------------------------------------------------------------


def _pipe(path: Path) -> None:
    os.mkfifo(path)


REJECTED = {
    "empty.txt": (b"", "empty file (0 bytes)"),
    "binary.txt": (bytes(range(256)) * 40, "binary file (contains NUL bytes), not text"),
    "photo.txt": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10" + bytes(200), "binary file (contains NUL bytes), not text"),
    "scan.pdf": (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<", "corrupt or unreadable PDF"),
    "pipe.txt": (_pipe, "not a regular file"),
}


@pytest.mark.parametrize("name", list(REJECTED))
def test_rejected_file_is_named_and_index_untouched(name: str, seed_kb_copy: Path, embedder, tmp_path: Path):
    content, reason = REJECTED[name]
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        content(path)
    before = kb_state(seed_kb_copy)
    report = Wendao(kb_dir=seed_kb_copy, embedder=embedder).ingest([path])
    assert [(r.source, r.status) for r in report.results] == [(str(path), "failed")]
    assert reason in report.results[0].reason
    assert kb_state(seed_kb_copy) == before


def test_missing_path_is_named_and_index_untouched(seed_kb_copy: Path, embedder, tmp_path: Path):
    before = kb_state(seed_kb_copy)
    missing = tmp_path / "nowhere" / "规定.txt"
    report = Wendao(kb_dir=seed_kb_copy, embedder=embedder).ingest([missing])
    assert [(r.source, r.status, r.reason) for r in report.results] == [(str(missing), "failed", "no such file or directory")]
    assert kb_state(seed_kb_copy) == before


def test_folder_without_supported_files(seed_kb_copy: Path, embedder, tmp_path: Path):
    folder = tmp_path / "designs"
    folder.mkdir()
    (folder / "a.psd").write_bytes(b"8BPS")
    before = kb_state(seed_kb_copy)
    report = Wendao(kb_dir=seed_kb_copy, embedder=embedder).ingest([folder])
    assert [(r.source, r.status) for r in report.results] == [(str(folder), "failed")]
    assert report.results[0].reason.startswith("no supported files in this folder (supported: .bmp, .docx, .htm, .html")
    assert kb_state(seed_kb_copy) == before


def test_50_mb_file_is_refused_with_size_limit_and_fix_while_the_batch_goes_on(seed_kb_copy: Path, embedder, tmp_path: Path):
    big = tmp_path / "汇编.txt"
    seed_text = seed_paths()[1].read_bytes()
    with big.open("wb") as handle:  # real Chinese text, 50,000,000 bytes
        for _ in range(50_000_000 // len(seed_text)):
            handle.write(seed_text)
        handle.write(seed_text[: 50_000_000 - handle.tell()])
    assert big.stat().st_size == 50_000_000
    good = tmp_path / "greening.txt"
    good.write_bytes(GREENING.encode("gbk"))
    before = kb_state(seed_kb_copy)

    report = Wendao(kb_dir=seed_kb_copy, embedder=embedder).ingest([big, good])

    results = {Path(r.source).name: r for r in report.results}
    assert results["汇编.txt"].status == "failed"
    assert results["汇编.txt"].reason == "file too large: 50.0 MB is over the 20 MB limit"
    assert results["汇编.txt"].fix == Fix("raise_size_limit")
    assert results["greening.txt"].status == "added"
    generation, documents, chunks = kb_state(seed_kb_copy)
    assert generation != before[0]
    assert set(documents) == set(before[1]) | {"greening.txt"}
    assert [c for c in chunks if not c[0].startswith("greening.txt#")] == before[2]


def test_size_limit_is_configurable_on_the_command_line(seed_kb_copy: Path, tmp_path: Path):
    small = tmp_path / "greening.txt"
    small.write_bytes(GREENING.encode("gbk"))  # 246 bytes
    before = kb_state(seed_kb_copy)
    done = cli("ingest", str(small), "--kb", str(seed_kb_copy), "--max-mb", "0.0001")
    assert done.returncode == 1, done.stderr
    assert f"failed: {small}: file too large: 0.0 MB is over the 0.0001 MB limit (raise it with `wendao ingest --max-mb N`)" in one_line(done.stderr)
    assert kb_state(seed_kb_copy) == before


# --- accepted files: a correct result ---------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "data", "text", "encoding", "question"),
    [
        ("greening.txt", GREENING.encode("gbk"), GREENING, "gb18030", "城市公共绿地的养护资金由谁安排？"),
        ("typhoon.txt", BIG5_TEXT.encode("cp950"), BIG5_TEXT, "cp950", "台风防灾演练每学年举行几次？"),  # asked in Simplified
        ("water.txt", ENGLISH_TEXT.encode("utf-8"), ENGLISH_TEXT, "utf-8", "How much water does the Greenfield plant process per day?"),
    ],
    ids=["gbk", "big5", "no-chinese"],
)
def test_accepted_file_is_decoded_indexed_and_found(
    name: str, data: bytes, text: str, encoding: str, question: str, seed_kb_copy: Path, embedder, tmp_path: Path
):
    path = tmp_path / name
    path.write_bytes(data)
    before = kb_state(seed_kb_copy)
    service = Wendao(kb_dir=seed_kb_copy, embedder=embedder)

    report = service.ingest([path])

    assert [(r.doc_id, r.status) for r in report.results] == [(name, "added")]
    snapshot = service.snapshot()
    document = snapshot.documents[name]
    assert (document.text, document.encoding, document.size) == (text, encoding, len(data))
    new_chunks = snapshot.chunks_of(name)
    assert new_chunks and all(c.text == text[c.start : c.end] for c in new_chunks)
    assert [(c.chunk_id, c.text) for c in snapshot.chunks if c.doc_id != name] == [(c[0], c[3]) for c in before[2]]
    for mode in ("hybrid", "lexical", "dense"):
        hits, _ = service.search(question, mode=mode, k=3)
        assert hits[0].chunk.doc_id == name, (mode, [h.chunk.doc_id for h in hits])


# --- an unreadable file -------------------------------------------------------------------------


def _unprivileged(command: list[str]) -> list[str]:
    """As root, drop the capabilities that let root read any file, so mode 000 really bites."""
    if os.geteuid() != 0:
        return command
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: cannot make a file unreadable to this process")
    return ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--", *command]


def test_unreadable_file_is_named_and_the_rest_goes_on(seed_kb_copy: Path, tmp_path: Path):
    locked = tmp_path / "secret.txt"
    locked.write_text(GREENING, encoding="utf-8")
    locked.chmod(0)
    good = tmp_path / "water.txt"
    good.write_text(ENGLISH_TEXT, encoding="utf-8")
    probe = subprocess.run(_unprivileged(["cat", str(locked)]), capture_output=True, text=True)
    assert probe.returncode != 0 and "Permission denied" in probe.stderr, "the file must really be unreadable"
    before = kb_state(seed_kb_copy)

    env = {k: v for k, v in os.environ.items() if k != "WENDAO_KB"}
    done = subprocess.run(
        _unprivileged([WENDAO, "ingest", str(locked), str(good), "--kb", str(seed_kb_copy)]),
        capture_output=True, text=True, timeout=600, env=env,
    )

    assert done.returncode == 1, done.stderr
    assert f"failed: {locked}: permission denied: the file is not readable by this user" in one_line(done.stderr)
    generation, documents, chunks = kb_state(seed_kb_copy)
    assert set(documents) == set(before[1]) | {"water.txt"}
    assert [c for c in chunks if not c[0].startswith("water.txt#")] == before[2]


# --- queries ------------------------------------------------------------------------------------


@pytest.mark.parametrize("query", ["", "   ", "\n\t\u3000"])
def test_empty_query_is_a_clear_error(query: str, seed_service: Wendao):
    with pytest.raises(QueryError, match="the question is empty"):
        seed_service.ask(query)
    with pytest.raises(QueryError, match="the question is empty"):
        seed_service.search(query)


def test_empty_query_on_the_command_line(seed_kb_dir: Path):
    done = cli("ask", "", "--kb", str(seed_kb_dir))
    assert done.returncode == 2
    assert "error: the question is empty" in done.stderr
    assert "Traceback" not in done.stderr


LONG_QUERY = (SEED_QUESTION * 500)[:10_000]


def test_10000_character_query_gives_the_same_answer_as_the_short_one(seed_service: Wendao):
    assert len(LONG_QUERY) == 10_000
    short_hits, _ = seed_service.search(SEED_QUESTION, k=5)
    long_hits, _ = seed_service.search(LONG_QUERY, k=5)
    assert short_hits[0].chunk.doc_id == long_hits[0].chunk.doc_id == SEED_QUESTION_DOC
    answer = seed_service.ask(LONG_QUERY)
    assert not answer.abstained
    assert "58名" in answer.text
    assert answer.citations[0].hit.chunk.doc_id == SEED_QUESTION_DOC


def test_10000_character_query_on_the_command_line(seed_kb_dir: Path):
    done = cli("search", LONG_QUERY, "--json", "-k", "3", "--kb", str(seed_kb_dir))
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["results"][0]["doc_id"] == SEED_QUESTION_DOC


# --- a process killed in the middle of an ingest ------------------------------------------------


def test_ingest_killed_while_embedding_leaves_the_previous_index(seed_kb_copy: Path, embedder, tmp_path: Path):
    batch = tmp_path / "batch"
    for copy in range(2):  # ~500 chunks: embedding takes well over the few seconds we wait
        for seed in seed_paths():
            target = batch / f"copy{copy}" / seed.name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(f"副本{copy}\n\n" + seed.read_text(encoding="utf-8"), encoding="utf-8")
    before = kb_state(seed_kb_copy)

    # stderr on a terminal: the progress bar says when embedding has started
    controller, terminal = pty.openpty()
    env = {**{k: v for k, v in os.environ.items() if k != "WENDAO_KB"}, "TERM": "xterm", "COLUMNS": "120"}
    process = subprocess.Popen(
        [WENDAO, "ingest", str(batch), "--kb", str(seed_kb_copy)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=terminal, env=env,
    )
    os.close(terminal)
    seen = b""
    deadline = time.monotonic() + 300
    try:
        while b"embedding" not in seen:
            assert process.poll() is None, f"ingest ended before it was killed: {seen[-500:]!r}"
            assert time.monotonic() < deadline, "embedding never started"
            if select.select([controller], [], [], 0.5)[0]:
                seen += os.read(controller, 65536)
        time.sleep(2)
        assert process.poll() is None, "ingest finished before it could be killed"
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
        os.close(controller)

    # An ingest commits as it goes: batches committed before the kill stay, whole; nothing else moved.
    after = kb_state(seed_kb_copy)
    assert set(before[1].items()) <= set(after[1].items())
    assert [row for row in after[2] if row[0].split("#")[0] in before[1]] == before[2]
    with FileLock(str(seed_kb_copy / "write.lock"), timeout=5):  # no stale lock blocks writers
        pass
    service = Wendao(kb_dir=seed_kb_copy, embedder=embedder)
    assert "58名" in service.ask(SEED_QUESTION).text

    good = tmp_path / "water.txt"
    good.write_text(ENGLISH_TEXT, encoding="utf-8")
    report = service.ingest([good])
    assert [r.status for r in report.results] == ["added"]
    assert set(service.snapshot().documents) == set(after[1]) | {"water.txt"}
    leftovers = [p.name for p in (seed_kb_copy / "segments").iterdir() if p.name not in service.store.kept_segments()]
    assert leftovers == []
