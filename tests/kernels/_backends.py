"""The backends the kernels suites run on: numpy always, torch on the CPU where torch is installed, torch on
CUDA where torch sees a GPU (each a pytest param that skips with the reason otherwise)."""

from __future__ import annotations

import importlib.util

import pytest

HAS_TORCH = importlib.util.find_spec("torch") is not None


def cuda_available() -> bool:
    """torch is installed and sees a CUDA device (torch is imported only here, only when asked)."""
    if not HAS_TORCH:
        return False
    import torch

    return bool(torch.cuda.is_available())


HAS_CUDA = cuda_available()
BACKENDS = [
    pytest.param(("numpy", "cpu"), id="numpy"),
    pytest.param(("torch", "cpu"), id="torch-cpu", marks=pytest.mark.skipif(not HAS_TORCH, reason="no torch")),
    pytest.param(("torch", "cuda"), id="torch-cuda", marks=pytest.mark.skipif(not HAS_CUDA, reason="no CUDA")),
]
TORCH_DEVICES = [
    pytest.param("cpu", id="torch-cpu", marks=pytest.mark.skipif(not HAS_TORCH, reason="no torch")),
    pytest.param("cuda", id="torch-cuda", marks=pytest.mark.skipif(not HAS_CUDA, reason="no CUDA")),
]
