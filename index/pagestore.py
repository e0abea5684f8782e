"""Page views in a knowledge base: the original PDFs and images, and every character's box.

Why these two and where:

- The original file, once per distinct file, in ``originals/<sha256>`` at the knowledge base's
  root. The source file may have moved or gone by the time a citation is checked, so the viewer
  renders pages from this copy, on demand. A PDF is far smaller than its rendered pages (a
  20-page scan is a few MB as a PDF, tens of MB as page images), and one copy serves every
  generation: a write never copies it again. It is written (atomically) before the generation
  that refers to it, and removed once no kept generation refers to it.
- The character boxes, one line per paged document in the ``layouts`` table of ``records.db``
  (``index.records_db``), committed in the same transaction as the document's record, so they
  always match the stored text they index into. They are read only when a page is shown or a
  citation needs its boxes. (The old generation format kept them in ``pages.jsonl``; migration
  reads that file.)
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path

from corpus.layout import LAYOUT_VERSION, Page
from corpus.records import Document
from index.durable import fsync_dir, fsync_file

ORIGINALS = "originals"
PAGES_FILE = "pages.jsonl"


def original_path(root: Path, sha256: str) -> Path:
    return Path(root) / ORIGINALS / sha256


def save_original(root: Path, sha256: str, data: bytes) -> None:
    """Keep a paged document's file (content-addressed: a second copy of a file costs nothing)."""
    if hashlib.sha256(data).hexdigest() != sha256:
        raise ValueError("the bytes do not match their sha256")
    target = original_path(root, sha256)
    if target.is_file() and target.stat().st_size == len(data):
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{sha256}.{os.getpid()}.tmp")
    temporary.write_bytes(data)
    fsync_file(temporary)
    os.replace(temporary, target)
    fsync_dir(target.parent)


def read_original(root: Path, sha256: str) -> bytes | None:
    path = original_path(root, sha256)
    return path.read_bytes() if path.is_file() else None


def layout_line(document: Document, pages: list[Page]) -> str:
    row = {"doc_id": document.doc_id, "sha256": document.sha256, "version": LAYOUT_VERSION, "pages": [p.to_json() for p in pages]}
    return json.dumps(row, ensure_ascii=False, separators=(",", ":"))


def lines_by_doc(folder: Path | None) -> dict[str, str]:
    """A generation's layout lines by document id (unparsed beyond the id: they can be large)."""
    path = folder / PAGES_FILE if folder else None
    if path is None or not path.is_file():
        return {}
    found = {}
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                found[json.loads(line)["doc_id"]] = line.rstrip("\n")
    return found


def prune_originals(root: Path, wanted: set[str]) -> None:
    """Delete originals that no kept commit refers to (and temporary files of killed writes).

    Called under the knowledge base's lock (``index.segments``), after a commit.
    """
    folder = Path(root) / ORIGINALS
    if not folder.is_dir():
        return
    for path in folder.iterdir():
        if path.name not in wanted:
            path.unlink(missing_ok=True)


class PageLayouts:
    """The character boxes of one generation, read by document when first asked for."""

    def __init__(self, generation: str, line_of: Callable[[str], str | None]):
        self.generation = generation
        self._line_of = line_of
        self._parsed: dict[str, list[Page]] = {}
        self._lock = threading.Lock()

    def get(self, document: Document) -> list[Page] | None:
        if not document.pages:
            return None
        with self._lock:
            if document.doc_id not in self._parsed:
                line = self._line_of(document.doc_id)
                if line is None:
                    return None
                row = json.loads(line)
                if row.get("sha256") != document.sha256:
                    return None
                self._parsed[document.doc_id] = [Page.from_json(p) for p in row["pages"]]
            return self._parsed[document.doc_id]
