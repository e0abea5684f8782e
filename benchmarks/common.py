"""What the benchmarks share: the repository on ``sys.path``, where the evaluation sets are, a
set's service over its cached knowledge base, timing, and output (JSON first, then a table).

A benchmark runs as ``python benchmarks/NAME.py``, so this folder is on ``sys.path``: it imports
``common`` before the library, and ``common`` puts the repository there. Library modules are
imported inside the functions, so a benchmark that measures load time and memory (``embed.py``)
pays for nothing it does not use.
"""
from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

EVALDATA = REPO.parent / "shared" / "evaldata"  # the shared BEIR sets (read-only, optional)
SEEDS = "seeds"  # the bundled documents and their sample questions

if TYPE_CHECKING:
    from corpus.chunking import ChunkSettings
    from index.embedder import Embedder
    from qa.service import Wendao
    from qa.testsets import EvalQuery

T = TypeVar("T")


# -- evaluation sets -----------------------------------------------------------------------
def set_path(name: str) -> Path:
    """The bundled sample-question file for ``seeds``, else the BEIR folder ``name`` (e.g. ``drcd/dev``)."""
    if name == SEEDS:
        from corpus.pipeline import sample_queries_path

        return sample_queries_path()
    return EVALDATA / name


def present(names: str | Iterable[str]) -> list[str]:
    """The sets (comma-separated or a list) whose data is here; the others are reported as skipped."""
    names = names.split(",") if isinstance(names, str) else list(names)
    found = []
    for name in names:
        if name == SEEDS or set_path(name).is_dir():
            found.append(name)
        else:
            print(f"skipping {name}: {set_path(name)} not present", file=sys.stderr)
    return found


def open_set(
    name: str,
    kb_dir: Path | None = None,
    embedder: Embedder | None = None,
    chunking: ChunkSettings | None = None,
) -> tuple[Wendao, list[EvalQuery]]:
    """A set's questions and a service over its knowledge base, built if missing: by default the
    cached one ``wendao eval`` uses (the bundled documents' for ``seeds``), else ``kb_dir``."""
    from qa.evaluate import open_test_set, seeds_kb_dir

    if name == SEEDS:
        kb_dir = kb_dir or seeds_kb_dir()
    service, queries = open_test_set(set_path(name), kb_dir=kb_dir, chunking=chunking, embedder=embedder)
    if name == SEEDS:
        service.ensure_built()  # a BEIR set's corpus is indexed by open_test_set
    return service, queries


def simplified(queries: list[EvalQuery]) -> list[EvalQuery]:
    """The questions converted to Simplified (DRCD's Traditional questions, asked cross-script)."""
    from dataclasses import replace

    import opencc

    converter = opencc.OpenCC("t2s")
    return [replace(q, question=converter.convert(q.question)) for q in queries]


# -- timing --------------------------------------------------------------------------------
def timed(work: Callable[[], T]) -> tuple[T, float]:
    """The result of ``work()`` and the seconds it took."""
    started = time.perf_counter()
    result = work()
    return result, time.perf_counter() - started


def median_p95(values: Sequence[float], digits: int = 3) -> dict[str, float]:
    import numpy as np

    return {"median": round(statistics.median(values), digits), "p95": round(float(np.percentile(values, 95)), digits)}


# -- output --------------------------------------------------------------------------------
def print_json(results: Any) -> None:
    """The machine-readable figures, printed before any table."""
    print(json.dumps(results, ensure_ascii=False, indent=1))


def cell(value: float | None, spec: str = ".3f") -> str:
    return "—" if value is None else format(value, spec)


def print_markdown(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """A Markdown table (after a blank line), as pasted into the README."""
    print("\n| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")
