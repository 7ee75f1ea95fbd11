"""Power and GPU capacity bookkeeping shared by the baseline policies and the control loop's fast path.

:class:`SitePower` binds the DESIGN section-2 power model (``kernels.power``) to one site: facility power of
a set of busy GPUs, and the *incremental* facility power of one busy GPU at fraction ``f`` (the model is
linear in busy GPUs and in ``f``, so the two coefficients are taken from ``kernels.power.it_power_w`` once).

:class:`CapacityProfile` projects free GPUs per pool and facility load per slot over a horizon from a
snapshot, against a power budget ``min(site_max_w, grid_cap_w + wind_w)`` per slot (the largest facility
power that breaks neither the substation limit nor the grid contract).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from kernels.power import it_power_w, speed
from scheduler.jobs import Job, eligibility_key, eligible_pools
from scheduler.models import Site
from scheduler.policies.base import Assignment, JobState, Snapshot


class SitePower:
    """The power model of one site, as small per-pool arrays (P pools)."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self.pue = float(site.pue)
        self.slot_s = float(site.slot_s)
        self.names: tuple[str, ...] = tuple(p.name for p in site.pools)
        self.index: dict[str, int] = {n: i for i, n in enumerate(self.names)}
        self.tdp_w = np.array([p.tdp_w for p in site.pools], dtype=np.float64)
        self.idle_w = np.array([p.idle_w for p in site.pools], dtype=np.float64)
        self.host_w_per_gpu = np.array([p.host_w_per_gpu for p in site.pools], dtype=np.float64)
        self.min_power_fraction = np.array([p.min_power_fraction for p in site.pools], dtype=np.float64)
        self.curves = [
            (np.array([c[0] for c in p.speed_curve]), np.array([c[1] for c in p.speed_curve])) for p in site.pools
        ]
        self._speed_cache: dict[tuple[int, float], float] = {}
        n = len(self.names)
        # One busy GPU at f=0 and at f=1 in each pool, against one healthy GPU: the model is affine in f.
        zero = np.zeros((n, 1))
        one = np.ones((n, 1))
        eye = np.eye(n)
        base = np.array([self._it(zero, zero, one * e[:, None]) for e in eye])
        at0 = np.array([self._it(zero, one * e[:, None], one * e[:, None]) for e in eye])
        at1 = np.array([self._it(self.tdp_w[:, None] * e[:, None], one * e[:, None], one * e[:, None]) for e in eye])
        self._gpu_w0 = self.pue * (at0 - base)  # (P,) facility W of a busy GPU at f=0 beyond an idle one
        self._gpu_w_slope = self.pue * (at1 - at0)  # (P,) per unit of f

    def _it(self, active: NDArray, busy: NDArray, healthy: NDArray) -> float:
        return float(it_power_w(active, busy, healthy, self.idle_w, self.host_w_per_gpu)[0])

    @property
    def gpu_w_full(self) -> NDArray[np.float64]:
        """(P,) facility watts one busy GPU at full power adds over an idle GPU, per pool."""
        return self._gpu_w0 + self._gpu_w_slope

    def gpu_w(self, pool_idx: int, f: float) -> float:
        """Facility watts one busy GPU at fraction ``f`` adds over an idle GPU in pool ``pool_idx``."""
        return float(self._gpu_w0[pool_idx] + self._gpu_w_slope[pool_idx] * f)

    def facility_w(self, active_gpu_w: NDArray, busy_gpus: NDArray, healthy_gpus: NDArray) -> float:
        """Facility power for one slot: ``(P,)`` sums of ``gpus * f * tdp_w``, busy and healthy GPUs."""
        return self.pue * self._it(
            np.asarray(active_gpu_w, dtype=np.float64)[:, None],
            np.asarray(busy_gpus, dtype=np.float64)[:, None],
            np.asarray(healthy_gpus, dtype=np.float64)[:, None],
        )

    def base_w(self, healthy_gpus: NDArray) -> float:
        """Facility power with every healthy GPU idle."""
        z = np.zeros(len(self.names))
        return self.facility_w(z, z, healthy_gpus)

    def healthy_array(self, healthy: Mapping[str, int]) -> NDArray[np.float64]:
        return np.array([float(healthy.get(n, 0)) for n in self.names])

    def speed(self, pool_idx: int, f: float) -> float:
        key = (pool_idx, f)
        got = self._speed_cache.get(key)
        if got is None:
            cf, cs = self.curves[pool_idx]
            got = float(speed(cf, cs, f))
            if len(self._speed_cache) < 100_000:
                self._speed_cache[key] = got
        return got

    @staticmethod
    def budget_w(wind_w: NDArray | float, grid_cap_w: NDArray | float, site_max_w: NDArray | float) -> NDArray:
        """Largest facility power allowed: ``min(site_max_w, grid_cap_w + wind_w)`` (elementwise)."""
        return np.minimum(np.asarray(site_max_w, dtype=np.float64), np.asarray(grid_cap_w) + np.asarray(wind_w))


class CapacityProfile:
    """Free GPUs per pool ``(P, T)`` and facility load ``(T,)`` over the horizon, with the forecast budget.

    Built from a snapshot: every healthy GPU idle, then each running job added from slot 0 for the slots
    its remaining work needs at its current power fraction.
    """

    def __init__(self, power: SitePower, snapshot: Snapshot, horizon_slots: int) -> None:
        fc = snapshot.forecast
        t = max(1, min(int(horizon_slots), fc.n_slots))
        self.power = power
        self.n_slots = t
        self.slot_s = float(fc.slot_s)
        healthy = power.healthy_array(snapshot.healthy_gpus)
        self.free = np.repeat(healthy[:, None], t, axis=1)
        self.load_w = np.full(t, power.base_w(healthy))
        self.wind_w = np.asarray(fc.wind_w[:t], dtype=np.float64)
        self.carbon_g_per_kwh = np.asarray(fc.carbon_g_per_kwh[:t], dtype=np.float64)
        self.budget_w = SitePower.budget_w(self.wind_w, fc.grid_cap_w[:t], fc.site_max_w[:t])
        # inference expected in later slots (slot 0's is known: it is queued or running): its GPUs and
        # power are booked from slot 1 on, so no job is started into capacity the next slots' inference needs
        self.reserve = reserve_array(power, snapshot.inference_reserve_gpus, t)
        if t > 1 and self.reserve.any():
            self.free[:, 1:] -= self.reserve[:, 1:]
            self.load_w[1:] += (self.reserve[:, 1:] * power.gpu_w_full[:, None]).sum(axis=0)

    def slots_needed(self, remaining_s: float, pool_idx: int, f: float = 1.0) -> int:
        sp = self.power.speed(pool_idx, f)
        return max(1, math.ceil(remaining_s / (self.slot_s * sp) - 1e-9))

    def add(self, pool_idx: int, gpus: int, f: float, t0: int, n: int) -> None:
        t1 = min(t0 + n, self.n_slots)
        if t1 <= t0:
            return
        self.free[pool_idx, t0:t1] -= gpus
        self.load_w[t0:t1] += gpus * self.power.gpu_w(pool_idx, f)

    def fits(self, pool_idx: int, gpus: int, f: float, n_gpu: int, n_power: int) -> bool:
        """Does the job fit from slot 0: GPUs for ``n_gpu`` slots, power for ``n_power`` slots?"""
        if self.free[pool_idx, 0] < gpus:
            return False
        dw = gpus * self.power.gpu_w(pool_idx, f)
        if self.load_w[0] + dw > self.budget_w[0] + 1e-6:
            return False
        g1 = min(n_gpu, self.n_slots)
        p1 = min(n_power, self.n_slots)
        return bool((self.free[pool_idx, :g1] >= gpus).all() and (self.load_w[:p1] + dw <= self.budget_w[:p1] + 1e-6).all())

    def slot_mask(self, pool_idx: int, gpus: int, f: float) -> NDArray[np.bool_]:
        """(T,) True where the job's GPUs and power would fit in that slot."""
        dw = gpus * self.power.gpu_w(pool_idx, f)
        return (self.free[pool_idx] >= gpus) & (self.load_w + dw <= self.budget_w + 1e-6)

    def marginal_carbon_g(self, pool_idx: int, gpus: int, f: float) -> NDArray[np.float64]:
        """(T,) grams of grid carbon the job would add in each slot (zero where wind covers it)."""
        dw = gpus * self.power.gpu_w(pool_idx, f)
        extra_import = np.maximum(self.load_w + dw - self.wind_w, 0.0) - np.maximum(self.load_w - self.wind_w, 0.0)
        return extra_import * (self.slot_s / 3600.0) / 1000.0 * self.carbon_g_per_kwh

    def earliest_window(self, pool_idx: int, gpus: int, f: float, n: int) -> int | None:
        """Earliest slot s with the job fitting in every slot of ``[s, s + n)`` (clipped to the horizon)."""
        mask = self.slot_mask(pool_idx, gpus, f)
        bad = np.concatenate([[0], np.cumsum(~mask)])
        t = self.n_slots
        for s in np.flatnonzero(mask):
            e = min(int(s) + n, t)
            if bad[e] - bad[s] == 0:
                return int(s)
        return None


def reserve_array(power: SitePower, reserve: Mapping[str, object], n_slots: int) -> NDArray[np.float64]:
    """``Snapshot.inference_reserve_gpus`` as a ``(P, n_slots)`` array (missing pools and slots: 0; a
    shorter series holds its last value)."""
    out = np.zeros((len(power.names), n_slots))
    for name, series in reserve.items():
        p = power.index.get(name)
        if p is None:
            continue
        a = np.asarray(series, dtype=np.float64).reshape(-1)
        if a.size == 0:
            continue
        k = min(a.size, n_slots)
        out[p, :k] = a[:k]
        out[p, k:] = a[-1]
    return out


def inference_pool_order(site: Site, pools: Iterable[int]) -> list[int]:
    """Eligible pools in the order inference is placed: largest first (the first is its *home* pool, where
    :class:`scheduler.control.InferenceReserve` books its expected demand), site order on ties."""
    return sorted(pools, key=lambda p: (-site.pools[p].gpus, p))


class SiteTools:
    """The per-site helpers a baseline policy keeps between ticks (power model and eligibility cache),
    rebuilt when the snapshot's site changes."""

    _power: SitePower | None = None
    _elig: EligibilityCache | None = None

    def _setup(self, snap: Snapshot) -> tuple[SitePower, EligibilityCache]:
        if self._power is None or self._power.site is not snap.site:
            self._power = SitePower(snap.site)
            self._elig = EligibilityCache(snap.site)
        assert self._elig is not None
        return self._power, self._elig

    def _begin(self, snap: Snapshot, horizon_slots: int) -> TickStart:
        """The prologue every baseline policy shares: the capacity profile over ``horizon_slots``, the
        running jobs that still fit the first slot (kept at full power in their pool), and every queued
        inference job started now (displacing preemptible training where GPUs are short)."""
        power, elig = self._setup(snap)
        prof = CapacityProfile(power, snap, horizon_slots)
        running = [js for js in snap.jobs if js.state == "running"]
        queued = [js for js in snap.jobs if js.state != "running"]
        kept, _ = running_first_slot_shed(prof, power, running)
        full = {name: Assignment(name, 1.0) for name in power.names}  # immutable: one per pool, shared
        run: dict[str, Assignment] = {js.job.job_id: full[js.pool or power.names[0]] for js in kept}
        start_inference(prof, power, elig, queued, kept, run, full.__getitem__)
        return TickStart(power, elig, prof, running, queued, kept, run)


@dataclass(slots=True)
class TickStart:
    """What :meth:`SiteTools._begin` hands a policy: the profile already holds ``kept`` and the inference
    started in ``run``; ``queued`` still lists that inference (policies skip ``job.must_run``)."""

    power: SitePower
    elig: EligibilityCache
    prof: CapacityProfile
    running: list[JobState]
    queued: list[JobState]
    kept: list[JobState]
    run: dict[str, Assignment]


class EligibilityCache:
    """``eligible_pools`` per job id (jobs are immutable, so the answer never changes). A job not seen before
    is looked up by what its eligibility depends on (pool selector, jurisdiction, clearance, the tenant's
    pools, GPUs): 30,000 jobs adopted at a restart share a handful of answers instead of 30,000 scans."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self._cache: dict[str, tuple[int, ...]] = {}
        self._by_need: dict[tuple[Any, ...], tuple[int, ...]] = {}

    def __call__(self, job: Job) -> tuple[int, ...]:
        got = self._cache.get(job.job_id)
        if got is None:
            need = eligibility_key(job)
            got = self._by_need.get(need)
            if got is None:
                got = self._by_need[need] = tuple(eligible_pools(self.site, job))
            self._cache[job.job_id] = got
        return got


def running_first_slot_shed(
    profile: CapacityProfile, power: SitePower, running: Iterable[JobState]
) -> tuple[list[JobState], list[JobState]]:
    """Add running jobs to ``profile``; if their load breaks the forecast budget in slot 0, shed the lowest
    priority preemptible non-inference ones (latest submitted first) until it fits.

    Returns (kept, shed). Inference and non-preemptible jobs are always kept.
    """
    running = list(running)
    n_p = len(power.names)
    index = power.index
    w0 = power._gpu_w0.tolist()
    ws = power._gpu_w_slope.tolist()
    # per job, as arrays: pool, GPUs, facility watts over idle, slots of work left at its fraction
    pidx = np.fromiter((index[js.pool] if js.pool is not None else 0 for js in running), np.int64, len(running))
    gpus = np.fromiter((js.job.gpus for js in running), np.float64, len(running))
    frac = np.fromiter((js.power_fraction for js in running), np.float64, len(running))
    rem = np.fromiter((js.remaining_s for js in running), np.float64, len(running))
    watts = gpus * (np.asarray(w0)[pidx] + np.asarray(ws)[pidx] * frac) if running else np.zeros(0)
    excess = float(profile.load_w[0] - profile.budget_w[0] + watts.sum())
    shed: set[str] = set()
    keep = np.ones(len(running), dtype=bool)
    if excess > 1e-6:
        cands = [i for i, js in enumerate(running) if js.job.preemptible and not js.job.must_run]
        cands.sort(key=lambda i: (running[i].job.priority, -running[i].job.submit_s))
        for i in cands:
            if excess <= 1e-6:
                break
            shed.add(running[i].job.job_id)
            keep[i] = False
            excess -= float(watts[i])
    kept = [js for js, k in zip(running, keep.tolist()) if k] if shed else running
    # add the kept jobs in one pass: per pool, GPUs and watts ending after n slots, then a reverse cumsum
    t = profile.n_slots
    if running:
        speed = np.array([power.speed(p, 1.0) for p in range(n_p)])
        sp = np.where(frac >= 1.0, speed[pidx], 0.0)
        slow = frac < 1.0
        if slow.any():
            sp[slow] = [power.speed(int(p), float(f)) for p, f in zip(pidx[slow], frac[slow])]
        n = np.maximum(1, np.ceil(rem / (profile.slot_s * sp) - 1e-9)).astype(np.int64)
        n = np.minimum(n, t)
        end_gpus = np.zeros((n_p, t + 1))
        end_w = np.zeros(t + 1)
        np.add.at(end_gpus, (pidx[keep], n[keep]), gpus[keep])
        np.add.at(end_w, n[keep], watts[keep])
        profile.free -= np.cumsum(end_gpus[:, ::-1], axis=1)[:, ::-1][:, 1:]
        profile.load_w += np.cumsum(end_w[::-1])[::-1][1:]
    if not shed:
        return kept, []
    return kept, [js for js in running if js.job.job_id in shed]


def start_inference(
    profile: CapacityProfile,
    power: SitePower,
    eligible: EligibilityCache,
    queued: Iterable[JobState],
    kept: list[JobState],
    run: MutableMapping[str, Assignment],
    make_assignment: Callable[[str], Assignment],
) -> list[str]:
    """Start every queued inference job now (must-run). Where no eligible pool has the GPUs free, preempt
    the lowest-priority preemptible non-inference running work in the pool that can make the most room.

    Updates ``profile``, ``kept`` and ``run`` in place (``make_assignment(pool_name)`` builds the entry);
    returns the ids of the running jobs displaced.
    """
    displaced: list[str] = []
    for js in queued:
        job = js.job
        if not job.must_run:
            continue
        pools = inference_pool_order(power.site, eligible(job))
        target = next((p for p in pools if profile.free[p, 0] >= job.gpus), None)
        if target is None:
            best_room, best_p = -1.0, None
            for p in pools:
                room = profile.free[p, 0] + sum(
                    k.job.gpus for k in kept if k.pool == power.names[p] and k.job.preemptible and not k.job.must_run
                )
                if room >= job.gpus and room > best_room:
                    best_room, best_p = room, p
            if best_p is None:
                continue
            victims = sorted(
                (k for k in kept if k.pool == power.names[best_p] and k.job.preemptible and not k.job.must_run),
                key=lambda k: (k.job.priority, -k.job.submit_s),
            )
            gone: set[str] = set()
            for v in victims:
                if profile.free[best_p, 0] >= job.gpus:
                    break
                n = profile.slots_needed(v.remaining_s, best_p, v.power_fraction)
                profile.add(best_p, -v.job.gpus, v.power_fraction, 0, n)
                run.pop(v.job.job_id, None)
                displaced.append(v.job.job_id)
                gone.add(v.job.job_id)
            if gone:
                kept[:] = [k for k in kept if k.job.job_id not in gone]
            target = best_p
        profile.add(target, job.gpus, 1.0, 0, profile.slots_needed(js.remaining_s, target))
        run[job.job_id] = make_assignment(power.names[target])
    return displaced
