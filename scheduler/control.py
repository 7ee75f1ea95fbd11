"""The control loop shared by the simulated and the Ray executor (DESIGN section 4).

One tick, for the current slot, is a pipeline of steps each callable alone in a test:

1. :meth:`ControlLoop.collect` — take the executor's events since the last tick (failures, repairs).
2. :meth:`ControlLoop.release` — jobs whose submit time has come join the queue; inference demand whose
   window has passed unserved is expired.
3. :meth:`ControlLoop.snapshot` — an immutable :class:`~scheduler.policies.base.Snapshot`.
4. :meth:`ControlLoop.decide` — ``policy.decide(snapshot)`` (the policy sees the forecast only).
4b. :meth:`ControlLoop.sanitize` / :meth:`ControlLoop.hold` — drop what the policy may not do, start every
   released inference job the policy left out (inference never misses capacity), and hold back starts of
   non-preemptible work that would take GPUs the inference reserve keeps (:class:`InferenceReserve`: the
   expected inference demand per pool over the horizon, also given to the policy in
   ``Snapshot.inference_reserve_gpus``; :func:`hold_for_reserve`).
5. :func:`enforce_caps` — the FAST PATH: the facility power of the decided set against the *actual* wind
   and caps of this slot; lower power fractions first (to each pool's minimum, lowest priority first),
   then drop new starts and preempt preemptible work, lowest priority first. Inference (must-run) and
   running non-preemptible jobs are never touched; if they alone break a cap it is recorded as a violation.
6. :meth:`ControlLoop.apply` — preempt running jobs absent from the decisions, set power fractions, start
   new ones (``start`` may return None: the job stays queued). Inference starts first; where its GPUs are
   not free, :meth:`ControlLoop.make_room` preempts preemptible work of an eligible pool until it fits.
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
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from scheduler.accounting import integrate
from scheduler.energy import EnergySeries
from scheduler.errors import InputError
from scheduler.executors.base import Clock, Executor, ExecutorEvent, measured_gpu_power_w
from scheduler.fastpath import FastPathResult, enforce_caps
from scheduler.jobs import Job, check_jobs_fit
from scheduler.ledger import JobsOf, LoopJob, RunTable, StatesOf
from scheduler.models import Site
from scheduler.pipeline import (
    ActionPlan,
    Constrained,
    constrain,
    order_actions,
    sanitize_run,
    start_candidates,
)
from scheduler.policies.base import Assignment, Decisions, Policy, Snapshot, TenantInfo
from scheduler.policies.capacity import EligibilityCache, SitePower, inference_pool_order
from scheduler.reserve import InferenceReserve, hold_for_reserve, reserve_peaks, room_victims
from scheduler.simulation import NodeEvent, SimulationResult, run_simulation, slots_for_days

__all__ = [  # the loop, and (one definition each, elsewhere) the names callers import from here
    "ActionPlan", "ApplyResult", "Constrained", "ControlLoop", "FastPathResult", "InferenceReserve", "LoopJob",
    "NodeEvent", "SimulationResult", "TickObserver", "TickReport", "constrain", "enforce_caps", "hold_for_reserve",
    "order_actions", "plan_diagnostics", "reserve_peaks", "room_victims", "run_simulation", "sanitize_run",
    "slots_for_days", "start_candidates",
]  # fmt: skip

log = logging.getLogger(__name__)


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
    held: tuple[str, ...] = ()  # non-preemptible starts held back to keep the inference reserve free
    made_room: tuple[str, ...] = ()  # preemptible jobs preempted so that inference found GPUs
    over_quota: tuple[str, ...] = ()  # dropped / preempted to keep a tenant's quota (scheduler.rules)
    owed_started: tuple[str, ...] = ()  # started by the rules: the tenant is owed a commitment
    fair_started: tuple[str, ...] = ()  # started by the rules: the tenant is below its fair share
    displaced: tuple[str, ...] = ()  # dropped / preempted to make room for owed or fair-share work
    expired: tuple[str, ...] = ()  # inference whose demand window passed before it was served
    interval_s: float = 0.0  # seconds of the accounted energy / carbon (the slot; the service: since last tick)
    tick_s: float | None = None  # wall seconds the whole tick took (the service measures it)
    congestion_active: bool | None = None  # a congestion event caps the grid now (None: not known here)
    # facility W with the GPU draw measured where the executor measures it (the model elsewhere), read at the
    # tick's start, before its actions: what the fast path checked the caps against (None: nothing measured)
    measured_facility_w: float | None = None
    power_source: str = "model"  # "measured" when some pool's GPU draw was measured this tick, else "model"


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
        tenant_info: Mapping[str, TenantInfo] | None = None,
        timer: Callable[[], float] = time.perf_counter,
        reserve: InferenceReserve | None = None,
        tenant_info_fn: Callable[[ControlLoop], Mapping[str, TenantInfo]] | None = None,
    ) -> None:
        self.site = site
        self.executor = executor
        self.policy = policy
        self.clock = clock
        self.power = SitePower(site)
        self.slot = int(start_slot)
        self.slot_s = float(site.slot_s)
        self.observers: list[TickObserver] = list(observers)
        self.tenant_info: Mapping[str, TenantInfo] = tenant_info or {}
        self.tenant_info_fn = tenant_info_fn  # when given: called each tick for Snapshot.tenant_info
        self._timer = timer
        self.reserve = reserve if reserve is not None else InferenceReserve(self.power.names, self.slot_s)
        self._elig = EligibilityCache(site)
        self._must_run: dict[str, LoopJob] = {}  # released inference (queued or running)
        self._made_room: list[str] = []
        self._tab = RunTable()
        self._now = [self.slot]  # shared with the records: the end of their open run segments
        self._slot_t0 = 0.0
        self._tenants: list[str] = []
        self._tenant_idx: dict[str, int] = {}
        self.usage: dict[tuple[str, str], list[float]] = {}  # (tenant, UTC day) -> [gpu_s, energy_j, carbon_g]
        self.records: dict[str, LoopJob] = {}
        self._pending: list[LoopJob] = []  # not yet submitted, sorted by submit_s descending (pop from end)
        self._active: dict[str, LoopJob] = {}  # queued or running, in release order
        self._running: dict[str, LoopJob] = {}
        self._queued_inference: dict[str, LoopJob] = {}  # released must-run jobs not yet started
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
            rec = LoopJob(job=j)
            rec._now = self._now
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
            self._run_stop(rec, self.slot)
        if rec.state in ("running", "queued"):
            self._active.pop(job_id, None)
        if rec.state == "pending":
            self._pending.remove(rec)
        if rec.state in ("pending", "queued", "running"):
            self._must_run.pop(job_id, None)
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
                rec.last_run_fraction = min(max((ev.time_s - self._slot_t0) / self.slot_s, 0.0), 1.0)
                self._run_stop(rec, self.slot + 1)
                del self._active[ev.job_id]
                self._must_run.pop(ev.job_id, None)
                finished.append(ev.job_id)
            elif ev.kind == "failed":
                rec.state = "queued"
                rec.failures += 1
                rec.lost_work_s += ev.lost_s
                rec.work_done_s = max(rec.work_done_s - ev.lost_s, 0.0)
                rec.checkpoint_work_s = rec.work_done_s
                rec.nodes = ()
                self._run_stop(rec, self.slot)
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
                self._must_run[rec.job.job_id] = rec
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
                self._must_run.pop(jid, None)
                expired.append(jid)
        demand: dict[str, float] = {}
        for rec in self._must_run.values():
            home = self.home_pool(rec.job)
            if home is not None:
                demand[home] = demand.get(home, 0.0) + rec.job.gpus
        self.reserve.observe(self.slot, demand)
        return expired

    def home_pool(self, job: Job) -> str | None:
        """Where inference is placed first and its expected demand booked: the largest eligible pool."""
        order = inference_pool_order(self.site, self._elig(job))
        return self.power.names[order[0]] if order else None

    def snapshot(self, forecast: EnergySeries) -> Snapshot:
        return Snapshot(
            now_s=self.clock.now_s(),
            slot=self.slot,
            site=self.site,
            jobs=tuple(r.job_state() for r in self._active.values()),
            healthy_gpus=dict(self.executor.healthy_gpus()),
            forecast=forecast,
            tenant_info=self.tenant_info_fn(self) if self.tenant_info_fn is not None else self.tenant_info,
            inference_reserve_gpus=self.reserve.forecast(self.slot, forecast.n_slots),
        )

    def decide(self, snapshot: Snapshot) -> tuple[Decisions, float]:
        t0 = self._timer()
        d = self.policy.decide(snapshot)
        return d, self._timer() - t0

    def constrain(self, decided: Mapping[str, Assignment], snap: Snapshot, actual: EnergySeries) -> Constrained:
        """:func:`scheduler.pipeline.constrain` (sanitize -> hold -> rules -> fast path) on this loop's state."""
        return constrain(
            self.power, self._elig, decided, snap,
            active=StatesOf(self._active), running=self._running,
            running_states=[r.job_state() for r in self._running.values()],
            queued_must_run=[r.job_state() for r in self._must_run.values() if r.state == "queued"],
            queued=(r.job for r in self._active.values() if r.state == "queued"),  # read only with tenants
            jobs=JobsOf(self.records), healthy_gpus=self.executor.healthy_gpus(), actual=actual,
            home_pool=self.home_pool, measured_gpu_w=measured_gpu_power_w(self.executor),
        )  # fmt: skip

    def sanitize(self, run: Mapping[str, Assignment]) -> tuple[dict[str, Assignment], list[str]]:
        """:func:`sanitize_run` on this loop's state. Returns (run, refused ids)."""
        return sanitize_run(
            self.site, run, StatesOf(self._active), self.home_pool, elig=self._elig,
            running=StatesOf(self._running).values(),
            queued_must_run=[r.job_state() for r in self._must_run.values() if r.state == "queued"],
        )  # fmt: skip

    def hold(
        self, run: Mapping[str, Assignment], reserve: Mapping[str, Any]
    ) -> tuple[dict[str, Assignment], tuple[str, ...]]:
        """:func:`hold_for_reserve` on this loop's state (non-preemptible starts keep the reserve free)."""
        return hold_for_reserve(
            self.power,
            run,
            JobsOf(self.records),
            self._running,
            self.executor.healthy_gpus(),
            reserve,
        )

    def enforce(self, run: Mapping[str, Assignment], actual: EnergySeries) -> FastPathResult:
        return enforce_caps(
            self.power,
            run,
            JobsOf(self.records),
            self._running,
            self.executor.healthy_gpus(),
            float(actual.wind_w[0]),
            float(actual.grid_cap_w[0]),
            float(actual.site_max_w[0]),
        )

    def apply(self, run: Mapping[str, Assignment]) -> ApplyResult:
        """Preempt running jobs absent from ``run`` (or moved pool), set power fractions, start new ones.

        Inference starts first; where its GPUs are not free on the nodes (the policy planned per pool, or it
        did not see the demand coming), preemptible non-inference work in an eligible pool is preempted,
        lowest priority and latest submitted first, until the inference fits (:meth:`make_room`)."""
        now = self.clock.now_s()
        preempted: list[tuple[str, float]] = []
        for jid in list(self._running):
            a = run.get(jid)
            rec = self._running[jid]
            if a is not None and a.pool == rec.pool:
                continue
            lost = self.executor.preempt(jid, "policy" if a is None else f"move to {a.pool}")
            self._stopped(rec, lost)
            preempted.append((jid, lost))
        changed: list[str] = []
        starts: list[str] = []
        failed: list[str] = []
        self._made_room = []
        new_starts: list[tuple[str, Assignment]] = []
        for jid, a in run.items():
            rec = self._active[jid]
            if rec.state == "running":
                if abs(a.power_fraction - rec.power_fraction) > 1e-12:
                    self.executor.set_power_fraction(jid, a.power_fraction)
                    self._run_power(rec, a.power_fraction)
                    rec.touch()
                    changed.append(jid)
                continue
            new_starts.append((jid, a))
        new_starts.sort(key=lambda x: not self._active[x[0]].job.must_run)  # stable: inference first
        for jid, a in new_starts:
            rec = self._active[jid]
            placement = self.executor.start(rec.job, a.pool, a.power_fraction, rec.work_done_s)
            if placement is None and rec.job.must_run:
                placement, a, lost_list = self.make_room(rec, a)
                preempted.extend(lost_list)
            if placement is None:
                failed.append(jid)
                continue
            self._run_start(rec, a)
            rec.nodes = placement.nodes
            if rec.first_start_s is None:
                rec.first_start_s = now
            rec.touch()
            starts.append(jid)
        return ApplyResult(tuple(starts), tuple(preempted), tuple(changed), tuple(failed))

    def _stopped(self, rec: LoopJob, lost: float) -> None:
        """Bookkeeping of a running job the loop preempted (it goes back to the queue)."""
        rec.state = "queued"
        rec.preemptions += 1
        rec.lost_work_s += lost
        rec.work_done_s = max(rec.work_done_s - lost, 0.0)
        rec.checkpoint_work_s = rec.work_done_s
        rec.nodes = ()
        rec.touch()
        self._run_stop(rec, self.slot)

    def _run_start(self, rec: LoopJob, a: Assignment) -> None:
        rec.state = "running"
        rec.pool = a.pool
        rec.power_fraction = a.power_fraction
        rec._open = (self.slot, a.power_fraction, a.pool)
        self._tab.add(rec.job.job_id, rec.job.gpus, self.power.index[a.pool], a.power_fraction,
                      self._tenant_index(rec.job.tenant))  # fmt: skip
        self._running[rec.job.job_id] = rec

    def _close_segment(self, rec: LoopJob, end_slot: int) -> None:
        if rec._open is not None:
            first, f, pool = rec._open
            if end_slot > first:
                rec.segments.append((first, end_slot - first, f, pool))
            rec._open = None

    def _run_stop(self, rec: LoopJob, end_slot: int) -> None:
        """The job no longer runs: close its segment at ``end_slot`` (exclusive), flush its energy."""
        self._close_segment(rec, end_slot)
        e, c = self._tab.remove(rec.job.job_id)
        rec.energy_j += e
        rec.carbon_g += c
        del self._running[rec.job.job_id]

    def _run_power(self, rec: LoopJob, f: float) -> None:
        self._close_segment(rec, self.slot)
        rec.power_fraction = f
        rec._open = (self.slot, f, rec.pool or "")
        self._tab.frac[self._tab.row[rec.job.job_id]] = f

    def _tenant_index(self, tenant: str) -> int:
        i = self._tenant_idx.get(tenant)
        if i is None:
            i = self._tenant_idx[tenant] = len(self._tenants)
            self._tenants.append(tenant)
        return i

    def flush_usage(self) -> None:
        """Move the energy and carbon of jobs running now into their records (reports read records)."""
        tab = self._tab
        for jid, r in tab.row.items():
            rec = self.records[jid]
            rec.energy_j += float(tab.energy_j[r])
            rec.carbon_g += float(tab.carbon_g[r])
            tab.energy_j[r] = 0.0
            tab.carbon_g[r] = 0.0

    def tenant_usage(self) -> dict[str, Any]:
        """Per-tenant usage in the shapes of the state store (``scheduler.accounting.accounts`` inputs):
        ``totals`` {tenant: {gpu_s, energy_j, carbon_g}}, ``daily`` [{tenant, day, gpu_s, energy_j, carbon_g}],
        ``running_gpus`` and ``demand_gpus`` (queued + running) {tenant: GPUs}, and ``slot_demand_gpu_s``
        {tenant: GPU-seconds its queued and running work could use in the next slot at full power}."""
        totals: dict[str, dict[str, float]] = {}
        daily = []
        for (t, day), (gs, ej, cg) in sorted(self.usage.items(), key=lambda kv: (kv[0][1], kv[0][0])):
            daily.append({"tenant": t, "day": day, "gpu_s": gs, "energy_j": ej, "carbon_g": cg})
            tot = totals.setdefault(t, {"gpu_s": 0.0, "energy_j": 0.0, "carbon_g": 0.0})
            tot["gpu_s"] += gs
            tot["energy_j"] += ej
            tot["carbon_g"] += cg
        running: dict[str, int] = {}
        demand: dict[str, int] = {}
        slot_demand: dict[str, float] = {}
        dt = self.slot_s
        for rec in self._active.values():
            j = rec.job
            t = j.tenant
            demand[t] = demand.get(t, 0) + j.gpus
            rem = j.duration_s - rec.work_done_s
            slot_demand[t] = slot_demand.get(t, 0.0) + j.gpus * (dt if rem > dt else max(rem, 0.0))
            if rec.state == "running":
                running[t] = running.get(t, 0) + j.gpus
        return {"totals": totals, "daily": daily, "running_gpus": running, "demand_gpus": demand,
                "slot_demand_gpu_s": slot_demand}  # fmt: skip

    def make_room(self, rec: LoopJob, a: Assignment) -> tuple[Any, Assignment, list[tuple[str, float]]]:
        """Start inference ``rec`` somewhere: the planned pool, then every eligible pool in
        :func:`inference_pool_order`, preempting preemptible non-inference work there when the free GPUs
        (plus that work's) can hold it. Returns (placement or None, assignment used, [(preempted id, lost_s)])."""
        job = rec.job
        order = [self.power.index[a.pool]] + [
            p for p in inference_pool_order(self.site, self._elig(job)) if self.power.names[p] != a.pool
        ]
        for cand in start_candidates(self.site, job, a)[1:]:  # without preempting anything
            placement = self.executor.start(job, cand.pool, 1.0, rec.work_done_s)
            if placement is not None:
                return placement, cand, []
        for p in order:
            name = self.power.names[p]
            if p not in self._elig(job):
                continue
            free = int(self.executor.free_gpus_by_node(name).sum())
            victims = room_victims(job, free, ((r.job.job_id, r.job) for r in self._running.values() if r.pool == name))
            if victims is None:
                continue
            lost_list: list[tuple[str, float]] = []
            for vid in victims:
                v = self._running[vid]
                lost = self.executor.preempt(vid, f"room for inference {job.job_id}")
                self._stopped(v, lost)
                free += v.job.gpus
                lost_list.append((vid, lost))
                self._made_room.append(vid)
                if free < job.gpus:
                    continue
                placement = self.executor.start(job, name, 1.0, rec.work_done_s)
                if placement is not None:
                    log.info("inference %s: preempted %d job(s) in %s to make room", job.job_id, len(lost_list), name)
                    return placement, Assignment(name, 1.0), lost_list
            return None, a, lost_list
        log.warning("inference %s (%d GPUs): no eligible pool can make room", job.job_id, job.gpus)
        return None, a, []

    def advance(self, actual: EnergySeries) -> tuple[list[str], dict[str, Any]]:
        """Let one slot pass; account the slot. Returns (finished ids, slot accounting).

        Vectorised over the running jobs (:class:`RunTable`): peak power at the slot start, mean power with
        the run fraction of jobs that finish inside the slot, per-job energy and carbon, per-tenant usage."""
        t0 = self.clock.now_s()
        dt = self.slot_s
        pw = self.power
        healthy = self.executor.healthy_gpus()
        healthy_a = pw.healthy_array(healthy)
        tab = self._tab
        m = tab.n
        n_p = len(pw.names)
        pool = tab.pool[:m]
        g = tab.gpus[:m]
        frac = tab.frac[:m]
        runf = tab.used[:m].astype(np.float64)
        gpu_w = g * frac * pw.tdp_w[pool]
        peak_w = pw.facility_w(
            np.bincount(pool, weights=gpu_w * runf, minlength=n_p),
            np.bincount(pool, weights=g * runf, minlength=n_p),
            healthy_a,
        )
        self._slot_t0 = t0
        events = self.executor.step(dt)
        for ev in events:
            if ev.kind == "finished" and ev.job_id in tab.row:
                runf[tab.row[ev.job_id]] = min(max((ev.time_s - t0) / dt, 0.0), 1.0)
        wind = float(actual.wind_w[0])
        iv = integrate(pw, pool, g, frac, runf, healthy_a, wind, float(actual.carbon_g_per_kwh[0]), dt)
        fac, imp, carbon, busy = iv.facility_w, iv.grid_import_w, iv.carbon_g, iv.busy_gpus
        tab.energy_j[:m] += iv.job_energy_j
        tab.carbon_g[:m] += iv.job_carbon_g
        if m:
            day = actual.start_utc.date().isoformat()
            nt = len(self._tenants)
            ten = tab.tenant[:m]
            by_t = (
                np.bincount(ten, weights=iv.job_gpu_s, minlength=nt),
                np.bincount(ten, weights=iv.job_energy_j, minlength=nt),
                np.bincount(ten, weights=iv.job_carbon_g, minlength=nt),
            )
            for i in np.flatnonzero(by_t[0] > 0).tolist():
                u = self.usage.setdefault((self._tenants[i], day), [0.0, 0.0, 0.0])
                u[0] += float(by_t[0][i])
                u[1] += float(by_t[1][i])
                u[2] += float(by_t[2][i])
        finished, _ = self.ingest(events)
        # progress of jobs still running, from the executor's progress channel
        if self._running:
            prog = getattr(self.executor, "progress", None)
            if prog is not None:
                for jid, rec in self._running.items():
                    rec.work_done_s, rec.checkpoint_work_s = prog(jid)
                    rec._js = None
            else:
                info = self.executor.running()
                for jid, rec in self._running.items():
                    ri = info.get(jid)
                    if ri is not None:
                        rec.work_done_s = ri.work_done_s
                        rec.checkpoint_work_s = ri.checkpoint_work_s
                        rec._js = None
        acc = {
            "healthy": healthy,
            "busy": {n: float(busy[i]) for i, n in enumerate(pw.names)},
            "facility_w": fac,
            "facility_peak_w": peak_w,
            "grid_import_w": imp,
            "grid_import_peak_w": max(peak_w - wind, 0.0),
            "carbon_g": carbon,
            "energy_wind_j": iv.energy_wind_j,
            "energy_grid_j": iv.energy_grid_j,
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
        expired = self.release()
        snap = self.snapshot(forecast)
        decisions, decide_s = self.decide(snap)
        c = self.constrain(decisions.run, snap, actual)
        fp, rules = c.fast_path, c.rules
        applied = self.apply(c.run)
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
            refused=c.refused,
            violations=tuple(violations),
            inference_demand_gpus=int(inf_demand),
            inference_served_gpus=int(inf_served),
            decide_s=float(decide_s),
            plan=plan_diagnostics(decisions.plan),
            held=c.held,
            made_room=tuple(self._made_room),
            over_quota=rules.over_quota,
            owed_started=rules.owed_started,
            fair_started=rules.fair_started,
            displaced=rules.displaced,
            expired=tuple(expired),
            interval_s=self.slot_s,
            measured_facility_w=c.measured.facility_w if c.measured is not None else None,
            power_source="measured" if c.measured is not None else "model",
        )
        log.info(
            "tick slot=%d facility=%.0fW import=%.0fW cap=%.0fW wind=%.0fW starts=%d preempt=%d finish=%d queued=%d",
            self.slot, report.facility_w, report.grid_import_w, cap, wind, len(report.starts),
            len(report.preemptions), len(report.finishes), queued,
        )  # fmt: skip
        self.slot += 1
        self._now[0] = self.slot
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
