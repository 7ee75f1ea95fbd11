"""The node agent: one detached actor per GPU node (``num_cpus=0``, pinned to its node) that sets and reads
GPU power limits and draw through :mod:`scheduler.power_devices` (NVML where it works, simulated devices
with the DESIGN power model where not; the choice is made when the agent starts and logged).

The GPUs it acts on are the ones Ray assigned to the job's worker on this node (``ray.get_gpu_ids()``, the
physical indices NVML uses when the raylet sees every GPU of the node). It also remembers which GPUs each
job holds, so a restarted scheduler can rebuild that map.
"""

from __future__ import annotations

import logging
from typing import Any

from scheduler.errors import InputError
from scheduler.power_devices import NodeGpus, open_node_gpus

log = logging.getLogger(__name__)


def _index(gpu_id: int | str) -> int:
    s = str(gpu_id)
    if not s.isdigit():
        raise InputError(f"GPU id {gpu_id!r} from Ray is not an index; set CUDA_VISIBLE_DEVICES to indices on the node")
    return int(s)


class NodeAgent:
    def __init__(
        self, pool: str, index: int, n_gpus: int, tdp_w: float, idle_w: float, min_power_fraction: float,
        backend: str = "auto",
    ) -> None:
        logging.basicConfig(level=logging.INFO)
        self.pool, self.index = pool, index
        self._gpus: NodeGpus = open_node_gpus(n_gpus, tdp_w, idle_w, min_power_fraction, prefer=backend)
        self._jobs: dict[str, list[int]] = {}
        log.info("node agent %s/%d: %s (%s)", pool, index, self._gpus.backend, self._gpus.reason)

    def backend(self) -> tuple[str, str]:
        return self._gpus.backend, self._gpus.reason

    def assign(self, job_id: str, gpu_ids: list[int | str], power_fraction: float) -> list[float]:
        """Mark the GPUs Ray assigned (``gpu_ids``) busy for ``job_id`` at ``power_fraction``; returns their
        limits (W)."""
        indices = [_index(g) for g in gpu_ids]
        self._gpus.set_fraction(indices, power_fraction)
        self._gpus.set_busy(indices, True)
        self._jobs[job_id] = list(indices)
        return [self._gpus.devices[i].power_limit_w() for i in indices]

    def set_fraction(self, job_id: str, power_fraction: float) -> list[float]:
        indices = self._jobs.get(job_id, [])
        self._gpus.set_fraction(indices, power_fraction)
        return [self._gpus.devices[i].power_limit_w() for i in indices]

    def release(self, job_id: str) -> None:
        """The job left: its GPUs go idle at full limit (TDP)."""
        indices = self._jobs.pop(job_id, [])
        self._gpus.set_busy(indices, False)
        self._gpus.set_fraction(indices, 1.0)

    def jobs(self) -> dict[str, list[int]]:
        return {k: list(v) for k, v in self._jobs.items()}

    def state(self) -> dict[str, Any]:
        return {
            "pool": self.pool,
            "index": self.index,
            "backend": self._gpus.backend,
            "limits_w": self._gpus.limits_w(),
            "draws_w": self._gpus.draws_w(),
            "jobs": self.jobs(),
        }
