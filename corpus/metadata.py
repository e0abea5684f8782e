"""Title, publication date and document number (文号) of a cleaned document.

Only kept blocks are looked at, so breadcrumbs and menus removed by cleaning can never become
the title; text is returned as found in the original (no script conversion).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from corpus.clean import Block


@dataclass
class Metadata:
    title: str
    date: str | None = None  # "YYYY-MM-DD", "YYYY-MM" or "YYYY"
    doc_number: str | None = None


_CN_DIGITS = {"〇": 0, "○": 0, "零": 0, "一": 1, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_DATE_LABEL = (
    r"(?:发布|發布|颁布|頒布|发文|發文|成文|印发|印發|公布|公佈|出版|更新)(?:时间|時間|日期)|"
    r"(?:发布于|發佈於|發布於)|^日期"
)
_NUM_DATE = r"((?:19|20)\d{2})\s*(?:[年\-/.]\s*(\d{1,2})\s*(?:[月\-/.]\s*(\d{1,2})\s*日?)?月?)?"
_LABELLED_DATE = re.compile(rf"(?:{_DATE_LABEL})\s*[:：]?\s*{_NUM_DATE}", re.M)
_FULL_DATE = re.compile(r"(?<!\d)((?:19|20)\d{2})\s*(?:年\s*(\d{1,2})\s*月\s*(\d{1,2})\s*日|[-/.](\d{1,2})[-/.](\d{1,2})(?!\d))")
_CN_DATE = re.compile(r"([〇○零一二三四五六七八九]{4})年([一二三四五六七八九十]{1,3})月(?:([一二三四五六七八九十]{1,3})日)?")
_DOC_NUMBER = re.compile(
    r"[\u4e00-\u9fff]{1,8}\s*(?:[〔\[［(（【]\s*(?:19|20)\d{2}\s*[〕\]］)）】]\s*\d{1,4}\s*|〔\s*(?:19|20)\d{2,6}\s*)[号號]"
)
# 〔2020 7号 / 〔20207号: the closing bracket was lost (a common scraping error); the year is the
# first four digits, the serial number the rest.
_UNCLOSED_NUMBER = re.compile(r"〔((?:19|20)\d{2})(\d{1,4})([号號])$")
_DOC_NUMBER_LABEL = re.compile(r"(?:发文字号|發文字號|文号|文號)\s*[:：]?\s*")
_BOOK_TITLE = re.compile(r"《([^《》]{2,60})》")
_METADATA_LINE = re.compile(r"^(来源|來源|作者|发布|發布|时间|時間|日期|编辑|編輯|浏览|瀏覽|点击|點擊)")
_SENTENCE_PUNCT = re.compile(r"[。；;，,！!]")
_FILE_SUFFIX = re.compile(r"\.(docx?|pdf|pptx?|xlsx?|wps|txt|html?)$", re.I)


def _cn_number(text: str) -> int:
    """二十三 -> 23, 十 -> 10 (months and days only)."""
    if "十" in text:
        tens, _, units = text.partition("十")
        return (_CN_DIGITS.get(tens, 1) if tens else 1) * 10 + (_CN_DIGITS.get(units, 0) if units else 0)
    return _CN_DIGITS.get(text, 0)


def _format_date(year: str, month: str | None, day: str | None) -> str | None:
    if month is None:
        return year
    m = int(month)
    if not 1 <= m <= 12:
        return year
    if day is None:
        return f"{year}-{m:02d}"
    d = int(day)
    return f"{year}-{m:02d}-{d:02d}" if 1 <= d <= 31 else f"{year}-{m:02d}"


def find_date(text: str) -> str | None:
    """Publication date: a labelled one (发布时间:...), else a line that is only a date, else None."""
    match = _LABELLED_DATE.search(text)
    if match:
        return _format_date(*match.groups())
    for line in text.splitlines():
        line = line.strip()
        if not line or len(line) > 20:
            continue
        full = _FULL_DATE.fullmatch(line)
        if full:
            year, m1, d1, m2, d2 = full.groups()
            return _format_date(year, m1 or m2, d1 or d2)
        chinese = _CN_DATE.fullmatch(line)
        if chinese:
            year = "".join(str(_CN_DIGITS[ch]) for ch in chinese.group(1))
            day = chinese.group(3)
            return _format_date(year, str(_cn_number(chinese.group(2))), str(_cn_number(day)) if day else None)
    return None


def _normalise_doc_number(found: str) -> str:
    """Whitespace dropped and a lost closing bracket restored: 教职成〔20207号 -> 教职成〔2020〕7号."""
    number = re.sub(r"\s+", "", found)
    return _UNCLOSED_NUMBER.sub(r"〔\1〕\2\3", number)


def find_doc_number(text: str) -> str | None:
    """The document's OWN 文号: a line that is only a 文号, or one labelled 文号/发文字号.

    A 文号 inside running text, such as ``《国家职业教育改革实施方案》(国发〔2019〕4号)``, cites
    another document; reporting it as this document's number would mislabel the document, so
    such citations are not used (None when the document states no number of its own).
    """
    for line in text.splitlines():
        line = line.strip()
        if _DOC_NUMBER.fullmatch(line):
            return _normalise_doc_number(line)
        label = _DOC_NUMBER_LABEL.search(line)
        if label:
            match = _DOC_NUMBER.match(line, label.end())
            if match:
                return _normalise_doc_number(match.group())
    return None


def _is_title_like(line: str) -> bool:
    if not 2 <= len(line) <= 60 or _METADATA_LINE.match(line):
        return False
    if _SENTENCE_PUNCT.search(line) or line.endswith("。"):
        return False
    return bool(re.search(r"[^\W\d_]", line))


def find_title(texts: list[str], title_hint: str | None, fallback_title: str) -> str:
    """First heading-like block among the first few, else the page <title>, a 《name》, a fallback."""
    for line in texts[:6]:
        if _is_title_like(line):
            return _FILE_SUFFIX.sub("", line)
    if title_hint and title_hint.strip():
        return title_hint.strip()
    for line in texts[:10]:
        match = _BOOK_TITLE.search(line)
        if match:
            return match.group(1)
    return fallback_title


def extract_metadata(text: str, blocks: list[Block], title_hint: str | None, fallback_title: str) -> Metadata:
    """Title, date and 文号 from the kept blocks of ``text``."""
    texts = [" ".join(text[b.start : b.end].split()) for b in blocks]
    kept = "\n".join(texts)
    return Metadata(
        title=find_title(texts, title_hint, fallback_title),
        date=find_date(kept),
        doc_number=find_doc_number(kept),
    )
