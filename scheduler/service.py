"""The control plane of ``windward server``: the service (state-backed control loop in a thread) and the
FastAPI application over it (:func:`create_app`).

Time. The service runs on a :class:`ServiceClock`: Unix seconds that advance ``speedup`` times faster
than the wall clock (``--tick-seconds S``: one slot of the site every ``S`` wall seconds; without it, real
time). Its *epoch* (slot 0, the energy series' start) is fixed at the first start and kept in the state
store, so a restart continues the same timeline. Inside the loop, times are seconds since the epoch.

The tick (DESIGN section 4), every slot and at once (coalesced) on a submission, a cancel or a congestion
event::

    1. advance the executor to now; persist finished / failed / preempted events and the usage accrued
    2. stop running jobs whose tenant cancelled them (journalled)
    3. snapshot: active jobs from the store + executor progress, forecast with congestion caps, tenant_info
    4. decide: the policy plans the horizon and returns the first slot
    5. apply: preempt, change power, start (each action journalled: intent row before, outcome after)
    6. fast path: if the *actual* power of what now runs breaks a cap (wind short of forecast, a congestion
       event), lower GPU power limits first, then preempt the lowest-priority preemptible work
    7. publish: plan summary (per-slot dual prices), metrics

``Snapshot.tenant_info`` passed to the policy (one entry per tenant; built by
:func:`scheduler.accounting.tenant_info`)::

    {"<tenant>": {"priority": int, "quota_gpus": int | None, "commitment_owed_gpu_h": float,
                  "commitment_period": "day" | "week" | None, "commitment_gpu_h": float,
                  "delivered_gpu_h": float, "fair_share_weight": float, "fair_share": float,
                  "running_gpus": int, "demand_gpus": int, "clearance": str,
                  "jurisdictions": [str], "pools_allowed": [str]}}

Crash safety: everything acknowledged is in SQLite (WAL, synchronous=FULL) before the reply; executor
actions are journalled; on start :meth:`StateStore.recover` re-adopts what the executor still runs (Ray)
and requeues the rest from its last checkpoint (the simulated executor loses everything with the process).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from scheduler import accounting
from scheduler.auth import Authenticator, Principal, admit_job, tenant_pools
from scheduler.energy import EnergySeries
from scheduler.errors import ExecutorError, InputError
from scheduler.control import enforce_caps
from scheduler.jobs import Job, pool_matches
from scheduler.models import JobSpec, Site, Tenant, TenantsFile
from scheduler.policies.base import Assignment, JobState, Snapshot
from scheduler.state import (
    Congestion,
    IdempotencyConflict,
    JobProgress,
    JobRecord,
    StateStore,
    SubmitResult,
    iso_utc,
)

if TYPE_CHECKING:
    from scheduler.executors.base import Executor
    from scheduler.policies.base import Policy

log = logging.getLogger(__name__)

#: Largest request body accepted (bytes); larger ones get 413 before parsing.
MAX_BODY_BYTES = 64 * 1024


# ============================================================================================ time


class ServiceClock:
    """Unix seconds of the service's timeline: ``start_unix_s + (wall() - wall0) * speedup``."""

    def __init__(self, start_unix_s: float, speedup: float = 1.0, wall: Callable[[], float] = time.time) -> None:
        if not speedup > 0:
            raise InputError(f"clock speedup must be > 0, got {speedup}")
        self._wall = wall
        self._wall0 = wall()
        self._start = float(start_unix_s)
        self.speedup = float(speedup)

    def now_unix_s(self) -> float:
        return self._start + (self._wall() - self._wall0) * self.speedup

    def wall_s_until(self, unix_s: float) -> float:
        """Wall seconds until the timeline reaches ``unix_s`` (<= 0: already there)."""
        return (unix_s - self.now_unix_s()) / self.speedup


# ====================================================================================== the service


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    """What ``windward server`` was asked to run (``--tick-seconds``: wall seconds per slot; None: real time)."""

    site: Site
    tenants: TenantsFile
    state_path: str
    executor: str = "simulated"
    ray_address: str | None = None
    tick_seconds: float | None = None
    energy: str | None = None
    energy_start: datetime | None = None
    energy_days: float = 28.0
    forecast: str = "perfect"
    policy: str = "windward"
    horizon_hours: float = 24.0
    min_event_tick_interval_s: float = 0.25
    seed: int = 0


@dataclass(slots=True)
class _PlanView:
    computed_unix_s: float
    slot: int
    status: str
    summary: dict[str, Any]


@dataclass(slots=True)
class TickOutcome:
    """What one tick did (for logs, tests and the benchmark)."""

    slot: int
    now_s: float
    started: list[str] = field(default_factory=list)
    preempted: list[str] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    fast_path_power: int = 0
    fast_path_preempted: int = 0
    facility_w: float = 0.0
    grid_import_w: float = 0.0
    grid_cap_w: float = 0.0
    site_max_w: float = 0.0
    plan_s: float = 0.0
    tick_s: float = 0.0
    n_jobs: int = 0
    actual: EnergySeries | None = None
    busy_gpus: dict[str, int] = field(default_factory=dict)


def make_policy(name: str, horizon_hours: float) -> Policy:
    """The policy by name (``scheduler.policies.get_policy``: windward, backfill, greedy-green)."""
    from scheduler.policies import get_policy

    return get_policy(name, horizon_hours=horizon_hours)  # type: ignore[no-any-return]


def make_executor(config: ServiceConfig, now_s: float) -> Executor:
    """``simulated`` (virtual clock started at ``now_s``) or ``ray`` (connects to ``--address``)."""
    if config.executor == "simulated":
        from scheduler.executors.simulated import SimulatedExecutor, VirtualClock

        return SimulatedExecutor(config.site, VirtualClock(now_s))
    if config.executor == "ray":
        from scheduler.executors.ray_executor import RayExecutor  # type: ignore[import-not-found]

        return RayExecutor(config.site, address=config.ray_address)  # type: ignore[no-any-return]
    raise InputError(f"--executor {config.executor!r}: allowed: ['ray', 'simulated']")


class Service:
    """The state-backed control plane. Thread-safe: API threads submit/cancel, one loop thread ticks."""

    def __init__(
        self,
        config: ServiceConfig,
        *,
        wall: Callable[[], float] = time.time,
        executor: Executor | None = None,
        policy: Policy | None = None,
    ) -> None:
        self.config = config
        self.site = config.site
        self.auth = Authenticator(config.tenants)
        self.tenants: dict[str, Tenant] = {t.name: t for t in config.tenants.tenants}
        self.tenant_pools: dict[str, tuple[str, ...]] = {t.name: tenant_pools(self.site, t) for t in config.tenants.tenants}
        self.store = StateStore(config.state_path)
        slot_s = self.site.slot_s
        wall_now = wall()
        self.epoch_unix_s = self.store.epoch_unix_s(math.floor(wall_now / slot_s) * slot_s)
        last = self.store.meta("last_tick_unix_s")
        start = max(wall_now, float(last)) if last is not None else wall_now
        speedup = slot_s / config.tick_seconds if config.tick_seconds else 1.0
        self.clock = ServiceClock(start, speedup, wall)
        self._wall = wall
        self.policy: Policy = policy if policy is not None else make_policy(config.policy, config.horizon_hours)
        self._energy = self._load_energy()
        from scheduler.signals import make_forecaster

        self._forecaster = make_forecaster(
            config.forecast, self._energy, seed=config.seed, wind_capacity_w=self.site.wind.contract_mw * 1e6
        )
        self._horizon_slots = max(1, int(round(config.horizon_hours * 3600 / slot_s)))
        from scheduler.policies.capacity import SitePower

        self._power = SitePower(self.site)
        self.executor: Executor = executor if executor is not None else make_executor(config, self.now_s())
        self._exec_now_s = self.now_s()
        rec = self.store.recover(self.executor.running().keys(), self.clock.now_unix_s())
        if rec.requeued or rec.adopted or rec.open_actions:
            log.warning(
                "recovered state: %d running job(s) re-adopted, %d requeued from checkpoints (%.0f s of work "
                "lost), %d interrupted action(s) closed",
                len(rec.adopted), len(rec.requeued), rec.lost_work_s, rec.open_actions,
            )  # fmt: skip
        self.recovery = rec
        self._tick_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ticks = 0
        self._plan: _PlanView | None = None
        self._last_outcome: TickOutcome | None = None
        self._last_error: str | None = None
        self._metrics: Any = None
        self._metrics_lock = threading.Lock()

    # ----------------------------------------------------------------------------------- time

    def now_s(self) -> float:
        """Seconds since the service epoch on the service timeline."""
        return self.clock.now_unix_s() - self.epoch_unix_s

    def _load_energy(self) -> EnergySeries:
        from scheduler.signals import load_energy

        start = self.config.energy_start or datetime.fromtimestamp(self.epoch_unix_s, UTC)
        series = load_energy(self.config.energy, self.site, start, self.config.energy_days, seed=self.config.seed)
        log.info("energy: %s from %s, %d slots", series.source, series.start_utc.isoformat(), series.n_slots)
        return series

    def _caps(self, series: EnergySeries, first_slot: int, events: list[Congestion]) -> EnergySeries:
        """``series`` (starting at ``first_slot``) with congestion caps applied: cap = min(cap, event cap)."""
        if not events:
            return series
        slot_s = series.slot_s
        starts = self.epoch_unix_s + (first_slot + np.arange(series.n_slots)) * slot_s
        cap = series.grid_cap_w.copy()
        for ev in events:
            overlap = (starts < ev.end_unix_s) & (starts + slot_s > ev.start_unix_s)
            cap = np.where(overlap, np.minimum(cap, ev.cap_mw * 1e6), cap)
        return replace(series, grid_cap_w=cap)

    # ------------------------------------------------------------------------------- API side

    def submit(self, tenant: Tenant, spec: JobSpec, idempotency_key: str | None) -> SubmitResult:
        """Admit (sovereignty, fit) and persist a job; wake the loop. Raises InputError / IdempotencyConflict."""
        probe = Job(
            job_id=spec.name, tenant=tenant.name, kind=spec.kind, submit_s=0.0, gpus=spec.gpus,
            duration_s=spec.duration_s, preemptible=spec.preemptible, pool=spec.pool,
            priority=spec.priority, jurisdiction=spec.requires.jurisdiction, clearance=spec.requires.clearance,
        )  # fmt: skip
        admit_job(self.site, tenant, probe)
        res = self.store.submit(tenant.name, spec, idempotency_key, self.clock.now_unix_s())
        if res.created:
            self._wake.set()
        return res

    def cancel(self, job_id: str) -> JobRecord:
        rec = self.store.request_cancel(job_id, self.clock.now_unix_s())
        self._wake.set()
        return rec

    def add_congestion(self, cap_mw: float, start_unix_s: float, end_unix_s: float, by: str, reason: str) -> Congestion:
        ev = self.store.add_congestion(cap_mw, start_unix_s, end_unix_s, by, self.clock.now_unix_s(), reason)
        m = self._metrics_obj()
        if m is not None:
            now = self.clock.now_unix_s()
            with self._metrics_lock:
                m.observe_congestion(1, active=start_unix_s <= now < end_unix_s)
        self._wake.set()
        return ev

    def active_congestion(self) -> list[Congestion]:
        return self.store.congestion_events(active_after_unix_s=self.clock.now_unix_s())

    def queue(self, tenant: str | None) -> dict[str, Any]:
        recs = self.store.list_jobs(tenant=tenant, states=("running", "queued"))
        running = [r for r in recs if r.state == "running"]
        queued = [r for r in recs if r.state == "queued"]
        return {
            "running": [r.view() for r in running],
            "queued": [dict(r.view(), position=i + 1) for i, r in enumerate(queued)],
            "counts": {"running": len(running), "queued": len(queued)},
        }

    def accounts(self) -> list[accounting.TenantAccount]:
        return accounting.accounts(
            self.site,
            list(self.tenants.values()),
            self.store.usage_by_tenant(),
            self.store.usage_daily(),
            self.store.running_gpus_by_tenant(),
            self.store.demand_gpus_by_tenant(),
            self.clock.now_unix_s(),
        )

    def usage(self, tenant: str | None) -> dict[str, Any]:
        accts = [a for a in self.accounts() if tenant is None or a.tenant == tenant]
        return {
            "as_of_utc": iso_utc(self.clock.now_unix_s()),
            "tenants": [a.view() for a in accts],
            "daily": self.store.usage_daily(tenant),
        }

    def plan_summary(self) -> dict[str, Any]:
        p = self._plan
        if p is None:
            return {"status": "no_plan_yet", "detail": "the first tick has not run yet", "policy": self.policy.name,
                    "computed_utc": None, "slots": []}  # fmt: skip
        return dict(p.summary)

    def readiness(self) -> dict[str, bool]:
        try:
            exec_ok = isinstance(self.executor.healthy_gpus(), dict)
        except Exception:  # noqa: BLE001 - any executor failure means "not ready"
            exec_ok = False
        return {"state_open": self.store.check(), "executor_ready": exec_ok, "first_tick_done": self._ticks > 0}

    def _metrics_obj(self) -> Any:
        if self._metrics is None:
            try:
                from scheduler.metrics import Metrics
            except ImportError:
                return None
            self._metrics = Metrics(self.site, wall_clock=self._wall)
        return self._metrics

    def metrics_exposition(self) -> tuple[bytes, str]:
        m = self._metrics_obj()
        if m is None:
            return b"", "text/plain"
        from scheduler.metrics import METRICS_CONTENT_TYPE

        with self._metrics_lock:
            return m.exposition(), METRICS_CONTENT_TYPE

    # ------------------------------------------------------------------------------- the loop

    def start(self) -> None:
        """Run the first tick now, then tick in a background thread."""
        self._thread = threading.Thread(target=self._run, name="windward-loop", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.executor.close()
        self.store.close()

    def _run(self) -> None:
        slot_s = self.site.slot_s
        while not self._stop.is_set():
            try:
                self.tick()
                self._last_error = None
            except Exception as e:  # noqa: BLE001 - the loop must survive a bad tick and say why
                self._last_error = f"{type(e).__name__}: {e}"
                log.exception("tick failed")
            next_slot_unix = self.epoch_unix_s + (math.floor(self.now_s() / slot_s) + 1) * slot_s
            wait_s = max(self.clock.wall_s_until(next_slot_unix), 0.0)
            if self._wake.wait(timeout=wait_s):
                # coalesce a burst of submissions into one tick
                self._stop.wait(self.config.min_event_tick_interval_s)
            self._wake.clear()

    def tick(self) -> TickOutcome:
        """One pass of the control loop (module docstring). Safe to call from tests directly."""
        with self._tick_lock:
            t0 = time.perf_counter()
            out = self._tick()
            out.tick_s = time.perf_counter() - t0
            self._ticks += 1
            self._last_outcome = out
            self.store.set_meta("last_tick_unix_s", repr(self.clock.now_unix_s()))
            self._publish_metrics(out)
            log.info(
                "tick slot %d: %d jobs, %d started, %d preempted, %d finished, fast path %d/%d, "
                "facility %.0f W (grid %.0f / cap %.0f W), plan %.3f s, tick %.3f s",
                out.slot, out.n_jobs, len(out.started), len(out.preempted), len(out.finished),
                out.fast_path_power, out.fast_path_preempted, out.facility_w, out.grid_import_w,
                out.grid_cap_w, out.plan_s, out.tick_s,
            )  # fmt: skip
            return out

    # -- 1. advance the executor
    def _advance(self, out: TickOutcome, now_s: float) -> None:
        dt = max(now_s - self._exec_now_s, 0.0)
        running_before = dict(self.executor.running())
        events = self.executor.step(dt)
        t_prev = self._exec_now_s
        self._exec_now_s = now_s
        now_unix = self.epoch_unix_s + now_s
        end_of: dict[str, float] = {}
        for ev in events:
            if ev.job_id is None:
                continue
            if ev.kind == "finished":
                end_of[ev.job_id] = ev.time_s
                self.store.record_stopped(None, ev.job_id, "finished", 0.0, self.epoch_unix_s + ev.time_s, "finished")
                out.finished.append(ev.job_id)
            elif ev.kind == "failed":
                end_of[ev.job_id] = ev.time_s
                # a failure of the node, not of the job: it resumes from its checkpoint elsewhere
                self.store.record_stopped(None, ev.job_id, "queued", ev.lost_s, now_unix, ev.detail or "node failure")
                out.failed.append(ev.job_id)
        if dt <= 0 or not running_before:
            return
        recs = {r.id: r for r in (self.store.get(j) for j in running_before) if r is not None}
        slot = min(int(t_prev // self.site.slot_s), self._energy.n_slots - 1)
        actual = self._caps(self._energy.window(slot, 1), slot, self.store.congestion_events(now_unix - dt))
        healthy = self.executor.healthy_gpus()
        runs = [(ri.pool, recs[j].gpus, ri.power_fraction) for j, ri in running_before.items() if j in recs]
        sp = accounting.site_power(self.site, runs, healthy, float(actual.wind_w[0]))
        deltas = []
        for j, ri in running_before.items():
            if j not in recs:
                continue
            span = max(min(end_of.get(j, now_s), now_s) - t_prev, 0.0)
            deltas += accounting.job_usage(
                self.site,
                [JobProgress(j, ri.pool, ri.nodes, ri.power_fraction, ri.work_done_s, ri.checkpoint_work_s)],
                {j: recs[j].gpus}, {j: recs[j].tenant}, span, sp.grid_share, float(actual.carbon_g_per_kwh[0]),
            )  # fmt: skip
        progress = [
            JobProgress(j, ri.pool, ri.nodes, ri.power_fraction, ri.work_done_s, ri.checkpoint_work_s)
            for j, ri in self.executor.running().items()
        ]
        self.store.record_progress(progress, deltas, accounting.day_key(now_unix - dt / 2), now_unix)

    # -- journalled actions
    def _start(self, job: Job, a: Assignment, work_done_s: float, out: TickOutcome) -> bool:
        now_unix = self.clock.now_unix_s()
        aid = self.store.intend("start", job.job_id, {"pool": a.pool, "power_fraction": a.power_fraction,
                                                      "work_done_s": work_done_s}, now_unix)  # fmt: skip
        try:
            placement = self.executor.start(job, a.pool, a.power_fraction, work_done_s)
        except ExecutorError as e:
            self.store.record_outcome(aid, "error", {"error": str(e)}, now_unix)
            log.warning("start of %s in %s failed: %s", job.job_id, a.pool, e)
            return False
        if placement is None:
            self.store.record_outcome(aid, "no_fit", {}, now_unix)
            return False
        labels = dict(self.site.pool(a.pool).labels)
        self.store.record_started(aid, job.job_id, a.pool, labels, placement.nodes, a.power_fraction, now_unix)
        out.started.append(job.job_id)
        return True

    def _preempt(self, job_id: str, reason: str, final_state: str) -> float:
        now_unix = self.clock.now_unix_s()
        aid = self.store.intend("preempt", job_id, {"reason": reason}, now_unix)
        try:
            lost = self.executor.preempt(job_id, reason)
        except ExecutorError as e:
            self.store.record_outcome(aid, "error", {"error": str(e)}, now_unix)
            raise
        self.store.record_stopped(aid, job_id, final_state, lost, now_unix, reason)
        return lost

    def _set_power(self, job_id: str, f: float) -> None:
        now_unix = self.clock.now_unix_s()
        aid = self.store.intend("set_power", job_id, {"power_fraction": f}, now_unix)
        self.executor.set_power_fraction(job_id, f)
        self.store.record_outcome(aid, "ok", {"power_fraction": f}, now_unix)

    # -- the tick
    def _tick(self) -> TickOutcome:
        now_s = self.now_s()
        slot_s = self.site.slot_s
        slot = int(now_s // slot_s)
        out = TickOutcome(slot=slot, now_s=now_s)
        self._advance(out, now_s)
        now_unix = self.epoch_unix_s + now_s

        # 2. cancellations of running jobs
        active = self.store.active_jobs()
        for r in active:
            if r.state == "running" and r.cancel_requested:
                if self._is_running(r.id):
                    self._preempt(r.id, "cancelled", "cancelled")
                else:
                    self.store.record_stopped(None, r.id, "cancelled", 0.0, now_unix, "cancelled")
                out.cancelled.append(r.id)
        if out.cancelled:
            active = self.store.active_jobs()

        # 3. snapshot
        running_now = self.executor.running()
        states: list[JobState] = []
        for r in active:
            job = r.to_job(self.epoch_unix_s, self.tenant_pools.get(r.tenant, ()))
            ri = running_now.get(r.id)
            if r.state == "running" and ri is not None:
                states.append(JobState(job, "running", ri.work_done_s, ri.checkpoint_work_s, ri.pool,
                                       ri.power_fraction, ri.nodes))  # fmt: skip
            else:
                states.append(JobState(job, "queued", r.work_done_s, r.checkpoint_work_s, r.pool))
        out.n_jobs = len(states)
        e_slot = min(slot, self._energy.n_slots - 1)
        congestion = self.store.congestion_events(active_after_unix_s=now_unix)
        forecast = self._caps(self._forecaster.forecast(e_slot, self._horizon_slots), slot, congestion)
        accts = self.accounts()
        info = accounting.tenant_info(accts, self.tenants, self.tenant_pools)
        snap = Snapshot(
            now_s=now_s, slot=slot, site=self.site, jobs=tuple(states),
            healthy_gpus=self.executor.healthy_gpus(), forecast=forecast, tenant_info=info,
        )  # fmt: skip

        # 4. decide
        tp = time.perf_counter()
        decisions = self.policy.decide(snap)
        out.plan_s = time.perf_counter() - tp

        # 5. sanitize (eligible pools only; running must-run / non-preemptible work keeps running) and the
        #    FAST PATH against this slot's ACTUAL wind and caps (congestion included): lower power limits
        #    first, then drop new starts / preempt the lowest-priority preemptible work (control.enforce_caps)
        by_id = {s.job.job_id: s for s in states}
        run = self._sanitize(decisions.run, by_id)
        actual = self._caps(self._energy.window(e_slot, 1), slot, congestion)
        running_pool = {s.job.job_id: s.pool or "" for s in states if s.state == "running"}
        fp = enforce_caps(
            self._power, run, {j: by_id[j].job for j in run}, running_pool, snap.healthy_gpus,
            float(actual.wind_w[0]), float(actual.grid_cap_w[0]), float(actual.site_max_w[0]),
        )  # fmt: skip
        out.fast_path_power = len(fp.lowered)
        out.fast_path_preempted = sum(1 for j in fp.dropped if j in running_pool)

        # 6. apply: preempt, then power changes, then starts (each journalled)
        for s in states:
            if s.state != "running":
                continue
            a = fp.run.get(s.job.job_id)
            if a is None or a.pool != s.pool:
                reason = "power_cap" if s.job.job_id in fp.dropped else "plan"
                self._preempt(s.job.job_id, reason, "queued")
                out.preempted.append(s.job.job_id)
        for jid, a in fp.run.items():
            s = by_id[jid]
            if s.state == "running" and a.pool == s.pool and abs(s.power_fraction - a.power_fraction) > 1e-9:
                self._set_power(jid, a.power_fraction)
        for jid, a in fp.run.items():
            s = by_id[jid]
            if s.state == "queued" or a.pool != s.pool:
                self._start(s.job, a, s.checkpoint_work_s if s.state == "running" else s.work_done_s, out)

        # 7. publish
        run_now = self.executor.running()
        sp = accounting.site_power(
            self.site, [(ri.pool, by_id[j].job.gpus, ri.power_fraction) for j, ri in run_now.items() if j in by_id],
            snap.healthy_gpus, float(actual.wind_w[0]),
        )  # fmt: skip
        out.facility_w, out.grid_import_w = sp.facility_w, sp.grid_import_w
        out.grid_cap_w, out.site_max_w = float(actual.grid_cap_w[0]), float(actual.site_max_w[0])
        out.actual = actual
        out.busy_gpus = dict(sp.busy_gpus)
        self._plan = _PlanView(now_unix, slot, "ok", self._summarise(decisions.plan, forecast, slot, now_unix))
        return out

    def _sanitize(self, run: Mapping[str, Assignment], by_id: Mapping[str, JobState]) -> dict[str, Assignment]:
        """Drop decisions for unknown jobs or ineligible pools (sovereignty is never left to the policy);
        running must-run or non-preemptible jobs keep running where they are."""
        pools = {p.name: p for p in self.site.pools}
        out: dict[str, Assignment] = {}
        for jid, a in run.items():
            s = by_id.get(jid)
            pool = pools.get(a.pool)
            if s is None or pool is None or pool.gpus < s.job.gpus or not pool_matches(pool, s.job):
                log.warning("decision for job %s in pool %s refused (unknown job or ineligible pool)", jid, a.pool)
                continue
            if s.state == "running" and a.pool != s.pool and not s.job.preemptible:
                a = Assignment(s.pool or a.pool, a.power_fraction)
            out[jid] = a
        for jid, s in by_id.items():
            if s.state == "running" and jid not in out and (s.job.must_run or not s.job.preemptible):
                out[jid] = Assignment(s.pool or "", s.power_fraction)
        return out

    def _is_running(self, job_id: str) -> bool:
        return job_id in self.executor.running()

    def _summarise(self, plan: Any, forecast: EnergySeries, slot: int, now_unix: float) -> dict[str, Any]:
        n = forecast.n_slots
        duals = getattr(plan, "dual_price_g_per_gpu_h", None)
        duals_l: list[float | None] = (
            [float(x) for x in np.asarray(duals, dtype=np.float64)[:n]] if duals is not None else [None] * n
        )
        duals_l += [None] * (n - len(duals_l))
        slots = [
            {
                "slot": slot + i,
                "start_utc": iso_utc(self.epoch_unix_s + (slot + i) * forecast.slot_s),
                "dual_price_g_per_gpu_h": duals_l[i],
                "carbon_g_per_kwh": float(forecast.carbon_g_per_kwh[i]),
                "wind_w": float(forecast.wind_w[i]),
                "grid_cap_w": float(forecast.grid_cap_w[i]),
                "site_max_w": float(forecast.site_max_w[i]),
            }
            for i in range(n)
        ]
        status = str(getattr(plan, "status", "heuristic")) if plan is not None else "heuristic"
        return {
            "status": status,
            "policy": self.policy.name,
            "computed_utc": iso_utc(now_unix),
            "slot": slot,
            "slot_s": forecast.slot_s,
            "n_slots": n,
            "energy_source": forecast.source,
            "gap": _finite(getattr(plan, "gap", None)),
            "iterations": getattr(plan, "iterations", None),
            "carbon_g": _finite(getattr(plan, "carbon_g_total", None)),
            "lower_bound": _finite(getattr(plan, "lower_bound", None)),
            "unfinished_gpu_s": _finite(getattr(plan, "unfinished_gpu_s", None)),
            "slots": slots,
        }

    def _publish_metrics(self, out: TickOutcome) -> None:
        m = self._metrics_obj()
        if m is None:
            return
        actual = out.actual
        report = _TickReport(
            now_s=out.now_s, slot=out.slot, facility_w=out.facility_w,
            it_w=out.facility_w / self.site.pue, wind_w=float(actual.wind_w[0]) if actual is not None else 0.0,
            grid_import_w=out.grid_import_w, grid_cap_w=out.grid_cap_w, site_max_w=out.site_max_w,
            carbon_g_per_kwh=float(actual.carbon_g_per_kwh[0]) if actual is not None else 0.0,
            busy_gpus=dict(out.busy_gpus), healthy_gpus=self.executor.healthy_gpus(),
            plan_s=out.plan_s, plan=self._plan_obj_for_metrics(), tick_s=out.tick_s,
            congestion_active=bool(self.active_congestion_now()),
        )  # fmt: skip
        counts: dict[tuple[str, str], int] = {}
        for r in self.store.list_jobs():  # small in the demo; fine up to ~1e5 rows
            key = ("done" if r.state == "finished" else r.state, r.tenant)
            counts[key] = counts.get(key, 0) + 1
        # TenantAccount carries every field of metrics.TenantUsage (demand, period and commitment included)
        usage = self.accounts()
        with self._metrics_lock:
            m.observe_tick(report)
            m.observe_jobs(counts)
            m.observe_usage(usage)

    def _plan_obj_for_metrics(self) -> Any:
        p = self._plan
        if p is None or p.summary.get("gap") is None:
            return None
        return _PlanDiag(iterations=int(p.summary.get("iterations") or 0), gap=float(p.summary["gap"]))

    def active_congestion_now(self) -> list[Congestion]:
        now = self.clock.now_unix_s()
        return [c for c in self.store.congestion_events(active_after_unix_s=now) if c.start_unix_s <= now]


@dataclass(frozen=True, slots=True)
class _TickReport:
    now_s: float
    slot: int
    facility_w: float
    it_w: float
    wind_w: float
    grid_import_w: float
    grid_cap_w: float
    site_max_w: float
    carbon_g_per_kwh: float
    busy_gpus: dict[str, int]
    healthy_gpus: dict[str, int]
    plan_s: float
    plan: Any
    tick_s: float
    congestion_active: bool


@dataclass(frozen=True, slots=True)
class _PlanDiag:
    iterations: int
    gap: float


def _finite(x: Any) -> float | None:
    if x is None:
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


# ====================================================================================== HTTP API


class BodyLimit:
    """ASGI middleware: 413 for a declared ``Content-Length`` over the limit, and for a streamed body that
    grows over it (counted as it arrives, so nothing large is ever buffered)."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for k, v in scope.get("headers", ()):
            if k == b"content-length":
                try:
                    n = int(v)
                except ValueError:
                    await _send_json(send, 400, {"detail": "Content-Length is not an integer"})
                    return
                if n > self.max_bytes:
                    await _send_json(send, 413, {"detail": f"request body of {n} bytes is over the {self.max_bytes}-byte limit"})
                    return
        seen = 0
        started = False
        refused = False

        async def limited_receive() -> Message:
            nonlocal seen, refused, started
            if refused:
                return {"type": "http.disconnect"}
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.max_bytes:
                    # answer 413 now; the app sees a disconnect and anything it sends is dropped
                    refused = True
                    if not started:
                        started = True
                        await _send_json(send, 413, {"detail": f"request body is over the {self.max_bytes}-byte limit"})
                    return {"type": "http.disconnect"}
            return msg

        async def guarded_send(msg: Message) -> None:
            nonlocal started
            if refused:
                return
            if msg["type"] == "http.response.start":
                started = True
            await send(msg)

        await self.app(scope, limited_receive, guarded_send)


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": data})


class CongestionIn(BaseModel):
    """A congestion event announced by the grid operator: cap grid import at ``cap_mw`` from start to end."""

    model_config = ConfigDict(extra="forbid")

    cap_mw: Annotated[float, Field(ge=0, le=1e6, allow_inf_nan=False)]
    start: datetime
    end: datetime
    reason: Annotated[str, Field(max_length=512)] = ""

    @field_validator("start", "end")
    @classmethod
    def _tz(cls, v: datetime) -> datetime:
        if v.tzinfo is None:
            raise ValueError("must carry a time zone, e.g. 2026-12-01T18:00:00Z")
        return v


class JobCreated(BaseModel):
    id: str
    state: str
    created: bool
    job: dict[str, Any]


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status_code=401, detail=detail, headers={"WWW-Authenticate": "Bearer"})


def _service(request: Request) -> Service:
    return request.app.state.service  # type: ignore[no-any-return]


def _principal(request: Request, authorization: Annotated[str | None, Header()] = None) -> Principal:
    service = _service(request)
    token = service.auth.bearer(authorization)
    if token is None:
        raise _unauthorized("missing bearer token (Authorization: Bearer <token>)")
    p = service.auth.authenticate(token)
    if p is None:
        raise _unauthorized("unknown token")
    return p


def _operator(p: Annotated[Principal, Depends(_principal)]) -> Principal:
    if not p.is_operator:
        raise HTTPException(status_code=403, detail="this action needs an operator token")
    return p


Caller = Annotated[Principal, Depends(_principal)]
OperatorCaller = Annotated[Principal, Depends(_operator)]


def create_app(service: Service) -> FastAPI:
    """The FastAPI application over a running :class:`~scheduler.service.Service`."""
    app = FastAPI(
        title="Windward",
        version="0.1.0",
        description="Carbon- and power-cap aware GPU scheduling for a wind-powered AI factory. "
        "Every /v1 route needs `Authorization: Bearer <token>` (a tenant's or an operator's).",
    )
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)
    app.state.service = service

    def own_job(p: Principal, job_id: str) -> Any:
        rec = service.store.get(job_id)
        if rec is None or (not p.is_operator and rec.tenant != p.name):
            raise HTTPException(status_code=404, detail=f"no job {job_id!r}")
        return rec

    # ------------------------------------------------------------------------------ liveness
    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict[str, str]:
        """The process is alive."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"], responses={503: {"description": "not ready yet"}})
    def readyz() -> JSONResponse:
        """State open, executor ready, first tick done."""
        checks = service.readiness()
        ok = all(checks.values())
        return JSONResponse({"ready": ok, "checks": checks}, status_code=200 if ok else 503)

    @app.get("/metrics", tags=["ops"], response_class=PlainTextResponse)
    def metrics() -> Response:
        """Prometheus metrics (text format)."""
        body, ctype = service.metrics_exposition()
        return Response(content=body, media_type=ctype)

    # ---------------------------------------------------------------------------------- jobs
    @app.post(
        "/v1/jobs",
        tags=["jobs"],
        status_code=201,
        response_model=JobCreated,
        responses={
            200: {"description": "the same Idempotency-Key returned the job it created first"},
            401: {"description": "missing or unknown token"},
            403: {"description": "operators do not submit jobs"},
            409: {"description": "Idempotency-Key reused for a different spec"},
            413: {"description": "body too large"},
            422: {"description": "malformed spec, or a job no pool this tenant may use can hold"},
        },
    )
    def submit(
        spec: JobSpec,
        response: Response,
        p: Caller,
        idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
    ) -> dict[str, Any]:
        """Submit a job (the YAML job spec as JSON). 201 with ``{"id": ...}``; with an ``Idempotency-Key``
        header, a retry returns the same job (200)."""
        if p.tenant is None:
            raise HTTPException(status_code=403, detail="operators do not submit jobs; use a tenant token")
        try:
            res = service.submit(p.tenant, spec, idempotency_key)
        except IdempotencyConflict as e:
            raise HTTPException(status_code=409, detail=str(e)) from None
        except InputError as e:
            raise HTTPException(
                status_code=422,
                detail=[{"loc": ["body", *_field_of(str(e))], "msg": str(e), "type": "value_error.sovereignty"}],
            ) from None
        if not res.created:
            response.status_code = 200
        return {"id": res.record.id, "state": res.record.state, "created": res.created, "job": res.record.view()}

    @app.get("/v1/jobs", tags=["jobs"])
    def list_jobs(
        p: Caller,
        state: Annotated[Literal["queued", "running", "finished", "failed", "cancelled"] | None, Query()] = None,
        tenant: Annotated[str | None, Query(max_length=64, description="operators only")] = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
        after: Annotated[int, Query(ge=0, le=2**62, description="return jobs after this sequence number")] = 0,
    ) -> dict[str, Any]:
        """Jobs in submission order: a tenant's own, or (operator) every tenant's."""
        who = (tenant if p.is_operator else p.name) if (tenant or not p.is_operator) else None
        recs = service.store.list_jobs(tenant=who, states=[state] if state else None, limit=limit, after_seq=after)
        return {"jobs": [r.view() for r in recs], "next_after": recs[-1].seq if recs else after}

    @app.get("/v1/jobs/{job_id}", tags=["jobs"], responses={404: {"description": "no such job (for you)"}})
    def get_job(job_id: Annotated[str, PathParam(max_length=64)], p: Caller) -> dict[str, Any]:
        """One job: state, pool, progress, energy and carbon so far."""
        return own_job(p, job_id).view()  # type: ignore[no-any-return]

    @app.delete("/v1/jobs/{job_id}", tags=["jobs"], responses={404: {"description": "no such job (for you)"}})
    def cancel_job(job_id: Annotated[str, PathParam(max_length=64)], p: Caller) -> dict[str, Any]:
        """Cancel: a queued job at once; a running one is stopped (checkpointed) on the next tick."""
        own_job(p, job_id)
        return service.cancel(job_id).view()

    @app.get("/v1/queue", tags=["jobs"])
    def queue(p: Caller) -> dict[str, Any]:
        """Queued and running jobs (own, or all for an operator), with the planner's view of them."""
        return service.queue(None if p.is_operator else p.name)

    @app.get("/v1/usage", tags=["tenants"])
    def usage(p: Caller) -> dict[str, Any]:
        """Usage (GPU-seconds, energy, carbon) against quota and commitment: own, or every tenant's."""
        return service.usage(None if p.is_operator else p.name)

    @app.get("/v1/plan", tags=["plan"])
    def plan(p: Caller) -> dict[str, Any]:
        """Current plan summary and per-slot marginal carbon prices (g CO2-eq per GPU-hour)."""
        return service.plan_summary()

    # ---------------------------------------------------------------------------- congestion
    @app.post("/v1/congestion", tags=["grid"], status_code=201, responses={403: {"description": "operators only"}})
    def add_congestion(ev: CongestionIn, p: OperatorCaller) -> dict[str, Any]:
        """Cap grid import at ``cap_mw`` from ``start`` to ``end`` (honoured by the next tick's plan and by
        the fast path at once: a tick is triggered)."""
        if ev.end <= ev.start:
            raise HTTPException(
                status_code=422,
                detail=[{"loc": ["body", "end"], "msg": f"end ({ev.end.isoformat()}) must be after start "
                         f"({ev.start.isoformat()})", "type": "value_error"}],
            )  # fmt: skip
        return service.add_congestion(ev.cap_mw, ev.start.timestamp(), ev.end.timestamp(), p.name, ev.reason).view()

    @app.get("/v1/congestion", tags=["grid"])
    def list_congestion(p: Caller) -> dict[str, Any]:
        """Congestion events that are active now or announced for later."""
        return {"events": [c.view() for c in service.active_congestion()]}

    # --------------------------------------------------------------------------------- audit
    @app.get("/v1/audit", tags=["ops"], responses={403: {"description": "operators only"}})
    def audit(
        p: OperatorCaller,
        format: Annotated[Literal["json", "csv"], Query()] = "json",
        limit: Annotated[int | None, Query(ge=1, le=10_000_000)] = None,
    ) -> Response:
        """Every placement (job, tenant, pool and its labels, nodes, time): JSON or CSV."""
        rows = service.store.audit(limit=limit)
        if format == "json":
            return JSONResponse({"placements": rows})
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["id", "time_utc", "job_id", "tenant", "pool", "jurisdiction", "clearance", "labels", "nodes",
                    "jurisdiction_required", "clearance_required"])  # fmt: skip
        for r in rows:
            w.writerow([
                r["id"], r["time_utc"], r["job_id"], r["tenant"], r["pool"], r["labels"].get("jurisdiction", ""),
                r["labels"].get("clearance", ""), json.dumps(r["labels"], sort_keys=True),
                " ".join(str(n) for n in r["nodes"]), r["jurisdiction_required"] or "", r["clearance_required"] or "",
            ])  # fmt: skip
        return Response(content=buf.getvalue(), media_type="text/csv")

    return app


def _field_of(message: str) -> list[str]:
    """The spec field an admission error is about (its message starts with it), for ``detail[].loc``."""
    head = message.split(":", 1)[0].strip()
    if head in ("requires.clearance", "requires.jurisdiction", "gpus", "pool"):
        return head.split(".")
    return ["pool"]
