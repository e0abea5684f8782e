"""Calibrate abstention and measure extractive answers, on the shared dev sets and off-topic questions.

    python benchmarks/answers.py                     # bundled corpus + all shared sets present
    python benchmarks/answers.py --sets seeds --limit 300

On-topic questions: each set's own (the bundled corpus's sample file, and the span sets' dev
questions against their passages). Off-topic questions: ``benchmarks/data/offtopic.jsonl``
(written for calibration, separate from the sample file's off-topic questions, which stay a
test) asked of every knowledge base, plus the sample file's own off-topic questions asked of
the bundled corpus. For every threshold it reports the share of on-topic questions that would
abstain and the share of off-topic ones that would not; then answer hit at the default
threshold. Prints JSON, then a table.
"""
from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np
from common import open_set, present, print_json

from qa.answer import AnswerSettings  # after common, which puts the repository on sys.path
from qa.evaluate import answer_hit
from qa.query import plan_query
from qa.service import Wendao
from qa.testsets import EvalQuery, load_queries

OFF_TOPIC = Path(__file__).resolve().parent / "data" / "offtopic.jsonl"
SETS = ("seeds", "cmrc2018/dev", "xquad_zh/test", "drcd/dev")
THRESHOLDS = [round(float(t), 2) for t in np.arange(0.29, 0.61, 0.02)]


def run_set(service: Wendao, queries: list[EvalQuery]) -> list[dict]:
    """Confidence and answer hit of every question (hybrid retrieval, no threshold applied)."""
    service.answering = replace(service.answering, abstain_below=-1.0)
    retriever = service.retriever()
    rows = []
    plans = [plan_query(q.question) for q in queries]
    retriever.embed(plans)
    for query, plan in zip(queries, plans):
        answer = service.answer_from(plan, retriever.search(plan, k=service.answering.passages))
        rows.append({"off_topic": query.off_topic, "confidence": answer.confidence, "hit": answer_hit(query, answer.text)})
    return rows


def summarise(rows: list[dict], threshold: float) -> dict:
    on = [r for r in rows if not r["off_topic"]]
    off = [r for r in rows if r["off_topic"]]
    with_gold = [r for r in on if r["hit"] is not None]
    return {
        "on_topic": len(on),
        "off_topic": len(off),
        "abstain_on_topic": round(float(np.mean([r["confidence"] < threshold for r in on])), 4) if on else None,
        "answer_off_topic": round(float(np.mean([r["confidence"] >= threshold for r in off])), 4) if off else None,
        "answer_hit": round(float(np.mean([bool(r["hit"]) and r["confidence"] >= threshold for r in with_gold])), 4)
        if with_gold else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default=",".join(SETS))
    parser.add_argument("--limit", type=int, default=1000, help="first N questions of each shared set")
    args = parser.parse_args()
    off_topic = load_queries(OFF_TOPIC)
    default = AnswerSettings().abstain_below
    results: dict[str, dict] = {}
    for name in present(args.sets):
        service, queries = open_set(name)
        rows = run_set(service, queries[: args.limit] + off_topic)
        results[name] = {
            "default": {"threshold": default, **summarise(rows, default)},
            "sweep": {str(t): summarise(rows, t) for t in THRESHOLDS},
            "confidence": {
                "on_topic_p05": round(float(np.percentile([r["confidence"] for r in rows if not r["off_topic"]], 5)), 4),
                "off_topic_max": round(max(r["confidence"] for r in rows if r["off_topic"]), 4),
            },
        }
    print_json(results)
    print("\nthreshold | " + " | ".join(f"{n[:14]:>14} on-abst / off-ans" for n in results))
    for t in THRESHOLDS:
        cells = [results[n]["sweep"][str(t)] for n in results]
        mark = " *" if abs(t - default) < 1e-9 else "  "
        print(f"{t:>8.2f}{mark}| " + " | ".join(f"{c['abstain_on_topic']:>14.3f} / {c['answer_off_topic']:<7.3f}" for c in cells))
    print("\nanswer hit at the default threshold: " + ", ".join(f"{n} {results[n]['default']['answer_hit']}" for n in results))


if __name__ == "__main__":
    main()
