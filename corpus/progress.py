"""The one progress callback of long operations (ingest, model build, evaluation).

``callback(stage, done, total)``: ``stage`` names what is being done (an ingest ``Stage``, a
build step, an evaluation mode); interfaces word stages with their own label tables.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Literal

ProgressCallback = Callable[[str, int, int], None]

# The stages an ingest reports, in order.
Stage = Literal["read", "pages", "load", "embed", "index"]
