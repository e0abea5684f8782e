"""Reading test sets: JSONL query files and BEIR folders, every row checked as it is read.

A malformed row fails with one line naming the file, the line and the field (``DataFileError``,
a ``WendaoError``), so ``wendao eval`` never ends in a ``KeyError`` deep inside an evaluation.

- JSONL query file: ``{"id", "question", "answers" | "relevant" | "passages" | "off_topic"}`` per
  line (``passages``: judged passages ``{"doc_id", "start", "end"}``, as judgments export them).
- BEIR folder: ``corpus.jsonl`` (``_id``, ``text``, ``title``), ``queries.jsonl`` (``_id``,
  ``text``), ``qrels.tsv`` or BEIR's own ``qrels/test.tsv`` (query-id, corpus-id, integer score;
  optional header), and optionally ``answers.jsonl`` (``_id``, ``answers``, ``extractive``). Only
  queries with a positive qrel count.
- TREC qrels (``query-id 0 unit-id relevance``, whitespace-separated), the gold of a query file
  (``wendao eval FILE --qrels QRELS``); a BEIR TSV qrels file is read there too.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from urllib.parse import unquote

from qa.jsonl import DataFileError, read_jsonl, read_lines

BEIR_FILES = ("corpus.jsonl", "queries.jsonl")
BEIR_QRELS = ("qrels.tsv", "qrels/test.tsv", "qrels/dev.tsv")  # the shared sets' layout, then BEIR's own


@dataclass(frozen=True)
class JudgedPassage:
    """A span of a document judged relevant to a question (offsets into the document text)."""

    doc_id: str
    start: int
    end: int


@dataclass
class EvalQuery:
    id: str
    question: str
    answers: list[str] = field(default_factory=list)
    relevant: list[str] = field(default_factory=list)
    off_topic: bool = False
    by_documents: bool = False  # judge ranking by ``relevant`` ids even when answers are known
    relevant_chunks: list[str] = field(default_factory=list)  # chunk ids (TREC qrels as wendao writes them)
    passages: list[JudgedPassage] = field(default_factory=list)  # judged in use (see qa.judgments)


@dataclass(frozen=True)
class Passage:
    """One row of a BEIR corpus (its ``text`` may be empty: such a passage is skipped when indexed)."""

    id: str
    text: str
    title: str = ""


def load_queries(path: Path, gold_required: bool = True) -> list[EvalQuery]:
    """A JSONL query file; errors name the line and the field. Without ``gold_required`` the gold
    comes from elsewhere (a qrels file)."""
    rows = []
    for number, row in read_jsonl(path):
        where = f"{path}:{number}"
        question = row.get("question")
        if not isinstance(question, str) or not question.strip():
            raise DataFileError(f'{where}: missing "question" text')
        answers, relevant = row.get("answers") or [], row.get("relevant") or []
        if not all(isinstance(v, list) and all(isinstance(x, str) for x in v) for v in (answers, relevant)):
            raise DataFileError(f'{where}: "answers" and "relevant" must be lists of strings')
        passages = _passages(where, row.get("passages") or [])
        if gold_required and not (answers or relevant or passages or row.get("off_topic")):
            raise DataFileError(f'{where}: needs "answers", "relevant" or "off_topic": true')
        rows.append(EvalQuery(str(row.get("id", number)), question, answers, relevant, bool(row.get("off_topic")),
                              passages=passages))
    if not rows:
        raise DataFileError(f"{path}: no queries")
    return rows


def _passages(where: str, values: object) -> list[JudgedPassage]:
    if not isinstance(values, list):
        raise DataFileError(f'{where}: "passages" must be a list of {{"doc_id", "start", "end"}}')
    passages = []
    for value in values:
        ok = isinstance(value, dict) and isinstance(value.get("doc_id"), str)
        ok = ok and all(isinstance(value.get(k), int) and not isinstance(value.get(k), bool) for k in ("start", "end"))
        if not ok or value["end"] <= value["start"]:
            raise DataFileError(f'{where}: "passages" must be a list of {{"doc_id", "start", "end"}} with start < end')
        passages.append(JudgedPassage(value["doc_id"], value["start"], value["end"]))
    return passages


def beir_qrels(folder: Path) -> Path | None:
    """The qrels file of a BEIR folder, in the layouts this reads (None: not a BEIR folder)."""
    return next((folder / name for name in BEIR_QRELS if (folder / name).is_file()), None)


def load_beir(folder: Path) -> tuple[list[Passage], list[EvalQuery]]:
    """The corpus and the judged queries of a BEIR folder (+ gold answers from answers.jsonl)."""
    folder = Path(folder)
    for name in BEIR_FILES:
        if not (folder / name).is_file():
            raise DataFileError(f"{folder}: not a BEIR folder (missing {name})")
    qrels = beir_qrels(folder)
    if qrels is None:
        raise DataFileError(f"{folder}: not a BEIR folder (missing qrels.tsv or qrels/test.tsv)")
    corpus = []
    path = folder / "corpus.jsonl"
    for number, row in read_jsonl(path):
        corpus.append(Passage(_id(path, number, row), _string(path, number, row, "text"), _title(path, number, row)))
    relevant = {q: [d for d, score in units.items() if score > 0] for q, units in read_qrels(qrels).items()}
    answers = _read_answers(folder / "answers.jsonl") if (folder / "answers.jsonl").is_file() else {}
    queries = []
    path = folder / "queries.jsonl"
    for number, row in read_jsonl(path):
        query_id, text = _id(path, number, row), _string(path, number, row, "text", non_empty=True)
        if relevant.get(query_id):
            queries.append(EvalQuery(query_id, text, answers.get(query_id, []), relevant[query_id], by_documents=True))
    return corpus, queries


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """Judged units per query id: BEIR TSV (query-id, corpus-id, score; optional header) or TREC
    (query-id, iteration, unit-id, relevance; whitespace-separated). Units scored 0 are kept
    (judged not relevant); only positive ones are gold."""
    judged: dict[str, dict[str, int]] = {}
    trec = None
    for number, line in read_lines(path):
        if trec is None:
            trec = len(line.split()) == 4
        fields = line.split() if trec else line.rstrip("\r\n").split("\t")
        if trec:
            if len(fields) != 4:
                raise DataFileError(f"{path}:{number}: expected 4 columns (query-id, 0, unit-id, relevance), got {len(fields)}")
            fields = [fields[0], fields[2], fields[3]]
        elif len(fields) < 3:
            raise DataFileError(f"{path}:{number}: expected 3 tab-separated columns (query-id, corpus-id, score), got {len(fields)}")
        try:
            score = int(fields[2])
        except ValueError:
            if number == 1 and not trec:
                continue  # header
            raise DataFileError(f'{path}:{number}: column "score" must be an integer, got {fields[2]!r}') from None
        if not fields[0] or not fields[1]:
            raise DataFileError(f'{path}:{number}: empty {"query-id" if not fields[0] else "corpus-id"}')
        judged.setdefault(fields[0], {})[unquote(fields[1]) if trec else fields[1]] = score
    return judged


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
