"""``python tests/ingest_runner.py KB LOG UNITS PATH...|--reindex``: ingest PATHs into KB (or reindex it) with the real
default model, committing every UNITS sentence units (the tests use fewer than the default to
get several commits out of a small ingest), appending the number of texts of every embedding call to LOG *before* it runs (so a
killed run's work in flight is counted too). The kill/resume and concurrency tests run it."""
from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from index.embedder import load_embedder  # noqa: E402
from qa.service import Wendao  # noqa: E402


class CountingEmbedder:
    """The real embedder; each ``encode_documents`` call is logged with its size first."""

    def __init__(self, inner, log: Path):
        self._inner = inner
        self._log = log

    def encode_documents(self, texts, *args, **kwargs):
        with self._log.open("a") as handle:
            handle.write(f"{len(texts)}\n")
            handle.flush()
            os.fsync(handle.fileno())
        return self._inner.encode_documents(texts, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._inner, name)


def main() -> None:
    kb, log, units, *paths = sys.argv[1:]
    import index.ingest

    index.ingest.COMMIT_UNITS = int(units)
    embedder = CountingEmbedder(load_embedder(), Path(log))
    service = Wendao(kb_dir=Path(kb), embedder=embedder)
    report = service.reindex() if paths == ["--reindex"] else service.ingest([Path(p) for p in paths])
    print(f"done {report.documents} {report.chunks} {report.encoded_chunks}", flush=True)


if __name__ == "__main__":
    main()
