"""The evaluation workbench through the real ``wendao`` command: saved runs, TREC files, comparisons.

One evaluation of the bundled questions (lexical and hybrid, the real model on a copy of the seed
knowledge base) is saved and exported once per module; every test reads what it produced.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from corpus.pipeline import sample_queries_path
from qa.compare import Contender, compare
from qa.evaluate import METRICS, metric_scores
from qa.runstore import list_runs, load_run
from qa.testsets import read_qrels

WENDAO = str(Path(sys.executable).with_name("wendao"))


def wendao(*args: str, env_dir: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "XDG_CACHE_HOME": str(env_dir / "cache"), "XDG_DATA_HOME": str(env_dir / "data")}
    result = subprocess.run([WENDAO, *args], capture_output=True, text=True, timeout=600, env=env)
    if check:
        assert result.returncode == 0, result.stderr
    return result


@pytest.fixture(scope="module")
def saved(seed_kb_dir, tmp_path_factory):
    """``wendao eval`` of the bundled questions, saved as ``base`` with its TREC files."""
    import shutil

    root = tmp_path_factory.mktemp("workbench")
    kb = root / "kb"
    shutil.copytree(seed_kb_dir, kb, ignore=shutil.ignore_patterns("write.lock"))
    run_file, qrels_file = root / "run.trec", root / "gold.qrels"
    result = wendao("eval", str(sample_queries_path()), "--kb", str(kb), "--modes", "lexical,hybrid", "--save", "base",
                    "--trec-run", str(run_file), "--qrels-out", str(qrels_file), "--json", env_dir=root)
    return {"root": root, "kb": kb, "report": json.loads(result.stdout), "run": run_file, "qrels": qrels_file}


def ranx_own_scores(qrels, run) -> dict[str, float]:
    """What ranx computes from its own ``Qrels``/``Run`` objects (wendao passes plain dicts)."""
    from ranx import evaluate

    return {name.replace("hit_rate@", "hit@"): round(float(value), 4) for name, value in evaluate(qrels, run, list(METRICS)).items()}


def test_metric_scores_equal_ranx_on_its_own_objects():
    """Queries in another order than the gold, an empty ranking, a question judged only
    non-relevant: wendao's plain-dict path scores exactly as ranx's objects do."""
    from ranx import Qrels, Run

    gold = {"q1": {"c1": 1, "c2": 1}, "q2": {"c4": 1}, "q3": {"c7": 1}, "q4": {"c9": 0}, "q5": {"c3": 1}}
    ranked = {"q5": {f"c{n}": 1 / n for n in range(1, 12)}, "q3": {}, "q1": {"c3": 0.9, "c2": 0.8, "c1": 0.1},
              "q2": {"c4": 0.5}, "q4": {"c9": 0.7, "c8": 0.2}}
    assert metric_scores(gold, ranked, METRICS) == ranx_own_scores(Qrels(gold), Run(ranked))
    with pytest.raises(ValueError, match="different questions"):
        metric_scores(gold, {"q1": ranked["q1"]}, METRICS)


def test_trec_files_reread_by_ranx_give_the_reported_metrics(saved):
    from ranx import Qrels, Run

    lines = saved["run"].read_text(encoding="utf-8").splitlines()
    assert {line.split()[5] for line in lines} == {"lexical", "hybrid"}  # one file, the tag names the mode
    assert all(line.split()[1] == "Q0" for line in lines)
    qrels = Qrels.from_file(str(saved["qrels"]), kind="trec")
    for mode in ("lexical", "hybrid"):
        own = saved["root"] / f"{mode}.trec"
        own.write_text("".join(line + "\n" for line in lines if line.split()[5] == mode), encoding="utf-8")
        scores = ranx_own_scores(qrels, Run.from_file(str(own), kind="trec"))
        reported = saved["report"]["results"][mode]
        assert scores == {name: reported[name] for name in scores}, mode
    assert saved["report"]["queries"] == len(qrels.to_dict()) == 55


def test_saved_run_is_listed_and_holds_every_question(saved):
    [summary] = list_runs(saved["kb"])
    assert (summary.name, summary.modes, summary.queries, summary.chunk_size) == ("base", ["lexical", "hybrid"], 64, 300)
    run = load_run(saved["kb"], "base")
    assert run.metrics == saved["report"]["results"]
    assert all(len(run.results[mode]) == 64 for mode in run.modes)
    listed = json.loads(wendao("runs", "--kb", str(saved["kb"]), "--json", env_dir=saved["root"]).stdout)
    assert [(r["name"], r["kb"]) for r in listed] == [("base", str(saved["kb"]))]
    again = wendao("eval", str(sample_queries_path()), "--kb", str(saved["kb"]), "--save", "base", env_dir=saved["root"],
                   check=False)
    assert again.returncode == 2 and "already saved" in again.stderr and len(again.stderr.strip().splitlines()) == 1


def test_a_run_compared_with_itself_differs_nowhere(saved):
    out = wendao("eval", "compare", "base:hybrid", "base:hybrid", "--kb", str(saved["kb"]), "--json", env_dir=saved["root"])
    comparison = json.loads(out.stdout)
    assert comparison["stat_test"] == "student"
    [pair] = comparison["comparisons"]
    for metric, row in pair["metrics"].items():
        assert row["p_value"] == 1.0 and not row["significant"] and row["delta"] == 0, metric
        assert (row["wins"], row["losses"], row["ties"]) == (0, 0, 55), metric
    assert comparison["changed"] == []
    # Fisher's randomisation test agrees (in-process: one process compiles ranx once)
    run = load_run(saved["kb"], "base")
    fisher = compare([Contender("base", "hybrid", run), Contender("base", "hybrid", run)], stat_test="fisher")
    assert all(fisher.tests[("a", "b")][m] == {"p_value": 1.0, "significant": False} for m in fisher.metrics)


def reciprocal_rank(ranked: list, gold: dict, depth: int = 10) -> float:
    for rank, item in enumerate(ranked[:depth], 1):
        if item.chunk_id in gold:
            return 1 / rank
    return 0.0


def test_lexical_against_hybrid_deltas_match_the_rankings(saved):
    """Per-question changes of MRR@10, recomputed here from the two rankings the run saved."""
    out = wendao("eval", "compare", "base:lexical", "base:hybrid", "--kb", str(saved["kb"]), "--top", "100", "--json",
                 env_dir=saved["root"])
    comparison = json.loads(out.stdout)
    run = load_run(saved["kb"], "base")
    by_hand = {
        qid: reciprocal_rank(run.results["hybrid"][qid].ranked, gold) - reciprocal_rank(run.results["lexical"][qid].ranked, gold)
        for qid, gold in run.gold.items()
    }
    reported = {row["id"]: row["delta"]["b"] for row in comparison["changed"]}
    assert reported == {qid: round(delta, 4) for qid, delta in by_hand.items() if delta != 0}
    assert reported, "lexical and hybrid rank the bundled questions identically?"
    mrr = comparison["comparisons"][0]["metrics"]["mrr@10"]
    assert mrr["delta"] == round(sum(by_hand.values()) / len(by_hand), 4)
    assert (mrr["wins"], mrr["losses"]) == (sum(d > 0 for d in by_hand.values()), sum(d < 0 for d in by_hand.values()))
    assert 0 < mrr["p_value"] <= 1
    biggest = comparison["changed"][0]  # both rankings, gold marked
    for label, mode in (("a", "lexical"), ("b", "hybrid")):
        shown = [(r["chunk_id"], r["relevant"]) for r in biggest["rankings"][label]]
        ranked = run.results[mode][biggest["id"]].ranked[:10]
        assert shown == [(r.chunk_id, r.chunk_id in run.gold[biggest["id"]]) for r in ranked]


def test_trec_qrels_are_a_test_set(saved):
    """The exported qrels, given back as the gold of the questions, judge the same chunks."""
    out = wendao("eval", str(sample_queries_path()), "--qrels", str(saved["qrels"]), "--kb", str(saved["kb"]),
                 "--modes", "lexical", "--json", env_dir=saved["root"])
    results = json.loads(out.stdout)["results"]["lexical"]
    reported = saved["report"]["results"]["lexical"]
    assert {m: results[m] for m in ("mrr@10", "ndcg@10", "recall@5", "hit@5")} == {
        m: reported[m] for m in ("mrr@10", "ndcg@10", "recall@5", "hit@5")}
    assert results["abstain_off_topic"] == reported["abstain_off_topic"]  # off-topic questions kept


def test_qrels_reader_takes_trec_and_beir(tmp_path):
    trec = tmp_path / "gold.qrels"
    trec.write_text("q1 0 a%20b.txt#3 1\nq1 0 c.txt#1 0\n", encoding="utf-8")
    assert read_qrels(trec) == {"q1": {"a b.txt#3": 1, "c.txt#1": 0}}
    beir = tmp_path / "qrels.tsv"
    beir.write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n", encoding="utf-8")
    assert read_qrels(beir) == {"q1": {"d1": 1}}
