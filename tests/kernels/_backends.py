"""The backends the kernels suites run on: numpy always, torch on the CPU where torch is installed, torch on
CUDA where torch sees a GPU (each a pytest param that skips with the reason otherwise)."""

from __future__ import annotations

import importlib.util
from typing import Any

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


def same_plans(a: Any, b: Any, device: str) -> None:
    """On the CPU ``b`` (torch) is ``a`` (numpy) bit for bit: every plan array, scalar and diagnostic
    (benchmarks.backend_parity.diff: the backend's name aside). On CUDA nothing here: each test states its
    own tolerance (GPU reductions add in another order; benchmarks/gpu_check.sh's CHECK=parity reports the
    cells that differ)."""
    if device == "cpu":
        from benchmarks import backend_parity as parity

        d = parity.diff(a, b)
        assert d == {}, d
