"""The wendao web app: four tabs, two API endpoints and the source viewer, served offline.

Nothing is fetched from outside: the theme uses local system fonts only, analytics are off, and
every script and style comes from this server.
"""
from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # read by gradio when it is imported

from pathlib import Path  # noqa: E402

import gradio as gr  # noqa: E402
import uvicorn  # noqa: E402
from fastapi import FastAPI  # noqa: E402

from qa.service import Wendao  # noqa: E402
from ui.web import api, ask, evaluate, library, search, uploads  # noqa: E402
from ui.web.source import source_router  # noqa: E402

TITLE = "问道 · 中文文档问答"
CJK_SANS = ["Noto Sans CJK SC", "Source Han Sans SC", "PingFang SC", "Microsoft YaHei", "WenQuanYi Micro Hei", "sans-serif"]
CJK_MONO = ["Noto Sans Mono CJK SC", "Sarasa Mono SC", "ui-monospace", "Consolas", "monospace"]
CSS = (Path(__file__).with_name("style.css")).read_text(encoding="utf-8")


def theme() -> gr.themes.Base:
    """The default look with local fonts only (no web-font download)."""
    return gr.themes.Default(font=CJK_SANS, font_mono=CJK_MONO)


def build_blocks(service: Wendao) -> gr.Blocks:
    # Uploads are copied into the index; drop gradio's temporary copies after a day.
    with gr.Blocks(title=TITLE, analytics_enabled=False, delete_cache=(86400, 86400)) as blocks:
        gr.Markdown("## 问道 · 中文文档问答\n每句回答都标注出处，点击 [n] 即可查看原文。完全离线运行。")
        with gr.Tabs():
            with gr.Tab("问答", id="ask"):
                ask.build(service)
            with gr.Tab("检索", id="search") as search_tab:
                documents = search.build(service)
            with gr.Tab("文档库", id="library") as library_tab:
                refresh_library, library_views = library.build(service, blocks)
            with gr.Tab("评测", id="evaluate") as evaluate_tab:
                evaluate.build(service, blocks, evaluate_tab)
        api.register(service)

        def document_filter():
            return gr.update(choices=search.document_choices(service))

        # Another user (or the CLI) may have changed the library since the page was built.
        search_tab.select(document_filter, None, documents, api_visibility="private", queue=False)
        library_tab.select(refresh_library, None, library_views, api_visibility="private", queue=False)
        blocks.load(refresh_library, None, library_views, api_visibility="private", queue=False)
    blocks.queue(default_concurrency_limit=1, max_size=256)
    uploads.guard_inputs(blocks)
    return blocks


def create_app(service: Wendao) -> FastAPI:
    """The ASGI app: the source viewer route first, the Gradio app mounted at the root.

    Neither app serves FastAPI's schema or docs pages (``/openapi.json``, ``/docs``, ``/redoc``):
    they would list every internal route; the API page (``?view=api``) reads ``/gradio_api/info``.
    """
    service.warm_up()  # the seed library and the model, before the first request
    app = FastAPI(title=TITLE, docs_url=None, redoc_url=None, openapi_url=None)
    app.include_router(source_router(service))
    return gr.mount_gradio_app(
        app,
        build_blocks(service),
        path="",
        theme=theme(),
        css=CSS,
        footer_links=["api"],
        ssr_mode=False,
        pwa=False,
        mcp_server=False,
        show_error=True,
        app_kwargs={"openapi_url": None, "docs_url": None, "redoc_url": None},
    )


def launch(service: Wendao, host: str = "127.0.0.1", port: int = 7860) -> None:
    """Serve until interrupted (``wendao serve``)."""
    app = create_app(service)
    print(f"问道 wendao: http://{host}:{port}  (知识库 {service.kb_dir})", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
