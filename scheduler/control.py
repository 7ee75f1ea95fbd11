"""The control loop shared by the simulated and the Ray executor (DESIGN section 4).

One tick, for the current slot, is a pipeline of steps each callable alone in a test:

1. :meth:`ControlLoop.collect` — take the executor's events since the last tick (failures, repairs).
2. :meth:`ControlLoop.release` — jobs whose submit time has come join the queue; inference demand whose
   window has passed unserved is expired.
3. :meth:`ControlLoop.snapshot` — an immutable :class:`~scheduler.policies.base.Snapshot`.
4. :meth:`ControlLoop.decide` — ``policy.decide(snapshot)`` (the policy sees the forecast only).
5. :func:`enforce_caps` — the FAST PATH: the facility power of the decided set against the *actual* wind
   and caps of this slot; lower power fractions first (to each pool's minimum, lowest priority first),
   then drop new starts and preempt preemptible work, lowest priority first. Inference (must-run) and
   running non-preemptible jobs are never touched; if they alone break a cap it is recorded as a violation.
6. :meth:`ControlLoop.apply` — preempt running jobs absent from the decisions, set power fractions, start
   new ones (``start`` may return None: the job stays queued).
7. :meth:`ControlLoop.advance` — let the slot pass (``executor.step``), account energy and carbon per slot
   and per job, and publish a :class:`TickReport` to the observers.

Energy accounting is exact for jobs that finish inside a slot: each job's run time in the slot is kept as
``run_fraction`` so that ``facility_w`` in the timeline is the slot's mean power. Caps are checked against
the slot's *peak* power (at its start, when every job of the slot is running), which bounds the mean.
Per-job attribution: a job's facility power is ``pue * gpus * (f * tdp_w + host_w_per_gpu)``; it is charged
that share of the slot's grid carbon (the rest is idle and host power of idle GPUs).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kernels.power import facility_timeline
from scheduler.energy import EnergySeries
from scheduler.errors import InputError
from scheduler.executors.base import Clock, Executor, ExecutorEvent
from scheduler.jobs import Job, check_jobs_fit, pool_matches
from scheduler.models import Site
from scheduler.policies.base import Assignment, Decisions, JobState, Policy, Snapshot
from scheduler.policies.capacity import SitePower

log = logging.getLogger(__name__)

_TOL_W = 1e-6


# ------------------------------------------------------------------------------------------ values


@dataclass(slots=True)
class JobRecord:
    """The control loop's bookkeeping for one job (mutable state, owned by the loop)."""

    job: Job
    state: str = "pending"  # pending | queued | running | done | expired | cancelled
    work_done_s: float = 0.0
    checkpoint_work_s: float = 0.0
    pool: str | None = None
    power_fraction: float = 1.0
    nodes: tuple[int, ...] = ()
    first_start_s: float | None = None
    end_s: float | None = None
    preemptions: int = 0
    failures: int = 0
    lost_work_s: float = 0.0
    energy_j: float = 0.0
    carbon_g: float = 0.0
    slots: list[int] = field(default_factory=list)
    fractions: list[float] = field(default_factory=list)
    run_fractions: list[float] = field(default_factory=list)
    pools_by_slot: list[str] = field(default_factory=list)
    _js: JobState | None = None

    def job_state(self) -> JobState:
        js = self._js
        if js is None:
            js = JobState(
                job=self.job,
                state="running" if self.state == "running" else "queued",
                work_done_s=self.work_done_s,
                checkpoint_work_s=self.checkpoint_work_s,
                pool=self.pool,
                power_fraction=self.power_fraction,
                nodes=self.nodes,
            )
            self._js = js
        return js

    def touch(self) -> None:
        self._js = None


@dataclass(frozen=True, slots=True)
class FastPathResult:
    """What the fast path did to the policy's decisions for this slot."""

    run: Mapping[str, Assignment]
    lowered: tuple[tuple[str, float, float], ...]  # (job_id, from, to)
    dropped: tuple[str, ...]  # new starts not made or running jobs preempted to fit
    facility_w: float  # predicted peak facility power after the fast path
    budget_w: float  # min(site_max_w, grid_cap_w + wind_w) of this slot, actual
    violation_w: float  # > 0 when must-run / non-preemptible work alone breaks a cap


@dataclass(frozen=True, slots=True)
class ApplyResult:
    starts: tuple[str, ...]
    preempted: tuple[tuple[str, float], ...]  # (job_id, lost_s)
    power_changed: tuple[str, ...]
    start_failed: tuple[str, ...]  # the gang did not fit now (fragmentation): stays queued


@dataclass(frozen=True, slots=True)
class TickReport:
    """One tick, for observers (metrics, the service) and the simulation report. Powers are the slot mean
    (``facility_peak_w`` is the start-of-slot peak the caps are checked against)."""

    slot: int
    time_s: float
    slot_s: float
    facility_w: float
    facility_peak_w: float
    grid_import_w: float
    grid_import_peak_w: float
    wind_w: float
    grid_cap_w: float
    site_max_w: float
    carbon_g_per_kwh: float
    carbon_g: float
    energy_wind_j: float
    energy_grid_j: float
    busy_gpus: Mapping[str, float]
    healthy_gpus: Mapping[str, int]
    queued: int
    running: int
    starts: tuple[str, ...]
    preemptions: tuple[str, ...]
    finishes: tuple[str, ...]
    failures: tuple[str, ...]
    lost_work_s: float
    lowered: tuple[tuple[str, float, float], ...]
    dropped: tuple[str, ...]
    start_failed: tuple[str, ...]
    refused: tuple[str, ...]  # decisions naming unknown / inactive jobs or ineligible pools
    violations: tuple[str, ...]
    inference_demand_gpus: int
    inference_served_gpus: int
    decide_s: float
    plan: Mapping[str, Any]


def plan_diagnostics(plan: Any) -> dict[str, Any]:
    """Small scalar diagnostics from ``Decisions.plan`` (a kernels PlanResult or any object / dict)."""
    if plan is None:
        return {}
    out: dict[str, Any] = {}
    for key in ("status", "gap", "iterations", "objective", "lower_bound", "carbon_g_total", "unfinished_gpu_s"):
        v = plan.get(key) if isinstance(plan, Mapping) else getattr(plan, key, None)
        if isinstance(v, (str, int, float, np.integer, np.floating)):
            out[key] = v.item() if isinstance(v, (np.integer, np.floating)) else v
    return out


# --------------------------------------------------------------------------------------- fast path


def enforce_caps(
    power: SitePower,
    run: Mapping[str, Assignment],
    jobs: Mapping[str, Job],
    running: Mapping[str, str],
    healthy_gpus: Mapping[str, int],
    wind_w: float,
    grid_cap_w: float,
    site_max_w: float,
) -> FastPathResult:
    """Make the decided set fit this slot's ACTUAL budget ``min(site_max_w, grid_cap_w + wind_w)``.

    ``run``: the decided jobs (pool, fraction); ``jobs``: job values by id; ``running``: job id -> pool of
    jobs running now. Steps: (1) lower fractions of non-inference jobs, lowest priority first, down to the
    pool minimum; (2) drop new starts and preempt preemptible running work, lowest priority first (at equal
    priority a new start goes before running work, later submissions first); (3) raise fractions back,
    highest priority first, where the freed headroom allows. Pure: no executor calls.
    """
    budget = float(SitePower.budget_w(wind_w, grid_cap_w, site_max_w))
    healthy = power.healthy_array(healthy_gpus)
    fr: dict[str, float] = {}
    pidx: dict[str, int] = {}
    load = power.base_w(healthy)
    for jid, a in run.items():
        p = power.index[a.pool]
        f = min(max(float(a.power_fraction), float(power.min_power_fraction[p])), 1.0)
        fr[jid], pidx[jid] = f, p
        load += jobs[jid].gpus * power.gpu_w(p, f)
    lowered: list[tuple[str, float, float]] = []
    dropped: list[str] = []
    if load > budget + _TOL_W:
        # (1) lower power fractions, lowest priority first
        order = sorted(
            (jid for jid in fr if not jobs[jid].must_run),
            key=lambda j: (jobs[j].priority, j in running, -jobs[j].submit_s),
        )
        for jid in order:
            if load <= budget + _TOL_W:
                break
            p, g = pidx[jid], jobs[jid].gpus
            fmin = float(power.min_power_fraction[p])
            per_f = g * (power.gpu_w(p, 1.0) - power.gpu_w(p, 0.0))
            can = (fr[jid] - fmin) * per_f
            if can <= 0:
                continue
            cut = min(can, load - budget)
            new_f = fr[jid] - cut / per_f
            load -= cut
            lowered.append((jid, fr[jid], new_f))
            fr[jid] = new_f
        # (2) drop or preempt, lowest priority first
        if load > budget + _TOL_W:
            order = sorted(
                (
                    jid
                    for jid in fr
                    if not jobs[jid].must_run and (jid not in running or jobs[jid].preemptible)
                ),
                key=lambda j: (jobs[j].priority, j in running, -jobs[j].submit_s),
            )
            for jid in order:
                if load <= budget + _TOL_W:
                    break
                load -= jobs[jid].gpus * power.gpu_w(pidx[jid], fr[jid])
                dropped.append(jid)
                del fr[jid]
            # (3) give headroom back, highest priority first
            if load < budget - _TOL_W:
                low = {j: f0 for j, f0, _ in lowered}
                for jid in sorted((j for j in fr if j in low), key=lambda j: (-jobs[j].priority, jobs[j].submit_s)):
                    p, g = pidx[jid], jobs[jid].gpus
                    per_f = g * (power.gpu_w(p, 1.0) - power.gpu_w(p, 0.0))
                    room = budget - load
                    if room <= _TOL_W:
                        break
                    up = min(low[jid] - fr[jid], room / per_f)
                    fr[jid] += up
                    load += up * per_f
        lowered = [(j, f0, fr[j]) for j, f0, _ in lowered if j in fr and fr[j] < f0 - 1e-12]
    new_run = {jid: Assignment(run[jid].pool, fr[jid]) for jid in run if jid in fr}
    violation = max(load - budget, 0.0) if load > budget + _TOL_W else 0.0
    return FastPathResult(
        run=new_run,
        lowered=tuple(lowered),
        dropped=tuple(dropped),
        facility_w=load,
        budget_w=budget,
        violation_w=violation,
    )


# ---------------------------------------------------------------------------------------- the loop

TickObserver = Callable[[TickReport], None]


class ControlLoop:
    """snapshot -> decide -> fast path -> apply -> advance, over any :class:`Executor`.

    ``clock`` gives seconds since the run's epoch. ``horizon_slots`` is only used by callers that build
    forecasts (the loop takes whatever forecast a tick is given). ``timer`` measures the policy's compute
    time for reports (``time.perf_counter``; never used for decisions).
    """

    def __init__(
        self,
        site: Site,
        executor: Executor,
        policy: Policy,
        clock: Clock,
        *,
        jobs: Iterable[Job] = (),
        start_slot: int = 0,
        observers: Iterable[TickObserver] = (),
        tenant_info: Mapping[str, Any] | None = None,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.site = site
        self.executor = executor
        self.policy = policy
        self.clock = clock
        self.power = SitePower(site)
        self.slot = int(start_slot)
        self.slot_s = float(site.slot_s)
        self.observers: list[TickObserver] = list(observers)
        self.tenant_info: Mapping[str, Any] = tenant_info or {}
        self._timer = timer
        self.records: dict[str, JobRecord] = {}
        self._pending: list[JobRecord] = []  # not yet submitted, sorted by submit_s descending (pop from end)
        self._active: dict[str, JobRecord] = {}  # queued or running, in release order
        self._running: dict[str, JobRecord] = {}
        self._queued_inference: dict[str, JobRecord] = {}  # released must-run jobs not yet started
        self.reports: list[TickReport] = []
        self.violations: list[str] = []
        self.keep_reports = True
        self.submit(jobs)

    # --------------------------------------------------------------------------------- job intake

    def submit(self, jobs: Iterable[Job]) -> None:
        """Add jobs (they join the queue at their ``submit_s``). Duplicate ids and unfit jobs are refused
        before anything is added."""
        new = list(jobs)
        seen: set[str] = set()
        for j in new:
            if j.job_id in self.records or j.job_id in seen:
                raise InputError(f"job id {j.job_id!r} is submitted twice; job ids must be unique")
            seen.add(j.job_id)
        check_jobs_fit(self.site, new, "jobs")
        for j in new:
            rec = JobRecord(job=j)
            self.records[j.job_id] = rec
            self._pending.append(rec)
        if new:
            self._pending.sort(key=lambda r: (r.job.submit_s, r.job.job_id), reverse=True)

    def cancel(self, job_id: str) -> None:
        rec = self.records.get(job_id)
        if rec is None:
            raise InputError(f"unknown job {job_id!r}")
        if rec.state == "running":
            self.executor.preempt(job_id, "cancelled")
            self._running.pop(job_id, None)
        if rec.state in ("running", "queued"):
            self._active.pop(job_id, None)
        if rec.state == "pending":
            self._pending.remove(rec)
        if rec.state in ("pending", "queued", "running"):
            rec.state = "cancelled"
            rec.end_s = self.clock.now_s()
            rec.touch()

    # ------------------------------------------------------------------------------ tick steps

    def collect(self) -> list[str]:
        """Ingest the executor's events since the last step (``step(0)``); returns ids of failed jobs."""
        return self.ingest(self.executor.step(0.0))[1]

    def ingest(self, events: Sequence[ExecutorEvent]) -> tuple[list[str], list[str]]:
        """Apply executor events to the bookkeeping. Returns (finished ids, failed ids).

        ``preempted`` events are informational here: :meth:`apply` accounts preemptions it asks for."""
        finished: list[str] = []
        failed: list[str] = []
        for ev in events:
            if ev.job_id is None or ev.job_id not in self._running:
                continue
            rec = self._running[ev.job_id]
            if ev.kind == "finished":
                rec.state = "done"
                rec.work_done_s = rec.job.duration_s
                rec.checkpoint_work_s = rec.job.duration_s
                rec.end_s = ev.time_s
                del self._running[ev.job_id]
                del self._active[ev.job_id]
                finished.append(ev.job_id)
            elif ev.kind == "failed":
                rec.state = "queued"
                rec.failures += 1
                rec.lost_work_s += ev.lost_s
                rec.work_done_s = max(rec.work_done_s - ev.lost_s, 0.0)
                rec.checkpoint_work_s = rec.work_done_s
                rec.nodes = ()
                del self._running[ev.job_id]
                failed.append(ev.job_id)
            rec.touch()
        return finished, failed

    def release(self) -> list[str]:
        """Queue jobs whose submit time has come; expire inference whose demand window has passed.
        Returns the ids of expired (unserved) inference jobs."""
        now = self.clock.now_s()
        while self._pending and self._pending[-1].job.submit_s <= now + 1e-9:
            rec = self._pending.pop()
            rec.state = "queued"
            self._active[rec.job.job_id] = rec
            if rec.job.must_run:
                self._queued_inference[rec.job.job_id] = rec
        expired = []
        for jid, rec in list(self._queued_inference.items()):
            j = rec.job
            if rec.state != "queued" or rec.first_start_s is not None:
                del self._queued_inference[jid]  # started (or cancelled): no longer waiting
            elif now >= j.submit_s + j.duration_s - 1e-9:
                rec.state = "expired"
                rec.end_s = now
                del self._active[jid]
                del self._queued_inference[jid]
                expired.append(jid)
        return expired

    def snapshot(self, forecast: EnergySeries) -> Snapshot:
        return Snapshot(
            now_s=self.clock.now_s(),
            slot=self.slot,
            site=self.site,
            jobs=tuple(r.job_state() for r in self._active.values()),
            healthy_gpus=dict(self.executor.healthy_gpus()),
            forecast=forecast,
            tenant_info=self.tenant_info,
        )

    def decide(self, snapshot: Snapshot) -> tuple[Decisions, float]:
        t0 = self._timer()
        d = self.policy.decide(snapshot)
        return d, self._timer() - t0

    def sanitize(self, run: Mapping[str, Assignment]) -> tuple[dict[str, Assignment], list[str]]:
        """Drop decisions for unknown / inactive jobs and ineligible pools; keep every running must-run or
        non-preemptible job (they cannot be stopped). Returns (run, refused ids)."""
        out: dict[str, Assignment] = {}
        refused: list[str] = []
        for jid, a in run.items():
            rec = self._active.get(jid)
            if rec is None or a.pool not in self.power.index:
                refused.append(jid)
                continue
            if not pool_matches(self.site.pool(a.pool), rec.job) or self.site.pool(a.pool).gpus < rec.job.gpus:
                log.warning("policy placed job %s in ineligible pool %s: refused", jid, a.pool)
                refused.append(jid)
                continue
            if rec.state == "running" and a.pool != rec.pool and not rec.job.preemptible:
                out[jid] = Assignment(rec.pool or a.pool, a.power_fraction)  # cannot move: stays
                continue
            out[jid] = a
        for jid, rec in self._running.items():
            if jid not in out and (rec.job.must_run or not rec.job.preemptible):
                out[jid] = Assignment(rec.pool or self.power.names[0], rec.power_fraction)
        return out, refused

    def enforce(self, run: Mapping[str, Assignment], actual: EnergySeries) -> FastPathResult:
        return enforce_caps(
            self.power,
            run,
            {jid: self.records[jid].job for jid in run},
            {jid: r.pool or "" for jid, r in self._running.items()},
            self.executor.healthy_gpus(),
            float(actual.wind_w[0]),
            float(actual.grid_cap_w[0]),
            float(actual.site_max_w[0]),
        )

    def apply(self, run: Mapping[str, Assignment]) -> ApplyResult:
        """Preempt running jobs absent from ``run`` (or moved pool), set power fractions, start new ones."""
        now = self.clock.now_s()
        preempted: list[tuple[str, float]] = []
        for jid in list(self._running):
            a = run.get(jid)
            rec = self._running[jid]
            if a is not None and a.pool == rec.pool:
                continue
            lost = self.executor.preempt(jid, "policy" if a is None else f"move to {a.pool}")
            rec.state = "queued"
            rec.preemptions += 1
            rec.lost_work_s += lost
            rec.work_done_s = max(rec.work_done_s - lost, 0.0)
            rec.checkpoint_work_s = rec.work_done_s
            rec.nodes = ()
            rec.touch()
            del self._running[jid]
            preempted.append((jid, lost))
        changed: list[str] = []
        starts: list[str] = []
        failed: list[str] = []
        for jid, a in run.items():
            rec = self._active[jid]
            if rec.state == "running":
                if abs(a.power_fraction - rec.power_fraction) > 1e-12:
                    self.executor.set_power_fraction(jid, a.power_fraction)
                    rec.power_fraction = a.power_fraction
                    rec.touch()
                    changed.append(jid)
                continue
            placement = self.executor.start(rec.job, a.pool, a.power_fraction, rec.work_done_s)
            if placement is None and rec.job.must_run:
                # inference is served where it fits: the policy planned at pool level, nodes may be fragmented
                for p in self.site.pools:
                    if p.name != a.pool and p.gpus >= rec.job.gpus and pool_matches(p, rec.job):
                        placement = self.executor.start(rec.job, p.name, 1.0, rec.work_done_s)
                        if placement is not None:
                            a = Assignment(p.name, 1.0)
                            break
            if placement is None:
                failed.append(jid)
                continue
            rec.state = "running"
            rec.pool = a.pool
            rec.power_fraction = a.power_fraction
            rec.nodes = placement.nodes
            if rec.first_start_s is None:
                rec.first_start_s = now
            rec.touch()
            self._running[jid] = rec
            starts.append(jid)
        return ApplyResult(tuple(starts), tuple(preempted), tuple(changed), tuple(failed))

    def advance(self, actual: EnergySeries) -> tuple[list[str], dict[str, Any]]:
        """Let one slot pass; account the slot. Returns (finished ids, slot accounting)."""
        t0 = self.clock.now_s()
        dt = self.slot_s
        healthy = self.executor.healthy_gpus()
        healthy_a = self.power.healthy_array(healthy)
        at_start = list(self._running.values())
        n_p = len(self.power.names)
        peak_active = np.zeros(n_p)
        peak_busy = np.zeros(n_p)
        for rec in at_start:
            p = self.power.index[rec.pool or ""]
            peak_active[p] += rec.job.gpus * rec.power_fraction * self.power.tdp_w[p]
            peak_busy[p] += rec.job.gpus
        peak_w = self.power.facility_w(peak_active, peak_busy, healthy_a)
        finished, _ = self.ingest(self.executor.step(dt))
        end_of: dict[str, float] = {jid: self.records[jid].end_s or t0 + dt for jid in finished}
        active = np.zeros(n_p)
        busy = np.zeros(n_p)
        fracs: list[tuple[JobRecord, int, float]] = []
        for rec in at_start:
            p = self.power.index[rec.pool or ""]
            frac = 1.0
            if rec.job.job_id in end_of:
                frac = min(max((end_of[rec.job.job_id] - t0) / dt, 0.0), 1.0)
            active[p] += rec.job.gpus * rec.power_fraction * self.power.tdp_w[p] * frac
            busy[p] += rec.job.gpus * frac
            fracs.append((rec, p, frac))
        wind = float(actual.wind_w[0])
        ci = float(actual.carbon_g_per_kwh[0])
        tl = facility_timeline(
            self.power.pue,
            dt,
            active[:, None],
            busy[:, None],
            healthy_a[:, None],
            self.power.idle_w,
            self.power.host_w_per_gpu,
            np.array([wind]),
            np.array([ci]),
        )
        fac = float(tl["facility_w"][0])
        imp = float(tl["grid_import_w"][0])
        carbon = float(tl["carbon_g"][0])
        for rec, p, frac in fracs:
            job_w = self.power.pue * rec.job.gpus * (rec.power_fraction * self.power.tdp_w[p] + self.power.host_w_per_gpu[p])
            rec.energy_j += job_w * dt * frac
            if fac > 0:
                rec.carbon_g += carbon * (job_w * frac) / fac
            rec.slots.append(self.slot)
            rec.fractions.append(rec.power_fraction)
            rec.run_fractions.append(frac)
            rec.pools_by_slot.append(rec.pool or "")
        # progress of jobs still running, from the executor's progress channel
        if self._running:
            info = self.executor.running()
            for jid, rec in self._running.items():
                ri = info.get(jid)
                if ri is not None:
                    rec.work_done_s = ri.work_done_s
                    rec.checkpoint_work_s = ri.checkpoint_work_s
                    rec.touch()
        acc = {
            "healthy": healthy,
            "busy": {n: float(busy[i]) for i, n in enumerate(self.power.names)},
            "facility_w": fac,
            "facility_peak_w": peak_w,
            "grid_import_w": imp,
            "grid_import_peak_w": max(peak_w - wind, 0.0),
            "carbon_g": carbon,
            "energy_wind_j": min(fac, wind) * dt,
            "energy_grid_j": imp * dt,
        }
        return finished, acc

    # -------------------------------------------------------------------------------- one tick

    def tick(self, actual: EnergySeries, forecast: EnergySeries) -> TickReport:
        """One slot: ``actual`` holds this slot's real values at index 0 (wind, caps, carbon);
        ``forecast`` starts at this slot and spans the planning horizon."""
        if actual.slot_s != self.site.slot_s:
            raise InputError(f"energy slot_s {actual.slot_s} differs from the site's slot ({self.site.slot_s} s)")
        now = self.clock.now_s()
        failed = self.collect()
        self.release()
        snap = self.snapshot(forecast)
        decisions, decide_s = self.decide(snap)
        run, refused = self.sanitize(decisions.run)
        fp = self.enforce(run, actual)
        applied = self.apply(fp.run)
        violations: list[str] = []
        inf_demand = sum(r.job.gpus for r in self._active.values() if r.job.must_run)
        inf_served = sum(r.job.gpus for r in self._running.values() if r.job.must_run)
        queued = len(self._active) - len(self._running)
        n_running = len(self._running)
        finished, acc = self.advance(actual)
        wind = float(actual.wind_w[0])
        cap = float(actual.grid_cap_w[0])
        smax = float(actual.site_max_w[0])
        tol = 1e-6 * max(1.0, smax)
        if acc["facility_peak_w"] > smax + tol:
            violations.append(f"slot {self.slot}: facility {acc['facility_peak_w']:.0f} W > site max {smax:.0f} W")
        if acc["grid_import_peak_w"] > cap + tol:
            violations.append(f"slot {self.slot}: grid import {acc['grid_import_peak_w']:.0f} W > cap {cap:.0f} W")
        for v in violations:
            log.warning("cap violation (must-run / non-preemptible work alone): %s", v)
        self.violations.extend(violations)
        report = TickReport(
            slot=self.slot,
            time_s=now,
            slot_s=self.slot_s,
            facility_w=acc["facility_w"],
            facility_peak_w=acc["facility_peak_w"],
            grid_import_w=acc["grid_import_w"],
            grid_import_peak_w=acc["grid_import_peak_w"],
            wind_w=wind,
            grid_cap_w=cap,
            site_max_w=smax,
            carbon_g_per_kwh=float(actual.carbon_g_per_kwh[0]),
            carbon_g=acc["carbon_g"],
            energy_wind_j=acc["energy_wind_j"],
            energy_grid_j=acc["energy_grid_j"],
            busy_gpus=acc["busy"],
            healthy_gpus=dict(acc["healthy"]),
            queued=queued,
            running=n_running,
            starts=applied.starts,
            preemptions=tuple(j for j, _ in applied.preempted),
            finishes=tuple(finished),
            failures=tuple(failed),
            lost_work_s=float(sum(lost for _, lost in applied.preempted)),
            lowered=fp.lowered,
            dropped=fp.dropped,
            start_failed=applied.start_failed,
            refused=tuple(refused),
            violations=tuple(violations),
            inference_demand_gpus=int(inf_demand),
            inference_served_gpus=int(inf_served),
            decide_s=float(decide_s),
            plan=plan_diagnostics(decisions.plan),
        )
        log.info(
            "tick slot=%d facility=%.0fW import=%.0fW cap=%.0fW wind=%.0fW starts=%d preempt=%d finish=%d queued=%d",
            self.slot, report.facility_w, report.grid_import_w, cap, wind, len(report.starts),
            len(report.preemptions), len(report.finishes), queued,
        )  # fmt: skip
        self.slot += 1
        if self.keep_reports:
            self.reports.append(report)
        for obs in self.observers:
            obs(report)
        return report

    # ------------------------------------------------------------------------------- accounting

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.records.values():
            out[r.state] = out.get(r.state, 0) + 1
        return out

    @property
    def running_ids(self) -> tuple[str, ...]:
        return tuple(self._running)

    @property
    def queued_ids(self) -> tuple[str, ...]:
        return tuple(j for j, r in self._active.items() if r.state == "queued")


# ----------------------------------------------------------------------------------- simulation


class Forecaster:
    """Protocol-like base: ``forecast(slot, horizon_slots) -> EnergySeries``. ``PerfectForecast`` is the
    fallback when scheduler.signals is not given one."""

    def forecast(self, slot: int, horizon_slots: int) -> EnergySeries:  # pragma: no cover - interface
        raise NotImplementedError


class PerfectForecast(Forecaster):
    def __init__(self, actual: EnergySeries) -> None:
        self.actual = actual

    def forecast(self, slot: int, horizon_slots: int) -> EnergySeries:
        return self.actual.window(slot, horizon_slots)


@dataclass(frozen=True, slots=True)
class NodeEvent:
    """A node failure or repair injected before the tick of ``slot``."""

    slot: int
    pool: str
    node: int
    kind: str = "fail"  # fail | repair


@dataclass
class SimulationResult:
    site: Site
    policy: str
    loop: ControlLoop
    energy: EnergySeries
    n_slots: int
    horizon_slots: int
    forecast: str
    wall_s: float
    reports: list[TickReport]


def run_simulation(
    site: Site,
    jobs: Sequence[Job],
    actual: EnergySeries,
    policy: Policy,
    *,
    n_slots: int | None = None,
    forecaster: Any | None = None,
    forecast_name: str = "perfect",
    horizon_slots: int = 96,
    node_events: Sequence[NodeEvent] = (),
    observers: Iterable[TickObserver] = (),
    progress: Callable[[int, int], None] | None = None,
    timer: Callable[[], float] = time.perf_counter,
) -> SimulationResult:
    """Replay ``jobs`` on ``site`` against ``actual`` energy with the simulated executor and ``policy``.

    ``forecaster.forecast(slot, horizon_slots)`` gives what the policy sees (perfect when None). Input is
    checked before anything runs: slot length, energy length, job ids, pool eligibility.
    """
    from scheduler.executors.simulated import SimulatedExecutor, VirtualClock

    if actual.slot_s != site.slot_s:
        raise InputError(
            f"energy series has slot_s={actual.slot_s} but site {site.name!r} has slot_minutes={site.slot_minutes}"
        )
    n = actual.n_slots if n_slots is None else int(n_slots)
    if n <= 0 or n > actual.n_slots:
        raise InputError(f"n_slots={n}: must be in 1..{actual.n_slots} (the energy series length)")
    if horizon_slots < 1:
        raise InputError(f"horizon_slots={horizon_slots}: must be >= 1")
    pools = {p.name: p.nodes for p in site.pools}
    for ev in node_events:
        if ev.pool not in pools or not (0 <= ev.node < pools[ev.pool]) or ev.kind not in ("fail", "repair"):
            raise InputError(f"node event {ev}: unknown pool/node or kind (pools: {pools}, kinds: fail, repair)")
    fc = forecaster if forecaster is not None else PerfectForecast(actual)
    clock = VirtualClock(0.0)
    ex = SimulatedExecutor(site, clock)
    loop = ControlLoop(site, ex, policy, clock, jobs=jobs, observers=observers, timer=timer)
    by_slot: dict[int, list[NodeEvent]] = {}
    for ev in node_events:
        by_slot.setdefault(ev.slot, []).append(ev)
    t_start = timer()
    for s in range(n):
        for ev in by_slot.get(s, ()):
            (ex.fail_node if ev.kind == "fail" else ex.repair_node)(ev.pool, ev.node)
        loop.tick(actual.window(s, 1), fc.forecast(s, horizon_slots))
        if progress is not None:
            progress(s + 1, n)
    wall = timer() - t_start
    name = getattr(policy, "name", type(policy).__name__)
    return SimulationResult(site, name, loop, actual, n, horizon_slots, forecast_name, wall, loop.reports)


def slots_for_days(site: Site, days: float) -> int:
    return int(math.ceil(days * 86400 / site.slot_s))
