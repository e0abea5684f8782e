"""Reading real files: encodings, formats, and a clear IngestError for every kind of bad file."""
from __future__ import annotations

import codecs
import functools
import io
import os
import random
import tracemalloc
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corpus.errors import Fix, IngestError
from corpus.loaders import decode_bytes, load_file
from corpus.pipeline import seed_paths

ZH = "第一条 为了规范数据处理活动，保障数据安全，制定本办法。\n一、总体要求\n各地区要加强组织领导，确保各项措施落实到位。\n"
# Traditional text with 碁 銹 裏 墻 恒: in cp950 (what Big5 files use in practice) but not in Big5 proper.
ZH_TRADITIONAL = "第一條 為了規範資料處理活動，保障資料安全，制定本辦法。\n裏面記載 碁 銹 墻 恒 等字。\n"


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("name", "data", "expected", "encoding"),
    [
        ("utf8.txt", ZH.encode("utf-8"), ZH, "utf-8"),
        ("utf8-bom.txt", codecs.BOM_UTF8 + ZH.encode("utf-8"), ZH, "utf-8"),
        ("gbk.txt", ZH.encode("gbk"), ZH, "gb18030"),
        ("gb18030.txt", (ZH + "扩展B区：𠀀𠀁\n").encode("gb18030"), ZH + "扩展B区：𠀀𠀁\n", "gb18030"),
        ("big5.txt", ZH_TRADITIONAL.encode("cp950"), ZH_TRADITIONAL, "cp950"),
        ("utf16le-bom.txt", codecs.BOM_UTF16_LE + ZH.encode("utf-16-le"), ZH, "utf-16-le"),
        ("utf16be-bom.txt", codecs.BOM_UTF16_BE + ZH.encode("utf-16-be"), ZH, "utf-16-be"),
        ("utf16le.txt", ZH.encode("utf-16-le"), ZH, "utf-16-le"),
        ("utf16be.txt", ZH.encode("utf-16-be"), ZH, "utf-16-be"),
        ("english-utf16be.txt", "Plain English text.\nSecond line.\n".encode("utf-16-be"), "Plain English text.\nSecond line.\n", "utf-16-be"),
        ("crlf.txt", ZH.replace("\n", "\r\n").encode("utf-8"), ZH, "utf-8"),
        ("cr.txt", ZH.replace("\n", "\r").encode("gbk"), ZH, "gb18030"),
        ("notes.md", ("# 标题\n\n" + ZH).encode("utf-8"), "# 标题\n\n" + ZH, "utf-8"),
    ],
)
def test_text_encodings_decode_exactly(tmp_path: Path, name: str, data: bytes, expected: str, encoding: str):
    loaded = load_file(write(tmp_path / name, data))
    assert loaded.text == expected  # BOM dropped, newlines normalised to \n, nothing else changed
    assert loaded.encoding == encoding
    assert loaded.size == len(data)
    assert loaded.format == ("md" if name.endswith(".md") else "txt")


def test_big5_characters_missing_from_big5_proper_survive(tmp_path: Path):
    data = ZH_TRADITIONAL.encode("cp950")
    with pytest.raises(UnicodeDecodeError):
        data.decode("big5")  # the file really needs the cp950 superset
    assert "碁 銹 墻 恒" in load_file(write(tmp_path / "tw.txt", data)).text


SEED_TEXT = "\n".join(path.read_text(encoding="utf-8") for path in seed_paths())


@functools.cache
def _s2t():
    import opencc

    return opencc.OpenCC("s2t")  # made once: building it took most of each example's time


def to_traditional(text: str) -> str:
    return _s2t().convert(text)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    start=st.integers(0, len(SEED_TEXT) - 3000),
    length=st.integers(16, 3000),
    codec=st.sampled_from(["gb18030", "cp950"]),
)
def test_legacy_codec_detection_on_real_text(start: int, length: int, codec: str):
    """Any 16+ character stretch of the seed documents in GBK or Big5 decodes to the same text."""
    snippet = SEED_TEXT[start : start + length]
    if codec == "cp950":
        snippet = to_traditional(snippet)
    try:
        data = snippet.encode(codec)
        data.decode("utf-8")
    except UnicodeEncodeError:
        return  # a character the codec cannot hold: such a file cannot exist
    except UnicodeDecodeError:
        text, encoding = decode_bytes(data, "snippet.txt")
        assert (text, encoding) == (data.decode(codec), codec)


def test_html_main_content_and_title(tmp_path: Path):
    html = """<!doctype html><html><head><meta charset="gb18030"><title>关于加强数据安全管理的通知 - 某某市人民政府网</title></head>
    <body><nav><ul><li><a href="/">网站首页</a></li><li><a href="/gk">政务公开</a></li><li><a href="/hd">互动交流</a></li></ul></nav>
    <div class="content"><p>各区县人民政府，市政府各部门：</p>
    <p>为了规范数据处理活动，保障数据安全，促进数据依法合理有效利用，现就加强数据安全管理有关事项通知如下。</p>
    <p>一、各单位要建立健全数据安全管理制度，明确数据安全负责人和管理机构，落实数据安全保护责任。</p>
    <table><tr><td>项目</td><td>金额</td></tr><tr><td>专项资金</td><td>120万元</td></tr></table></div>
    <footer><p>版权所有 © 2024 某某市人民政府办公室 京ICP备12345678号</p><p>联系我们 | 网站地图</p></footer></body></html>"""
    loaded = load_file(write(tmp_path / "notice.html", html.encode("gb18030")))
    assert loaded.format == "html"
    assert loaded.title_hint == "关于加强数据安全管理的通知"  # <title>, site name dropped
    assert "一、各单位要建立健全数据安全管理制度" in loaded.text
    assert "120万元" in loaded.text  # tables are kept
    for chrome in ("网站首页", "政务公开", "版权所有", "ICP备", "网站地图"):
        assert chrome not in loaded.text


def test_pdf_with_cjk_font_extracts_the_chinese(tmp_path: Path):
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.pdfgen import canvas

    lines = ["数据安全管理办法", "第一条 为了规范数据处理活动，保障数据安全，制定本办法。", "第二条 本办法自2024年3月1日起施行。"]
    path = tmp_path / "rules.pdf"
    pdfmetrics.registerFont(UnicodeCIDFont("STSong-Light"))
    pdf = canvas.Canvas(str(path))
    pdf.setFont("STSong-Light", 14)
    for number, line in enumerate(lines):
        pdf.drawString(72, 800 - 24 * number, line)
    pdf.showPage()
    pdf.setFont("STSong-Light", 14)
    pdf.drawString(72, 800, "第三条 第二页：预算120万元，占比12.5%。")
    pdf.save()
    loaded = load_file(path)
    assert (loaded.format, loaded.encoding) == ("pdf", "binary")
    assert loaded.text.split("\n") == [*lines, "", "第三条 第二页：预算120万元，占比12.5%。"]


def test_docx_paragraphs_and_table_in_order(tmp_path: Path):
    import docx

    document = docx.Document()
    document.add_heading("数据安全管理办法", level=1)
    document.add_paragraph("第一条 为了规范数据处理活动，制定本办法。")
    table = document.add_table(rows=2, cols=3)
    for row, values in zip(table.rows, [("项目", "金额", "备注"), ("专项资金", "120万元", "")]):
        for cell, value in zip(row.cells, values):
            cell.text = value
    document.add_paragraph("第二条 本办法自发布之日起施行。")
    path = tmp_path / "rules.docx"
    document.save(str(path))
    loaded = load_file(path)
    assert loaded.text.split("\n") == [
        "数据安全管理办法",
        "第一条 为了规范数据处理活动，制定本办法。",
        "项目\t金额\t备注",
        "专项资金\t120万元\t",
        "第二条 本办法自发布之日起施行。",
    ]


def _png_bytes() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def _zip_without_docx_parts() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("readme.txt", "not a word document")
    return buffer.getvalue()


BAD_FILES = [
    ("empty.txt", b"", "empty file"),
    ("blank.txt", b" \r\n\t\n  ", "no text"),
    ("random.txt", random.Random(7).randbytes(4000), "binary"),
    ("controls.txt", bytes(range(1, 9)) * 100, "binary file (control characters)"),  # valid UTF-8
    ("noise.txt", bytes(b or 1 for b in random.Random(9).randbytes(4000)), "binary or undecodable"),  # no NULs
    ("photo.txt", None, "binary"),  # a real PNG renamed
    ("latin1.txt", "café crème brûlée".encode("cp1252"), "not UTF-8, GB18030/GBK, Big5 or UTF-16"),
    ("broken.pdf", b"%PDF-1.4\n1 0 obj << /Type /Catalog >> garbage", "corrupt or unreadable PDF"),
    ("image.pdf", None, "corrupt or unreadable PDF"),  # a PNG renamed
    ("random.docx", random.Random(8).randbytes(2000), "not a zip package"),
    ("other.docx", None, "corrupt or invalid .docx"),  # a zip that is not a Word document
    ("sheet.xlsx", b"PK\x03\x04", "unsupported file type '.xlsx'"),
    ("README", "中文说明".encode(), "unsupported file type '(none)'"),
]


@pytest.mark.parametrize(("name", "data", "reason"), BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_bad_file_gives_ingest_error_naming_file_and_reason(tmp_path: Path, name: str, data: bytes | None, reason: str):
    if data is None:
        data = _zip_without_docx_parts() if name.endswith(".docx") else _png_bytes()
    path = write(tmp_path / name, data)
    with pytest.raises(IngestError) as caught:
        load_file(path)
    assert caught.value.source == str(path)
    assert reason in caught.value.reason
    assert str(caught.value).startswith(f"{path}: ")


def test_directory_missing_path_and_pipe(tmp_path: Path):
    folder = tmp_path / "folder.txt"
    folder.mkdir()
    pipe = tmp_path / "pipe.txt"
    os.mkfifo(pipe)  # opening it would block forever: must be refused without reading
    for path, reason in [(folder, "is a directory"), (tmp_path / "gone.txt", "no such file"), (pipe, "not a regular file")]:
        with pytest.raises(IngestError, match="^" + str(path).replace(".", r"\.") + ": " + reason):
            load_file(path)


def test_size_limit_is_checked_before_reading(tmp_path: Path):
    path = tmp_path / "big.txt"
    with path.open("wb") as handle:  # sparse: 30 MB on paper, nothing on disk
        handle.truncate(30_000_000)
    tracemalloc.start()
    with pytest.raises(IngestError) as caught:
        load_file(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1_000_000, "the file was read before its size was checked"
    assert caught.value.reason == "file too large: 30.0 MB is over the 20 MB limit"
    assert caught.value.fix == Fix("raise_size_limit")
    small = write(tmp_path / "small.txt", ZH.encode())
    with pytest.raises(IngestError, match="over the 0.0001 MB limit"):
        load_file(small, max_bytes=100)
    assert load_file(small, max_bytes=len(ZH.encode())).text == ZH


@pytest.mark.parametrize(
    ("text", "codec"),
    [("职业\t职业\n", "gb18030"), ("  \r\n职业\n", "gb18030"), ("Привет, мир. Это тест.", "utf-8"), ("Ça va très bien.", "utf-8")],
)
def test_short_legacy_text_that_is_also_valid_utf8_reads_as_chinese(tmp_path: Path, text: str, codec: str):
    """GB18030 职业 is valid UTF-8 (ְҵ); short runs are read the way that looks like text."""
    path = tmp_path / "short.txt"
    path.write_bytes(text.encode(codec))
    loaded = load_file(path)
    assert loaded.text == text.replace("\r\n", "\n") and loaded.encoding == codec
