"""Hostile and careless inputs from issue 8: a broken HTML backend, deep and looping folders,
link loops named directly, bad ``k``, a Latin-1 query file, and the README/CI set-up contract.

Each bad input is one clear line naming the file or field; the rest of the batch goes on.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from sample_texts import GREENING

from corpus.loaders import MAX_FOLDER_DEPTH, scan_path
from index.ingest import discover
from qa.retrieve import MAX_K, QueryError
from qa.service import Wendao

ROOT = Path(__file__).resolve().parents[1]
WENDAO = str(Path(sys.executable).with_name("wendao"))


def cli(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "WENDAO_KB"}
    return subprocess.run([WENDAO, *args], capture_output=True, text=True, timeout=600, env=env)


def test_ci_runs_the_readme_setup_commands_verbatim_and_nothing_else():
    """An extra step in .ci/run (upgrading pip) once hid an install that broke HTML."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"## Set up.*?```bash\n(.*?)```", readme, re.S)
    assert block, "README has no set-up block"
    commands = [line for line in block.group(1).splitlines() if line.strip()]
    assert len(commands) == 2
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    ci_lines = [line.strip() for line in ci.splitlines()]
    for command in commands:
        assert command.strip() in ci_lines, f".ci/run does not run the README command: {command}"
    python_steps = [line for line in ci_lines if re.search(r"\b(pip|python3?|\.venv/bin/\S+)\b", line) and not line.startswith("#")]
    assert sorted(python_steps) == sorted(c.strip() for c in commands), f"extra steps in .ci/run: {python_steps}"


def test_html_backend_imports_in_this_install():
    """The README's install must bring trafilatura's lxml.html.clean (a new venv's pip skips extras)."""
    import lxml_html_clean  # noqa: F401
    import trafilatura  # noqa: F401


def test_missing_html_backend_fails_that_file_not_the_batch(seed_kb_copy: Path, embedder, tmp_path: Path, monkeypatch):
    page = tmp_path / "page.html"
    page.write_text("<html><body><h1>标题</h1><p>正文内容。</p></body></html>", encoding="utf-8")
    note = tmp_path / "greening.txt"
    note.write_text(GREENING, encoding="utf-8")
    monkeypatch.setitem(sys.modules, "trafilatura", None)  # import now raises ImportError
    report = Wendao(kb_dir=seed_kb_copy, embedder=embedder).ingest([page, note])
    status = {Path(r.source).name: r for r in report.results}
    assert status["greening.txt"].status == "added"
    assert status["page.html"].status == "failed"
    assert "trafilatura" in status["page.html"].reason and "\n" not in status["page.html"].reason


def _nest(base: Path, depth: int) -> Path:
    """A folder ``depth`` levels below ``base``, made without recursion (os.makedirs recurses)."""
    here = base
    for _ in range(depth):
        here = here / "d"
        here.mkdir()
    return here


def _remove_deep(root: Path) -> None:
    """Delete a deep tree bottom-up without recursion (shutil.rmtree, os.walk and so pytest's
    own clean-up of old tmp folders recurse once per level and fail on it)."""
    chain = [root]
    while True:  # each level holds at most one folder, "d"
        below = [p for p in chain[-1].iterdir() if p.is_dir()]
        if not below:
            break
        chain.append(below[0])
    for folder in reversed(chain):
        for path in folder.iterdir():
            if path.is_dir():
                path.rmdir()
            else:
                path.unlink()
    root.rmdir()


@pytest.fixture
def deep_root(tmp_path: Path):
    root = tmp_path / "deep"
    root.mkdir()
    yield root
    _remove_deep(root)


def test_folder_nested_a_thousand_deep_is_walked_and_the_excess_reported(deep_root: Path):
    root = deep_root
    (root / "top.txt").write_text("浅层文件", encoding="utf-8")
    (_nest(root, 10) / "mid.txt").write_text("中层文件", encoding="utf-8")
    (_nest(root / "d" / "d" / "d" / "d" / "d" / "d" / "d" / "d" / "d" / "d", 990) / "bottom.txt").write_text("深", encoding="utf-8")
    files, problems = discover([root])
    assert sorted(doc_id.split("/")[-1] for _, doc_id in files) == ["mid.txt", "top.txt"]
    assert len(problems) == 1 and f"deeper than {MAX_FOLDER_DEPTH}" in problems[0].reason


def test_link_loops_inside_a_folder_are_skipped_and_reported(tmp_path: Path):
    root = tmp_path / "docs"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.md").write_text("甲", encoding="utf-8")
    (root / "sub" / "up").symlink_to("..")
    (root / "twin").symlink_to("sub")  # a second way to the same folder is not a loop
    scan = scan_path(root)
    assert sorted(f.relative_to(root).as_posix() for f in scan.files) == ["sub/a.md", "twin/a.md"]
    assert [Path(e.source).name for e in scan.skipped] == ["up", "up"]
    assert all("loop" in e.reason for e in scan.skipped)


def test_link_loop_named_directly_says_loop_not_missing(tmp_path: Path):
    loop = tmp_path / "loop.txt"
    loop.symlink_to(loop.name)
    files, problems = discover([loop])
    assert files == [] and len(problems) == 1
    assert "link loop" in problems[0].reason and "no such file" not in problems[0].reason
    dangling = tmp_path / "gone.txt"
    dangling.symlink_to("nowhere.txt")
    _, problems = discover([dangling])
    assert "broken symbolic link" in problems[0].reason


@pytest.mark.parametrize("k", [0, -3, -5, MAX_K + 1, 2.5, "3", True])
def test_k_outside_1_to_max_is_refused(seed_service: Wendao, k):
    with pytest.raises(QueryError, match="k must be"):
        seed_service.search("双师型教师", mode="lexical", k=k)


def test_negative_k_on_the_command_line(seed_kb_dir: Path):
    done = cli("search", "双师型教师", "-k", "-5", "--kb", str(seed_kb_dir))
    assert done.returncode == 2
    assert "-k" in done.stderr and "Traceback" not in done.stderr


def test_latin1_query_file_names_the_file_and_line(seed_kb_dir: Path, tmp_path: Path):
    queries = tmp_path / "questions.jsonl"
    queries.write_bytes('{"id": 1, "question": "双师型"}\n{"id": 2, "question": "café"}\n'.encode("latin-1", "replace").replace(b"?", b"x"))
    done = cli("ask", "--queries", str(queries), "--kb", str(seed_kb_dir))
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in done.stderr
    assert f"{queries}:2" in lines[0]
    assert "UTF-8" in lines[0]
