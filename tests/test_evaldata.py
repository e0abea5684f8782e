"""Cross-script retrieval on real data: DRCD's Traditional corpus asked in Simplified.

Uses ``../shared/evaldata`` (skips when absent). A subset keeps it to about a minute: the
passages of the first questions plus as many others as distractors. The full-set figures are
``python benchmarks/quality.py``.
"""
from __future__ import annotations

from dataclasses import replace

import opencc
import pytest
from conftest import needs_evaldata

from corpus.errors import IngestError
from corpus.pipeline import prepare_text
from qa.evaluate import evaluate
from qa.service import Wendao
from qa.testsets import load_beir

pytestmark = [pytest.mark.evaldata, pytest.mark.slow]
QUESTIONS = 100
PASSAGES = 200


@pytest.fixture(scope="module")
def drcd_subset(tmp_path_factory, embedder):
    corpus, queries = load_beir(needs_evaldata("drcd", "dev"))
    queries = queries[:QUESTIONS]
    wanted = {doc for q in queries for doc in q.relevant}
    chosen = [passage for passage in corpus if passage.id in wanted]
    chosen += [passage for passage in corpus if passage.id not in wanted][: max(0, PASSAGES - len(chosen))]
    service = Wendao(kb_dir=tmp_path_factory.mktemp("drcd"), embedder=embedder)
    prepared = []
    for passage in chosen:
        try:
            prepared.append(prepare_text(passage.text, passage.id, passage.id, service.chunking, title=passage.title))
        except IngestError:
            continue
    service.ingestor().ingest_prepared(prepared)
    return service, queries


def test_simplified_questions_find_traditional_passages_as_well_as_traditional_ones(drcd_subset):
    service, queries = drcd_subset
    converter = opencc.OpenCC("t2s")
    simplified = [replace(q, question=converter.convert(q.question)) for q in queries]
    assert sum(a.question != b.question for a, b in zip(queries, simplified)) > len(queries) // 2
    same = evaluate(service, queries, ["lexical", "hybrid"]).results
    cross = evaluate(service, simplified, ["lexical", "hybrid"]).results
    for mode in ("lexical", "hybrid"):
        assert abs(cross[mode]["mrr@10"] - same[mode]["mrr@10"]) <= 0.01, (mode, same[mode], cross[mode])
    assert cross["hybrid"]["mrr@10"] >= 0.9, cross  # and it finds them, not merely equally badly
