"""The one error base of wendao, and the error raised while reading documents.

Every failure a user can cause or fix (a bad file, a knowledge base built differently, a missing
model, an empty question, a malformed test set) is a ``WendaoError``: the interfaces catch that
one type and word it (the CLI as ``error: …`` with exit status 2, the web app as a message).
``hint`` holds how to fix it in interface-neutral words (for example ``("reindex",)``); the
interface turns it into its own instruction, so lower layers never name CLI commands.
"""
from __future__ import annotations


class WendaoError(Exception):
    """A failure with a message fit to show a user as it is (one line, naming file and field).

    ``hint`` is a fix the interface can word for itself: a tuple of an action name and its
    arguments, e.g. ``("reindex", "/path/to/kb")`` or ``("ingest", "/path/to/kb")``.
    """

    def __init__(self, message: str, hint: tuple[str, ...] | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint


class IngestError(WendaoError):
    """A file that cannot be ingested; the rest of the batch goes on."""

    def __init__(self, source: str, reason: str):
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason
