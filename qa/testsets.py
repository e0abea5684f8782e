"""Reading test sets: JSONL query files and BEIR folders, every row checked as it is read.

A malformed row fails with one line naming the file, the line and the field (``DataFileError``,
a ``WendaoError``), so ``wendao eval`` never ends in a ``KeyError`` deep inside an evaluation.

- JSONL query file: ``{"id", "question", "answers" | "relevant" | "off_topic"}`` per line.
- BEIR folder: ``corpus.jsonl`` (``_id``, ``text``, ``title``), ``queries.jsonl`` (``_id``,
  ``text``), ``qrels.tsv`` (query-id, corpus-id, integer score; optional header), and optionally
  ``answers.jsonl`` (``_id``, ``answers``, ``extractive``). Only queries with a positive qrel count.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from qa.jsonl import DataFileError, read_jsonl, read_lines

BEIR_FILES = ("corpus.jsonl", "queries.jsonl", "qrels.tsv")


@dataclass
class EvalQuery:
    id: str
    question: str
    answers: list[str] = field(default_factory=list)
    relevant: list[str] = field(default_factory=list)
    off_topic: bool = False
    by_documents: bool = False  # judge ranking by ``relevant`` ids even when answers are known


@dataclass(frozen=True)
class Passage:
    """One row of a BEIR corpus (its ``text`` may be empty: such a passage is skipped when indexed)."""

    id: str
    text: str
    title: str = ""


def load_queries(path: Path) -> list[EvalQuery]:
    """A JSONL query file; errors name the line and the field."""
    rows = []
    for number, row in read_jsonl(path):
        where = f"{path}:{number}"
        question = row.get("question")
        if not isinstance(question, str) or not question.strip():
            raise DataFileError(f'{where}: missing "question" text')
        answers, relevant = row.get("answers") or [], row.get("relevant") or []
        if not all(isinstance(v, list) and all(isinstance(x, str) for x in v) for v in (answers, relevant)):
            raise DataFileError(f'{where}: "answers" and "relevant" must be lists of strings')
        if not (answers or relevant or row.get("off_topic")):
            raise DataFileError(f'{where}: needs "answers", "relevant" or "off_topic": true')
        rows.append(EvalQuery(str(row.get("id", number)), question, answers, relevant, bool(row.get("off_topic"))))
    if not rows:
        raise DataFileError(f"{path}: no queries")
    return rows


def load_beir(folder: Path) -> tuple[list[Passage], list[EvalQuery]]:
    """The corpus and the judged queries of a BEIR folder (+ gold answers from answers.jsonl)."""
    folder = Path(folder)
    for name in BEIR_FILES:
        if not (folder / name).is_file():
            raise DataFileError(f"{folder}: not a BEIR folder (missing {name})")
    corpus = []
    path = folder / "corpus.jsonl"
    for number, row in read_jsonl(path):
        corpus.append(Passage(_id(path, number, row), _string(path, number, row, "text"), _title(path, number, row)))
    relevant = _read_qrels(folder / "qrels.tsv")
    answers = _read_answers(folder / "answers.jsonl") if (folder / "answers.jsonl").is_file() else {}
    queries = []
    path = folder / "queries.jsonl"
    for number, row in read_jsonl(path):
        query_id, text = _id(path, number, row), _string(path, number, row, "text", non_empty=True)
        if query_id in relevant:
            queries.append(EvalQuery(query_id, text, answers.get(query_id, []), relevant[query_id], by_documents=True))
    return corpus, queries


def _read_qrels(path: Path) -> dict[str, list[str]]:
    """Relevant corpus ids per query id (positive scores); a first line without a score is a header."""
    relevant: dict[str, list[str]] = {}
    for number, line in read_lines(path):
        fields = line.rstrip("\r\n").split("\t")
        if len(fields) < 3:
            raise DataFileError(f"{path}:{number}: expected 3 tab-separated columns (query-id, corpus-id, score), got {len(fields)}")
        try:
            score = int(fields[2])
        except ValueError:
            if number == 1:
                continue  # header
            raise DataFileError(f'{path}:{number}: column "score" must be an integer, got {fields[2]!r}') from None
        if not fields[0] or not fields[1]:
            raise DataFileError(f'{path}:{number}: empty {"query-id" if not fields[0] else "corpus-id"}')
        if score > 0:
            relevant.setdefault(fields[0], []).append(fields[1])
    return relevant


def _read_answers(path: Path) -> dict[str, list[str]]:
    """Gold answer strings per query id, for the extractive ones only."""
    answers: dict[str, list[str]] = {}
    for number, row in read_jsonl(path):
        query_id, values = _id(path, number, row), row.get("answers")
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise DataFileError(f'{path}:{number}: field "answers" must be a list of strings')
        if row.get("extractive", True):
            answers[query_id] = values
    return answers


def _id(path: Path, number: int, row: dict) -> str:
    value = row.get("_id")
    if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip():
        raise DataFileError(f'{path}:{number}: {_problem(row, "_id", "a non-empty string")}')
    return str(value)


def _string(path: Path, number: int, row: dict, name: str, non_empty: bool = False) -> str:
    value = row.get(name)
    if not isinstance(value, str) or (non_empty and not value.strip()):
        raise DataFileError(f"{path}:{number}: {_problem(row, name, 'non-empty text' if non_empty else 'a string')}")
    return value


def _title(path: Path, number: int, row: dict) -> str:
    value = row.get("title")
    if value is not None and not isinstance(value, str):
        raise DataFileError(f"{path}:{number}: {_problem(row, 'title', 'a string')}")
    return value or ""


def _problem(row: dict, name: str, wanted: str) -> str:
    if name not in row:
        return f'missing field "{name}"'
    value = row[name]
    got = repr(value) if isinstance(value, str) else type(value).__name__
    return f'field "{name}" must be {wanted}, got {got}'
