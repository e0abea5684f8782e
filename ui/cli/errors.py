"""The command line's one translation of failures into a line on stderr and an exit status.

Every ``WendaoError`` (and an OS error such as a full disk or a missing --queries file) becomes
``error: <message> (<fix>)`` and exit status 2, never a traceback.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.text import Text

from corpus.errors import WendaoError
from ui.labels import cli_fix, error_text, with_fix

errors = Console(stderr=True)


def say(label: str, style: str, message: str) -> None:
    """One unwrapped line on stderr; the message is printed as text (a path may hold ``[…]``)."""
    line = Text(f"{label} ", style=style)
    line.append(message)
    errors.print(line, highlight=False, soft_wrap=True)


def fail(error: Exception) -> None:
    """Report a known failure and exit with status 2."""
    fix = cli_fix(error.fix) if isinstance(error, WendaoError) else ""
    say("error:", "bold red", with_fix(error_text(error), fix))
    raise typer.Exit(2)


@contextmanager
def friendly_errors() -> Iterator[None]:
    """Known failures become one clear line and exit status 2, not a traceback."""
    try:
        yield
    except (WendaoError, OSError) as error:  # OSError: disk full, permission denied, a missing --queries file
        fail(error)
