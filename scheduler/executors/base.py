"""The executor interface: the one border between the control loop and where jobs really run.

Two implementations: ``simulated`` (virtual clock, arrays of free GPUs per node, any scale, no Ray) and
``ray`` (real Ray cluster, placement groups, real workloads). The control loop (scheduler.control) drives
either through this interface only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from scheduler.jobs import Job


class Clock(Protocol):
    """Seconds since the run's epoch. The simulator's clock is virtual; the service's is the wall clock."""

    def now_s(self) -> float: ...


@dataclass(frozen=True, slots=True)
class Placement:
    job_id: str
    pool: str
    nodes: tuple[int, ...]  # node indices within the pool
    gpus_per_node: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class RunningInfo:
    job_id: str
    pool: str
    nodes: tuple[int, ...]
    power_fraction: float
    work_done_s: float  # at full-speed equivalent, from the job's progress channel
    checkpoint_work_s: float


@dataclass(frozen=True, slots=True)
class ExecutorEvent:
    """Something that happened in the executor: ``finished``, ``failed``, ``node_down``, ``node_up``,
    ``preempted`` (with ``lost_s``) or ``resumed``."""

    kind: str
    time_s: float
    job_id: str | None = None
    pool: str | None = None
    node: int | None = None
    lost_s: float = 0.0
    detail: str = ""
    work_done_s: float | None = None  # a stopped job's work at that moment (full-speed seconds), if known


class Executor(Protocol):
    def healthy_gpus(self) -> dict[str, int]:
        """GPUs on nodes that are up, per pool."""
        ...

    def free_gpus_by_node(self, pool: str) -> NDArray[np.int32]:
        """Free GPUs on each node of ``pool`` (0 for nodes that are down)."""
        ...

    def start(self, job: Job, pool: str, power_fraction: float, work_done_s: float) -> Placement | None:
        """Place the job's gang (all GPUs at once or none) in ``pool`` and start or resume it from its
        checkpoint. Returns None, changing nothing, when the gang does not fit now."""
        ...

    def preempt(self, job_id: str, reason: str) -> float:
        """Ask the job to checkpoint, wait the grace period, stop it. Returns the work lost in seconds."""
        ...

    def set_power_fraction(self, job_id: str, power_fraction: float) -> None: ...

    def running(self) -> Mapping[str, RunningInfo]: ...

    def step(self, dt_s: float) -> list[ExecutorEvent]:
        """Let ``dt_s`` seconds pass (virtually or really) and return what happened meanwhile."""
        ...

    def close(self) -> None: ...

    def measured_gpu_power_w(self) -> Mapping[str, float] | None:
        """GPU power measured now per pool (W), for the pools the executor can measure (NVML readback);
        None (or an empty mapping) where nothing is measured. Optional: the default measures nothing."""
        return None


def measured_gpu_power_w(executor: object) -> dict[str, float] | None:
    """``executor.measured_gpu_power_w()`` where the executor has it, else None; an empty answer is None.
    The control loop and the server call this once per tick (:func:`scheduler.pipeline.constrain`)."""
    fn = getattr(executor, "measured_gpu_power_w", None)
    got = fn() if fn is not None else None
    return dict(got) if got else None
