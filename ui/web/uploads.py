"""Which file paths a web client may hand to a handler: only files it uploaded to this server.

A ``gr.File`` input arrives as a ``FileData`` whose ``path`` the client writes itself, so a crafted
request can name any file on the server (or ``..`` out of Gradio's upload folder). Two checks stand
between such a path and a handler that reads it:

* ``guard_inputs`` turns on Gradio's own check that a file input lies in its upload folder. Gradio
  runs it before it copies the file anywhere, but only for apps started with ``launch()``; a
  mounted app (``gr.mount_gradio_app``) has it off, and then Gradio copies whatever path it is
  given into its cache, or fails with an error that tells a missing file from a folder.
* ``uploaded`` accepts a path only if Gradio recorded it as received through its ``/upload``
  route and it resolves (symlinks followed) to a regular file inside the upload folder; other
  files in that folder (Gradio's own temporary files, copies it made) are refused too.

Every refusal is the same ``REFUSED`` text, whether or not the path exists.
"""
from __future__ import annotations

import os
from pathlib import Path

import gradio as gr
from gradio.utils import get_upload_folder

REFUSED = "只能使用通过本页面上传的文件，请求中的文件不是上传所得，已拒绝（only files uploaded through this page can be used）。"


def guard_inputs(blocks: gr.Blocks) -> None:
    """Make Gradio refuse, before touching the disk, any file input outside its upload folder.

    Gradio skips that check until the Blocks "has launched", which a mounted app never does;
    marking it so changes nothing else (``has_launched`` is read only by that check).
    """
    blocks.has_launched = True


def uploaded(value: object, blocks: gr.Blocks) -> Path | None:
    """The real path of a file this server received as an upload, else None (say ``REFUSED``)."""
    if not isinstance(value, str) or not value or "\0" in value:
        return None
    record = getattr(blocks, "upload_file_set", None)  # Gradio adds every path its /upload returns
    if not record or (value not in record and os.path.abspath(value) not in record):
        return None
    folder = os.path.realpath(get_upload_folder())
    real = os.path.realpath(value)
    if os.path.commonpath([folder, real]) != folder or real == folder or not os.path.isfile(real):
        return None
    return Path(real)
