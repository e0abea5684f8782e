"""The ``wendao`` command line: ingest, search, ask, evaluate, serve."""
from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Optional

import typer
from typer.core import TyperGroup
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from corpus.loaders import DEFAULT_MAX_MB
from corpus.ocr import DEFAULT_PAGE_TIMEOUT
from corpus.pages import DEFAULT_MAX_PAGES, PageOptions
from index.backend import kb_location
from index.ingest import IngestReport
from qa.jsonl import DataFileError, read_jsonl
from qa.query import QueryError
from qa.retrieve import MAX_K, MODES
from qa.service import Wendao
from ui.cli.errors import errors, friendly_errors, say
from ui.cli.model import FIRST_USE_NOTE, build_display, model_app
from ui.labels import cli_fix, stage_label, with_fix
from ui.output import answer_json, compact_json, search_json

app = typer.Typer(help="问道 wendao: ask questions of Chinese documents; every answer cited to its passage.", no_args_is_help=True)
app.add_typer(model_app, name="model", help="Inspect or build the embedding model.")
console = Console()

KbOption = typer.Option(
    None, "--kb",
    help="Knowledge base: a folder, milvus://HOST:PORT/COLLECTION or milvus-lite:PATH.db (default: $WENDAO_KB or the user data folder).",
)
ModelOption = typer.Option(None, "--model", help="sentence-transformers model name or folder (default: the knowledge base's, else multilingual-e5-small).")
JsonOption = typer.Option(False, "--json", help="Print JSON instead of text.")
NetworkOption = typer.Option(
    False, "--allow-network",
    help="Allow downloading a --model that is not on this machine (never needed for the default). Same as WENDAO_ALLOW_NETWORK=1.",
)
DeviceOption = typer.Option(
    None, "--device", help="Run the model on: auto (a CUDA GPU when torch sees one), cpu or cuda. Same as WENDAO_DEVICE."
)
QueriesOption = typer.Option(None, "--queries", help='JSONL file of {"id","question"}: one JSON line out per query.')


def _service(kb: Optional[str], model: Optional[str], allow_network: bool = False, device: Optional[str] = None) -> Wendao:
    # A model build on first use shows what `wendao model build` shows, on the same console as
    # the ingest bar (rich nests the two).
    display = build_display(errors, FIRST_USE_NOTE)
    return Wendao(kb_dir=kb, model=model, allow_network=allow_network, model_display=display, device=device)


@contextmanager
def _progress_bar(enabled: bool = True):
    """A rich progress bar fed by the ingest callback (stage, done, total)."""
    if not enabled:
        yield None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=errors, transient=True) as bar:
        tasks: dict[str, int] = {}
        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage_label(stage, english=True), total=total)
            bar.update(tasks[stage], completed=done, total=total)

        yield update


def _print_report(report: IngestReport) -> None:
    table = Table(title=f"{report.documents} documents, {report.chunks} chunks ({report.seconds:.1f} s)")
    for column in ("status", "doc_id", "chunks", "source / reason"):
        table.add_column(column)
    colours = {"failed": "red", "unchanged": "dim", "removed": "yellow"}
    for result in report.results:
        colour = colours.get(result.status, "green")
        reason = with_fix(result.reason, cli_fix(result.fix))
        detail = Text(f"{result.source}: {reason}" if reason else result.source)
        table.add_row(f"[{colour}]{result.status}[/]", Text(result.doc_id), str(result.chunks), detail)
    console.print(table)
    for result in report.failed:  # one unwrapped line each on stderr: easy to read, grep and log
        say("failed:", "red", f"{result.source}: {with_fix(result.reason, cli_fix(result.fix))}")


def _read_queries(path: Path) -> list[tuple[object, str]]:
    """``--queries`` rows as (id, question); each needs a "question" (or "text") string."""
    rows = []
    for number, row in read_jsonl(path):
        question = row.get("question", row.get("text"))
        if not isinstance(question, str):
            raise DataFileError(f'{path}:{number}: expected an object with a "question" string')
        rows.append((row.get("id", row.get("_id", number)), question))
    return rows


def _each_query(path: Path, run: Callable[[str], dict], key: str) -> None:
    """``--queries``: one JSON line per row, the file read (and checked) before the first runs;
    a question that cannot be asked is an error line, not the end of the batch."""
    for query_id, text in _read_queries(path):
        try:
            result = run(text)
        except QueryError as error:
            result = {key: text, "error": str(error)}
        print(json.dumps({"id": query_id, **result}, ensure_ascii=False), flush=True)


@app.command()
def ingest(
    # readable=False: an unreadable file is reported by the ingest like any failure, not a usage error
    paths: list[Path] = typer.Argument(..., readable=False, help="Files or folders (.txt .md .html .pdf .docx, images .png .jpg .tif .bmp .webp)."),
    kb: Optional[str] = KbOption,
    model: Optional[str] = ModelOption,
    allow_network: bool = NetworkOption,
    device: Optional[str] = DeviceOption,
    max_mb: float = typer.Option(DEFAULT_MAX_MB, "--max-mb", min=0.000001, help="Refuse files larger than this many MB."),
    max_pages: int = typer.Option(DEFAULT_MAX_PAGES, "--max-pages", min=1, help="Refuse PDFs and images with more pages than this."),
    ocr_timeout: float = typer.Option(
        DEFAULT_PAGE_TIMEOUT, "--ocr-timeout", min=0.1, help="Seconds of OCR allowed per page; a file with a slower page fails."
    ),
) -> None:
    """Add or update documents; unchanged files are skipped, failures are listed and the rest go on.

    Exit status 1 when any file failed (the others are still ingested), 2 on a usage error.
    """
    with friendly_errors(), _progress_bar(sys.stderr.isatty()) as progress:
        pages = PageOptions(max_pages=max_pages, ocr_timeout=ocr_timeout)
        report = _service(kb, model, allow_network, device).ingest(paths, progress, max_bytes=int(max_mb * 1_000_000), pages=pages)
    _print_report(report)
    if report.failed:
        raise typer.Exit(1)


@app.command()
def remove(doc_ids: list[str] = typer.Argument(..., help="Document ids, as `wendao docs` lists them."), kb: Optional[str] = KbOption) -> None:
    """Delete documents and their chunks from the knowledge base."""
    with friendly_errors():
        _print_report(_service(kb, None).remove(doc_ids))


@app.command()
def reindex(
    kb: Optional[str] = KbOption, model: Optional[str] = ModelOption, allow_network: bool = NetworkOption, device: Optional[str] = DeviceOption
) -> None:
    """Re-chunk and re-embed every document with the current settings (and --model)."""
    with friendly_errors(), _progress_bar(sys.stderr.isatty()) as progress:
        service = _service(kb, model, allow_network, device)
        service.ensure_built()
        report = service.reindex(progress)
    _print_report(report)


@app.command()
def compact(kb: Optional[str] = KbOption, as_json: bool = JsonOption) -> None:
    """Merge the knowledge base's segments and drop removed documents' chunks for good."""
    with friendly_errors():
        report = _service(kb, None).compact()
    if as_json:
        print(json.dumps(compact_json(report), ensure_ascii=False, indent=1))
        return
    print(
        f"{report.merges} merge(s): {report.segments_before} → {report.segments_after} segment(s), "
        f"{report.dropped_chunks} removed chunk(s) dropped, {report.chunks} chunk(s) live"
    )


@app.command()
def copy(
    target: str = typer.Argument(..., help="The new knowledge base: a folder, milvus://HOST:PORT/COLLECTION or milvus-lite:PATH.db."),
    kb: Optional[str] = KbOption,
) -> None:
    """Copy the knowledge base (--kb) into a new one, e.g. from its folder into Milvus, without re-embedding."""
    with friendly_errors(), _progress_bar(sys.stderr.isatty()) as progress:
        documents, chunks = _service(kb, None).copy_to(target, progress)
    print(f"copied {documents} documents, {chunks} chunks to {target}")


@app.command()
def docs(kb: Optional[str] = KbOption, as_json: bool = JsonOption) -> None:
    """List the documents in the knowledge base."""
    with friendly_errors():
        documents = _service(kb, None).documents()
    rows = [
        {"doc_id": d.doc_id, "title": d.title, "date": d.date, "doc_number": d.doc_number,
         "chunks": row.chunks, "size": d.size, "added": d.added, "source": d.source}
        for row in documents
        for d in [row.document]
    ]
    if as_json:
        console.print_json(json.dumps(rows, ensure_ascii=False))
        return
    table = Table()
    for column in ("doc_id", "title", "date", "doc_number", "chunks"):
        table.add_column(column)
    for row in rows:
        table.add_row(*(str(row[c] or "") for c in ("doc_id", "title", "date", "doc_number", "chunks")))
    console.print(table)


@app.command()
def search(
    query: Optional[str] = typer.Argument(None, help="Question or keywords."),
    mode: str = typer.Option("hybrid", "--mode", help="hybrid | dense | lexical"),
    k: int = typer.Option(5, "-k", min=1, max=MAX_K, help=f"How many passages (1–{MAX_K})."),
    doc: Optional[list[str]] = typer.Option(None, "--doc", help="Only search these document ids."),
    as_json: bool = JsonOption,
    queries: Optional[Path] = QueriesOption,
    kb: Optional[str] = KbOption,
    model: Optional[str] = ModelOption,
    allow_network: bool = NetworkOption,
) -> None:
    """Ranked passages with their dense and lexical scores."""
    with friendly_errors():
        if mode not in MODES:
            raise QueryError(f"unknown mode {mode!r}: choose one of {', '.join(MODES)}")
        service = _service(kb, model, allow_network)
        if queries:

            def one(text: str) -> dict:
                hits, plan = service.search(text, mode=mode, k=k, doc_ids=set(doc or []))
                return search_json(plan, mode, hits)

            _each_query(queries, one, "query")
            return
        if query is None:
            raise QueryError("give a QUERY or --queries FILE")
        hits, plan = service.search(query, mode=mode, k=k, doc_ids=set(doc or []))
    if as_json:
        print(json.dumps(search_json(plan, mode, hits), ensure_ascii=False, indent=1))
        return
    for hit in hits:
        scores = " ".join(f"{n}={v:.3f}" for n, v in (("dense", hit.dense), ("lexical", hit.lexical)) if v is not None)
        console.print(f"[bold]{hit.rank}.[/] {hit.document.title}  [dim]{hit.chunk.heading}[/]  score={hit.score:.3f} {scores}")
        console.print(f"   [dim]{hit.chunk.doc_id} [{hit.chunk.start}:{hit.chunk.end}][/]")
        console.print("   " + hit.chunk.text.replace("\n", " ")[:300], highlight=False)


@app.command()
def ask(
    question: Optional[str] = typer.Argument(None, help="A question in Chinese (Simplified or Traditional)."),
    as_json: bool = JsonOption,
    queries: Optional[Path] = QueriesOption,
    kb: Optional[str] = KbOption,
    model: Optional[str] = ModelOption,
    allow_network: bool = NetworkOption,
) -> None:
    """Answer from the documents: 1–3 sentences, each followed by the number of the passage it cites."""
    with friendly_errors():
        service = _service(kb, model, allow_network)
        if queries:
            _each_query(queries, lambda text: answer_json(service.ask(text), service.page_layout), "question")
            return
        if question is None:
            raise QueryError("give a QUESTION or --queries FILE")
        answer = service.ask(question)
    if as_json:
        print(json.dumps(answer_json(answer, service.page_layout), ensure_ascii=False, indent=1))
        return
    if answer.abstained:
        console.print(f"[yellow]文档中没有找到可靠的答案 (no reliable answer in the documents; confidence {answer.confidence:.2f}).[/]")
        return
    console.print(f"[bold]{answer.text}[/]", highlight=False, soft_wrap=True)
    for citation in answer.citations:
        hit = citation.hit
        where = " > ".join(p for p in (hit.document.title, hit.chunk.heading) if p)
        console.print(f"[cyan][{citation.n}][/] {where}  [dim]{hit.chunk.doc_id} [{hit.chunk.start}:{hit.chunk.end}] score={hit.score:.3f}[/]", highlight=False)
    loading = answer.timings_ms.get("load")
    loaded = f" (+ {loading / 1000:.1f} s loading the model and index)" if loading else ""
    console.print(f"[dim]confidence {answer.confidence:.2f} · {answer.timings_ms.get('total', 0):.0f} ms{loaded}[/]")


class _EvalGroup(TyperGroup):
    """``wendao eval FILE …`` evaluates (the ``run`` command); ``wendao eval compare A B …``
    compares saved runs. Anything but a subcommand's name goes to ``run``."""

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ("--help", "-h")):
            args = ["run", *args]
        return super().parse_args(ctx, args)


eval_app = typer.Typer(cls=_EvalGroup, help="Evaluate retrieval and answers on a test set; compare saved runs.")
app.add_typer(eval_app, name="eval")


@eval_app.command("run")
def evaluate(
    queries: Optional[Path] = typer.Argument(None, help="JSONL with answers or relevant doc ids, or a BEIR folder."),
    kb: Optional[str] = KbOption,
    modes: str = typer.Option("lexical,dense,hybrid", "--modes", help="Comma-separated retrieval modes."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Only the first N queries."),
    as_json: bool = JsonOption,
    model: Optional[str] = ModelOption,
    allow_network: bool = NetworkOption,
    save: Optional[str] = typer.Option(None, "--save", help="Keep the run under this name with the knowledge base (`wendao runs`)."),
    replace: bool = typer.Option(False, "--replace", help="With --save: replace a saved run of the same name."),
    trec_run: Optional[Path] = typer.Option(None, "--trec-run", help="Write the run as a TREC run file (tag = mode)."),
    qrels_out: Optional[Path] = typer.Option(None, "--qrels-out", help="Write the gold as TREC qrels (the units the run uses)."),
    qrels: Optional[Path] = typer.Option(None, "--qrels", help="Gold of a JSONL query file from TREC or BEIR qrels."),
    judged: bool = typer.Option(False, "--judged", help="Evaluate on the knowledge base's judgments (made in the web app)."),
    chunk_size: Optional[int] = typer.Option(None, "--chunk-size", min=50, help="BEIR folders: index the corpus with this chunk size."),
) -> None:
    """Retrieval and answer quality: MRR@10, nDCG@10, Recall@k, answer hit, citation precision, abstention."""
    from qa.eval_report import render_table
    from qa.evaluate import beir_kb_dir, evaluate_file
    from qa.runstore import check_free, check_name, save_run
    from qa.trec import write_qrels, write_run

    with friendly_errors(), _progress_bar(sys.stderr.isatty()) as progress:
        if (queries is None) == (not judged):
            raise DataFileError("give a test set FILE (a JSONL query file or a BEIR folder), or --judged")
        if save:
            check_name(save)
            if not replace:  # a taken name fails now, before the evaluation
                beir = queries is not None and (queries / "corpus.jsonl").is_file() and kb is None
                check_free(beir_kb_dir(queries, chunk_size, model) if beir else kb_location(kb), save)
        report = evaluate_file(
            queries, kb_dir=kb, model=model, modes=modes.split(","), limit=limit, progress=progress,
            allow_network=allow_network, chunk_size=chunk_size, qrels=qrels, judged=judged,
        )
        run = report.run
        if trec_run:
            write_run(run, trec_run)
        if qrels_out:
            write_qrels(run, qrels_out)
        if save:
            save_run(kb_location(run.kb), save, run, replace=replace)
            say("saved:", "green", f"run {save} in {run.kb}")
    if as_json:
        print(json.dumps(report.to_json(), ensure_ascii=False, indent=1))
    else:
        console.print(render_table(report))


def _contender(reference: str, mode: str, kb: Optional[str]):
    """``NAME[:MODE][@KB_FOLDER]`` as a comparison's side."""
    from qa.compare import Contender
    from qa.runstore import find_run

    head, at, folder = reference.partition("@")
    name, _, named_mode = head.partition(":")
    if named_mode and named_mode not in MODES:
        raise QueryError(f"{reference}: unknown mode {named_mode!r}: choose one of {', '.join(MODES)}")
    run = find_run(f"{name}{at}{folder}", kb_location(kb))
    return Contender(name, named_mode or mode, run)


@eval_app.command("compare")
def compare_runs(
    runs: list[str] = typer.Argument(..., help="Saved runs, NAME[:MODE][@KB_FOLDER]; the first is the baseline."),
    kb: Optional[str] = KbOption,
    mode: str = typer.Option("hybrid", "--mode", help="Retrieval mode of runs named without one."),
    metric: str = typer.Option("mrr@10", "--metric", help="Metric the changed questions are ranked by."),
    test: str = typer.Option("student", "--test", help="student (paired t-test) | fisher (randomisation)."),
    max_p: float = typer.Option(0.05, "--max-p", min=0.0, max=1.0, help="Significance level."),
    top: int = typer.Option(10, "--top", min=0, help="How many changed questions to show."),
    as_json: bool = JsonOption,
) -> None:
    """Saved runs side by side with a paired significance test, wins/losses/ties, changed questions."""
    from qa.compare import compare
    from qa.eval_report import render_changed, render_comparison

    with friendly_errors():
        if mode not in MODES:
            raise QueryError(f"unknown mode {mode!r}: choose one of {', '.join(MODES)}")
        contenders = [_contender(reference, mode, kb) for reference in runs]
        comparison = compare(contenders, stat_test=test, max_p=max_p, key_metric=metric, top=top)
    if as_json:
        print(json.dumps(comparison.to_json(), ensure_ascii=False, indent=1))
        return
    console.print(render_comparison(comparison))
    if comparison.changed:
        console.print(render_changed(comparison))


@app.command("runs")
def runs_list(
    kb: Optional[str] = KbOption,
    delete: Optional[str] = typer.Option(None, "--delete", help="Delete this saved run (of --kb)."),
    as_json: bool = JsonOption,
) -> None:
    """Saved evaluation runs: the knowledge base's and those of test sets' cached knowledge bases."""
    from qa.eval_report import render_runs
    from qa.runstore import catalogue, delete_run

    with friendly_errors():
        folder = kb_location(kb)
        if delete:
            delete_run(folder, delete)
            say("deleted:", "yellow", f"run {delete} in {folder}")
            return
        found = catalogue(folder)
    if as_json:
        print(json.dumps([s.to_json() for s in found], ensure_ascii=False, indent=1))
    else:
        console.print(render_runs(found))


@app.command("judgments")
def judgments(
    kb: Optional[str] = KbOption,
    jsonl: Optional[Path] = typer.Option(None, "--jsonl", help="Export as a JSONL test set (the format of corpus/seeds/queries.jsonl)."),
    qrels: Optional[Path] = typer.Option(None, "--qrels", help="Export as TREC qrels (chunk ids, relevance 1 or 0)."),
    as_json: bool = JsonOption,
) -> None:
    """Relevance judgments made in the web app; export them as a test set or qrels."""
    from qa import judgments as judged

    with friendly_errors():
        folder = kb_location(kb)
        if jsonl:
            say("wrote:", "green", f"{jsonl}: {judged.export_jsonl(folder, jsonl)} questions")
        if qrels:
            say("wrote:", "green", f"{qrels}: {judged.export_qrels(folder, qrels)} judgments")
        found = judged.summary(folder)
    if as_json:
        print(json.dumps(found, ensure_ascii=False, indent=1))
    elif not (jsonl or qrels):
        console.print(f"{found['questions']} questions judged: {found['relevant']} passages relevant, "
                      f"{found['not_relevant']} not relevant, {found['should_abstain']} should be abstained on")


@app.command()
def serve(
    kb: Optional[str] = KbOption,
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(7860, "--port"),
    model: Optional[str] = ModelOption,
    allow_network: bool = NetworkOption,
) -> None:
    """Start the web app (Gradio), offline."""
    from ui.web.app import launch

    with friendly_errors():
        launch(_service(kb, model, allow_network), host=host, port=port)


if __name__ == "__main__":
    app()
