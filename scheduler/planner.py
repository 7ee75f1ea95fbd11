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
  Must-run (inference) rows are ordered by :func:`serving_keys` instead (tenant class, job priority, owed
  commitment, submission), on the scale of their weights: their cells are fixed, so their weight enters no
  objective term; it orders whom a cap that cannot hold all the inference serves (``kernels.check.serving_order``,
  the one order the loop's fast path uses under every policy), and the search reads its scale.
- Rolling-horizon terms (``WeightSettings``; ``windward plan`` keeps the defaults, the ``windward`` policy
  turns them on): with ``terminal_value="clearing"`` work that need not start inside the horizon (no
  deadline there, no owed commitment) is valued at the horizon's *clearing price*
  (:func:`clearing_value_g_per_gpu_s`: the marginal carbon at which the horizon's cheapest capacity, wind
  first, holds the backlog plus ``arrival_share`` of the work expected to arrive) times a mild priority
  factor ``clearing_priority_base ** priority`` and the same ageing factor. Work is then deferred past the
  horizon when the horizon's slots are dearer than that, instead of being crammed into it, and the
  capacity expected arrivals will need is left to them. ``beyond_horizons`` k prices that work with k more
  horizons of capacity at the horizon's own costs behind it (against the arrivals expected over the whole
  span, capped at ``beyond_share`` of its capacity), so a burst that outgrows the horizon does not pin the
  value at its dearest slot; work due before that span ends keeps the horizon-only price. ``restart_overhead_s`` is added to a running
  job's ``preempt_loss_s`` (hysteresis: a running job is stopped only when the saving beats a restart).
  ``reserve_inference`` appends must-run rows for ``snapshot.inference_reserve_gpus`` (expected inference
  per pool, slots 1.. of the horizon; slot 0's inference is in the snapshot), held at their peak over
  blocks of ``ceil(T / 24)`` slots and run-length encoded; they come after the snapshot's jobs
  (``PlanIndex.n_synthetic``) and never become decisions.
- Tenants ``(N,)``: ``tenant_quota_gpus`` from ``snapshot.tenant_info`` (``inf`` when absent; the inference
  reserve rows get a tenant of their own without quota).

``snapshot.tenant_info`` shape read here (every key optional; a mapping or an object with attributes)::

    {"<tenant>": {"priority": 2,                    # priority class, added to each job's priority
                  "quota_gpus": 512,                # max concurrent GPUs (None: no quota)
                  "commitment_owed_gpu_h": 120.0}}  # pre-ordered GPU-hours still owed now
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from kernels.problem import NO_DEADLINE, PlanProblem, PlanResult
from scheduler.errors import InputError
from scheduler.jobs import Job, eligibility_key, pool_matches
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
    #: trailing rows that are not jobs of the snapshot (expected inference held as must-run load)
    n_synthetic: int = 0
    #: how the terminal value was set (clearing price, demand, capacity; empty for ``"max"``)
    terminal: Mapping[str, float] = field(default_factory=dict)

    def job_row(self, job_id: str) -> int:
        return self.job_ids.index(job_id)

    @property
    def n_real(self) -> int:
        return len(self.job_ids) - self.n_synthetic


@dataclass(frozen=True, slots=True)
class WeightSettings:
    """How priorities, waiting time, deadlines and tenant commitments become per-job weights, and what a
    rolling horizon adds to the problem (see the module docstring).

    ``terminal_value``: ``"max"`` values every GPU-second of work at ``weight_margin`` times the dearest
    slot of the horizon (everything that fits is done within the horizon; what ``windward plan`` does);
    ``"clearing"`` values work that may wait past the horizon at the horizon's *clearing price*
    (:func:`clearing_value_g_per_gpu_s`: the marginal carbon at which the horizon's cheapest capacity
    holds the backlog plus ``arrival_share`` of the expected arrivals), so work is deferred beyond the
    horizon when the horizon's remaining slots are dearer than what the future is expected to offer.
    Jobs that must start inside the horizon to meet their deadline keep the ``"max"`` weight.
    """

    weight_margin: float = 2.0
    priority_base: float = 2.0
    max_priority_exponent: float = 8.0
    age_h: float = 24.0
    commitment_weight_factor: float = 10.0
    deadline_margin_slots: int = 1  # plan to finish this many slots before a reachable deadline
    terminal_value: str = "max"  # "max" | "clearing"
    clearing_margin: float = 1.0  # multiplies the clearing price
    clearing_priority_base: float = 1.2  # priority factor of work valued at the clearing price
    arrival_share: float = 0.5  # share of the expected arrivals' work counted as demand on the horizon
    floor_quantile: float = 0.1  # value floor: this quantile of the horizon's per-GPU-second grid cost
    #: capacity beyond the horizon, in horizons, offered at the horizon's own costs (the horizon taken as a
    #: sample of what follows it) and counted against the arrivals expected there: work that may wait past
    #: the horizon's end is priced where the horizon *and* that span hold the demand, not at the horizon's
    #: dearest slot when a burst outgrows it. Work due before the span ends keeps the horizon-only price.
    beyond_horizons: float = 0.0
    #: the share of the span's capacity (cheapest first) that work deferred past the horizon may expect when
    #: the expected arrivals would take all of it: a burst's trailing arrival rate is not the long run's
    beyond_share: float = 1.0
    #: the ageing time of work priced past the span (``beyond_horizons`` > 0, no deadline inside the span):
    #: None ages it like the rest (``age_h``); a longer one lets work that may wait days wait for the wind
    #: a deferral price expects rather than age into the horizon's dirty slots (scheduler.deferral)
    beyond_age_h: float | None = None
    #: the longest a job may be held back (:func:`deferred_h`: hours since submission not covered by its work
    #: done) while priced past the span: from then on it is priced and aged like work due inside the span (the
    #: horizon-only price, ``age_h``), so it runs where the horizon holds it instead of waiting on for the
    #: wind the span's price expects. None: no bound
    max_defer_h: float | None = None
    restart_overhead_s: float = 0.0  # charged (as lost work) for preempting a running job: hysteresis
    reserve_inference: bool = False  # expected inference (snapshot.inference_reserve_gpus) as must-run load

    def __post_init__(self) -> None:
        if self.terminal_value not in ("max", "clearing"):
            raise InputError(f"WeightSettings.terminal_value: got {self.terminal_value!r}; allowed: 'max', 'clearing'")
        for name in ("weight_margin", "priority_base", "age_h", "clearing_margin", "clearing_priority_base"):
            if not getattr(self, name) > 0:
                raise InputError(f"WeightSettings.{name}: got {getattr(self, name)!r}; must be > 0")
        for name in ("arrival_share", "restart_overhead_s", "max_priority_exponent", "beyond_horizons"):
            if not getattr(self, name) >= 0:
                raise InputError(f"WeightSettings.{name}: got {getattr(self, name)!r}; must be >= 0")
        for name in ("beyond_age_h", "max_defer_h"):
            v = getattr(self, name)
            if v is not None and not (v > 0 and math.isfinite(v)):
                raise InputError(f"WeightSettings.{name}: got {v!r}; must be > 0 and finite, or None")
        if not 0.0 < self.beyond_share <= 1.0:
            raise InputError(f"WeightSettings.beyond_share: got {self.beyond_share!r}; must be in (0, 1]")
        if not 0.0 <= self.floor_quantile <= 1.0:
            raise InputError(f"WeightSettings.floor_quantile: got {self.floor_quantile!r}; must be in [0, 1]")


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


def settings_base(snapshot: Snapshot, carbon_g_per_kwh: np.ndarray, settings: WeightSettings) -> float:
    """The base of :func:`job_weights` (g per GPU-second), before priority, age and commitment factors."""
    return settings.weight_margin * max_carbon_g_per_gpu_s(snapshot, carbon_g_per_kwh)


def _tenant_terms(snapshot: Snapshot, tenants: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per tenant named: its priority class (0 when absent) and whether it is owed a commitment."""
    ti = snapshot.tenant_info
    cls, owed = np.zeros(len(tenants)), np.zeros(len(tenants), dtype=bool)
    for k, t in enumerate(tenants):
        info = ti.get(t) if ti else None
        c = _tenant_field(info, "priority")
        cls[k], owed[k] = (float(c) if c is not None else 0.0), _owed_gpu_h(info) > 0.0
    return cls, owed


def _weight_factors(snapshot: Snapshot, settings: WeightSettings, table: JobTable | None = None,
                    rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per job: priority exponent (job priority + tenant class, clipped), hours waited, owed commitment.
    Tenant terms are looked up once per tenant, the rest is array arithmetic (50,000 jobs: 0.2 -> 0.03 s).
    ``table``, ``rows``: the snapshot's jobs in a :class:`JobTable` (:func:`build_problem` has them)."""
    if table is None or rows is None:
        table = JobTable()
        rows = table.rows([js.job for js in snapshot.jobs], snapshot.site.pools)
    t_cls, t_owed = _tenant_terms(snapshot, table.tenant_names)
    codes = table.tenant[rows]
    prio = table.priority[rows] + t_cls[codes]
    submit = table.submit_s[rows]
    waited_h = np.maximum(snapshot.now_s - submit, 0.0) / 3600.0
    owed = t_owed[codes]
    exp = np.clip(prio, -settings.max_priority_exponent, settings.max_priority_exponent)
    return exp, waited_h, owed


def deferred_h(snapshot: Snapshot, waited_h: np.ndarray) -> np.ndarray:
    """Per job of the snapshot, the hours it has been held back: the hours since its submission
    (``waited_h``) not covered by the work it has done (a job that ran at full speed from its submission has
    waited 0 h; a paused one waits on; one that runs at half power waits half of each hour). Its finish is
    this much later than at full speed from submission: what ``WeightSettings.max_defer_h`` bounds."""
    done_s = np.fromiter((js.work_done_s for js in snapshot.jobs), np.float64, len(snapshot.jobs))
    return np.maximum(waited_h - done_s / 3600.0, 0.0)


def _weights_of(base: float, factors: tuple[np.ndarray, np.ndarray, np.ndarray],
                settings: WeightSettings) -> tuple[np.ndarray, np.ndarray]:
    exp, waited_h, owed = factors
    w = base * settings.priority_base**exp * (1.0 + waited_h / settings.age_h)
    w = np.where(owed, w * settings.commitment_weight_factor, w)
    return w, owed


def job_weights(
    snapshot: Snapshot,
    carbon_g_per_kwh: np.ndarray,
    settings: WeightSettings = WeightSettings(),
) -> tuple[np.ndarray, np.ndarray]:
    """Per-job weight (g per GPU-second) and a bool mask of jobs whose tenant is owed a commitment."""
    base = settings_base(snapshot, carbon_g_per_kwh, settings)
    return _weights_of(base, _weight_factors(snapshot, settings), settings)


#: :func:`serving_keys` in words (docs/contracts.md, docs/operators-guide.md and ``windward plan``'s note say it
#: so; a test checks them against this)
SERVING_KEY_TEXT = ("higher tenant priority class first, then higher job priority, then a tenant owed a commitment, "
                    "then the earlier submission")


#: The must-run rows' weights in :func:`build_problem`: the largest weight among them, less this share per step of
#: :func:`serving_keys` below the highest key, so they keep the key's order and the scale of the weights. The scale
#: changed the 3-day itp60 windward run: the keys 1..k as weights gave 395 jobs done, the keys x 1e-9 383, the
#: weights on this scale 422 with every figure the same as before the key (round 24). Round 25 (H4, itp60 planned
#: twice a tick, one reader of the weight turned off at a time) found the one reader that moves the plan: the top
#: of the dual's iteration grid (``kernels.planner._dual_coarse``'s ``hi``, the largest ``rho_on`` of all rows).
#: A must-run row enters no objective term, so that is a coupling by accident: its weight (~2.8 g/GPU-s here,
#: the other rows <= 0.35) widens the grid the prices move on. Taking ``hi`` from the other rows only makes the
#: weight move nothing (0 of 288 itp60 ticks differ, corpus seed 0 200 of 200 the same plan) but the loop does
#: less: itp60 422 -> 383 jobs, 10 windows 7,598 -> 7,363 jobs at 387.06 -> 388.61 g/GPU-h; the other rows' top x 4
#: gives 7,550 jobs at 386.11 g/GPU-h but changes 86 of 200 corpus plans. So the grid's width is the knob. Round 26
#: (H4) swept a top of its own, max(the other rows' top, F x the dearest slot's carbon per GPU-second at full power,
#: the kernel's max kappa x max line load / line work): the must-run weight here is that scale x ``weight_margin`` 2
#: x ``priority_base`` 2 ** 4 (the inference tenant's priority), aged. F = 32 gives every figure of all 10 windows
#: and both published plans the same, but changes 62 of 200 corpus plans on seed 0 and on seed 1 (objective +0.11% /
#: +0.26% in sum, 3 / 8 instances finish fewer jobs); F = 16 and 64 and a top 4.1 asinh units above the grid's
#: bottom do the loop less (10 windows 7,374, 7,439, 7,530 jobs at 388.69, 388.09, 386.58 g/GPU-h); F <= 8 is
#: the other rows' top on corpus seed 0. No top kept both the loop and the corpus, so this scale is kept.
SERVING_WEIGHT_STEP = 1e-7


def serving_keys(jobs: Sequence[Job], tenant_info: Mapping[str, Any] | None) -> np.ndarray:
    """THE serving key of must-run (inference) jobs, ``(M,)`` float64 >= 1: the ``weight`` that
    :func:`kernels.check.serving_order` serves first where a cap cannot hold all the inference. One key for the
    plan (:func:`build_problem` orders the must-run rows by it, on their weights' scale; for them the weight
    enters no objective term: ``kernels.planner.OBJECTIVE``) and for the loop's fast path under every policy
    (``scheduler.fastpath.inference_order``), from what both know: the job and its tenant's entry in
    ``tenant_info`` (the shape in the module docstring; an absent tenant has class 0 and is owed nothing).

    The key, most significant first: the tenant's priority class (DESIGN section 7: a job's ``priority`` is
    "within the tenant's class"), then the job's priority, then whether the tenant is owed a commitment (DESIGN
    section 2 puts commitments after inference served: at equal standing the owed tenant's service is kept,
    which serves its commitment too), then the earlier submission (the older service first, as the windward
    weight's ageing ordered equal priorities). The weight's carbon, clearing-price and settings terms stay out:
    they need the forecast and the windward policy's settings, which the fast path has under no other policy;
    at equal key :func:`~kernels.check.serving_order` serves fewer GPUs, less work left, then the snapshot's
    order first. Returned as ``1 + `` the dense rank of that key among ``jobs`` (lexicographic), so the order
    of any subset is the order of the whole set, and the inference reserve's rows (weight 0) come last."""
    if not jobs:
        return np.zeros(0)
    ti = tenant_info or {}
    cls, owed = {}, {}
    for t in sorted({j.tenant for j in jobs}):
        info = ti.get(t)
        c = _tenant_field(info, "priority")
        cls[t], owed[t] = (float(c) if c is not None else 0.0), float(_owed_gpu_h(info) > 0.0)
    key = np.array([(cls[j.tenant], float(j.priority), owed[j.tenant], -float(j.submit_s)) for j in jobs],
                   dtype=np.float64)
    _, rank = np.unique(key, axis=0, return_inverse=True)
    return 1.0 + rank.reshape(-1).astype(np.float64)


#: ``build_problem(beyond_price=...)``: (probe, demand_gpu_s, reserve_gpus, floor_quantile, beyond_horizons,
#: beyond_share, needed_slots) -> (price g per GPU-second, one or ``(J,)`` per job, info) or None (keep the
#: horizon's own costs past it); ``needed_slots : (J,)`` the slots each job's remaining work takes at full speed
BeyondPrice = Callable[[PlanProblem, float, np.ndarray, float, float, float, np.ndarray],
                       tuple[float | np.ndarray, dict[str, float]] | None]

#: Job-id prefix of the must-run rows that stand for expected inference (never decisions).
RESERVE_PREFIX = "~inference-reserve:"


def _efficient_level(curve_f: np.ndarray, curve_s: np.ndarray, tdp_w: np.ndarray, idle_w: np.ndarray,
                     min_f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pool, the speed-curve point with the least marginal watts per unit of work: (fraction, speed)."""
    ok = curve_f >= min_f[:, None] - 1e-9
    per_work = np.where(ok, (curve_f * tdp_w[:, None] - idle_w[:, None]) / np.maximum(curve_s, 1e-9), np.inf)
    k = np.argmin(per_work, axis=1)
    rows = np.arange(curve_f.shape[0])
    return curve_f[rows, k], curve_s[rows, k]


def clearing_value_g_per_gpu_s(
    problem: PlanProblem,
    demand_gpu_s: float,
    reserve_gpus: np.ndarray | None = None,
    floor_quantile: float = 0.1,
    capacity_scale: float = 1.0,
    max_share: float = 1.0,
) -> tuple[float, dict[str, float]]:
    """The horizon's clearing price of work (grams per GPU-second at full speed) and how it was found.

    Capacity of the horizon, slot by slot, at each pool's most energy-efficient power level: the busy GPUs
    that the site's wind covers above the base load (every healthy GPU idle plus host power, plus the
    expected inference ``reserve_gpus : (P, T)`` at full power) cost nothing; the rest, up to the free GPUs
    and the power budget ``min(site_max_w, grid_cap_w + wind_w)``, cost ``carbon_g_per_kwh`` per kWh of
    their marginal power. Sorted by cost, the cheapest capacity that holds ``demand_gpu_s`` of work sets
    the price (the dearest slot when the horizon cannot hold it). The result is at least the
    ``floor_quantile`` of the per-slot grid cost, so work is never worth nothing. ``capacity_scale``
    multiplies every slot's capacity: ``1 + beyond_horizons`` offers that many more horizons at the same
    costs (capacities in ``info`` are scaled alike). ``max_share`` < 1 caps the demand at that share of the
    capacity: the price is then at most the cost of the cheapest ``max_share`` of it. Pure numpy, O(T log T).
    """
    if not capacity_scale > 0:
        raise InputError(f"clearing_value_g_per_gpu_s: capacity_scale got {capacity_scale!r}; must be > 0")
    T = problem.n_slots
    slot_s = float(problem.slot_s)
    cost, green, avail, s_gpu = slot_work_capacity(problem, reserve_gpus)
    costs = np.concatenate([np.zeros(T), cost])
    caps = np.concatenate([green * s_gpu, (avail - green) * s_gpu]) * (slot_s * capacity_scale)
    order = np.argsort(costs, kind="stable")
    cum = np.cumsum(caps[order])
    cleared = min(float(demand_gpu_s), max_share * float(cum[-1])) if max_share < 1.0 and cum.size else demand_gpu_s
    i = int(np.searchsorted(cum, cleared, side="left"))
    price = float(costs[order][i]) if i < cum.size else float(cost.max(initial=0.0))
    floor = float(np.quantile(cost, floor_quantile)) if cost.size else 0.0
    info = {"clearing_g_per_gpu_s": price, "floor_g_per_gpu_s": floor, "demand_gpu_s": float(demand_gpu_s),
            "green_capacity_gpu_s": float((green * s_gpu).sum() * slot_s * capacity_scale),
            "capacity_gpu_s": float((avail * s_gpu).sum() * slot_s * capacity_scale)}
    return max(price, floor), info


def slot_work_capacity(problem: PlanProblem, reserve_gpus: np.ndarray | None = None
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per slot of ``problem`` (each ``(T,)``), as :func:`clearing_value_g_per_gpu_s` prices it: the grid cost of
    a GPU-second of work at the pools' efficient levels (g), the busy GPUs the wind covers above the base load,
    the busy GPUs available, and the work per GPU-second."""
    T = problem.n_slots
    H = np.asarray(problem.pool_gpus, dtype=np.float64).reshape(problem.n_pools, -1)
    if H.shape[1] != T:
        H = np.repeat(H[:, :1], T, axis=1)
    R = np.zeros_like(H) if reserve_gpus is None else np.minimum(np.asarray(reserve_gpus, dtype=np.float64), H)
    tdp = np.asarray(problem.tdp_w, dtype=np.float64)
    idle = np.asarray(problem.idle_w, dtype=np.float64)
    host = np.asarray(problem.host_w_per_gpu, dtype=np.float64)
    f_eff, s_eff = _efficient_level(np.asarray(problem.curve_f, dtype=np.float64),
                                    np.asarray(problem.curve_s, dtype=np.float64), tdp, idle,
                                    np.asarray(problem.min_power_fraction, dtype=np.float64))
    pue = float(problem.pue)
    free_gpus = np.maximum(H - R, 0.0)  # (P, T)
    share = free_gpus / np.maximum(free_gpus.sum(axis=0, keepdims=True), 1e-9)
    w_gpu = (share * (pue * (f_eff * tdp - idle))[:, None]).sum(axis=0)  # (T,) marginal W per busy GPU
    w_gpu = np.maximum(w_gpu, 1e-9)
    s_gpu = np.maximum((share * s_eff[:, None]).sum(axis=0), 1e-9)  # (T,) work per GPU-second
    base_w = pue * ((H * (idle + host)[:, None]).sum(axis=0) + (R * (tdp - idle)[:, None]).sum(axis=0))
    wind = np.asarray(problem.wind_w, dtype=np.float64)
    budget = np.minimum(np.asarray(problem.site_max_w, dtype=np.float64),
                        np.asarray(problem.grid_cap_w, dtype=np.float64) + wind)
    avail = np.clip(np.minimum(free_gpus.sum(axis=0), (budget - base_w) / w_gpu), 0.0, None)
    green = np.clip((wind - base_w) / w_gpu, 0.0, avail)
    cost = np.asarray(problem.carbon_g_per_kwh, dtype=np.float64) * w_gpu / (3.6e6 * s_gpu)  # g / GPU-s
    return cost, green, avail, s_gpu


def _reserve_rows(snapshot: Snapshot, T: int, slot_s: float, nonpre_running: np.ndarray,
                  pool_gpus: np.ndarray) -> tuple[list[tuple[str, int, int, int, int]], np.ndarray]:
    """Expected inference as must-run rows: (id, pool, gpus, first slot, n slots), and the (P, T) GPUs.

    Slot 0 is left out (this slot's inference is in the snapshot as jobs). The series is held at its peak
    over blocks of ``ceil(T / 24)`` slots and run-length encoded, so a horizon adds a few dozen rows per
    pool at most. GPUs are capped at what running non-preemptible work leaves of the pool.
    """
    pools = snapshot.site.pools
    out = np.zeros((len(pools), T))
    rows: list[tuple[str, int, int, int, int]] = []
    if not snapshot.inference_reserve_gpus or T < 2:
        return rows, out
    block = max(1, math.ceil(T / 24))
    for p, pool in enumerate(pools):
        series = snapshot.inference_reserve_gpus.get(pool.name)
        if series is None:
            continue
        r = np.asarray(series, dtype=np.float64).reshape(-1)
        if r.size == 0:
            continue
        r = r[np.minimum(np.arange(T), r.size - 1)]
        r = np.ceil(np.clip(r, 0.0, None) - 1e-9)
        r[0] = 0.0
        nb = math.ceil((T - 1) / block)
        pad = np.concatenate([r[1:], np.zeros(nb * block - (T - 1))]).reshape(nb, block).max(axis=1)
        r[1:] = np.repeat(pad, block)[: T - 1]
        r = np.minimum(r, np.maximum(pool_gpus[p] - nonpre_running[p], 0.0))
        out[p] = r
        change = np.flatnonzero(np.diff(np.concatenate([[0.0], r, [0.0]])) != 0)
        for a, b in zip(change[:-1], change[1:], strict=True):
            g = int(r[a])
            if g > 0:
                rows.append((f"{RESERVE_PREFIX}{pool.name}:{snapshot.slot + a}", p, g, int(a), int(b - a)))
    return rows, out


def _eligibility(pools: Any, jobs: list[Job]) -> np.ndarray:
    """``(J, P)``: pool ``p`` may hold job ``j`` (:func:`scheduler.jobs.pool_matches` and the pool's size), looked up
    once per distinct :func:`scheduler.jobs.eligibility_key` (50,000 jobs share a handful)."""
    rows: dict[tuple[Any, ...], int] = {}
    answers: list[list[bool]] = []
    which = np.empty(len(jobs), dtype=np.int64)
    for i, job in enumerate(jobs):
        key = eligibility_key(job)
        r = rows.get(key)
        if r is None:
            r = rows[key] = len(answers)
            answers.append([pool.gpus >= job.gpus and pool_matches(pool, job) for pool in pools])
        which[i] = r
    table = np.array(answers, dtype=bool).reshape(len(answers), len(pools))
    return table[which]


class JobTable:
    """The per-job columns of :func:`build_problem` that a job's :class:`~scheduler.jobs.Job` record alone decides
    (GPUs, submission, deadline, must-run, preemptible, priority, tenant, eligible pools on the site's pools),
    kept across ticks: a rolling-horizon policy sees the same 50,000 jobs tick after tick, so it passes one table
    to every :func:`build_problem` (``table=``) and each job's fields are read once (issue 13). Rows are looked
    up by the identity of the Job record (frozen, so its fields never change; a job whose record is replaced
    gets a new row; the table holds the records it read, so their identities are not reused). Without a table,
    :func:`build_problem` fills a fresh one: the same code reads the fields either way. A table holding more
    than twice the jobs of a tick (plus ``slack``) is rebuilt from that tick's; a site with other pools starts
    it afresh."""

    def __init__(self, slack: int = 4096) -> None:
        self._slack = int(slack)
        self._reset(())

    def _reset(self, pools: Any) -> None:
        self._pool_objs = tuple(pools)  # held: the identities in the key are not reused while the table is
        self._pools = tuple(map(id, self._pool_objs))
        P = len(self._pool_objs)
        self._row: dict[int, int] = {}
        self._jobs: list[Job] = []
        self._tenant_code: dict[str, int] = {}
        self.tenant_names: list[str] = []
        self.gpus = np.zeros(0, dtype=np.int64)
        self.submit_s = np.zeros(0)
        self.deadline_s = np.zeros(0)  # nan: no deadline
        self.must_run = np.zeros(0, dtype=bool)
        self.preemptible = np.zeros(0, dtype=bool)
        self.priority = np.zeros(0)
        self.tenant = np.zeros(0, dtype=np.int64)  # code into tenant_names
        self.eligible = np.zeros((0, P), dtype=bool)

    def __len__(self) -> int:
        return len(self._jobs)

    def rows(self, jobs: list[Job], pools: Any) -> np.ndarray:
        """``(J,)`` the row of each job (in order), the jobs not seen before read and added."""
        if tuple(map(id, pools)) != self._pools or len(self._jobs) > 2 * len(jobs) + self._slack:
            self._reset(pools)
        get = self._row.get
        rows = [get(id(j), -1) for j in jobs]
        if -1 in rows:
            self._add([j for j, r in zip(jobs, rows, strict=True) if r < 0], pools)
            rows = [get(id(j), -1) for j in jobs]
        return np.asarray(rows, dtype=np.int64).reshape(len(jobs))

    def _add(self, new: list[Job], pools: Any) -> None:
        uniq: dict[int, Job] = {}
        for j in new:  # a record listed twice is read once
            uniq.setdefault(id(j), j)
        new = list(uniq.values())
        n = len(new)
        for j in new:
            if j.tenant not in self._tenant_code:
                self._tenant_code[j.tenant] = len(self.tenant_names)
                self.tenant_names.append(j.tenant)
        code = self._tenant_code
        add = {
            "gpus": np.fromiter((j.gpus for j in new), np.int64, n),
            "submit_s": np.fromiter((j.submit_s for j in new), np.float64, n),
            "deadline_s": np.fromiter((math.nan if j.deadline_s is None else j.deadline_s for j in new), np.float64, n),
            "must_run": np.fromiter((j.must_run for j in new), bool, n),
            "preemptible": np.fromiter((j.preemptible for j in new), bool, n),
            "priority": np.fromiter((j.priority for j in new), np.float64, n),
            "tenant": np.fromiter((code[j.tenant] for j in new), np.int64, n),
            "eligible": _eligibility(pools, new),
        }
        for f, a in add.items():
            setattr(self, f, np.concatenate([getattr(self, f), a]))
        base = len(self._jobs)
        for k, j in enumerate(new):
            self._row[id(j)] = base + k
        self._jobs.extend(new)


def build_problem(
    snapshot: Snapshot,
    horizon_slots: int,
    *,
    weights: WeightSettings = WeightSettings(),
    energy_cost_weight_g_per_eur: float = 0.0,
    expected_arrival_gpu_s_per_s: float = 0.0,
    table: JobTable | None = None,
    beyond_price: BeyondPrice | None = None,
) -> tuple[PlanProblem, PlanIndex]:
    """Flatten a snapshot into the optimiser's arrays (see the module docstring for each field).

    ``expected_arrival_gpu_s_per_s``: the rate at which new (non-inference) work is expected to arrive
    (GPU-seconds of work per second), used by ``terminal_value="clearing"`` to anticipate arrivals.
    ``table``: a :class:`JobTable` kept across calls (a rolling horizon's ticks), read instead of the jobs'
    records where it has them; the arrays are the same with or without it.
    ``beyond_price``: with ``beyond_horizons`` > 0, prices the span past the horizon in place of the horizon's
    own costs (e.g. :meth:`scheduler.deferral.TrailingSignals.beyond_price`, from the trailing history);
    called as ``beyond_price(probe, demand_gpu_s, reserve_gpus, floor_quantile, beyond_horizons, beyond_share,
    needed_slots)``, it returns ``(price, info)`` (one price, or one per job) or None to keep the horizon-only span.
    """
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
    # one pass of attribute reads per field, then array arithmetic: no per-(job, pool) Python calls (50,000
    # jobs on rotterdam-100k: 0.6 -> 0.1 s a tick)
    jl = [js.job for js in jobs]
    tab = table if table is not None else JobTable()
    rows = tab.rows(jl, pools)
    gpus = tab.gpus[rows]
    remaining = np.fromiter((js.remaining_s for js in jobs), np.float64, J)
    submit = tab.submit_s[rows]
    release = np.maximum(np.ceil((submit - snapshot.now_s) / slot_s - 1e-9), 0).astype(np.int64)
    deadline = np.full(J, NO_DEADLINE, dtype=np.int64)
    dl_s = tab.deadline_s[rows]
    with_dl = np.flatnonzero(~np.isnan(dl_s))
    if with_dl.size:
        d = np.floor((dl_s[with_dl] - snapshot.now_s) / slot_s + 1e-9)
        deadline[with_dl] = np.clip(d, 0, NO_DEADLINE - 1).astype(np.int64)
    eligible = tab.eligible[rows].reshape(J, P)
    must_run = tab.must_run[rows]
    preemptible = tab.preemptible[rows] & ~must_run
    running_pool = np.full(J, -1, dtype=np.int64)
    preempt_loss = np.zeros(J, dtype=np.float64)
    for i in [i for i, js in enumerate(jobs) if js.state == "running"]:
        js = jobs[i]
        if js.pool not in pool_index:
            raise InputError(f"snapshot: running job {js.job.job_id!r} is in unknown pool {js.pool!r}")
        running_pool[i] = pool_index[js.pool]
        preempt_loss[i] = max(js.work_done_s - js.checkpoint_work_s, 0.0) + weights.restart_overhead_s

    carbon = np.asarray(fc.carbon_g_per_kwh, dtype=np.float64)
    factors = _weight_factors(snapshot, weights, tab, rows)
    weight, owed = _weights_of(settings_base(snapshot, carbon, weights), factors, weights)
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
    # work that must start inside the horizon to meet its deadline, or is owed, keeps the full weight
    needed = np.ceil(remaining / slot_s - 1e-9).astype(np.int64)
    urgent = owed | (has_deadline & (deadline - needed < T))

    # expected inference over the horizon as must-run load (it arrives slot by slot, so the snapshot holds
    # only this slot's); rows go after the snapshot's jobs and never become decisions
    nonpre = np.zeros(P)
    np.add.at(nonpre, running_pool[(running_pool >= 0) & ~preemptible], gpus[(running_pool >= 0) & ~preemptible])
    reserve_rows, reserve_pt = _reserve_rows(snapshot, T, slot_s, nonpre, pool_gpus[:, 0].astype(np.float64))
    if not weights.reserve_inference:
        reserve_rows = []

    diag: dict[str, float] = {}
    if weights.terminal_value == "clearing" and J:
        horizon_end_s = T * slot_s
        doable = np.minimum(remaining, np.maximum(horizon_end_s - release * slot_s, 0.0))
        backlog = float((gpus * np.where(must_run, 0.0, doable)).sum())
        demand = backlog + weights.arrival_share * max(expected_arrival_gpu_s_per_s, 0.0) * horizon_end_s
        probe = PlanProblem(
            slot_s=slot_s, pue=float(site.pue), wind_w=np.asarray(fc.wind_w, dtype=np.float64),
            carbon_g_per_kwh=carbon, grid_cap_w=np.asarray(fc.grid_cap_w, dtype=np.float64),
            site_max_w=np.asarray(fc.site_max_w, dtype=np.float64), pool_gpus=pool_gpus,
            tdp_w=np.array([p.tdp_w for p in pools], dtype=np.float64),
            idle_w=np.array([p.idle_w for p in pools], dtype=np.float64),
            host_w_per_gpu=np.array([p.host_w_per_gpu for p in pools], dtype=np.float64),
            min_power_fraction=np.array([p.min_power_fraction for p in pools], dtype=np.float64),
            curve_f=curve_f, curve_s=curve_s, gpus=gpus[:0], remaining_s=remaining[:0], release=release[:0],
            deadline=deadline[:0], weight=weight[:0], eligible=eligible[:0], must_run=must_run[:0],
            preemptible=preemptible[:0], running_pool=running_pool[:0], preempt_loss_s=preempt_loss[:0],
            tenant=np.zeros(0, dtype=np.int64), tenant_quota_gpus=np.zeros(0),
        )
        inference_now = np.zeros((P, T))
        for row in np.flatnonzero(must_run & (release == 0)):
            p_home = int(np.flatnonzero(eligible[row])[0]) if eligible[row].any() else 0
            inference_now[p_home, 0] += gpus[row]
        value, diag = clearing_value_g_per_gpu_s(probe, demand, reserve_pt + inference_now, weights.floor_quantile)
        value *= weights.clearing_margin
        values = np.full(J, value)
        age_h: float | np.ndarray = weights.age_h
        k = weights.beyond_horizons
        if k > 0:
            # the horizon and k more like it hold the backlog doable by the span's end plus the arrivals
            # expected over the whole span; work due before the span ends keeps the horizon-only price
            span_s = (1.0 + k) * horizon_end_s
            doable_k = np.minimum(remaining, np.maximum(span_s - release * slot_s, 0.0))
            demand_k = float((gpus * np.where(must_run, 0.0, doable_k)).sum()) + (
                weights.arrival_share * max(expected_arrival_gpu_s_per_s, 0.0) * span_s)
            got = None if beyond_price is None else beyond_price(
                probe, demand_k, reserve_pt + inference_now, weights.floor_quantile, k, weights.beyond_share, needed)
            if got is None:
                got = clearing_value_g_per_gpu_s(probe, demand_k, reserve_pt + inference_now,
                                                 weights.floor_quantile, capacity_scale=1.0 + k,
                                                 max_share=weights.beyond_share)
            value_k = got[0] * weights.clearing_margin
            diag = {**diag, "beyond_history_slots": got[1].get("history_slots", 0.0)}
            due_in_span = has_deadline & (deadline - needed < math.ceil((1.0 + k) * T))
            # the bound on the wait: work that has waited max_defer_h is no longer priced past the span
            waited_out = np.zeros(J, dtype=bool)
            if weights.max_defer_h is not None:
                waited_out = ~due_in_span & (deferred_h(snapshot, factors[1]) >= weights.max_defer_h)
            inside = due_in_span | waited_out
            values = np.where(inside, value, value_k)
            if weights.beyond_age_h is not None:  # work priced past the span ages more slowly
                age_h = np.where(inside, weights.age_h, weights.beyond_age_h)
            diag = {**diag, "beyond_value_g_per_gpu_s": float(np.median(value_k)), "beyond_demand_gpu_s": demand_k,
                    "due_in_span_jobs": float((due_in_span & ~urgent).sum()),
                    "waited_out_jobs": float((waited_out & ~urgent).sum())}
        exp, waited_h, _ = factors
        # priority orders work that may wait (a mild factor), it does not buy dirty slots
        factor = weights.clearing_priority_base**exp * (1.0 + waited_h / age_h)
        weight = np.where(urgent, weight, np.minimum(values * factor, weight))
        diag = {**diag, "value_g_per_gpu_s": value, "urgent_jobs": float(urgent.sum())}

    # must-run rows: ordered by the serving key (the one order a cap that cannot hold all the inference serves
    # them in), on the scale of their weights (SERVING_WEIGHT_STEP)
    mrows = np.flatnonzero(must_run)
    if mrows.size:
        key = serving_keys([jl[i] for i in mrows.tolist()], snapshot.tenant_info)
        weight = weight.copy()
        weight[mrows] = float(weight[mrows].max()) * (1.0 - SERVING_WEIGHT_STEP * (key.max() - key))

    if reserve_rows:
        n = len(reserve_rows)
        rp = np.array([r[1] for r in reserve_rows], dtype=np.int64)
        gpus = np.concatenate([gpus, np.array([r[2] for r in reserve_rows], dtype=np.int64)])
        remaining = np.concatenate([remaining, np.array([r[4] * slot_s for r in reserve_rows])])
        release = np.concatenate([release, np.array([r[3] for r in reserve_rows], dtype=np.int64)])
        deadline = np.concatenate([deadline, np.full(n, NO_DEADLINE, dtype=np.int64)])
        weight = np.concatenate([weight, np.zeros(n)])
        el = np.zeros((n, P), dtype=bool)
        el[np.arange(n), rp] = True
        eligible = np.concatenate([eligible, el])
        must_run = np.concatenate([must_run, np.ones(n, dtype=bool)])
        preemptible = np.concatenate([preemptible, np.zeros(n, dtype=bool)])
        running_pool = np.concatenate([running_pool, np.full(n, -1, dtype=np.int64)])
        preempt_loss = np.concatenate([preempt_loss, np.zeros(n)])

    codes = tab.tenant[rows]
    present = np.unique(codes)
    tenants = tuple(sorted(tab.tenant_names[c] for c in present.tolist()))
    t_index = {t: i for i, t in enumerate(tenants)}
    recode = np.zeros(len(tab.tenant_names), dtype=np.int64)
    recode[present] = [t_index[tab.tenant_names[c]] for c in present.tolist()]
    tenant = recode[codes]
    quota = np.full(len(tenants), np.inf)
    for t, i in t_index.items():
        q = _tenant_field(snapshot.tenant_info.get(t) if snapshot.tenant_info else None, "quota_gpus")
        if q is not None:
            quota[i] = float(q)
    if reserve_rows:  # inference counts against no tenant's quota
        tenant = np.concatenate([tenant, np.full(len(reserve_rows), len(tenants), dtype=np.int64)])
        quota = np.concatenate([quota, [np.inf]])

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
        job_ids=tuple(j.job_id for j in jl) + tuple(r[0] for r in reserve_rows),
        pool_names=tuple(p.name for p in pools),
        tenants=tenants,
        slot_s=slot_s,
        now_s=float(snapshot.now_s),
        slot=int(snapshot.slot),
        n_synthetic=len(reserve_rows),
        terminal=diag,
    )
    return problem, index


def decisions_from_result(result: PlanResult, index: PlanIndex) -> Decisions:
    """Unflatten the first slot of a plan: every job with ``run[j, 0]`` runs in ``pool[j]`` at its fraction."""
    run: dict[str, Assignment] = {}
    if result.run.ndim == 2 and result.run.shape[0] == len(index.job_ids) and result.run.shape[1] > 0:
        rows = np.flatnonzero(result.run[: index.n_real, 0])
        pools = np.asarray(result.pool)[rows].tolist()
        fracs = np.asarray(result.power_fraction)[rows, 0].tolist()  # float32 -> the same value as float()
        ids, names = index.job_ids, index.pool_names
        for j, p, f in zip(rows.tolist(), pools, fracs, strict=True):
            if p < 0:
                continue
            run[ids[j]] = Assignment(pool=names[p], power_fraction=f)
    return Decisions(run=run, plan=result, shed=shed_now(result, index))


def shed_now(result: PlanResult, index: PlanIndex) -> frozenset[str]:
    """The ids of the inference jobs the plan sheds in its first slot (``diagnostics["slot_shed_jobs"]`` of slot
    0 where ``shed_slots`` marks it: its cap cannot hold all the must-run inference, kernels.check.inference_shed);
    the inference reserve's synthetic rows are left out."""
    diag = getattr(result, "diagnostics", None) or {}  # (any object with the plan's arrays: no diagnostics)
    slots = list(diag.get("shed_slots", ()))
    if 0 not in slots:
        return frozenset()
    rows = diag.get("slot_shed_jobs", [[]] * len(slots))[slots.index(0)]
    return frozenset(index.job_ids[j] for j in rows if j < index.n_real)


def queue_window(problem: PlanProblem, index: PlanIndex, fraction: float,
                 min_fraction: float = 0.1) -> tuple[PlanProblem, PlanIndex]:
    """The problem cut to the queued work the horizon can use: every running, must-run and synthetic row,
    every queued job that must start inside the horizon to meet its deadline (``deadline - ceil(remaining_s
    / slot_s) < T``), and the other queued jobs while the work doable within the horizon of all the rows kept
    adds up to at most ``fraction`` of the horizon's GPU capacity (healthy GPUs x horizon; the queued jobs
    get at least ``min_fraction`` of it, however much the rows always kept hold), tenants taking turns: each tenant's
    jobs in order of weight (highest first; then deadline, release, row), a job placed by the work of its
    tenant ahead of it (ties in that order), so no backlogged tenant is left without work to claim its share. Rows keep their order; the jobs left out are not in the plan (they
    stay queued this tick, and come in as their weight ages or the queue ahead of them drains: the weight
    carries ``1 + waited_h / age_h``).

    What it is for: the online policy on an overloaded site (issue 13, 50,000 jobs on rotterdam-100k) plans
    every job every tick while only the first slot is applied; queued work beyond what the horizon can hold
    is only competition for the optimiser's list schedules (most of a tick's time there, most of it placing
    nothing: at 42,000 jobs a tick's completion pass took 0.4 s with the work planned at 1.07 x the
    horizon's capacity and 2.8 s at 1.10 x). The weights, terminal values and clearing prices are those of the whole snapshot
    (:func:`build_problem` runs first), so the prices still see the whole backlog.
    Returns ``(problem, index)`` unchanged when nothing is cut.
    """
    n = index.n_real
    T = problem.n_slots
    slot_s = float(problem.slot_s)
    running = np.asarray(problem.running_pool[:n]) >= 0
    must = np.asarray(problem.must_run[:n], dtype=bool)
    remaining = np.asarray(problem.remaining_s[:n], dtype=np.float64)
    deadline = np.asarray(problem.deadline[:n], dtype=np.int64)
    needed = np.ceil(remaining / slot_s - 1e-9)
    due = (deadline != NO_DEADLINE) & (deadline - needed < T)
    free = ~running & ~must & ~due
    q = np.flatnonzero(free)
    if q.size == 0:
        return problem, index
    release_all = np.asarray(problem.release, dtype=np.int64)
    doable_all = np.minimum(np.asarray(problem.remaining_s, dtype=np.float64), np.maximum(T - release_all, 0) * slot_s)
    work_all = np.asarray(problem.gpus, dtype=np.float64) * doable_all  # synthetic rows too: they hold capacity
    release, work = release_all[:n], work_all[:n]
    capacity = float(np.asarray(problem.pool_gpus, dtype=np.float64)[:, 0].sum()) * T * slot_s
    kept_work = float(work_all.sum() - work[q].sum())  # the rows always kept
    budget = max(fraction * capacity - kept_work, min_fraction * capacity)
    order = q[np.lexsort((q, release[q], deadline[q], -np.asarray(problem.weight, dtype=np.float64)[q]))]
    # tenants take turns by work: a job's place is its tenant's work ahead of it in that order (every backlogged
    # tenant has work in the window to claim its share with; scheduler.rules enforces the shares afterwards)
    ten = np.asarray(problem.tenant[:n], dtype=np.int64)[order]
    w_o = work[order]
    ahead = np.empty(order.size)  # the work of the job's tenant before it in that order
    for t in np.unique(ten).tolist():  # tenants
        at = np.flatnonzero(ten == t)
        ahead[at] = np.concatenate([[0.0], np.cumsum(w_o[at])[:-1]])
    order = order[np.lexsort((np.arange(order.size), ahead))]
    within = np.cumsum(work[order]) <= budget
    if within.all():
        return problem, index
    keep = np.ones(len(index.job_ids), dtype=bool)
    keep[order[~within]] = False
    rows = np.flatnonzero(keep)
    from kernels.planner import permute_jobs

    ids = index.job_ids
    return permute_jobs(problem, rows), replace(index, job_ids=tuple(ids[i] for i in rows.tolist()))
