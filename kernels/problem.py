"""The plain array problem the planner solves and the result it returns (the kernels contract).

Shapes: T slots, P pools, K speed-curve points, J jobs, N tenants. Slot 0 is the current slot.
Extend these with defaulted fields; never rename (scheduler.planner, the reference solvers, the torch
backend and the benchmarks all build or read them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

#: ``deadline`` value meaning "no deadline".
NO_DEADLINE = np.iinfo(np.int32).max


@dataclass(frozen=True)
class PlanProblem:
    """One planning problem.

    Slots ``(T,)``: ``wind_w`` (forecast wind delivered to the site), ``carbon_g_per_kwh`` (forecast),
    ``grid_cap_w`` (import cap), ``site_max_w`` (facility cap), ``price_eur_per_mwh``.
    Pools: ``pool_gpus : (P, T)`` healthy GPUs per slot; ``tdp_w, idle_w, host_w_per_gpu,
    min_power_fraction : (P,)``; ``curve_f, curve_s : (P, K)`` speed curves (fraction -> relative speed).
    Jobs ``(J,)``: ``gpus``; ``remaining_s`` work left at full speed; ``release`` first slot it may run;
    ``deadline`` slot by whose start it should be done (``NO_DEADLINE``: none); ``weight`` grams CO2-eq
    charged per GPU-second of work left unfinished at the horizon end or done late (priority);
    ``eligible : (J, P)`` pools it may run in; ``must_run`` inference: runs at full power in every slot
    of ``[release, release + ceil(remaining_s / slot_s))``; ``preemptible`` False: once started it runs in
    one unbroken block (a running non-preemptible job must keep running); ``running_pool`` the pool it
    runs in now (-1: not running); ``preempt_loss_s`` work lost if a running job does not run in slot 0
    or moves pool; ``tenant`` index into ``tenant_quota_gpus : (N,)`` (max concurrent GPUs, inf: none).
    """

    slot_s: float
    pue: float
    wind_w: NDArray[np.floating]
    carbon_g_per_kwh: NDArray[np.floating]
    grid_cap_w: NDArray[np.floating]
    site_max_w: NDArray[np.floating]
    pool_gpus: NDArray[np.integer]
    tdp_w: NDArray[np.floating]
    idle_w: NDArray[np.floating]
    host_w_per_gpu: NDArray[np.floating]
    min_power_fraction: NDArray[np.floating]
    curve_f: NDArray[np.floating]
    curve_s: NDArray[np.floating]
    gpus: NDArray[np.integer]
    remaining_s: NDArray[np.floating]
    release: NDArray[np.integer]
    deadline: NDArray[np.integer]
    weight: NDArray[np.floating]
    eligible: NDArray[np.bool_]
    must_run: NDArray[np.bool_]
    preemptible: NDArray[np.bool_]
    running_pool: NDArray[np.integer]
    preempt_loss_s: NDArray[np.floating]
    tenant: NDArray[np.integer]
    tenant_quota_gpus: NDArray[np.floating]
    price_eur_per_mwh: NDArray[np.floating] | None = None
    energy_cost_weight_g_per_eur: float = 0.0  # optional carbon + weight x energy cost objective
    #: work done in a slot at or after the job's deadline is charged ``tardiness_factor * weight`` per
    #: GPU-second (late work still beats no work; see kernels.planner for the exact objective)
    tardiness_factor: float = 0.5

    @property
    def n_slots(self) -> int:
        return int(self.wind_w.shape[0])

    @property
    def n_jobs(self) -> int:
        return int(self.gpus.shape[0])

    @property
    def n_pools(self) -> int:
        return int(self.tdp_w.shape[0])


@dataclass(frozen=True)
class PlanResult:
    """The plan and its certificate.

    ``status``: ``"optimal"`` (gap within tolerance), ``"feasible"`` (every hard constraint holds, gap
    larger), ``"infeasible"`` (``reason`` names the slot or job). ``run : (J, T) bool``;
    ``power_fraction : (J, T) float32`` (0 where not running); ``pool : (J,) int32`` (-1: never runs);
    ``work_done_s, finished : (J,)``. Per slot: ``facility_w, grid_import_w, carbon_g : (T,)``,
    ``busy_gpus : (P, T)``; ``dual_price_g_per_gpu_h : (T,)`` the marginal carbon of one more GPU-hour in
    each slot. ``objective`` total (carbon plus penalties), ``lower_bound`` a certified lower bound on
    it, ``gap = (objective - lower_bound) / max(objective, tiny)``.
    """

    status: str
    reason: str
    run: NDArray[np.bool_]
    power_fraction: NDArray[np.float32]
    pool: NDArray[np.int32]
    work_done_s: NDArray[np.float64]
    finished: NDArray[np.bool_]
    facility_w: NDArray[np.float64]
    grid_import_w: NDArray[np.float64]
    carbon_g: NDArray[np.float64]
    busy_gpus: NDArray[np.int64]
    dual_price_g_per_gpu_h: NDArray[np.float64]
    carbon_g_total: float
    unfinished_gpu_s: float
    objective: float
    lower_bound: float
    gap: float
    iterations: int
    diagnostics: dict[str, Any] = field(default_factory=dict)
