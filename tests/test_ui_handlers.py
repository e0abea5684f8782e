"""The web app's handlers and HTML on the real seed knowledge base, without a browser."""
from __future__ import annotations

import html
import json
import re
import zipfile
from html.parser import HTMLParser

import pytest

from qa.answer import Answer
from qa.query import plan_query
from ui.web import ask, evaluate, library, render, search
from ui.web.source import parse_spans, source_page

pytestmark = pytest.mark.slow


def no_progress(*args, **kwargs) -> None:
    """Stands in for gr.Progress outside a request (it only displays)."""


class Marks(HTMLParser):
    """Plain text of an HTML fragment and the text inside each <mark>, with its classes."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.text, self.marks, self._open = "", [], None

    def handle_starttag(self, tag, attrs):
        if tag == "mark":
            self._open = (dict(attrs).get("class", "").split(), dict(attrs).get("id"), len(self.text))

    def handle_endtag(self, tag):
        if tag == "mark" and self._open:
            classes, mark_id, start = self._open
            self.marks.append((classes, mark_id, start, len(self.text)))
            self._open = None

    def handle_data(self, data):
        self.text += data


def parse(fragment: str) -> Marks:
    parser = Marks()
    parser.feed(fragment)
    return parser


@pytest.fixture
def service(seed_kb_copy, embedder):
    from qa.service import Wendao

    return Wendao(kb_dir=seed_kb_copy, embedder=embedder)


# -- rendering ---------------------------------------------------------------------------------
def test_highlight_keeps_the_text_marks_exact_spans_and_escapes_markup():
    text = '第一句<script>alert("x")</script>。第二句 & 第三句'
    layers = {"answer": [(0, 8), (20, 25)], "term": [(5, 12)]}
    parsed = parse(render.highlight(text, layers, anchor="answer"))
    assert parsed.text == text
    assert "<script>" not in render.highlight(text, layers)
    covered = {name: set() for name in layers}
    for classes, _, start, end in parsed.marks:
        for name in classes:
            covered[name].update(range(start, end))
    assert covered["answer"] == set(range(0, 8)) | set(range(20, 25))
    assert covered["term"] == set(range(5, 12))
    anchors = [(start, end) for classes, mark_id, start, end in parsed.marks if mark_id == "cited"]
    assert anchors == [(0, 5)]


def test_highlight_clamps_spans_outside_the_text():
    parsed = parse(render.highlight("abc", {"term": [(-3, 1), (2, 99)]}))
    assert parsed.text == "abc"
    assert [(s, e) for _, _, s, e in parsed.marks] == [(0, 1), (2, 3)]


def test_abstention_is_shown_as_such_not_as_an_empty_answer():
    answer = Answer(plan_query("明天重庆会下雨吗？"), "", True, 0.12, 0.35, [], [])
    shown = render.answer_html(answer)
    assert "无法回答" in shown and "0.12" in shown and "0.35" in shown
    assert render.cards_html(answer) == ""


def test_parse_spans_ignores_malformed_pieces():
    assert parse_spans("1-5,x-3,9-7,,12-20") == [(1, 5), (12, 20)]


# -- ask and search ----------------------------------------------------------------------------
def test_ask_handler_cites_passages_with_links_to_their_source(seed_service):
    head, cards = ask.ask(seed_service, "崇州市职教中心2023年引进了多少名企业工程师？")
    assert 'class="wd-answer"' in head and "wd-marker" in head and "用时" in head
    assert "58名" in parse(cards).text
    link = html.unescape(re.search(r'class="wd-marker" href="([^"]+)"', head).group(1))
    assert link.startswith(render.SOURCE_ROUTE + "?doc=") and link.endswith("#cited")


def test_ask_handler_rejects_an_empty_question(seed_service):
    head, cards = ask.ask(seed_service, " \n ")
    assert "wd-error" in head and "不能为空" in head and cards == ""


def test_search_handler_filters_by_document_and_shows_scores(seed_service):
    doc = "003_8ebe793d199c5cdb.txt"
    shown = search.search(seed_service, "产教联合体", "hybrid", 4, [doc])
    assert shown.count('class="wd-card wd-result"') == 4
    assert set(re.findall(r'data-doc="([^"]+)"', shown)) == {doc}
    assert "融合" in shown and "向量" in shown and "关键词" in shown
    assert "不能为空" in search.search(seed_service, "", "hybrid", 4, None)


def test_example_questions_come_from_the_sample_query_file():
    examples = ask.example_questions()
    assert 0 < len(examples) <= ask.EXAMPLES and all(q.strip() for q in examples)


# -- source viewer -----------------------------------------------------------------------------
def test_source_page_highlights_and_anchors_the_cited_span(seed_service):
    chunk = seed_service.snapshot().chunks[3]
    document = seed_service.snapshot().documents[chunk.doc_id]
    span = (chunk.start + 2, chunk.start + 12)
    response = source_page(seed_service, chunk.doc_id, chunk.start, chunk.end, f"{span[0]}-{span[1]}", "")
    assert response.status_code == 200
    body = response.body.decode()
    parsed = parse(body[body.index('<div class="doc">') :])
    assert parsed.text.startswith(document.text)
    cited = [(s, e) for classes, mark_id, s, e in parsed.marks if mark_id == "cited"]
    assert cited and cited[0][0] == span[0] and "answer" in next(c for c, i, _, _ in parsed.marks if i == "cited")
    passage = {i for classes, _, s, e in parsed.marks if "passage" in classes for i in range(s, e)}
    assert passage == set(range(chunk.start, chunk.end))


def test_source_page_for_a_missing_document_is_a_clear_404(seed_service):
    response = source_page(seed_service, "no-such.txt", 0, 10, "", "")
    assert response.status_code == 404 and "no-such.txt" in response.body.decode()


# -- library -----------------------------------------------------------------------------------
def test_reingesting_an_unchanged_file_is_skipped(service):
    from corpus.pipeline import seed_paths

    shown = library.ingest(service, [str(seed_paths()[0])], no_progress)
    assert 'class="wd-status-unchanged"' in shown and "已跳过" in shown


def test_library_messages_for_nothing_selected(service):
    assert "请先选择" in library.ingest(service, [], no_progress)
    assert "请先选择" in library.remove(service, [])


def test_remove_one_document_keeps_the_others(service):
    before = [row[0] for row in library.documents_table(service)]
    shown = library.remove(service, [before[0]])
    assert 'class="wd-status-removed"' in shown
    assert [row[0] for row in library.documents_table(service)] == before[1:]


def test_failed_remove_leaves_the_library_as_it_was(service):
    generation = service.snapshot().generation
    shown = library.remove(service, ["no-such.txt"])
    assert "操作失败，文档库未改变" in shown and "no-such.txt" in shown
    assert service.snapshot().generation == generation


def test_rebuild_keeps_every_document(service):
    before = library.documents_table(service)
    shown = library.rebuild(service, no_progress)
    assert shown.count('class="wd-status-updated"') == len(before)
    assert [row[:5] for row in library.documents_table(service)] == [row[:5] for row in before]
    stats = parse(library.stats_html(service)).text
    assert f"文档{len(before)}" in stats


# -- evaluation --------------------------------------------------------------------------------
def test_evaluation_of_the_sample_file_fills_every_view(seed_service):
    status, metrics, recall, failures = evaluate.run(seed_service, "sample", None, ["lexical"], no_progress)
    assert "wd-info" in status and "queries.jsonl" in status
    assert list(metrics.columns) == ["指标", "关键词"] and "mrr@10" in set(metrics["指标"])
    assert list(recall["k"]) == list(evaluate.RECALL_KS) and recall["recall"].between(0, 1).all()
    assert list(failures.columns) == evaluate.FAILURE_HEADERS


@pytest.mark.parametrize(
    "name, content, expected",
    [
        ("broken.jsonl", '{"id": "a", "question": "问题", "answers": ["x"]}\n{oops\n', "broken.jsonl:2"),
        ("no_gold.jsonl", '{"id": "a", "question": "问题"}\n', "no_gold.jsonl:1"),
        ("queries.csv", "id,question\n", "不支持的查询文件类型 .csv"),
        ("fake.zip", "not a zip", "不是有效的 zip"),
    ],
)
def test_bad_query_files_are_reported_by_name(seed_service, tmp_path, name, content, expected):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    status, metrics, recall, failures = evaluate.run(seed_service, "upload", str(path), ["lexical"], no_progress)
    assert "wd-error" in status and expected in html.unescape(status)
    assert metrics is None and recall is None and failures is None


def test_evaluation_asks_for_a_file_and_a_mode(seed_service):
    assert "请先上传" in evaluate.run(seed_service, "upload", None, ["hybrid"], no_progress)[0]
    assert "至少选择一种" in evaluate.run(seed_service, "sample", None, [], no_progress)[0]


def beir_zip(path, members: dict[str, str]):
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in members.items():
            archive.writestr(name, text)
    return path


def test_zipped_beir_folder_is_indexed_and_evaluated(seed_service, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # where the BEIR index is cached
    corpus = [
        {"_id": "d1", "title": "茶叶", "text": "龙井茶产于杭州西湖一带，是绿茶的代表。"},
        {"_id": "d2", "title": "瓷器", "text": "景德镇以瓷器闻名，被称为瓷都。"},
        {"_id": "d3", "title": "丝绸", "text": "苏州的丝绸织造历史悠久，宋锦是其代表。"},
    ]
    queries = [{"_id": "q1", "text": "龙井茶产自哪里？"}, {"_id": "q2", "text": "哪座城市被称为瓷都？"}]
    path = beir_zip(
        tmp_path / "tiny.zip",
        {
            "tiny/corpus.jsonl": "\n".join(json.dumps(r, ensure_ascii=False) for r in corpus),
            "tiny/queries.jsonl": "\n".join(json.dumps(r, ensure_ascii=False) for r in queries),
            "tiny/qrels.tsv": "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\n",
        },
    )
    status, metrics, recall, failures = evaluate.run(seed_service, "upload", str(path), ["lexical", "dense"], no_progress)
    assert "wd-info" in status and "2 个问题" in status
    assert list(metrics.columns) == ["指标", "关键词", "向量"]
    row = metrics.set_index("指标").loc["recall@3"]
    assert row["关键词"] == 1.0 and row["向量"] == 1.0
    assert len(list((tmp_path / "cache").rglob("records.db"))) == 1  # its own index, not the library's
    assert "d1" not in seed_service.snapshot().documents


def test_unsafe_or_incomplete_zip_is_refused(seed_service, tmp_path):
    evil = beir_zip(tmp_path / "evil.zip", {"../outside.txt": "x", "corpus.jsonl": "{}"})
    status = evaluate.run(seed_service, "upload", str(evil), ["lexical"], no_progress)[0]
    assert "不安全" in status and not (tmp_path.parent / "outside.txt").exists()
    empty = beir_zip(tmp_path / "empty.zip", {"readme.txt": "no corpus here"})
    assert "没有 BEIR 文件夹" in evaluate.run(seed_service, "upload", str(empty), ["lexical"], no_progress)[0]
