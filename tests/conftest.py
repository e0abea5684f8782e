"""Shared fixtures: the real default model and a knowledge base built from the bundled seeds.

Building the seed knowledge base embeds ~250 chunks with the real model (tens of seconds on two
cores), so it is built once per test run (shared by the xdist workers) and copied for tests
that modify it.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
EVALDATA = SHARED / "evaldata"


@pytest.fixture(scope="session")
def embedder():
    from index.embedder import load_embedder

    return load_embedder()


@pytest.fixture(scope="session")
def seed_kb_dir(tmp_path_factory, worker_id, embedder) -> Path:
    """A knowledge base of the five bundled documents; treat as read-only (copy it to modify).
    Under xdist the first worker to need it builds it in the run's shared temporary folder and
    the others wait on the lock, then read it (readers of one knowledge base may be many)."""
    from filelock import FileLock

    from corpus.pipeline import seed_paths
    from qa.service import Wendao

    shared = tmp_path_factory.getbasetemp() if worker_id == "master" else tmp_path_factory.getbasetemp().parent
    folder, built = shared / "seed-kb", shared / "seed-kb.built"
    with FileLock(str(shared / "seed-kb.lock")):
        if not built.exists():
            shutil.rmtree(folder, ignore_errors=True)  # a build cut short in an earlier worker
            Wendao(kb_dir=folder, embedder=embedder).ingest(seed_paths())
            built.touch()
    return folder


@pytest.fixture
def seed_kb_copy(seed_kb_dir, tmp_path) -> Path:
    """A private, writable copy of the seed knowledge base."""
    target = tmp_path / "kb"
    shutil.copytree(seed_kb_dir, target, ignore=shutil.ignore_patterns("write.lock"))
    return target


@pytest.fixture(scope="session")
def seed_service(seed_kb_dir, embedder):
    from qa.service import Wendao

    return Wendao(kb_dir=seed_kb_dir, embedder=embedder)


def needs_evaldata(*parts: str) -> Path:
    """The path of a shared evaluation set, or skip the test when it is absent."""
    path = EVALDATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not present (shared evaluation data is optional)")
    return path


def pytest_xdist_auto_num_workers(config) -> int:
    """``-n auto``: one worker per core, at most 4 (each worker loads the model, so more workers
    than cores, or many on a big machine, only cost memory)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(cores, 4))
