"""Saved evaluation runs: stored with the knowledge base they ran on, listed, loaded by name.

A run is kept whole (every question's ranking, answer and citations per mode, the gold, the
knowledge base's generation and settings, the metrics) as gzipped JSON in ``workbench.db``, so a
comparison months later needs neither the test set nor the model. The runs of test sets that
have their own cached knowledge base (BEIR folders) live with that one; ``catalogue`` lists
them together with the named knowledge base's, so a chunk-size-300 run can be compared with a
chunk-size-500 one.
"""
from __future__ import annotations

import gzip
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from qa.evaluate import EvalRun, QuestionResult, Ranked, eval_cache
from qa.testsets import EvalQuery, JudgedPassage
from index.backend import kb_location
from qa.workbench_db import WorkbenchError, connect, location_name, workbench_folder

NAME = re.compile(r"^[\w.+-]{1,64}$")  # letters (any script), digits, _ . + -


@dataclass
class RunSummary:
    name: str
    kb: str
    created: str
    test_set: str
    generation: str
    chunk_size: int | None
    modes: list[str]
    queries: int
    metrics: dict[str, dict[str, float | None]]

    @property
    def reference(self) -> str:
        """How to name this run unambiguously: ``NAME@KB``."""
        return f"{self.name}@{self.kb}"

    def to_json(self) -> dict:
        return asdict(self)


# -- (de)serialising ---------------------------------------------------------------------------
def run_to_json(run: EvalRun) -> dict:
    return {
        "queries": [asdict(q) for q in run.queries],
        "gold": run.gold,
        "results": {
            mode: {
                qid: {**asdict(result), "ranked": [[r.chunk_id, r.doc_id, r.score] for r in result.ranked]}
                for qid, result in results.items()
            }
            for mode, results in run.results.items()
        },
        "metrics": run.metrics,
        "kb": run.kb,
        "generation": run.generation,
        "settings": run.settings,
        "test_set": run.test_set,
        "created": run.created,
    }


def run_from_json(data: dict) -> EvalRun:
    queries = [
        EvalQuery(**{**q, "passages": [JudgedPassage(**p) for p in q.get("passages", [])]}) for q in data["queries"]
    ]
    results = {
        mode: {
            qid: QuestionResult(**{**result, "ranked": [Ranked(*r) for r in result["ranked"]]})
            for qid, result in rows.items()
        }
        for mode, rows in data["results"].items()
    }
    return EvalRun(queries, data["gold"], results, data["metrics"], data["kb"], data["generation"],
                   data["settings"], data["test_set"], data["created"])


def _summary(name: str, run: EvalRun) -> dict:
    return {
        "test_set": run.test_set, "generation": run.generation, "chunk_size": run.settings.get("chunk_size"),
        "modes": run.modes, "queries": len(run.queries), "metrics": run.metrics,
    }


# -- storing ------------------------------------------------------------------------------------
def check_name(name: str) -> str:
    if not NAME.match(name or ""):
        raise WorkbenchError(f"run name {name!r}: use 1–64 letters, digits, '_', '.', '+' or '-'")
    return name


def check_free(kb_dir: Path, name: str) -> None:
    """Refuse a taken name before an evaluation is run, not after."""
    check_name(name)
    if any(s.name == name for s in list_runs(kb_dir)):
        raise WorkbenchError(f"{kb_dir}: a run named {name!r} is already saved (pick another name, or delete it first)")


def save_run(kb_dir: Path, name: str, run: EvalRun, replace: bool = False) -> None:
    """Store ``run`` as ``name`` in one transaction; an existing name is refused unless ``replace``."""
    check_name(name)
    body = gzip.compress(json.dumps(run_to_json(run), ensure_ascii=False).encode("utf-8"), compresslevel=6)
    with connect(kb_dir, write=True) as db:
        if not replace and db.execute("SELECT 1 FROM runs WHERE name = ?", (name,)).fetchone():
            raise WorkbenchError(f"{kb_dir}: a run named {name!r} is already saved (pick another name, or delete it first)")
        db.execute("INSERT OR REPLACE INTO runs(name, created, summary, body) VALUES (?, ?, ?, ?)",
                   (name, run.created, json.dumps(_summary(name, run), ensure_ascii=False), body))


def delete_run(kb_dir: Path, name: str) -> None:
    with connect(kb_dir, write=True) as db:
        if db.execute("DELETE FROM runs WHERE name = ?", (name,)).rowcount == 0:
            raise WorkbenchError(f"{kb_dir}: no saved run named {name!r}")


def list_runs(kb_dir: Path) -> list[RunSummary]:
    with connect(kb_dir) as db:
        rows = db.execute("SELECT name, created, summary FROM runs ORDER BY created, name").fetchall() if db else []
    return [RunSummary(name, location_name(kb_dir), created, **json.loads(summary)) for name, created, summary in rows]


def load_run(kb_dir: Path, name: str) -> EvalRun:
    with connect(kb_dir) as db:
        row = db.execute("SELECT body FROM runs WHERE name = ?", (name,)).fetchone() if db else None
    if row is None:
        raise WorkbenchError(f"{kb_dir}: no saved run named {name!r}")
    return run_from_json(json.loads(gzip.decompress(row[0])))


# -- finding ------------------------------------------------------------------------------------
def catalogue(kb_dir: Path) -> list[RunSummary]:
    """The runs of ``kb_dir`` and of the test sets' cached knowledge bases, oldest first."""
    folders: list = [kb_dir]
    cache = eval_cache()
    if cache.is_dir():
        folders += sorted(p for p in cache.iterdir() if p.is_dir() and p.resolve() != workbench_folder(kb_dir).resolve())
    return sorted((s for folder in folders for s in list_runs(folder)), key=lambda s: (s.created, s.name))


def find_run(reference: str, kb_dir: Path) -> EvalRun:
    """A run by ``NAME`` (looked up in the ``catalogue``) or ``NAME@KB_FOLDER``."""
    name, _, folder = reference.partition("@")
    if folder:
        return load_run(kb_location(folder), name)
    matches = [s for s in catalogue(kb_dir) if s.name == name]
    if not matches:
        known = ", ".join(sorted({s.name for s in catalogue(kb_dir)})) or "none saved yet"
        raise WorkbenchError(f"no saved run named {name!r} (saved runs: {known})")
    if len(matches) > 1:
        raise WorkbenchError(f"run name {name!r} is saved in several knowledge bases; name one: "
                             + ", ".join(s.reference for s in matches))
    return load_run(kb_location(matches[0].kb), name)
