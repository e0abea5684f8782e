"""评测 tab: run a query file (the bundled sample, an uploaded JSONL, a zipped BEIR folder or the
knowledge base's own judgments), optionally saving the run; then compare saved runs.

Shows the metrics per retrieval mode, a recall@k chart, and each question whose gold was not in
the top 5 together with what was retrieved instead.
"""
from __future__ import annotations

import posixpath
import stat
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Callable

import gradio as gr
import pandas as pd

from corpus.errors import WendaoError
from corpus.pipeline import sample_queries_path
from qa.evaluate import EvalReport, beir_service, build_beir_kb, evaluate
from index.backend import kb_location
from qa.judgments import judged_queries
from qa.runstore import check_name, save_run
from qa.service import Wendao
from qa.testsets import EvalQuery, load_beir, load_queries
from ui.web import compare, concurrency, render, uploads

MODES = [("混合", "hybrid"), ("向量", "dense"), ("关键词", "lexical")]
MODE_NAMES = {value: label for label, value in MODES}
SOURCES = [("自带示例问题集", "sample"), ("上传查询文件", "upload"), ("本知识库的标注", "judged")]
RECALL_KS = (1, 3, 5, 10)
UPLOAD_LABEL = '查询文件（JSONL：每行 {"id", "question", "answers" 或 "relevant"}；或 BEIR 文件夹的 zip）'
FAILURE_HEADERS = ["检索方式", "编号", "问题", "标准答案 / 相关文档", "实际检索到（前 3 段）"]


# A BEIR folder is three or four files; the shared dev sets unpack to under 3 MB each.
ZIP_MAX_ENTRIES = 1000
ZIP_MAX_BYTES = 256 * 1024 * 1024  # unpacked, all entries together
_COPY_CHUNK = 1024 * 1024


class QueryFileError(WendaoError):
    """A query file that cannot be used; the message names the file and what is wrong."""


def _check_members(members: list[zipfile.ZipInfo], name: str) -> None:
    """Refuse, before anything is written, entries that could land outside the folder or fill the disk."""
    if len(members) > ZIP_MAX_ENTRIES:
        raise QueryFileError(f"{name}：压缩包中的条目过多（{len(members)} 个，最多 {ZIP_MAX_ENTRIES} 个）")
    declared = 0
    for info in members:
        entry = info.filename.replace("\\", "/")
        parts = entry.split("/")
        if entry.startswith("/") or posixpath.isabs(entry) or ":" in parts[0] or ".." in parts or "\0" in entry:
            raise QueryFileError(f"{name}：压缩包中的路径不安全：{info.filename}")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise QueryFileError(f"{name}：压缩包中含有符号链接，已拒绝：{info.filename}")
        if info.flag_bits & 0x1:
            raise QueryFileError(f"{name}：压缩包已加密，无法读取：{info.filename}")
        declared += info.file_size
    if declared > ZIP_MAX_BYTES:
        raise QueryFileError(f"{name}：压缩包解压后过大（{declared / 2**20:.0f} MB，最多 {ZIP_MAX_BYTES // 2**20} MB）")


def _extract_zip(path: Path, name: str, scratch: Path) -> Path:
    """Unpack a zipped BEIR folder into ``scratch`` and return the folder that holds corpus.jsonl.

    Entries are checked first (no ``..``, absolute names or symlinks; bounded count and size),
    then copied one by one with a byte budget, so an entry that unpacks to more than it declared
    (a zip bomb) is stopped rather than trusted.
    """
    target = scratch / Path(name).stem
    too_big = QueryFileError(f"{name}：压缩包解压后过大（最多 {ZIP_MAX_BYTES // 2**20} MB）")
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            _check_members(members, name)
            budget = ZIP_MAX_BYTES
            for info in members:
                destination = target.joinpath(*info.filename.replace("\\", "/").split("/"))
                if not destination.resolve().is_relative_to(target.resolve()):
                    raise QueryFileError(f"{name}：压缩包中的路径不安全：{info.filename}")
                if info.is_dir():
                    destination.mkdir(parents=True, exist_ok=True)
                    continue
                destination.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(info) as source, destination.open("wb") as sink:
                    while chunk := source.read(_COPY_CHUNK):
                        budget -= len(chunk)
                        if budget < 0:
                            raise too_big
                        sink.write(chunk)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError, zlib.error):
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
            # Everything is read from the unpacked folder here; it is deleted however this ends.
            with tempfile.TemporaryDirectory(prefix="wendao-beir-") as scratch:
                folder = _extract_zip(path, name, Path(scratch))
                corpus, queries = load_beir(folder)
                if not queries:
                    raise QueryFileError(f"{name}：queries.jsonl 中没有出现在 qrels.tsv 里的问题")
                beir = beir_service(service, folder, label=Path(name).stem)
            progress(0, desc="为 BEIR 语料建立索引（只在第一次）")
            build_beir_kb(beir, corpus, progress=_progress(progress))
            return beir, queries
    except QueryFileError:
        raise
    except WendaoError as error:
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


def run(service: Wendao, source: str, upload: str | None, modes: list[str], progress: gr.Progress, save_as: str = "") -> tuple:
    """(status HTML, metrics, recall chart data, failures); on bad input only the status is set.
    With ``save_as`` the run is saved under that name with the knowledge base it ran on."""
    empty = (None, None, None)
    if not modes:
        return render.message_html("请至少选择一种检索方式。"), *empty
    save_as = (save_as or "").strip()
    if source == "judged":
        path, name = Path(service.kb_dir), "本知识库的标注"
    elif source == "upload":
        if not upload:
            return render.message_html("请先上传查询文件（.jsonl，或 BEIR 文件夹的 .zip）。"), *empty
        path, name = Path(upload), Path(upload).name
    else:
        path = sample_queries_path()
        name = path.name
    try:
        if save_as:
            check_name(save_as)
        if source == "judged":
            target, queries = service, judged_queries(service.kb_dir)
        else:
            target, queries = load_target(service, path, name, progress)
        report = evaluate(target, queries, modes, _progress(progress), test_set=name)
        if save_as:
            save_run(kb_location(report.run.kb), save_as, report.run)
    except (WendaoError, OSError) as error:
        return render.error_html("", error), *empty
    status = (
        f"{name}：{report.queries} 个问题"
        + (f"，另有 {report.off_topic} 个无关问题（检验拒答）" if report.off_topic else "")
        + f"；未在前 5 名找到答案 {len(report.failures)} 次。"
        + (f"已保存为运行“{save_as}”。" if save_as else "")
    )
    return render.message_html(status, "info"), metrics_frame(report), recall_frame(report), failures_frame(report)


def build(service: Wendao, blocks: gr.Blocks, tab: gr.Tab) -> None:
    """The tab's components and events; ``blocks``' record of uploads decides which files may be read.
    Below the run, the comparison of saved runs (``ui.web.compare``)."""
    sample = sample_queries_path()
    with gr.Row():
        default = "sample" if sample.is_file() else "upload"
        source = gr.Radio(SOURCES, value=default, label="问题集", elem_id="wd-eval-source")
        modes = gr.CheckboxGroup(MODES, value=[m for _, m in MODES], label="检索方式", elem_id="wd-eval-modes")
    upload = gr.File(label=UPLOAD_LABEL, elem_id="wd-eval-upload")
    with gr.Row():
        save_as = gr.Textbox(label="保存为（运行名称，可留空）", placeholder="例如 baseline", elem_id="wd-eval-save", scale=3)
        start = gr.Button("运行评测", variant="primary", elem_id="wd-eval-run", scale=1)
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

    def start_run(source_, upload_, modes_, save_as_, progress=gr.Progress(track_tqdm=True)):
        if upload_:  # the client names the file: only one it uploaded is read
            accepted = uploads.uploaded(upload_, blocks)
            if accepted is None:
                return render.message_html(uploads.REFUSED), None, None, None
            upload_ = str(accepted)
        return run(service, source_, upload_, modes_, progress, save_as_)

    outputs = [status, metrics, chart, failures]
    pickers = compare.build(service, tab)
    started = start.click(start_run, [source, upload, modes, save_as], outputs, api_visibility="private", **concurrency.EVALUATION)
    started.then(lambda: compare.refresh(service), None, pickers, api_visibility="private", queue=False)
