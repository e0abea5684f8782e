"""Fusion arithmetic and question-term weighting: pure functions, no model."""
from __future__ import annotations

import numpy as np
import pytest

from corpus.sentences import sentence_spans
from qa.fusion import fuse, top_positions
from qa.query import plan_query
from qa.retrieve import FusionSettings
from qa.terms import STOPWORDS


def test_top_positions_are_the_largest_and_lexical_candidates_need_a_match():
    dense = np.array([0.9, 0.8, 0.1, 0.2, 0.3])
    lexical = np.array([0.0, 0.0, 5.0, 0.0, 1.0])
    assert sorted(top_positions(dense, 2).tolist()) == [0, 1]
    assert sorted(top_positions(dense, 99).tolist()) == [0, 1, 2, 3, 4]  # wider than the list
    assert sorted(top_positions(lexical, 3, positive=True).tolist()) == [2, 4]
    # a chunk sharing no token with the query is never a lexical candidate
    assert top_positions(np.zeros(5), 3, positive=True).tolist() == []
    assert top_positions(dense, 0).tolist() == []


def test_zscore_fusion_agrees_with_a_strong_signal_and_breaks_ties_with_the_other():
    dense = np.array([0.90, 0.90, 0.70, 0.71])
    lexical = np.array([1.0, 9.0, 2.0, 0.5])
    ranking = np.argsort(-fuse("zscore", 0.5, dense, lexical)).tolist()
    assert ranking[0] == 1  # tied on dense, far ahead on BM25
    assert ranking[-1] in (2, 3)
    # weight 1 is dense order, weight 0 lexical order
    assert np.argsort(-fuse("zscore", 1.0, dense, lexical), kind="stable")[:2].tolist() == [0, 1]
    assert np.argmax(fuse("zscore", 0.0, dense, lexical)) == 1


def test_single_modes_return_their_own_scores():
    dense = np.array([0.3, 0.9, 0.5])
    lexical = np.array([2.0, 0.0, 1.0])
    assert fuse("dense", 0.5, dense, lexical).tolist() == pytest.approx([0.3, 0.9, 0.5])
    assert fuse("lexical", 0.5, dense, lexical).tolist() == [2.0, 0.0, 1.0]
    assert fuse("zscore", 0.5, None, lexical).tolist() == [2.0, 0.0, 1.0]  # one side missing


def test_dense_weight_grows_for_short_keyword_queries():
    settings = FusionSettings()
    short, middle, long = settings.weight_for("板蓝根功效"), settings.weight_for("重庆" * 9), settings.weight_for("问" * 40)
    assert short == pytest.approx(settings.short_query_weight)
    assert long == pytest.approx(settings.dense_weight)
    assert long < middle < short


def test_question_words_carry_no_weight_and_rare_words_weigh_more():
    terms = plan_query("崇州市职教中心双师型教师占比是多少？").terms
    assert not set(terms.weights) & STOPWORDS
    assert "多少" not in terms.weights and "是" not in terms.weights
    assert terms.weights["崇州市"] > terms.weights["教师"]


def test_coverage_folds_traditional_and_counts_missing_rare_words_against():
    terms = plan_query("衢州職業教育改革實施方案").terms  # segmented after folding to Simplified
    assert terms.coverage("衢州职业教育改革实施方案") == pytest.approx(1.0)
    off_topic = plan_query("红烧肉怎么做才好吃").terms
    assert off_topic.coverage("红烧的做法很多，好吃的菜") < 0.6  # 红烧肉, the rare word, is missing
    assert off_topic.coverage("红烧肉的做法很多，好吃的菜") == pytest.approx(1.0)


def test_sentence_spans_are_exact_stripped_and_skip_fragments():
    text = "一、总体目标\n  到2025年，建成10个实训基地。培育30家企业！1.\n"
    spans = sentence_spans(text, 0, len(text))
    sentences = [text[s:e] for s, e in spans]
    assert sentences == ["一、总体目标", "到2025年，建成10个实训基地。", "培育30家企业！"]
    assert all(s == s.strip() for s in sentences)
    assert sentence_spans("第一条", 0, 3) == [(0, 3)]  # nothing long enough: the whole span is one unit
