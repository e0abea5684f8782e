"""A run and its gold as TREC files, so trec_eval, ranx or pytrec_eval can re-score them.

- run: ``qid Q0 unit rank score tag``, every mode in one file, the tag naming the mode;
- qrels: ``qid 0 unit 1``, the units the metrics judged relevant (chunk ids for gold answer
  strings, document ids for document gold), exactly as ``wendao eval`` judged them.

The score column is the one wendao hands ranx (``qa.evaluate.ranking``: strictly decreasing with
the rank), so a tool that sorts by score sees wendao's order even where two retrieval scores tie;
the retrieval scores themselves are kept in the saved run. Ids are whitespace-separated columns:
whitespace and ``%`` inside an id are percent-encoded (``qa.testsets.read_qrels`` decodes them).
"""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

if TYPE_CHECKING:
    from qa.evaluate import EvalRun

_UNSAFE = re.compile(r"[\s%]")


def trec_id(value: str) -> str:
    """An id as one TREC column (percent-encoding whitespace and ``%``)."""
    return _UNSAFE.sub(lambda match: quote(match.group(), safe=""), value)


def run_lines(run: EvalRun) -> list[str]:
    lines = []
    for mode in run.modes:
        for query_id in run.gold:
            for rank, (unit, score) in enumerate(run.units(mode, query_id).items(), 1):
                lines.append(f"{trec_id(query_id)} Q0 {trec_id(unit)} {rank} {score:g} {mode}\n")
    return lines


def qrels_lines(run: EvalRun) -> list[str]:
    return [
        f"{trec_id(query_id)} 0 {trec_id(unit)} {grade}\n"
        for query_id, units in run.gold.items()
        for unit, grade in units.items()
    ]


def write_lines(path: Path, lines: list[str]) -> None:
    """Write a whole file or nothing: a temporary file beside it, flushed, then renamed over it."""
    path = Path(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(temporary, 0o666 & ~_umask())  # as an ordinary new file (mkstemp makes it private)
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.writelines(lines)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_run(run: EvalRun, path: Path) -> None:
    write_lines(path, run_lines(run))


def write_qrels(run: EvalRun, path: Path) -> None:
    write_lines(path, qrels_lines(run))
