"""Errors raised while reading documents: always name the file and the reason."""
from __future__ import annotations


class IngestError(Exception):
    """A file that cannot be ingested; the rest of the batch goes on."""

    def __init__(self, source: str, reason: str):
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason
