"""Device and precision choice (``--device auto|cpu|cuda``), tested on this CPU-only machine.

The CUDA path's choices (device, float16/bfloat16, token-budget batches) are decided by plain
functions, checked here with CUDA present and absent; the model conversion they drive is run
for real on the CPU (a bfloat16 copy of the weights), and ``--device cuda`` without a GPU is one
clear CLI error.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from index.embed_cache import encode_passages, token_batches
from index.model import device as devices
from index.model.device import DeviceError, batch_budget, choose_device, run_dtype

WENDAO = str(Path(sys.executable).with_name("wendao"))


def test_auto_picks_cuda_only_when_torch_sees_it(monkeypatch):
    monkeypatch.delenv(devices.DEVICE_ENV, raising=False)
    assert choose_device("auto", cuda=True) == "cuda"
    assert choose_device("auto", cuda=False) == "cpu"
    assert choose_device(None, cuda=True) == "cuda"  # auto is the default
    assert choose_device("cpu", cuda=True) == "cpu"
    assert choose_device("CUDA", cuda=True) == "cuda"
    monkeypatch.setenv(devices.DEVICE_ENV, "cpu")
    assert choose_device(None, cuda=True) == "cpu"
    assert choose_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")  # the real torch
    with pytest.raises(DeviceError, match=r"device 'tpu': use one of auto, cpu, cuda"):
        choose_device("tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_one_clear_error():
    with pytest.raises(DeviceError, match=r"device cuda: torch .* sees no CUDA GPU; install a CUDA build of torch"):
        choose_device("cuda")


def test_precision_per_device(monkeypatch):
    monkeypatch.delenv(devices.CUDA_DTYPE_ENV, raising=False)
    assert run_dtype("cpu") == torch.float32
    assert run_dtype("cuda") == torch.float16
    assert run_dtype("cuda", "bfloat16") == torch.bfloat16
    monkeypatch.setenv(devices.CUDA_DTYPE_ENV, "bfloat16")
    assert run_dtype("cuda") == torch.bfloat16
    assert run_dtype("cpu") == torch.float32  # the CPU stays float32 whatever is asked for CUDA
    with pytest.raises(DeviceError, match="WENDAO_CUDA_DTYPE='int8'"):
        run_dtype("cuda", "int8")


def test_token_budget_batches():
    tokens = [30, 500, 120, 120, 60, 30, 514, 90]
    order = sorted(range(len(tokens)), key=lambda i: -tokens[i])
    batches = token_batches(order, tokens, budget=1024, most=64, cap=512)
    assert [i for b in batches for i in b] == order  # every text once, longest first
    assert all(len(b) * min(tokens[b[0]], 512) <= 1024 or len(b) == 1 for b in batches)
    assert [len(b) for b in batches] == [2, 6]  # two texts past the window (capped at 512), then 6 x 120 tokens
    budget, most = batch_budget("cuda:0")
    gpu = token_batches(list(range(5000)), [128] * 5000, budget, most, 512)
    assert [len(b) for b in gpu] == [1024] * 4 + [904]
    assert batch_budget("cpu") == (devices.TOKEN_BUDGET["cpu"], devices.MAX_BATCH["cpu"])


def test_loaded_model_runs_where_and_how_it_was_chosen(embedder):
    assert embedder.device == ("cuda:0" if torch.cuda.is_available() else "cpu")
    assert next(embedder.model.parameters()).dtype == run_dtype(embedder.device.split(":")[0])
    texts = ["第二条 服务中心应当提供日间照料。", "短句", "第三条 护理人员每年参加培训不少于四十学时，考核合格后上岗。" * 3]
    batched = encode_passages(embedder, texts, 2)
    one_by_one = np.vstack([embedder.encode_documents([t]) for t in texts])
    assert np.allclose(batched, one_by_one, atol=1e-5)  # batching and order change nothing


def test_a_reduced_precision_copy_is_the_same_model(embedder, monkeypatch):
    """The conversion the CUDA path makes (here to bfloat16, on the CPU): same vectors within
    the equivalence bar."""
    from index.embedder import load_embedder
    from index.model import DEFAULT_MODEL

    monkeypatch.setattr("index.model.run_dtype", lambda device: torch.bfloat16)
    half = load_embedder(DEFAULT_MODEL, device="cpu")
    assert next(half.model.parameters()).dtype == torch.bfloat16 and half.fingerprint != embedder.fingerprint
    texts = ["崇州市职教中心2023年引进企业工程师58名。", "衢州市职业教育改革实施方案", "What is a dual-qualified teacher?"]
    cosine = np.sum(half.encode_documents(texts) * embedder.encode_documents(texts), axis=1)
    assert half.encode_documents(texts).dtype == np.float32 and cosine.min() > 0.99


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cli_device_cuda_without_gpu(tmp_path: Path):
    doc = tmp_path / "a.txt"
    doc.write_text("测试文档。第一句。", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "WENDAO_KB"}
    done = subprocess.run([WENDAO, "ingest", str(doc), "--kb", str(tmp_path / "kb"), "--device", "cuda"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 2, done.stderr
    assert "device cuda" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "kb" / "segments").exists()
