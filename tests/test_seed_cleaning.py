"""Cleaning, metadata and chunking of the five bundled seed documents, and their sample queries.

Every expectation here was decided by reading the seed files (corpus/seeds/*.txt); the literal
strings are copied from them. No model is needed: documents are prepared with
``corpus.pipeline.prepare_file`` and the default ``ChunkSettings``.

Decision on the encyclopedia infobox of 002 (``中文名: / 頒布時間: / 發布單位:``): it is KEPT.
Unlike site chrome it states facts of the document itself (its name, promulgation date and
issuing body) that users ask about, in a few short lines; only the infobox's table-of-contents
line ``全文,印發的通知,`` is navigation and goes.
"""
from __future__ import annotations

import json
import re

import pytest

from corpus.chunking import ChunkSettings
from corpus.metadata import find_doc_number
from corpus.pipeline import prepare_file, prepare_text, sample_queries_path, seed_paths
from corpus.records import PreparedDocument

D0, D1, D2, D3, D4 = (
    "000_9f677896c333216d.txt",
    "001_ec1205a029dd3c90.txt",
    "002_8dac70a763d0f45c.txt",
    "003_8ebe793d199c5cdb.txt",
    "004_62d3cd685e80b562.txt",
)

# Boilerplate named by the seeds README, copied from each file: no chunk may contain any of it.
BOILERPLATE: dict[str, list[str]] = {
    D0: [
        "首页\u00a0>\u00a0四川技术学校",  # breadcrumb (no-break spaces around ">")
        "四川技术学校",
        "联系我们",
        "在线咨询:点击这里给我发消息",
        "微信号:y15982010384",  # contact footer with a WeChat id
        "y15982010384",
    ],
    D1: [
        "我要回帖",  # forum footer
        "更多关于 重庆市联合技工学校怎么样 的文章",
        "随机推荐",
    ],
    D2: [
        "全文,印發的通知,",  # infobox table of contents
        "相關詞條",
        "熱門詞條",
        "聯絡我們",
    ],
    D3: [
        "(欢迎您)",
        "繁體版 智能机器人 无障碍 关怀版 手机版",  # accessibility / version widgets
        "网站支撑IPv6",
        "政务公开",  # site navigation menus
        "市政府领导 机构职能 政府信息公开 政策文件库 政策解读 公开专题",
        "政务服务",
        "高效办成一件事 个人服务 法人服务 特色专栏 服务清单 好差评",
        "互动交流",
        "我要留言 征集调查 政策问答库 资讯发布会 发言人来了 在线访谈 政务微博微信",
        "走进重庆",
        "重庆概述 美丽重庆 巴渝学问 畅游重庆 运动赛事 特产美食",
        "当前位置",  # breadcrumb
        "政务公开>政策解读 > 部门解读",
        "字号: [小] [大] 【打印正文】",
        "分享到:",
        "完美真人",  # injected spam, standalone and inline
        "官方网站",
        "我是“渝快小宝”",  # voice-assistant widget
        "点击我,为您语音播报",
        "������...",  # mojibake line
        "\ufffd",
        "您即将离开",
        "XML 地图 | Sitemap 地图",
    ],
    D4: [
        "某某市深化产教融合实施方案.doc",  # file name of the shared document
        "本文档共6页,可阅读全部内容。",  # paid-download notice
        "原创力文档(book118)",
        "本站所有内容均由合作方或网友上传",
        "版权申诉",
        "400-050-0827",
        "查看更多",
        "PAGE",  # page markers PAGE / PAGE6
        "您可能关注的文档",  # document-sharing footer
        "文档评论(0)",
        "张秘书公文 + 关注",
        "实名认证",
        "内容提供者",
        "政府机关公文创造者20余年",
        "1亿VIP精品文档",
        "相关文档",
    ],
}

# Real content next to the boilerplate: each entry is the start of a line (or a literal run of
# lines), and the WHOLE line, to its end, must be covered by chunks.
KEPT_LINES: dict[str, list[str]] = {
    D0: [
        "崇州市职教中心政策(崇州职教新政)",  # title, right after the breadcrumb
        "崇州市职教中心政策是区域职业教育改革的重要实践样本",  # first paragraph
        "崇\t州市职教中心政策",  # the heading with the stray tab, tab included
        "政策维度核心内容实施路径量化指标",  # flattened table header and rows
        "专业动态调整机制建立产业人才需求预警系统",
        "社会培训拓展职业技能提升工程",
        "生均实训设备值¥12,800¥9,500¥15,200",
        "本地就业率89%76%82%",
        "监督保障引入第三方评估机构",
        "崇州市职教中心政策通过系统性制度创新",  # last paragraph, right before the contact footer
    ],
    D1: [
        "好奇一下:重庆联合技工学校建设的怎么样?",  # forum question: the page's own title
        "校企合作是技工教育的基本办学制度",  # first paragraph
        "●教育部等九部门《职业教育提质培优行动计划(2020—2023年)》(教职成〔20207号)",
        "邵波书记对此次双高申报工作做了任务部署",  # last paragraph, right before 我要回帖
    ],
    D2: [
        "衢州市職業教育改革實施方案",
        "為貫徹落實《國家職業教育改革實施方案》",  # first paragraph
        "• 中文名: 衢州市職業教育改革實施方案",  # infobox: kept (see module docstring)
        "• 頒布時間:2019年6月20日",
        "• 發布單位:衢州市人民政府",
        "(四)營造宣傳氛圍。",
        "現將《衢州市職業教育改革實施方案》印發給你們",
        "衢州市人民政府\n  2019年6月20日",  # signature and date, right before 相關詞條
    ],
    D3: [
        "关于《打造市域产教联合体深化现代职业教育改革实施方案》的政策解读",  # after the breadcrumb
        "来源:市教委 发布时间:2023-11-03 17:25",
        "为深入学习贯彻习大大总书记关于教育的重要论述",  # first paragraph, after 分享到:
        "一、《实施方案》的制定背景",  # heading right after a standalone spam line
        "(四)产教联合体保障实。",  # last paragraph, before the widget block
    ],
    D4: [
        "某某市深化产教融合实施方案",  # title after the PAGE markers
        "为加快推进教育链、产业链、创新链有机衔接",  # first paragraph
        "2.推进产教融合协同育人。",  # last, truncated paragraph (ends "到2023年打")
    ],
}

# Expected (title, date, 文号). None of the five states a 文号 of its own: the numbers in 001
# (教职成〔2020〕7号, its broken copy 教职成〔20207号, 川教〔2021〕24号) and 002 (國發〔2019〕4號)
# cite OTHER documents, so reporting them would mislabel these documents.
METADATA: dict[str, tuple[str, str | None, str | None]] = {
    D0: ("崇州市职教中心政策(崇州职教新政)", None, None),
    D1: ("好奇一下:重庆联合技工学校建设的怎么样?", None, None),
    D2: ("衢州市職業教育改革實施方案", "2019-06-20", None),
    D3: ("关于《打造市域产教联合体深化现代职业教育改革实施方案》的政策解读", "2023-11-03", None),
    D4: ("某某市深化产教融合实施方案", None, None),
}

# (document, text the chunk contains, the last heading levels of its path)
HEADINGS: list[tuple[str, str, list[str]]] = [
    (D0, "吸纳62家规模以上企业", ["产教融合模式创新"]),
    (D0, "数字化转型深化", ["政策迭代升级方向"]),
    (D1, "重庆市技工院校以产业需求为导向", ["校企合作“融合”起来"]),
    (D1, "打造技工教育联盟", ["校企合作“联动”起来"]),
    (D2, "1.統籌專業布局", ["三、工作任務及舉措", "(一)統籌職業教育資源。"]),
    (D2, "1.推進校企協同育人", ["三、工作任務及舉措", "(二)創新育人用人機制。"]),
    (D2, "建立以市長擔任組長", ["四、保障機制"]),
    (D3, "市教委组建起草专班", ["二、《实施方案》的制定过程"]),
    (D3, "培育建设国家级产教联合体5个", ["四、《实施方案》的特色亮点"]),
    (D4, "1.组建1个产教融合战略联盟", ["某某市深化产教融合实施方案", "二、主要任务", "(一)搭建产教融合平台"]),
    (D4, "4.强化职工在岗教育培训", ["二、主要任务", "(二)发挥企业主体作用"]),
]

# Lines that start a flattened table in 000; the table is that line and the lines after it up
# to the next blank line.
TABLE_HEADERS = [
    "政策维度核心内容实施路径量化指标",
    "评价维度崇州市职教中心四川省平均水平全国示范职教中心",
    "保障层级具体措施责任主体",
]

# A number with its decimal/thousands parts, a following % and a date/count unit glued to it.
NUMBER = re.compile(r"[¥￥]?\d+(?:[.,]\d+)*(?:%|[年月日号號个個家名所项項万萬亿億人次天]+)?")


@pytest.fixture(scope="module")
def prepared() -> dict[str, PreparedDocument]:
    return {path.name: prepare_file(path, path.stem, ChunkSettings()) for path in seed_paths()}


def _line_spans(text: str, start_of_line: str) -> list[tuple[int, int]]:
    """Spans of the lines starting with ``start_of_line`` (only the exact lines, if any is exact)."""
    spans = []
    for match in re.finditer(r"[^\n]+", text):
        stripped = match.group().strip()
        if stripped.startswith(start_of_line.strip()):
            lead = len(match.group()) - len(match.group().lstrip())
            start = match.start() + lead
            spans.append((start, start + len(stripped), stripped == start_of_line.strip()))
    if "\n" in start_of_line:
        start = text.index(start_of_line)
        spans.append((start, start + len(start_of_line), True))
    exact = [(start, end) for start, end, is_exact in spans if is_exact]
    return exact or [(start, end) for start, end, _ in spans]


def _covered(prepared_doc: PreparedDocument, start: int, end: int) -> bool:
    """Every non-space character of text[start:end] lies inside some chunk."""
    text = prepared_doc.document.text
    inside = [False] * (end - start)
    for chunk in prepared_doc.chunks:
        for index in range(max(chunk.start, start), min(chunk.end, end)):
            inside[index - start] = True
    return all(inside[i] or text[start + i].isspace() for i in range(end - start))


def test_all_five_seeds_are_bundled(prepared):
    assert sorted(prepared) == [D0, D1, D2, D3, D4]


@pytest.mark.parametrize("name", sorted(BOILERPLATE))
def test_boilerplate_is_in_no_chunk(prepared, name):
    doc = prepared[name]
    for literal in BOILERPLATE[name]:
        assert literal in doc.document.text, f"test literal {literal!r} is not in {name}"
        offenders = [c.chunk_id for c in doc.chunks if literal in c.text]
        assert not offenders, f"{literal!r} of {name} kept in {offenders}"


@pytest.mark.parametrize("name", sorted(KEPT_LINES))
def test_content_next_to_boilerplate_is_kept(prepared, name):
    """Each listed line is fully chunked (for a title repeated by the page, one copy is enough)."""
    doc = prepared[name]
    for start_of_line in KEPT_LINES[name]:
        spans = _line_spans(doc.document.text, start_of_line)
        assert spans, f"test literal {start_of_line!r} starts no line of {name}"
        assert any(_covered(doc, start, end) for start, end in spans), f"{start_of_line!r} of {name} not fully chunked"


def test_inline_spam_cuts_only_itself():
    """In 003 the spam sits in lines that go whole; inside a real paragraph only the phrase goes."""
    text = "正文第一段很长的内容,说明职业教育政策。完美真人后面仍然是正文内容,不能丢。"
    doc = prepare_text(text, "t", "t.txt", ChunkSettings())
    kept = "".join(c.text for c in doc.chunks)
    assert "完美真人" not in kept
    assert "正文第一段很长的内容" in kept and "后面仍然是正文内容,不能丢。" in kept


@pytest.mark.parametrize("name", sorted(METADATA))
def test_metadata(prepared, name):
    title, date, doc_number = METADATA[name]
    document = prepared[name].document
    assert (document.title, document.date, document.doc_number) == (title, date, doc_number)


def test_doc_number_is_the_documents_own_and_repaired():
    assert find_doc_number("关于印发方案的通知\n教职成〔20207号\n各单位:") == "教职成〔2020〕7号"
    assert find_doc_number("通知\n渝府办发〔2023〕101号") == "渝府办发〔2023〕101号"
    assert find_doc_number("发文字号:国发〔2019〕 4号") == "国发〔2019〕4号"
    assert find_doc_number("为贯彻落实《国家职业教育改革实施方案》(国发〔2019〕4号)精神") is None


@pytest.mark.parametrize(("name", "contains", "path_end"), HEADINGS)
def test_heading_paths(prepared, name, contains, path_end):
    chunks = [c for c in prepared[name].chunks if contains in c.text]
    assert chunks, f"no chunk of {name} contains {contains!r}"
    assert chunks[0].heading.split(" > ")[-len(path_end):] == path_end, chunks[0].heading


def test_bullet_title_with_year_range_is_a_heading(prepared):
    chunk = next(c for c in prepared[D1].chunks if "教育部等九部门印发" in c.text)
    assert chunk.heading.endswith("(教职成〔20207号)"), chunk.heading


@pytest.mark.parametrize("name", [D0, D1, D2, D3, D4])
def test_no_chunk_boundary_inside_a_number(prepared, name):
    doc = prepared[name]
    for match in NUMBER.finditer(doc.document.text):
        start, end = match.span()
        for chunk in doc.chunks:
            overlaps = chunk.start < end and chunk.end > start
            whole = chunk.start <= start and chunk.end >= end
            assert not overlaps or whole, f"{chunk.chunk_id} cuts {match.group()!r} at offset {start}"


def test_flattened_table_rows_stay_whole(prepared):
    doc = prepared[D0]
    text = doc.document.text
    rows = 0
    for header in TABLE_HEADERS:
        start = text.index(header)
        block_end = text.find("\n\n", start)
        for row in re.finditer(r"[^\n]+", text[start:block_end]):
            row_start, row_end = start + row.start(), start + row.end()
            holders = [c for c in doc.chunks if c.start <= row_start and c.end >= row_end]
            assert holders, f"table row {row.group()!r} is split across chunks"
            rows += 1
    assert rows == 9 + 6 + 5


# --- the sample query file ------------------------------------------------------------------


@pytest.fixture(scope="module")
def queries() -> list[dict]:
    lines = sample_queries_path().read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def test_sample_queries_shape(queries):
    on_topic = [q for q in queries if not q.get("off_topic")]
    off_topic = [q for q in queries if q.get("off_topic")]
    assert len({q["id"] for q in queries}) == len(queries)
    assert len(on_topic) >= 40 and len(off_topic) >= 6
    assert all(q["kind"] in ("exact", "paraphrase") and q["answers"] and q["relevant"] for q in on_topic)
    assert sum(q["kind"] == "paraphrase" for q in on_topic) * 2 >= len(on_topic)
    assert {name for q in on_topic for name in q["relevant"]} == {D0, D1, D2, D3, D4}
    assert all(not q.get("answers") and not q.get("relevant") for q in off_topic)


def test_sample_query_gold_strings_are_in_their_documents(queries, prepared):
    """Verbatim in the relevant seed, and whole inside one of its chunks (else no chunk can hit)."""
    texts = {path.name: path.read_text(encoding="utf-8") for path in seed_paths()}
    for query in queries:
        if query.get("off_topic"):
            continue
        for gold in query["answers"]:
            assert 2 <= len(gold) <= 15, f"{query['id']}: gold {gold!r} should be a short key fact"
            assert any(gold in texts[name] for name in query["relevant"]), f"{query['id']}: {gold!r} not verbatim"
            chunks = [c for name in query["relevant"] for c in prepared[name].chunks]
            assert any(gold in c.text for c in chunks), f"{query['id']}: {gold!r} split across chunks"


def test_sample_queries_mix_scripts(queries):
    """Some questions are in Traditional script, including ones about Simplified documents."""
    import opencc

    to_simplified = opencc.OpenCC("t2s")
    traditional = [q for q in queries if to_simplified.convert(q["question"]) != q["question"]]
    assert any(D2 in q.get("relevant", []) for q in traditional)
    assert any(q.get("relevant") and D2 not in q["relevant"] for q in traditional)
    simplified_about_002 = [q for q in queries if D2 in q.get("relevant", []) and q not in traditional]
    assert len(simplified_about_002) >= 2
