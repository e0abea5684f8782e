"""Every chunk's offsets reproduce its text exactly, from the file as written on disk.

Offsets refer to ``Document.text``: the decoded file with its newlines normalised (CRLF, CR,
U+2028 and U+2029 become \\n) and a byte-order mark dropped, nothing else changed. The product
stores ``Document.text`` in the index so citations always resolve against it; these tests
re-decode each file independently and check both.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corpus.bounded import OVERSHOOT, TOKEN
from corpus.chunking import ChunkSettings
from corpus.errors import IngestError
from corpus.pipeline import prepare_file, seed_paths
from corpus.sentences import MAX_SENTENCE_CHARS

_NEWLINES = re.compile(r"\r\n|\r|\u2028|\u2029")

WORDS = list(
    "数据 安全 管理 办法 规定 职业 教育 学校 企业 政府 部门 人员 工作 制度 建设 发展 改革 推进 加强 落实 "
    "保障 服务 培训 资金 项目 标准 要求 措施 责任 监督 检查 评估 考核 技术 人才 专业 课程 实训 基地 合作 "
    "產教 融合 職業 學校 資料 處理 臺灣 香港 中心 市场 经济 社会 国家 地方 省级 市级 区县 单位 组织 个人".split()
)
CN_NUMBERS = list("一二三四五六七八九十")
BOILERPLATE = [
    "首页 > 新闻中心 > 正文",
    "当前位置：首页 > 政务公开",
    "版权所有 © 2024 某某市人民政府 京ICP备12345678号",
    "分享到：微信 微博 QQ空间",
    "打印本页 关闭窗口",
    "上一篇：关于开展安全检查的通知",
    "第 3 页 共 12 页",
    "- 5 -",
]

word = st.sampled_from(WORDS)
number = st.one_of(
    st.integers(0, 10**6).map(str),
    st.builds(lambda a, b: f"{a}.{b}%", st.integers(0, 99), st.integers(0, 9)),
    st.builds(lambda y, m, d: f"{y}年{m}月{d}日", st.integers(1990, 2030), st.integers(1, 12), st.integers(1, 28)),
    st.builds(lambda n: f"{n:,}", st.integers(1000, 10**9)),
    st.sampled_from(["AI", "ICT", "Python", "e.g. test", "GB/T 22239-2019"]),
)
clause = st.lists(st.one_of(word, word, word, number), min_size=1, max_size=8).map("".join)
sentence = st.builds(
    lambda parts, end: "，".join(parts) + end,
    st.lists(clause, min_size=1, max_size=5),
    st.sampled_from(["。", "。", "；", "！", "？", "…", "。”", ".", "", "：", "；）"]),
)
paragraph = st.builds(
    lambda indent, sentences: indent + "".join(sentences),
    st.sampled_from(["", "", "\u3000\u3000", "  ", "\t"]),
    st.lists(sentence, min_size=1, max_size=10),
)
title = st.lists(word, min_size=1, max_size=5).map("".join)
heading = st.one_of(
    st.builds(lambda n, t: f"{n}、{t}", st.sampled_from(CN_NUMBERS), title),
    st.builds(lambda n, t: f"（{n}）{t}", st.sampled_from(CN_NUMBERS), title),
    st.builds(lambda n, t: f"{n}. {t}", st.integers(1, 30), title),
    st.builds(lambda n, t: f"{n}．{t}", st.integers(1, 30), title),
    st.builds(lambda n, s: f"第{n}条 {s}", st.sampled_from(CN_NUMBERS), sentence),
    st.builds(lambda n, t: f"第{n}章 {t}", st.sampled_from(CN_NUMBERS), title),
    st.builds(lambda level, t: f"{'#' * level} {t}", st.integers(1, 3), title),
)
table = st.lists(st.lists(st.one_of(word, number), min_size=2, max_size=6).map("\t".join), min_size=1, max_size=6).map(
    "\n".join
)
unsplittable = st.one_of(  # no separator at all: cut at tabs, else between tokens (700 digits: hard cut)
    st.integers(50, 700).map(lambda n: ("1234567890" * 70)[:n]),
    st.lists(word, min_size=20, max_size=150).map("\t".join),
)
block = st.one_of(paragraph, paragraph, paragraph, heading, heading, table, st.sampled_from(BOILERPLATE), unsplittable)
line_break = st.sampled_from(["\n", "\n", "\n\n", "\r\n", "\r\n\r\n", "\r", "\n \n", "\u2028", "\n\u3000\n"])


@st.composite
def documents(draw) -> str:
    blocks = draw(st.lists(block, min_size=1, max_size=30))
    text = ""
    for item in blocks:
        text += item.replace("\n", draw(line_break)) + draw(line_break)
    return draw(st.sampled_from(["", "\n", "  \r\n"])) + text


def check_chunks(path: Path, encoding: str, chunking: ChunkSettings) -> None:
    """The invariants of one prepared file, against an independent decoding of its bytes."""
    prepared = prepare_file(path, path.name, chunking)
    expected = _NEWLINES.sub("\n", path.read_bytes().decode(encoding).removeprefix("\ufeff"))
    document, chunks = prepared.document, prepared.chunks
    assert document.text == expected
    assert chunks, "a document with content has chunks"
    for index, chunk in enumerate(chunks):
        assert chunk.text == expected[chunk.start : chunk.end] == document.text[chunk.start : chunk.end]
        assert chunk.text and chunk.text == chunk.text.strip()
        assert chunk.chunk_id == f"{path.name}#{index}" and chunk.doc_id == path.name
        # sentence units: inside the chunk, in order, disjoint, stripped, never empty
        assert chunk.sentences, "every chunk has at least one sentence unit (it carries its vector)"
        previous_end = chunk.start
        for start, end in chunk.sentences:
            assert previous_end <= start < end <= chunk.end
            sentence = document.text[start:end]
            assert sentence == sentence.strip()
            assert end - start <= MAX_SENTENCE_CHARS + OVERSHOOT
            previous_end = end
        assert len(chunk.text) <= chunking.size + OVERSHOOT, f"chunk {chunk.start}:{chunk.end} is {len(chunk.text)} long"
        if len(chunk.text) > chunking.size:  # only to keep one number or word whole, the one at its end
            assert any(m.start() < chunking.size < m.end() == len(chunk.text) for m in TOKEN.finditer(chunk.text)), chunk.text
    boundaries = {offset for chunk in chunks for offset in (chunk.start, chunk.end)}
    for token in TOKEN.finditer(expected):  # numbers and Latin words are never cut
        if len(token.group()) <= OVERSHOOT:
            assert not any(token.start() < b < token.end() for b in boundaries), f"{token.group()!r} was cut"
    for before, after in zip(chunks, chunks[1:]):
        assert before.end < after.end
        if chunking.overlap == 0:
            assert before.end <= after.start, "chunks overlap"
        else:  # with overlap, langchain can emit a short chunk and then one that starts with it
            assert before.start <= after.start


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(
    text=documents(),
    encoding=st.sampled_from(["utf-8", "utf-8-sig", "gb18030", "utf-16"]),
    suffix=st.sampled_from([".txt", ".md"]),
    size=st.integers(120, 500),
    overlap=st.sampled_from([0, 0, 0, 40]),
)
def test_generated_documents_chunk_offsets_reproduce_text(tmp_path: Path, text: str, encoding: str, suffix: str, size: int, overlap: int):
    path = tmp_path / f"doc{suffix}"
    path.write_bytes(text.encode(encoding))
    try:
        check_chunks(path, encoding, ChunkSettings(size=size, overlap=overlap))
    except IngestError as error:  # only a document that is all boilerplate may be refused
        assert "no content left" in error.reason, error


@pytest.mark.parametrize("seed", seed_paths(), ids=lambda p: p.name)
@pytest.mark.parametrize(("encoding", "newline"), [("utf-8", "\n"), ("gb18030", "\r\n"), ("utf-16", "\r\n")])
def test_seed_files_chunk_offsets_reproduce_text(tmp_path: Path, seed: Path, encoding: str, newline: str):
    text = seed.read_text(encoding="utf-8").replace("\n", newline)
    path = tmp_path / seed.name
    path.write_bytes(text.encode(encoding))
    for chunking in (ChunkSettings(), ChunkSettings(size=150, overlap=30)):
        check_chunks(path, encoding, chunking)
