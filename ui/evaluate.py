"""评测 tab: run a query file (the bundled sample, an uploaded JSONL or a zipped BEIR folder).

Shows the metrics per retrieval mode, a recall@k chart, and each question whose gold was not in
the top 5 together with what was retrieved instead.
"""
from __future__ import annotations

import tempfile
import zipfile
from pathlib import Path
from typing import Callable

import gradio as gr
import pandas as pd

from corpus.pipeline import sample_queries_path
from index.store import KnowledgeBaseError
from qa.evaluate import EvalQuery, EvalReport, beir_kb_dir, build_beir_kb, evaluate, load_beir, load_queries
from qa.service import Wendao
from ui import queue, render

MODES = [("混合", "hybrid"), ("向量", "dense"), ("关键词", "lexical")]
MODE_NAMES = {value: label for label, value in MODES}
SOURCES = [("自带示例问题集", "sample"), ("上传查询文件", "upload")]
RECALL_KS = (1, 3, 5, 10)
UPLOAD_LABEL = '查询文件（JSONL：每行 {"id", "question", "answers" 或 "relevant"}；或 BEIR 文件夹的 zip）'
FAILURE_HEADERS = ["检索方式", "编号", "问题", "标准答案 / 相关文档", "实际检索到（前 3 段）"]


class QueryFileError(ValueError):
    """A query file that cannot be used; the message names the file and what is wrong."""


def _extract_zip(path: Path, name: str) -> Path:
    """Unpack a zipped BEIR folder safely and return the folder that holds corpus.jsonl."""
    target = Path(tempfile.mkdtemp(prefix="wendao-beir-")) / Path(name).stem
    try:
        with zipfile.ZipFile(path) as archive:
            for member in archive.namelist():
                if not (target / member).resolve().is_relative_to(target.resolve()):
                    raise QueryFileError(f"{name}：压缩包中的路径不安全：{member}")
            archive.extractall(target)
    except zipfile.BadZipFile:
        raise QueryFileError(f"{name}：不是有效的 zip 文件") from None
    found = sorted(target.rglob("corpus.jsonl"), key=lambda p: len(p.parts))
    if not found:
        raise QueryFileError(f"{name}：压缩包里没有 BEIR 文件夹（需要 corpus.jsonl、queries.jsonl、qrels.tsv）")
    return found[0].parent


def load_target(service: Wendao, path: Path, name: str, progress: gr.Progress) -> tuple[Wendao, list[EvalQuery]]:
    """The service to evaluate and its questions; a BEIR zip gets its own cached knowledge base."""
    suffix = Path(name).suffix.lower()
    try:
        if suffix == ".jsonl":
            return service, load_queries(path)
        if suffix == ".zip":
            folder = _extract_zip(path, name)
            corpus, queries = load_beir(folder)
            if not queries:
                raise QueryFileError(f"{name}：queries.jsonl 中没有出现在 qrels.tsv 里的问题")
            beir = Wendao(
                kb_dir=beir_kb_dir(folder, service.chunking.size, service.model_name),
                chunking=service.chunking,
                embedder=service.embedder,
            )
            progress(0, desc="为 BEIR 语料建立索引（只在第一次）")
            build_beir_kb(beir, corpus, progress=_progress(progress))
            return beir, queries
    except QueryFileError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        # Messages from the loaders name the temporary upload path; show the user's file name.
        message = str(error).replace(str(path), name)
        raise QueryFileError(f"查询文件格式错误：{message or type(error).__name__}") from None
    raise QueryFileError(f"{name}：不支持的查询文件类型 {suffix or '（无扩展名）'}，请上传 .jsonl 或 BEIR 文件夹的 .zip")


def metrics_frame(report: EvalReport) -> pd.DataFrame:
    names = list(next(iter(report.results.values())))
    rows = [[name, *(report.results[mode].get(name) for mode in report.results)] for name in names]
    return pd.DataFrame(rows, columns=["指标", *(MODE_NAMES.get(m, m) for m in report.results)])


def recall_frame(report: EvalReport) -> pd.DataFrame:
    rows = [
        {"k": k, "recall": row.get(f"recall@{k}"), "检索方式": MODE_NAMES.get(mode, mode)}
        for mode, row in report.results.items()
        for k in RECALL_KS
        if row.get(f"recall@{k}") is not None
    ]
    return pd.DataFrame(rows, columns=["k", "recall", "检索方式"])


def failures_frame(report: EvalReport) -> pd.DataFrame:
    rows = [
        [MODE_NAMES.get(f.mode, f.mode), f.id, f.question, "；".join(f.gold), " ｜ ".join(f.retrieved)]
        for f in report.failures
    ]
    return pd.DataFrame(rows, columns=FAILURE_HEADERS)


def _progress(progress: gr.Progress) -> Callable[[str, int, int], None]:
    def update(mode: str, done: int, total: int) -> None:
        progress((done, total), desc=f"评测：{MODE_NAMES.get(mode, mode)}")

    return update


def run(service: Wendao, source: str, upload: str | None, modes: list[str], progress: gr.Progress) -> tuple:
    """(status HTML, metrics, recall chart data, failures); on bad input only the status is set."""
    empty = (None, None, None)
    if not modes:
        return render.message_html("请至少选择一种检索方式。"), *empty
    if source == "upload":
        if not upload:
            return render.message_html("请先上传查询文件（.jsonl，或 BEIR 文件夹的 .zip）。"), *empty
        path, name = Path(upload), Path(upload).name
    else:
        path = sample_queries_path()
        name = path.name
    try:
        target, queries = load_target(service, path, name, progress)
        report = evaluate(target, queries, modes, _progress(progress))
    except (QueryFileError, KnowledgeBaseError, OSError) as error:
        return render.message_html(str(error)), *empty
    status = (
        f"{name}：{report.queries} 个问题"
        + (f"，另有 {report.off_topic} 个无关问题（检验拒答）" if report.off_topic else "")
        + f"；未在前 5 名找到答案 {len(report.failures)} 次。"
    )
    return render.message_html(status, "info"), metrics_frame(report), recall_frame(report), failures_frame(report)


def build(service: Wendao) -> None:
    sample = sample_queries_path()
    with gr.Row():
        default = "sample" if sample.is_file() else "upload"
        source = gr.Radio(SOURCES, value=default, label="问题集", elem_id="wd-eval-source")
        modes = gr.CheckboxGroup(MODES, value=[m for _, m in MODES], label="检索方式", elem_id="wd-eval-modes")
    upload = gr.File(label=UPLOAD_LABEL, elem_id="wd-eval-upload")
    start = gr.Button("运行评测", variant="primary", elem_id="wd-eval-run")
    status = gr.HTML(elem_id="wd-eval-status")
    metrics = gr.Dataframe(label="指标（按检索方式）", interactive=False, elem_id="wd-eval-metrics")
    chart = gr.LinePlot(x="k", y="recall", color="检索方式", y_lim=[0, 1], label="recall@k", elem_id="wd-eval-chart")
    failures = gr.Dataframe(
        label="失败的问题（答案不在前 5 名）",
        interactive=False,
        wrap=True,
        column_widths=["8%", "6%", "22%", "16%", "48%"],
        elem_id="wd-eval-failures",
    )

    def start_run(source_, upload_, modes_, progress=gr.Progress(track_tqdm=True)):
        return run(service, source_, upload_, modes_, progress)

    outputs = [status, metrics, chart, failures]
    start.click(start_run, [source, upload, modes], outputs, api_visibility="private", **queue.EVALUATION)
