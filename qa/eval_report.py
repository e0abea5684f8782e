"""Drawing an evaluation report as a terminal table (metrics down, retrieval modes across)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from rich.table import Table

if TYPE_CHECKING:
    from qa.evaluate import EvalReport


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
