"""The README's quality table: every evaluation set, the three retrieval modes side by side.

    python benchmarks/quality.py                  # bundled sample questions + every shared set present
    python benchmarks/quality.py --limit 500      # first 500 questions of each shared set

Runs ``wendao eval`` (``qa.evaluate.evaluate_file``) on the bundled corpus's sample questions
and on each BEIR folder in ``../shared/evaldata`` (indexed once into the user cache), and for
DRCD also with its questions converted to Simplified (cross-script). Prints JSON, then a
Markdown table.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from corpus.pipeline import sample_queries_path  # noqa: E402
from qa.evaluate import beir_kb_dir, build_beir_kb, evaluate, evaluate_file, load_beir, seeds_kb_dir  # noqa: E402
from qa.service import Wendao  # noqa: E402

EVALDATA = Path(__file__).resolve().parents[2] / "shared" / "evaldata"
SETS = ("cmrc2018/dev", "xquad_zh/test", "drcd/dev", "dureader_demo/search")
MODES = ["lexical", "dense", "hybrid"]
COLUMNS = ("mrr@10", "ndcg@10", "hit@5", "answer_hit")


def cross_script(folder: Path, limit: int | None):
    """DRCD's Traditional questions converted to Simplified, asked of its Traditional corpus."""
    import opencc

    corpus, queries = load_beir(folder)
    queries = queries[:limit] if limit else queries
    converter = opencc.OpenCC("t2s")
    for query in queries:
        query.question = converter.convert(query.question)
    service = Wendao(kb_dir=beir_kb_dir(folder))
    build_beir_kb(service, corpus)
    return evaluate(service, queries, MODES)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="first N questions of each shared set")
    args = parser.parse_args()
    reports = {"bundled corpus (sample questions)": evaluate_file(sample_queries_path(), kb_dir=seeds_kb_dir(), modes=MODES)}
    for name in SETS:
        folder = EVALDATA / name
        if not folder.is_dir():
            print(f"skipping {name}: {folder} not present", file=sys.stderr)
            continue
        reports[name] = evaluate_file(folder, modes=MODES, limit=args.limit)
        if name.startswith("drcd"):
            reports[f"{name}, questions in Simplified"] = cross_script(folder, args.limit)
    print(json.dumps({name: {"queries": r.queries, "off_topic": r.off_topic, "results": r.results}
                      for name, r in reports.items()}, ensure_ascii=False, indent=1))
    print("\n| set | questions | mode | " + " | ".join(COLUMNS) + " |")
    print("|---|---|---|" + "---|" * len(COLUMNS))
    for name, report in reports.items():
        for mode in MODES:
            row = report.results[mode]
            cells = " | ".join("—" if row.get(c) is None else f"{row[c]:.3f}" for c in COLUMNS)
            print(f"| {name} | {report.queries} | {mode} | {cells} |")
    seeds = reports["bundled corpus (sample questions)"].results["hybrid"]
    print(f"\nbundled corpus, hybrid: abstained on {seeds['abstain_off_topic']:.0%} of off-topic questions "
          f"and on {seeds['abstain_on_topic']:.0%} of on-topic ones")


if __name__ == "__main__":
    main()
