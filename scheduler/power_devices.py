"""GPU power-limit control behind one small interface (the Zeus habit): NVML where real GPUs exist, a
simulated device with the DESIGN power model where they do not.

The choice is made once, at start-up, by :func:`open_node_gpus` and logged with its reason. Nothing here
imports ray: the Ray node agent (``scheduler.executors.ray_agent``) holds one :class:`NodeGpus` per node.

Units: watts. A device's power *limit* is what the scheduler sets; its *draw* is what it uses now. The
simulated device follows DESIGN section 2: a busy GPU at power fraction f draws ``f * tdp_w``, an idle one
``idle_w``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from scheduler.errors import ExecutorError, InputError

log = logging.getLogger(__name__)

#: How a node's GPU power limits are applied: real limits through NVML, or the DESIGN power model.
POWER_BACKENDS: tuple[str, ...] = ("nvml", "simulated")
#: What an operator may ask for (``windward server --power-control``): ``auto`` = NVML where usable.
POWER_CONTROL_CHOICES: tuple[str, ...] = ("auto", *POWER_BACKENDS)


class GpuPowerDevice(Protocol):
    """One GPU's power controls."""

    index: int

    def power_limit_w(self) -> float: ...

    def set_power_limit_w(self, limit_w: float) -> None: ...

    def power_draw_w(self) -> float: ...

    def set_busy(self, busy: bool) -> None:
        """Tell the device whether a job runs on it (the simulated device's draw depends on it; a real GPU
        reports what it really draws, so NVML ignores this)."""
        ...


@dataclass(slots=True)
class SimulatedGpu:
    """A GPU that follows the DESIGN power model: busy -> draws its limit, idle -> ``idle_w``."""

    index: int
    tdp_w: float
    idle_w: float
    min_limit_w: float
    limit_w: float = 0.0
    busy: bool = False

    def __post_init__(self) -> None:
        if self.limit_w <= 0.0:
            self.limit_w = self.tdp_w

    def power_limit_w(self) -> float:
        return self.limit_w

    def set_power_limit_w(self, limit_w: float) -> None:
        if not (self.min_limit_w - 1e-6 <= limit_w <= self.tdp_w + 1e-6):
            raise InputError(
                f"GPU {self.index}: power limit {limit_w:.1f} W is outside the allowed "
                f"[{self.min_limit_w:.1f}, {self.tdp_w:.1f}] W"
            )
        self.limit_w = float(limit_w)

    def power_draw_w(self) -> float:
        return self.limit_w if self.busy else self.idle_w

    def set_busy(self, busy: bool) -> None:
        self.busy = bool(busy)


class NvmlGpu:
    """A real NVIDIA GPU through nvidia-ml-py (``pynvml``). Setting limits needs root on the node."""

    def __init__(self, index: int) -> None:
        import pynvml

        self._nvml = pynvml
        self.index = index
        self._handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        lo_mw, hi_mw = pynvml.nvmlDeviceGetPowerManagementLimitConstraints(self._handle)
        self.min_limit_w = lo_mw / 1000.0
        self.max_limit_w = hi_mw / 1000.0

    def power_limit_w(self) -> float:
        return float(self._nvml.nvmlDeviceGetPowerManagementLimit(self._handle)) / 1000.0

    def set_power_limit_w(self, limit_w: float) -> None:
        if not (self.min_limit_w - 1e-6 <= limit_w <= self.max_limit_w + 1e-6):
            raise InputError(
                f"GPU {self.index}: power limit {limit_w:.1f} W is outside the device's "
                f"[{self.min_limit_w:.1f}, {self.max_limit_w:.1f}] W"
            )
        try:
            self._nvml.nvmlDeviceSetPowerManagementLimit(self._handle, int(round(limit_w * 1000.0)))
        except self._nvml.NVMLError as e:
            raise ExecutorError(f"GPU {self.index}: NVML refused power limit {limit_w:.1f} W: {e}") from e

    def power_draw_w(self) -> float:
        return float(self._nvml.nvmlDeviceGetPowerUsage(self._handle)) / 1000.0

    def set_busy(self, busy: bool) -> None:  # a real GPU's draw is measured, not modelled
        return None


@dataclass(slots=True)
class NodeGpus:
    """All GPUs of one node and which backend drives them (``"nvml"`` or ``"simulated"``)."""

    backend: str
    reason: str
    devices: list[GpuPowerDevice]
    tdp_w: float

    def __len__(self) -> int:
        return len(self.devices)

    def _device(self, index: int) -> GpuPowerDevice:
        if not 0 <= index < len(self.devices):
            raise InputError(f"GPU index {index} is not on this node (0..{len(self.devices) - 1})")
        return self.devices[index]

    def set_fraction(self, indices: Sequence[int], power_fraction: float) -> None:
        """Set the power limit of ``indices`` to ``power_fraction * tdp_w``; all or nothing."""
        devs = [self._device(i) for i in indices]
        for d in devs:
            d.set_power_limit_w(power_fraction * self.tdp_w)

    def set_busy(self, indices: Sequence[int], busy: bool) -> None:
        for i in indices:
            self._device(i).set_busy(busy)

    def limits_w(self) -> list[float]:
        return [d.power_limit_w() for d in self.devices]

    def draws_w(self) -> list[float]:
        return [d.power_draw_w() for d in self.devices]


def _try_nvml(n_gpus: int) -> tuple[list[GpuPowerDevice] | None, str]:
    try:
        import pynvml
    except ImportError:
        return None, "nvidia-ml-py is not installed"
    try:
        pynvml.nvmlInit()
        count = int(pynvml.nvmlDeviceGetCount())
    except Exception as e:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...: no usable GPU here
        return None, f"nvmlInit failed ({e.__class__.__name__}: {e})"
    if count < n_gpus:
        return None, f"NVML sees {count} GPU(s) but the node declares {n_gpus}"
    try:
        return [NvmlGpu(i) for i in range(n_gpus)], f"NVML with {count} GPU(s)"
    except Exception as e:
        return None, f"NVML device setup failed ({e.__class__.__name__}: {e})"


def _nvml_unavailable(reason: str) -> ExecutorError:
    return ExecutorError(f"NVML power control requested but unavailable: {reason}")


def nvml_unavailable_error(n_gpus: int) -> ExecutorError | None:
    """The error :func:`open_node_gpus` raises with ``prefer="nvml"`` on a node of ``n_gpus`` GPUs on this host
    (None: NVML is usable here). The Ray executor asks it before it starts a local cluster, whose simulated
    nodes all run on this host with this Python: their agents would get the same answer."""
    if n_gpus <= 0:
        raise InputError(f"n_gpus must be positive, got {n_gpus}")
    devices, reason = _try_nvml(n_gpus)
    return None if devices is not None else _nvml_unavailable(reason)


def open_node_gpus(
    n_gpus: int,
    tdp_w: float,
    idle_w: float,
    min_power_fraction: float,
    prefer: str = "auto",
) -> NodeGpus:
    """Open the node's GPU power controls: NVML if ``pynvml.nvmlInit()`` works and sees enough GPUs
    (``prefer="auto"`` or ``"nvml"``), else simulated devices. The choice and its reason are logged."""
    if prefer not in POWER_CONTROL_CHOICES:
        raise InputError(f"power backend {prefer!r}: allowed are {list(POWER_CONTROL_CHOICES)}")
    if n_gpus <= 0:
        raise InputError(f"n_gpus must be positive, got {n_gpus}")
    reason = "simulated devices requested"
    if prefer in ("auto", "nvml"):
        devices, reason = _try_nvml(n_gpus)
        if devices is not None:
            log.info("GPU power control: NVML (%s)", reason)
            return NodeGpus(backend="nvml", reason=reason, devices=devices, tdp_w=tdp_w)
        if prefer == "nvml":
            raise _nvml_unavailable(reason)
    sim: list[GpuPowerDevice] = [
        SimulatedGpu(index=i, tdp_w=tdp_w, idle_w=idle_w, min_limit_w=min_power_fraction * tdp_w)
        for i in range(n_gpus)
    ]
    log.info("GPU power control: simulated %d GPU(s) with the DESIGN power model (%s)", n_gpus, reason)
    return NodeGpus(backend="simulated", reason=reason, devices=sim, tdp_w=tdp_w)


def it_power_with_measured_w(
    modelled_it_w: Mapping[str, float],
    measured_gpu_w: Mapping[str, float],
    host_w_per_gpu: Mapping[str, float],
    healthy_gpus: Mapping[str, int],
) -> tuple[dict[str, float], dict[str, str]]:
    """IT power per pool (W) with measured GPU power where there is some: a pool with an NVML readback
    (``RayExecutor.measured_gpu_power_w``) counts its measured GPU draw plus its hosts
    (``host_w_per_gpu * healthy GPUs``, DESIGN section 2); any other pool keeps the model's value.
    Returns (watts per pool, ``"measured"`` or ``"model"`` per pool). Facility power is ``pue`` times the
    sum; the control loop's fast path and the cap alerts take it where a pool is measured."""
    unknown = set(measured_gpu_w) - set(modelled_it_w)
    if unknown:
        raise InputError(f"measured power for pool(s) {sorted(unknown)} that the model does not know")
    watts: dict[str, float] = {}
    source: dict[str, str] = {}
    for pool, model_w in modelled_it_w.items():
        if pool in measured_gpu_w:
            gpu_w = float(measured_gpu_w[pool])
            if not gpu_w >= 0.0:
                raise InputError(f"measured GPU power of pool {pool!r} is {gpu_w!r} W; it must be >= 0")
            watts[pool] = gpu_w + float(host_w_per_gpu[pool]) * int(healthy_gpus.get(pool, 0))
            source[pool] = "measured"
        else:
            watts[pool] = float(model_w)
            source[pool] = "model"
    return watts, source
