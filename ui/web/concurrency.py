"""How events share the server: questions run side by side, library writes one at a time.

Writes (ingest, remove, rebuild) and evaluation get their own queues, so a long ingest never
holds up questions; the service reloads the new index generation when the write lands.
"""
from __future__ import annotations

# Two cores is the target machine: more parallel questions only slow each other down.
QUESTIONS = {"concurrency_id": "questions", "concurrency_limit": 2}
LIBRARY = {"concurrency_id": "library", "concurrency_limit": 1}
EVALUATION = {"concurrency_id": "evaluation", "concurrency_limit": 1}
