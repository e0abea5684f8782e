"""Reading JSON Lines files with errors that name the file and line.

Lines are split on ``\\n`` only: ``str.splitlines`` also splits on U+2028, U+0085 and other
separators that are legal inside JSON strings (web text in DuReader has them).
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path


def read_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) for every non-blank line; ValueError names ``path:line``."""
    path = Path(path)
    try:
        handle = path.open(encoding="utf-8", newline="\n")
    except OSError as error:
        raise ValueError(f"{path}: cannot read ({error.strerror or error})") from None
    with handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number}: not valid JSON ({error.msg})") from None
            except UnicodeDecodeError:
                raise ValueError(f"{path}:{number}: not UTF-8 text") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
            yield number, row
