"""Read a file into text: decoding, format extraction and clear refusals.

Every offset later in the pipeline refers to ``LoadedText.text``, so this is the one place
where newlines are normalised (CRLF, CR, U+2028/U+2029 -> LF); nothing else about the text is
changed. A file is checked (regular file, supported type, size limit) before a byte is read, and
never more than the limit is read, so a huge or special file cannot exhaust memory or block.
"""
from __future__ import annotations

import codecs
import errno
import hashlib
import importlib
import io
import os
import re
import stat
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import BinaryIO

from corpus.errors import Fix, IngestError
from corpus.layout import Page
from corpus.pages import IMAGE_SUFFIXES, PageOptions, read_image, read_pdf

SUPPORTED_SUFFIXES: dict[str, str] = {
    ".txt": "txt",
    ".md": "md",
    ".markdown": "md",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
    ".docx": "docx",
    **{suffix: "image" for suffix in IMAGE_SUFFIXES},
}
PAGED_FORMATS = ("pdf", "image")  # read page by page, each character keeping its box on its page
# 20 MB of Chinese text is ~7 million characters, ~23,000 chunks: 15-20 minutes of embedding on
# a laptop CPU. Larger files are refused with a message saying how to raise the limit.
DEFAULT_MAX_MB = 20.0
DEFAULT_MAX_BYTES = int(DEFAULT_MAX_MB * 1_000_000)

_BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
# Legacy Chinese codecs, mainland first: GB18030 is a superset of GB2312/GBK, cp950 and
# big5hkscs are supersets of Big5 (cp950 has characters such as 碁 銹 裏 that Big5 lacks).
_LEGACY_CODECS = ("gb18030", "cp950", "big5hkscs")
_UTF16 = ("utf-16-le", "utf-16-be")
_PLAIN = re.compile(r"[\t\n\r\x20-\x7e\u2000-\u206f\u3000-\u303f\uff00-\uffef]")
_MIN_TEXT_SCORE = 0.5
_CLEAR_TEXT_SCORE = 0.9
_FEW_NON_ASCII = 8  # non-ASCII characters in a UTF-8 reading short enough to be a legacy codec's by chance
_SCORE_SAMPLE = 20_000
_NEWLINES = re.compile(r"\r\n?|\u2028|\u2029")
_UNDECODABLE = "binary or undecodable file: not UTF-8, GB18030/GBK, Big5 or UTF-16 text"


@dataclass
class LoadedText:
    """The text of one file, with what the Document record needs to know about the file."""

    text: str
    format: str
    encoding: str
    size: int
    sha256: str
    title_hint: str | None = None
    pages: list[Page] | None = None  # PDFs and images: where each character stands on its page
    data: bytes | None = None  # PDFs and images: the file itself, kept so its pages can be shown


def normalise_newlines(text: str) -> str:
    """CRLF/CR/Unicode line separators -> \\n, so offsets do not depend on the platform."""
    return _NEWLINES.sub("\n", text)


def supported_list() -> str:
    return ", ".join(sorted(SUPPORTED_SUFFIXES))


def too_large(path: Path, size: int, max_bytes: int) -> IngestError:
    reason = f"file too large: {size / 1e6:.1f} MB is over the {max_bytes / 1e6:g} MB limit"
    return IngestError(str(path), reason, Fix("raise_size_limit"))


def check_file(path: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> str:
    """The file's format, after the checks that need no reading; IngestError says what is wrong."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise IngestError(str(path), _missing_reason(path)) from None
    except OSError as exc:
        raise IngestError(str(path), f"cannot access file: {exc.strerror or exc}") from exc
    if stat.S_ISDIR(info.st_mode):
        raise IngestError(str(path), "is a directory, expected a file")
    if not stat.S_ISREG(info.st_mode):
        raise IngestError(str(path), "not a regular file (a pipe, socket or device), cannot be read as a document")
    fmt = SUPPORTED_SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise IngestError(
            str(path), f"unsupported file type {path.suffix or '(none)'!r}; supported: {supported_list()}"
        )
    if info.st_size == 0:
        raise IngestError(str(path), "empty file (0 bytes)")
    if info.st_size > max_bytes:
        raise too_large(path, info.st_size, max_bytes)
    return fmt


@contextmanager
def _opened(path: Path) -> Iterator[BinaryIO]:
    """Open for reading: permission and I/O problems become an IngestError naming the file."""
    try:
        with path.open("rb") as handle:
            yield handle
    except PermissionError as exc:
        raise IngestError(str(path), "permission denied: the file is not readable by this user") from exc
    except OSError as exc:
        raise IngestError(str(path), f"cannot read file: {exc.strerror or exc}") from exc


def _read_bytes(path: Path, max_bytes: int) -> bytes:
    """At most ``max_bytes`` (a file that grew since it was checked is refused, not read whole)."""
    with _opened(path) as handle:
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise too_large(path, path.stat().st_size, max_bytes)
    if not data:
        raise IngestError(str(path), "empty file (0 bytes)")
    return data


def file_sha256(path: Path) -> str:
    """Content hash of a checked file, streamed: how unchanged files are recognised and skipped."""
    digest = hashlib.sha256()
    with _opened(path) as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@lru_cache(maxsize=1)
def _common_hanzi() -> frozenset[str]:
    """GB2312 level 1: the 3,755 most used hanzi (Traditional text is folded to Simplified first)."""
    pairs = [(lead, trail) for lead in range(0xB0, 0xD8) for trail in range(0xA1, 0xFF) if (lead, trail) <= (0xD7, 0xF9)]
    return frozenset(bytes(b for pair in pairs for b in pair).decode("gb2312"))


def text_score(text: str) -> float:
    """Share of characters that are common hanzi, ASCII or CJK punctuation.

    A wrong codec turns Chinese into rare characters, kana and symbols, so the right
    decoding of real text scores near 1 and a wrong one far lower.
    """
    from corpus.folding import fold

    sample = fold(text[:_SCORE_SAMPLE])
    if not sample:
        return 0.0
    common = _common_hanzi()
    return sum(1 for ch in sample if ch in common or _PLAIN.match(ch)) / len(sample)


def _strict(data: bytes, encoding: str) -> str | None:
    try:
        return data.decode(encoding)
    except (UnicodeDecodeError, LookupError):
        return None


def _best_decoding(data: bytes, encodings: tuple[str, ...], source: str, reason: str) -> tuple[str, str]:
    """The strict decoding that reads most like text (first listed wins a tie)."""
    best: tuple[float, str, str] | None = None
    for encoding in encodings:
        text = _strict(data, encoding)
        if text is not None and (score := text_score(text)) > (best[0] if best else -1):
            best = (score, text, encoding)
    if best is None or best[0] < _MIN_TEXT_SCORE:
        raise IngestError(source, reason)
    return best[1], best[2]


def decode_bytes(data: bytes, source: str) -> tuple[str, str]:
    """Return (text, encoding): BOM, else UTF-16 if NUL bytes, else UTF-8, else GB18030 or Big5."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            text = _strict(data, encoding)
            if text is None or _looks_binary(text):
                raise IngestError(source, f"binary or corrupt file: not valid {encoding} text after its byte-order mark")
            return text.lstrip("\ufeff"), encoding.removesuffix("-sig")
    if b"\x00" in data:  # text in UTF-8 or a legacy codec never has NUL bytes; UTF-16 does
        return _best_decoding(data, _UTF16, source, "binary file (contains NUL bytes), not text")
    text = _strict(data, "utf-8")
    if text is None:
        return _best_decoding(data, _LEGACY_CODECS, source, _UNDECODABLE)
    wide = "".join(ch for ch in text if ord(ch) > 127)
    if 0 < len(wide) <= _FEW_NON_ASCII and text_score(wide) < _MIN_TEXT_SCORE:
        # A few GB18030/Big5 characters can also be valid UTF-8 ("职业" reads as ְҵ); longer
        # legacy text practically never is, so only such short runs are read again, and the
        # legacy reading wins only when its non-ASCII characters are clearly Chinese.
        try:
            legacy, encoding = _best_decoding(data, _LEGACY_CODECS, source, _UNDECODABLE)
        except IngestError:
            legacy = None
        if legacy is not None and text_score("".join(ch for ch in legacy if ord(ch) > 127)) >= _CLEAR_TEXT_SCORE:
            return legacy, encoding
    if _looks_binary(text):
        raise IngestError(source, "binary file (control characters), not text")
    return text, "utf-8"


def _looks_binary(text: str) -> bool:
    """Control characters other than whitespace mean the bytes were not text at all."""
    sample = text[:_SCORE_SAMPLE]
    controls = sum(1 for ch in sample if ord(ch) < 32 and ch not in "\t\n\r\f\v")
    return controls > max(2, len(sample) // 100)


def _backend(module: str, fmt: str, source: str) -> ModuleType:
    """Import a format's extraction library; a broken install fails this file, not the batch.

    (A new venv's pip 23.2 once skipped ``lxml[html_clean]``, so ``import trafilatura`` raised
    and every HTML file took its whole batch down.)
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise IngestError(
            source, f"cannot read {fmt} files: the library {module!r} failed to import ({exc}); reinstall wendao"
        ) from None


def _html_to_text(raw: str, source: str) -> tuple[str, str | None]:
    """trafilatura's main-content extraction (tables kept), plain tag stripping as a fallback.

    The title is trafilatura's: a page's single <h1>, else its <title> without the site name.
    """
    trafilatura = _backend("trafilatura", "HTML", source)

    try:
        text = trafilatura.extract(
            raw,
            output_format="txt",
            include_tables=True,
            include_comments=False,
            include_links=False,
            favor_recall=True,
            deduplicate=False,
        )
        metadata = trafilatura.extract_metadata(raw)
    except Exception:  # a parser failure on junk markup: fall back to stripping tags
        text, metadata = None, None
    title = metadata.title if metadata is not None and metadata.title else None
    if not text or not text.strip():
        text = _plain_html_text(raw, source)
    return text or "", title


def _plain_html_text(raw: str, source: str) -> str:
    lxml_html = _backend("lxml.html", "HTML", source)

    try:
        root = lxml_html.fromstring(raw)
    except Exception:  # lxml raises several types for junk input; any of them means "no text"
        return ""
    for element in root.xpath("//script|//style|//noscript"):
        element.drop_tree()
    return "\n".join(line.strip() for line in root.text_content().splitlines() if line.strip())


def _docx_to_text(data: bytes, source: str) -> str:
    """Paragraphs and tables in document order; a table row becomes one tab-separated line."""
    docx = _backend("docx", "DOCX", source)
    Table = _backend("docx.table", "DOCX", source).Table

    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise IngestError(source, "corrupt or invalid .docx file: not a zip package (an old .doc? save it as .docx)")
    try:
        document = docx.Document(io.BytesIO(data))
        lines: list[str] = []
        for item in document.iter_inner_content():
            if isinstance(item, Table):
                lines.extend(_table_rows(item))
            else:
                lines.append(item.text)
    except Exception as exc:  # python-docx and zipfile raise many types on damaged packages
        raise IngestError(source, f"corrupt or invalid .docx file: {exc}") from exc
    return "\n".join(lines)


def _table_rows(table) -> list[str]:
    rows = []
    for row in table.rows:
        cells: list[str] = []
        seen: set[int] = set()
        for cell in row.cells:  # merged cells repeat: keep each once
            if id(cell._tc) not in seen:
                seen.add(id(cell._tc))
                cells.append(" ".join(cell.text.split()))
        rows.append("\t".join(cells))
    return rows


def load_file(path: Path, max_bytes: int = DEFAULT_MAX_BYTES, pages: PageOptions | None = None) -> LoadedText:
    """Read one supported file; raise IngestError naming the file and the reason otherwise.

    PDFs and images are read page by page (``pages``: page limit, OCR time limit, progress).
    """
    path = Path(path)
    fmt = check_file(path, max_bytes)
    data = _read_bytes(path, max_bytes)
    source = str(path)
    title_hint: str | None = None
    encoding = "binary"
    paged = None
    if fmt in PAGED_FORMATS:
        paged = (read_pdf if fmt == "pdf" else read_image)(data, source, pages)
        text = paged.text
        if not text.strip():
            where = "no page has a text layer and OCR" if fmt == "pdf" else "OCR"
            raise IngestError(source, f"no text found: {where} found no text (blank pages or an unreadable scan)")
    elif fmt == "docx":
        text = _docx_to_text(data, source)
    else:
        text, encoding = decode_bytes(data, source)
        if fmt == "html":
            text, title_hint = _html_to_text(text, source)
    text = normalise_newlines(text)
    if not text.strip():
        raise IngestError(source, "no text in the file (only whitespace or markup)")
    return LoadedText(
        text=text, format=fmt, encoding=encoding, size=len(data), sha256=hashlib.sha256(data).hexdigest(), title_hint=title_hint,
        pages=paged.pages if paged else None, data=data if paged else None,
    )


MAX_FOLDER_DEPTH = 64  # deeper than any real archive; a deeper tree is skipped and reported


@dataclass
class FolderScan:
    """What a path named by the user holds: the files to read and what was skipped, with why."""

    files: list[Path]
    skipped: list[IngestError]


def scan_path(path: Path) -> FolderScan:
    """Supported files under ``path`` (folders walked, sorted, hidden names skipped).

    The walk is iterative (a tree nested thousands deep cannot exhaust the stack), follows
    symbolic links to folders but never into a folder it is already inside (a link loop), and
    reports what it skipped. A missing path raises IngestError; anything named explicitly that
    is not a folder is returned so ``load_file`` can say why it fails (unsupported type, a pipe).
    """
    path = Path(path)
    if not path.exists():
        raise IngestError(str(path), _missing_reason(path))
    if not path.is_dir():
        return FolderScan([path], [])
    files: list[Path] = []
    skipped: list[IngestError] = []
    # (folder, depth, the (device, inode) of the folders above it): ancestors, not all seen
    # folders, so two links to one folder both count while a link back up is a loop.
    pending: list[tuple[Path, int, frozenset[tuple[int, int]]]] = [(path, 0, frozenset())]
    while pending:
        folder, depth, ancestors = pending.pop()
        try:
            info = folder.stat()
            entries = sorted(os.scandir(folder), key=lambda e: e.name, reverse=True)
        except OSError as exc:
            skipped.append(IngestError(str(folder), f"folder skipped: cannot be read ({exc.strerror or exc})"))
            continue
        here = ancestors | {(info.st_dev, info.st_ino)}
        for entry in entries:
            if entry.name.startswith("."):
                continue
            child = Path(entry.path)
            try:
                is_dir = entry.is_dir()
            except OSError:
                is_dir = False
            if is_dir:
                try:
                    child_info = child.stat()
                except OSError as exc:
                    skipped.append(IngestError(str(child), f"folder skipped: {exc.strerror or exc}"))
                    continue
                if (child_info.st_dev, child_info.st_ino) in here:
                    skipped.append(IngestError(str(child), "folder skipped: a link back to a folder it is inside (a loop)"))
                elif depth + 1 > MAX_FOLDER_DEPTH:
                    skipped.append(IngestError(str(child), f"folder skipped: nested deeper than {MAX_FOLDER_DEPTH} levels"))
                else:
                    pending.append((child, depth + 1, here))
            elif child.suffix.lower() in SUPPORTED_SUFFIXES and (entry.is_file() or entry.is_symlink()):
                files.append(child)
    return FolderScan(sorted(files, key=lambda f: f.relative_to(path).parts), skipped)


def _missing_reason(path: Path) -> str:
    """Why a named path cannot be found: a dangling or looping link is not "no such file"."""
    if path.is_symlink():
        try:
            path.resolve(strict=True)
        except RuntimeError:  # Python 3.11 raises this for a loop
            return "symbolic link loop: the link points (eventually) to itself"
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return "symbolic link loop: the link points (eventually) to itself"
        return f"broken symbolic link: its target {os.readlink(path)!r} does not exist"
    return "no such file or directory"
