"""The evaluation workbench's own SQLite file in the knowledge-base folder: saved runs and judgments.

``workbench.db`` sits next to ``records.db`` and is never touched by the index (a sweep, a
compaction or a reindex keep it): runs and judgments describe the knowledge base, they are not
part of its commits. Every write is one SQLite transaction (WAL, synchronous FULL), so a killed
process leaves the previous state or the new one, never half a run.
"""
from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from corpus.errors import WendaoError

DB_NAME = "workbench.db"
SCHEMA = """
CREATE TABLE IF NOT EXISTS runs(
    name TEXT PRIMARY KEY, created TEXT NOT NULL, summary TEXT NOT NULL, body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS passage_judgments(
    question TEXT NOT NULL, doc_id TEXT NOT NULL, start INTEGER NOT NULL, end INTEGER NOT NULL,
    chunk_id TEXT NOT NULL, text TEXT NOT NULL, relevant INTEGER NOT NULL, origin TEXT NOT NULL,
    updated TEXT NOT NULL, PRIMARY KEY(question, doc_id, start, end));
CREATE TABLE IF NOT EXISTS question_judgments(
    question TEXT PRIMARY KEY, should_abstain INTEGER NOT NULL, updated TEXT NOT NULL);
"""


class WorkbenchError(WendaoError):
    """A saved run or judgment that cannot be found, named or stored; the message says which."""


def location_name(kb: object) -> str:
    """A knowledge base as ``--kb`` names it: its folder, or a Milvus target's spelling."""
    return getattr(kb, "spec", None) or str(kb)


def workbench_folder(kb: object) -> Path:
    """Where a knowledge base's workbench file lives: its folder; for Milvus (no folder of its
    own), beside a Milvus Lite file, or under the user data folder per server collection."""
    if isinstance(kb, (str, Path)):
        return Path(kb)
    lite = getattr(kb, "lite", None)
    if lite is not None:
        return Path(f"{lite}.workbench")
    from platformdirs import user_data_dir

    return Path(user_data_dir("wendao")) / "workbench" / re.sub(r"[^0-9A-Za-z_.-]+", "_", location_name(kb))


@contextmanager
def connect(kb_dir: object, write: bool = False) -> Iterator[sqlite3.Connection | None]:
    """A connection to the knowledge base's workbench file; reading one that does not exist yet
    gives None (nothing saved), writing creates it. Writes run in one transaction."""
    folder = workbench_folder(kb_dir)
    path = folder / DB_NAME
    if not write and not path.is_file():
        yield None
        return
    if write and not isinstance(kb_dir, (str, Path)):
        folder.mkdir(parents=True, exist_ok=True)  # a Milvus knowledge base's workbench folder
    if write and not folder.is_dir():
        raise WorkbenchError(f"{location_name(kb_dir)}: no knowledge base here to save into")
    connection = sqlite3.connect(path, timeout=60, isolation_level=None)
    try:
        if write:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=FULL")
        connection.executescript(SCHEMA)
        if write:
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield connection
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
        else:
            yield connection
    finally:
        connection.close()
