"""Reading line-based data files (JSON Lines, TSV) with errors that name the file and line.

Lines are split on ``\\n`` only: ``str.splitlines`` also splits on U+2028, U+0085 and other
separators that are legal inside JSON strings (web text in DuReader has them). Each line is
decoded on its own, so text that is not UTF-8 is reported at its line, not as a traceback.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from corpus.errors import WendaoError


class DataFileError(WendaoError, ValueError):
    """A line of a data file (query file, test set) that cannot be used; the message names
    ``file:line`` and the field."""


def read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) for every non-blank line of a UTF-8 file (a leading BOM is dropped)."""
    path = Path(path)
    try:
        handle = path.open("rb")
    except OSError as error:
        raise DataFileError(f"{path}: cannot read ({error.strerror or error})") from None
    with handle:
        for number, raw in enumerate(handle, 1):
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError:
                raise DataFileError(f"{path}:{number}: not UTF-8 text") from None
            if line.strip():
                yield number, line


def read_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) for every non-blank line; DataFileError names ``path:line``."""
    for number, line in read_lines(path):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataFileError(f"{path}:{number}: not valid JSON ({error.msg})") from None
        if not isinstance(row, dict):
            raise DataFileError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
        yield number, row
