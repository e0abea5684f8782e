"""``python -m ui.cli``: the same as the ``wendao`` command."""
from ui.cli import app

app()
