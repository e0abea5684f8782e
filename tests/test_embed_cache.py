"""The embedding cache: no sentence unit is embedded twice (real model, real store, real SQLite).

Counts what the model is actually asked to encode (every call to ``encode_documents``), not
what the cache says it did, and checks that vectors served from the cache are the ones a fresh
ingest would write.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from corpus.chunking import ChunkSettings
from index.embed_cache import CACHE_DB, EmbeddingCache
from index.ingest import EMBED_TEMPLATE, embedding_texts
from index.segments import SegmentStore
from qa.service import Wendao

pytestmark = pytest.mark.slow  # the real model encodes

PARAGRAPHS = [
    "第一条 为规范社区养老服务中心的运营管理，提升服务质量，制定本办法。本办法适用于本市各街道设立的社区养老服务中心。",
    "第二条 服务中心应当为辖区内六十周岁以上老年人提供日间照料、助餐、助浴和康复护理服务。助餐服务每日供应午餐和晚餐。",
    "第三条 服务中心的护理人员应当持有养老护理员职业资格证书。每名护理人员每年参加培训不少于四十学时。",
    "第四条 市民政局每年对服务中心开展一次星级评定，评定结果向社会公布。连续两年评为一星级的，责令限期整改。",
    "第五条 服务中心运营补贴按照服务人次和星级等级核定，每季度拨付一次。补贴资金应当专款专用，不得挪作他用。",
    "第六条 服务中心应当建立老年人健康档案，记录体检、用药和过敏情况。档案信息不得泄露给无关人员。",
]
CHANGED = "第四条 区民政部门每半年对服务中心开展一次服务质量评估，评估结果与运营补贴挂钩。评估不合格的，暂停拨付补贴。"
TITLE = "社区养老服务中心管理办法"


def write_doc(path: Path, paragraphs: list[str]) -> None:
    path.write_text(TITLE + "\n\n" + "\n\n".join(paragraphs) + "\n", encoding="utf-8")


@pytest.fixture
def counted(embedder, monkeypatch) -> list[str]:
    """Every text the real model is asked to encode as a passage, in order."""
    seen: list[str] = []
    original = embedder.encode_documents

    def encode_documents(texts, *args, **kwargs):
        seen.extend(texts)
        return original(texts, *args, **kwargs)

    monkeypatch.setattr(embedder, "encode_documents", encode_documents)
    return seen


def unit_texts(kb: Path, doc_id: str) -> list[str]:
    snapshot = SegmentStore(kb).load()
    document = snapshot.documents[doc_id]
    return [t for c in snapshot.chunks_of(doc_id) for t in embedding_texts(document, c)]


def vectors_of(kb: Path) -> np.ndarray:
    return SegmentStore(kb).load().embeddings


def test_reingesting_an_edited_document_embeds_only_the_changed_paragraph(embedder, counted, tmp_path: Path):
    kb, doc = tmp_path / "kb", tmp_path / "养老.txt"
    write_doc(doc, PARAGRAPHS)
    service = Wendao(kb_dir=kb, embedder=embedder)
    first = service.ingest([doc])
    before = unit_texts(kb, "养老.txt")
    assert len(before) >= 12 and len(counted) == len(set(before)) == first.units.encoded
    assert (kb / CACHE_DB).is_file()

    counted.clear()
    write_doc(doc, PARAGRAPHS[:3] + [CHANGED] + PARAGRAPHS[4:])
    again = service.ingest([doc])
    assert [r.status for r in again.results] == ["updated"]
    after = unit_texts(kb, "养老.txt")
    # the changed paragraph's two sentences (with the title in front), and nothing else
    assert len(counted) == 2 and all(("服务质量评估" in t) != ("评估不合格" in t) for t in counted)
    assert set(counted) == set(after) - set(before)
    assert (again.units.encoded, again.units.cached) == (2, len(after) - 2)
    hits, _ = service.search("服务质量评估结果和什么挂钩", k=1)
    assert "运营补贴挂钩" in hits[0].chunk.text

    # what the cache served is exactly what a fresh ingest of the edited file writes
    fresh = tmp_path / "fresh"
    Wendao(kb_dir=fresh, embedder=embedder).ingest([doc])
    assert unit_texts(fresh, "养老.txt") == after
    assert np.array_equal(vectors_of(fresh), vectors_of(kb))


def test_reindex_after_a_chunking_change_embeds_only_new_units_and_repeats_once(embedder, counted, tmp_path: Path):
    kb = tmp_path / "kb"
    docs = [tmp_path / "a.txt", tmp_path / "b.txt"]
    write_doc(docs[0], PARAGRAPHS)
    boilerplate = "本页面由市政府办公厅主办。"  # repeated under one title and heading: one text
    docs[1].write_text("网站通知\n\n" + "\n\n".join(f"通知{i}：请于月底前提交材料。{boilerplate}" for i in range(5)) + "\n", encoding="utf-8")
    report = Wendao(kb_dir=kb, embedder=embedder).ingest(docs)
    assert report.units.repeated > 0 and report.units.encoded == len(counted) == len(set(counted))
    old = {t for d in ("a.txt", "b.txt") for t in unit_texts(kb, d)}

    counted.clear()
    small = Wendao(kb_dir=kb, embedder=embedder, chunking=ChunkSettings(size=30))
    again = small.reindex()
    new = [t for d in ("a.txt", "b.txt") for t in unit_texts(kb, d)]
    assert set(new) != old  # chunks shorter than some sentences cut them at their commas
    assert sorted(counted) == sorted(set(new) - old)
    assert again.units.encoded == len(counted) < len(set(new))
    hits, _ = small.search("护理人员每年培训多少学时", k=1)
    assert "四十学时" in hits[0].chunk.text


def test_cache_keys_separate_models_and_templates_and_prune_least_recently_used(tmp_path: Path):
    one = EmbeddingCache(tmp_path, "model-a", EMBED_TEMPLATE, 4)
    assert one.key("句子") != EmbeddingCache(tmp_path, "model-b", EMBED_TEMPLATE, 4).key("句子")
    assert one.key("句子") != EmbeddingCache(tmp_path, "model-a", "{sentence}", 4).key("句子")
    keys = [one.key(f"句子{i}") for i in range(5)]
    one.store(keys, np.eye(5, 4, dtype=np.float32))
    one.close()
    two = EmbeddingCache(tmp_path, "model-a", EMBED_TEMPLATE, 4)  # a later session
    assert set(two.lookup(keys[:2])) == set(keys[:2])
    assert two.prune(live_units=1, slack=0) == 3  # keeps the two used in this session
    assert len(two) == 2 and set(two.lookup(keys)) == set(keys[:2])
    assert np.array_equal(two.lookup([keys[1]])[keys[1]], np.eye(5, 4, dtype=np.float32)[1])
