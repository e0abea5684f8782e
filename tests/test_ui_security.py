"""Hostile requests to the served web app over real HTTP: files the client never uploaded,
unsafe zip archives, the schema route and bad ``k``.

A crafted client talks to Gradio's queue API directly (``/gradio_api/queue/join`` with the
``fn_index`` of a hidden event) the way an attacker would, instead of going through the page.
"""
from __future__ import annotations

import json
import os
import tempfile
import uuid
import zipfile
from pathlib import Path

import httpx
import pytest
import ui_harness

from ui.web import uploads

pytestmark = pytest.mark.slow

TIMEOUT = 300


@pytest.fixture(scope="session")
def server(seed_kb_dir, embedder, tmp_path_factory):
    yield ui_harness.shared_server(seed_kb_dir, tmp_path_factory.mktemp("ui-server"), embedder)
    ui_harness.stop_server()


# -- a crafted client ----------------------------------------------------------------------------
def run_event(url: str, elem_id: str, data: list) -> dict:
    """Trigger the event of the button ``elem_id`` with raw ``data``; the final queue message."""
    config = httpx.get(url + "config", timeout=TIMEOUT).json()
    button = next(c["id"] for c in config["components"] if c.get("props", {}).get("elem_id") == elem_id)
    dependency = next(d for d in config["dependencies"] if any(t[0] == button for t in d["targets"]))
    session = uuid.uuid4().hex
    joined = httpx.post(
        url + "gradio_api/queue/join",
        json={"data": data, "fn_index": dependency["id"], "session_hash": session, "event_data": None, "trigger_id": button},
        timeout=TIMEOUT,
    )
    assert joined.status_code == 200, joined.text
    with httpx.stream("GET", url + "gradio_api/queue/data", params={"session_hash": session}, timeout=TIMEOUT) as stream:
        for line in stream.iter_lines():
            if line.startswith("data:"):
                message = json.loads(line[5:])
                if message.get("msg") == "process_completed":
                    return message
    raise AssertionError(f"no result for the {elem_id} event")


def file_data(path: str | Path) -> dict:
    return {"path": str(path), "orig_name": Path(path).name, "meta": {"_type": "gradio.FileData"}}


def upload(url: str, path: Path) -> str:
    """Send a file through Gradio's own upload route, as the page does; the server-side path."""
    with path.open("rb") as handle:
        response = httpx.post(url + "gradio_api/upload", files=[("files", (path.name, handle))], timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    return response.json()[0]


def ingest(url: str, paths: list[str | Path]) -> dict:
    return run_event(url, "wd-ingest", [[file_data(p) for p in paths]])


def evaluate(url: str, path: str | Path) -> dict:
    return run_event(url, "wd-eval-run", ["upload", file_data(path), ["lexical"], ""])  # "": not saved


def shown(message: dict) -> str:
    """What the user is shown: the error, or the event's first output (the result HTML)."""
    if not message["success"]:
        return message["output"]["error"]
    return message["output"]["data"][0]


def refused(message: dict) -> bool:
    """Refused before anything was read: Gradio's own check failed the event, or ours answered."""
    return not message["success"] or uploads.REFUSED in message["output"]["data"][0]


def searchable(url: str, text: str) -> bool:
    from gradio_client import Client

    found = Client(url, verbose=False).predict(text, "lexical", 50, None, api_name="/search")
    return any(text in hit["text"] for hit in found["results"])


def secret_file(folder: Path) -> tuple[Path, str]:
    token = f"机密口令{uuid.uuid4().hex[:12]}"
    path = folder / f"secret-{uuid.uuid4().hex[:8]}.txt"
    path.write_text(f"服务器上的私人笔记。{token}。\n", encoding="utf-8")
    return path, token


def upload_folder() -> Path:
    from gradio.utils import get_upload_folder

    return Path(get_upload_folder())


def copies_in_upload_folder(name: str) -> list[Path]:
    return list(upload_folder().rglob(name))


# -- files the client did not upload ------------------------------------------------------------
def assert_nothing_ingested(server, before: dict, secret: Path, token: str) -> None:
    assert set(server.service.snapshot().documents) == set(before)
    assert not searchable(server.url, token)
    viewer = httpx.get(server.url + "wendao/source", params={"doc": secret.name}, timeout=TIMEOUT)
    assert viewer.status_code == 404 and token not in viewer.text
    assert not copies_in_upload_folder(secret.name), "the server file was copied into Gradio's cache"


def test_ingest_refuses_any_server_file_named_by_the_client(server, tmp_path):
    secret, token = secret_file(tmp_path)
    before = dict(server.service.snapshot().documents)
    message = ingest(server.url, [secret])
    assert refused(message), shown(message)
    assert token not in json.dumps(message, ensure_ascii=False)
    assert_nothing_ingested(server, before, secret, token)


def test_ingest_refuses_a_path_that_climbs_out_of_the_upload_folder(server, tmp_path):
    secret, token = secret_file(tmp_path)
    before = dict(server.service.snapshot().documents)
    climbing = os.path.join(upload_folder(), "..", os.path.relpath(secret, upload_folder().parent))
    assert os.path.realpath(climbing) == str(secret.resolve())
    message = ingest(server.url, [climbing])
    assert refused(message), shown(message)
    assert_nothing_ingested(server, before, secret, token)


def test_one_foreign_path_refuses_the_whole_batch(server, tmp_path):
    good = tmp_path / f"good-{uuid.uuid4().hex[:8]}.txt"
    good.write_text("这份文件是真正上传的。\n", encoding="utf-8")
    secret, token = secret_file(tmp_path)
    before = dict(server.service.snapshot().documents)
    message = ingest(server.url, [upload(server.url, good), secret])
    assert refused(message), shown(message)
    assert_nothing_ingested(server, before, secret, token)
    assert good.name not in server.service.snapshot().documents


def test_files_in_the_upload_folder_that_were_not_uploaded_are_refused(server, tmp_path):
    """Gradio keeps its own temporary files there; only what its /upload route received counts."""
    secret, token = secret_file(tmp_path)
    planted = upload_folder() / uuid.uuid4().hex / f"planted-{uuid.uuid4().hex[:8]}.txt"
    planted.parent.mkdir(parents=True)
    planted.write_text(f"不是上传的文件。{token}。\n", encoding="utf-8")
    link = planted.parent / f"link-{uuid.uuid4().hex[:8]}.txt"
    link.symlink_to(secret)
    before = dict(server.service.snapshot().documents)
    try:
        answers = {name: ingest(server.url, [path]) for name, path in (("planted", planted), ("link", link))}
        answers["missing"] = ingest(server.url, [planted.with_name("missing.txt")])
        for name, message in answers.items():
            assert refused(message), (name, shown(message))
        assert shown(answers["planted"]) == shown(answers["missing"])  # existence is not revealed
        assert set(server.service.snapshot().documents) == set(before)
        assert not searchable(server.url, token)
    finally:
        link.unlink()
        planted.unlink()
        planted.parent.rmdir()


def test_refusal_does_not_tell_whether_the_path_exists(server, tmp_path):
    """The same path as a file, as nothing and as a folder: one identical answer."""
    path = tmp_path / "probe.txt"
    path.write_text("存在的文件。\n", encoding="utf-8")
    as_file = ingest(server.url, [path])
    path.unlink()
    as_nothing = ingest(server.url, [path])
    path.mkdir()
    as_folder = ingest(server.url, [path])
    assert refused(as_file) and refused(as_nothing) and refused(as_folder), shown(as_file)
    assert shown(as_file) == shown(as_nothing) == shown(as_folder)


def test_evaluation_refuses_a_server_query_file(server, tmp_path):
    queries = tmp_path / "queries.jsonl"
    queries.write_text(json.dumps({"id": "a", "question": "私人问题", "answers": ["x"]}, ensure_ascii=False) + "\n")
    message = evaluate(server.url, queries)
    assert refused(message), shown(message)
    assert "私人问题" not in json.dumps(message, ensure_ascii=False)


def test_an_uploaded_file_is_ingested_and_searchable(server, tmp_path):
    token = f"紫藤花开了{uuid.uuid4().int % 100000}朵"
    document = tmp_path / f"uploaded-{uuid.uuid4().hex[:8]}.txt"
    document.write_text(f"上传测试文档\n\n今年校园里{token}，师生都去观赏。\n", encoding="utf-8")
    message = ingest(server.url, [upload(server.url, document)])
    assert message["success"] and 'class="wd-status-added"' in shown(message), shown(message)
    assert document.name in server.service.snapshot().documents
    assert searchable(server.url, token)


# -- zipped BEIR folders ------------------------------------------------------------------------
def write_zip(path: Path, entries: list[tuple[zipfile.ZipInfo | str, str]]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for info, text in entries:
            archive.writestr(info, text)
    return path


def symlink_entry(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = (0o120777 << 16)  # S_IFLNK: a symbolic link
    return info


def bomb(path: Path) -> Path:
    """One entry of zeros that unpacks past the limit (~0.3 MB compressed)."""
    from ui.web.evaluate import ZIP_MAX_BYTES

    block = b"\0" * (1 << 20)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("set/corpus.jsonl", "w", force_zip64=True) as entry:
            for _ in range(ZIP_MAX_BYTES // len(block) + 1):
                entry.write(block)
        archive.writestr("set/queries.jsonl", "")
        archive.writestr("set/qrels.tsv", "")
    return path


def scratch_folders() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("wendao-beir-*"))


@pytest.mark.parametrize("case", ["climbs", "absolute", "symlink", "bomb", "many"])
def test_unsafe_zip_is_refused_and_nothing_is_left_behind(server, tmp_path, case):
    from ui.web.evaluate import ZIP_MAX_ENTRIES

    tag = uuid.uuid4().hex[:8]
    outside = Path(tempfile.gettempdir()) / f"evil-{tag}.txt"
    absolute = tmp_path / f"absolute-{tag}.txt"
    beir = [("set/corpus.jsonl", '{"_id": "d1", "text": "文本"}'), ("set/queries.jsonl", ""), ("set/qrels.tsv", "")]
    archive = tmp_path / f"{case}-{tag}.zip"
    if case == "climbs":
        write_zip(archive, [*beir, (f"../../evil-{tag}.txt", "evil")])
    elif case == "absolute":
        write_zip(archive, [*beir, (str(absolute), "evil")])
    elif case == "symlink":
        write_zip(archive, [*beir, (symlink_entry("set/answers.jsonl"), "/etc/passwd")])
    elif case == "bomb":
        bomb(archive)
    else:
        write_zip(archive, [*beir, *((f"set/extra/{n}.txt", "") for n in range(ZIP_MAX_ENTRIES))])
    expected = {"climbs": "不安全", "absolute": "不安全", "symlink": "符号链接", "bomb": "过大", "many": "过多"}[case]
    folders = scratch_folders()

    message = evaluate(server.url, upload(server.url, archive))
    assert message["success"], shown(message)
    status = shown(message)
    assert "wd-error" in status and archive.name in status and expected in status, status
    assert not message["output"]["data"][1]["data"]  # no metrics
    assert not outside.exists() and not absolute.exists()
    assert scratch_folders() <= folders, "the unpacked folder was left behind"


# -- routes and API arguments -------------------------------------------------------------------
def test_no_schema_or_docs_routes_but_the_api_page_works(server):
    for route in ("openapi.json", "docs", "redoc"):
        assert httpx.get(server.url + route, timeout=TIMEOUT).status_code == 404, route
    info = httpx.get(server.url + "gradio_api/info", timeout=TIMEOUT)
    assert info.status_code == 200 and {"/ask", "/search"} <= set(info.json()["named_endpoints"])
    assert httpx.get(server.url, params={"view": "api"}, timeout=TIMEOUT).status_code == 200


@pytest.mark.parametrize("k", [-3, 0, 10**9, 2.5])
def test_search_api_refuses_a_bad_k(server, k):
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="k must be a whole number"):
        Client(server.url, verbose=False).predict("双师型教师", "lexical", k, None, api_name="/search")
