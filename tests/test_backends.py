"""The backend-independent behaviour on both storage backends: the local segmented store and
Milvus (Milvus Lite, a real embedded Milvus, in the suite and in CI).

A new Milvus Lite knowledge base is built from the bundled documents the way a new local one is
(real ingest, real model), then asked the same questions as the shared local seed knowledge
base: rankings, scores, answers and JSON shapes must agree. Ingest, replace, remove, eval and
bad input run on both (``backend`` is parametrized); Milvus' own failures (unreachable server,
missing collection, a second process on a Lite file, a model mismatch) are one-line errors.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from sample_texts import GREENING
from typer.testing import CliRunner

from index.store import KnowledgeBaseError
from qa.evaluate import evaluate
from qa.service import Wendao
from qa.testsets import load_queries
from ui.cli.app import app
from ui.output import answer_json, search_json

pytest.importorskip("milvus_lite", reason="Milvus support not installed: pip install -e '.[milvus]'")
pytestmark = pytest.mark.slow
WENDAO = str(Path(sys.executable).with_name("wendao"))
QUESTIONS = ["崇州市职教中心2023年引进了多少名企业工程师？", "学分银行", "衢州學校裡外聘的兼職老師大概佔多大比例？"]
BACKENDS = ["local", "milvus-lite"]


def kb_spec(backend: str, folder: Path) -> str:
    return str(folder / "kb") if backend == "local" else f"milvus-lite:{folder / 'kb.db'}"


@pytest.fixture(scope="session")
def milvus_seed(tmp_path_factory, embedder) -> str:
    """A new Milvus Lite knowledge base: its first question builds it from the bundled documents."""
    spec = f"milvus-lite:{tmp_path_factory.mktemp('milvus-seed') / 'seed.db'}"
    service = Wendao(kb_dir=spec, embedder=embedder)
    assert not service.store.exists()
    service.ask(QUESTIONS[0])
    return spec


@pytest.fixture(scope="session")
def milvus_service(milvus_seed, embedder) -> Wendao:
    return Wendao(kb_dir=milvus_seed, embedder=embedder)


def _ranking(hits):
    return [(h.chunk.doc_id, h.chunk.start, h.chunk.end) for h in hits]


@pytest.mark.parametrize("mode", ["lexical", "dense", "hybrid"])
def test_milvus_ranks_like_the_local_backend(mode: str, seed_service: Wendao, milvus_service: Wendao):
    assert [(r.document.doc_id, r.chunks) for r in milvus_service.documents()] == [
        (r.document.doc_id, r.chunks) for r in seed_service.documents()
    ]
    for question in QUESTIONS:
        local, _ = seed_service.search(question, mode=mode, k=10)
        milvus, _ = milvus_service.search(question, mode=mode, k=10)
        assert _ranking(milvus) == _ranking(local), question
        for a, b in zip(local, milvus):
            # BM25 equal (Milvus' k1+1 factor divided out); cosines from float16 vs float32 vectors
            assert (a.lexical is None) == (b.lexical is None) and abs((a.lexical or 0) - (b.lexical or 0)) < 1e-3
            assert (a.dense is None) == (b.dense is None) and abs((a.dense or 0) - (b.dense or 0)) < 2e-3
            assert abs(a.score - b.score) < 1e-2


def test_milvus_answers_like_the_local_backend_with_the_same_json(seed_service: Wendao, milvus_service: Wendao):
    for question in QUESTIONS:
        local, milvus = answer_json(seed_service.ask(question)), answer_json(milvus_service.ask(question))
        assert milvus["answer"] == local["answer"] and milvus["abstained"] == local["abstained"]
        assert abs(milvus["confidence"] - local["confidence"]) < 0.01
        assert [sorted(c) for c in milvus["citations"]] == [sorted(c) for c in local["citations"]]
        assert [(c["doc_id"], c["start"], c["end"], c["spans"]) for c in milvus["citations"]] == [
            (c["doc_id"], c["start"], c["end"], c["spans"]) for c in local["citations"]
        ]
    hits, plan = milvus_service.search(QUESTIONS[1], k=3, doc_ids={"000_9f677896c333216d.txt"})
    local_hits, local_plan = seed_service.search(QUESTIONS[1], k=3, doc_ids={"000_9f677896c333216d.txt"})
    assert hits and {h.chunk.doc_id for h in hits} == {"000_9f677896c333216d.txt"}
    assert _ranking(hits) == _ranking(local_hits)
    ours, theirs = search_json(plan, "hybrid", hits), search_json(local_plan, "hybrid", local_hits)
    assert [sorted(r) for r in ours["results"]] == [sorted(r) for r in theirs["results"]]


def test_eval_gives_the_same_figures_on_both(seed_service: Wendao, milvus_service: Wendao):
    from corpus.pipeline import sample_queries_path

    queries = load_queries(sample_queries_path())[:24]
    local = evaluate(seed_service, queries, ["lexical", "dense", "hybrid"]).results
    milvus = evaluate(milvus_service, queries, ["lexical", "dense", "hybrid"]).results
    for mode in local:
        assert abs(milvus[mode]["mrr@10"] - local[mode]["mrr@10"]) <= 0.01, mode
        assert milvus[mode]["answer_hit"] == local[mode]["answer_hit"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_ingest_unchanged_replace_remove(backend: str, embedder, tmp_path: Path):
    spec = kb_spec(backend, tmp_path)
    source = tmp_path / "greening.txt"
    source.write_text(GREENING, encoding="utf-8")
    service = Wendao(kb_dir=spec, embedder=embedder)
    added = service.ingest([source])
    assert [(r.status, r.doc_id) for r in added.results] == [("added", "greening.txt")]
    assert (added.documents, added.chunks) == (1, added.results[0].chunks)
    hits, _ = service.search("绿地养护资金每年多少", k=3)
    assert hits[0].chunk.doc_id == "greening.txt" and "三千万元" in hits[0].chunk.text

    again = service.ingest([source])
    assert [r.status for r in again.results] == ["unchanged"]
    generation = service.store.generation()

    source.write_text(GREENING.replace("三千万元", "五千万元"), encoding="utf-8")
    updated = service.ingest([source])
    assert [r.status for r in updated.results] == ["updated"] and service.store.generation() != generation
    hits, _ = service.search("绿地养护资金每年多少", k=10)
    texts = [h.chunk.text for h in hits]
    assert any("五千万元" in t for t in texts) and not any("三千万元" in t for t in texts)
    assert updated.chunks == added.chunks  # the old version's chunks are gone

    rebuilt = service.reindex()
    assert [(r.status, r.doc_id) for r in rebuilt.results] == [("updated", "greening.txt")]
    assert (rebuilt.documents, rebuilt.chunks) == (1, added.chunks)
    assert "五千万元" in service.search("绿地养护资金每年多少", k=1)[0][0].chunk.text

    removed = service.remove(["greening.txt"])
    assert (removed.documents, removed.chunks) == (0, 0)
    assert service.search("绿地养护资金每年多少", k=3)[0] == []
    with pytest.raises(KnowledgeBaseError, match="no such document"):
        service.remove(["greening.txt"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_cli_on_both_backends_and_wendao_kb(backend: str, seed_kb_dir: Path, tmp_path: Path, monkeypatch):
    """`copy` moves the seed knowledge base without re-embedding; then docs, search, ask, remove
    and a bad `--queries` file behave the same through --kb and through WENDAO_KB."""
    runner = CliRunner()
    spec = kb_spec(backend, tmp_path)
    copied = runner.invoke(app, ["copy", spec, "--kb", str(seed_kb_dir)])
    assert copied.exit_code == 0, copied.output
    docs = runner.invoke(app, ["docs", "--json", "--kb", spec])
    assert [d["doc_id"] for d in json.loads(docs.stdout)] == [p.document.doc_id for p in Wendao(kb_dir=seed_kb_dir).documents()]
    monkeypatch.setenv("WENDAO_KB", spec)
    found = runner.invoke(app, ["search", "学分银行", "--json", "-k", "3"])
    assert found.exit_code == 0, found.output
    results = json.loads(found.stdout)["results"]
    assert results[0]["text"] and set(results[0]) >= {"rank", "chunk_id", "doc_id", "start", "end", "score", "scores", "matches"}
    asked = runner.invoke(app, ["ask", "崇州市职教中心2023年引进了多少名企业工程师？", "--json"])
    assert "58" in json.loads(asked.stdout)["answer"]
    bad = tmp_path / "q.jsonl"
    bad.write_text('{"id": 1}\n', encoding="utf-8")
    failed = runner.invoke(app, ["ask", "--queries", str(bad)])
    assert failed.exit_code == 2 and "q.jsonl:1" in failed.stderr and "Traceback" not in failed.output
    gone = runner.invoke(app, ["remove", results[0]["doc_id"]])
    assert gone.exit_code == 0
    missing = runner.invoke(app, ["remove", "no-such.txt"])
    assert missing.exit_code == 2 and "no such document" in missing.stderr


@pytest.mark.parametrize(
    "spec, message",
    [
        ("milvus://localhost/kb", "milvus://HOST:PORT/COLLECTION"),
        ("milvus://localhost:19530/", "milvus://HOST:PORT/COLLECTION"),
        ("milvus://localhost:19530/my-kb", "COLLECTION: letters, digits and _"),
        ("milvus-lite:kb.sqlite", "milvus-lite:PATH.db"),
        ("milvus-lite:a-knowledge-base-with-a-long-file-name.db", "at most 36 characters"),
        ("milvus://127.0.0.1:9/kb", "cannot reach the Milvus server at 127.0.0.1:9"),
    ],
)
def test_bad_milvus_locations_are_one_line_errors(spec: str, message: str):
    result = CliRunner().invoke(app, ["docs", "--kb", spec])
    assert result.exit_code == 2 and message in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output


def test_milvus_lite_file_open_in_another_process_is_a_clear_error(milvus_service: Wendao, milvus_seed: str):
    milvus_service.documents()  # this process holds the Lite file
    done = subprocess.run([WENDAO, "docs", "--kb", milvus_seed], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Milvus Lite lets one process open" in lines[0], done.stderr
    assert "Traceback" not in done.stderr


def test_model_mismatch_and_missing_collection(seed_kb_dir: Path, embedder, tmp_path: Path):
    spec = f"milvus-lite:{tmp_path / 'kb.db'}"
    Wendao(kb_dir=seed_kb_dir).copy_to(spec)
    other = Wendao(kb_dir=spec, model="BAAI/bge-small-zh-v1.5")
    with pytest.raises(KnowledgeBaseError, match="built with other settings.*model"):
        other.search("学分银行", mode="lexical")
    with pytest.raises(KnowledgeBaseError, match="built with other settings.*model"):
        other.ingest([Path(__file__)])  # refused before any model is loaded
    service = Wendao(kb_dir=spec, embedder=embedder)
    service.store.client.drop_collection("wendao_units")
    with pytest.raises(KnowledgeBaseError, match="wendao_units is missing") as error:
        service.search("学分银行")
    assert error.value.fix.action == "reindex"


def test_serve_answers_from_milvus_over_http(milvus_service: Wendao):
    """`wendao serve` on a Milvus knowledge base: the web app's /ask over real HTTP."""
    import threading
    import time

    import uvicorn
    from gradio_client import Client
    from ui_harness import free_port

    from ui.web.app import create_app

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(milvus_service), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        result = Client(f"http://127.0.0.1:{port}/", verbose=False).predict(QUESTIONS[0], api_name="/ask")
        expected = answer_json(milvus_service.ask(QUESTIONS[0]))
        assert result["answer"] == expected["answer"] and "58" in result["answer"]
        assert [c["doc_id"] for c in result["citations"]] == [c["doc_id"] for c in expected["citations"]]
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def test_milvus_writer_killed_midway_leaves_the_previous_version(embedder, tmp_path: Path, monkeypatch):
    """New passages are written before the document's record (the commit point); a write that
    dies in between leaves them unsearched, and the next writer removes them."""
    from index.milvus_store import MilvusWriter

    source = tmp_path / "greening.txt"
    source.write_text(GREENING, encoding="utf-8")
    spec = f"milvus-lite:{tmp_path / 'kb.db'}"
    service = Wendao(kb_dir=spec, embedder=embedder)
    first = service.ingest([source])
    source.write_text(GREENING.replace("三千万元", "五千万元"), encoding="utf-8")

    def killed(*args, **kwargs):
        raise RuntimeError("killed after writing the passages")

    with monkeypatch.context() as patch:
        patch.setattr(MilvusWriter, "_record_rows", killed)
        with pytest.raises(RuntimeError, match="killed"):
            service.ingest([source])
    store = service.store
    stored = store.client.query(store.chunks_name, filter="chunk_key > 0", output_fields=["count(*)"])[0]["count(*)"]
    assert stored == 2 * first.chunks  # the dead write's passages are there ...
    texts = [h.chunk.text for h in service.search("绿地养护资金每年多少", k=10)[0]]
    assert any("三千万元" in t for t in texts) and not any("五千万元" in t for t in texts)  # ... but not searched
    assert [(r.document.doc_id, r.chunks) for r in service.documents()] == [("greening.txt", first.chunks)]

    again = service.ingest([source])  # the next writer cleans up, then writes
    assert [r.status for r in again.results] == ["updated"] and again.chunks == first.chunks
    stored = store.client.query(store.chunks_name, filter="chunk_key > 0", output_fields=["count(*)"])[0]["count(*)"]
    assert stored == first.chunks
    assert "五千万元" in service.search("绿地养护资金每年多少", k=1)[0][0].chunk.text
