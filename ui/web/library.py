"""文档库 tab: upload and ingest files, list, remove and rebuild, knowledge-base statistics.

Every write goes through the service, which builds a complete new index generation and swaps
it in atomically, so a failed file or a failed write never loses what the library already had.
"""
from __future__ import annotations

import html
from collections import Counter
from pathlib import Path
from typing import Callable

import gradio as gr

from corpus.errors import WendaoError
from corpus.progress import ProgressCallback
from index.ingest import FileResult, IngestReport
from qa.service import Wendao
from ui.labels import stage_label, status_label, web_fix, with_fix
from ui.web import concurrency, render, uploads
from ui.web.search import document_choices

DOC_HEADERS = ["文档 ID", "标题", "日期", "文号", "段落数", "大小 (KB)", "添加时间"]
SUPPORTED = ".txt .md .html .htm .pdf .docx，图片 .png .jpg .tif .bmp .webp"


def documents_table(service: Wendao) -> list[list]:
    rows = sorted(service.documents(), key=lambda row: row.document.doc_id)
    return [
        [d.doc_id, d.title, d.date or "", d.doc_number or "", row.chunks, round(d.size / 1024, 1), d.added]
        for row in rows
        for d in [row.document]
    ]


def stats_html(service: Wendao) -> str:
    stats = service.stats()
    rows = [
        ("文档", f"{stats.documents}"),
        ("段落", f"{stats.chunks}"),
        ("字符", f"{stats.characters:,}"),
        ("嵌入模型", f"{stats.model}（{stats.dimension} 维）"),
        ("分段", f"每段至多 {stats.chunk_size} 字，重叠 {stats.chunk_overlap} 字"),
        ("索引大小", f"{stats.disk_bytes / 1e6:.1f} MB"),
        ("索引版本", stats.generation),
        ("位置", stats.location),
    ]
    cells = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    return f'<table class="wd-stats">{cells}</table>'


def results_html(results: list[FileResult], summary: str) -> str:
    rows = []
    for result in results:
        status = status_label(result.status)
        if result.status == "failed":
            status = f"{status}：{with_fix(result.reason, web_fix(result.fix))}"
        name = Path(result.source).name or result.source
        rows.append(
            f'<tr class="wd-status-{result.status}" data-file="{html.escape(name)}"><td>{html.escape(name)}</td>'
            f"<td>{html.escape(status)}</td><td>{result.chunks or ''}</td></tr>"
        )
    table = f'<table class="wd-results"><tr><th>文件</th><th>结果</th><th>段落</th></tr>{"".join(rows)}</table>'
    return f'<div class="wd-summary">{html.escape(summary)}</div>{table}'


def _summary(report: IngestReport) -> str:
    counts = Counter(r.status for r in report.results)
    parts = [f"{status_label(s)} {n}" for s, n in counts.items()]
    return f"{'，'.join(parts)}。知识库现有 {report.documents} 篇文档、{report.chunks} 个段落（用时 {report.seconds:.1f} 秒）。"


def _progress(progress: gr.Progress) -> ProgressCallback:
    def update(stage: str, done: int, total: int) -> None:
        progress((done, total), desc=stage_label(stage))

    return update


def _write(service: Wendao, action: Callable[[], IngestReport]) -> str:
    """Run one library write and describe it; a failure leaves the library as it was."""
    try:
        report = action()
    except (WendaoError, OSError) as error:
        return render.error_html("操作失败，文档库未改变：", error)
    return results_html(report.results, _summary(report))


def ingest(service: Wendao, files: list[str] | None, progress: gr.Progress) -> str:
    """Ingest server-side files (the web event passes only uploads, see ``ingest_uploads``)."""
    if not files:
        return render.message_html("请先选择要导入的文件（支持 " + SUPPORTED + "）。")
    return _write(service, lambda: service.ingest([Path(f) for f in files], _progress(progress)))


def ingest_uploads(service: Wendao, blocks: gr.Blocks, files: list[str] | None, progress: gr.Progress) -> str:
    """Ingest what a web client uploaded; one path that it did not upload refuses the whole request."""
    paths = [uploads.uploaded(f, blocks) for f in files or []]
    if any(path is None for path in paths):
        return render.message_html(uploads.REFUSED)
    return ingest(service, [str(path) for path in paths], progress)


def remove(service: Wendao, doc_ids: list[str] | None) -> str:
    if not doc_ids:
        return render.message_html("请先选择要删除的文档。")
    return _write(service, lambda: service.remove(list(doc_ids)))


def rebuild(service: Wendao, progress: gr.Progress) -> str:
    return _write(service, lambda: service.reindex(_progress(progress)))


def build(service: Wendao, blocks: gr.Blocks) -> tuple[Callable[[], tuple], list[gr.components.Component]]:
    """The tab's components and events; returns (refresh function, the views it refreshes).

    ``blocks`` is the app being built: its record of uploads decides which files may be ingested.
    """
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            files = gr.File(label=f"上传文档（{SUPPORTED}，可多选）", file_count="multiple", elem_id="wd-upload")
            ingest_button = gr.Button("导入文档", variant="primary", elem_id="wd-ingest")
            outcome = gr.HTML(elem_id="wd-library-result")
        with gr.Column(scale=2):
            stats = gr.HTML(stats_html(service), elem_id="wd-stats")
            rebuild_button = gr.Button("重建索引", elem_id="wd-rebuild")
    table = gr.Dataframe(
        value=documents_table(service),
        headers=DOC_HEADERS,
        interactive=False,
        wrap=True,
        label="文档列表",
        elem_id="wd-documents",
    )
    with gr.Row():
        picked = gr.Dropdown(
            choices=document_choices(service), multiselect=True, label="选择要删除的文档", scale=4, elem_id="wd-remove-docs"
        )
        remove_button = gr.Button("删除所选文档", variant="stop", scale=1, elem_id="wd-remove")

    def refresh() -> tuple:
        return documents_table(service), stats_html(service), gr.update(choices=document_choices(service), value=[])

    views = [table, stats, picked]

    def run_ingest(paths, progress=gr.Progress()):
        return ingest_uploads(service, blocks, paths, progress), None, *refresh()

    def run_remove(doc_ids):
        return remove(service, doc_ids), *refresh()

    def run_rebuild(progress=gr.Progress()):
        return rebuild(service, progress), *refresh()

    ingest_button.click(run_ingest, [files], [outcome, files, *views], api_visibility="private", **concurrency.LIBRARY)
    remove_button.click(run_remove, [picked], [outcome, *views], api_visibility="private", **concurrency.LIBRARY)
    rebuild_button.click(run_rebuild, None, [outcome, *views], api_visibility="private", **concurrency.LIBRARY)
    return refresh, views
