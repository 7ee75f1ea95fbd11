"""The control loop shared by the simulated and the Ray executor (DESIGN section 4).

One tick, for the current slot, is a pipeline of steps each callable alone in a test:

0. :meth:`ControlLoop.settle` — only where time passes outside the loop (the server: ``drive_time=False``):
   account the interval since the previous tick (module docstring, "Time"); then the inbox is drained
   (``inbox``: the server's submissions and cancellations, which arrived from API threads).
1. :meth:`ControlLoop.collect` — take the executor's events since the last tick (failures, repairs).
2. :meth:`ControlLoop.release` — jobs whose submit time has come join the queue; inference demand whose
   window has passed unserved is expired.
3. :meth:`ControlLoop.snapshot` — an immutable :class:`~scheduler.policies.base.Snapshot`.
4. :meth:`ControlLoop.decide` — ``policy.decide(snapshot)`` (the policy sees the forecast only).
4b. :meth:`ControlLoop.constrain` (:func:`scheduler.pipeline.constrain`, the one path from a decision to the
   executor; the loop has no other way into its steps):
   :func:`sanitize_run` drops what the policy may not do and starts every released inference job the policy
   left out (inference never misses capacity); :func:`hold_for_reserve` holds back starts of non-preemptible
   work that would take GPUs the inference reserve keeps (:class:`InferenceReserve`: the expected inference
   demand per pool over the horizon, also given to the policy in ``Snapshot.inference_reserve_gpus``); the
   tenants' rules (:func:`scheduler.rules.enforce_rules`); then
5. :func:`enforce_caps` — the FAST PATH: the facility power of the decided set against the *actual* wind
   and caps of this slot; lower power fractions first (to each pool's minimum, lowest priority first),
   then drop new starts and preempt preemptible work, lowest priority first, and only then stop running
   non-preemptible work (the cap comes first: a slot whose idle floor alone breaks the cap stops it where
   the plan ends its block, under every policy; :mod:`scheduler.fastpath`), and as the last resort shed
   inference (must-run) from the end of the kernels' serving order (``kernels.check.serving_order``, the
   plan's rule: the longest prefix whose watts fit is served; none where the idle floor alone breaks the
   cap); a shed inference job stays queued and starts again when the cap allows. What the idle site alone
   draws above a cap is recorded as a violation.
6. :meth:`ControlLoop.apply` — preempt running jobs absent from the decisions, set power fractions, start
   new ones (``start`` may return None: the job stays queued). Inference starts first, then larger gangs
   before smaller (first fit decreasing); where inference finds no GPUs, :meth:`ControlLoop.make_room`
   preempts preemptible work of an eligible pool until it fits, and where work the rules started for an
   owed commitment finds no node, it frees one node of other tenants' preemptible work. With a :class:`~scheduler.ledger.Journal` (the server's SQLite journal) every action's intent is written
   before the executor is asked anything (one batch) and the outcomes after (one batch).
7. :meth:`ControlLoop.advance` — where the loop drives time (the simulation, the demo): let the slot pass
   (``executor.step``), account it; then publish a :class:`TickReport` to the observers.

Time. ``drive_time=True`` (simulation, demo): the loop owns the clock; a tick is one slot, accounted at its
end, and the report of slot s carries slot s's energy. ``drive_time=False`` (the server): time passes
outside the loop on an injected wall clock and a tick may come at any moment (every slot, and on events);
the slot is ``floor(now / slot_s)``. What runs after a tick's apply draws power until the next tick, and
that interval ``[t_prev, now]`` is accounted at the next tick's start (:meth:`settle`) through the one
integrator, with the wind and carbon of the slot the interval began in (the values the tick that opened it
acted on): a tick late past a slot boundary accounts those few seconds with the previous slot's wind and
carbon, and mid-slot ticks split a slot into intervals that each carry their own share. A job that
finished inside the interval is charged up to its finish time (a self-timed executor such as Ray reports
finishes without a virtual time: up to the tick). So the server's report at tick k carries the energy of
the interval that ended at k; its powers (``facility_w`` = ``facility_peak_w``) are those drawn from
now on, what the caps are checked against in both modes.

Energy accounting is exact for jobs that finish inside a slot: each job's run time in the slot is kept as
``run_fraction`` so that ``facility_w`` in the timeline is the slot's mean power. Caps are checked against
the slot's *peak* power (at its start, when every job of the slot is running), which bounds the mean.
Per-job attribution: a job's facility power is ``pue * gpus * (f * tdp_w + host_w_per_gpu)``; it is charged
that share of the slot's grid carbon (the rest is idle and host power of idle GPUs).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from scheduler.accounting import IntervalUsage, integrate
from scheduler.energy import EnergySeries
from scheduler.errors import ExecutorError, InputError
from scheduler.executors.base import Clock, Executor, ExecutorEvent, measured_gpu_power_w
from scheduler.fastpath import FastPathResult, enforce_caps
from scheduler.jobs import Job, check_jobs_fit
from scheduler.ledger import Intent, JobsOf, Journal, LoopJob, Outcome, RunTable, StatesOf
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
from scheduler.reasons import Explainer, Why, gate, gate_item, schedule_of
from scheduler.reserve import InferenceReserve, hold_for_reserve, node_victims, reserve_peaks, room_victims
from scheduler.simulation import NodeEvent, SimulationResult, run_simulation, slots_for_days

__all__ = [  # the loop, and (one definition each, elsewhere) the names callers import from here
    "ActionPlan", "ApplyResult", "Constrained", "ControlLoop", "FastPathResult", "InferenceReserve", "Intent",
    "Journal", "LoopJob", "Outcome",
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
    cancelled: tuple[str, ...] = ()  # running or queued jobs cancelled through the inbox this tick


def plan_diagnostics(plan: Any) -> dict[str, Any]:
    """Small scalar diagnostics from ``Decisions.plan`` (a kernels PlanResult or any object / dict), with
    ``infeasible_slots`` the number of slots its ``diagnostics`` mark infeasible (where it has them): those
    whose idle floor alone breaks a cap (``infeasible_slots``) and those whose cap cannot hold the must-run
    inference on top of it (``shed_slots``: the inference that fits is served, the rest shed)."""
    if plan is None:
        return {}
    out: dict[str, Any] = {}
    for key in ("status", "gap", "iterations", "objective", "lower_bound", "carbon_g_total", "unfinished_gpu_s"):
        v = plan.get(key) if isinstance(plan, Mapping) else getattr(plan, key, None)
        if isinstance(v, (str, int, float, np.integer, np.floating)):
            out[key] = v.item() if isinstance(v, (np.integer, np.floating)) else v
    diag = plan.get("diagnostics") if isinstance(plan, Mapping) else getattr(plan, "diagnostics", None)
    if isinstance(diag, Mapping) and diag.get("infeasible_slots") is not None:
        # the slots no plan meets in full, counted (kernels: diagnostics)
        out["infeasible_slots"] = len(diag["infeasible_slots"]) + len(diag.get("shed_slots", ()))
    return out


# ---------------------------------------------------------------------------------------- the loop

TickObserver = Callable[[TickReport], None]


class ControlLoop:
    """snapshot -> decide -> fast path -> apply -> advance, over any :class:`Executor`.

    ``clock`` gives seconds since the run's epoch (virtual, or the server's wall clock). ``timer`` measures
    the policy's compute time for reports (``time.perf_counter``; never used for decisions).

    The seams (module docstring): ``drive_time`` (True: each tick lets its slot pass; False: time passes
    outside, each tick first settles the interval since the previous one), ``journal`` (intents before,
    outcomes after; None: nothing is journalled), ``inbox`` (called with the loop at the start of each tick,
    after the settle: submissions and cancellations that arrived meanwhile), ``usage_sink`` (called with each
    accounted interval's per-job rows ``{job id: row}`` and the :class:`~scheduler.accounting.IntervalUsage`:
    the server writes per-job and per-tenant usage from it) and ``keep_records`` (False: a job that reached
    a final state leaves ``records`` at the end of the tick that ended it; the server, whose store keeps it).
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
        drive_time: bool = True,
        journal: Journal | None = None,
        inbox: Callable[[ControlLoop], None] | None = None,
        usage_sink: Callable[[Mapping[str, int], IntervalUsage], None] | None = None,
        keep_records: bool = True,
        state_of: Callable[[str, str], str | None] | None = None,
        epoch_unix_s: float = 0.0,
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
        self.drive_time = drive_time
        self.journal = journal
        self.inbox = inbox
        self.usage_sink = usage_sink
        self.keep_records = keep_records
        # an executor on real time (Ray) advances by itself: where time passes outside the loop it is polled
        self._self_timed = getattr(executor, "time_scale", None) is not None
        self._open_t0: float | None = None if drive_time else clock.now_s()  # start of the unaccounted interval
        self._open_healthy: dict[str, int] = dict(executor.healthy_gpus())
        self._open_actual: EnergySeries | None = None
        self._cancelled: list[str] = []  # this tick's cancellations
        self._ended: list[str] = []  # jobs that reached a final state this tick (forgotten without keep_records)
        self.settled: IntervalUsage | None = None  # what the last settle accounted
        self.last_constrained: Constrained | None = None
        self.last_plan: Any = None  # the policy's plan of the last tick (Decisions.plan)
        # the dependency / begin gate (scheduler.reasons.gate): released jobs with dependencies or a begin time
        # wait here, out of the snapshot, until met; ``state_of(job_id, tenant)`` answers for jobs the loop no
        # longer holds (the server's store; None: only the loop's records count)
        self.state_of = state_of
        self.epoch_unix_s = float(epoch_unix_s)  # Unix time of the loop's time 0 (times in the gate's messages)
        self._gated: dict[str, LoopJob] = {}
        self._hard: dict[str, LoopJob] = {}  # released jobs with deadline_policy hard (checked while queued)
        self.last_gated: dict[str, Why] = {}
        self.last_schedule: Mapping[str, Any] = {}  # the plan's per-job schedule (Decisions.schedule)
        self.last_tenant_info: Mapping[str, TenantInfo] = {}  # the last snapshot's (quotas, for the reasons)
        self.submit(jobs)

    # --------------------------------------------------------------------------------- job intake

    def submit(self, jobs: Iterable[Job], *, admitted: bool = False) -> None:
        """Add jobs (they join the queue at their ``submit_s``). Duplicate ids and unfit jobs are refused
        before anything is added. ``admitted``: the caller checked the fit at admission already (the server's
        API, :func:`scheduler.auth.admit_job`), so a stored job is never refused here (a site file changed
        since would otherwise stop every tick); it waits, and the executor's start says whether it fits."""
        new = list(jobs)
        seen: set[str] = set()
        for j in new:
            if j.job_id in self.records or j.job_id in seen:
                raise InputError(f"job id {j.job_id!r} is submitted twice; job ids must be unique")
            seen.add(j.job_id)
        if not admitted:
            check_jobs_fit(self.site, new, "jobs")
        for j in new:
            rec = LoopJob(job=j)
            rec._now = self._now
            self.records[j.job_id] = rec
            self._pending.append(rec)
        if new:
            self._pending.sort(key=lambda r: (r.job.submit_s, r.job.job_id), reverse=True)

    def cancel(self, job_id: str, *, already_final: bool = False) -> bool:
        """Cancel a job. A running one is stopped, journalled (``already_final``: the journal's store holds
        it as cancelled already, so the stop changes no job there). Returns False, changing nothing, when the
        executor could not stop it (it stays running; the caller may try again) or the job has ended."""
        rec = self.records.get(job_id)
        if rec is None:
            raise InputError(f"unknown job {job_id!r}")
        if rec.state == "running":
            if not self._act_stop(rec, "cancelled", "cancelled", after_cancel=already_final):
                return False
        if rec.state == "queued":
            self._active.pop(job_id, None)
            self._gated.pop(job_id, None)
            self._hard.pop(job_id, None)
            self._queued_inference.pop(job_id, None)
        if rec.state == "pending":
            self._pending.remove(rec)
        if rec.state in ("pending", "queued"):
            self._must_run.pop(job_id, None)
            rec.state = "cancelled"
            rec.end_s = self.clock.now_s()
            rec.touch()
            self._cancelled.append(job_id)
            self._ended.append(job_id)
            return True
        return False

    def _act_stop(self, rec: LoopJob, reason: str, final: str, *, after_cancel: bool = False) -> bool:
        """Stop a running job now, journalled on its own (intent, act, outcome): a cancellation. It goes
        back to the queue (the caller then ends it). Returns False when the executor refused."""
        jid = rec.job.job_id
        jn = self.journal
        aid = jn.intend([Intent("preempt", jid, {"reason": reason})])[0] if jn is not None else None
        try:
            lost = self.executor.preempt(jid, reason)
        except ExecutorError as e:
            log.warning("stop of %s failed: %s", jid, e)
            if jn is not None:
                jn.record([Outcome(aid, jid, "error", data={"error": str(e)})])
            return False
        resume = min(max(rec.work_done_s - lost, 0.0), rec.job.duration_s)
        rec.state = "queued"
        rec.lost_work_s += lost
        rec.work_done_s = rec.checkpoint_work_s = resume
        rec.nodes = ()
        rec.touch()
        self._run_stop(rec, self.slot)
        if jn is not None:
            if after_cancel:
                jn.record([Outcome(aid, jid, "stopped_after_cancel", data={"lost_work_s": lost})])
            else:
                jn.record([Outcome(aid, jid, "stopped", final_state=final, lost_s=lost, detail=reason,
                                   resume_work_s=resume)])  # fmt: skip
        return True

    def adopt(self, job: Job, *, work_done_s: float = 0.0, checkpoint_work_s: float = 0.0,
              running: Assignment | None = None, nodes: tuple[int, ...] = (),
              first_start_s: float | None = None) -> None:  # fmt: skip
        """Take over an active job at a restart (the server rebuilds its loop from the store): queued now,
        or ``running`` in that pool at that fraction (re-adopted from the executor). Its energy from now on
        is accounted; what it used before is in the store. ``first_start_s``: when it first started, if it
        ever did (inference once served never expires)."""
        if job.job_id in self.records:
            raise InputError(f"job id {job.job_id!r} is adopted twice; job ids must be unique")
        rec = LoopJob(job=job, work_done_s=work_done_s, checkpoint_work_s=checkpoint_work_s,
                      first_start_s=first_start_s)  # fmt: skip
        rec._now = self._now
        self.records[job.job_id] = rec
        rec.state = "queued"
        if job.deadline_hard and job.deadline_s is not None:
            self._hard[job.job_id] = rec
        if running is None and gate_item(job, self.epoch_unix_s) is not None:
            self._gated[job.job_id] = rec  # released by the gate at the next tick, when met
            return
        self._active[job.job_id] = rec
        if job.must_run:
            self._must_run[job.job_id] = rec
        if running is not None:
            rec.first_start_s = self.clock.now_s() if first_start_s is None else first_start_s
            rec.nodes = tuple(nodes)
            self._run_start(rec, running)
            if not self.drive_time:
                self._open_healthy = dict(self.executor.healthy_gpus())
        elif job.must_run and first_start_s is None:
            self._queued_inference[job.job_id] = rec

    # ------------------------------------------------------------------------------ tick steps

    def collect(self) -> list[str]:
        """Ingest the executor's events since the last step (``step(0)``); returns ids of failed jobs."""
        return self.ingest(self.executor.step(0.0))[1]

    def collect_last_slot(self) -> list[str]:
        """After the last tick of a loop that drives time: ingest what the executor reports since as part of the
        slot that ended (a job that finished at its very end, the last progress of the jobs still running), its
        energy being accounted already. Returns the ids of the jobs that finished."""
        if not self.drive_time or self.slot == 0:
            return []
        self.slot -= 1
        self._now[0] = self.slot
        try:
            finished, _ = self.ingest(self.executor.step(0.0))
            self._read_progress()
        finally:
            self.slot += 1
            self._now[0] = self.slot
        return finished

    def ingest(self, events: Sequence[ExecutorEvent]) -> tuple[list[str], list[str]]:
        """Apply executor events to the bookkeeping. Returns (finished ids, failed ids).

        ``preempted`` events are informational here: :meth:`apply` accounts preemptions it asks for."""
        finished: list[str] = []
        failed: list[str] = []
        stops: list[Outcome] = []
        for ev in events:
            if ev.job_id is None or ev.job_id not in self._running:
                continue
            rec = self._running[ev.job_id]
            if ev.kind == "finished":
                rec.state = "finished"
                rec.work_done_s = rec.job.duration_s
                rec.checkpoint_work_s = rec.job.duration_s
                rec.end_s = ev.time_s
                rec.last_run_fraction = min(max((ev.time_s - self._slot_t0) / self.slot_s, 0.0), 1.0)
                self._run_stop(rec, self.slot + 1)
                del self._active[ev.job_id]
                self._must_run.pop(ev.job_id, None)
                finished.append(ev.job_id)
                self._ended.append(ev.job_id)
                if self.journal is not None:
                    stops.append(Outcome(None, ev.job_id, "stopped", final_state="finished", detail="finished"))
            elif ev.kind == "failed":  # a failure of the node, not of the job: it resumes from its checkpoint
                rec.state = "queued"
                rec.failures += 1
                rec.lost_work_s += ev.lost_s
                # the work safe at the failure: the executor's own figure where it reports one
                at_fail = rec.work_done_s if ev.work_done_s is None else ev.work_done_s
                rec.work_done_s = min(max(at_fail - ev.lost_s, 0.0), rec.job.duration_s)
                rec.checkpoint_work_s = rec.work_done_s
                rec.nodes = ()
                self._run_stop(rec, self.slot)
                failed.append(ev.job_id)
                if self.journal is not None:
                    stops.append(Outcome(None, ev.job_id, "stopped", final_state="queued", lost_s=ev.lost_s,
                                         detail=ev.detail or "node failure", resume_work_s=rec.work_done_s))  # fmt: skip
            rec.touch()
        if stops and self.journal is not None:
            self.journal.record(stops)
        return finished, failed

    def release(self) -> list[str]:
        """Queue jobs whose submit time has come; expire inference whose demand window has passed.
        Returns the ids of expired (unserved) inference jobs."""
        now = self.clock.now_s()
        while self._pending and self._pending[-1].job.submit_s <= now + 1e-9:
            rec = self._pending.pop()
            rec.state = "queued"
            if rec.job.deadline_hard and rec.job.deadline_s is not None:
                self._hard[rec.job.job_id] = rec
            if gate_item(rec.job, self.epoch_unix_s) is not None:
                self._gated[rec.job.job_id] = rec
                continue
            self._queue(rec)
        self._gate(now)
        self._fail_hard_deadlines(now)
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
                self._ended.append(jid)
        if expired and self.journal is not None:
            detail = "expired: the inference demand window passed unserved"
            self.journal.record([Outcome(None, j, "stopped", final_state="failed", detail=detail) for j in expired])
        demand: dict[str, float] = {}
        for rec in self._must_run.values():
            home = self.home_pool(rec.job)
            if home is not None:
                demand[home] = demand.get(home, 0.0) + rec.job.gpus
        self.reserve.observe(self.slot, demand)
        return expired

    def _queue(self, rec: LoopJob) -> None:
        self._active[rec.job.job_id] = rec
        if rec.job.must_run:
            self._queued_inference[rec.job.job_id] = rec
            self._must_run[rec.job.job_id] = rec

    def _dep_state(self, job_id: str, tenant: str) -> str | None:
        """A dependency's public state for the gate: the loop's record, else ``state_of`` (the store)."""
        rec = self.records.get(job_id)
        if rec is not None:
            if rec.job.tenant != tenant:
                return None
            return {"pending": "queued", "expired": "failed"}.get(rec.state, rec.state)
        return self.state_of(job_id, tenant) if self.state_of is not None else None

    def _gate(self, now: float) -> None:
        """Release gated jobs whose dependencies and begin time are met; fail those whose dependency can never
        be met (journalled ``failed`` with the reason, like expiry); the rest stay held (``last_gated``)."""
        if not self._gated:
            self.last_gated = {}
            return
        items = [it for r in self._gated.values() if (it := gate_item(r.job, self.epoch_unix_s)) is not None]
        held, failed = gate(items, self.epoch_unix_s + now, self._dep_state)
        self.last_gated = held
        outcomes = []
        for jid in [j for j in self._gated if j not in held]:
            rec = self._gated.pop(jid)
            if jid in failed:
                rec.state = "failed"
                rec.end_s = now
                rec.touch()
                self._must_run.pop(jid, None)
                self._ended.append(jid)
                outcomes.append(Outcome(None, jid, "stopped", final_state="failed", detail=failed[jid]))
                log.info("job %s failed: %s", jid, failed[jid])
            else:
                self._queue(rec)
        if outcomes and self.journal is not None:
            self.journal.record(outcomes)

    def _fail_hard_deadlines(self, now: float) -> None:
        """A queued job with ``deadline_policy: hard`` that can no longer finish by its deadline (its remaining
        work at full power from now) is failed, naming why (journalled like expiry); a running one runs on."""
        if not self._hard:
            return
        outcomes = []
        for jid, rec in list(self._hard.items()):
            if rec.state not in ("queued", "running"):
                del self._hard[jid]  # ended
                continue
            deadline = rec.job.deadline_s
            left_s = rec.job.duration_s - rec.work_done_s
            if rec.state != "queued" or deadline is None or now + left_s <= deadline + 1e-9:
                continue
            del self._hard[jid]
            for d in (self._active, self._gated, self._queued_inference, self._must_run):
                d.pop(jid, None)
            rec.state = "failed"
            rec.end_s = now
            rec.touch()
            self._ended.append(jid)
            detail = (f"deadline_policy hard: cannot finish by the deadline ({left_s:.0f} s of work at full power, "
                      f"{max(deadline - now, 0.0):.0f} s left)")  # fmt: skip
            outcomes.append(Outcome(None, jid, "stopped", final_state="failed", detail=detail))
            log.info("job %s failed: %s", jid, detail)
        if outcomes and self.journal is not None:
            self.journal.record(outcomes)

    def explainer(self, report: TickReport) -> tuple[Explainer, dict[str, Job]]:
        """Why each job queued after the tick ``report`` describes waits (scheduler.reasons), and those jobs
        (gated ones included): what :class:`scheduler.reasons.WhyBoard` publishes."""
        queued = {j: r.job for j, r in self._active.items() if r.state == "queued"}
        queued.update((j, r.job) for j, r in self._gated.items())
        held: dict[str, int] = {}  # non-inference GPUs each tenant holds after the tick (what quotas count)
        for r in self._running.values():
            if not r.job.must_run:
                held[r.job.tenant] = held.get(r.job.tenant, 0) + r.job.gpus
        room = {t: float(q) - held.get(t, 0) for t, info in self.last_tenant_info.items()
                if (q := getattr(info, "quota_gpus", None)) is not None}  # fmt: skip
        ex = Explainer(report, self.power, self._elig, schedule=self.last_schedule, gated=self.last_gated,
                       quota_room=room)  # fmt: skip
        return ex, queued

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

    def constrain(self, decided: Mapping[str, Assignment], snap: Snapshot, actual: EnergySeries,
                  shed: Collection[str] = ()) -> Constrained:
        """:func:`scheduler.pipeline.constrain` (sanitize -> hold -> rules -> fast path) on this loop's state;
        ``shed``: the inference the plan sheds in this slot (``Decisions.shed``)."""
        return constrain(
            self.power, self._elig, decided, snap,
            active=StatesOf(self._active), running=self._running,
            running_states=[r.job_state() for r in self._running.values()],
            queued_must_run=[r.job_state() for r in self._must_run.values() if r.state == "queued"],
            queued=(r.job for r in self._active.values() if r.state == "queued"),  # read only with tenants
            jobs=JobsOf(self.records), healthy_gpus=self.executor.healthy_gpus(), actual=actual,
            home_pool=self.home_pool, measured_gpu_w=measured_gpu_power_w(self.executor), shed=shed,
        )  # fmt: skip

    def apply(self, run: Mapping[str, Assignment], dropped: Iterable[str] = (), owed: Iterable[str] = ()) -> ApplyResult:
        """Preempt running jobs absent from ``run`` (or moved pool), set power fractions, start new ones.

        Inference starts first; where its GPUs are not free on the nodes (the policy planned per pool, or it
        did not see the demand coming), preemptible non-inference work in an eligible pool is preempted,
        lowest priority and latest submitted first, until the inference fits (:meth:`make_room`).
        ``dropped``: what the fast path took out (a preemption's reason is then ``power_cap``). ``owed``: starts
        the rules made for a tenant owed its commitment (``RulesResult.owed_started``): the rules counted GPUs
        per pool, so where the gang finds no node room, :meth:`make_room` preempts other tenants' preemptible
        work in that pool until it fits (without this an owed job waits for nodes to drain).

        With a journal: ONE batch of intents (stops, power changes, starts) before the executor is asked
        anything, ONE batch of outcomes after; a preemption to make room for inference is journalled on its
        own when it is decided. An executor error leaves the job as it was (recorded as the outcome)."""
        now = self.clock.now_s()
        jn = self.journal
        cut = set(dropped)
        stops: list[tuple[str, str]] = []
        for jid in self._running:
            a = run.get(jid)
            if a is not None and a.pool == self._running[jid].pool:
                continue
            stops.append((jid, "power_cap" if jid in cut else ("plan" if a is None else f"move to {a.pool}")))
        changes: list[tuple[str, float]] = []
        new_starts: list[tuple[str, Assignment]] = []
        moved = {j for j, _ in stops}
        for jid, a in run.items():
            rec = self._active[jid]
            if rec.state == "running" and jid not in moved:
                if abs(a.power_fraction - rec.power_fraction) > 1e-12:
                    changes.append((jid, a.power_fraction))
                continue
            new_starts.append((jid, a))
        # inference first, then the larger gangs (first fit decreasing: fewer nodes left fragmented); stable
        new_starts.sort(key=lambda x: (not self._active[x[0]].job.must_run, -self._active[x[0]].job.gpus))
        aids: Iterator[Any] = iter(())
        if jn is not None:
            aids = iter(jn.intend(
                [Intent("preempt", j, {"reason": r}) for j, r in stops]
                + [Intent("set_power", j, {"power_fraction": f}) for j, f in changes]
                + [Intent("start", j, {"pool": a.pool, "power_fraction": a.power_fraction,
                                       "work_done_s": self._active[j].work_done_s}) for j, a in new_starts]
            ))  # fmt: skip
        outcomes: list[Outcome] = []
        preempted: list[tuple[str, float]] = []
        for jid, reason in stops:
            aid = next(aids, None)
            rec = self._running[jid]
            try:
                lost = self.executor.preempt(jid, reason)
            except ExecutorError as e:
                log.warning("preempt of %s failed: %s", jid, e)
                if jn is not None:
                    outcomes.append(Outcome(aid, jid, "error", data={"error": str(e)}))
                continue
            self._stopped(rec, lost)
            preempted.append((jid, lost))
            if jn is not None:
                outcomes.append(Outcome(aid, jid, "stopped", final_state="queued", lost_s=lost, detail=reason,
                                        resume_work_s=rec.work_done_s))  # fmt: skip
        changed: list[str] = []
        for jid, f in changes:
            aid = next(aids, None)
            rec = self._active[jid]
            try:
                self.executor.set_power_fraction(jid, f)
            except ExecutorError as e:
                if jn is not None:
                    outcomes.append(Outcome(aid, jid, "error", data={"error": str(e)}))
                continue
            self._run_power(rec, f)
            rec.touch()
            changed.append(jid)
            if jn is not None:
                outcomes.append(Outcome(aid, jid, "ok", data={"power_fraction": f}))
        starts: list[str] = []
        failed: list[str] = []
        self._made_room = []
        owed_set = set(owed)
        protect = frozenset(self._active[j].job.tenant for j in owed_set if j in self._active)
        for jid, a in new_starts:
            aid = next(aids, None)
            rec = self._active[jid]
            if rec.state == "running":  # its stop above failed: it keeps running where it is
                if jn is not None:
                    outcomes.append(Outcome(aid, jid, "error", data={"error": "still running: its stop failed"}))
                continue
            placement, error = self._try_start(rec, a)
            if placement is None and (rec.job.must_run or jid in owed_set):
                placement, a, lost_list = self.make_room(rec, a, outcomes, protect=protect, started=starts)
                preempted.extend(lost_list)
            if placement is None:
                failed.append(jid)
                if jn is not None:
                    outcomes.append(Outcome(aid, jid, "error" if error else "no_fit",
                                            data={"error": error} if error else {}))  # fmt: skip
                continue
            self._run_start(rec, a)
            rec.nodes = tuple(placement.nodes)
            if rec.first_start_s is None:
                rec.first_start_s = now
            rec.touch()
            starts.append(jid)
            if jn is not None:
                outcomes.append(Outcome(aid, jid, "started", pool=a.pool, nodes=rec.nodes,
                                        power_fraction=a.power_fraction))  # fmt: skip
        if jn is not None and outcomes:
            for jid in jn.record(outcomes):  # cancelled while this tick started it: stop it again at once
                if jid in self._running and self.cancel(jid, already_final=True):
                    starts.remove(jid)
        return ApplyResult(tuple(starts), tuple(preempted), tuple(changed), tuple(failed))

    def _try_start(self, rec: LoopJob, a: Assignment) -> tuple[Any, str | None]:
        """``executor.start`` in the decided pool; an executor error is (None, its message)."""
        try:
            return self.executor.start(rec.job, a.pool, a.power_fraction, rec.work_done_s), None
        except ExecutorError as e:
            log.warning("start of %s in %s failed: %s", rec.job.job_id, a.pool, e)
            return None, str(e)

    def _stopped(self, rec: LoopJob, lost: float) -> None:
        """Bookkeeping of a running job the loop preempted (it goes back to the queue)."""
        rec.state = "queued"
        rec.preemptions += 1
        rec.lost_work_s += lost
        rec.work_done_s = min(max(rec.work_done_s - lost, 0.0), rec.job.duration_s)
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

    def make_room(self, rec: LoopJob, a: Assignment, outcomes: list[Outcome] | None = None, *,
                  protect: Collection[str] = (), started: Collection[str] = (),
                  ) -> tuple[Any, Assignment, list[tuple[str, float]]]:  # fmt: skip
        """Start ``rec`` whose gang found no node room, preempting preemptible non-inference work
        (:func:`room_victims`) when the free GPUs plus that work's can hold it. Inference: the planned pool,
        then every eligible pool in :func:`inference_pool_order` (first without preempting anything). Work
        the rules started for an owed commitment: its decided pool only, on one node (:func:`node_victims`:
        only work whose preemption makes the gang fit), never preempting jobs of a tenant in ``protect``
        (tenants owed now) nor ones ``started`` this tick. Returns (placement or None,
        assignment used, [(preempted id, lost_s)]). With a journal each preemption's intent is written when
        it is decided; its outcome joins ``outcomes`` (the apply's batch)."""
        job = rec.job
        jn = self.journal
        inference = job.must_run
        f = 1.0 if inference else a.power_fraction
        order = [self.power.index[a.pool]]
        if inference:
            order += [p for p in inference_pool_order(self.site, self._elig(job)) if self.power.names[p] != a.pool]
            for cand in start_candidates(self.site, job, a)[1:]:  # without preempting anything
                placement, _ = self._try_start(rec, cand)
                if placement is not None:
                    return placement, cand, []
        for p in order:
            name = self.power.names[p]
            if p not in self._elig(job):
                continue
            free_by_node = self.executor.free_gpus_by_node(name)
            free = int(free_by_node.sum())
            if inference:
                victims = room_victims(job, free, ((r.job.job_id, r.job) for r in self._running.values()
                                                   if r.pool == name))  # fmt: skip
            else:
                victims = node_victims(job, free_by_node.tolist(), (
                    (r.job.job_id, r.job, r.nodes) for r in self._running.values()
                    if r.pool == name and r.job.tenant not in protect and r.job.job_id not in started
                ), self.site.pool(name).gpus_per_node)  # fmt: skip
            if victims is None:
                continue
            lost_list: list[tuple[str, float]] = []
            for vid in victims:
                v = self._running[vid]
                reason = f"room for {'inference' if inference else 'owed work'} {job.job_id}"
                aid = jn.intend([Intent("preempt", vid, {"reason": reason})])[0] if jn is not None else None
                try:
                    lost = self.executor.preempt(vid, reason)
                except ExecutorError as e:
                    if jn is not None and outcomes is not None:
                        outcomes.append(Outcome(aid, vid, "error", data={"error": str(e)}))
                    continue
                self._stopped(v, lost)
                if jn is not None and outcomes is not None:
                    outcomes.append(Outcome(aid, vid, "stopped", final_state="queued", lost_s=lost, detail=reason,
                                            resume_work_s=v.work_done_s))  # fmt: skip
                free += v.job.gpus
                lost_list.append((vid, lost))
                self._made_room.append(vid)
                if free < job.gpus:
                    continue
                placement, _ = self._try_start(rec, Assignment(name, f))
                if placement is not None:
                    log.info("%s: preempted %d job(s) in %s to make room", job.job_id, len(lost_list), name)
                    return placement, Assignment(name, f), lost_list
            return None, a, lost_list
        log.warning("%s (%d GPUs): no eligible pool can make room", job.job_id, job.gpus)
        return None, a, []

    def power_now(self, healthy: Mapping[str, int]) -> tuple[float, NDArray[Any]]:
        """Facility W drawn by what runs now (every running job at its power fraction) and the busy GPUs per
        pool: the peak of the interval that starts now, what the caps are checked against."""
        pw = self.power
        tab = self._tab
        m = tab.n
        n_p = len(pw.names)
        pool = tab.pool[:m]
        g = tab.gpus[:m]
        used = tab.used[:m].astype(np.float64)
        busy = np.bincount(pool, weights=g * used, minlength=n_p)
        active = np.bincount(pool, weights=g * tab.frac[:m] * pw.tdp_w[pool] * used, minlength=n_p)
        return float(pw.facility_w(active, busy, pw.healthy_array(healthy))), busy

    def _account(self, t0: float, dt: float, step_s: float, actual: EnergySeries,
                 healthy: Mapping[str, int]) -> tuple[list[str], list[str], IntervalUsage]:  # fmt: skip
        """Let the executor run ``step_s`` seconds and account the interval ``[t0, t0 + dt]`` (``dt`` > 0)
        through the one integrator with the running set as it was at ``t0``: a job that finished or failed
        inside it is charged up to that moment. Vectorised over the running jobs (:class:`RunTable`): per-job
        energy and carbon, per-tenant usage by UTC day, the ``usage_sink``. Returns (finished, failed, usage)."""
        pw = self.power
        tab = self._tab
        m = tab.n
        pool = tab.pool[:m]
        g = tab.gpus[:m]
        frac = tab.frac[:m]
        runf = tab.used[:m].astype(np.float64)
        self._slot_t0 = t0
        t_end = t0 + dt
        events = self.executor.step(step_s)
        ev_time = self.drive_time or not self._self_timed  # a self-timed executor's event times are its own
        for ev in events:
            if ev.kind in ("finished", "failed") and ev.job_id in tab.row:
                t_ev = min(max(ev.time_s, t0), t_end) if ev_time else t_end
                i = tab.row[ev.job_id]
                runf[i] = max(t_ev - t0, 0.0) / dt
        iv = integrate(pw, pool, g, frac, runf, pw.healthy_array(healthy), float(actual.wind_w[0]),
                       float(actual.carbon_g_per_kwh[0]), dt)  # fmt: skip
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
        if self.usage_sink is not None:
            self.usage_sink(tab.row, iv)
        finished, failed = self.ingest(events)
        self._read_progress()
        return finished, failed, iv

    def _read_progress(self) -> None:
        """Progress of jobs still running, from the executor's progress channel."""
        if not self._running:
            return
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

    def advance(self, actual: EnergySeries) -> tuple[list[str], dict[str, Any]]:
        """Let one slot pass (the loop drives time); account the slot. Returns (finished ids, accounting):
        peak power at the slot start, mean power with the run fraction of jobs that finish inside the slot."""
        healthy = self.executor.healthy_gpus()
        peak_w, _ = self.power_now(healthy)
        finished, _, iv = self._account(self.clock.now_s(), self.slot_s, self.slot_s, actual, healthy)
        return finished, self._accounting(healthy, peak_w, iv, float(actual.wind_w[0]))

    def settle(self, fallback: EnergySeries) -> tuple[list[str], list[str]]:
        """Where time passes outside the loop (``drive_time=False``): bring the executor to now (a simulated
        one is stepped by the time passed, a self-timed one polled) and account the interval since the
        previous tick (module docstring, "Time"; ``fallback``: the energy of the first interval, which no
        tick opened). Returns (finished ids, failed ids)."""
        now = self.clock.now_s()
        t0 = self._open_t0 if self._open_t0 is not None else now
        dt = now - t0
        self._open_t0 = now
        self.settled = None
        if dt <= 0:
            return self.ingest(self.executor.step(0.0))
        actual = self._open_actual if self._open_actual is not None else fallback
        finished, failed, iv = self._account(t0, dt, 0.0 if self._self_timed else dt, actual, self._open_healthy)
        self.settled = iv
        return finished, failed

    def _accounting(self, healthy: Mapping[str, int], peak_w: float, iv: IntervalUsage | None,
                    wind_w: float) -> dict[str, Any]:  # fmt: skip
        return {
            "healthy": healthy,
            "busy": {n: float(iv.busy_gpus[i]) for i, n in enumerate(self.power.names)} if iv is not None else {},
            "facility_w": iv.facility_w if iv is not None else peak_w,
            "facility_peak_w": peak_w,
            "grid_import_w": iv.grid_import_w if iv is not None else max(peak_w - wind_w, 0.0),
            "grid_import_peak_w": max(peak_w - wind_w, 0.0),
            "carbon_g": iv.carbon_g if iv is not None else 0.0,
            "energy_wind_j": iv.energy_wind_j if iv is not None else 0.0,
            "energy_grid_j": iv.energy_grid_j if iv is not None else 0.0,
            "interval_s": iv.dt_s if iv is not None else 0.0,
        }

    # -------------------------------------------------------------------------------- one tick

    def tick(self, actual: EnergySeries, forecast: EnergySeries) -> TickReport:
        """One tick: ``actual`` holds this slot's real values at index 0 (wind, caps, carbon); ``forecast``
        starts at this slot and spans the planning horizon. The same steps for the simulation, the demo and
        the server (module docstring); the seams decide only how time passes and what is journalled."""
        if actual.slot_s != self.site.slot_s:
            raise InputError(f"energy slot_s {actual.slot_s} differs from the site's slot ({self.site.slot_s} s)")
        self._cancelled = []
        self._ended = []
        settled_fin: list[str] = []
        failed: list[str] = []
        if not self.drive_time:
            settled_fin, failed = self.settle(actual)
            self.slot = int(self.clock.now_s() // self.slot_s)
            self._now[0] = self.slot
        if self.inbox is not None:
            self.inbox(self)
        now = self.clock.now_s()
        failed += self.collect()
        expired = self.release()
        snap = self.snapshot(forecast)
        self.last_tenant_info = snap.tenant_info
        decisions, decide_s = self.decide(snap)
        c = self.constrain(decisions.run, snap, actual, decisions.shed)
        self.last_constrained = c
        self.last_plan = decisions.plan
        self.last_schedule = schedule_of(decisions)
        fp, rules = c.fast_path, c.rules
        applied = self.apply(c.run, fp.dropped, rules.owed_started)
        violations: list[str] = []
        inf_demand = sum(r.job.gpus for r in self._must_run.values())
        inf_served = sum(r.job.gpus for r in self._running.values() if r.job.must_run)
        queued = len(self._active) - len(self._running)
        n_running = len(self._running)
        wind = float(actual.wind_w[0])
        if self.drive_time:
            finished, acc = self.advance(actual)
        else:  # the interval opened now is accounted at the next tick (settle)
            healthy = self.executor.healthy_gpus()
            peak_w, busy_now = self.power_now(healthy)
            self._open_healthy = dict(healthy)
            self._open_actual = actual
            finished = settled_fin
            acc = self._accounting(healthy, peak_w, self.settled, wind)
            acc.update(facility_w=peak_w, grid_import_w=acc["grid_import_peak_w"],
                       busy={n: float(busy_now[i]) for i, n in enumerate(self.power.names)})  # fmt: skip
        cap = float(actual.grid_cap_w[0])
        smax = float(actual.site_max_w[0])
        tol = 1e-6 * max(1.0, smax)
        if acc["facility_peak_w"] > smax + tol:
            violations.append(f"slot {self.slot}: facility {acc['facility_peak_w']:.0f} W > site max {smax:.0f} W")
        if acc["grid_import_peak_w"] > cap + tol:
            violations.append(f"slot {self.slot}: grid import {acc['grid_import_peak_w']:.0f} W > cap {cap:.0f} W")
        if violations:  # what the fast path could not shed: the idle site itself (it sheds inference too, last)
            floor = self.power.base_w(self.power.healthy_array(self.executor.healthy_gpus()))
            why = ("the idle site alone exceeds the cap: no schedule meets this slot"
                   if floor > min(cap + wind, smax) + tol else "not the idle site: a stop that failed, or a draw above the model")
            for v in violations:
                log.warning("cap violation (%s): %s", why, v)
        if self.keep_reports:  # the server's reports (and their violations) go to its metrics and logs
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
            interval_s=acc["interval_s"],
            measured_facility_w=c.measured.facility_w if c.measured is not None else None,
            power_source="measured" if c.measured is not None else "model",
            cancelled=tuple(self._cancelled),
        )
        log.info(
            "tick slot=%d facility=%.0fW import=%.0fW cap=%.0fW wind=%.0fW starts=%d preempt=%d finish=%d queued=%d",
            self.slot, report.facility_w, report.grid_import_w, cap, wind, len(report.starts),
            len(report.preemptions), len(report.finishes), queued,
        )  # fmt: skip
        if self.drive_time:
            self.slot += 1
            self._now[0] = self.slot
        if not self.keep_records:
            self.forget(self._ended)
        if self.keep_reports:
            self.reports.append(report)
        for obs in self.observers:
            obs(report)
        return report

    def forget(self, job_ids: Iterable[str]) -> None:
        """Drop the records of jobs in a final state (finished, expired, cancelled): the server's store
        keeps them; its loop keeps only what is active."""
        for jid in job_ids:
            rec = self.records.get(jid)
            if rec is not None and rec.state in ("finished", "expired", "cancelled", "failed"):
                del self.records[jid]

    # ------------------------------------------------------------------------------- accounting

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.records.values():
            out[r.state] = out.get(r.state, 0) + 1
        return out

    @property
    def active_records(self) -> Mapping[str, LoopJob]:
        """The queued and running jobs (read only)."""
        return self._active

    @property
    def running_records(self) -> Mapping[str, LoopJob]:
        """The running jobs (read only)."""
        return self._running

    @property
    def running_ids(self) -> tuple[str, ...]:
        return tuple(self._running)

    @property
    def queued_ids(self) -> tuple[str, ...]:
        return tuple(j for j, r in self._active.items() if r.state == "queued")
