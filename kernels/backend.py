"""A small array namespace so that the planner runs THE SAME code on numpy and on torch (CPU or CUDA).

The planner's hot path is written against :class:`Ops`: a handful of array functions with numpy names.
``numpy_ops()`` is the default; ``torch_ops(device)`` imports torch lazily (``import kernels`` never imports
torch). Only the operations the planner needs are here, each with the same semantics on both backends.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class Ops:
    """numpy implementation; :class:`TorchOps` overrides what differs."""

    name = "numpy"
    device = "cpu"
    f32: Any = np.float32
    f64: Any = np.float64
    i32: Any = np.int32
    i64: Any = np.int64
    bool_: Any = np.bool_

    # -- creation / transfer
    def asarray(self, a: Any, dtype: Any = None) -> Any:
        return np.asarray(a, dtype=dtype)

    def to_numpy(self, a: Any) -> np.ndarray:
        return np.asarray(a)

    def zeros(self, shape: Any, dtype: Any) -> Any:
        return np.zeros(shape, dtype=dtype)

    def full(self, shape: Any, value: float, dtype: Any) -> Any:
        return np.full(shape, value, dtype=dtype)

    def arange(self, n: int, dtype: Any = None) -> Any:
        return np.arange(n, dtype=dtype if dtype is not None else np.int64)

    def astype(self, a: Any, dtype: Any) -> Any:
        return a.astype(dtype, copy=False)

    def copy(self, a: Any) -> Any:
        return a.copy()

    # -- elementwise / reductions
    def where(self, c: Any, a: Any, b: Any) -> Any:
        return np.where(c, a, b)

    def maximum(self, a: Any, b: Any) -> Any:
        return np.maximum(a, b)

    def minimum(self, a: Any, b: Any) -> Any:
        return np.minimum(a, b)

    def cumsum(self, a: Any, axis: int) -> Any:
        return np.cumsum(a, axis=axis)

    def cummax(self, a: Any, axis: int) -> Any:
        return np.maximum.accumulate(a, axis=axis)

    def sum(self, a: Any, axis: int | None = None) -> Any:
        return a.sum(axis=axis)

    def matmul(self, a: Any, b: Any) -> Any:
        return a @ b

    def concatenate(self, arrs: list[Any], axis: int = 0) -> Any:
        return np.concatenate(arrs, axis=axis)

    def stack(self, arrs: list[Any], axis: int = 0) -> Any:
        return np.stack(arrs, axis=axis)

    def flip(self, a: Any, axis: int) -> Any:
        return np.flip(a, axis=axis)

    # -- indexing
    def searchsorted(self, sorted_1d: Any, values: Any) -> Any:
        """Number of entries of ``sorted_1d`` strictly below each value (numpy ``side='left'``)."""
        return np.searchsorted(sorted_1d, values, side="left")

    def take(self, a: Any, idx: Any) -> Any:
        """Flat gather: ``a.ravel()[idx]``."""
        return np.take(a.reshape(-1), idx)

    def scatter_add(self, n: int, idx: Any, weights: Any, dtype: Any) -> Any:
        """``out[idx] += weights`` over a flat zero array of length ``n``."""
        return np.bincount(idx, weights=weights, minlength=n).astype(dtype, copy=False)[:n]

    def argsort_stable(self, key: Any) -> Any:
        return np.argsort(key, kind="stable")

    def sort(self, a: Any, axis: int = -1) -> Any:
        return np.sort(a, axis=axis)

    def argsort(self, a: Any, axis: int = -1) -> Any:
        return np.argsort(a, axis=axis, kind="stable")

    def take_rows(self, a: Any, rows: Any) -> Any:
        return a[rows]

    def synchronize(self) -> None:
        return None


class TorchOps(Ops):
    """The same functions on torch tensors (``device`` ``"cpu"`` or ``"cuda"``); torch is imported here."""

    def __init__(self, device: str = "cpu") -> None:
        import torch  # lazy: only when this backend is asked for

        self.torch = torch
        self.name = "torch"
        self.device = device
        self._dev = torch.device(device)
        self.f32 = torch.float32
        self.f64 = torch.float64
        self.i32 = torch.int32
        self.i64 = torch.int64
        self.bool_ = torch.bool
        self._np2t = {
            np.dtype(np.float32): torch.float32,
            np.dtype(np.float64): torch.float64,
            np.dtype(np.int32): torch.int32,
            np.dtype(np.int64): torch.int64,
            np.dtype(np.int8): torch.int8,
            np.dtype(np.bool_): torch.bool,
        }

    def _dt(self, dtype: Any) -> Any:
        if dtype is None or isinstance(dtype, self.torch.dtype):
            return dtype
        return self._np2t[np.dtype(dtype)]

    def asarray(self, a: Any, dtype: Any = None) -> Any:
        t = self.torch
        if isinstance(a, t.Tensor):
            return a.to(device=self._dev, dtype=self._dt(dtype) or a.dtype)
        arr = np.asarray(a)
        if arr.dtype == np.uint8 or arr.dtype == np.int16:
            arr = arr.astype(np.int64)
        return t.as_tensor(np.ascontiguousarray(arr), device=self._dev, dtype=self._dt(dtype))

    def to_numpy(self, a: Any) -> np.ndarray:
        if isinstance(a, self.torch.Tensor):
            return a.detach().cpu().numpy()
        return np.asarray(a)

    def zeros(self, shape: Any, dtype: Any) -> Any:
        return self.torch.zeros(shape, dtype=self._dt(dtype), device=self._dev)

    def full(self, shape: Any, value: float, dtype: Any) -> Any:
        return self.torch.full(shape, value, dtype=self._dt(dtype), device=self._dev)

    def arange(self, n: int, dtype: Any = None) -> Any:
        return self.torch.arange(n, dtype=self._dt(dtype) or self.torch.int64, device=self._dev)

    def astype(self, a: Any, dtype: Any) -> Any:
        return a.to(self._dt(dtype))

    def copy(self, a: Any) -> Any:
        return a.clone()

    def where(self, c: Any, a: Any, b: Any) -> Any:
        t = self.torch
        if not isinstance(a, t.Tensor):
            a = t.as_tensor(a, device=self._dev, dtype=b.dtype if isinstance(b, t.Tensor) else None)
        if not isinstance(b, t.Tensor):
            b = t.as_tensor(b, device=self._dev, dtype=a.dtype)
        if a.dtype != b.dtype:
            dt = t.promote_types(a.dtype, b.dtype)
            a, b = a.to(dt), b.to(dt)
        return t.where(c, a, b)

    def maximum(self, a: Any, b: Any) -> Any:
        t = self.torch
        if not isinstance(b, t.Tensor):
            return t.clamp(a, min=b)
        if not isinstance(a, t.Tensor):
            return t.clamp(b, min=a)
        return t.maximum(a, b)

    def minimum(self, a: Any, b: Any) -> Any:
        t = self.torch
        if not isinstance(b, t.Tensor):
            return t.clamp(a, max=b)
        if not isinstance(a, t.Tensor):
            return t.clamp(b, max=a)
        return t.minimum(a, b)

    def cumsum(self, a: Any, axis: int) -> Any:
        return self.torch.cumsum(a, dim=axis)

    def cummax(self, a: Any, axis: int) -> Any:
        return self.torch.cummax(a, dim=axis).values

    def sum(self, a: Any, axis: int | None = None) -> Any:
        return a.sum() if axis is None else a.sum(dim=axis)

    def concatenate(self, arrs: list[Any], axis: int = 0) -> Any:
        return self.torch.cat(arrs, dim=axis)

    def stack(self, arrs: list[Any], axis: int = 0) -> Any:
        return self.torch.stack(arrs, dim=axis)

    def flip(self, a: Any, axis: int) -> Any:
        return self.torch.flip(a, dims=(axis,))

    def searchsorted(self, sorted_1d: Any, values: Any) -> Any:
        return self.torch.searchsorted(sorted_1d, values.contiguous(), side="left")

    def take(self, a: Any, idx: Any) -> Any:
        return a.reshape(-1)[idx]

    def scatter_add(self, n: int, idx: Any, weights: Any, dtype: Any) -> Any:
        out = self.torch.zeros(n, dtype=self._dt(dtype), device=self._dev)
        return out.index_add_(0, idx, weights.to(out.dtype))

    def argsort_stable(self, key: Any) -> Any:
        return self.torch.sort(key, stable=True).indices

    def sort(self, a: Any, axis: int = -1) -> Any:
        return self.torch.sort(a, dim=axis).values

    def argsort(self, a: Any, axis: int = -1) -> Any:
        return self.torch.sort(a, dim=axis, stable=True).indices

    def synchronize(self) -> None:
        if self._dev.type == "cuda":
            self.torch.cuda.synchronize()


def get_ops(backend: str = "numpy", device: str = "cpu") -> Ops:
    """The namespace for ``backend`` (``"numpy"`` or ``"torch"``) on ``device`` (``"cpu"`` or ``"cuda"``)."""
    if backend == "numpy":
        if device != "cpu":
            raise ValueError(f"backend 'numpy' runs on device 'cpu' only, got device={device!r}")
        return Ops()
    if backend == "torch":
        if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
        return TorchOps(device)
    raise ValueError(f"backend must be 'numpy' or 'torch', got {backend!r}")
