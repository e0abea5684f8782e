"""fsync helpers for atomic swaps: the model cache and the knowledge base both write a
staging folder, flush it to disk, then rename it into place, so a power cut can leave the
old version or the new one, never half of each. A write that fails removes its staging
folder and says why in one line (``storage_full`` recognises a full disk however the library that
hit it reported it)."""
from __future__ import annotations

import errno
import os
import re
from pathlib import Path

# Reported by the C library as these strerror texts, and by Rust (safetensors, tokenizers) as
# "... (os error N)"; FAISS only passes the text on inside a RuntimeError.
_FULL = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded"}
# numpy (np.save, as bm25s saves) reports a short write without its errno.
_SHORT_WRITE = re.compile(r"(\d+) requested and (\d+) written")


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


def storage_full(error: BaseException, folder: Path | None = None) -> str | None:
    """"no space left on device" or "disk quota exceeded" when ``error`` means the disk is full,
    else None: an ``OSError`` with that errno, another library's error quoting it, or a short
    write while ``folder``'s filesystem has less room than the write still needed (ask before
    removing what the failed write left)."""
    code = getattr(error, "errno", None)
    if code in _FULL:
        return _FULL[code]
    text = str(error)
    for code, reason in _FULL.items():
        if os.strerror(code) in text or f"(os error {code})" in text:
            return reason
    short = _SHORT_WRITE.search(text) if isinstance(error, OSError) and folder is not None else None
    if short:
        try:
            stat = os.statvfs(folder)
        except OSError:
            return None
        if stat.f_bavail * stat.f_frsize < int(short[1]) - int(short[2]):
            return _FULL[errno.ENOSPC]
    return None
