"""Shared fixtures: the real default model and a knowledge base built from the bundled seeds.

Building the seed knowledge base embeds ~250 chunks with the real model (tens of seconds on two
cores), so it is built once per test session and copied for tests that modify it.
"""
from __future__ import annotations

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
def seed_kb_dir(tmp_path_factory, embedder) -> Path:
    """A knowledge base of the five bundled documents; treat as read-only (copy it to modify)."""
    from corpus.pipeline import seed_paths
    from qa.service import Wendao

    folder = tmp_path_factory.mktemp("seed-kb")
    Wendao(kb_dir=folder, embedder=embedder).ingest(seed_paths())
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
