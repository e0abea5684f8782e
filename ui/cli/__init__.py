"""The ``wendao`` command line (Typer): an interface on top of ``qa``, like the web app."""
from ui.cli.app import app

__all__ = ["app"]
