"""Find the spans of a saved web page / document that are real content.

Cleaning never rewrites text: it returns ``Block(start, end)`` spans of the ORIGINAL text, so
every later offset (chunks, citations, highlights) is an offset into the file as read.

Rules are generic web-boilerplate heuristics (menus, breadcrumbs, widgets, footers, paid
notices, page markers, mojibake, injected spam); they err on the side of keeping text.

Decision on a stray tab inside a heading (``崇\\t州市职教中心政策``): a block must equal
``text[start:end]``, so the tab cannot be dropped from the middle of a span. Splitting the
heading into ``崇`` and ``州市...`` would break the word in both halves, so the line is kept as
ONE block with its tab; matching code should treat whitespace between CJK characters as
ignorable (the folded text keeps the tab at the same offset).
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass


@dataclass(frozen=True)
class Block:
    """A kept span ``text[start:end]``: stripped, non-empty, in document order."""

    start: int
    end: int


# --- vocabulary -----------------------------------------------------------------------------

SPAM_PHRASES = ("完美真人",)

# A line that is exactly one of these (optionally followed by a short tail) ends the content
# when little real text follows it.
FOOTER_MARKERS = (
    "我要回帖", "随机推荐", "隨機推薦", "相关文档", "相關文檔", "相关阅读", "相關閱讀", "相关文章",
    "相關文章", "相关词条", "相關詞條", "热门词条", "熱門詞條", "联系我们", "聯絡我們", "聯繫我們",
    "您可能关注的文档", "猜你喜欢", "猜你喜歡", "热门推荐", "熱門推薦", "相关推荐", "相關推薦",
    "推荐阅读", "推薦閱讀", "延伸阅读", "延伸閱讀", "文档评论", "发表评论", "發表評論", "网友评论",
    "更多关于", "上一篇", "下一篇", "关于我们", "關於我們", "免责声明", "免責聲明",
)

# Short lines containing one of these are site widgets / chrome, not content.
WIDGET_WORDS = (
    "无障碍", "無障礙", "关怀版", "關懷版", "长者模式", "長者模式", "长辈版", "適老化", "适老化",
    "字号:", "字号：", "字號:", "字號：", "打印正文", "打印本页", "打印本頁", "关闭窗口", "關閉窗口", "分享到", "扫一扫",
    "掃一掃", "繁體版", "简体版", "簡體版", "手机版", "手機版", "语音播报", "語音播報", "您即将离开",
    "您即將離開", "网站地图", "網站地圖", "sitemap", "返回顶部", "返回頂部", "收藏本站", "设为首页",
    "設為首頁", "查看更多", "点击这里", "點擊這裡", "在线咨询", "在線諮詢",
)
# Lines with two or more of these are paid-download / document-sharing-site notices.
NOTICE_WORDS = (
    "付费", "付費", "下载", "下載", "本站", "本文档", "本文檔", "版权", "版權", "侵权",
    "侵權", "vip", "举报", "舉報", "不退款", "可阅读全部内容", "仅供", "僅供", "原创力", "上传", "上傳",
    "免费阅读", "立即下载",
)
# Copyright / registration / social-account lines: boilerplate wherever they appear.
_FOOTER_LINE = re.compile(
    r"版权所有|版權所有|copyright|©|icp备|icp備|公网安备|公網安備|网站标识码|網站標識碼|"
    r"^(微信号?|微信公众号|公众号|qq群?|weixin|wechat)\s*[:：]",
    re.I,
)
# A copyright / ICP line is short; a longer line that mentions 版权所有 or © is content (a
# page without line breaks is one line: it must not go because its footer is in it).
FOOTER_LINE_MAX = 300
_BREADCRUMB = re.compile(
    r"^(\d+[.、]\s*)?(当前位置|當前位置|您的位置|您现在的位置|您現在的位置|所在位置|位置)\s*[:：]"
    r"|^(\d+[.、]\s*)?(首页|首頁|主页|主頁|home)\s*[>›»/＞]",
    re.I,
)
_CRUMB_SEP = re.compile(r"\s*[>›»＞]\s*")
_PAGE_MARKER = re.compile(
    r"^(page\s*\d*|第\s*\d+\s*页(\s*[,，/]?\s*共\s*\d+\s*页)?|[-—–]\s*\d+\s*[-—–]|"
    r"\d+\s*/\s*\d+\s*页?|page\s+\d+\s+of\s+\d+)$",
    re.I,
)
_FILENAME_LINE = re.compile(r"^[^\s/\\]{1,80}\.(docx?|pdf|pptx?|xlsx?|wps|txt|caj)$", re.I)
_MOJIBAKE_RUN = re.compile(r"\ufffd+")
_LATIN1_GARBAGE = re.compile(r"[\u0080-\u00ff\ufffd]")
_WORD = re.compile(r"\w")
_SENTENCE_PUNCT = re.compile(r"[。！？；!?;，,]")
_NUMBERED_HEADING = re.compile(
    r"^(第[一二三四五六七八九十百零〇\d]+[章节節条條编編篇部分]|[一二三四五六七八九十]+[、.．]|"
    r"[（(][一二三四五六七八九十\d]+[)）]|\d+(\.\d+)*[、.．]\s*|#{1,6}\s)"
)
_MENU_SPLIT = re.compile(r"[\s|｜·•]+")
_TOC_TOKEN = re.compile(r"[^\s,，|｜/]+")


@dataclass
class _Line:
    start: int  # offset of the stripped line in the original text
    end: int
    text: str  # stripped text
    junk: bool = False


def _lines(text: str) -> list[_Line]:
    lines = []
    for match in re.finditer(r"[^\n]+", text):
        raw = match.group()
        stripped = raw.strip()
        if not stripped:
            continue
        lead = len(raw) - len(raw.lstrip())
        start = match.start() + lead
        lines.append(_Line(start, start + len(stripped), stripped))
    return lines


def _paragraph_gap(text: str, end: int, start: int) -> bool:
    """True when two lines are separated by at least one empty line."""
    return text[end:start].count("\n") >= 2


# --- line classifiers -----------------------------------------------------------------------


def _is_menu_line(line: str) -> bool:
    """Many short tokens and no sentence punctuation: a navigation bar."""
    if _SENTENCE_PUNCT.search(line) or len(line) > 80:
        return False
    tokens = [t for t in _MENU_SPLIT.split(line) if t]
    return len(tokens) >= 3 and all(len(t) <= 8 for t in tokens)


def _is_breadcrumb(line: str) -> bool:
    if _BREADCRUMB.search(line):
        return True
    if len(line) > 80:  # checked before splitting: a one-line page of megabytes is not split
        return False
    parts = _CRUMB_SEP.split(line)
    return len(parts) >= 3 and all(0 < len(p) <= 20 for p in parts)


def _is_widget(line: str) -> bool:
    lowered = line.lower()
    return len(line) <= 40 and any(word in lowered for word in WIDGET_WORDS)


def _is_notice(line: str) -> bool:
    lowered = line.lower()
    return len(line) <= 300 and sum(word in lowered for word in NOTICE_WORDS) >= 2


def _is_mojibake(line: str) -> bool:
    garbage = len(_LATIN1_GARBAGE.findall(line))
    return garbage >= 3 and garbage >= 0.3 * len(line)


def _is_junk_line(line: str, spam: set[str]) -> bool:
    return (
        line in spam
        or _is_breadcrumb(line)
        or _is_menu_line(line)
        or _is_widget(line)
        or _is_notice(line)
        or _is_mojibake(line)
        or bool(_PAGE_MARKER.match(line))
        or bool(_FILENAME_LINE.match(line))
        or (len(line) <= FOOTER_LINE_MAX and bool(_FOOTER_LINE.search(line)))
        or not _WORD.search(_MOJIBAKE_RUN.sub("", line))
    )


def _is_short_plain(line: str) -> bool:
    return len(line) <= 20 and not re.search(r"[。！？!?]", line)


def _is_footer_marker(line: str) -> bool:
    for marker in FOOTER_MARKERS:
        if line.startswith(marker) and len(line) <= len(marker) + 30:
            return True
    return False


def detect_spam_phrases(text: str, lines: list[_Line] | None = None) -> set[str]:
    """Injected phrases: the explicit list, plus short lines that recur on their own and inline.

    A real heading is not repeated as a standalone line several times while also being glued
    into unrelated lines; an injected SEO phrase is.
    """
    lines = _lines(text) if lines is None else lines
    spam = {p for p in SPAM_PHRASES if p in text}
    standalone = Counter(line.text for line in lines if 2 <= len(line.text) <= 10)
    for phrase, count in standalone.items():
        if count < 2 or _NUMBERED_HEADING.match(phrase) or not re.search(r"[^\W\d_]", phrase):
            continue
        if text.count(phrase) >= count + 1 and text.count(phrase) >= 3:
            spam.add(phrase)
    return spam


def _is_toc_line(line: str, standalone: set[str]) -> bool:
    """A line that only lists other standalone lines of the document (a table of contents).

    Tokens are read one at a time and the first non-heading ends it: a huge line costs nothing.
    """
    count = 0
    for match in _TOC_TOKEN.finditer(line):
        if match.group() not in standalone or match.group() == line:
            return False
        count += 1
    return count >= 2


# --- main -----------------------------------------------------------------------------------


def _mark_junk_groups(text: str, lines: list[_Line]) -> None:
    """Within a run of adjacent lines, junk that dominates takes its short neighbours along.

    A site header is a run of menu bars interleaved with short section names; the section
    names alone look harmless, the run as a whole does not.
    """
    group: list[_Line] = []

    def flush() -> None:
        junk = sum(line.junk for line in group)
        if junk and junk * 2 >= len(group) and all(line.junk or _is_short_plain(line.text) for line in group):
            for line in group:
                line.junk = True
        group.clear()

    for line in lines:
        if group and _paragraph_gap(text, group[-1].end, line.start):
            flush()
        group.append(line)
    flush()


def _cut_footer(text: str, lines: list[_Line]) -> None:
    """Drop a footer marker and everything after it, if nothing substantial follows it."""
    limit = max(1000, int(0.3 * len(text)))
    for index, line in enumerate(lines):
        if line.junk or not _is_footer_marker(line.text):
            continue
        if len(text) - line.start > limit:
            continue
        rest = lines[index:]
        if any(len(other.text) >= 80 and re.search(r"[。！？]", other.text) for other in rest):
            continue
        for other in rest:
            other.junk = True
        return


def _drop_duplicate_titles(text: str, lines: list[_Line]) -> None:
    """A short line repeated by the next kept line (page title echoed by the article).

    The earlier copy goes: the later one sits next to the content it introduces.
    """
    previous: _Line | None = None
    for line in lines:
        if line.junk:
            continue
        if previous is not None and len(line.text) <= 60 and line.text == previous.text:
            previous.junk = True
        previous = line


def _inline_spans(line: _Line, text: str, inline: re.Pattern[str] | None) -> list[Block]:
    """Split a kept line around inline junk (spam phrases, U+FFFD runs); strip each piece."""
    pieces: list[tuple[int, int]] = []
    cursor = line.start
    if inline is not None:
        for match in inline.finditer(text, line.start, line.end):
            pieces.append((cursor, match.start()))
            cursor = match.end()
    pieces.append((cursor, line.end))
    blocks = []
    for start, end in pieces:
        segment = text[start:end]
        stripped = segment.strip()
        if not stripped or not _WORD.search(stripped):
            continue
        lead = len(segment) - len(segment.lstrip())
        blocks.append(Block(start + lead, start + lead + len(stripped)))
    return blocks


def clean(text: str) -> list[Block]:
    """Spans of ``text`` that are content, one per kept line (or line piece around inline junk)."""
    lines = _lines(text)
    if not lines:
        return []
    spam = detect_spam_phrases(text, lines)
    standalone = {line.text for line in lines if len(line.text) <= 20}
    for line in lines:
        line.junk = _is_junk_line(line.text, spam) or _is_toc_line(line.text, standalone)
    _mark_junk_groups(text, lines)
    _cut_footer(text, lines)
    _drop_duplicate_titles(text, lines)

    alternatives = [re.escape(p) for p in sorted(spam, key=len, reverse=True)] + [_MOJIBAKE_RUN.pattern]
    inline = re.compile("|".join(alternatives))
    blocks: list[Block] = []
    for line in lines:
        if not line.junk:
            blocks.extend(_inline_spans(line, text, inline))
    return blocks
