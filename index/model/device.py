"""Where the model runs and in what precision: ``--device auto|cpu|cuda`` (or ``$WENDAO_DEVICE``).

``auto`` takes CUDA when the installed torch sees a GPU, else the CPU. On the CPU the model runs
in float32: bfloat16 without the CPU's own bf16 instructions is slower, and with them it still
has to pass the equivalence bar (README, "Model"). On CUDA it runs in float16 (10 mantissa bits,
closer to float32 than bfloat16's 7; e5-small's activations stay far inside float16's range),
or what ``$WENDAO_CUDA_DTYPE`` names (``bfloat16``, ``float32``). The default install is torch's
CPU wheel; the README says how to install a CUDA one.
"""
from __future__ import annotations

import os
from typing import Any, Literal

from corpus.errors import WendaoError

Device = Literal["auto", "cpu", "cuda"]
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")
DEVICE_ENV = "WENDAO_DEVICE"
CUDA_DTYPE_ENV = "WENDAO_CUDA_DTYPE"
CUDA_DTYPES = ("float16", "bfloat16", "float32")
# Tokens per forward pass (batch size x longest text): fills a GPU, keeps a CPU batch in cache.
TOKEN_BUDGET = {"cpu": 4096, "cuda": 131072}
MAX_BATCH = {"cpu": 64, "cuda": 2048}


class DeviceError(WendaoError):
    """A device that cannot be used (CUDA asked for, none visible): one line saying why."""


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def choose_device(wanted: str | None = None, cuda: bool | None = None) -> str:
    """The torch device to run on: ``wanted`` (else ``$WENDAO_DEVICE``, else auto). ``cuda``
    says whether torch sees a GPU (asked when None)."""
    wanted = (wanted or os.environ.get(DEVICE_ENV) or "auto").strip().lower()
    if wanted not in DEVICES:
        raise DeviceError(f"device {wanted!r}: use one of {', '.join(DEVICES)}")
    if wanted == "cpu":
        return "cpu"
    cuda = cuda_available() if cuda is None else cuda
    if wanted == "cuda" and not cuda:
        import torch

        build = f"torch {torch.__version__}" + (" (a CPU-only build)" if torch.version.cuda is None else "")
        raise DeviceError(
            f"device cuda: {build} sees no CUDA GPU; install a CUDA build of torch (README, \"GPU\") or use --device cpu"
        )
    return "cuda" if cuda else "cpu"


def run_dtype(device: str, wanted: str | None = None) -> Any:
    """The torch dtype the model runs in on ``device`` (see the module docstring)."""
    import torch

    if device == "cpu":
        return torch.float32
    name = (wanted or os.environ.get(CUDA_DTYPE_ENV) or "float16").strip().lower()
    if name not in CUDA_DTYPES:
        raise DeviceError(f"{CUDA_DTYPE_ENV}={name!r}: use one of {', '.join(CUDA_DTYPES)}")
    return getattr(torch, name)


def batch_budget(device: str) -> tuple[int, int]:
    """(tokens per forward pass, most texts per pass) on ``device``."""
    kind = "cuda" if str(device).startswith("cuda") else "cpu"
    return TOKEN_BUDGET[kind], MAX_BATCH[kind]
