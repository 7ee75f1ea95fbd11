"""The one border between keyed objects and dense arrays (Gavel's flatten / unflatten, done once).

``build_problem(snapshot, horizon_slots)`` turns an immutable :class:`~scheduler.policies.base.Snapshot`
(jobs keyed by id, pools keyed by name, a forecast) into the plain-array
:class:`~kernels.problem.PlanProblem` the optimiser solves, plus a :class:`PlanIndex` that remembers which
row is which job and which column which pool. ``decisions_from_result(result, index)`` goes the other way
for the first slot only. No ray import; no clock (times come from the snapshot).

How the keyed fields become arrays
----------------------------------
- Slots ``(T,)``: ``snapshot.forecast`` (window of ``horizon_slots`` from the current slot; past its end the
  last slot is held, see ``EnergySeries.window``). ``slot_s`` is the forecast's slot length.
- Pools ``(P, T)``: healthy GPUs from ``snapshot.healthy_gpus[pool]`` (missing: all of the pool), constant
  over the horizon; speed curves padded to a common length ``K`` by repeating their last point ``(1, 1)``.
- Jobs ``(J,)``, in ``snapshot.jobs`` order:
  ``remaining_s = duration_s - work_done_s`` (reported progress); ``release = ceil((submit_s - now_s) /
  slot_s)`` clipped at 0; ``deadline = floor((deadline_s - now_s) / slot_s)`` clipped at 0 (work is on
  time in slots that end by the deadline), moved to the earliest possible finish ``release +
  ceil(remaining_s / slot_s)`` when it lies before it (a missed or unreachable deadline: finish as soon as
  possible rather than drift to a greener slot), and otherwise brought ``deadline_margin_slots`` (1) slots
  forward where that still leaves room, ``NO_DEADLINE`` when none; ``eligible`` from
  :func:`scheduler.jobs.pool_matches` and the pool's size (as :func:`scheduler.jobs.eligible_pools`);
  ``must_run`` for inference (the kernels run it in ``ceil(remaining_s / slot_s)`` slots from release);
  ``running_pool`` the pool index of a running job; ``preempt_loss_s = work_done_s - checkpoint_work_s``.
- Weights (grams CO2-eq per GPU-second of work left undone or done late, :func:`job_weights`): a base
  weight that is ``weight_margin`` times the dearest carbon one GPU-second of full-power work can cost in
  this horizon (so any work that fits is done within the horizon, in its greenest slots), times
  ``priority_base ** priority`` (job priority plus the tenant's priority class), times an ageing factor
  ``1 + waited_h / age_h`` (rolling horizons never starve a job). Work of a tenant with an owed commitment
  gets ``commitment_weight_factor`` times that weight and a deadline at its earliest possible finish, so it
  runs ahead of carbon savings.
- Tenants ``(N,)``: ``tenant_quota_gpus`` from ``snapshot.tenant_info`` (``inf`` when absent).

``snapshot.tenant_info`` shape read here (every key optional; a mapping or an object with attributes)::

    {"<tenant>": {"priority": 2,                    # priority class, added to each job's priority
                  "quota_gpus": 512,                # max concurrent GPUs (None: no quota)
                  "commitment_owed_gpu_h": 120.0}}  # pre-ordered GPU-hours still owed now
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from kernels.problem import NO_DEADLINE, PlanProblem, PlanResult
from scheduler.errors import InputError
from scheduler.jobs import pool_matches
from scheduler.policies.base import Assignment, Decisions, JobState, Snapshot

log = logging.getLogger(__name__)

#: Keys of a tenant_info entry that carry the GPU-hours a tenant is still owed (first present wins).
_OWED_KEYS = ("commitment_owed_gpu_h", "owed_gpu_h", "commitment_owed_gpu_hours", "owed_gpu_hours")


@dataclass(frozen=True, slots=True)
class PlanIndex:
    """Which array row is which job, which column which pool, and the time origin of slot 0."""

    job_ids: tuple[str, ...]
    pool_names: tuple[str, ...]
    tenants: tuple[str, ...]
    slot_s: float
    now_s: float
    slot: int

    def job_row(self, job_id: str) -> int:
        return self.job_ids.index(job_id)


@dataclass(frozen=True, slots=True)
class WeightSettings:
    """How priorities, waiting time and tenant commitments become per-job weights (see module docstring)."""

    weight_margin: float = 2.0
    priority_base: float = 2.0
    max_priority_exponent: float = 8.0
    age_h: float = 24.0
    commitment_weight_factor: float = 10.0
    deadline_margin_slots: int = 1  # plan to finish this many slots before a reachable deadline


def _tenant_field(info: Any, key: str) -> Any:
    if info is None:
        return None
    if isinstance(info, Mapping):
        return info.get(key)
    return getattr(info, key, None)


def _owed_gpu_h(info: Any) -> float:
    for k in _OWED_KEYS:
        v = _tenant_field(info, k)
        if v is not None:
            return float(v)
    return 0.0


def _curves(snapshot: Snapshot) -> tuple[np.ndarray, np.ndarray]:
    pools = snapshot.site.pools
    k = max(len(p.speed_curve) for p in pools)
    cf = np.ones((len(pools), k), dtype=np.float64)
    cs = np.ones((len(pools), k), dtype=np.float64)
    for i, p in enumerate(pools):
        pts = np.asarray(p.speed_curve, dtype=np.float64)
        cf[i, : len(pts)] = pts[:, 0]
        cs[i, : len(pts)] = pts[:, 1]
        cf[i, len(pts) :] = pts[-1, 0]
        cs[i, len(pts) :] = pts[-1, 1]
    return cf, cs


def max_carbon_g_per_gpu_s(snapshot: Snapshot, carbon_g_per_kwh: np.ndarray) -> float:
    """The dearest grid carbon of one GPU-second of work at full power in this horizon (g / GPU-s)."""
    site = snapshot.site
    marginal_w = max(site.pue * (p.tdp_w - p.idle_w) for p in site.pools)
    ci = float(np.max(carbon_g_per_kwh)) if carbon_g_per_kwh.size else 0.0
    return marginal_w / 3.6e6 * max(ci, 1.0)


def job_weights(
    snapshot: Snapshot,
    carbon_g_per_kwh: np.ndarray,
    settings: WeightSettings = WeightSettings(),
) -> tuple[np.ndarray, np.ndarray]:
    """Per-job weight (g per GPU-second) and a bool mask of jobs whose tenant is owed a commitment."""
    base = settings.weight_margin * max_carbon_g_per_gpu_s(snapshot, carbon_g_per_kwh)
    n = len(snapshot.jobs)
    prio = np.zeros(n)
    waited_h = np.zeros(n)
    owed = np.zeros(n, dtype=bool)
    for i, js in enumerate(snapshot.jobs):
        info = snapshot.tenant_info.get(js.job.tenant) if snapshot.tenant_info else None
        cls = _tenant_field(info, "priority")
        prio[i] = js.job.priority + (float(cls) if cls is not None else 0.0)
        waited_h[i] = max(snapshot.now_s - js.job.submit_s, 0.0) / 3600.0
        owed[i] = _owed_gpu_h(info) > 0.0
    exp = np.clip(prio, -settings.max_priority_exponent, settings.max_priority_exponent)
    w = base * settings.priority_base**exp * (1.0 + waited_h / settings.age_h)
    w = np.where(owed, w * settings.commitment_weight_factor, w)
    return w, owed


def build_problem(
    snapshot: Snapshot,
    horizon_slots: int,
    *,
    weights: WeightSettings = WeightSettings(),
    energy_cost_weight_g_per_eur: float = 0.0,
) -> tuple[PlanProblem, PlanIndex]:
    """Flatten a snapshot into the optimiser's arrays (see the module docstring for each field)."""
    if horizon_slots < 1:
        raise InputError(f"horizon_slots must be >= 1, got {horizon_slots}")
    site = snapshot.site
    fc = snapshot.forecast.window(0, horizon_slots) if snapshot.forecast.n_slots != horizon_slots else snapshot.forecast
    slot_s = float(fc.slot_s)
    T = horizon_slots
    pools = site.pools
    P = len(pools)
    pool_index = {p.name: i for i, p in enumerate(pools)}

    healthy = np.array([int(snapshot.healthy_gpus.get(p.name, p.gpus)) for p in pools], dtype=np.int64)
    if np.any(healthy < 0):
        raise InputError(f"snapshot.healthy_gpus: negative GPU count in {dict(snapshot.healthy_gpus)}")
    pool_gpus = np.repeat(np.minimum(healthy, [p.gpus for p in pools])[:, None], T, axis=1)
    curve_f, curve_s = _curves(snapshot)

    jobs: tuple[JobState, ...] = snapshot.jobs
    J = len(jobs)
    gpus = np.array([js.job.gpus for js in jobs], dtype=np.int64)
    remaining = np.array([js.remaining_s for js in jobs], dtype=np.float64)
    submit = np.array([js.job.submit_s for js in jobs], dtype=np.float64)
    release = np.maximum(np.ceil((submit - snapshot.now_s) / slot_s - 1e-9), 0).astype(np.int64)
    deadline = np.full(J, NO_DEADLINE, dtype=np.int64)
    for i, js in enumerate(jobs):
        if js.job.deadline_s is not None:
            d = math.floor((js.job.deadline_s - snapshot.now_s) / slot_s + 1e-9)
            deadline[i] = min(max(d, 0), NO_DEADLINE - 1)
    eligible = np.zeros((J, P), dtype=bool)
    for i, js in enumerate(jobs):
        for p, pool in enumerate(pools):
            eligible[i, p] = pool.gpus >= js.job.gpus and pool_matches(pool, js.job)
    must_run = np.array([js.job.must_run for js in jobs], dtype=bool)
    preemptible = np.array([js.job.preemptible and not js.job.must_run for js in jobs], dtype=bool)
    running_pool = np.full(J, -1, dtype=np.int64)
    for i, js in enumerate(jobs):
        if js.state == "running":
            if js.pool not in pool_index:
                raise InputError(f"snapshot: running job {js.job.job_id!r} is in unknown pool {js.pool!r}")
            running_pool[i] = pool_index[js.pool]
    preempt_loss = np.array(
        [max(js.work_done_s - js.checkpoint_work_s, 0.0) if js.state == "running" else 0.0 for js in jobs],
        dtype=np.float64,
    )

    carbon = np.asarray(fc.carbon_g_per_kwh, dtype=np.float64)
    weight, owed = job_weights(snapshot, carbon, weights)
    # A deadline that can no longer be met (it falls before the earliest possible finish at full speed) and
    # the work of a tenant owed a commitment are due at the earliest possible finish: every slot of delay
    # then costs late work, so the job runs as soon as it can instead of drifting to a greener slot.
    earliest = release + np.ceil(remaining / slot_s - 1e-9).astype(np.int64)
    has_deadline = deadline != NO_DEADLINE
    # a safety margin against slippage between ticks (progress, checkpoints), where the deadline allows it
    margin = weights.deadline_margin_slots
    deadline = np.where(has_deadline & (deadline - margin >= earliest), deadline - margin, deadline)
    deadline = np.where(has_deadline & (deadline < earliest), earliest, deadline)
    deadline = np.where(owed, np.minimum(deadline, earliest), deadline)

    tenants = tuple(sorted({js.job.tenant for js in jobs}))
    t_index = {t: i for i, t in enumerate(tenants)}
    tenant = np.array([t_index[js.job.tenant] for js in jobs], dtype=np.int64)
    quota = np.full(len(tenants), np.inf)
    for t, i in t_index.items():
        q = _tenant_field(snapshot.tenant_info.get(t) if snapshot.tenant_info else None, "quota_gpus")
        if q is not None:
            quota[i] = float(q)

    problem = PlanProblem(
        slot_s=slot_s,
        pue=float(site.pue),
        wind_w=np.asarray(fc.wind_w, dtype=np.float64),
        carbon_g_per_kwh=carbon,
        grid_cap_w=np.asarray(fc.grid_cap_w, dtype=np.float64),
        site_max_w=np.asarray(fc.site_max_w, dtype=np.float64),
        pool_gpus=pool_gpus,
        tdp_w=np.array([p.tdp_w for p in pools], dtype=np.float64),
        idle_w=np.array([p.idle_w for p in pools], dtype=np.float64),
        host_w_per_gpu=np.array([p.host_w_per_gpu for p in pools], dtype=np.float64),
        min_power_fraction=np.array([p.min_power_fraction for p in pools], dtype=np.float64),
        curve_f=curve_f,
        curve_s=curve_s,
        gpus=gpus,
        remaining_s=remaining,
        release=release,
        deadline=deadline,
        weight=weight,
        eligible=eligible,
        must_run=must_run,
        preemptible=preemptible,
        running_pool=running_pool,
        preempt_loss_s=preempt_loss,
        tenant=tenant,
        tenant_quota_gpus=quota,
        price_eur_per_mwh=np.asarray(fc.price_eur_per_mwh, dtype=np.float64),
        energy_cost_weight_g_per_eur=energy_cost_weight_g_per_eur,
    )
    index = PlanIndex(
        job_ids=tuple(js.job.job_id for js in jobs),
        pool_names=tuple(p.name for p in pools),
        tenants=tenants,
        slot_s=slot_s,
        now_s=float(snapshot.now_s),
        slot=int(snapshot.slot),
    )
    return problem, index


def decisions_from_result(result: PlanResult, index: PlanIndex) -> Decisions:
    """Unflatten the first slot of a plan: every job with ``run[j, 0]`` runs in ``pool[j]`` at its fraction."""
    run: dict[str, Assignment] = {}
    if result.run.ndim == 2 and result.run.shape[0] == len(index.job_ids) and result.run.shape[1] > 0:
        rows = np.flatnonzero(result.run[:, 0])
        for j in rows.tolist():
            p = int(result.pool[j])
            if p < 0:
                continue
            run[index.job_ids[j]] = Assignment(
                pool=index.pool_names[p], power_fraction=float(result.power_fraction[j, 0])
            )
    return Decisions(run=run, plan=result)
