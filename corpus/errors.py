"""The one error base of wendao, the fixes an error can suggest, and the ingest error.

Every failure a user can cause or fix (a bad file, a knowledge base built differently, a missing
model, an empty question, a malformed test set) is a ``WendaoError``: the interfaces catch that
one type and word it (the CLI as ``error: …`` with exit status 2, the web app as a message).
Lower layers never name a command: an error carries a ``Fix``, and each interface says how to
do it in its own terms (``wendao reindex --kb …`` on the command line, a button in the web app).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

FixAction = Literal[
    "reindex", "ingest", "list_documents", "raise_size_limit", "raise_page_limit", "raise_ocr_timeout", "build_model", "retry_later",
    "install_milvus",
]


@dataclass(frozen=True)
class Fix:
    """What the user can do about an error; ``target`` is what it applies to (a knowledge-base folder)."""

    action: FixAction
    target: str = ""


class WendaoError(Exception):
    """A failure whose message is fit to show a user as it is (one line, naming file and field)."""

    def __init__(self, message: str, fix: Fix | None = None):
        super().__init__(message)
        self.message = message
        self.fix = fix


class IngestError(WendaoError):
    """A file that cannot be ingested; the rest of the batch goes on."""

    def __init__(self, source: str, reason: str, fix: Fix | None = None):
        super().__init__(f"{source}: {reason}", fix)
        self.source = source
        self.reason = reason
