"""Saved runs side by side: metrics with a paired significance test, per-question wins and losses,
and the questions that changed most with both rankings.

Per-question scores come from ranx (``evaluate(..., return_mean=False)``) and the tests are ranx's
(``compute_statistical_significance``: Fisher's randomisation test or the paired Student's t-test),
exactly what ``ranx.compare`` runs; ranx's ``compare`` itself takes one qrels for all runs, while
runs of two chunkings judge different chunk ids (each run's own gold), so the same two steps run
here with each run's own qrels. Runs are paired on the on-topic questions they share.
A t-test of two identical score lists has no defined p (0/0); there is no difference, so p = 1.
The t-test is the default (as in ``ranx.compare``): ranx draws Fisher's permutations in parallel
numba threads whose generators the seed does not reach, so its p-values move by about 0.005
from one run to the next.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from qa.evaluate import METRICS, EvalRun, answer_hit, judged_by_documents, ranx_scores
from qa.workbench_db import WorkbenchError

STAT_TESTS = ("fisher", "student")
COMPARED = (*(m.replace("hit_rate@", "hit@") for m in METRICS), "answer_hit")  # named as wendao eval names them
LABELS = "abcdefghijklmnop"
SUPERSCRIPTS = dict(zip(LABELS, "ᵃᵇᶜᵈᵉᶠᵍʰⁱʲᵏˡᵐⁿᵒᵖ"))  # ranx's markers: significantly better than run x
SHOWN = 10  # chunks of each ranking shown for a changed question
ANSWER_QUALITY = ("citation_precision", "abstain_on_topic", "abstain_off_topic")  # per run, from its own metrics


@dataclass
class Contender:
    """One side of a comparison: a saved run (by name) in one retrieval mode."""

    name: str
    mode: str
    run: EvalRun
    label: str = ""

    @property
    def title(self) -> str:
        return f"{self.name}:{self.mode}"

    def quality(self, name: str) -> float | None:
        """An answer-quality figure of the whole run (its own questions, off-topic ones included)."""
        return self.run.metrics.get(self.mode, {}).get(name)


@dataclass
class Comparison:
    contenders: list[Contender]
    metrics: list[str]
    query_ids: list[str]
    per_query: dict[str, dict[str, dict[str, float]]]  # label -> metric -> query id -> score
    means: dict[str, dict[str, float]]
    tests: dict[tuple[str, str], dict[str, dict]]  # (label, label) -> metric -> {p_value, significant}
    wins: dict[tuple[str, str], dict[str, dict[str, int]]]  # (a, b) -> metric -> {wins, losses, ties} of b over a
    stat_test: str
    max_p: float
    key_metric: str
    changed: list[dict] = field(default_factory=list)

    def delta(self, label: str, query_id: str, baseline: str = "a") -> float:
        scores = self.per_query
        return scores[label][self.key_metric][query_id] - scores[baseline][self.key_metric][query_id]

    def better_than(self, label: str, metric: str) -> list[str]:
        """Labels this contender beats on ``metric`` with p <= max_p (ranx's superscript markers)."""
        return [
            other.label
            for other in self.contenders
            if other.label != label
            and self.tests[(other.label, label)][metric]["significant"]
            and self.means[label][metric] > self.means[other.label][metric]
        ]

    def to_json(self) -> dict:
        baseline = self.contenders[0].label
        return {
            "stat_test": self.stat_test,
            "max_p": self.max_p,
            "key_metric": self.key_metric,
            "questions": len(self.query_ids),
            "runs": [
                {"label": c.label, "name": c.name, "mode": c.mode, "kb": c.run.kb, "generation": c.run.generation,
                 "chunk_size": c.run.settings.get("chunk_size"), "test_set": c.run.test_set,
                 "metrics": {m: _round(self.means[c.label][m]) for m in self.metrics},
                 "answer_quality": {k: c.quality(k) for k in ("answer_hit", *ANSWER_QUALITY)},
                 "better_than": {m: self.better_than(c.label, m) for m in self.metrics}}
                for c in self.contenders
            ],
            "comparisons": [
                {"baseline": a, "other": b,
                 "metrics": {m: {"delta": _round(self.means[b][m] - self.means[a][m]),
                                 "p_value": _round(self.tests[(a, b)][m]["p_value"], 6),
                                 "significant": self.tests[(a, b)][m]["significant"],
                                 **self.wins[(a, b)][m]} for m in self.metrics}}
                for a, b in self.wins
                if a == baseline
            ],
            "changed": self.changed,
        }


def _round(value: float, digits: int = 4) -> float:
    return round(float(value), digits)


def per_query_scores(run: EvalRun, mode: str, query_ids: list[str], metrics: list[str]) -> dict[str, dict[str, float]]:
    """metric -> query id -> score, from ranx with the run's own gold."""
    ranking_metrics = [m for m in metrics if m != "answer_hit"]
    per_query = ranx_scores({q: run.gold[q] for q in query_ids}, {q: run.units(mode, q) for q in query_ids},
                            [m.replace("hit@", "hit_rate@") for m in ranking_metrics], per_query=True)
    scores = {m: dict(zip(query_ids, map(float, per_query[m.replace("hit@", "hit_rate@")]), strict=True)) for m in ranking_metrics}
    if "answer_hit" in metrics:
        results = run.results[mode]
        scores["answer_hit"] = {q: float(bool(answer_hit(run.query(q), results[q].answer))) for q in query_ids}
    return scores


def compare(
    contenders: list[Contender],
    metrics: list[str] | None = None,
    stat_test: str = "student",
    max_p: float = 0.05,
    key_metric: str = "mrr@10",
    top: int = 10,
    permutations: int = 10_000,
) -> Comparison:
    from ranx.statistical_tests import compute_statistical_significance

    if not 2 <= len(contenders) <= len(LABELS):
        raise WorkbenchError(f"compare needs 2 to {len(LABELS)} runs, got {len(contenders)}")
    if stat_test not in STAT_TESTS:
        raise WorkbenchError(f"unknown test {stat_test!r}: choose one of {', '.join(STAT_TESTS)}")
    for index, contender in enumerate(contenders):
        contender.label = LABELS[index]
        if contender.mode not in contender.run.results:
            raise WorkbenchError(f"run {contender.name!r} has no {contender.mode} results (it has {', '.join(contender.run.modes)})")
    query_ids = [q for q in contenders[0].run.gold if all(q in c.run.gold for c in contenders[1:])]
    if not query_ids:
        raise WorkbenchError("these runs share no on-topic question: they were not run on the same test set")
    metrics = list(metrics or COMPARED)
    if "answer_hit" in metrics and not all(contenders[0].run.query(q).answers for q in query_ids):
        metrics.remove("answer_hit")  # only defined where every question has gold answer strings
    if key_metric not in metrics:
        raise WorkbenchError(f"unknown metric {key_metric!r}: choose one of {', '.join(metrics)}")
    per_query = {c.label: per_query_scores(c.run, c.mode, query_ids, metrics) for c in contenders}
    arrays = {label: {m: np.array([s[m][q] for q in query_ids]) for m in metrics} for label, s in per_query.items()}
    labels = [c.label for c in contenders]
    found = compute_statistical_significance(labels, arrays, stat_test=stat_test, n_permutations=permutations,
                                             max_p=max_p, random_seed=42)
    tests, wins = {}, {}
    for a in labels:
        for b in labels:
            if a == b:
                continue
            tests[(a, b)] = {m: _test(found[frozenset((a, b))][m]) for m in metrics}
            wins[(a, b)] = {
                m: {"wins": int((arrays[b][m] > arrays[a][m]).sum()), "losses": int((arrays[b][m] < arrays[a][m]).sum()),
                    "ties": int((arrays[b][m] == arrays[a][m]).sum())}
                for m in metrics
            }
    means = {label: {m: float(arrays[label][m].mean()) for m in metrics} for label in labels}
    comparison = Comparison(contenders, metrics, query_ids, per_query, means, tests, wins, stat_test, max_p, key_metric)
    comparison.changed = changed_questions(comparison, top)
    return comparison


def _test(result: dict) -> dict:
    p_value = float(result["p_value"])
    if math.isnan(p_value):  # t-test of identical scores: no difference at all
        p_value = 1.0
    return {"p_value": p_value, "significant": bool(result["significant"]) and p_value <= 1.0}


def changed_questions(comparison: Comparison, top: int) -> list[dict]:
    """The ``top`` questions whose key metric moved most against the first run, both rankings each."""
    baseline = comparison.contenders[0].label
    others = [c.label for c in comparison.contenders[1:]]

    def movement(query_id: str) -> float:
        return max(abs(comparison.delta(label, query_id, baseline)) for label in others)

    moved = sorted((q for q in comparison.query_ids if movement(q) > 0), key=lambda q: (-movement(q), q))[:top]
    return [question_view(comparison, q) for q in moved]


def question_view(comparison: Comparison, query_id: str) -> dict:
    """A question with its gold, each run's score on the key metric and each run's top chunks."""
    first = comparison.contenders[0]
    query = first.run.query(query_id)
    baseline = first.label
    return {
        "id": query_id,
        "question": query.question,
        "gold": query.answers or query.relevant or list(first.run.gold[query_id]),
        "scores": {c.label: _round(comparison.per_query[c.label][comparison.key_metric][query_id]) for c in comparison.contenders},
        "delta": {c.label: _round(comparison.delta(c.label, query_id, baseline)) for c in comparison.contenders[1:]},
        "rankings": {c.label: ranking_view(c, query_id) for c in comparison.contenders},
    }


def ranking_view(contender: Contender, query_id: str, shown: int = SHOWN) -> list[dict]:
    """A question's top ``shown`` units as the metrics saw them: chunks, or (judged by documents)
    each document once, at its best chunk."""
    run = contender.run
    gold = run.gold[query_id]
    by_documents = judged_by_documents(run.query(query_id))
    result = run.results[contender.mode][query_id]
    view, seen = [], set()
    for r in result.ranked:
        unit = r.doc_id if by_documents else r.chunk_id
        if unit in seen:
            continue
        seen.add(unit)
        view.append({"rank": len(view) + 1, "chunk_id": r.chunk_id, "doc_id": r.doc_id, "score": r.score,
                     "relevant": unit in gold, "text": result.snippets.get(r.chunk_id, "")})
        if len(view) == shown:
            break
    return view


def recall_curve(run: EvalRun, mode: str, query_ids: list[str], ks: tuple[int, ...]) -> dict[int, float]:
    """Mean recall@k of one run over ``query_ids``, for each k."""
    scores = per_query_scores(run, mode, query_ids, [f"recall@{k}" for k in ks])
    return {k: round(float(np.mean(list(scores[f"recall@{k}"].values()))), 4) for k in ks}
