"""评测 tab, second half: two saved runs (or one against a run made now) compared.

Shows the metric table with the significance markers, the per-question change of the key metric
as a bar chart, a recall@k curve per run, and the questions that changed most; choosing one of
those shows both rankings side by side with the gold passages highlighted.
"""
from __future__ import annotations

import html
import json
from pathlib import Path

import gradio as gr
import pandas as pd

from corpus.chunking import ChunkSettings
from corpus.errors import WendaoError
from qa.compare import ANSWER_QUALITY, Comparison, Contender, compare, recall_curve
from qa.evaluate import evaluate
from qa.runstore import RunSummary, catalogue, find_run
from qa.service import Wendao
from ui.web import concurrency, render

NOW = "__now__"
MODES = [("混合", "hybrid"), ("向量", "dense"), ("关键词", "lexical")]
CHANGED_HEADERS = ["编号", "问题", "标准答案", "A", "B", "变化"]
CURVE_KS = (1, 2, 3, 5, 10, 20, 50, 100)


def run_label(summary: RunSummary) -> str:
    test_set = Path(summary.test_set).name if summary.test_set else ""
    size = f"，块 {summary.chunk_size}" if summary.chunk_size else ""
    return f"{summary.name}（{test_set}{size}，{summary.queries} 题，{summary.created[:16].replace('T', ' ')}）"


def run_choices(service: Wendao) -> list[tuple[str, str]]:
    return [(run_label(s), s.reference) for s in reversed(catalogue(service.kb_dir))]


def refresh(service: Wendao) -> tuple:
    """The run pickers, newest first: A the one before the newest, B the newest (or run now)."""
    choices = run_choices(service)
    first = choices[min(1, len(choices) - 1)][1] if choices else None
    second = choices[0][1] if len(choices) > 1 else (NOW if choices else None)
    return (gr.update(choices=choices, value=first),
            gr.update(choices=[*choices, ("现在运行（用 A 的问题重新评测 A 的知识库）", NOW)], value=second))


def run_now(service: Wendao, baseline: Contender, progress: gr.Progress) -> Contender:
    """Evaluate the baseline's questions again, now, on the knowledge base it ran on."""
    run = baseline.run
    target = Wendao(kb_dir=run.kb, chunking=ChunkSettings(size=run.settings.get("chunk_size") or ChunkSettings().size),
                    embedder=service.embedder)

    def update(mode: str, done: int, total: int) -> None:
        progress((done, total), desc="现在运行评测")

    report = evaluate(target, run.queries, [baseline.mode], update, run.test_set)
    return Contender("现在", baseline.mode, report.run)


def metrics_frame(comparison: Comparison) -> pd.DataFrame:
    from qa.compare import SUPERSCRIPTS

    first, others = comparison.contenders[0], comparison.contenders[1:]
    rows = []
    for metric in comparison.metrics:
        row = {"指标": metric}
        for c in comparison.contenders:
            marks = "".join(SUPERSCRIPTS[o] for o in comparison.better_than(c.label, metric))
            row[f"{c.label}: {c.title}"] = f"{comparison.means[c.label][metric]:.3f}{marks}"
        for other in others:
            test = comparison.tests[(first.label, other.label)][metric]
            record = comparison.wins[(first.label, other.label)][metric]
            delta = comparison.means[other.label][metric] - comparison.means[first.label][metric]
            row[f"Δ {other.label}−{first.label}"] = f"{delta:+.3f}"
            row["p 值"] = f"{test['p_value']:.4f}"
            row["显著"] = ("▲" if delta > 0 else "▼") if test["significant"] else "—"
            row["胜/负/平"] = f"{record['wins']}/{record['losses']}/{record['ties']}"
        rows.append(row)
    for name in ANSWER_QUALITY:
        values = {f"{c.label}: {c.title}": c.quality(name) for c in comparison.contenders}
        if any(v is not None for v in values.values()):
            rows.append({"指标": name, **{k: "—" if v is None else f"{v:.3f}" for k, v in values.items()}})
    return pd.DataFrame(rows).fillna("")


def delta_frame(comparison: Comparison) -> pd.DataFrame:
    """Per question: B's key metric minus A's, questions in order of the change."""
    second = comparison.contenders[1].label
    deltas = sorted(((comparison.delta(second, q), q) for q in comparison.query_ids), reverse=True)
    return pd.DataFrame({"序号": list(range(1, len(deltas) + 1)), "变化": [d for d, _ in deltas], "编号": [q for _, q in deltas]})


def curve_frame(comparison: Comparison) -> pd.DataFrame:
    rows = [
        {"k": k, "recall": value, "运行": f"{c.label}: {c.title}"}
        for c in comparison.contenders
        for k, value in recall_curve(c.run, c.mode, comparison.query_ids, CURVE_KS).items()
    ]
    return pd.DataFrame(rows, columns=["k", "recall", "运行"])


def changed_frame(comparison: Comparison) -> pd.DataFrame:
    rows = [
        [row["id"], row["question"], "；".join(row["gold"])[:60], row["scores"]["a"], row["scores"]["b"], row["delta"]["b"]]
        for row in comparison.changed
    ]
    return pd.DataFrame(rows, columns=CHANGED_HEADERS)


def detail_view(comparison: Comparison) -> str:
    """What the changed-question detail needs, as JSON for a hidden textbox (a ``gr.State`` would
    make Gradio hold a heartbeat stream open for every page)."""
    return json.dumps({
        "key_metric": comparison.key_metric,
        "contenders": [{"label": c.label, "title": c.title} for c in comparison.contenders[:2]],
        "changed": comparison.changed,
    }, ensure_ascii=False)


def rankings_html(view: dict, index: int) -> str:
    """One changed question: both rankings side by side, gold passages and gold strings highlighted."""
    changed = view.get("changed") or []
    if not 0 <= index < len(changed):
        return ""
    row = changed[index]
    gold = [g for g in row["gold"] if g]
    columns = []
    for contender in view["contenders"]:
        label = contender["label"]
        items = []
        for item in row["rankings"][label]:
            text = render.highlight(item["text"], {"gold": _occurrences(item["text"], gold)})
            css = "wd-rank wd-gold" if item["relevant"] else "wd-rank"
            items.append(f'<li class="{css}" data-chunk="{html.escape(item["chunk_id"])}">'
                         f'<span class="wd-n">#{int(item["rank"])}</span> <span class="wd-doc">{html.escape(item["chunk_id"])}</span>'
                         f'<div class="wd-passage">{text}</div></li>')
        score = float(row["scores"][label])
        columns.append(f'<div class="wd-ranking" data-run="{html.escape(label)}"><h4>{html.escape(label)}: {html.escape(contender["title"])}'
                       f'（{html.escape(view["key_metric"])} {score:.3f}）</h4><ol>{"".join(items)}</ol></div>')
    head = (f'<div class="wd-question"><b>{html.escape(row["id"])}</b> {html.escape(row["question"])}'
            f'<br>标准答案：{html.escape("；".join(row["gold"]))}</div>')
    return f'<div class="wd-side-by-side">{head}<div class="wd-columns">{"".join(columns)}</div></div>'


def _occurrences(text: str, golds: list[str]) -> list[tuple[int, int]]:
    from corpus.folding import fold

    folded = fold(text)
    spans = []
    for gold in (fold(g) for g in golds):
        start = folded.find(gold)
        while gold and start >= 0:
            spans.append((start, start + len(gold)))
            start = folded.find(gold, start + 1)
    return spans


def _contender(service: Wendao, reference: str, mode: str) -> Contender:
    """A saved run in ``mode``, or in its only mode when it was run in one other mode."""
    run = find_run(reference, service.kb_dir)
    return Contender(reference.partition("@")[0], mode if mode in run.modes or len(run.modes) != 1 else run.modes[0], run)


def run_compare(service: Wendao, first: str | None, second: str | None, mode: str, progress: gr.Progress) -> tuple:
    """(status, metrics, delta chart, recall curve, changed questions, comparison state)."""
    empty = (None, None, None, None, "")
    if not first or not second:
        return render.message_html("请选择两个已保存的评测运行（命令行 wendao eval FILE --save NAME，或上方“保存为”）。"), *empty
    known = {reference for _, reference in run_choices(service)}
    if first not in known or second not in known | {NOW}:  # a client names only listed runs, never a folder
        return render.message_html("所选运行不存在，请重新选择。"), *empty
    try:
        baseline = _contender(service, first, mode)
        other = run_now(service, baseline, progress) if second == NOW else _contender(service, second, mode)
        comparison = compare([baseline, other])
    except (WendaoError, OSError) as error:
        return render.error_html("", error), *empty
    status = (f"{len(comparison.query_ids)} 个问题；检验：配对 t 检验，p ≤ {comparison.max_p:g} 视为显著；"
              f"{comparison.key_metric} 变化最大的 {len(comparison.changed)} 个问题列在下方，点击一行可并排查看两次检索结果。")
    return (render.message_html(status, "info"), metrics_frame(comparison), delta_frame(comparison),
            curve_frame(comparison), changed_frame(comparison), detail_view(comparison))


def build(service: Wendao, tab: gr.Tab) -> list[gr.Dropdown]:
    """The comparison's components and events; returns the two run pickers (to refresh after a save)."""
    gr.Markdown("### 比较两次评测\n已保存的运行（`wendao eval FILE --save NAME`，或上方的“保存为”），或与现在重新运行的结果比较。")
    with gr.Row():
        first = gr.Dropdown(choices=[], label="A（基线）", elem_id="wd-cmp-a", scale=3)
        second = gr.Dropdown(choices=[], label="B", elem_id="wd-cmp-b", scale=3)
        mode = gr.Radio(MODES, value="hybrid", label="检索方式", elem_id="wd-cmp-mode", scale=2)
    start = gr.Button("比较", variant="primary", elem_id="wd-cmp-run")
    status = gr.HTML(elem_id="wd-cmp-status")
    metrics = gr.Dataframe(label="指标（上标字母：显著优于该运行；▲▼：B 相对 A 显著升降）", interactive=False, elem_id="wd-cmp-metrics")
    with gr.Row():
        deltas = gr.BarPlot(x="序号", y="变化", tooltip=["编号", "变化"], label="每个问题的变化（B − A）",
                            elem_id="wd-cmp-delta")
        curve = gr.LinePlot(x="k", y="recall", color="运行", y_lim=[0, 1], label="recall@k", elem_id="wd-cmp-curve")
    changed = gr.Dataframe(label="变化最大的问题（点击一行查看两次检索结果）", interactive=False, wrap=True, elem_id="wd-cmp-changed")
    detail = gr.HTML(elem_id="wd-cmp-detail")
    state = gr.Textbox(visible=False)  # the changed questions' detail (detail_view)

    def start_compare(first_, second_, mode_, progress=gr.Progress()):
        return run_compare(service, first_, second_, mode_, progress)

    def pick(view: str | None, event: gr.SelectData) -> str:
        try:
            shown = json.loads(view or "{}")
            row = event.index[0] if isinstance(event.index, (list, tuple)) else event.index
            return rankings_html(shown, int(row))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            return ""

    start.click(start_compare, [first, second, mode], [status, metrics, deltas, curve, changed, state],
                api_visibility="private", **concurrency.EVALUATION)
    changed.select(pick, [state], detail, api_visibility="private", queue=False)
    tab.select(lambda: refresh(service), None, [first, second], api_visibility="private", queue=False)
    return [first, second]
