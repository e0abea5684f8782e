"""Judgments made while using wendao: a passage relevant or not to a question, a question that
should be abstained on. Stored with the knowledge base (``workbench.db``), they become a test set.

A passage is judged by its span in its document (``doc_id``, ``start``, ``end``), not only its
chunk id, so the judgment still applies after the knowledge base is re-chunked (a chunk stands
for a judged passage when they overlap by half, ``qa.evaluate.gold``). The latest judgment of a
(question, passage) pair wins. Exported as a query file (the format of
``corpus/seeds/queries.jsonl``: ``relevant`` document ids, plus ``passages``) or as TREC qrels
(chunk ids; passages judged not relevant are listed with relevance 0).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from qa.testsets import EvalQuery, JudgedPassage
from qa.trec import trec_id, write_lines
from qa.workbench_db import WorkbenchError, connect

ORIGINS = ("ask", "search")


@dataclass
class PassageJudgment:
    question: str
    doc_id: str
    start: int
    end: int
    chunk_id: str
    text: str
    relevant: bool
    origin: str  # the tab it was made in: ask (a cited passage) or search (a result)
    updated: str = ""


@dataclass
class QuestionJudgment:
    question: str
    should_abstain: bool
    updated: str = ""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def query_id(question: str) -> str:
    """A judged question's id, the same in every export (from its text)."""
    return "j-" + hashlib.sha1(question.strip().encode("utf-8")).hexdigest()[:10]


def judge_passage(kb_dir: Path, judgment: PassageJudgment) -> None:
    question = judgment.question.strip()
    if not question:
        raise WorkbenchError("a judgment needs the question it was made for")
    if judgment.origin not in ORIGINS:
        raise WorkbenchError(f"unknown judgment origin {judgment.origin!r}")
    with connect(kb_dir, write=True) as db:
        db.execute(
            "INSERT OR REPLACE INTO passage_judgments VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (question, judgment.doc_id, judgment.start, judgment.end, judgment.chunk_id, judgment.text,
             int(judgment.relevant), judgment.origin, _now()),
        )


def judge_question(kb_dir: Path, question: str, should_abstain: bool) -> None:
    question = question.strip()
    if not question:
        raise WorkbenchError("a judgment needs the question it was made for")
    with connect(kb_dir, write=True) as db:
        db.execute("INSERT OR REPLACE INTO question_judgments VALUES (?, ?, ?)", (question, int(should_abstain), _now()))


def passage_judgments(kb_dir: Path) -> list[PassageJudgment]:
    with connect(kb_dir) as db:
        rows = db.execute("SELECT * FROM passage_judgments ORDER BY updated, question").fetchall() if db else []
    return [PassageJudgment(q, d, s, e, c, t, bool(r), o, u) for q, d, s, e, c, t, r, o, u in rows]


def question_judgments(kb_dir: Path) -> list[QuestionJudgment]:
    with connect(kb_dir) as db:
        rows = db.execute("SELECT * FROM question_judgments ORDER BY updated, question").fetchall() if db else []
    return [QuestionJudgment(q, bool(a), u) for q, a, u in rows]


def judged_rows(kb_dir: Path) -> list[dict]:
    """The judgments as query-file rows, one per question with a relevant passage or marked to
    be abstained on (in the order questions were first judged)."""
    abstain = {j.question for j in question_judgments(kb_dir) if j.should_abstain}
    passages: dict[str, list[PassageJudgment]] = {}
    for judgment in passage_judgments(kb_dir):
        passages.setdefault(judgment.question, []).append(judgment)
    rows = []
    for question in [*passages, *(q for q in abstain if q not in passages)]:
        if question in abstain:
            rows.append({"id": query_id(question), "question": question, "off_topic": True})
            continue
        relevant = [j for j in passages[question] if j.relevant]
        if not relevant:
            continue  # only "not relevant" marks: nothing to rank against yet
        rows.append({
            "id": query_id(question),
            "question": question,
            "relevant": list(dict.fromkeys(j.doc_id for j in relevant)),
            "passages": [{"doc_id": j.doc_id, "start": j.start, "end": j.end} for j in relevant],
            "not_relevant": [{"doc_id": j.doc_id, "start": j.start, "end": j.end} for j in passages[question] if not j.relevant],
        })
    return rows


def judged_queries(kb_dir: Path) -> list[EvalQuery]:
    """The judgments as a test set (``wendao eval --judged``)."""
    queries = [
        EvalQuery(row["id"], row["question"], relevant=row.get("relevant", []), off_topic=row.get("off_topic", False),
                  passages=[JudgedPassage(**p) for p in row.get("passages", [])])
        for row in judged_rows(kb_dir)
    ]
    if not queries:
        raise WorkbenchError(f"{kb_dir}: no judgments yet (mark passages relevant in the web app's 问答 or 检索 tab)")
    return queries


def export_jsonl(kb_dir: Path, path: Path) -> int:
    rows = judged_rows(kb_dir)
    write_lines(path, [json.dumps(row, ensure_ascii=False) + "\n" for row in rows])
    return len(rows)


def export_qrels(kb_dir: Path, path: Path) -> int:
    """TREC qrels of the judged passages (chunk ids as judged; relevance 1 or 0)."""
    lines = [
        f"{trec_id(query_id(j.question))} 0 {trec_id(j.chunk_id)} {int(j.relevant)}\n" for j in passage_judgments(kb_dir)
    ]
    write_lines(path, lines)
    return len(lines)


def summary(kb_dir: Path) -> dict:
    passages, questions = passage_judgments(kb_dir), question_judgments(kb_dir)
    return {
        "questions": len({j.question for j in passages} | {j.question for j in questions}),
        "relevant": sum(j.relevant for j in passages),
        "not_relevant": sum(not j.relevant for j in passages),
        "should_abstain": sum(j.should_abstain for j in questions),
        "passages": [asdict(j) for j in passages],
        "abstain": [asdict(j) for j in questions],
    }
