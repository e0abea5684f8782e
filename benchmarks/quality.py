"""The README's quality table: every evaluation set, the three retrieval modes side by side.

    python benchmarks/quality.py                  # bundled sample questions + every shared set present
    python benchmarks/quality.py --limit 500      # first 500 questions of each shared set
    python benchmarks/quality.py --sets xquad_zh/test   # the bundled questions and one shared set

Runs the evaluation of ``wendao eval`` (``qa.evaluate``) on the bundled corpus's sample questions
and on each BEIR folder in ``../shared/evaldata`` (indexed once into the user cache), and for
DRCD also with its questions converted to Simplified (cross-script). Prints JSON, then a
Markdown table.
"""
from __future__ import annotations

import argparse

from common import SEEDS, cell, open_set, present, print_json, print_markdown, simplified

from qa.evaluate import evaluate  # noqa: E402  (common puts the repository on sys.path)

SETS = ("cmrc2018/dev", "xquad_zh/test", "drcd/dev", "dureader_demo/search")
MODES = ["lexical", "dense", "hybrid"]
COLUMNS = ("mrr@10", "ndcg@10", "hit@5", "answer_hit")
BUNDLED = "bundled corpus (sample questions)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="first N questions of each shared set")
    parser.add_argument("--sets", default=",".join(SETS), help=f"comma-separated shared sets (default: {','.join(SETS)})")
    args = parser.parse_args()
    reports = {BUNDLED: evaluate(*open_set(SEEDS), MODES)}
    for name in present([s for s in args.sets.split(",") if s]):
        service, queries = open_set(name)
        queries = queries[: args.limit] if args.limit else queries
        reports[name] = evaluate(service, queries, MODES)
        if name.startswith("drcd"):
            reports[f"{name}, questions in Simplified"] = evaluate(service, simplified(queries), MODES)
    print_json({name: report.to_json() for name, report in reports.items()})
    print_markdown(
        ("set", "questions", "mode", *COLUMNS),
        ((name, report.queries, mode, *(cell(report.results[mode].get(c)) for c in COLUMNS))
         for name, report in reports.items() for mode in MODES),
    )
    seeds = reports[BUNDLED].results["hybrid"]
    print(f"\nbundled corpus, hybrid: abstained on {seeds['abstain_off_topic']:.0%} of off-topic questions "
          f"and on {seeds['abstain_on_topic']:.0%} of on-topic ones")


if __name__ == "__main__":
    main()
