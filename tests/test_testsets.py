"""Test sets as users write them: malformed BEIR folders and query files fail in one line.

Every bad file goes through the real ``wendao eval`` command: exit status 2, one line on stderr
naming ``file:line`` and the field, no traceback. The files are rejected while they are read,
before any model or knowledge base is opened.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from qa.testsets import load_beir, load_queries

WENDAO = str(Path(sys.executable).with_name("wendao"))

CORPUS = [
    {"_id": "d1", "title": "茶叶", "text": "龙井茶产于杭州西湖一带。"},
    {"_id": "d2", "title": "瓷器", "text": "景德镇被称为瓷都。"},
]
QUERIES = [{"_id": "q1", "text": "龙井茶产自哪里？"}, {"_id": "q2", "text": "哪座城市被称为瓷都？"}]
QRELS = "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\n"


def jsonl(rows: list) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def beir_folder(root: Path, **replace: str | bytes) -> Path:
    """A valid tiny BEIR folder, with any of its files replaced by the given content."""
    folder = root / "tiny"
    folder.mkdir()
    files = {"corpus.jsonl": jsonl(CORPUS), "queries.jsonl": jsonl(QUERIES), "qrels.tsv": QRELS}
    files.update({name.replace("_", "."): content for name, content in replace.items()})
    for name, content in files.items():
        path = folder / name
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content, encoding="utf-8")
    return folder


def wendao_eval(target: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "XDG_DATA_HOME": str(tmp_path / "data")}
    return subprocess.run([WENDAO, "eval", str(target), "--modes", "lexical"],
                          capture_output=True, text=True, timeout=300, env=env)


def assert_one_line_error(result: subprocess.CompletedProcess, where: str, *words: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and where in lines[0], lines[0]
    for word in words:
        assert word in lines[0], lines[0]


@pytest.mark.parametrize(
    "files, where, words",
    [
        ({"queries_jsonl": jsonl([QUERIES[0], {"text": "没有编号的问题"}])}, "queries.jsonl:2", ['"_id"']),
        ({"queries_jsonl": jsonl([QUERIES[0], {"_id": "q2", "text": 7}])}, "queries.jsonl:2", ['"text"', "int"]),
        ({"corpus_jsonl": jsonl([CORPUS[0], {"_id": "d2", "title": "瓷器"}])}, "corpus.jsonl:2", ['missing field "text"']),
        ({"corpus_jsonl": jsonl([CORPUS[0], {"_id": ["d2"], "text": "x"}])}, "corpus.jsonl:2", ['"_id"', "list"]),
        ({"corpus_jsonl": jsonl(CORPUS) + '["d3", "not an object"]\n'}, "corpus.jsonl:3", ["JSON object", "list"]),
        ({"queries_jsonl": jsonl(QUERIES) + '{"_id": "q3", "text": \n'}, "queries.jsonl:3", ["not valid JSON"]),
        ({"corpus_jsonl": jsonl(CORPUS).encode() + "景德镇".encode("gb18030") + b"\n"}, "corpus.jsonl:3", ["UTF-8"]),
        ({"qrels_tsv": "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2 d2 1\n"}, "qrels.tsv:3", ["3 tab-separated columns"]),
        ({"qrels_tsv": "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\tyes\n"}, "qrels.tsv:3", ['"score"', "integer", "'yes'"]),
        ({"answers_jsonl": jsonl([{"_id": "q1", "answers": "杭州"}])}, "answers.jsonl:1", ['"answers"', "list of strings"]),
    ],
    ids=["query-without-id", "query-text-not-string", "corpus-without-text", "corpus-id-a-list", "non-object-line",
         "bad-json", "not-utf8", "qrels-too-few-columns", "qrels-score-not-integer", "answers-not-a-list"],
)
def test_malformed_beir_folder_fails_in_one_line_naming_file_line_and_field(tmp_path, files, where, words):
    folder = beir_folder(tmp_path, **files)
    assert_one_line_error(wendao_eval(folder, tmp_path), f"{folder}/{where}", *words)
    assert not (tmp_path / "cache").exists()  # rejected before any knowledge base was built


def test_folder_without_qrels_is_not_a_beir_folder(tmp_path):
    folder = beir_folder(tmp_path)
    (folder / "qrels.tsv").unlink()
    assert_one_line_error(wendao_eval(folder, tmp_path), str(folder), "not a BEIR folder", "qrels.tsv")


@pytest.mark.parametrize(
    "content, where, words",
    [
        ('{"id": "a", "question": "问题", "answers": ["x"]}\n{"id": "b", "answers": ["y"]}\n', ":2", ['"question"']),
        ('{"id": "a", "question": "问题", "answers": "x"}\n', ":1", ['"answers"', "lists of strings"]),
        ('{"id": "a", "question": "问题"}\n', ":1", ['"answers"', '"off_topic"']),
        ('{"id": "a", "question": "问题", "answers": ["x"]}\n\n"just a string"\n', ":3", ["JSON object", "str"]),
        ('{"id": "a", "question": "问题", "answers": ["x"]\n', ":1", ["not valid JSON"]),
    ],
    ids=["no-question", "answers-not-a-list", "no-gold", "non-object-line", "bad-json"],
)
def test_malformed_query_file_fails_in_one_line_naming_file_line_and_field(tmp_path, content, where, words):
    path = tmp_path / "queries.jsonl"
    path.write_text(content, encoding="utf-8")
    assert_one_line_error(wendao_eval(path, tmp_path), f"{path}{where}", *words)


def test_query_file_that_is_not_utf8_names_its_line(tmp_path):
    path = tmp_path / "queries.jsonl"
    path.write_bytes('{"id": "a", "question": "问题", "answers": ["x"]}\n'.encode() + '{"question": "問題"}\n'.encode("big5"))
    assert_one_line_error(wendao_eval(path, tmp_path), f"{path}:2", "UTF-8")


def test_well_formed_beir_folder_reads_as_written(tmp_path):
    """Header, integer ids, blank lines, CRLF, zero scores, non-extractive answers: all as BEIR means them."""
    folder = beir_folder(
        tmp_path,
        corpus_jsonl=jsonl(CORPUS) + "\n" + jsonl([{"_id": 3, "text": "", "title": None}]),
        queries_jsonl=jsonl(QUERIES + [{"_id": "q3", "text": "没有标注的问题"}]),
        qrels_tsv="query-id\tcorpus-id\tscore\r\nq1\td1\t1\r\nq1\td2\t0\r\n\r\nq2\td2\t2\r\nq2\t3\t1\r\n",
        answers_jsonl=jsonl([{"_id": "q1", "answers": ["杭州"]}, {"_id": "q2", "answers": ["瓷都"], "extractive": False}]),
    )
    corpus, queries = load_beir(folder)
    assert [(p.id, p.title, p.text) for p in corpus][2] == ("3", "", "")
    assert [(q.id, q.relevant, q.answers, q.by_documents) for q in queries] == [
        ("q1", ["d1"], ["杭州"], True),
        ("q2", ["d2", "3"], [], True),
    ]  # q3 has no qrels and is not asked


def test_query_file_with_a_byte_order_mark_reads(tmp_path):
    path = tmp_path / "queries.jsonl"
    path.write_text('{"id": "a", "question": "问题", "answers": ["x"]}\r\n{"question": "离题", "off_topic": true}\n',
                    encoding="utf-8-sig")
    queries = load_queries(path)
    assert [(q.id, q.off_topic) for q in queries] == [("a", False), ("2", True)]


def test_beir_folder_in_beirs_own_layout_reads(tmp_path):
    """BEIR's own download layout: qrels/test.tsv instead of qrels.tsv."""
    folder = beir_folder(tmp_path)
    (folder / "qrels").mkdir()
    (folder / "qrels.tsv").rename(folder / "qrels" / "test.tsv")
    corpus, queries = load_beir(folder)
    assert [(q.id, q.relevant) for q in queries] == [("q1", ["d1"]), ("q2", ["d2"])]
