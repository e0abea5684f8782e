"""fsync helpers for atomic swaps: the model cache and the knowledge base both write a
staging folder, flush it to disk, then rename it into place, so a power cut can leave the
old version or the new one, never half of each."""
from __future__ import annotations

import os
from pathlib import Path


def fsync_file(path: Path) -> None:
    with path.open("rb") as handle:
        os.fsync(handle.fileno())


def fsync_dir(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (a power cut must not undo the swap)."""
    handle = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            fsync_file(path)
