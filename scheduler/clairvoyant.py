"""The clairvoyant reference of a simulated run: a lower bound on the grid carbon of the same work.

Given a finished run (site, jobs, the loop's job records, the *actual* energy it ran against), build the
planning problem of the whole run with everything known in advance -- every job's arrival, the actual wind,
carbon and caps of every slot -- and bound the carbon of any schedule that does **the same work, job by job**
(a job the run finished must be finished; a job it left unfinished must get the work the run gave it;
inference the run served is served in its slots) and meets **every deadline the run met**. Equal work by
construction, so a policy that defers work past the run's end is not flattered: its bound shrinks with it.

The bound is the LP relaxation (no integrality, no contiguity, a job may split a slot across pools and
power levels, release rounded down and deadlines up to the slot, every GPU healthy): it is below the carbon
of every schedule doing that work, including the run itself, so ``carbon / bound >= 1`` and the ratio is
what the run left on the table against perfect knowledge.

Two solvers:

- ``highs-lp``: HiGHS through :func:`benchmarks.reference.solve_lp` (``carbon_only``, ``require_finished``,
  ``require_on_time``) where scipy is installed (the ``reference`` extra). Jobs with the same release,
  deadline, pools and on-time requirement are merged into one row with ``gpus = sum g_i`` and
  ``remaining_s = sum g_i r_i / sum g_i`` -- a relaxation (any schedule of the members maps to one of the
  merged row with the same power and GPU use), exact when members are alike; when the LP would still be
  larger than ``max_lp_vars`` columns, releases and deadlines are coarsened to buckets of ``2^k`` slots
  (release down, deadline up: still a relaxation). ``release_bucket_slots`` says which resolution was used.
- ``kernels-dual``: without scipy (or when asked), the optimiser's certified Lagrangian bound
  (:func:`kernels.carbon_bound`) on the same work with deadlines relaxed: valid, looser.

Pure computation (numpy; scipy only through benchmarks.reference): no I/O, no clock besides timing.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from kernels.problem import NO_DEADLINE, PlanProblem
from scheduler.energy import EnergySeries
from scheduler.jobs import Job, eligible_pools
from scheduler.models import Site

log = logging.getLogger(__name__)

#: Above this many LP columns (estimated), releases and deadlines are coarsened (see the module docstring).
MAX_LP_VARS = 400_000
#: The optimiser's dual bound (the fallback) plans the run's jobs over its slots: (jobs x slots) cells cost
#: about 170 bytes each at its peak (measured: a 60-day 1,024-GPU replay, 21,562 jobs x 5,760 slots, grew to
#: 21 GB). Above this many cells no fallback bound is computed (status "skipped", the ratio is None).
MAX_DUAL_CELLS = 4_000_000
SOLVERS = ("auto", "highs-lp", "kernels-dual")


@dataclass(frozen=True, slots=True)
class WorkItem:
    """One job's share of a run's work, as the clairvoyant problem sees it."""

    job: Job
    work_s: float  # full-speed seconds of work the run did on it (the bound asks for the same)
    on_time: bool  # the run finished it by its deadline (the bound must too)
    # must-run (inference) only: the slots it ran whole in the run (None: from its submit slot on, as long
    # as ``work_s`` needs); the bound serves it in exactly these slots
    slots: tuple[int, ...] | None = None


@dataclass(frozen=True, slots=True)
class ClairvoyantBound:
    """A lower bound on the grid carbon of any schedule doing a run's work (module docstring)."""

    bound_carbon_g: float  # NaN when no bound could be computed (status says why)
    status: str  # "optimal" | "time_limit" | "infeasible" | "error" | "empty" | "skipped"
    method: str  # "highs-lp" | "kernels-dual"
    n_jobs: int  # jobs with work in the run
    n_rows: int  # rows of the problem after merging
    n_slots: int
    release_bucket_slots: int  # 1: releases and deadlines at slot resolution
    on_time_jobs: int  # jobs whose deadline the bound must meet
    solve_s: float
    message: str = ""
    idle_carbon_g: float = 0.0  # the carbon of the idle site over the run (in every schedule, and the bound)
    #: the LP optimum's grid carbon slot by slot (``highs-lp`` only; sums to ``bound_carbon_g``): where the
    #: bound imports, to set against a run's own per-slot carbon (``benchmarks.policies --windows gap``)
    carbon_g_by_slot: tuple[float, ...] | None = None

    def ratio(self, carbon_g: float) -> float | None:
        """``carbon / bound`` (None when there is no positive bound)."""
        if not math.isfinite(self.bound_carbon_g) or self.bound_carbon_g <= 0:
            return None
        return float(carbon_g) / self.bound_carbon_g

    def work_ratio(self, carbon_g: float) -> float | None:
        """``(carbon - idle) / (bound - idle)``: the ratio on the carbon the work adds over the idle site
        (the idle site's share is the same in both and dilutes :meth:`ratio`)."""
        denom = self.bound_carbon_g - self.idle_carbon_g
        if not math.isfinite(denom) or denom <= 1e-9:
            return None
        return (float(carbon_g) - self.idle_carbon_g) / denom

    def as_dict(self) -> dict[str, Any]:
        return {
            "bound_carbon_kg": self.bound_carbon_g / 1000.0 if math.isfinite(self.bound_carbon_g) else None,
            "status": self.status,
            "method": self.method,
            "n_jobs": self.n_jobs,
            "n_rows": self.n_rows,
            "n_slots": self.n_slots,
            "release_bucket_slots": self.release_bucket_slots,
            "on_time_jobs": self.on_time_jobs,
            "solve_s": self.solve_s,
            "message": self.message,
            "idle_carbon_kg": self.idle_carbon_g / 1000.0,
        }


def work_of_run(records: Mapping[str, Any], end_s: float) -> list[WorkItem]:
    """The work a run did, per job, from the control loop's records (``JobRecord``: state, work_done_s,
    end_s, slots, run_fractions). Jobs with no work are left out; a finished job counts its whole duration;
    inference counts the slots it ran whole (what it drew power for: a real-time executor can serve it in
    fewer slots than its duration, and the bound must not ask for more)."""
    out: list[WorkItem] = []
    for rec in records.values():
        job: Job = rec.job
        if job.must_run:
            whole = tuple(t for t, f in zip(rec.slots, rec.run_fractions) if f >= 1.0 - 1e-9)
            if whole:
                out.append(WorkItem(job, min(float(rec.work_done_s), float(job.duration_s)), False, whole))
            continue
        done = rec.state == "finished"
        work = float(job.duration_s) if done else min(float(rec.work_done_s), float(job.duration_s))
        if work <= 0:
            continue
        on_time = bool(
            done and job.deadline_s is not None and not job.must_run and job.deadline_s <= end_s
            and rec.end_s is not None and rec.end_s <= job.deadline_s + 1e-6
        )
        out.append(WorkItem(job, work, on_time))
    return out


def _curves(site: Site) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    k = max(len(p.speed_curve) for p in site.pools)
    cf = np.ones((len(site.pools), k))
    cs = np.ones((len(site.pools), k))
    for i, p in enumerate(site.pools):
        pts = np.asarray(p.speed_curve, dtype=np.float64)
        cf[i, : len(pts)], cs[i, : len(pts)] = pts[:, 0], pts[:, 1]
        cf[i, len(pts):], cs[i, len(pts):] = pts[-1, 0], pts[-1, 1]
    return cf, cs


@dataclass(frozen=True, slots=True)
class _Rows:
    gpus: NDArray[np.int64]
    remaining_s: NDArray[np.float64]
    release: NDArray[np.int64]
    deadline: NDArray[np.int64]
    eligible: NDArray[np.bool_]
    must_run: NDArray[np.bool_]
    on_time: NDArray[np.bool_]


def _rows(site: Site, items: Sequence[WorkItem], n_slots: int, bucket: int, merge: bool) -> _Rows:
    """Problem rows from work items: per row GPUs, work, release, deadline, pools (merged by key when
    ``merge``; training releases rounded down and deadlines up to ``bucket`` slots)."""
    slot_s = float(site.slot_s)
    n_p = len(site.pools)
    groups: dict[tuple[Any, ...], list[Any]] = {}  # key -> [sum gpus, sum gpus * work, release, ...]
    order: list[tuple[Any, ...]] = []
    for k, it in enumerate(items):
        job = it.job
        rel = min(int(math.floor(job.submit_s / slot_s + 1e-9)), n_slots - 1)
        el = tuple(eligible_pools(site, job))
        if not el:
            continue
        if job.must_run:
            if it.slots is not None:
                for s0, n_run in _runs_of(it.slots, n_slots):
                    mkey: tuple[Any, ...] = ("m", s0, n_run, el) if merge else ("m", k, s0)
                    g = groups.get(mkey)
                    if g is None:
                        g = groups[mkey] = [0.0, 0.0, s0, NO_DEADLINE, el, True, False, n_run * slot_s]
                        order.append(mkey)
                    g[0] += job.gpus
                continue
            n_must = max(1, math.ceil(it.work_s / slot_s - 1e-9))
            key: tuple[Any, ...] = ("m", rel, n_must, el) if merge else ("m", k)
            dl = NO_DEADLINE
        else:
            rel = (rel // bucket) * bucket
            if it.on_time and it.job.deadline_s is not None:
                dl = int(math.ceil(it.job.deadline_s / slot_s - 1e-9))
                dl = min(-(-dl // bucket) * bucket, n_slots)
            else:
                dl = NO_DEADLINE
            key = ("t", rel, dl, el) if merge else ("t", k)
        g = groups.get(key)
        if g is None:
            g = groups[key] = [0.0, 0.0, rel, dl, el, job.must_run, it.on_time and dl != NO_DEADLINE, it.work_s]
            order.append(key)
        g[0] += job.gpus
        g[1] += job.gpus * it.work_s
    J = len(order)
    gpus = np.zeros(J, dtype=np.int64)
    rem = np.zeros(J)
    rel_a = np.zeros(J, dtype=np.int64)
    dl_a = np.full(J, NO_DEADLINE, dtype=np.int64)
    elig = np.zeros((J, n_p), dtype=bool)
    must = np.zeros(J, dtype=bool)
    on_time = np.zeros(J, dtype=bool)
    for i, key in enumerate(order):
        g_sum, gw, rel, dl, el, m, ot, w = groups[key]
        gpus[i] = int(g_sum)
        rem[i] = w if m else gw / g_sum  # must-run members share one window: the work is the window's
        rel_a[i], dl_a[i], must[i], on_time[i] = rel, dl, m, ot
        elig[i, list(el)] = True
    return _Rows(gpus, rem, rel_a, dl_a, elig, must, on_time)


def _runs_of(slots: Sequence[int], n_slots: int) -> list[tuple[int, int]]:
    """Contiguous runs ``(first slot, length)`` of sorted slots inside ``[0, n_slots)``."""
    out: list[tuple[int, int]] = []
    for t in sorted(set(int(x) for x in slots if 0 <= int(x) < n_slots)):
        if out and out[-1][0] + out[-1][1] == t:
            out[-1] = (out[-1][0], out[-1][1] + 1)
        else:
            out.append((t, 1))
    return out


def build_problem(site: Site, items: Sequence[WorkItem], energy: EnergySeries, n_slots: int, *,
                  bucket: int = 1, merge: bool = True) -> tuple[PlanProblem, NDArray[np.bool_]]:
    """The clairvoyant :class:`PlanProblem` of a run (slots ``[0, n_slots)`` of ``energy``, every pool
    healthy, no quotas, nothing running at the start) and the rows that must meet their deadline."""
    if n_slots < 1 or n_slots > energy.n_slots:
        raise ValueError(f"n_slots={n_slots}: must be in 1..{energy.n_slots} (the energy series length)")
    if bucket < 1:
        raise ValueError(f"bucket={bucket}: must be >= 1 slot")
    e = energy.window(0, n_slots)
    r = _rows(site, items, n_slots, bucket, merge)
    J = r.gpus.size
    cf, cs = _curves(site)
    pools = site.pools
    pb = PlanProblem(
        slot_s=float(site.slot_s), pue=float(site.pue),
        wind_w=np.asarray(e.wind_w, dtype=np.float64),
        carbon_g_per_kwh=np.asarray(e.carbon_g_per_kwh, dtype=np.float64),
        grid_cap_w=np.asarray(e.grid_cap_w, dtype=np.float64),
        site_max_w=np.asarray(e.site_max_w, dtype=np.float64),
        pool_gpus=np.repeat(np.array([p.gpus for p in pools], dtype=np.int64)[:, None], n_slots, axis=1),
        tdp_w=np.array([p.tdp_w for p in pools], dtype=np.float64),
        idle_w=np.array([p.idle_w for p in pools], dtype=np.float64),
        host_w_per_gpu=np.array([p.host_w_per_gpu for p in pools], dtype=np.float64),
        min_power_fraction=np.array([p.min_power_fraction for p in pools], dtype=np.float64),
        curve_f=cf, curve_s=cs,
        gpus=r.gpus, remaining_s=r.remaining_s, release=r.release, deadline=r.deadline,
        weight=np.zeros(J), eligible=r.eligible, must_run=r.must_run, preemptible=np.ones(J, dtype=bool),
        running_pool=np.full(J, -1, dtype=np.int64), preempt_loss_s=np.zeros(J),
        tenant=np.zeros(J, dtype=np.int64), tenant_quota_gpus=np.array([np.inf]),
    )
    return pb, r.on_time


def idle_carbon_g(site: Site, energy: EnergySeries, n_slots: int) -> float:
    """Grid carbon of the site with every GPU healthy and idle over slots ``[0, n_slots)`` (DESIGN section 2
    power model: idle and host watts per GPU, times PUE; import = facility - wind where positive)."""
    from kernels.power import facility_timeline

    e = energy.window(0, n_slots)
    n_p = len(site.pools)
    healthy = np.repeat(np.array([p.gpus for p in site.pools], dtype=np.float64)[:, None], n_slots, axis=1)
    zero = np.zeros((n_p, n_slots))
    tl = facility_timeline(float(site.pue), float(site.slot_s), zero, zero, healthy,
                           np.array([p.idle_w for p in site.pools], dtype=np.float64),
                           np.array([p.host_w_per_gpu for p in site.pools], dtype=np.float64),
                           np.asarray(e.wind_w, dtype=np.float64), np.asarray(e.carbon_g_per_kwh, dtype=np.float64))
    return float(np.sum(tl["carbon_g"]))


def lp_columns(pb: PlanProblem) -> int:
    """Estimated x columns of the LP (eligible pools x slots from release x power levels)."""
    levels = int(np.asarray(pb.curve_f).shape[1])
    n_el = np.asarray(pb.eligible).sum(axis=1)
    window = pb.n_slots - np.asarray(pb.release)
    must = np.asarray(pb.must_run)
    window = np.where(must, np.ceil(np.asarray(pb.remaining_s) / pb.slot_s), window)
    return int((n_el * window).sum() * levels)


def _highs_available() -> bool:
    try:
        import benchmarks.reference  # noqa: F401
    except ImportError:
        return False
    return True


def bound(site: Site, items: Sequence[WorkItem], energy: EnergySeries, n_slots: int, *, solver: str = "auto",
          max_lp_vars: int = MAX_LP_VARS, time_limit_s: float | None = 300.0) -> ClairvoyantBound:
    """The clairvoyant lower bound on the carbon of doing ``items`` against ``energy`` (module docstring)."""
    got = _bound(site, items, energy, n_slots, solver=solver, max_lp_vars=max_lp_vars, time_limit_s=time_limit_s)
    return replace(got, idle_carbon_g=idle_carbon_g(site, energy, n_slots))


def _bound(site: Site, items: Sequence[WorkItem], energy: EnergySeries, n_slots: int, *, solver: str,
           max_lp_vars: int, time_limit_s: float | None) -> ClairvoyantBound:
    if solver not in SOLVERS:
        raise ValueError(f"solver={solver!r}: allowed {SOLVERS}")
    t0 = time.perf_counter()
    n_jobs = len(items)
    n_on_time = sum(1 for it in items if it.on_time)
    if not items:
        return ClairvoyantBound(0.0, "empty", "none", 0, 0, n_slots, 1, 0, 0.0, "no work in the run")
    use_highs = solver == "highs-lp" or (solver == "auto" and _highs_available())
    if solver == "highs-lp" and not _highs_available():
        raise ValueError("solver='highs-lp' needs scipy (the 'reference' extra); use 'auto' or 'kernels-dual'")
    if use_highs:
        from benchmarks.reference import solve_lp

        # one row per job where it fits (the tightest); else merged rows, then coarser buckets
        bucket = 1
        pb, on_time = build_problem(site, items, energy, n_slots, merge=False)
        if lp_columns(pb) > max_lp_vars:
            pb, on_time = build_problem(site, items, energy, n_slots, bucket=bucket)
        while lp_columns(pb) > max_lp_vars and bucket < n_slots:
            bucket *= 2
            pb, on_time = build_problem(site, items, energy, n_slots, bucket=bucket)
        ref = solve_lp(pb, time_limit_s, carbon_only=True, require_finished=~np.asarray(pb.must_run),
                       require_on_time=on_time)
        if ref.status == "optimal" or solver == "highs-lp":
            # a time-limited LP has no certified value: only the optimum is a bound
            value = ref.carbon_g if ref.status == "optimal" else math.nan
            by_slot = ref.extras.get("carbon_g_by_slot") if ref.status == "optimal" else None
            return ClairvoyantBound(float(value), ref.status, "highs-lp", n_jobs, pb.n_jobs, n_slots, bucket,
                                    n_on_time, time.perf_counter() - t0,
                                    "" if ref.status == "optimal" else ref.message,
                                    carbon_g_by_slot=None if by_slot is None else tuple(float(v) for v in by_slot))
        log.info("clairvoyant LP ended %s (%s): falling back to the optimiser's dual bound", ref.status, ref.message)
    import kernels

    pb, _ = build_problem(site, items, energy, n_slots, merge=False)
    J = pb.n_jobs
    if J * n_slots > MAX_DUAL_CELLS:
        return ClairvoyantBound(math.nan, "skipped", "kernels-dual", n_jobs, J, n_slots, 1, 0,
                                time.perf_counter() - t0,
                                f"{J} jobs x {n_slots} slots is over the {MAX_DUAL_CELLS:,}-cell limit of the "
                                "dual bound (memory); run benchmarks/policy_study.py for a bound of a long run")
    # the optimiser plans the work (deadlines kept, a weight that asks for all of it), then its certified
    # dual bound is taken on the carbon of doing exactly the run's work (kernels.carbon_bound)
    slot_h = pb.slot_s / 3600.0
    top = float(np.max(pb.carbon_g_per_kwh)) * float(np.max(pb.tdp_w)) * pb.pue / 1000.0 * slot_h
    pb_w = replace(pb, weight=np.full(J, 10.0 * top / pb.slot_s + 1.0))
    res = kernels.plan(pb_w)
    work = np.asarray(pb.remaining_s, dtype=np.float64)
    cb = kernels.carbon_bound(pb_w, replace(res, work_done_s=work))
    raw = cb.get("lower_bound_carbon_raw_g")
    value = max(float(raw), 0.0) if raw is not None else math.nan
    status = "optimal" if raw is not None else "error"
    return ClairvoyantBound(value, status, "kernels-dual", n_jobs, J, n_slots, 1, 0, time.perf_counter() - t0,
                            "Lagrangian dual bound, deadlines relaxed")


def bound_of_run(res: Any, *, solver: str = "auto", max_lp_vars: int = MAX_LP_VARS,
                 time_limit_s: float | None = 300.0) -> ClairvoyantBound:
    """:func:`bound` for a :class:`scheduler.control.SimulationResult` (its records, energy and length)."""
    end_s = res.n_slots * float(res.site.slot_s)
    items = work_of_run(res.loop.records, end_s)
    return bound(res.site, items, res.energy, res.n_slots, solver=solver, max_lp_vars=max_lp_vars,
                 time_limit_s=time_limit_s)


def run_carbon_g(res: Any) -> float:
    """The grid carbon a run emitted (sum of its tick reports)."""
    return float(sum(r.carbon_g for r in res.reports))
