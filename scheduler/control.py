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
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from scheduler.accounting import integrate
from scheduler.energy import EnergySeries
from scheduler.errors import InputError
from scheduler.executors.base import Clock, Executor, ExecutorEvent
from scheduler.jobs import Job, check_jobs_fit, eligible_pools
from scheduler.models import Site
from scheduler.policies.base import Assignment, Decisions, JobState, Policy, Snapshot
from scheduler.policies.capacity import EligibilityCache, SitePower, inference_pool_order
from scheduler.rules import RulesResult, enforce_rules

log = logging.getLogger(__name__)

_TOL_W = 1e-6


# ------------------------------------------------------------------------------------------ values


@dataclass(slots=True)
class JobRecord:
    """The control loop's bookkeeping for one job (mutable state, owned by the loop).

    Where and how the job ran is kept as run segments ``(first slot, n slots, power fraction, pool)``, not
    one entry per slot; ``slots``, ``fractions``, ``run_fractions`` and ``pools_by_slot`` expand them (the
    segment of a job running now reaches up to the loop's current slot)."""

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
    segments: list[tuple[int, int, float, str]] = field(default_factory=list)
    last_run_fraction: float = 1.0  # the share of its final slot a finished job ran
    _js: JobState | None = None
    _open: tuple[int, float, str] | None = None  # (first slot, fraction, pool) of the segment running now
    _now: list[int] | None = None  # the loop's current slot, shared by its records

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

    def _all_segments(self) -> list[tuple[int, int, float, str]]:
        segs = list(self.segments)
        if self._open is not None and self._now is not None:
            first, f, pool = self._open
            if self._now[0] > first:
                segs.append((first, self._now[0] - first, f, pool))
        return segs

    @property
    def slots(self) -> list[int]:
        return [t for first, n, _, _ in self._all_segments() for t in range(first, first + n)]

    @property
    def fractions(self) -> list[float]:
        return [f for _, n, f, _ in self._all_segments() for _ in range(n)]

    @property
    def pools_by_slot(self) -> list[str]:
        return [p for _, n, _, p in self._all_segments() for _ in range(n)]

    @property
    def run_fractions(self) -> list[float]:
        out = [1.0] * sum(n for _, n, _, _ in self._all_segments())
        if out and self.state == "done":
            out[-1] = self.last_run_fraction
        return out


class _RunTable:
    """The running jobs as arrays (one row each), for the per-slot power and usage accounting."""

    def __init__(self) -> None:
        self.row: dict[str, int] = {}
        self.free_rows: list[int] = []
        self.n = 0
        cap = 1024
        self.used = np.zeros(cap, dtype=bool)
        self.gpus = np.zeros(cap)
        self.pool = np.zeros(cap, dtype=np.int64)
        self.frac = np.zeros(cap)
        self.tenant = np.zeros(cap, dtype=np.int64)
        self.energy_j = np.zeros(cap)  # since the last flush into the record
        self.carbon_g = np.zeros(cap)

    def _grow(self) -> None:
        cap = self.used.shape[0] * 2
        for name in ("used", "gpus", "pool", "frac", "tenant", "energy_j", "carbon_g"):
            a = getattr(self, name)
            b = np.zeros(cap, dtype=a.dtype)
            b[: a.shape[0]] = a
            setattr(self, name, b)

    def add(self, job_id: str, gpus: int, pool: int, frac: float, tenant: int) -> None:
        if self.free_rows:
            r = self.free_rows.pop()
        else:
            if self.n == self.used.shape[0]:
                self._grow()
            r = self.n
            self.n += 1
        self.row[job_id] = r
        self.used[r] = True
        self.gpus[r], self.pool[r], self.frac[r], self.tenant[r] = gpus, pool, frac, tenant
        self.energy_j[r] = 0.0
        self.carbon_g[r] = 0.0

    def remove(self, job_id: str) -> tuple[float, float]:
        """Free the job's row; returns its energy and carbon since the last flush."""
        r = self.row.pop(job_id)
        self.used[r] = False
        self.free_rows.append(r)
        return float(self.energy_j[r]), float(self.carbon_g[r])


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
    running: Mapping[str, Any],  # job id -> pool (only membership is used)
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
    index = power.index
    w0 = power._gpu_w0.tolist()
    ws = power._gpu_w_slope.tolist()
    fmin_p = power.min_power_fraction.tolist()
    for jid, a in run.items():
        p = index[a.pool]
        f = a.power_fraction
        f = fmin_p[p] if f < fmin_p[p] else (1.0 if f > 1.0 else float(f))
        fr[jid] = f
        pidx[jid] = p
        load += jobs[jid].gpus * (w0[p] + ws[p] * f)
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
    new_run = {
        jid: a if a.power_fraction == fr[jid] else Assignment(a.pool, fr[jid]) for jid, a in run.items() if jid in fr
    }
    violation = max(load - budget, 0.0) if load > budget + _TOL_W else 0.0
    return FastPathResult(
        run=new_run,
        lowered=tuple(lowered),
        dropped=tuple(dropped),
        facility_w=load,
        budget_w=budget,
        violation_w=violation,
    )


# ------------------------------------------------------------------- steps shared with the service


def sanitize_run(
    site: Site,
    run: Mapping[str, Assignment],
    active: Mapping[str, JobState],
    home_pool: Callable[[Job], str | None] | None = None,
    *,
    elig: Callable[[Job], Sequence[int]] | None = None,
    running: Iterable[JobState] | None = None,
    queued_must_run: Iterable[JobState] | None = None,
) -> tuple[dict[str, Assignment], list[str]]:
    """The decisions a tick may act on. Drops decisions for unknown / inactive jobs, unknown pools and pools
    the job may not use (:func:`scheduler.jobs.eligible_pools`: labels, sovereignty, size): sovereignty is
    never left to the policy. Running non-preemptible work cannot move (it stays in its pool at the decided
    fraction), and running must-run or non-preemptible work the policy left out keeps running as it is.
    Returns (run, refused ids).

    ``active``: the queued and running jobs by id. With ``home_pool`` (:meth:`ControlLoop.home_pool`),
    inference is served whatever the policy said: queued must-run work it left out starts in its home pool
    at full power. ``elig`` (an :class:`EligibilityCache`), ``running`` (the running jobs) and
    ``queued_must_run`` (queued inference) spare a scan of ``active`` where the caller keeps them. Pure.
    """
    elig = elig if elig is not None else EligibilityCache(site)
    index = {p.name: i for i, p in enumerate(site.pools)}
    out: dict[str, Assignment] = {}
    refused: list[str] = []
    for jid, a in run.items():
        js = active.get(jid)
        p = index.get(a.pool)
        if js is None or p is None:
            refused.append(jid)
            continue
        if p not in elig(js.job):
            log.warning("policy placed job %s in ineligible pool %s: refused", jid, a.pool)
            refused.append(jid)
            continue
        if js.state == "running" and a.pool != js.pool and not js.job.preemptible:
            out[jid] = Assignment(js.pool or a.pool, a.power_fraction)  # cannot move: stays
            continue
        out[jid] = a
    for js in running if running is not None else (s for s in active.values() if s.state == "running"):
        jid = js.job.job_id
        if jid not in out and (js.job.must_run or not js.job.preemptible):
            out[jid] = Assignment(js.pool or site.pools[0].name, js.power_fraction)
    if home_pool is not None:
        waiting = (
            queued_must_run
            if queued_must_run is not None
            else (s for s in active.values() if s.job.must_run and s.state == "queued")
        )
        for js in waiting:
            jid = js.job.job_id
            if jid not in out:
                home = home_pool(js.job)
                if home is not None:
                    out[jid] = Assignment(home, 1.0)
    return out, refused


@dataclass(frozen=True, slots=True)
class Constrained:
    """A policy's decisions after every step that makes them safe and fair (:func:`constrain`)."""

    run: dict[str, Assignment]  # what apply carries out
    refused: tuple[str, ...]  # unknown / inactive jobs, unknown or ineligible pools
    held: tuple[str, ...]  # non-preemptible starts held back to keep the inference reserve free
    rules: RulesResult  # quotas, owed commitments, weighted fair share
    fast_path: FastPathResult  # the actual caps of this slot


def constrain(
    power: SitePower,
    elig: Callable[[Job], Sequence[int]],
    decided: Mapping[str, Assignment],
    snapshot: Snapshot,
    *,
    active: Mapping[str, JobState],
    running: Mapping[str, JobState],
    queued_must_run: Iterable[JobState],
    queued: Iterable[Job],
    jobs: Mapping[str, Job],
    healthy_gpus: Mapping[str, int],
    actual: EnergySeries,
    home_pool: Callable[[Job], str | None],
) -> Constrained:
    """THE steps between a policy's decision and the executor, for the simulation, the demo and the server
    alike: sanitize (sovereignty; inference served) -> hold for the inference reserve -> tenants' rights
    (:func:`scheduler.rules.enforce_rules`) -> the fast path against this slot's ACTUAL caps
    (:func:`enforce_caps`). ``active``: queued and running jobs; ``running``: the running ones;
    ``queued_must_run``: queued inference; ``queued``: the queued jobs; ``jobs``: every active job by id."""
    run, refused = sanitize_run(power.site, decided, active, home_pool, elig=elig, running=running.values(),
                                queued_must_run=queued_must_run)  # fmt: skip
    run, held = hold_for_reserve(power, run, jobs, running, healthy_gpus, snapshot.inference_reserve_gpus)
    rules = enforce_rules(
        run, jobs, running, queued, healthy_gpus, snapshot.tenant_info, elig, power.names,
        float(snapshot.forecast.slot_s), exclude=(*refused, *held),
        reserve_gpus=reserve_peaks(snapshot.inference_reserve_gpus),
    )  # fmt: skip
    fp = enforce_caps(power, rules.run, jobs, running, healthy_gpus, float(actual.wind_w[0]),
                      float(actual.grid_cap_w[0]), float(actual.site_max_w[0]))  # fmt: skip
    return Constrained(dict(fp.run), tuple(refused), held, rules, fp)


@dataclass(frozen=True, slots=True)
class ActionPlan:
    """What a tick does to the executor, in the order it must be done: stop first (frees GPUs and power),
    then change power limits, then start."""

    preempt: tuple[str, ...]  # running jobs absent from the run set, or moved to another pool
    set_power: tuple[tuple[str, float], ...]  # (job_id, new fraction) of jobs that keep running
    start: tuple[tuple[str, Assignment], ...]  # queued (or moved) jobs to start


def order_actions(run: Mapping[str, Assignment], running: Mapping[str, tuple[str, float]]) -> ActionPlan:
    """The :class:`ActionPlan` that turns ``running`` (job id -> (pool, fraction)) into ``run``. Pure."""
    preempt = tuple(jid for jid, (pool, _) in running.items() if jid not in run or run[jid].pool != pool)
    moved = set(preempt)
    set_power: list[tuple[str, float]] = []
    start: list[tuple[str, Assignment]] = []
    for jid, a in run.items():
        cur = running.get(jid)
        if cur is None or jid in moved:
            start.append((jid, a))
        elif abs(a.power_fraction - cur[1]) > 1e-12:
            set_power.append((jid, a.power_fraction))
    return ActionPlan(preempt, tuple(set_power), tuple(start))


def start_candidates(site: Site, job: Job, a: Assignment) -> list[Assignment]:
    """Where to try to start ``job``: the decided pool, then (inference only: it is served where it fits,
    because the policy plans at pool level and nodes may be fragmented) every other eligible pool at full
    power, in :func:`inference_pool_order`. The loop and the server try the same places in the same order."""
    out = [a]
    if job.must_run:
        order = inference_pool_order(site, eligible_pools(site, job))
        out += [Assignment(site.pools[p].name, 1.0) for p in order if site.pools[p].name != a.pool]
    return out


# ------------------------------------------------------------------------------ inference reserve


class InferenceReserve:
    """Expected inference GPUs per pool over the planning horizon, from the demand seen so far.

    Inference is released slot by slot (one job per slot of the service), so a policy never sees next
    slot's demand. This forecaster keeps the demand observed at each tick, per *home pool* (the first of
    :func:`~scheduler.policies.capacity.inference_pool_order`: the largest eligible pool), and predicts slot
    ``s + h`` as ``ceil((1 + margin) * max(recent, seasonal))``, where ``recent`` is the peak of the last
    ``lookback_s`` and ``seasonal`` the peak within ``+-season_window_s`` of the same time of day on the
    latest observed day (diurnal traffic). Observed slots only; pure (no clock, no I/O), so the service can
    use it as the simulator does.
    """

    def __init__(
        self,
        pool_names: Sequence[str],
        slot_s: float,
        *,
        margin: float = 0.2,
        lookback_s: float = 4 * 3600.0,
        season_s: float = 86400.0,
        season_window_s: float = 3600.0,
    ) -> None:
        if margin < 0 or lookback_s <= 0 or season_s <= 0 or season_window_s < 0 or slot_s <= 0:
            raise InputError(
                f"InferenceReserve: margin {margin} must be >= 0, lookback_s {lookback_s}, season_s {season_s} and "
                f"slot_s {slot_s} > 0, season_window_s {season_window_s} >= 0"
            )
        self.pool_names = tuple(pool_names)
        self.margin = float(margin)
        self.lookback = max(1, int(math.ceil(lookback_s / slot_s)))
        self.season = max(1, int(round(season_s / slot_s)))
        self.window = int(math.ceil(season_window_s / slot_s))
        self._keep = 3 * self.season + self.lookback + 2 * self.window
        self._origin: int | None = None
        self._hist = np.zeros((len(self.pool_names), 0))
        self._seen = np.zeros(0, dtype=bool)

    def observe(self, slot: int, demand_gpus: Mapping[str, float]) -> None:
        """Record the inference GPUs demanded at ``slot`` per home pool (missing pools: 0)."""
        if self._origin is None:
            self._origin = int(slot)
        i = int(slot) - self._origin
        if i < 0:
            return
        if i >= self._hist.shape[1]:
            grow = max(i + 1 - self._hist.shape[1], self._hist.shape[1], 64)
            self._hist = np.concatenate([self._hist, np.zeros((self._hist.shape[0], grow))], axis=1)
            self._seen = np.concatenate([self._seen, np.zeros(grow, dtype=bool)])
        self._hist[:, i] = [float(demand_gpus.get(n, 0.0)) for n in self.pool_names]
        self._seen[i] = True
        if i >= 2 * self._keep:  # forget what no forecast looks at any more
            drop = i - self._keep
            self._hist = self._hist[:, drop:]
            self._seen = self._seen[drop:]
            self._origin += drop

    def forecast(self, slot: int, horizon_slots: int) -> dict[str, NDArray[np.int64]]:
        """Pool name -> ``(horizon_slots,)`` GPUs to keep for inference, index 0 = ``slot``."""
        n = max(int(horizon_slots), 1)
        p = len(self.pool_names)
        if self._origin is None or p == 0:
            return {name: np.zeros(n, dtype=np.int64) for name in self.pool_names}
        now = int(slot) - self._origin
        hist = np.where(self._seen, self._hist, 0.0)[:, : max(now + 1, 0)]
        if hist.shape[1] == 0:
            return {name: np.zeros(n, dtype=np.int64) for name in self.pool_names}
        recent = hist[:, max(0, now + 1 - self.lookback) :].max(axis=1)  # (P,)
        # seasonal: peak around the same time of day on the latest day that is observed for each h
        h = np.arange(n)
        k = np.maximum(1, np.ceil((h + self.window) / self.season)).astype(np.int64)
        centre = now + h - k * self.season
        w = self.window
        padded = np.concatenate([np.zeros((p, w)), hist, np.zeros((p, w))], axis=1)
        if w:
            win = np.lib.stride_tricks.sliding_window_view(padded, 2 * w + 1, axis=1).max(axis=2)  # (P, L)
        else:
            win = padded
        ok = (centre >= 0) & (centre < hist.shape[1])
        seasonal = np.zeros((p, n))
        seasonal[:, ok] = win[:, centre[ok]]
        expected = np.maximum(recent[:, None], seasonal)
        out = np.ceil((1.0 + self.margin) * expected - 1e-9).astype(np.int64)
        return {name: out[i] for i, name in enumerate(self.pool_names)}


def hold_for_reserve(
    power: SitePower,
    run: Mapping[str, Assignment],
    jobs: Mapping[str, Job],
    running: Mapping[str, Any],  # the jobs running now (membership only)
    healthy_gpus: Mapping[str, int],
    reserve: Mapping[str, Any],
) -> tuple[dict[str, Assignment], tuple[str, ...]]:
    """Hold back new starts of non-preemptible work that would take GPUs inference will need.

    In each pool, running and newly started non-preemptible non-inference work may hold at most
    ``healthy - max(inference now, peak of the reserve over the horizon)`` GPUs: what is left is inference's,
    plus preemptible work that inference displaces when it comes. New starts are admitted highest priority
    first (then submit time); the others stay queued. Returns (run, held ids). Pure: no executor calls.
    """
    healthy = power.healthy_array(healthy_gpus)
    need = np.zeros(len(power.names))
    for name, series in reserve.items():
        i = power.index.get(name)
        a = np.asarray(series, dtype=np.float64)
        if i is not None and a.size:
            need[i] = float(a.max())
    inf_now = np.zeros(len(power.names))
    fixed = np.zeros(len(power.names))
    new: list[str] = []
    for jid, asg in run.items():
        j = jobs[jid]
        p = power.index[asg.pool]
        if j.must_run:
            inf_now[p] += j.gpus
        elif not j.preemptible:
            if jid in running:
                fixed[p] += j.gpus
            else:
                new.append(jid)
    if not new:
        return dict(run), ()
    room = healthy - np.maximum(need, inf_now) - fixed
    held: list[str] = []
    for jid in sorted(new, key=lambda j: (-jobs[j].priority, jobs[j].submit_s, j)):
        p = power.index[run[jid].pool]
        if jobs[jid].gpus <= room[p] + 1e-9:
            room[p] -= jobs[jid].gpus
        else:
            held.append(jid)
    if not held:
        return dict(run), ()
    hs = set(held)
    return {j: a for j, a in run.items() if j not in hs}, tuple(held)


def room_victims(job: Job, free_gpus: int, running: Iterable[tuple[str, Job]]) -> list[str] | None:
    """Which running jobs of one pool to preempt so that inference ``job`` fits: preemptible non-inference
    work, lowest priority and latest submitted first, until the free GPUs plus theirs hold it (an executor
    that places a gang of whole nodes may need more than the count: never more than twice what it needs).
    None: even all of them would not make room. Pure; the loop and the service both use it."""
    victims = sorted(
        ((jid, j) for jid, j in running if j.preemptible and not j.must_run),
        key=lambda v: (v[1].priority, -v[1].submit_s, v[0]),
    )
    if free_gpus + sum(j.gpus for _, j in victims) < job.gpus:
        return None
    out: list[str] = []
    free = free_gpus
    for jid, j in victims:  # the caller tries the start after each preemption and stops once it fits
        if free >= 2 * job.gpus:
            break
        out.append(jid)
        free += j.gpus
    return out


def reserve_peaks(reserve: Mapping[str, Any]) -> dict[str, float]:
    """Pool -> the most GPUs the inference reserve keeps over the horizon."""
    out: dict[str, float] = {}
    for name, series in reserve.items():
        a = np.asarray(series, dtype=np.float64)
        out[name] = float(a.max()) if a.size else 0.0
    return out


class _StatesOf(Mapping[str, JobState]):
    """``records`` seen as job id -> JobState (cached per record), without building a dict each tick."""

    __slots__ = ("_records",)

    def __init__(self, records: Mapping[str, JobRecord]) -> None:
        self._records = records

    def __getitem__(self, job_id: str) -> JobState:
        return self._records[job_id].job_state()

    def __iter__(self) -> Any:
        return iter(self._records)

    def __len__(self) -> int:
        return len(self._records)


class _JobsOf(Mapping[str, Job]):
    """``records`` seen as job id -> Job, without building a dict each tick."""

    __slots__ = ("_records",)

    def __init__(self, records: Mapping[str, JobRecord]) -> None:
        self._records = records

    def __getitem__(self, job_id: str) -> Job:
        return self._records[job_id].job

    def __iter__(self) -> Any:
        return iter(self._records)

    def __len__(self) -> int:
        return len(self._records)


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
        reserve: InferenceReserve | None = None,
        tenant_info_fn: Callable[[ControlLoop], Mapping[str, Any]] | None = None,
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
        self.tenant_info_fn = tenant_info_fn  # when given: called each tick for Snapshot.tenant_info
        self._timer = timer
        self.reserve = reserve if reserve is not None else InferenceReserve(self.power.names, self.slot_s)
        self._elig = EligibilityCache(site)
        self._must_run: dict[str, JobRecord] = {}  # released inference (queued or running)
        self._made_room: list[str] = []
        self._tab = _RunTable()
        self._now = [self.slot]  # shared with the records: the end of their open run segments
        self._slot_t0 = 0.0
        self._tenants: list[str] = []
        self._tenant_idx: dict[str, int] = {}
        self.usage: dict[tuple[str, str], list[float]] = {}  # (tenant, UTC day) -> [gpu_s, energy_j, carbon_g]
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
        """:func:`constrain` (sanitize -> hold -> rules -> fast path) on this loop's state."""
        return constrain(
            self.power, self._elig, decided, snap,
            active=_StatesOf(self._active), running=_StatesOf(self._running),
            queued_must_run=[r.job_state() for r in self._must_run.values() if r.state == "queued"],
            queued=(r.job for r in self._active.values() if r.state == "queued"),  # read only with tenants
            jobs=_JobsOf(self.records), healthy_gpus=self.executor.healthy_gpus(), actual=actual,
            home_pool=self.home_pool,
        )  # fmt: skip

    def sanitize(self, run: Mapping[str, Assignment]) -> tuple[dict[str, Assignment], list[str]]:
        """:func:`sanitize_run` on this loop's state. Returns (run, refused ids)."""
        return sanitize_run(
            self.site, run, _StatesOf(self._active), self.home_pool, elig=self._elig,
            running=_StatesOf(self._running).values(),
            queued_must_run=[r.job_state() for r in self._must_run.values() if r.state == "queued"],
        )  # fmt: skip

    def hold(
        self, run: Mapping[str, Assignment], reserve: Mapping[str, Any]
    ) -> tuple[dict[str, Assignment], tuple[str, ...]]:
        """:func:`hold_for_reserve` on this loop's state (non-preemptible starts keep the reserve free)."""
        return hold_for_reserve(
            self.power,
            run,
            _JobsOf(self.records),
            self._running,
            self.executor.healthy_gpus(),
            reserve,
        )

    def enforce(self, run: Mapping[str, Assignment], actual: EnergySeries) -> FastPathResult:
        return enforce_caps(
            self.power,
            run,
            _JobsOf(self.records),
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

    def _stopped(self, rec: JobRecord, lost: float) -> None:
        """Bookkeeping of a running job the loop preempted (it goes back to the queue)."""
        rec.state = "queued"
        rec.preemptions += 1
        rec.lost_work_s += lost
        rec.work_done_s = max(rec.work_done_s - lost, 0.0)
        rec.checkpoint_work_s = rec.work_done_s
        rec.nodes = ()
        rec.touch()
        self._run_stop(rec, self.slot)

    def _run_start(self, rec: JobRecord, a: Assignment) -> None:
        rec.state = "running"
        rec.pool = a.pool
        rec.power_fraction = a.power_fraction
        rec._open = (self.slot, a.power_fraction, a.pool)
        self._tab.add(rec.job.job_id, rec.job.gpus, self.power.index[a.pool], a.power_fraction,
                      self._tenant_index(rec.job.tenant))  # fmt: skip
        self._running[rec.job.job_id] = rec

    def _close_segment(self, rec: JobRecord, end_slot: int) -> None:
        if rec._open is not None:
            first, f, pool = rec._open
            if end_slot > first:
                rec.segments.append((first, end_slot - first, f, pool))
            rec._open = None

    def _run_stop(self, rec: JobRecord, end_slot: int) -> None:
        """The job no longer runs: close its segment at ``end_slot`` (exclusive), flush its energy."""
        self._close_segment(rec, end_slot)
        e, c = self._tab.remove(rec.job.job_id)
        rec.energy_j += e
        rec.carbon_g += c
        del self._running[rec.job.job_id]

    def _run_power(self, rec: JobRecord, f: float) -> None:
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

    def make_room(self, rec: JobRecord, a: Assignment) -> tuple[Any, Assignment, list[tuple[str, float]]]:
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

        Vectorised over the running jobs (:class:`_RunTable`): peak power at the slot start, mean power with
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
    tenant_info_fn: Callable[[ControlLoop], Mapping[str, Any]] | None = None,
    reserve: InferenceReserve | None = None,
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
    loop = ControlLoop(site, ex, policy, clock, jobs=jobs, observers=observers, timer=timer,
                       tenant_info_fn=tenant_info_fn, reserve=reserve)  # fmt: skip
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
    loop.flush_usage()
    wall = timer() - t_start
    name = getattr(policy, "name", type(policy).__name__)
    return SimulationResult(site, name, loop, actual, n, horizon_slots, forecast_name, wall, loop.reports)


def slots_for_days(site: Site, days: float) -> int:
    return int(math.ceil(days * 86400 / site.slot_s))
