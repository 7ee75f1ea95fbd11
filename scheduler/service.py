"""The control plane of ``windward server``: the service (state-backed control loop in a thread). The
FastAPI application over it is :func:`scheduler.api.create_app`.

Time. The service runs on a :class:`ServiceClock`: Unix seconds that advance ``speedup`` times faster
than the wall clock (``--tick-seconds S``: one slot of the site every ``S`` wall seconds; without it, real
time). Its *epoch* (slot 0, the energy series' start) is fixed at the first start and kept in the state
store, so a restart continues the same timeline. Inside the loop, times are seconds since the epoch.

The tick (DESIGN section 4), every slot and on events (a submission, a cancel, a congestion event), at most
one event tick per ``min_event_tick_interval_s`` after the previous one ended (a burst costs one tick) and
event ticks at most ``event_tick_cpu_share`` of the interpreter (:func:`event_tick_wait_s`), IS
:meth:`scheduler.control.ControlLoop.tick`, the one the simulation and ``windward demo`` run. The server's
differences are its seams (:class:`~scheduler.control.ControlLoop`'s arguments), not copies of its steps:

* clock: the service clock (wall time, or ``speedup`` times faster), frozen for the length of a tick;
  ``drive_time=False``: time passes outside the loop, so each tick first settles the interval since the
  previous tick (the executor is stepped or polled to now; finishes and node failures are recorded; the
  interval is accounted through the one integrator with the wind and carbon of the slot it began in; a
  mid-slot tick splits a slot into intervals, each charged its own share: scheduler/control.py, "Time");
* inbox (:meth:`Service._drain_inbox`): new rows of the store (by sequence number) join the loop's ledger,
  cancellations stop running jobs (journalled) or leave the queue; drained after the settle;
* journal (:class:`_StoreJournal`): ONE transaction of intents before the executor is asked anything, ONE
  of outcomes after (a preemption to make room for inference is journalled when decided); finishes, node
  failures and expired inference are recorded as outcomes without an intent;
* usage sink: each accounted interval's per-job and per-tenant usage, written once per tick (per tenant)
  and every ``progress_flush_s`` (per job, and at once for jobs that stopped running);
* keep_records=False: the loop's ledger holds the active jobs only; the store holds the rest.

After the loop's tick: one transaction of usage and progress, the plan summary (per-slot dual prices), and
the loop's :class:`~scheduler.control.TickReport` to the metrics (job counts from the store's counters).
Congestion events narrow this slot's caps (the fast path) and the forecast's (the policy).

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

import asyncio
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from scheduler import accounting
from scheduler.accounting import IntervalUsage
from scheduler.auth import Authenticator, admit_job, tenant_pools
from scheduler.control import ControlLoop, FastPathResult, TickReport
from scheduler.energy import EnergySeries
from scheduler.errors import ExecutorError, InputError
from scheduler.jobs import Job
from scheduler.ledger import Intent, Outcome
from scheduler.models import JobSpec, Site, Tenant, TenantsFile
from scheduler.policies import DEFAULT_POLICY, check_policy, make_policy
from scheduler.policies.base import Assignment, TenantInfo
from scheduler.reasons import WhyBoard
from scheduler.state import (
    ActionIntent,
    Congestion,
    JobProgress,
    JobRecord,
    ObservedSignal,
    PlainOutcome,
    StartOutcome,
    StateStore,
    StopOutcome,
    SubmitQueue,
    SubmitRequest,
    SubmitResult,
    UsageDelta,
    iso_utc,
)

if TYPE_CHECKING:
    from scheduler.executors.base import Executor
    from scheduler.policies.base import Policy
    from scheduler.sources.live import LiveSignals  # imported when a server has live signals (a restart's imports)

log = logging.getLogger(__name__)



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
    """What ``windward server`` was asked to run (``--tick-seconds``: wall seconds per slot; None: real time).

    ``min_event_tick_interval_s``: an event (submission, cancel, congestion) never triggers a tick sooner
    than this many wall seconds after the previous tick ended, so a burst of submissions costs one tick.
    ``event_tick_cpu_share``: event ticks take at most this share of the interpreter: after a tick that used
    ``c`` CPU seconds, an event triggers the next one no sooner than ``c * (1 - share) / share`` seconds after
    it ended either (:func:`event_tick_wait_s`; a slot's own tick is never delayed by it). A tick's CPU grows
    with the queue (0.25 s with 15,000 queued jobs on the demo site), and while it runs it holds the
    interpreter that the API's event loop and the group commit need: at 1,000 submissions/s and a 0.3 s
    interval, ticks took half of the server's CPU and every submission made during one waited for it. The
    default, 0.1 (0.25 until round 6), leaves the API 90% of the interpreter under a flood of submissions:
    at 1,000/s the queue grows by 60,000 jobs a minute and a tick at 16,000 queued (backfill, demo site)
    computes 0.2-0.4 s, so event ticks held about a quarter of the server's CPU at 0.25 (py-spy, round 6);
    the price is a new job's wait for its event tick with a large queue (9 x the last tick's CPU after it,
    3 x at 0.25). With a small queue nothing changes: ticks of a few ms, and the interval rules.
    ``windward server --event-tick-cpu-share`` sets it.
    ``progress_flush_s``: running jobs' progress and per-job usage are written at most this often (and at
    every stop); per-tenant usage is written every tick. A crash loses at most that much per-job display
    progress, never a checkpoint the executor reported (resuming from an older one only repeats work).
    ``planner_backend`` / ``planner_device``: the array backend of the windward policy's optimiser
    (``kernels.plan(backend=..., device=...)``: numpy on cpu, or torch on cpu / cuda / cuda:N); the baselines
    ignore them. ``windward server`` checks them (``scheduler.backends.planner_backend``) before it starts.
    """

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
    policy: str = DEFAULT_POLICY
    horizon_hours: float = 24.0
    min_event_tick_interval_s: float = 0.3
    event_tick_cpu_share: float = 0.1
    progress_flush_s: float = 5.0
    seed: int = 0
    planner_backend: str = "numpy"
    planner_device: str = "cpu"
    power_control: str = "auto"  # GPU power limits: auto | nvml | simulated (scheduler.power_devices)
    live_signals: str | None = None  # a live-signals file (scheduler.sources.config); None: the energy read once
    # the windward policy prices work past its horizon from this many days of the signals the service has
    # observed (scheduler.deferral; 0: off), kept in the store across restarts and at start completed with the
    # energy source's signals of the days before now; None: WeightSettings' ageing
    defer_history_days: float = 0.0
    beyond_age_h: float | None = None
    max_defer_h: float | None = None  # the bound on how long deferred work is held back (WeightSettings.max_defer_h)

    def __post_init__(self) -> None:
        from scheduler.deferral import check_deferral_options

        check_deferral_options(self.defer_history_days, self.beyond_age_h, self.max_defer_h,
                               ("ServiceConfig.defer_history_days", "ServiceConfig.beyond_age_h",
                                "ServiceConfig.max_defer_h"))
        if not 0.0 < self.event_tick_cpu_share <= 1.0:
            raise InputError(f"event_tick_cpu_share is {self.event_tick_cpu_share!r}; it must lie in (0, 1]")


@dataclass(slots=True)
class _PlanView:
    computed_unix_s: float
    slot: int
    status: str
    summary: dict[str, Any]


@dataclass(frozen=True, slots=True)
class TickOutcome:
    """What one tick of the server did: the loop's :class:`~scheduler.control.TickReport` (the one report
    type; the metrics read it) with the server's wall timings. The lists below are read from the report."""

    report: TickReport
    fast_path: FastPathResult | None
    tick_s: float
    timings_s: Mapping[str, float]

    @property
    def slot(self) -> int:
        return self.report.slot

    @property
    def started(self) -> list[str]:
        return list(self.report.starts)

    @property
    def preempted(self) -> list[str]:
        return list(self.report.preemptions)

    @property
    def finished(self) -> list[str]:
        return list(self.report.finishes)

    @property
    def failed(self) -> list[str]:
        return list(self.report.failures)

    @property
    def cancelled(self) -> list[str]:
        return list(self.report.cancelled)

    @property
    def expired(self) -> list[str]:
        return list(self.report.expired)

    @property
    def made_room(self) -> list[str]:
        return list(self.report.made_room)

    @property
    def plan_s(self) -> float:
        return self.report.decide_s


class _TickClock:
    """The loop's clock in the server: seconds since the service epoch, frozen for the length of a tick."""

    def __init__(self, now_s: float) -> None:
        self.t = now_s

    def now_s(self) -> float:
        return self.t


class _StoreJournal:
    """The server's journal seam (:class:`scheduler.ledger.Journal`): intents and outcomes in the state
    store, one transaction per batch, stamped with the service clock."""

    def __init__(self, svc: Service) -> None:
        self._svc = svc

    def intend(self, intents: Sequence[Intent]) -> list[int]:
        svc = self._svc
        return svc.store.intend_many([ActionIntent(i.kind, i.job_id, dict(i.params)) for i in intents],
                                     svc.clock.now_unix_s())  # fmt: skip

    def record(self, outcomes: Sequence[Outcome]) -> list[str]:
        svc = self._svc
        started: list[StartOutcome] = []
        stopped: list[StopOutcome] = []
        plain: list[PlainOutcome] = []
        for o in outcomes:
            if o.kind == "started":
                started.append(StartOutcome(o.action, o.job_id, o.pool, svc._pool_labels[o.pool], o.nodes,
                                            o.power_fraction))  # fmt: skip
            elif o.kind == "stopped":
                stopped.append(StopOutcome(o.action, o.job_id, o.final_state, o.lost_s, o.detail, o.resume_work_s))
            elif o.action is not None:
                plain.append(PlainOutcome(o.action, o.kind, dict(o.data)))
        if not (started or stopped or plain):
            return []
        return svc.store.record_outcomes(started=started, stopped=stopped, plain=plain,
                                         now_unix_s=svc.clock.now_unix_s())  # fmt: skip


def make_executor(config: ServiceConfig, now_s: float) -> Executor:
    """``simulated`` (virtual clock started at ``now_s``) or ``ray``: ``--address`` names a running cluster
    (its live jobs are re-adopted); without it a local cluster of simulated GPU nodes is started from the
    site file. Ray job actors run ``time_scale`` = the service clock's speed-up, and keep their checkpoints
    next to the state file (``<state>.ray/``) so that a restarted server resumes them."""
    if config.executor == "simulated":
        from scheduler.executors.simulated import SimulatedExecutor, VirtualClock

        if config.power_control == "nvml":
            raise InputError("--power-control nvml needs --executor ray: NVML limits are set by Ray node agents")
        return SimulatedExecutor(config.site, VirtualClock(now_s))
    if config.executor == "ray":
        from scheduler.executors.ray_executor import RayExecutor

        speedup = config.site.slot_s / config.tick_seconds if config.tick_seconds else 1.0
        state_dir = None if config.state_path == ":memory:" else Path(config.state_path + ".ray")
        ex = RayExecutor(config.site, address=config.ray_address, time_scale=speedup, state_dir=state_dir,
                         power_backend=config.power_control)  # fmt: skip
        if config.ray_address is not None:
            ex.adopt()
        return ex
    raise InputError(f"--executor {config.executor!r}: allowed: ['ray', 'simulated']")


class Service:
    """The state-backed control plane. Thread-safe: API threads submit/cancel, one loop thread ticks.

    Its control loop (:attr:`loop`, a :class:`~scheduler.control.ControlLoop`, module docstring) holds the
    ledger of the active (queued and running) jobs, rebuilt from the store on every start, then kept current
    by the tick (new rows are read by sequence number, cancellations arrive through :meth:`cancel`). The
    store stays the one source of truth; the ledger only spares every tick a read of every active row.
    """

    def __init__(
        self,
        config: ServiceConfig,
        *,
        wall: Callable[[], float] = time.time,
        executor: Executor | None = None,
        policy: Policy | None = None,
    ) -> None:
        if policy is None and "plan_kwargs" in check_policy(config.policy, "ServiceConfig.policy").takes:
            # a backend that cannot run is refused before anything (the state file) is created
            from scheduler.backends import planner_backend

            planner_backend(config.planner_backend, config.planner_device, "ServiceConfig.planner_backend")
        self.config = config
        self.site = config.site
        self.auth = Authenticator(config.tenants)
        self.tenants: dict[str, Tenant] = {t.name: t for t in config.tenants.tenants}
        self.tenant_pools: dict[str, tuple[str, ...]] = {t.name: tenant_pools(self.site, t) for t in config.tenants.tenants}
        self._pool_labels = {p.name: dict(p.labels) for p in self.site.pools}
        self.store = StateStore(config.state_path)
        slot_s = self.site.slot_s
        wall_now = wall()
        self.epoch_unix_s = self.store.epoch_unix_s(math.floor(wall_now / slot_s) * slot_s)
        last = self.store.meta("last_tick_unix_s")
        start = max(wall_now, float(last)) if last is not None else wall_now
        speedup = slot_s / config.tick_seconds if config.tick_seconds else 1.0
        self.clock = ServiceClock(start, speedup, wall)
        self._wall = wall
        self.policy: Policy = policy if policy is not None else make_policy(
            config.policy, config.horizon_hours,
            plan_kwargs={"backend": config.planner_backend, "device": config.planner_device},
            defer_history_days=config.defer_history_days, beyond_age_h=config.beyond_age_h,
            max_defer_h=config.max_defer_h,
        )  # fmt: skip
        self._energy = self._load_energy()
        self._seed_deferral()
        from scheduler.signals import make_forecaster

        self._forecaster = make_forecaster(
            config.forecast, self._energy, seed=config.seed, wind_capacity_w=self.site.wind.contract_mw * 1e6
        )
        self._horizon_slots = max(1, int(round(config.horizon_hours * 3600 / slot_s)))
        # live energy signals (issue 15): a thread refreshes them; each tick plans on the latest merged series
        self.live: LiveSignals | None = None
        self._announced: set[tuple[datetime, datetime, float, str]] = set()  # feed caps recorded as events
        if config.live_signals is not None:
            from scheduler.sources.config import build_refresher, load_live_signals
            from scheduler.sources.live import LiveSignals

            cfg = load_live_signals(config.live_signals)
            # the thread asks "due?" ten times per refresh_s of the service's clock (which may run compressed)
            poll_s = min(max(cfg.refresh_s / 10.0 / self.clock.speedup, 0.05), 60.0)
            self.live = LiveSignals(build_refresher(cfg, self.site, self._energy, self.clock.now_unix_s), poll_s=poll_s)
        self.executor: Executor = executor if executor is not None else make_executor(config, self.now_s())
        running_info = dict(self.executor.running())
        rec = self.store.recover(running_info, self.clock.now_unix_s(), self._pool_labels)
        if rec.requeued or rec.adopted or rec.open_actions or rec.orphans:
            log.warning(
                "recovered state: %d running job(s) re-adopted, %d requeued from checkpoints (%.0f s of work "
                "lost), %d interrupted action(s) closed, %d orphan(s) stopped",
                len(rec.adopted), len(rec.requeued), rec.lost_work_s, rec.open_actions, len(rec.orphans),
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
        self._metrics_init_lock = threading.Lock()  # (_metrics_obj)
        self._seen_seq = 0
        self._cancels: set[str] = set()
        self._cancels_lock = threading.Lock()
        # usage accounted by the loop and not yet written: job id -> (tenant, [gpu_s, energy_j, carbon_g])
        self._unflushed: dict[str, tuple[str, list[float]]] = {}
        self._tenant_pending: dict[str, list[float]] = {}  # tenant -> the same, accrued this tick
        self._usage_day = accounting.day_key(self.clock.now_unix_s())
        self._flushed_wall = -math.inf
        self._tick_accounts: list[accounting.TenantAccount] = []
        self._congestion_now: list[Congestion] = []
        self.why = WhyBoard()  # why each queued job waits, as of the last tick (scheduler.reasons; C)
        # THE control loop (scheduler.control), with the server's seams (module docstring)
        self._loop_clock = _TickClock(self.now_s())
        self.loop = ControlLoop(
            self.site, self.executor, self.policy, self._loop_clock,
            start_slot=int(self._loop_clock.t // slot_s), tenant_info_fn=self._tenant_info, drive_time=False,
            journal=_StoreJournal(self), inbox=self._drain_inbox, usage_sink=self._on_usage, keep_records=False,
            state_of=self._stored_state, epoch_unix_s=self.epoch_unix_s,
        )  # fmt: skip
        self.loop.keep_reports = False
        # The ledger of the active jobs (30,000 queued: 0.3-0.4 s of CPU) is built by the first tick, in the
        # loop's thread, not here: a restarted server answers /readyz (state open and recovered, submissions
        # accepted and committed) while its loop reads them in (benchmarks/README.md, issue 16, round 5).
        self._to_adopt: tuple[Mapping[str, Any], tuple[str, ...]] | None = (running_info, tuple(rec.orphans))
        self._admitted: set[tuple[Any, ...]] = set()
        self.submissions = SubmitQueue(self.store, self.clock.now_unix_s, on_commit=self._on_commit)

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

    def _seed_deferral(self) -> None:
        """The windward policy's deferral history (``defer_history_days``; scheduler.deferral) at start: the
        signals observed before a restart (kept in the store, :meth:`_flush`), then for the slots they do not
        cover the energy source's signals of the days before now (as ``windward simulate`` seeds its run);
        where the source does not reach back that far, the energy rows before now that the server holds."""
        from scheduler.deferral import policy_deferral, seed_deferral

        deferral = policy_deferral(self.policy)
        if deferral is None:
            return
        slot_s = self.site.slot_s
        slot = int(self.now_s() // slot_s)
        keep = deferral.window_slots(slot_s)
        kept = self.store.observed_signals(slot_s, slot - keep)
        restored = deferral.restore(slot_s, ((o.slot, o.wind_w, o.carbon_g_per_kwh, o.grid_cap_w, o.site_max_w)
                                             for o in kept))
        e_slot = min(slot, self._energy.n_slots - 1)  # the energy row of the current slot (as a tick reads it)
        try:
            seeded = seed_deferral(self.policy, self.config.energy, self.site, self._energy.slot_start(e_slot),
                                   seed=self.config.seed, end_slot=slot)
        except InputError as e:
            lo = max(0, e_slot - keep)
            seeded = e_slot - lo
            if seeded:
                deferral.seed(self._energy.window(lo, seeded), end_slot=slot)
            log.warning("deferral: the energy source does not reach %g days before now (%s); seeded with the %d "
                        "slots before now it holds", deferral.history_days, e, seeded)
        log.info("deferral: %d observed slots restored from the store, %d slots of the energy before now, "
                 "%d held (%g days kept)", restored, seeded, deferral.n_slots, deferral.history_days)

    def _observed_signal(self) -> tuple[ObservedSignal | None, int | None]:
        """The signals the last tick observed for the deferral history, and the first slot still kept."""
        from scheduler.deferral import policy_deferral

        deferral = policy_deferral(self.policy)
        newest = None if deferral is None else deferral.newest()
        if deferral is None or newest is None:
            return None, None
        slot, sample = newest
        slot_s = self.site.slot_s
        return ObservedSignal(slot, slot_s, *sample), slot - deferral.window_slots(slot_s) + 1

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

    def _admit(self, tenant: Tenant, spec: JobSpec) -> None:
        """Sovereignty and fit (auth.admit_job). Its verdict depends only on the tenant and the spec's
        gpus / pool / requires, all static, so admitted combinations are remembered (refusals are not:
        each gets its own message)."""
        key = (tenant.name, spec.gpus, spec.pool, spec.requires.jurisdiction, spec.requires.clearance)
        if key in self._admitted:
            return
        probe = Job(
            job_id=spec.name, tenant=tenant.name, kind=spec.kind, submit_s=0.0, gpus=spec.gpus,
            duration_s=spec.duration_s, preemptible=spec.preemptible, pool=spec.pool,
            priority=spec.priority, jurisdiction=spec.requires.jurisdiction, clearance=spec.requires.clearance,
        )  # fmt: skip
        admit_job(self.site, tenant, probe)
        if len(self._admitted) < 100_000:
            self._admitted.add(key)

    def submit_future(self, tenant: Tenant, spec: JobSpec, idempotency_key: str | None) -> Future[SubmitResult]:
        """Admit (sovereignty, fit: raises InputError at once) and queue the job for the group commit; the
        future resolves once its row is on disk (or raises IdempotencyConflict)."""
        self._admit(tenant, spec)
        return self.submissions.put(SubmitRequest(tenant.name, spec, idempotency_key))

    def submit_async(self, tenant: Tenant, spec: JobSpec, idempotency_key: str | None) -> asyncio.Future[SubmitResult]:
        """:meth:`submit_future` for the API's event loop (resolved on the loop, once per committed batch)."""
        self._admit(tenant, spec)
        return self.submissions.put_async(SubmitRequest(tenant.name, spec, idempotency_key), asyncio.get_running_loop())

    def submit(self, tenant: Tenant, spec: JobSpec, idempotency_key: str | None) -> SubmitResult:
        """Admit and persist a job (blocking until durable); wakes the loop. Raises InputError /
        IdempotencyConflict."""
        return self.submit_future(tenant, spec, idempotency_key).result()

    def _on_commit(self, results: Any) -> None:
        if any(getattr(r, "created", False) for r in results):
            self._wake.set()

    def cancel(self, job_id: str) -> JobRecord:
        rec = self.store.request_cancel(job_id, self.clock.now_unix_s())
        with self._cancels_lock:
            self._cancels.add(job_id)
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

    def _since_day(self, now_unix_s: float) -> str:
        """The first day any commitment period that contains now starts (the ISO week's Monday)."""
        return accounting.period_start("week", now_unix_s).date().isoformat()

    def accounts(self) -> list[accounting.TenantAccount]:
        """Every tenant's standing now, from the store (aggregate queries; the API's view)."""
        now = self.clock.now_unix_s()
        return accounting.accounts(
            self.site,
            list(self.tenants.values()),
            self.store.usage_by_tenant(),
            self.store.usage_daily(since_day=self._since_day(now)),
            self.store.running_gpus_by_tenant(),
            self.store.demand_gpus_by_tenant(),
            now,
        )

    def _ledger_accounts(self, now_unix_s: float) -> list[accounting.TenantAccount]:
        """The same standing for the tick: GPUs running and demanded from the ledger (no scan of jobs)."""
        running: dict[str, int] = {}
        demand: dict[str, int] = {}
        for r in self.loop.active_records.values():
            t = r.job.tenant
            demand[t] = demand.get(t, 0) + r.job.gpus
            if r.state == "running":
                running[t] = running.get(t, 0) + r.job.gpus
        # the store plus what this tick accounted and has not written yet (written in _flush, after apply)
        totals = {t: dict(v) for t, v in self.store.usage_by_tenant().items()}
        daily = list(self.store.usage_daily(since_day=self._since_day(now_unix_s)))
        for t, (gpu_s, energy_j, carbon_g) in self._tenant_pending.items():
            tot = totals.setdefault(t, {"gpu_s": 0.0, "energy_j": 0.0, "carbon_g": 0.0})
            tot["gpu_s"] = tot.get("gpu_s", 0.0) + gpu_s
            tot["energy_j"] = tot.get("energy_j", 0.0) + energy_j
            tot["carbon_g"] = tot.get("carbon_g", 0.0) + carbon_g
            daily.append({"tenant": t, "day": self._usage_day, "gpu_s": gpu_s, "energy_j": energy_j,
                          "carbon_g": carbon_g})  # fmt: skip
        return accounting.accounts(self.site, list(self.tenants.values()), totals, daily, running, demand, now_unix_s)

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
        """What /readyz requires: the state open (recovered by the constructor), the executor answering, and
        the loop ticking: started, and its first tick not failed (a restart's first tick, which reads the
        active jobs into the ledger, may still be running: submissions are accepted and committed meanwhile,
        and it takes them in; :attr:`first_tick_done` says when it has ended)."""
        try:
            exec_ok = isinstance(self.executor.healthy_gpus(), dict)
        except Exception:  # noqa: BLE001 - any executor failure means "not ready"
            exec_ok = False
        t = self._thread
        loop_ok = t is not None and t.is_alive() and (self._ticks > 0 or self._last_error is None)
        return {"state_open": self.store.check(), "executor_ready": exec_ok, "loop_running": loop_ok}

    @property
    def first_tick_done(self) -> bool:
        return self._ticks > 0

    def _metrics_obj(self) -> Any:
        # made once, under a lock: the API's thread (POST /v1/congestion), the scrape (/metrics) and the tick
        # reach it first at about the same moment after a start, and two of them made two registries, the one
        # kept losing what the other had counted (a congestion event read 0 in Prometheus on a loaded machine)
        if self._metrics is None:
            with self._metrics_init_lock:
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

    def start(
        self, after_first_tick: Callable[[], None] | None = None, after_tick: Callable[[], None] | None = None
    ) -> None:
        """Tick in a background thread, the first tick at once. ``after_first_tick``: called once in that
        thread when the first tick has ended (whether it succeeded or failed), before the next one;
        ``after_tick``: called in that thread after every tick (after ``after_first_tick``)."""
        if self.live is not None:
            self.live.start()
        self._thread = threading.Thread(target=self._run, args=(after_first_tick, after_tick), name="windward-loop",
                                        daemon=True)  # fmt: skip
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self.live is not None:
            self.live.stop()
        if self._thread is not None:
            self._thread.join(timeout=60)
        self.submissions.close()
        self.executor.close()
        self.store.close()

    def _run(
        self, after_first_tick: Callable[[], None] | None = None, after_tick: Callable[[], None] | None = None
    ) -> None:
        slot_s = self.site.slot_s
        while not self._stop.is_set():
            cpu0 = time.thread_time()
            try:
                self.tick()
                self._last_error = None
            except Exception as e:  # noqa: BLE001 - the loop must survive a bad tick and say why
                self._last_error = f"{type(e).__name__}: {e}"
                log.exception("tick failed")
            if after_first_tick is not None:
                call = after_first_tick
                after_first_tick = None
                call()
            if after_tick is not None:
                try:
                    after_tick()
                except Exception:  # noqa: BLE001 - a hook must not stop the loop
                    log.exception("after-tick hook failed")
            tick_cpu_s = time.thread_time() - cpu0
            ended = time.monotonic()
            next_slot_unix = self.epoch_unix_s + (math.floor(self.now_s() / slot_s) + 1) * slot_s
            wait_s = max(self.clock.wall_s_until(next_slot_unix), 0.0)
            if self._wake.wait(timeout=wait_s) and not self._stop.is_set():
                # coalesce: a burst of events since the last tick costs one tick, at most one per interval,
                # and event ticks at most event_tick_cpu_share of the interpreter; never past the next slot
                rest = event_tick_wait_s(time.monotonic() - ended, self.config.min_event_tick_interval_s,
                                         tick_cpu_s, self.config.event_tick_cpu_share,
                                         self.clock.wall_s_until(next_slot_unix))  # fmt: skip
                if rest > 0:
                    self._stop.wait(rest)
            self._wake.clear()

    def tick(self) -> TickOutcome:
        """One tick: :meth:`scheduler.control.ControlLoop.tick` with the server's seams (module docstring),
        then usage and progress written, the plan summary and the metrics. Safe to call from tests."""
        with self._tick_lock:
            t0 = time.perf_counter()
            if self._to_adopt is not None:
                running_info, orphans = self._to_adopt
                self._to_adopt = None
                self._adopt_active(running_info)
                for jid in orphans:  # running on the executor but finished / unknown in the store: stop it
                    self._journalled_stop_orphan(jid, "orphan after restart")
            now_s = self.now_s()
            self._loop_clock.t = now_s
            now_unix = self.epoch_unix_s + now_s
            slot = int(now_s // self.site.slot_s)
            self._use_live_series()
            e_slot = min(slot, self._energy.n_slots - 1)
            congestion = self.store.congestion_events(active_after_unix_s=now_unix)
            self._congestion_now = [c for c in congestion if c.start_unix_s <= now_unix]
            forecast = self._caps(self._forecaster.forecast(e_slot, self._horizon_slots), slot, congestion)
            actual = self._caps(self._energy.window(e_slot, 1), slot, congestion)
            report = self.loop.tick(actual, forecast)
            t_loop = time.perf_counter() - t0
            t = time.perf_counter()
            self._flush(now_unix)
            self._plan = _PlanView(now_unix, slot, "ok", self._summarise(self.loop.last_plan, forecast, slot, now_unix))
            t_flush = time.perf_counter() - t
            tick_s = time.perf_counter() - t0
            report = replace(report, tick_s=tick_s, congestion_active=bool(self._congestion_now))
            explainer, queued = self.loop.explainer(report)  # why each queued job waits (worked out when read)
            self.why.publish(explainer, queued, slot=slot, epoch_unix_s=self.epoch_unix_s, slot_s=self.site.slot_s)
            c = self.loop.last_constrained
            timings = {"loop": t_loop, "decide": report.decide_s, "flush_summary": t_flush}
            out = TickOutcome(report, c.fast_path if c is not None else None, tick_s, timings)
            self._ticks += 1
            self._last_outcome = out
            tp = time.perf_counter()
            self._publish_metrics(out)
            timings["publish"] = time.perf_counter() - tp
            log.info(
                "tick slot %d: %d jobs, %d started, %d preempted, %d finished, fast path %d lowered / %d dropped, "
                "facility %.0f W (grid %.0f / cap %.0f W), plan %.3f s, tick %.3f s",
                slot, report.queued + report.running, len(report.starts), len(report.preemptions),
                len(report.finishes), len(report.lowered), len(report.dropped), report.facility_w,
                report.grid_import_w, report.grid_cap_w, report.decide_s, tick_s,
            )  # fmt: skip
            return out

    # -- the seams of the loop (module docstring)
    def _adopt_active(self, running_info: Mapping[str, Any]) -> None:
        """The active jobs of the store (after recovery) join the loop: running ones as the executor runs
        them (re-adopted), queued ones from their checkpoint. A running job whose cancel was requested is
        stopped at the first tick."""
        # only the active rows, lean (StateStore.active_for_restart): recovery to ready is bounded by them
        self._seen_seq = self.store.last_seq
        for r in self.store.active_for_restart(self.epoch_unix_s, self.tenant_pools):
            job = r.job
            # when it first started, on the loop's clock: a queued inference job that was served before the
            # restart (and preempted since) is not expired as if it never had been
            first = None if r.started_unix_s is None else r.started_unix_s - self.epoch_unix_s
            if r.state == "queued":
                self.loop.adopt(job, work_done_s=r.work_done_s, checkpoint_work_s=r.checkpoint_work_s,
                                first_start_s=first)  # fmt: skip
                continue
            ri = running_info.get(job.job_id)
            if ri is not None:
                self.loop.adopt(job, work_done_s=ri.work_done_s, checkpoint_work_s=ri.checkpoint_work_s,
                                running=Assignment(ri.pool, ri.power_fraction), nodes=tuple(ri.nodes),
                                first_start_s=first)  # fmt: skip
            else:
                self.loop.adopt(job, work_done_s=r.work_done_s, checkpoint_work_s=r.checkpoint_work_s,
                                running=Assignment(r.pool or "", r.power_fraction), nodes=r.nodes,
                                first_start_s=first)  # fmt: skip
            if r.cancel_requested:
                with self._cancels_lock:
                    self._cancels.add(job.job_id)

    def _drain_inbox(self, loop: ControlLoop) -> None:
        """The inbox, drained at the start of a tick (after the settle): new rows of the store (by sequence
        number) join the loop's queue; cancellations stop running jobs (journalled by the loop) or take
        queued ones out (the store cancelled those at once, :meth:`StateStore.request_cancel`; one that a node
        failure put back in the queue after its cancel was asked is cancelled in the store now)."""
        with self._cancels_lock:
            cancels, self._cancels = self._cancels, set()
        new, self._seen_seq = self.store.queued_after(self._seen_seq, self.epoch_unix_s, self.tenant_pools)
        jobs = [j for j in new if j.job_id not in loop.records]
        if jobs:
            loop.submit(jobs, admitted=True)
        late: list[str] = []
        for jid in sorted(cancels):
            rec = loop.records.get(jid)
            if rec is None or rec.state not in ("pending", "queued", "running"):
                continue  # ended meanwhile (finished while the cancel was on its way)
            was_running = rec.state == "running"
            if not loop.cancel(jid):
                with self._cancels_lock:
                    self._cancels.add(jid)  # the executor could not stop it now: again at the next tick
                continue
            if not was_running:
                stored = self.store.get(jid)
                if stored is not None and stored.state == "queued":
                    late.append(jid)
        if late:
            self.store.record_outcomes(stopped=[StopOutcome(None, j, "cancelled", 0.0, "cancelled") for j in late],
                                       now_unix_s=self.clock.now_unix_s())  # fmt: skip

    def _tenant_info(self, loop: ControlLoop) -> Mapping[str, TenantInfo]:
        """``Snapshot.tenant_info``: the store's usage plus what this tick settled, GPUs from the loop."""
        accts = self._ledger_accounts(self.clock.now_unix_s())
        self._tick_accounts = accts
        return accounting.tenant_info(accts, self.tenants, self.tenant_pools)

    def _on_usage(self, rows: Mapping[str, int], iv: IntervalUsage) -> None:
        """The usage sink: what the loop accounted for an interval, per job (written at the next flush that
        is due, or at once when the job stopped) and per tenant (written this tick)."""
        recs = self.loop.records
        tenant_acc = self._tenant_pending
        gs, ej, cg = iv.job_gpu_s, iv.job_energy_j, iv.job_carbon_g
        for jid, r in rows.items():
            vals = (float(gs[r]), float(ej[r]), float(cg[r]))
            ent = self._unflushed.get(jid)
            if ent is None:
                ent = self._unflushed[jid] = (recs[jid].job.tenant, [0.0, 0.0, 0.0])
            tacc = tenant_acc.get(ent[0])
            if tacc is None:
                tacc = tenant_acc[ent[0]] = [0.0, 0.0, 0.0]
            acc = ent[1]
            for x in range(3):
                acc[x] += vals[x]
                tacc[x] += vals[x]
        self._usage_day = accounting.day_key(self.epoch_unix_s + self._loop_clock.t - iv.dt_s / 2)

    def _journalled_stop_orphan(self, job_id: str, reason: str) -> None:
        """Stop something the executor runs that the store does not hold as running (intent, act, outcome)."""
        now_unix = self.clock.now_unix_s()
        aid = self.store.intend_many([ActionIntent("preempt", job_id, {"reason": reason})], now_unix)[0]
        try:
            lost = self.executor.preempt(job_id, reason)
            self.store.record_outcomes(plain=[PlainOutcome(aid, "stopped", {"lost_work_s": lost})], now_unix_s=now_unix)
        except ExecutorError as e:
            self.store.record_outcomes(plain=[PlainOutcome(aid, "error", {"error": str(e)})], now_unix_s=now_unix)

    def _flush(self, now_unix: float) -> None:
        """One transaction per tick: usage per tenant and day (always), per-job usage and the progress of
        running jobs (every ``progress_flush_s`` wall seconds, and at once for jobs that stopped running),
        the time of this tick, and the signals it observed for the deferral history (when priced)."""
        due = time.monotonic() - self._flushed_wall >= self.config.progress_flush_s
        running = self.loop.running_records
        if due:
            self._flushed_wall = time.monotonic()
            ids = list(self._unflushed)
        else:
            ids = [j for j in self._unflushed if j not in running]
        usage = []
        for jid in ids:
            tenant, acc = self._unflushed.pop(jid)
            usage.append(UsageDelta(jid, tenant, acc[0], acc[1], acc[2]))
        progress = []
        if due:
            progress = [
                JobProgress(j, r.pool or "", r.nodes, r.power_fraction, r.work_done_s, r.checkpoint_work_s)
                for j, r in running.items()
            ]
        tenant_usage = [UsageDelta("", t, a[0], a[1], a[2]) for t, a in self._tenant_pending.items()]
        signal, signals_from = self._observed_signal()
        self.store.record_progress(
            progress, usage, self._usage_day, now_unix, tenant_usage=tenant_usage,
            meta={"last_tick_unix_s": repr(self.clock.now_unix_s())}, signal=signal, signals_from_slot=signals_from,
        )  # fmt: skip
        self._tenant_pending = {}

    def _summarise(self, plan: Any, forecast: EnergySeries, slot: int, now_unix: float) -> dict[str, Any]:
        n = forecast.n_slots
        duals = getattr(plan, "dual_price_g_per_gpu_h", None)
        duals_l: list[float | None] = (
            [float(x) for x in np.asarray(duals, dtype=np.float64)[:n]] if duals is not None else [None] * n
        )
        duals_l += [None] * (n - len(duals_l))
        imp = getattr(plan, "grid_import_w", None)
        imports: list[float | None] = [float(x) for x in np.asarray(imp, dtype=np.float64)[:n]] if imp is not None else []
        imports += [None] * (n - len(imports))
        # slots no schedule can keep within their caps (the idle floor alone breaks one), as the optimiser
        # marked them, with the watts by which the floor exceeds the cap; nothing runs there (issue 11, item 5);
        # and those whose cap holds the floor but not the must-run inference: what it sheds there
        diag = getattr(plan, "diagnostics", None) or {}
        deficit = {int(t): float(w) for t, w in zip(diag.get("infeasible_slots", ()), diag.get("slot_deficit_w", ()))}
        shed = {int(t): (float(w), float(g)) for t, w, g in zip(diag.get("shed_slots", ()), diag.get("slot_shed_w", ()),
                                                               diag.get("slot_shed_gpus", ()))}
        cause = {int(t): str(c) for t, c in zip(diag.get("shed_slots", ()), diag.get("slot_shed_cause", ()))}
        slots = [
            {
                "slot": slot + i,
                "start_utc": iso_utc(self.epoch_unix_s + (slot + i) * forecast.slot_s),
                "dual_price_g_per_gpu_h": duals_l[i],
                "carbon_g_per_kwh": float(forecast.carbon_g_per_kwh[i]),
                "wind_w": float(forecast.wind_w[i]),
                "grid_cap_w": float(forecast.grid_cap_w[i]),
                "site_max_w": float(forecast.site_max_w[i]),
                "grid_import_w": imports[i],  # the plan's grid import (null without an optimiser's plan)
                "infeasible": i in deficit or i in shed,
                "deficit_w": deficit.get(i, 0.0),
                "shed_w": shed.get(i, (0.0, 0.0))[0],
                "shed_gpus": shed.get(i, (0.0, 0.0))[1],
                "shed_cause": cause.get(i, ""),  # what cannot hold its inference (kernels.check.SHED_CAUSES)
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
            "infeasible_slots": [slot + t for t in sorted({*deficit, *shed}) if t < n],
            "shed_slots": [slot + t for t in sorted(shed) if t < n],
            # jobs no pool can hold in any slot now (kernels.check.unplaceable, e.g. after a node failure): left
            # out of the plan, unfinished for capacity; every other job is planned
            "left_out_jobs": [str(j) for j in diag.get("left_out_job_ids", ())],
            # running non-preemptible jobs this slot cannot hold (the inference takes their pool, or this slot's
            # healthy GPUs or cap cannot hold them: kernels.check.running_blocks; a slot announced for later stops
            # nothing now): stopped (their work since the checkpoint lost) and planned again later
            "displaced_jobs": [str(j) for j in diag.get("displaced_job_ids", ())],
            "slots": slots,
        }

    def _use_live_series(self) -> None:
        """Plan on the live signals' latest series (when the server has them and they changed)."""
        if self.live is None:
            return
        self._record_announced_caps()
        series = self.live.series()
        if series is not self._energy:
            from scheduler.signals import make_forecaster

            self._energy = series
            self._forecaster = make_forecaster(self.config.forecast, series, seed=self.config.seed,
                                               wind_capacity_w=self.site.wind.contract_mw * 1e6)  # fmt: skip

    def _record_announced_caps(self) -> None:
        """Caps a live source announced (the grid operator's congestion feed) become congestion events once
        each (``created_by`` ``feed:<source>``): in ``/v1/congestion``, the metrics and the dashboards'
        annotations, as if an operator had typed them in. The merged series already carries them."""
        assert self.live is not None
        new = [c for c in self.live.announced_caps() if c not in self._announced]
        if not new:
            return
        stored = {(c.start_unix_s, c.end_unix_s, c.cap_mw, c.created_by) for c in self.store.congestion_events()}
        for start, end, cap_mw, source in new:
            self._announced.add((start, end, cap_mw, source))
            by = f"feed:{source}"
            if (start.timestamp(), end.timestamp(), cap_mw, by) not in stored:  # not recorded before a restart
                self.add_congestion(cap_mw, start.timestamp(), end.timestamp(), by, "announced by the live feed")

    def _stored_state(self, job_id: str, tenant: str) -> str | None:
        """A dependency's state from the store, for the loop's gate (None: ``tenant`` has no such job)."""
        r = self.store.get(job_id)
        return r.state if r is not None and r.tenant == tenant else None

    def _publish_metrics(self, out: TickOutcome) -> None:
        m = self._metrics_obj()
        if m is None:
            return
        # job counts by (state, tenant) are kept by the store as states change: no scan of the jobs table
        counts = {("done" if st == "finished" else st, t): n for (st, t), n in self.store.counts().items()}
        # TenantAccount carries every field of metrics.TenantUsage (demand, period and commitment included)
        usage = self._tick_accounts
        with self._metrics_lock:
            m.observe_tick(out.report)
            m.observe_jobs(counts)
            m.observe_usage(usage)
            if self.live is not None:
                m.observe_signals(self.live.staleness_s())
            modes = getattr(self.executor, "power_control_modes", None)
            m.observe_power_control(modes() if modes is not None else {"simulated": sum(p.nodes for p in self.site.pools)})

    def active_congestion_now(self) -> list[Congestion]:
        now = self.clock.now_unix_s()
        return [c for c in self.store.congestion_events(active_after_unix_s=now) if c.start_unix_s <= now]


def event_tick_wait_s(
    since_tick_s: float, min_interval_s: float, tick_cpu_s: float, cpu_share: float, until_slot_s: float
) -> float:
    """Wall seconds still to wait, ``since_tick_s`` after the last tick ended, before the tick an event asked
    for: until ``min_interval_s`` after that tick, and until its ``tick_cpu_s`` is at most ``cpu_share`` of
    the time from its start (``tick_cpu_s * (1 - cpu_share) / cpu_share`` after its end), but never past the
    next slot's start (``until_slot_s`` from now), whose tick is due anyway. 0: tick now."""
    gap_s = max(min_interval_s, tick_cpu_s * (1.0 - cpu_share) / cpu_share)
    return max(min(gap_s - since_tick_s, until_slot_s), 0.0)


def _finite(x: Any) -> float | None:
    if x is None:
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None
