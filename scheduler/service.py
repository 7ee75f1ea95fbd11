"""The control plane of ``windward server``: the service (state-backed control loop in a thread). The
FastAPI application over it is :func:`scheduler.api.create_app`.

Time. The service runs on a :class:`ServiceClock`: Unix seconds that advance ``speedup`` times faster
than the wall clock (``--tick-seconds S``: one slot of the site every ``S`` wall seconds; without it, real
time). Its *epoch* (slot 0, the energy series' start) is fixed at the first start and kept in the state
store, so a restart continues the same timeline. Inside the loop, times are seconds since the epoch.

The tick (DESIGN section 4), every slot and on events (a submission, a cancel, a congestion event), at most
one event tick per ``min_event_tick_interval_s`` after the previous one ended (a burst costs one tick)::

    1. intake: new rows of the store (by sequence number) join the in-memory ledger; cancellations
    2. advance the executor to now; record finished / failed jobs (one transaction); account the interval
       since the previous tick through the one integrator (:func:`scheduler.accounting.integrate`);
       expire inference whose demand window passed unserved
    3. snapshot: the ledger's JobStates, forecast with congestion caps, tenant_info (the store's usage plus
       what step 2 accounted)
    4. decide: the policy plans the horizon and returns the first slot
    5. :func:`scheduler.pipeline.constrain`, the same steps the simulation's loop runs: sanitize
       (sovereignty, inference served in its home pool), hold for the inference reserve, tenants' rights
       (:mod:`scheduler.rules`: quotas, owed commitments, weighted fair share), the FAST PATH against this
       slot's ACTUAL wind and caps (congestion included); then ``order_actions`` (stop, power, start)
    6. apply, journalled: ONE transaction of intents (durable before the executor is asked anything),
       the executor calls (inference first; where it finds no GPUs, preemptible work is preempted to make
       room, :func:`scheduler.reserve.room_victims`, each preemption journalled), ONE transaction of
       outcomes (job states, audit rows); cap violations by must-run work alone are recorded
    7. one transaction of usage (per tenant every tick; per job and progress every ``progress_flush_s``),
       then publish: plan summary (per-slot dual prices) and the tick's
       :class:`~scheduler.control.TickReport` to the metrics (job counts from the store's counters)

One control loop, two ledgers. Everything that decides and everything that accounts is shared with
:class:`~scheduler.control.ControlLoop` (the simulator and ``windward demo``): ``constrain``,
``order_actions``, ``start_candidates``, ``room_victims``, the ``InferenceReserve``, ``integrate`` and the
``TickReport``; tests/unit/test_parity.py runs one workload through both and gets the same run slot by slot.
What differs are the seams: (a) the service's jobs live in SQLite, the one source of truth, and every
executor action is journalled (intent before, outcome after) in batched transactions; (b) it runs on wall
time and accounts the time since its previous tick at the start of a tick (so its report at slot s+1 carries
slot s's energy), ticking also at events; (c) submissions and cancellations arrive from API threads and are
drained at the start of a tick.

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
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from scheduler import accounting
from scheduler.accounting import IntervalUsage
from scheduler.auth import Authenticator, admit_job, tenant_pools
from scheduler.control import (
    ActionPlan,
    FastPathResult,
    InferenceReserve,
    TickReport,
    constrain,
    order_actions,
    plan_diagnostics,
    room_victims,
    start_candidates,
)
from scheduler.energy import EnergySeries
from scheduler.errors import ExecutorError, InputError
from scheduler.executors.base import measured_gpu_power_w
from scheduler.jobs import Job
from scheduler.models import JobSpec, Site, Tenant, TenantsFile
from scheduler.pipeline import MeasuredPower
from scheduler.policies.base import Assignment, JobState, Snapshot
from scheduler.policies.capacity import inference_pool_order
from scheduler.rules import RulesResult
from scheduler.state import (
    ActionIntent,
    Congestion,
    JobProgress,
    JobRecord,
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
    policy: str = "windward"
    horizon_hours: float = 24.0
    min_event_tick_interval_s: float = 0.3
    progress_flush_s: float = 5.0
    seed: int = 0
    planner_backend: str = "numpy"
    planner_device: str = "cpu"
    power_control: str = "auto"  # GPU power limits: auto | nvml | simulated (scheduler.power_devices)


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
    refused: list[str] = field(default_factory=list)
    held: tuple[str, ...] = ()  # non-preemptible starts held back to keep the inference reserve free
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
    timings_s: dict[str, float] = field(default_factory=dict)
    expired: list[str] = field(default_factory=list)  # inference whose demand window passed unserved
    made_room: list[str] = field(default_factory=list)  # preempted so that inference found GPUs
    violations: list[str] = field(default_factory=list)
    lost_work_s: float = 0.0
    inference_demand_gpus: int = 0
    inference_served_gpus: int = 0
    queued: int = 0
    running: int = 0
    plan: dict[str, Any] = field(default_factory=dict)
    rules: RulesResult | None = None
    fast_path: FastPathResult | None = None
    measured: MeasuredPower | None = None  # measured power beside the model (None: nothing measured)
    report: TickReport | None = None  # the one report type (scheduler.control.TickReport), for the metrics


def make_policy(name: str, horizon_hours: float, plan_kwargs: Mapping[str, Any] | None = None) -> Policy:
    """The policy by name (``scheduler.policies.get_policy``: windward, backfill, greedy-green).

    ``plan_kwargs`` (e.g. ``{"backend": "torch", "device": "cuda"}``) go to every ``kernels.plan`` call of the
    windward policy; the baselines plan nothing and take none."""
    from scheduler.policies import get_policy

    extra: dict[str, Any] = {"plan_kwargs": dict(plan_kwargs or {})} if name == "windward" else {}
    policy: Policy = get_policy(name, horizon_hours=horizon_hours, **extra)
    return policy


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

    The service holds an in-memory *ledger* of the active (queued and running) jobs: a
    ``JobState`` per job, rebuilt from the store on every start, then kept current by the tick (new rows
    are read by sequence number, cancellations arrive through :meth:`cancel`). The store stays the one
    source of truth; the ledger only spares every tick a read of every active row.
    """

    def __init__(
        self,
        config: ServiceConfig,
        *,
        wall: Callable[[], float] = time.time,
        executor: Executor | None = None,
        policy: Policy | None = None,
    ) -> None:
        if policy is None and config.policy == "windward":
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
            {"backend": config.planner_backend, "device": config.planner_device},
        )  # fmt: skip
        self._energy = self._load_energy()
        from scheduler.signals import make_forecaster

        self._forecaster = make_forecaster(
            config.forecast, self._energy, seed=config.seed, wind_capacity_w=self.site.wind.contract_mw * 1e6
        )
        self._horizon_slots = max(1, int(round(config.horizon_hours * 3600 / slot_s)))
        from scheduler.policies.capacity import SitePower

        self._power = SitePower(self.site)
        from scheduler.policies.capacity import EligibilityCache

        self._elig = EligibilityCache(self.site)
        self._reserve = InferenceReserve(self._power.names, slot_s)  # as ControlLoop: GPUs kept for inference
        self.executor: Executor = executor if executor is not None else make_executor(config, self.now_s())
        # an executor on real time (Ray) advances by itself: the loop polls it; a simulated one is stepped
        self._executor_self_timed = getattr(self.executor, "time_scale", None) is not None
        self._exec_now_s = self.now_s()
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
        # the ledger of active jobs (class docstring), cancellations to act on, usage not yet written
        self._ledger: dict[str, JobState] = {}
        self._seen_seq = 0
        self._cancels: set[str] = set()
        self._cancels_lock = threading.Lock()
        self._unflushed: dict[str, list[float]] = {}  # job id -> [gpu_s, energy_j, carbon_g] not yet written
        self._tenant_pending: dict[str, list[float]] = {}  # tenant -> the same, accrued this tick
        self._gone: dict[str, Job] = {}  # jobs that stopped running this tick (their usage is written now)
        self._served: set[str] = set()  # inference started at least once (never expired)
        self._interval: IntervalUsage | None = None  # what the last advance accounted
        # GPUs healthy since the previous tick (a node that failed since is accounted from the next tick on,
        # as the simulation's loop does)
        self._healthy_then: dict[str, int] = dict(self.executor.healthy_gpus())
        self._usage_day = accounting.day_key(self.clock.now_unix_s())
        self._flushed_wall = -math.inf
        self._tick_accounts: list[accounting.TenantAccount] = []
        self._congestion_now: list[Congestion] = []
        self._rebuild_ledger(running_info)
        for jid in rec.orphans:  # running on the executor but finished / unknown in the store: stop it
            self._journalled_stop_orphan(jid, "orphan after restart")
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
        for s in self._ledger.values():
            t = s.job.tenant
            demand[t] = demand.get(t, 0) + s.job.gpus
            if s.state == "running":
                running[t] = running.get(t, 0) + s.job.gpus
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
            self._thread.join(timeout=60)
        self.submissions.close()
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
            ended = time.monotonic()
            next_slot_unix = self.epoch_unix_s + (math.floor(self.now_s() / slot_s) + 1) * slot_s
            wait_s = max(self.clock.wall_s_until(next_slot_unix), 0.0)
            if self._wake.wait(timeout=wait_s) and not self._stop.is_set():
                # coalesce: a burst of events since the last tick costs one tick, at most one per interval
                rest = self.config.min_event_tick_interval_s - (time.monotonic() - ended)
                if rest > 0:
                    self._stop.wait(rest)
            self._wake.clear()

    def tick(self) -> TickOutcome:
        """One pass of the control loop (module docstring). Safe to call from tests directly."""
        with self._tick_lock:
            t0 = time.perf_counter()
            out = self._tick()
            out.tick_s = time.perf_counter() - t0
            out.report = self._report(out)
            self._ticks += 1
            self._last_outcome = out
            tp = time.perf_counter()
            self._publish_metrics(out)
            out.timings_s["publish"] = time.perf_counter() - tp
            log.info(
                "tick slot %d: %d jobs, %d started, %d preempted, %d finished, fast path %d/%d, "
                "facility %.0f W (grid %.0f / cap %.0f W), plan %.3f s, tick %.3f s",
                out.slot, out.n_jobs, len(out.started), len(out.preempted), len(out.finished),
                out.fast_path_power, out.fast_path_preempted, out.facility_w, out.grid_import_w,
                out.grid_cap_w, out.plan_s, out.tick_s,
            )  # fmt: skip
            return out

    # -- the ledger
    def _rebuild_ledger(self, running_info: Mapping[str, Any]) -> None:
        """The active jobs from the store (after recovery), with the executor's view of running ones."""
        self._ledger.clear()
        self._seen_seq = 0
        self._ingest(self.store.list_jobs(), running_info)

    def _ingest(self, recs: list[JobRecord], running_info: Mapping[str, Any]) -> None:
        for r in recs:
            self._seen_seq = max(self._seen_seq, r.seq)
            if r.state not in ("queued", "running") or r.id in self._ledger:
                continue
            job = r.to_job(self.epoch_unix_s, self.tenant_pools.get(r.tenant, ()))
            ri = running_info.get(r.id) if r.state == "running" else None
            if r.state == "running":
                self._served.add(r.id)
            if ri is not None:
                self._ledger[r.id] = JobState(job, "running", ri.work_done_s, ri.checkpoint_work_s, ri.pool,
                                              ri.power_fraction, tuple(ri.nodes))  # fmt: skip
            elif r.state == "running":
                self._ledger[r.id] = JobState(job, "running", r.work_done_s, r.checkpoint_work_s, r.pool,
                                              r.power_fraction, r.nodes)  # fmt: skip
            else:
                self._ledger[r.id] = JobState(job, "queued", r.work_done_s, r.checkpoint_work_s, None)
            if r.cancel_requested and r.state == "running":
                with self._cancels_lock:
                    self._cancels.add(r.id)

    def _intake(self) -> list[str]:
        """New submissions (by sequence number) and cancellations since the last tick. Returns the ids of
        running jobs to stop because their tenant cancelled them (queued ones simply leave the ledger)."""
        with self._cancels_lock:
            cancels, self._cancels = self._cancels, set()
        self._ingest(self.store.list_jobs(after_seq=self._seen_seq), {})
        stop: list[str] = []
        for jid in sorted(cancels):
            s = self._ledger.get(jid)
            if s is None:
                continue
            if s.state == "running":
                stop.append(jid)
            else:
                del self._ledger[jid]  # the store cancelled it already (request_cancel)
        return stop

    # -- 1. advance the executor
    def _advance(self, out: TickOutcome, now_s: float) -> dict[str, Any]:
        """Let the executor reach ``now_s``; record finished / failed jobs (one transaction) and accrue the
        usage of what ran since the last tick. Returns the executor's running jobs now."""
        dt = max(now_s - self._exec_now_s, 0.0)
        # what ran since the last tick, as the ledger knows it (pool, power fraction, GPUs)
        running_before = {j: s for j, s in self._ledger.items() if s.state == "running"}
        events = self.executor.step(0.0 if self._executor_self_timed else dt)
        t_prev = self._exec_now_s
        self._exec_now_s = now_s
        now_unix = self.epoch_unix_s + now_s
        end_of: dict[str, float] = {}
        stops: list[StopOutcome] = []
        for ev in events:
            if ev.job_id is None or ev.job_id not in self._ledger:
                continue
            t_ev = min(max(ev.time_s, t_prev), now_s) if not self._executor_self_timed else now_s
            if ev.kind == "finished":
                end_of[ev.job_id] = t_ev
                stops.append(StopOutcome(None, ev.job_id, "finished", 0.0, "finished"))
                out.finished.append(ev.job_id)
                self._leave(ev.job_id)
                del self._ledger[ev.job_id]
            elif ev.kind == "failed":
                end_of[ev.job_id] = t_ev
                # a failure of the node, not of the job: it resumes from its checkpoint elsewhere
                s = self._ledger[ev.job_id]
                # the work safe at the failure: the executor's own figure where it reports one (the ledger's
                # checkpoint is as of the previous tick), as the simulation's loop resumes it
                at_fail = s.checkpoint_work_s if ev.work_done_s is None else ev.work_done_s - ev.lost_s
                ckpt = min(max(at_fail, s.checkpoint_work_s), s.job.duration_s)
                stops.append(StopOutcome(None, ev.job_id, "queued", ev.lost_s, ev.detail or "node failure", ckpt))
                out.failed.append(ev.job_id)
                self._leave(ev.job_id)
                self._ledger[ev.job_id] = JobState(s.job, "queued", ckpt, ckpt, None)
        if stops:
            self.store.record_outcomes(stopped=stops, now_unix_s=now_unix)
        run_now = dict(self.executor.running())
        self._interval = self._accrue(running_before, end_of, t_prev, now_s, dt) if dt > 0 else None
        return run_now

    def _accrue(self, running_before: Mapping[str, JobState], end_of: Mapping[str, float], t_prev: float,
                now_s: float, dt: float) -> IntervalUsage:  # fmt: skip
        """Usage over ``[t_prev, now_s]`` through the one integrator (:func:`scheduler.accounting.integrate`):
        the site's energy and carbon for the tick report, and each job's, kept in memory per job until the
        next flush and per tenant for this tick's write."""
        now_unix = self.epoch_unix_s + now_s
        slot = min(int(t_prev // self.site.slot_s), self._energy.n_slots - 1)
        actual = self._caps(self._energy.window(slot, 1), slot, self.store.congestion_events(now_unix - dt))
        ids = list(running_before)
        pw = self._power
        states = [running_before[j] for j in ids]
        pool = np.array([pw.index[s.pool or ""] for s in states], dtype=np.int64)
        gpus = np.array([float(s.job.gpus) for s in states])
        frac = np.array([s.power_fraction for s in states])
        runf = np.array([max(min(end_of.get(j, now_s), now_s) - t_prev, 0.0) / dt for j in ids])
        iv = accounting.integrate(pw, pool, gpus, frac, runf, pw.healthy_array(self._healthy_then),
                                  float(actual.wind_w[0]), float(actual.carbon_g_per_kwh[0]), dt)  # fmt: skip
        tenant_acc = self._tenant_pending
        for k, j in enumerate(ids):
            vals = (float(iv.job_gpu_s[k]), float(iv.job_energy_j[k]), float(iv.job_carbon_g[k]))
            acc = self._unflushed.get(j)
            if acc is None:
                acc = self._unflushed[j] = [0.0, 0.0, 0.0]
            tacc = tenant_acc.get(states[k].job.tenant)
            if tacc is None:
                tacc = tenant_acc[states[k].job.tenant] = [0.0, 0.0, 0.0]
            for x in range(3):
                acc[x] += vals[x]
                tacc[x] += vals[x]
        self._usage_day = accounting.day_key(now_unix - dt / 2)
        return iv

    def _home_pool(self, job: Job) -> str | None:
        """Where inference is placed first and its demand booked: the largest eligible pool (as ControlLoop)."""
        order = inference_pool_order(self.site, self._elig(job))
        return self._power.names[order[0]] if order else None

    def _job_of(self, job_id: str) -> Job | None:
        s = self._ledger.get(job_id)
        return s.job if s is not None else self._gone.get(job_id)

    def _leave(self, job_id: str) -> None:
        """A job stops running (finished, failed, preempted, cancelled): its usage is written this tick."""
        s = self._ledger.get(job_id)
        if s is not None:
            self._gone[job_id] = s.job

    # -- the tick
    def _tick(self) -> TickOutcome:
        tm: dict[str, float] = {}
        t = time.perf_counter()
        now_s = self.now_s()
        slot_s = self.site.slot_s
        slot = int(now_s // slot_s)
        out = TickOutcome(slot=slot, now_s=now_s)
        out.timings_s = tm
        now_unix = self.epoch_unix_s + now_s
        # 1. intake and advance
        cancel_running = self._intake()
        run_now = self._advance(out, now_s)
        # a cancelled job that finished or failed while the executor advanced: nothing left to stop
        late = [j for j in cancel_running if j in self._ledger and self._ledger[j].state != "running"]
        if late:  # failed (requeued): complete the cancel in the store
            self.store.record_outcomes(stopped=[StopOutcome(None, j, "cancelled", 0.0, "cancelled") for j in late],
                                       now_unix_s=now_unix)  # fmt: skip
            for j in late:
                del self._ledger[j]
                out.cancelled.append(j)
        cancel_running = [j for j in cancel_running if j in self._ledger]
        for jid, ri in run_now.items():  # progress of what still runs
            s = self._ledger.get(jid)
            if s is not None and s.state == "running":
                if (s.work_done_s, s.checkpoint_work_s) != (ri.work_done_s, ri.checkpoint_work_s):
                    self._ledger[jid] = replace(s, work_done_s=ri.work_done_s, checkpoint_work_s=ri.checkpoint_work_s)
        self._expire_inference(out, now_s, now_unix)
        tm["intake_advance"] = time.perf_counter() - t

        # 2. snapshot
        t = time.perf_counter()
        cancelling = set(cancel_running)
        active = {j: s for j, s in self._ledger.items() if j not in cancelling} if cancelling else self._ledger
        states = tuple(active.values())
        out.n_jobs = len(states)
        demand: dict[str, float] = {}  # inference demand per home pool, for the reserve (as ControlLoop)
        for s in states:
            if s.job.must_run:
                home = self._home_pool(s.job)
                if home is not None:
                    demand[home] = demand.get(home, 0.0) + s.job.gpus
        self._reserve.observe(slot, demand)
        e_slot = min(slot, self._energy.n_slots - 1)
        congestion = self.store.congestion_events(active_after_unix_s=now_unix)
        forecast = self._caps(self._forecaster.forecast(e_slot, self._horizon_slots), slot, congestion)
        accts = self._ledger_accounts(now_unix)
        self._tick_accounts = accts
        self._congestion_now = [c for c in congestion if c.start_unix_s <= now_unix]
        info = accounting.tenant_info(accts, self.tenants, self.tenant_pools)
        healthy = self.executor.healthy_gpus()
        snap = Snapshot(now_s=now_s, slot=slot, site=self.site, jobs=states, healthy_gpus=healthy,
                        forecast=forecast, tenant_info=info,
                        inference_reserve_gpus=self._reserve.forecast(slot, forecast.n_slots))  # fmt: skip
        tm["snapshot"] = time.perf_counter() - t

        # 3. decide
        t = time.perf_counter()
        decisions = self.policy.decide(snap)
        out.plan_s = tm["decide"] = time.perf_counter() - t

        # 4. control.constrain, the steps the simulation's loop runs too: sanitize (sovereignty, inference
        #    served), hold for the inference reserve, tenants' rights (scheduler.rules), the FAST PATH against
        #    this slot's ACTUAL wind and caps (congestion included); then the ordered actions
        t = time.perf_counter()
        actual = self._caps(self._energy.window(e_slot, 1), slot, congestion)
        running_states = {j: s for j, s in active.items() if s.state == "running"}
        running_pool = {j: s.pool or "" for j, s in running_states.items()}
        c = constrain(
            self._power, self._elig, decisions.run, snap, active=active, running=running_states,
            running_states=running_states.values(),
            queued_must_run=[s for s in states if s.job.must_run and s.state == "queued"],
            queued=[s.job for s in states if s.state == "queued"], jobs={j: s.job for j, s in active.items()},
            healthy_gpus=healthy, actual=actual, home_pool=self._home_pool,
            measured_gpu_w=measured_gpu_power_w(self.executor),
        )  # fmt: skip
        out.refused, out.held, out.rules, out.fast_path = list(c.refused), c.held, c.rules, c.fast_path
        out.measured = c.measured
        fp = c.fast_path
        out.fast_path_power = len(fp.lowered)
        out.fast_path_preempted = sum(1 for j in fp.dropped if j in running_pool)
        plan = order_actions(c.run, {j: (s.pool or "", s.power_fraction) for j, s in running_states.items()})
        tm["sanitize_enforce"] = time.perf_counter() - t

        # 5. apply, journalled: ONE transaction of intents, act, ONE transaction of outcomes
        t = time.perf_counter()
        self._apply(plan, cancel_running, fp.dropped, run_now, out, now_unix)
        tm["apply"] = time.perf_counter() - t

        # 6. write progress and usage (one transaction), publish
        t = time.perf_counter()
        self._flush(now_unix)
        runs = [s for s in self._ledger.values() if s.state == "running"]
        pw = self._power
        self._healthy_then = dict(self.executor.healthy_gpus())
        now_iv = accounting.integrate(  # the power drawn from now on (no time has passed: dt 0)
            pw, np.array([pw.index[s.pool or ""] for s in runs], dtype=np.int64),
            np.array([float(s.job.gpus) for s in runs]), np.array([s.power_fraction for s in runs]),
            np.ones(len(runs)), pw.healthy_array(self._healthy_then), float(actual.wind_w[0]),
            float(actual.carbon_g_per_kwh[0]), 0.0,
        )  # fmt: skip
        out.facility_w, out.grid_import_w = now_iv.facility_w, now_iv.grid_import_w
        out.grid_cap_w, out.site_max_w = float(actual.grid_cap_w[0]), float(actual.site_max_w[0])
        out.actual = actual
        out.busy_gpus = {n: int(round(float(b))) for n, b in zip(pw.names, now_iv.busy_gpus)}
        tol = 1e-6 * max(1.0, out.site_max_w)
        if out.facility_w > out.site_max_w + tol:
            out.violations.append(f"slot {slot}: facility {out.facility_w:.0f} W > site max {out.site_max_w:.0f} W")
        if out.grid_import_w > out.grid_cap_w + tol:
            out.violations.append(f"slot {slot}: grid import {out.grid_import_w:.0f} W > cap {out.grid_cap_w:.0f} W")
        for v in out.violations:
            log.warning("cap violation (must-run / non-preemptible work alone): %s", v)
        out.inference_demand_gpus = sum(s.job.gpus for s in self._ledger.values() if s.job.must_run)
        out.inference_served_gpus = sum(s.job.gpus for s in runs if s.job.must_run)
        out.queued = len(self._ledger) - len(runs)
        out.running = len(runs)
        self._plan = _PlanView(now_unix, slot, "ok", self._summarise(decisions.plan, forecast, slot, now_unix))
        out.plan = plan_diagnostics(decisions.plan)
        tm["flush_summary"] = time.perf_counter() - t
        return out

    def _expire_inference(self, out: TickOutcome, now_s: float, now_unix: float) -> None:
        """Inference demand whose window (``submit_s + duration_s``) passed before it was ever served is
        expired, as in the simulation: it leaves the queue (stored as ``failed``, detail ``expired``)."""
        expired = [
            j for j, s in self._ledger.items()
            if s.job.must_run and s.state == "queued" and j not in self._served
            and now_s >= s.job.submit_s + s.job.duration_s - 1e-9
        ]  # fmt: skip
        if not expired:
            return
        detail = "expired: the inference demand window passed unserved"
        self.store.record_outcomes(stopped=[StopOutcome(None, j, "failed", 0.0, detail) for j in expired],
                                   now_unix_s=now_unix)  # fmt: skip
        for j in expired:
            del self._ledger[j]
            out.expired.append(j)

    def _apply(self, plan: ActionPlan, cancel_running: list[str], dropped: tuple[str, ...],
               run_now: Mapping[str, Any], out: TickOutcome, now_unix: float) -> None:  # fmt: skip
        """Carry out ``plan`` (and the stops of cancelled running jobs) with the journal around it."""
        dropped_set = set(dropped)
        preempts = [(j, "cancelled", "cancelled") for j in cancel_running] + [
            (j, "power_cap" if j in dropped_set else "plan", "queued") for j in plan.preempt
        ]
        # inference first (as the simulation's loop): it takes its GPUs before other work fragments the nodes
        starts = sorted(((j, a, self._ledger[j]) for j, a in plan.start), key=lambda x: not x[2].job.must_run)
        intents = (
            [ActionIntent("preempt", j, {"reason": r}) for j, r, _ in preempts]
            + [ActionIntent("set_power", j, {"power_fraction": f}) for j, f in plan.set_power]
            + [ActionIntent("start", j, {"pool": a.pool, "power_fraction": a.power_fraction,
                                          "work_done_s": s.work_done_s if s.state == "queued" else None})
               for j, a, s in starts]
        )  # fmt: skip
        ids = iter(self.store.intend_many(intents, now_unix))  # durable before anything is done
        stopped: list[StopOutcome] = []
        started: list[StartOutcome] = []
        plain: list[PlainOutcome] = []
        for jid, reason, final in preempts:
            aid = next(ids)
            s = self._ledger[jid]
            ri = run_now.get(jid)
            if ri is None:  # the executor no longer runs it (finished or lost in between): nothing to stop
                stopped.append(StopOutcome(aid, jid, final, 0.0, reason, s.checkpoint_work_s))
            else:
                try:
                    lost = self.executor.preempt(jid, reason)
                except ExecutorError as e:
                    plain.append(PlainOutcome(aid, "error", {"error": str(e)}))
                    log.warning("preempt of %s failed: %s", jid, e)
                    continue
                resume = min(max(ri.work_done_s - lost, 0.0), s.job.duration_s)
                stopped.append(StopOutcome(aid, jid, final, lost, reason, resume))
                s = replace(s, work_done_s=resume, checkpoint_work_s=resume)
            self._leave(jid)
            if final == "cancelled":
                out.cancelled.append(jid)
                del self._ledger[jid]
            else:
                out.preempted.append(jid)
                self._ledger[jid] = JobState(s.job, "queued", s.work_done_s, s.checkpoint_work_s, None)
        for jid, f in plan.set_power:
            aid = next(ids)
            try:
                self.executor.set_power_fraction(jid, f)
            except ExecutorError as e:
                plain.append(PlainOutcome(aid, "error", {"error": str(e)}))
                continue
            plain.append(PlainOutcome(aid, "ok", {"power_fraction": f}))
            self._ledger[jid] = replace(self._ledger[jid], power_fraction=f)
        for jid, a, _ in starts:
            aid = next(ids)
            s = self._ledger[jid]  # after the preempts above (a moved job resumes from its checkpoint)
            placement = None
            error = None
            for cand in start_candidates(self.site, s.job, a):
                try:
                    placement = self.executor.start(s.job, cand.pool, cand.power_fraction, s.work_done_s)
                except ExecutorError as e:
                    error = str(e)
                    log.warning("start of %s in %s failed: %s", jid, cand.pool, e)
                    continue
                if placement is not None:
                    a = cand
                    break
            if placement is None and s.job.must_run:
                placement, a = self._make_room(s.job, a, run_now, stopped, out, now_unix)
            if placement is None:
                plain.append(PlainOutcome(aid, "error" if error else "no_fit", {"error": error} if error else {}))
                continue
            started.append(StartOutcome(aid, jid, a.pool, self._pool_labels[a.pool], tuple(placement.nodes),
                                        a.power_fraction))  # fmt: skip
            self._ledger[jid] = JobState(s.job, "running", s.work_done_s, s.checkpoint_work_s, a.pool,
                                         a.power_fraction, tuple(placement.nodes))  # fmt: skip
            out.started.append(jid)
            if s.job.must_run:
                self._served.add(jid)
        gone = self.store.record_outcomes(started=started, stopped=stopped, plain=plain, now_unix_s=now_unix)
        for jid in gone:  # cancelled while this tick started it: stop it again at once, journalled
            self._leave(jid)
            self._ledger.pop(jid, None)
            out.started.remove(jid)
            self._journalled_stop_orphan(jid, "cancelled")
            out.cancelled.append(jid)

    def _make_room(self, job: Job, a: Assignment, run_now: Mapping[str, Any], stopped: list[StopOutcome],
                   out: TickOutcome, now_unix: float) -> tuple[Any, Assignment]:  # fmt: skip
        """Inference that found no free GPUs: preempt preemptible non-inference work in an eligible pool
        (:func:`scheduler.control.room_victims`: lowest priority, latest submitted first), journalled, until
        it starts, as the simulation's loop does. Returns (placement or None, assignment used)."""
        order = [self._power.index[a.pool]] + [
            p for p in inference_pool_order(self.site, self._elig(job)) if self._power.names[p] != a.pool
        ]
        for p in order:
            name = self._power.names[p]
            free = int(self.executor.free_gpus_by_node(name).sum())
            running = [(j, s.job) for j, s in self._ledger.items() if s.state == "running" and s.pool == name]
            victims = room_victims(job, free, running)
            if victims is None:
                continue
            for vid in victims:
                v = self._ledger[vid]
                reason = f"room for inference {job.job_id}"
                aid = self.store.intend_many([ActionIntent("preempt", vid, {"reason": reason})], now_unix)[0]
                try:
                    lost = self.executor.preempt(vid, reason)
                except ExecutorError as e:
                    self.store.record_outcomes(plain=[PlainOutcome(aid, "error", {"error": str(e)})],
                                               now_unix_s=now_unix)  # fmt: skip
                    continue
                ri = run_now.get(vid)
                done = ri.work_done_s if ri is not None else v.work_done_s
                resume = min(max(done - lost, 0.0), v.job.duration_s)
                stopped.append(StopOutcome(aid, vid, "queued", lost, reason, resume))
                self._leave(vid)
                self._ledger[vid] = JobState(v.job, "queued", resume, resume, None)
                out.preempted.append(vid)
                out.made_room.append(vid)
                out.lost_work_s += lost
                placement = self.executor.start(job, name, 1.0, 0.0)
                if placement is not None:
                    log.info("inference %s: preempted %d job(s) in %s to make room", job.job_id, len(out.made_room), name)
                    return placement, Assignment(name, 1.0)
        log.warning("inference %s (%d GPUs): no eligible pool can make room", job.job_id, job.gpus)
        return None, a

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
        and the time of this tick."""
        due = time.monotonic() - self._flushed_wall >= self.config.progress_flush_s
        if due:
            self._flushed_wall = time.monotonic()
            ids = list(self._unflushed)
        else:
            ids = [j for j in self._gone if j in self._unflushed]
        usage = []
        for jid in ids:
            acc = self._unflushed.pop(jid)
            job = self._job_of(jid)
            usage.append(UsageDelta(jid, job.tenant if job is not None else "", acc[0], acc[1], acc[2]))
        progress = []
        if due:
            progress = [
                JobProgress(j, s.pool or "", s.nodes, s.power_fraction, s.work_done_s, s.checkpoint_work_s)
                for j, s in self._ledger.items()
                if s.state == "running"
            ]
        tenant_usage = [UsageDelta("", t, a[0], a[1], a[2]) for t, a in self._tenant_pending.items()]
        self.store.record_progress(
            progress, usage, self._usage_day, now_unix, tenant_usage=tenant_usage,
            meta={"last_tick_unix_s": repr(self.clock.now_unix_s())},
        )  # fmt: skip
        self._tenant_pending = {}
        self._gone = {}

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

    def _report(self, out: TickOutcome) -> TickReport:
        """The tick as the one :class:`~scheduler.control.TickReport` (what the simulation's loop publishes).
        Powers are those drawn from now on; energy and carbon are what the one integrator accounted for the
        time since the previous tick (``interval_s``)."""
        iv = self._interval
        actual = out.actual
        fp = out.fast_path
        rules = out.rules
        return TickReport(
            slot=out.slot, time_s=out.now_s, slot_s=float(self.site.slot_s), facility_w=out.facility_w,
            facility_peak_w=out.facility_w, grid_import_w=out.grid_import_w, grid_import_peak_w=out.grid_import_w,
            wind_w=float(actual.wind_w[0]) if actual is not None else 0.0, grid_cap_w=out.grid_cap_w,
            site_max_w=out.site_max_w,
            carbon_g_per_kwh=float(actual.carbon_g_per_kwh[0]) if actual is not None else 0.0,
            carbon_g=iv.carbon_g if iv is not None else 0.0,
            energy_wind_j=iv.energy_wind_j if iv is not None else 0.0,
            energy_grid_j=iv.energy_grid_j if iv is not None else 0.0,
            busy_gpus=dict(out.busy_gpus), healthy_gpus=self.executor.healthy_gpus(), queued=out.queued,
            running=out.running, starts=tuple(out.started), preemptions=tuple(out.preempted),
            finishes=tuple(out.finished), failures=tuple(out.failed), lost_work_s=out.lost_work_s,
            lowered=fp.lowered if fp is not None else (), dropped=fp.dropped if fp is not None else (),
            start_failed=(), refused=tuple(out.refused), violations=tuple(out.violations),
            inference_demand_gpus=out.inference_demand_gpus, inference_served_gpus=out.inference_served_gpus,
            decide_s=out.plan_s, plan=out.plan, held=tuple(out.held), made_room=tuple(out.made_room),
            over_quota=rules.over_quota if rules is not None else (),
            owed_started=rules.owed_started if rules is not None else (),
            fair_started=rules.fair_started if rules is not None else (),
            displaced=rules.displaced if rules is not None else (),
            expired=tuple(out.expired), interval_s=iv.dt_s if iv is not None else 0.0, tick_s=out.tick_s,
            congestion_active=bool(self._congestion_now),
            measured_facility_w=out.measured.facility_w if out.measured is not None else None,
            power_source="measured" if out.measured is not None else "model",
        )  # fmt: skip

    def _publish_metrics(self, out: TickOutcome) -> None:
        m = self._metrics_obj()
        if m is None:
            return
        # job counts by (state, tenant) are kept by the store as states change: no scan of the jobs table
        counts = {("done" if st == "finished" else st, t): n for (st, t), n in self.store.counts().items()}
        # TenantAccount carries every field of metrics.TenantUsage (demand, period and commitment included)
        usage = self._tick_accounts
        report = out.report if out.report is not None else self._report(out)
        with self._metrics_lock:
            m.observe_tick(report)
            m.observe_jobs(counts)
            m.observe_usage(usage)
            modes = getattr(self.executor, "power_control_modes", None)
            m.observe_power_control(modes() if modes is not None else {"simulated": sum(p.nodes for p in self.site.pools)})

    def active_congestion_now(self) -> list[Congestion]:
        now = self.clock.now_unix_s()
        return [c for c in self.store.congestion_events(active_after_unix_s=now) if c.start_unix_s <= now]


def _finite(x: Any) -> float | None:
    if x is None:
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None
