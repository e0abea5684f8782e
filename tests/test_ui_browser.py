"""The real page in headless Debian Chromium: ask, cite, view the source, upload, evaluate.

Every request the page makes is routed through a check: anything not addressed to the local
server is aborted and recorded, and each test fails if there was any (the app must work with the
network cut off). Each test saves a screenshot under artifacts/ui/.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
import ui_harness
from ui_harness import screenshot

pytestmark = [pytest.mark.browser, pytest.mark.slow]

QUESTION = "崇州市职教中心2023年引进了多少名企业工程师？"
FACT = "58名"
SEED_DOCS = {
    "000_9f677896c333216d.txt",
    "001_ec1205a029dd3c90.txt",
    "002_8dac70a763d0f45c.txt",
    "003_8ebe793d199c5cdb.txt",
    "004_62d3cd685e80b562.txt",
}
WAIT_MS = 120_000  # first questions after start-up, and ingests, take a while on two cores


@pytest.fixture(scope="session")
def server(seed_kb_dir, embedder, tmp_path_factory):
    yield ui_harness.shared_server(seed_kb_dir, tmp_path_factory.mktemp("ui-server"), embedder)
    ui_harness.stop_server()


@pytest.fixture(scope="session")  # session-scoped so it is set up (or skipped) before the server
def browser():
    chromium = ui_harness.require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=ui_harness.CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, server):
    """A fresh page on the app; requests anywhere but the local server are blocked and fail the test."""
    local = urlsplit(server.url).netloc
    outside: list[str] = []

    def gate(route):
        url = urlsplit(route.request.url)
        if url.scheme in ("data", "blob") or url.netloc == local:
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    context = browser.new_context(viewport={"width": 1400, "height": 1000}, locale="zh-CN")
    context.route("**/*", gate)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto(server.url, wait_until="networkidle")
    yield page
    context.close()
    assert not outside, f"the page tried to reach outside the local server: {outside}"


def ask(page, question: str) -> None:
    page.get_by_role("tab", name="问答").click()
    page.fill("#wd-question textarea", question)
    page.click("#wd-ask")


def documents_listed(page) -> str:
    page.get_by_role("tab", name="文档库").click()
    return page.locator("#wd-documents").inner_text()


def upload(page, component: str, paths: list[Path]) -> None:
    """Choose files in a gr.File and wait until every one has finished uploading."""
    page.locator(f"#{component} input[type=file]").set_input_files([str(p) for p in paths])
    for path in paths:  # the download link appears once the server holds the file
        page.locator(f'#{component} a[download="{path.name}"]').wait_for()


def test_ask_shows_the_answer_and_citation_cards(page):
    ask(page, QUESTION)
    card = page.locator("#wd-cards .wd-card").first
    card.wait_for()
    answer = page.locator("#wd-answer .wd-answer")
    assert answer.inner_text().strip()
    assert page.locator("#wd-answer .wd-marker").count() >= 1
    assert "用时" in page.locator("#wd-answer .wd-timings").inner_text()
    passages = page.locator("#wd-cards .wd-passage").all_inner_texts()
    assert any(FACT in text for text in passages)
    assert page.locator("#wd-cards .wd-passage mark.answer").count() >= 1
    assert page.locator("#wd-cards .wd-passage mark.term").count() >= 1
    scores = card.locator(".wd-scores").inner_text()
    assert "融合" in scores and "向量" in scores and "关键词" in scores
    screenshot(page, "ask")


def test_citation_opens_the_source_at_the_highlighted_span(page, server):
    ask(page, QUESTION)
    marker = page.locator("#wd-answer .wd-marker").first
    marker.wait_for()
    n = int(marker.inner_text().strip("[]"))
    card_passage = page.locator(f"#wd-cite-{n} .wd-passage").inner_text()
    marker.click()
    viewer = page.frame(name="wd-source")
    cited = viewer.locator("mark#cited")
    cited.wait_for()
    sentence = cited.inner_text()
    assert sentence and sentence in card_passage
    assert "answer" in cited.get_attribute("class")
    # the whole document is shown, with the cited passage marked around the sentence
    doc_id = page.locator(f"#wd-cite-{n}").get_attribute("data-doc")
    document = server.service.snapshot().documents[doc_id]
    assert len(viewer.locator(".doc").inner_text()) > len(card_passage)
    assert sentence in document.text
    screenshot(page, "source-viewer")
    # 查看原文 on a card opens the same document with the passage highlighted
    link = page.locator(f"#wd-cite-{n} .wd-open")
    target = urljoin(server.url, link.get_attribute("href")).split("#")[0]
    link.click()
    viewer.wait_for_url(lambda url: url.split("#")[0] == target)
    viewer.locator("mark.passage").first.wait_for()
    assert document.title in viewer.locator("header h1").inner_text()


def test_empty_question_shows_a_clear_message(page):
    ask(page, "   ")
    message = page.locator("#wd-answer .wd-error")
    message.wait_for()
    assert "不能为空" in message.inner_text()
    assert page.locator("#wd-cards .wd-card").count() == 0
    screenshot(page, "empty-question")


def test_search_tab_ranks_passages_with_score_breakdown(page):
    page.get_by_role("tab", name="检索").click()
    page.fill("#wd-search-query textarea", "双师型教师")
    page.locator("#wd-search-mode").get_by_text("关键词（BM25）").click()
    page.click("#wd-search")
    results = page.locator("#wd-search-results .wd-result")
    results.first.wait_for()
    assert results.count() == 10
    assert "#1" in results.first.locator(".wd-n").inner_text()
    assert "双师型" in results.first.locator(".wd-passage").inner_text()
    assert results.first.locator("mark.term").count() >= 1
    screenshot(page, "search")


def test_upload_reports_each_file_and_the_new_document_is_cited(page, tmp_path):
    from docx import Document as DocxDocument

    good_txt = tmp_path / "qinghe_report.txt"
    good_txt.write_text(
        "青禾市智能制造职业学院年度报告\n\n一、基本情况\n\n"
        "青禾市智能制造职业学院于2024年3月开设无人机应用技术专业，首批招收学生136名，"
        "合作企业为青禾航空科技有限公司。\n\n二、下一步计划\n\n学院将继续扩大校企合作规模。\n",
        encoding="utf-8",
    )
    good_docx = tmp_path / "qinghe_plan.docx"
    docx = DocxDocument()
    docx.add_heading("青禾市职业教育三年行动计划", level=1)
    docx.add_paragraph("到2026年，青禾市将建成省级高水平实训基地4个，培育产教融合型企业15家。")
    docx.save(good_docx)
    unsupported = tmp_path / "setup.exe"
    unsupported.write_bytes(bytes(range(256)) * 8)
    binary_txt = tmp_path / "corrupt.txt"
    binary_txt.write_bytes(b"\x00\x01\x02\xff\xfe" * 200)
    before = documents_listed(page)

    upload(page, "wd-upload", [good_txt, good_docx, unsupported, binary_txt])
    page.click("#wd-ingest")
    result = page.locator("#wd-library-result .wd-results")
    result.wait_for()
    for name in (good_txt.name, good_docx.name):
        assert "已导入" in result.locator(f'tr[data-file="{name}"]').inner_text()
    # the bad files are reported with the loader's reason (naming the type / what is wrong)
    assert ".exe" in result.locator('tr.wd-status-failed[data-file="setup.exe"]').inner_text().split("失败：")[1]
    assert "binary" in result.locator('tr.wd-status-failed[data-file="corrupt.txt"]').inner_text().split("失败：")[1]
    page.wait_for_function("document.querySelector('#wd-documents').innerText.includes('qinghe_report.txt')")
    listed = page.locator("#wd-documents").inner_text()
    assert all(doc in listed for doc in SEED_DOCS | {good_txt.name, good_docx.name})
    assert all(doc in listed for doc in SEED_DOCS) and all(doc in before for doc in SEED_DOCS)
    screenshot(page, "library-upload")

    ask(page, "青禾市智能制造职业学院的无人机专业首批招收了多少名学生？")
    cited = page.locator(f'#wd-cards .wd-card[data-doc="{good_txt.name}"]')
    cited.first.wait_for()
    assert "136名" in cited.first.locator(".wd-passage").inner_text()
    screenshot(page, "ask-uploaded")


def test_evaluation_tab_runs_the_sample_queries(page):
    page.get_by_role("tab", name="评测").click()
    page.click("#wd-eval-run")
    page.locator("#wd-eval-status .wd-info").wait_for()
    metrics = page.locator("#wd-eval-metrics")
    metrics.get_by_text("mrr@10").first.wait_for()
    table = metrics.inner_text()
    assert all(name in table for name in ("混合", "向量", "关键词", "recall@5", "ndcg@10"))
    page.locator("#wd-eval-chart canvas, #wd-eval-chart svg").first.wait_for()
    assert "个问题" in page.locator("#wd-eval-status").inner_text()
    screenshot(page, "evaluate")


def test_malformed_query_file_is_reported_and_nothing_is_lost(page, server, tmp_path):
    before = set(server.service.snapshot().documents)
    bad = tmp_path / "bad_queries.jsonl"
    good_line = json.dumps({"id": "a", "question": "重庆有多少所技工院校？", "answers": ["51所"]}, ensure_ascii=False)
    bad.write_text(good_line + "\n{not json\n", encoding="utf-8")
    page.get_by_role("tab", name="评测").click()
    page.locator("#wd-eval-source").get_by_text("上传查询文件").click()
    upload(page, "wd-eval-upload", [bad])
    page.click("#wd-eval-run")
    error = page.locator("#wd-eval-status .wd-error")
    error.wait_for()
    assert "bad_queries.jsonl:2" in error.inner_text() and "JSON" in error.inner_text()
    screenshot(page, "evaluate-bad-file")
    assert set(server.service.snapshot().documents) == before
    listed = documents_listed(page)
    assert all(doc in listed for doc in before)


def test_scanned_pdf_citation_is_boxed_on_the_page_image(page, server, tmp_path):
    """A scan's citation opens the page image with the cited sentence's boxes over that sentence."""
    import numpy as np
    from rapidfuzz import fuzz
    from scan_samples import PAGE_H, PAGE_W, QUESTIONS, viewer_sample, visible

    path, drawn = viewer_sample(tmp_path)
    report = server.service.ingest([path])
    assert [r.status for r in report.results] == ["added"], report.results
    question, expected = QUESTIONS[0]
    ask(page, question)
    page.locator(f'#wd-cards .wd-card[data-doc="{path.name}"]').first.wait_for()
    page.locator("#wd-answer .wd-marker").first.click()
    viewer = page.frame(name="wd-source")
    viewer.locator(".pageview img.page-image").wait_for()
    viewer.wait_for_function("() => { const i = document.querySelector('img.page-image'); return i.complete && i.naturalWidth > 0; }")
    assert "第 1 / 2 页" in viewer.locator("nav.pages").inner_text()
    assert viewer.locator("#cited").get_attribute("class") == "box answer"  # the link scrolls to the page image
    cited = "".join(viewer.locator(".page-text mark.answer").all_inner_texts())  # the marks of one sentence
    assert expected in cited
    image = viewer.locator("img.page-image").bounding_box()
    boxes = [viewer.locator(".box.answer").nth(i).bounding_box() for i in range(viewer.locator(".box.answer").count())]
    assert boxes, "no highlighted box on the page image"
    assert viewer.locator(".box.term").count() >= 1  # the question's terms, lighter
    # where the cited sentence was typeset (source text and character boxes kept by the generator)
    source = "".join(ch for ch, _ in drawn.chars)
    found = fuzz.partial_ratio_alignment(visible(cited), source)
    assert found.score >= 95
    truth = [box for _, box in drawn.chars[found.dest_start : found.dest_end]]
    grid_w, grid_h = 600, round(600 * PAGE_H / PAGE_W)
    expected_mask = np.zeros((grid_h, grid_w), bool)
    for x0, y0, x1, y1 in truth:
        expected_mask[round(y0 / PAGE_H * grid_h) : round(y1 / PAGE_H * grid_h), round(x0 / PAGE_W * grid_w) : round(x1 / PAGE_W * grid_w)] = True
    shown_mask = np.zeros_like(expected_mask)
    for box in boxes:
        x0, y0 = (box["x"] - image["x"]) / image["width"], (box["y"] - image["y"]) / image["height"]
        x1, y1 = x0 + box["width"] / image["width"], y0 + box["height"] / image["height"]
        shown_mask[round(y0 * grid_h) : round(y1 * grid_h), round(x0 * grid_w) : round(x1 * grid_w)] = True
    covered = (expected_mask & shown_mask).sum() / expected_mask.sum()
    precise = (expected_mask & shown_mask).sum() / shown_mask.sum()
    print(f"\nhighlight covers {covered:.3f} of the cited sentence; {precise:.3f} of the highlight is on it")
    assert covered >= 0.9 and precise >= 0.6, (covered, precise)
    screenshot(page, "ocr-page-viewer")
    wide = page.context.new_page()  # the viewer in a window of its own: the text beside the page
    wide.set_viewport_size({"width": 1300, "height": 1000})
    wide.goto(viewer.url.split("#")[0], wait_until="networkidle")  # from the top: the whole page
    assert wide.locator(".page-text").bounding_box()["x"] > wide.locator("img.page-image").bounding_box()["x"] + 300
    screenshot(wide, "ocr-page-viewer-wide")
    wide.close()
    # page navigation: the typed second page, from its text layer
    viewer.locator("nav.pages a.next").click()
    viewer.wait_for_function("() => document.querySelector('nav.pages').innerText.includes('第 2 / 2 页')")
    viewer.wait_for_function("() => { const i = document.querySelector('img.page-image'); return i.complete && i.naturalWidth > 0; }")
    assert "实训基地建设" in viewer.locator(".page-text").inner_text()
    assert "PDF 文字层" in viewer.locator(".page-text h2").inner_text()
    screenshot(page, "ocr-page-viewer-page2")


def choose(page, component: str, starts_with: str) -> None:
    """Pick the option of a gr.Dropdown whose label starts with ``starts_with`` (the selected
    option's text starts with a ✓)."""
    box = page.locator(f"#{component} input")
    if box.input_value().startswith(starts_with):
        return  # already chosen (clicking it again would leave the list open)
    box.click()
    page.get_by_role("option").filter(has_text=re.compile(r"^[✓\s]*" + re.escape(starts_with))).first.click()


def judge(page, prefix: str, passage: str | None, button: str) -> str:
    """Open a tab's judging panel, pick a passage and press a button; the confirmation text."""
    panel = page.locator(f"#{prefix}-panel")
    if not page.locator(f"#{prefix}-relevant").is_visible():
        panel.get_by_text("标注（用于评测）").click()
    if passage:
        choose(page, f"{prefix}-passage", passage)
    page.click(f"#{prefix}-{button}")
    expected = {"relevant": [f"已标注：{passage}", "与问题相关"], "irrelevant": [f"已标注：{passage}", "与问题不相关"],
                "abstain": ["已标注：这个问题应当拒答"]}[button]
    page.wait_for_function(
        "([id, parts]) => parts.every(p => document.querySelector(id).innerText.includes(p))",
        arg=[f"#{prefix}-status", expected],
    )
    return page.locator(f"#{prefix}-status").inner_text()


def test_judgments_made_in_the_app_become_a_test_set(page, server, tmp_path):
    """Mark passages in 检索 and 问答 and a question as to be abstained on: the export holds
    them and ``wendao eval --judged`` evaluates exactly them."""
    from test_workbench import wendao

    kb = str(server.service.kb_dir)
    before = wendao("eval", "--judged", "--kb", kb, env_dir=tmp_path, check=False)
    assert before.returncode == 2 and "no judgments yet" in before.stderr

    query, off_topic = "双师型教师", "明天北京会下雨吗？"
    page.get_by_role("tab", name="检索").click()
    page.fill("#wd-search-query textarea", query)
    page.locator("#wd-search-mode").get_by_text("关键词（BM25）").click()
    page.click("#wd-search")
    page.locator("#wd-search-results .wd-result").first.wait_for()
    assert "相关" in judge(page, "wd-search-judge", "#3 ", "relevant")
    assert "不相关" in judge(page, "wd-search-judge", "#1 ", "irrelevant")
    ask(page, QUESTION)
    page.locator("#wd-cards .wd-card").first.wait_for()
    judge(page, "wd-judge", "[1] ", "relevant")
    ask(page, off_topic)
    page.locator("#wd-answer .wd-abstain").wait_for()  # the new answer is shown (wendao abstains)
    assert "拒答" in judge(page, "wd-judge", None, "abstain")
    screenshot(page, "judge")

    found, _ = server.service.search(query, mode="lexical", k=10)
    cited = server.service.ask(QUESTION).citations[0].hit.chunk
    out_jsonl, out_qrels = tmp_path / "judged.jsonl", tmp_path / "judged.qrels"
    wendao("judgments", "--kb", kb, "--jsonl", str(out_jsonl), "--qrels", str(out_qrels), env_dir=tmp_path)
    rows = {row["question"]: row for row in map(json.loads, out_jsonl.read_text(encoding="utf-8").splitlines())}
    span = lambda c: {"doc_id": c.doc_id, "start": c.start, "end": c.end}  # noqa: E731
    assert rows[query]["passages"] == [span(found[2].chunk)] and rows[query]["not_relevant"] == [span(found[0].chunk)]
    assert rows[query]["relevant"] == [found[2].chunk.doc_id]
    assert rows[QUESTION]["passages"] == [span(cited)]
    assert rows[off_topic]["off_topic"] is True
    qrels = {tuple(line.split()[2:]) for line in out_qrels.read_text(encoding="utf-8").splitlines()}
    assert {(found[2].chunk.chunk_id, "1"), (found[0].chunk.chunk_id, "0"), (cited.chunk_id, "1")} <= qrels

    after = json.loads(wendao("eval", "--judged", "--kb", kb, "--modes", "lexical", "--json", env_dir=tmp_path).stdout)
    lexical_question, _ = server.service.search(QUESTION, mode="lexical", k=10)
    rank = next(h.rank for h in lexical_question if h.chunk.chunk_id == cited.chunk_id)
    assert (after["queries"], after["off_topic"]) == (2, 1)
    assert after["results"]["lexical"]["mrr@10"] == round((1 / 3 + 1 / rank) / 2, 4)
    assert after["results"]["lexical"]["abstain_off_topic"] == 1.0  # wendao does abstain on it


def test_compare_tab_shows_two_saved_runs_side_by_side(page, server):
    """Save a lexical and a hybrid run of the sample questions, then compare them in the tab."""
    from qa.compare import Contender, compare
    from qa.runstore import load_run

    page.get_by_role("tab", name="评测").click()
    page.locator("#wd-eval-modes").get_by_text("向量").click()
    page.locator("#wd-eval-modes").get_by_text("混合").click()  # lexical alone
    for name, toggle in (("lex-ui", None), ("hyb-ui", ("混合", "关键词"))):
        for label in toggle or ():
            page.locator("#wd-eval-modes").get_by_text(label).click()
        page.fill("#wd-eval-save textarea, #wd-eval-save input", name)
        page.click("#wd-eval-run")
        page.wait_for_function(f"document.querySelector('#wd-eval-status').innerText.includes('{name}')")
    choose(page, "wd-cmp-a", "lex-ui（")
    choose(page, "wd-cmp-b", "hyb-ui（")
    page.click("#wd-cmp-run")
    page.locator("#wd-cmp-status .wd-info").wait_for()
    table = page.locator("#wd-cmp-metrics")
    table.get_by_text("mrr@10").first.wait_for()
    expected = compare([Contender("lex-ui", "lexical", load_run(server.service.kb_dir, "lex-ui")),
                        Contender("hyb-ui", "hybrid", load_run(server.service.kb_dir, "hyb-ui"))])
    p_value = expected.tests[("a", "b")]["mrr@10"]["p_value"]
    assert "p 值" in table.inner_text() and f"{p_value:.4f}" in table.inner_text()
    page.locator("#wd-cmp-delta canvas, #wd-cmp-delta svg").first.wait_for()
    page.locator("#wd-cmp-curve canvas, #wd-cmp-curve svg").first.wait_for()
    first = expected.changed[0]
    question = page.locator('#wd-cmp-changed [data-testid="cell-0-1"]')  # first row, the question
    assert question.inner_text().strip() == first["question"]
    question.click()
    detail = page.locator("#wd-cmp-detail")
    detail.locator(".wd-ranking").nth(1).wait_for()
    assert first["id"] in detail.locator(".wd-question").inner_text()
    for label in ("a", "b"):  # each side lists its ranking, the gold passages marked
        items = detail.locator(f'.wd-ranking[data-run="{label}"] li')
        assert items.count() == len(first["rankings"][label])
        gold = [i for i, r in enumerate(first["rankings"][label]) if r["relevant"]]
        assert [i for i in range(items.count()) if "wd-gold" in items.nth(i).get_attribute("class")] == gold
    screenshot(page, "compare")
