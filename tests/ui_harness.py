"""A real wendao web server on a free local port and a headless Chromium, for the UI tests.

One server per test session (model load and the seed knowledge base are the slow part), shared
by every UI test module; it serves a private copy of the seed knowledge base, so the tests may
add documents to it.
"""
from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "artifacts" / "ui"
CHROMIUM = Path(os.environ.get("WENDAO_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@dataclass
class RunningServer:
    url: str
    service: object  # qa.service.Wendao
    server: object  # uvicorn.Server
    thread: threading.Thread


_running: RunningServer | None = None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def shared_server(seed_kb_dir: Path, workdir: Path, embedder) -> RunningServer:
    """Start the app once (uvicorn in a thread) on a writable copy of the seed knowledge base."""
    global _running
    if _running is None:
        import uvicorn

        from qa.service import Wendao
        from ui.web.app import create_app

        kb = workdir / "kb"
        shutil.copytree(seed_kb_dir, kb, ignore=shutil.ignore_patterns("write.lock"))
        service = Wendao(kb_dir=kb, embedder=embedder)
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(create_app(service), host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, name="wendao-ui", daemon=True)
        thread.start()
        deadline = time.monotonic() + 60
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the wendao web server did not start")
            time.sleep(0.05)
        _running = RunningServer(f"http://127.0.0.1:{port}/", service, server, thread)
    return _running


def stop_server() -> None:
    global _running
    if _running is not None:
        _running.server.should_exit = True
        _running.thread.join(timeout=15)
        _running = None


def require_chromium() -> Path:
    """The system Chromium, else skip (or fail where WENDAO_REQUIRE_BROWSER=1, as in CI)."""
    if CHROMIUM.is_file():
        return CHROMIUM
    reason = f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium) to run the browser tests"
    if os.environ.get("WENDAO_REQUIRE_BROWSER") == "1":
        pytest.fail(reason + " (WENDAO_REQUIRE_BROWSER=1)")
    pytest.skip(reason)


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
