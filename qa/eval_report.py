"""Terminal tables: an evaluation report (metrics down, modes across), a comparison of saved
runs, the questions that changed most, the saved runs."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rich.table import Table

from qa.compare import ANSWER_QUALITY, SUPERSCRIPTS

if TYPE_CHECKING:
    from qa.compare import Comparison
    from qa.evaluate import EvalReport
    from qa.runstore import RunSummary


def render_table(report: EvalReport) -> Table:
    table = Table(title=f"{report.queries} questions, {report.off_topic} off-topic", caption=report.knowledge_base)
    table.add_column("metric")
    for mode in report.results:
        table.add_column(mode, justify="right")
    names = list(next(iter(report.results.values())).keys()) if report.results else []
    for name in names:
        cells = [report.results[m].get(name) for m in report.results]
        table.add_row(name, *("—" if v is None else f"{v:.3f}" for v in cells))
    return table


def _marked(comparison: Comparison, label: str, metric: str) -> str:
    markers = "".join(SUPERSCRIPTS[other] for other in comparison.better_than(label, metric))
    return f"{comparison.means[label][metric]:.3f}{markers}"


def render_comparison(comparison: Comparison) -> Table:
    """Metrics down, runs across (ranx's superscripts: significantly better than that run), then
    for each run against the first: the difference, the p-value and per-question wins/losses/ties."""
    first, others = comparison.contenders[0], comparison.contenders[1:]
    test = {"fisher": "Fisher randomisation", "student": "paired t-test"}[comparison.stat_test]
    table = Table(
        title=f"{len(comparison.query_ids)} questions · {test}, significant at p ≤ {comparison.max_p:g}",
        caption="  ".join(f"{c.label} = {c.title} ({c.run.kb})" for c in comparison.contenders),
    )
    table.add_column("metric")
    for contender in comparison.contenders:
        table.add_column(f"{contender.label}: {contender.title}", justify="right")
    for other in others:
        table.add_column(f"Δ {other.label}−{first.label}", justify="right")
        table.add_column(f"p ({other.label}/{first.label})", justify="right")
        table.add_column(f"{other.label} vs {first.label} W/L/T", justify="right")
    for metric in comparison.metrics:
        cells = [_marked(comparison, c.label, metric) for c in comparison.contenders]
        for other in others:
            test_result = comparison.tests[(first.label, other.label)][metric]
            record = comparison.wins[(first.label, other.label)][metric]
            delta = comparison.means[other.label][metric] - comparison.means[first.label][metric]
            star = "*" if test_result["significant"] else ""
            cells += [f"{delta:+.3f}{star}", f"{test_result['p_value']:.4f}",
                      f"{record['wins']}/{record['losses']}/{record['ties']}"]
        table.add_row(metric, *cells)
    for name in ANSWER_QUALITY:  # no paired test: not a per-question score of the shared questions
        values = [c.quality(name) for c in comparison.contenders]
        if any(v is not None for v in values):
            table.add_row(name, *("—" if v is None else f"{v:.3f}" for v in values), *[""] * (3 * len(others)))
    return table


def render_changed(comparison: Comparison, shown: int = 5) -> Table:
    """The questions that changed most, each run's top chunks (✓ = judged relevant)."""
    table = Table(title=f"questions that changed most ({comparison.key_metric})", show_lines=True)
    for column in ("id", "question / gold", *(f"{c.label}" for c in comparison.contenders)):
        table.add_column(column)
    for row in comparison.changed:
        question = f"{row['question']}\ngold: {'；'.join(row['gold'])[:80]}"
        cells = []
        for contender in comparison.contenders:
            label = contender.label
            head = f"{comparison.key_metric} {row['scores'][label]:.3f}"
            if label in row["delta"]:
                head += f" ({row['delta'][label]:+.3f})"
            ranks = [f"{r['rank']}{'✓' if r['relevant'] else ' '} {_short(r['chunk_id'])}" for r in row["rankings"][label][:shown]]
            cells.append("\n".join([head, *ranks]))
        table.add_row(row["id"], question, *cells)
    return table


def _short(chunk_id: str) -> str:
    """A long chunk id by the end of its document id and its chunk number (``…f1498d14#0``):
    document ids of one set usually share their beginning."""
    doc, mark, number = chunk_id.rpartition("#")
    doc = doc if mark else chunk_id
    return (doc if len(doc) <= 14 else "…" + doc[-12:]) + (f"#{number}" if mark else "")


def render_runs(runs: list[RunSummary]) -> Table:
    """One row per saved run (``--json`` has the full paths and every metric)."""
    table = Table(title=f"{len(runs)} saved run(s)")
    for column in ("name", "created (UTC)", "test set", "chunk size", "questions", "mrr@10 by mode", "knowledge base"):
        table.add_column(column)
    for run in runs:
        mrr = "\n".join(f"{mode} {row.get('mrr@10') or 0:.3f}" for mode, row in run.metrics.items())
        test_set = "/".join(Path(run.test_set).parts[-2:]) if run.test_set else ""
        table.add_row(run.name, run.created[:16].replace("T", " "), test_set, str(run.chunk_size or ""),
                      str(run.queries), mrr, Path(run.kb).name)
    return table
