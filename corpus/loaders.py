"""Read a file into text: decoding, format extraction and clear refusals.

Every offset later in the pipeline refers to ``LoadedText.text``, so this is the one place
where newlines are normalised; nothing else about the text is changed.
"""
from __future__ import annotations

import codecs
import hashlib
import os
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from corpus.errors import IngestError

SUPPORTED_SUFFIXES: dict[str, str] = {
    ".txt": "txt",
    ".md": "md",
    ".markdown": "md",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
    ".docx": "docx",
}
DEFAULT_MAX_BYTES = 50 * 1024 * 1024

_BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
# charset-normalizer candidates: GB18030 covers GB2312/GBK; cp950 and big5hkscs cover Big5.
_CANDIDATES = ["utf_8", "gb18030", "big5", "cp950", "big5hkscs", "utf_16_le", "utf_16_be"]
_BIG5_FAMILY = ("cp950", "big5hkscs")
_NEWLINES = re.compile(r"\r\n?|\u2028|\u2029")


@dataclass
class LoadedText:
    """The text of one file, with what the Document record needs to know about the file."""

    text: str
    format: str
    encoding: str
    size: int
    sha256: str
    title_hint: str | None = None


def normalise_newlines(text: str) -> str:
    """CRLF/CR/Unicode line separators -> \\n, so offsets do not depend on the platform."""
    return _NEWLINES.sub("\n", text)


def supported_list() -> str:
    return ", ".join(sorted(SUPPORTED_SUFFIXES))


def _check_path(path: Path, max_bytes: int) -> str:
    if not path.exists():
        raise IngestError(str(path), "no such file or directory")
    if path.is_dir():
        raise IngestError(str(path), "is a directory, expected a file")
    fmt = SUPPORTED_SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise IngestError(
            str(path), f"unsupported file type {path.suffix or '(none)'!r}; supported: {supported_list()}"
        )
    if not os.access(path, os.R_OK):
        raise IngestError(str(path), "permission denied: file is not readable")
    size = path.stat().st_size
    if size == 0:
        raise IngestError(str(path), "empty file")
    if size > max_bytes:
        raise IngestError(
            str(path), f"file too large: {size / 1e6:.1f} MB exceeds the limit of {max_bytes / 1e6:.1f} MB"
        )
    return fmt


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except PermissionError as exc:
        raise IngestError(str(path), "permission denied: file is not readable") from exc
    except OSError as exc:
        raise IngestError(str(path), f"cannot read file: {exc.strerror or exc}") from exc


def _utf16_without_bom(data: bytes) -> str | None:
    """UTF-16 without BOM: ASCII-range characters put NUL bytes on one parity only."""
    if len(data) % 2:
        return None
    even, odd = data[0::2].count(0), data[1::2].count(0)
    if odd > even * 4:
        return "utf-16-le"
    if even > odd * 4:
        return "utf-16-be"
    return None


def _strict(data: bytes, encoding: str) -> str | None:
    try:
        return data.decode(encoding)
    except (UnicodeDecodeError, LookupError):
        return None


def decode_bytes(data: bytes, source: str) -> tuple[str, str]:
    """Return (text, encoding). BOM, then strict UTF-8, then charset-normalizer among CJK codecs."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            text = _strict(data, encoding)
            if text is None:
                raise IngestError(source, f"binary or corrupt file: invalid {encoding} after its byte-order mark")
            return text.lstrip("\ufeff"), encoding.removesuffix("-sig")
    if b"\x00" in data:
        encoding = _utf16_without_bom(data)
        text = _strict(data, encoding) if encoding else None
        if text is None or "\x00" in text:
            raise IngestError(source, "binary file (contains NUL bytes), not text")
        return text, encoding
    text = _strict(data, "utf-8")
    if text is not None:
        return text, "utf-8"

    from charset_normalizer import from_bytes

    best = from_bytes(data, cp_isolation=_CANDIDATES).best()
    if best is None:
        raise IngestError(source, "binary or undecodable file: not UTF-8, GB18030, Big5 or UTF-16")
    encoding = best.encoding.replace("_", "-")
    if encoding in ("big5", "cp950", "big5hkscs"):
        # Big5 proper lacks characters that real files use; take the first superset that decodes.
        for candidate in _BIG5_FAMILY:
            text = _strict(data, candidate)
            if text is not None:
                return text, candidate
    if encoding in ("gb2312", "gbk"):
        encoding = "gb18030"
    text = _strict(data, encoding)
    if text is None:
        text = str(best)
    if _looks_binary(text):
        raise IngestError(source, "binary or undecodable file: not UTF-8, GB18030, Big5 or UTF-16")
    return text, encoding


def _looks_binary(text: str) -> bool:
    """Control characters other than whitespace mean the bytes were not text at all."""
    sample = text[:20000]
    controls = sum(1 for ch in sample if ord(ch) < 32 and ch not in "\t\n\r\f\v")
    return controls > max(2, len(sample) // 100)


def _html_to_text(raw: str) -> tuple[str, str | None]:
    """trafilatura's main-content extraction (tables kept), plain tag stripping as a fallback."""
    import trafilatura

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
    title = metadata.title if metadata is not None and metadata.title else None
    if not text or not text.strip():
        text = _plain_html_text(raw)
    return text or "", title


def _plain_html_text(raw: str) -> str:
    import lxml.html

    try:
        root = lxml.html.fromstring(raw)
    except Exception:  # lxml raises several types for junk input; any of them means "no text"
        return ""
    for element in root.xpath("//script|//style|//noscript"):
        element.drop_tree()
    return "\n".join(line.strip() for line in root.text_content().splitlines() if line.strip())


def _pdf_to_text(path: Path) -> str:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(path)
        if reader.is_encrypted and not reader.decrypt(""):
            raise IngestError(str(path), "encrypted PDF: cannot extract text without the password")
        pages = [page.extract_text() or "" for page in reader.pages]
    except IngestError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as exc:
        raise IngestError(str(path), f"corrupt PDF: {exc}") from exc
    text = "\n\n".join(page.strip("\n") for page in pages)
    if not text.strip():
        raise IngestError(str(path), "PDF has no extractable text (scanned images need OCR)")
    return text


def _docx_to_text(path: Path) -> str:
    import docx
    from docx.opc.exceptions import PackageNotFoundError
    from docx.table import Table

    try:
        document = docx.Document(str(path))
        lines: list[str] = []
        for item in document.iter_inner_content():
            if isinstance(item, Table):
                for row in item.rows:
                    cells: list[str] = []
                    seen: set[int] = set()
                    for cell in row.cells:  # merged cells repeat: keep each once
                        if id(cell._tc) in seen:
                            continue
                        seen.add(id(cell._tc))
                        cells.append(" ".join(cell.text.split()))
                    lines.append("\t".join(cells))
            else:
                lines.append(item.text)
    except (PackageNotFoundError, zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise IngestError(str(path), f"corrupt or invalid .docx file: {exc}") from exc
    return "\n".join(lines)


def load_file(path: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> LoadedText:
    """Read one supported file; raise IngestError naming the file and the reason otherwise."""
    path = Path(path)
    fmt = _check_path(path, max_bytes)
    data = _read_bytes(path)
    digest = hashlib.sha256(data).hexdigest()
    title_hint: str | None = None
    encoding = "utf-8"
    if fmt == "pdf":
        text = _pdf_to_text(path)
        encoding = "binary"
    elif fmt == "docx":
        text = _docx_to_text(path)
        encoding = "binary"
    else:
        text, encoding = decode_bytes(data, str(path))
        if fmt == "html":
            text, title_hint = _html_to_text(text)
    text = normalise_newlines(text)
    if not text.strip():
        raise IngestError(str(path), "empty file: no text in it")
    return LoadedText(text=text, format=fmt, encoding=encoding, size=len(data), sha256=digest, title_hint=title_hint)


def iter_supported_files(paths: list[Path]) -> Iterator[Path]:
    """Supported files under ``paths`` (folders walked recursively, sorted, hidden names skipped).

    A missing path raises IngestError; unsupported files inside folders are skipped silently,
    while an unsupported file named explicitly is yielded so load_file can say why it fails.
    """
    for path in map(Path, paths):
        if not path.exists():
            raise IngestError(str(path), "no such file or directory")
        if path.is_file():
            yield path
            continue
        for child in sorted(path.rglob("*")):
            relative = child.relative_to(path)
            if any(part.startswith(".") for part in relative.parts):
                continue
            if child.is_file() and child.suffix.lower() in SUPPORTED_SUFFIXES:
                yield child
