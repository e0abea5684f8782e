"""Imports point down the flow only: corpus → index → qa → ui.

A package may import its own modules and the packages before it, never one after it: the
command line and the web app are interfaces on top (``ui``), so nothing below may name them.
Parsed from the source, so it also catches imports inside functions.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FLOW = ["corpus", "index", "qa", "ui"]


def imported_packages(path: Path, package: str) -> set[tuple[str, int]]:
    """(top-level project package, line) for every import in a file of ``package``, relative ones resolved."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [package] if node.level else [node.module or ""]
        else:
            continue
        found |= {(name.split(".")[0], node.lineno) for name in names if name.split(".")[0] in FLOW}
    return found


@pytest.mark.parametrize("package", FLOW)
def test_imports_point_down_the_flow(package: str):
    allowed = set(FLOW[: FLOW.index(package) + 1])
    wrong = [
        f"{path.relative_to(ROOT)}:{line} imports {target}"
        for path in sorted((ROOT / package).rglob("*.py"))
        for target, line in imported_packages(path, package)
        if target not in allowed
    ]
    assert not wrong, f"{package} may import only {sorted(allowed)}:\n" + "\n".join(wrong)


def test_the_check_sees_an_upward_import(tmp_path: Path):
    """The rule must be able to fail: an upward import in a file under corpus/ is reported."""
    probe = tmp_path / "probe.py"
    probe.write_text("from . import folding\n\ndef f():\n    from ui.app import create_app\n", encoding="utf-8")
    assert imported_packages(probe, "corpus") == {("corpus", 1), ("ui", 4)}
