"""The web app's API over real HTTP with gradio_client: concurrent users, ingest during questions."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import ui_harness

from corpus.folding import fold

pytestmark = pytest.mark.slow

# Questions about the seed documents and a fact their cited passage must contain.
QUESTIONS = {
    "崇州市职教中心政策实施以来，毕业生对口就业率提升到了多少？": "85%以上",
    "崇州市职教中心2023年引进了多少名企业工程师？": "58名",
    "崇州市职教中心的学分银行制度覆盖多少个工种？": "20个工种",
    "重庆市技工院校采取订单培养模式的学校有多少所？": "27所",
    "重庆铁路运输技师学院那个拿了世赛金牌的年轻老师叫什么名字？": "梁攀",
    "国务院常务会议是哪天讨论通过职教法修改稿的？": "3月24日",
    "重慶五一技師學院跟多少家知名企業結成了合作夥伴？": "46家",
    "起草专班到有关省市、部门、园区、院校调研了多少次？": "35次",
}


@pytest.fixture(scope="session")
def server(seed_kb_dir, embedder, tmp_path_factory):
    yield ui_harness.shared_server(seed_kb_dir, tmp_path_factory.mktemp("ui-server"), embedder)
    ui_harness.stop_server()


def cites(result: dict, fact: str) -> bool:
    return any(fold(fact) in fold(c["text"]) for c in result["citations"])


def ask_as_new_user(url: str, question: str) -> dict:
    from gradio_client import Client

    return Client(url, verbose=False).predict(question, api_name="/ask")


def test_eight_users_asking_at_once_all_get_their_own_correct_answer(server):
    with ThreadPoolExecutor(len(QUESTIONS)) as pool:
        results = dict(zip(QUESTIONS, pool.map(lambda q: ask_as_new_user(server.url, q), QUESTIONS)))
    for question, fact in QUESTIONS.items():
        result = results[question]
        assert result["question"] == question
        assert not result["abstained"] and result["answer"]
        assert cites(result, fact), (question, fact, [c["text"][:80] for c in result["citations"]])


def test_ask_returns_the_cli_json_shape(server):
    from gradio_client import Client

    from ui.output import answer_json

    question = next(iter(QUESTIONS))
    result = Client(server.url, verbose=False).predict(question, api_name="/ask")
    expected = answer_json(server.service.ask(question))
    assert set(result) == set(expected)
    assert set(result["citations"][0]) == set(expected["citations"][0])
    assert [c["doc_id"] for c in result["citations"]] == [c["doc_id"] for c in expected["citations"]]
    first = result["citations"][0]
    document = server.service.snapshot().documents[first["doc_id"]]
    assert document.text[first["start"] : first["end"]] == first["text"]


def test_search_endpoint_honours_mode_k_and_document_filter(server):
    from gradio_client import Client

    client = Client(server.url, verbose=False)
    doc = "002_8dac70a763d0f45c.txt"
    result = client.predict("双师型教师比例", "lexical", 3, [doc], api_name="/search")
    assert result["mode"] == "lexical" and len(result["results"]) == 3
    assert {r["doc_id"] for r in result["results"]} == {doc}
    assert all(r["scores"]["dense"] is None and r["scores"]["lexical"] > 0 for r in result["results"])
    hybrid = client.predict("双师型教师比例", api_name="/search")
    assert len(hybrid["results"]) == 10
    assert all(r["scores"]["dense"] is not None for r in hybrid["results"])


def test_empty_question_is_a_clear_api_error(server):
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="问题为空"):
        Client(server.url, verbose=False).predict("   ", api_name="/ask")


def test_questions_are_answered_correctly_while_the_library_ingests(server, tmp_path):
    """8 users ask while the library tab's ingest handler is embedding a new document."""
    import time

    from gradio_client import Client

    from ui.labels import stage_label
    from ui.web import library

    fact = "星河职业技术学院的无人机专业首批招收了173名学生"
    measure = "第{i}项措施：星河职业技术学院推进第{i}个校企合作项目，建设第{i}号实训基地，培养技能人才{n}名。"
    paragraphs = [measure.format(i=i, n=i * 7) * 3 for i in range(120)]  # ~110 passages to embed
    new_doc = tmp_path / "xinghe.txt"
    new_doc.write_text("星河职业技术学院年度报告\n\n" + "\n\n".join(paragraphs) + f"\n\n{fact}。\n", encoding="utf-8")
    embedding = threading.Event()
    outcome: dict = {}

    def progress(value, desc=None):  # what gr.Progress receives from the handler
        if desc == stage_label("embed"):
            embedding.set()

    def run_ingest():
        outcome["html"] = library.ingest(server.service, [str(new_doc)], progress)
        outcome["finished"] = time.monotonic()

    clients = [Client(server.url, verbose=False) for _ in QUESTIONS]  # 8 users with the page open
    ingest = threading.Thread(target=run_ingest)
    ingest.start()
    assert embedding.wait(timeout=300), "the ingest never started embedding"
    with ThreadPoolExecutor(len(QUESTIONS)) as pool:
        results = list(pool.map(lambda c, q: c.predict(q, api_name="/ask"), clients, QUESTIONS))
    all_answered = time.monotonic()
    ingest.join(timeout=300)
    for (question, fact_), result in zip(QUESTIONS.items(), results):
        assert result["question"] == question and cites(result, fact_)
    assert 'class="wd-status-added"' in outcome["html"], outcome
    assert outcome["finished"] > all_answered, "the ingest ended before the questions: no overlap was tested"
    found = clients[0].predict("星河职业技术学院无人机专业首批招收多少名学生", "hybrid", 5, ["xinghe.txt"], api_name="/search")
    assert any("173名" in r["text"] for r in found["results"])
