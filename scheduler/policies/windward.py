"""The ``windward`` policy: a rolling-horizon optimiser that re-plans the whole horizon every tick.

Each tick: flatten the snapshot (with the forecast the simulator or the service gives it) into a
:class:`~kernels.problem.PlanProblem` (:func:`scheduler.planner.build_problem`), solve it with
``kernels.plan`` warm-started from the previous tick's plan shifted to the current slot (rows re-matched
by job id, slot prices shifted and their last value held), and apply only the first slot. The returned
:class:`~scheduler.policies.base.Decisions` carries the :class:`~kernels.problem.PlanResult` in ``plan``
(dual prices, gap, iterations) for reports and metrics.

What makes a rolling horizon work (each measured by ``python -m benchmarks.policies``; see its table):

- Work that may wait is valued at the horizon's clearing price (``WeightSettings(terminal_value=
  "clearing")``, :func:`scheduler.planner.clearing_value_g_per_gpu_s`), with the arrival rate this policy
  observes (:meth:`WindwardPolicy.arrival_rate_gpu_s_per_s`) counted as demand: deferral past the horizon
  is priced, so a longer horizon no longer crams the backlog into it, and capacity is left for arrivals.
  Work that must start inside the horizon to meet its deadline keeps the full weight. Work that may run
  after the horizon ends is priced with one more horizon's capacity behind it (``beyond_horizons``), of
  which it may expect the cheapest half under a burst (``beyond_share``); work due before that span ends
  keeps the horizon-only price.
- Expected inference (``Snapshot.inference_reserve_gpus``) is planned as must-run load (planned without
  it when it does not fit beside work that cannot move).
- A preemption is charged ``restart_overhead_s`` on top of the work it loses (hysteresis).
- Slot-0 admission (:meth:`WindwardPolicy._admit_slot0`): a new start whose actual marginal grid carbon in
  the current slot exceeds the value of its work is held back (the optimiser's fill prices watts at a dual
  price that can be below the grid's carbon where the load sits at the wind).
- Running work in the current slot (:meth:`WindwardPolicy._settle_running_slot0`): each running job
  without a deadline inside the horizon runs at the level (at or below the planned one) whose work is
  worth the slot's forecast marginal carbon, or stops when preemptible and its restart costs less than the
  slot would lose (the optimiser keeps running preemptible work in slot 0 at the level it planned).
- Work that cannot wait (:meth:`WindwardPolicy._start_due_work`): released work whose latest on-time start
  is the current slot and that the plan left out starts, in place of cheaper preemptible work.
- Deadlines inside a slot (:meth:`WindwardPolicy._meet_deadlines_within_slot`): a job whose planned power
  level would end it after its deadline runs at the lowest level that does not.
- ``run_end_s`` (optional): a run that ends (a demo, a finite replay) is planned up to its end with work
  left undone there at full weight, so a short run is not judged on work deferred past its end.

Default horizon 48 h: with deferral priced, the longer horizon sees more of the wind to come; on four
2023 windows it cut 2-4 points more carbon than 24 h in three and tied in the fourth, at 2-3x the tick
time (about 0.2 s per tick on the 1,024-GPU site with 30-minute slots).

At scale (a problem of more than ``scale_cells`` job-slot cells, default :data:`SCALE_CELLS`: 50,000 jobs on
rotterdam-100k, never the 3,072-GPU study cases), the tick plans what a production scheduler's queue window
would (Slurm's backfill tests a bounded number of queued jobs a cycle): every running, must-run and due job and
the most valuable queued work while all of it stays within ``queue_window_fraction`` of the horizon's GPU capacity
(:func:`scheduler.planner.queue_window`; the prices still come from the whole backlog, and waiting work ages
into the window), and ``kernels.plan`` is called with ``witness=witness_at_scale`` ("never": the EDF greedy
witness costs more than a whole tick there). Measured in ``benchmarks/simulator.py --case r100k-backlog``
(benchmarks/README.md, issue 13).

When the optimiser reports ``infeasible`` (for example inference alone breaks a cap in some slot), the
policy still answers: it keeps inference served and running non-preemptible work running in its pool at
full power, and leaves the rest queued; the control loop's fast path then deals with the caps.
"""

from __future__ import annotations

import functools
import gc
import logging
import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from kernels.check import closed_slots
from kernels.problem import NO_DEADLINE, PlanProblem, PlanResult
from scheduler.deferral import TrailingSignals
from scheduler.planner import (
    JobTable,
    PlanIndex,
    WeightSettings,
    build_problem,
    decisions_from_result,
    queue_window,
)
from scheduler.policies.base import Assignment, Decisions, Snapshot
from scheduler.reasons import LazySchedule

log = logging.getLogger(__name__)

#: The policy's defaults (measured by benchmarks.policies; see that module for the table): work that may
#: wait is valued at the horizon's clearing price, expected inference is planned as must-run load, and a
#: preemption is charged a restart overhead on top of the work it loses. ``clearing_margin=0.8`` (work that
#: may wait is valued at 0.8 x the clearing price, so the horizon's dearer slots are left to the wind to
#: come): on 10 study cases (benchmarks/README.md, issue 13) median carbon / bound 1.301 against 1.322 at
#: 1.0, better in 8 of the 9 cases with a ratio, no more deadline misses, 0.3 points less work in the window.
#: A larger restart overhead (3,600 s, 14,400 s) was measured too and did not help.
#: ``beyond_horizons=1.0, beyond_share=0.5`` (round 4): work that may wait past the horizon is priced with a
#: second horizon's capacity at the same costs behind it, of which it may expect the cheapest half when the
#: arrivals of a burst would take it all (the horizon alone priced it at its dearest slot then); work due
#: before that span ends keeps the horizon-only price. On 9 cases against the old default in the same run
#: (benchmarks/README.md, issue 13, round 4): carbon / bound better in 5, worse in 2, tied in 2 (median
#: -0.009), grid carbon lower in 7 (median -2.3%), deadline misses equal in all 9, 0.9% less work in the
#: window (median; 6.0% at most).
#: At scale: a problem of more than ``SCALE_CELLS`` job-slot cells (the 3,072-GPU study cases plan at most
#: a few hundred thousand) is cut to the queued work the horizon can use (:func:`scheduler.planner.queue_window`:
#: the work planned, running and due work included, at most ``QUEUE_WINDOW`` of the horizon's GPU capacity), and the optimiser's EDF greedy witness is not built
#: (``witness_at_scale``; kernels.plan's "auto" builds it every WITNESS_EVERY_TICKS ticks). Issue 13.
SCALE_CELLS = 2_000_000
QUEUE_WINDOW = 0.95
QUEUE_WINDOW_MIN = 0.1  # ... of which the queued work gets at least this share, however full the site
DEFAULT_WEIGHTS = WeightSettings(terminal_value="clearing", reserve_inference=True, restart_overhead_s=600.0,
                                 clearing_margin=0.8, beyond_horizons=1.0, beyond_share=0.5)


def shift_result(prev: PlanResult, prev_index: PlanIndex, index: PlanIndex, n_slots: int) -> PlanResult:
    """The previous plan moved to the new slot origin and job rows: the warm start for this tick.

    Columns move left by the number of slots elapsed (the tail holds the last slot); jobs that are new get
    empty rows; per-slot aggregates and prices are shifted the same way.
    """
    d = max(index.slot - prev_index.slot, 0)
    T_prev = prev.run.shape[1] if prev.run.ndim == 2 else 0
    J = len(index.job_ids)
    rows_prev = {jid: i for i, jid in enumerate(prev_index.job_ids)}
    get = rows_prev.get
    src = np.fromiter((get(jid, -1) for jid in index.job_ids), np.int64, J)
    have = src >= 0
    run = np.zeros((J, n_slots), dtype=bool)
    pf = np.zeros((J, n_slots), dtype=np.float32)
    pool = np.full(J, -1, dtype=np.int32)
    work = np.zeros(J)
    finished = np.zeros(J, dtype=bool)
    keep = min(max(T_prev - d, 0), n_slots)  # the columns that come from the previous plan (slots past it: empty)
    if T_prev and have.any():
        dst = np.flatnonzero(have)
        rows = src[dst]
        if keep:
            run_h = prev.run[rows, d : d + keep]  # the rows gathered, then a run of columns
            run[dst, :keep] = run_h
            pf[dst, :keep] = np.where(run_h, np.asarray(prev.power_fraction[rows, d : d + keep], dtype=np.float32), 0.0)
        pool[dst] = prev.pool[rows]

    def shift_t(a: Any) -> np.ndarray:
        a = np.asarray(a)
        if a.shape[-1] == 0:
            return np.zeros((*a.shape[:-1], n_slots), dtype=a.dtype)
        c = np.minimum(np.arange(n_slots) + d, a.shape[-1] - 1)
        return a[..., c]

    return replace(
        prev,
        run=run,
        power_fraction=pf,
        pool=pool,
        work_done_s=work,
        finished=finished,
        facility_w=shift_t(prev.facility_w),
        grid_import_w=shift_t(prev.grid_import_w),
        carbon_g=shift_t(prev.carbon_g),
        busy_gpus=shift_t(prev.busy_gpus),
        dual_price_g_per_gpu_h=shift_t(prev.dual_price_g_per_gpu_h),
        diagnostics={**prev.diagnostics, "shifted_by_slots": d},
    )


class _SpeedTable:
    """:func:`kernels.power.speed` of a pool's curve at a power fraction, computed once per (pool, fraction) in
    a tick (thousands of jobs share a handful of levels), and a pool's candidate levels above a fraction."""

    def __init__(self, pools: Any) -> None:
        self._pools = pools
        self._pts: dict[int, np.ndarray] = {}
        self._speed: dict[tuple[int, float], float] = {}
        self._levels: dict[tuple[int, float], list[float]] = {}  # levels()
        self._below: dict[tuple[int, float], list[float]] = {}  # levels_upto()

    def _curve(self, p: int) -> np.ndarray:
        pts = self._pts.get(p)
        if pts is None:
            pts = self._pts[p] = np.asarray(self._pools[p].speed_curve, dtype=np.float64)
        return pts

    def __call__(self, p: int, f: float) -> float:
        key = (p, f)
        got = self._speed.get(key)
        if got is None:
            from kernels.power import speed

            pts = self._curve(p)
            got = self._speed[key] = float(speed(pts[:, 0], pts[:, 1], f))
        return got

    def _fractions(self, p: int, lo: float, hi: float) -> np.ndarray:
        """The pool's curve fractions in ``[max(lo, its minimum fraction), hi]``, ascending."""
        f = self._curve(p)[:, 0]
        lo = max(lo, self._pools[p].min_power_fraction)
        return np.sort(f[(f >= lo - 1e-9) & (f <= hi + 1e-9)])

    def levels_upto(self, p: int, at_most: float) -> list[float]:
        """The pool's curve fractions at or below ``at_most`` and at or above its minimum fraction, descending."""
        key = (p, at_most)
        got = self._below.get(key)
        if got is None:
            got = self._below[key] = self._fractions(p, -math.inf, at_most)[::-1].tolist()
        return got

    def levels(self, p: int, at_least: float) -> list[float]:
        """The pool's curve fractions at or above ``at_least`` and its minimum fraction, ascending."""
        key = (p, at_least)
        got = self._levels.get(key)
        if got is None:
            got = self._levels[key] = self._fractions(p, at_least, math.inf).tolist()
        return got


def _in_turn(step: Callable[[np.ndarray, slice], tuple[np.ndarray, np.ndarray]], start: float, n: int,
             rounds: int = 8) -> np.ndarray:
    """What a loop over ``n`` candidates in turn answers when each answers from a running total (``start`` plus the
    changes of the candidates before it): ``step(totals, s)`` gives the answers and changes of candidates ``s``
    given the total each of them sees. Computed as arrays, with the same answers as the loop: the totals are
    iterated to the fixed point ``totals = start + cumsum(changes(totals))`` (summed in turn, as the loop adds),
    which is the loop's own (after ``r`` rounds the first ``r + 1`` candidates see the loop's totals); where
    the answers do not depend on the total (the facility well above the wind, at scale) two rounds settle it.
    Past ``rounds`` rounds, the candidates not yet settled are answered one at a time."""
    totals = np.full(n, start, dtype=np.float64)
    whole = slice(0, n)
    for _ in range(rounds):
        ans, ch = step(totals, whole)
        seen = np.cumsum(np.concatenate([[start], ch[:-1]]))  # add.accumulate: in turn, as the loop adds
        if np.array_equal(seen, totals):
            return ans
        totals = seen
    ans, _ = step(totals, whole)  # the first `rounds` + 1 candidates see the loop's totals
    tot = float(totals[rounds])
    for c in range(rounds, n):
        a, ch = step(np.array([tot]), slice(c, c + 1))
        ans[c] = a[0]
        tot = tot + float(ch[0])
    return ans


def _without_cyclic_gc(fn: Callable[..., Decisions]) -> Callable[..., Decisions]:
    """``fn`` with the cyclic garbage collector paused while it runs (and left as it was found: a caller that
    paused it, as ``windward server`` does through its start, keeps it paused).

    Why: a tick at scale allocates tens of thousands of short-lived containers, so automatic collections fall
    due inside it, and each full one scans the whole process (a simulation's 50,000 jobs and their records):
    in ``benchmarks/simulator.py --case r100k-backlog`` (round 7, issue 13; wall time inside decide, measured
    with ``gc.callbacks`` on a loaded machine) 0.02-0.1 s of the median tick and up to 0.3-0.4 s of one. The
    tick's own allocations free by reference counting (arrays, the decisions); the collections that fall due
    run once after it, at the caller's next allocation."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Decisions:
        if not gc.isenabled():
            return fn(*args, **kwargs)
        gc.disable()
        try:
            return fn(*args, **kwargs)
        finally:
            gc.enable()

    return run


class WindwardPolicy:
    """Rolling-horizon carbon- and power-cap optimiser (DESIGN sections 2 and 4)."""

    name = "windward"

    def __init__(
        self,
        horizon_hours: float = 48.0,
        *,
        weights: WeightSettings | None = None,
        energy_cost_weight_g_per_eur: float = 0.0,
        warm_start: bool = True,
        plan_kwargs: dict[str, Any] | None = None,
        arrival_window_s: float = 24 * 3600.0,
        slot0_admission: bool = True,
        slot0_running: bool = True,
        run_end_s: float | None = None,
        scale_cells: int = SCALE_CELLS,
        queue_window_fraction: float | None = QUEUE_WINDOW,
        queue_window_min: float = QUEUE_WINDOW_MIN,
        witness_at_scale: str = "never",
        deferral: TrailingSignals | None = None,
    ) -> None:
        if horizon_hours <= 0:
            from scheduler.errors import InputError

            raise InputError(f"horizon_hours must be > 0, got {horizon_hours}")
        self.horizon_hours = float(horizon_hours)
        self.weights = weights or DEFAULT_WEIGHTS
        self.energy_cost_weight_g_per_eur = float(energy_cost_weight_g_per_eur)
        self.warm_start = warm_start
        self.plan_kwargs = dict(plan_kwargs or {})
        self.arrival_window_s = float(arrival_window_s)
        self.slot0_admission = bool(slot0_admission)
        self.slot0_running = bool(slot0_running)
        self.run_end_s = None if run_end_s is None else float(run_end_s)
        self.scale_cells = int(scale_cells)
        self.queue_window_fraction = None if queue_window_fraction is None else float(queue_window_fraction)
        self.queue_window_min = float(queue_window_min)
        self.witness_at_scale = witness_at_scale
        # the price of work left past the horizon from the observed past (scheduler.deferral); None: the
        # horizon's own costs (WeightSettings.beyond_horizons)
        self.deferral = deferral
        self._last: tuple[PlanResult, PlanIndex] | None = None
        self._arrivals: dict[str, tuple[float, float]] = {}  # job id -> (submit_s, GPU-seconds of work)
        self._first_now_s: float | None = None
        self._table = JobTable()  # the jobs' own fields, read once across ticks (scheduler.planner.JobTable)

    def horizon_slots(self, slot_s: float) -> int:
        return max(1, int(round(self.horizon_hours * 3600.0 / slot_s)))

    def arrival_rate_gpu_s_per_s(self, snapshot: Snapshot) -> float:
        """Work (GPU-seconds at full speed) submitted per second over the last ``arrival_window_s``, from the
        jobs this policy has seen appear (inference excluded: it is held by the inference reserve)."""
        if self._first_now_s is None:
            self._first_now_s = snapshot.now_s
        lo = snapshot.now_s - self.arrival_window_s
        seen = self._arrivals
        seen.update([(j.job_id, (j.submit_s, j.gpus * j.duration_s)) for js in snapshot.jobs
                     if not (j := js.job).must_run and j.submit_s >= lo and j.job_id not in seen])
        for jid in [k for k, (t, _) in self._arrivals.items() if t < lo]:
            del self._arrivals[jid]
        observed_s = min(snapshot.now_s - self._first_now_s + snapshot.forecast.slot_s, self.arrival_window_s)
        # a short history is spread over at least a quarter of the window, so the first ticks do not
        # mistake the initial queue for a steady arrival rate
        return sum(w for _, w in self._arrivals.values()) / max(observed_s, 0.25 * self.arrival_window_s)

    def _solve(self, snapshot: Snapshot, T: int, weights: WeightSettings,
               rate: float) -> tuple[PlanResult, PlanIndex, PlanProblem]:
        import kernels

        problem, index = build_problem(
            snapshot, T, weights=weights, energy_cost_weight_g_per_eur=self.energy_cost_weight_g_per_eur,
            expected_arrival_gpu_s_per_s=rate, table=self._table,
            beyond_price=None if self.deferral is None else self.deferral.beyond_price,
        )
        kw = self.plan_kwargs
        if problem.n_jobs * T > self.scale_cells:  # at scale (module docstring): the queue window, the witness
            if self.queue_window_fraction is not None:
                problem, index = queue_window(problem, index, self.queue_window_fraction, self.queue_window_min)
            kw = {"witness": self.witness_at_scale, **kw}
        warm = None
        if self.warm_start and self._last is not None and problem.n_jobs:
            warm = shift_result(self._last[0], self._last[1], index, T)
        return kernels.plan(problem, warm_start=warm, **kw), index, problem

    @_without_cyclic_gc
    def decide(self, snapshot: Snapshot) -> Decisions:
        # plan over the forecast the caller gives, up to this policy's horizon (never invent slots)
        T = min(self.horizon_slots(snapshot.forecast.slot_s), max(snapshot.forecast.n_slots, 1))
        rate = self.arrival_rate_gpu_s_per_s(snapshot)
        if self.deferral is not None:
            self.deferral.observe(snapshot.slot, snapshot.forecast)
        weights = self.weights
        if self.run_end_s is not None:
            # a run that ends (a demo, a finite replay): plan up to its end and value work left undone there
            # at the full weight, since no future will do it
            left = int(math.ceil((self.run_end_s - snapshot.now_s) / snapshot.forecast.slot_s - 1e-9))
            if left <= T:
                T = max(left, 1)
                weights = replace(weights, terminal_value="max")
        result, index, problem = self._solve(snapshot, T, weights, rate)
        if weights.reserve_inference and (result.status == "infeasible" or result.diagnostics.get("shed_slots")):
            # the expected inference (a forecast, with a margin) may not fit beside work that cannot move, or
            # under a cap with the real inference (a marked slot, kernels.check.inference_shed: nothing but
            # inference would run there, shut to training for demand that is only expected): plan without it
            # rather than fall back or close slots (round 23: `windward demo` marked 8 slots on 87 of its 96
            # ticks for the reserve alone, where it had planned without it before, 1.035 -> 1.061 of the bound)
            log.info("windward slot %d: %s with the inference reserve (%s); planning without it", snapshot.slot,
                     "infeasible" if result.status == "infeasible" else "slots shut by the reserve",
                     result.reason or f"shed slots {list(result.diagnostics.get('shed_slots', []))[:5]}")
            result, index, problem = self._solve(snapshot, T, replace(weights, reserve_inference=False), rate)
        problem_jobs = len(index.job_ids)
        log.info(
            "windward slot %d: %d rows, status %s, carbon %.0f g, gap %.4f, %d iterations, value %.3g g/GPU-s",
            snapshot.slot, problem_jobs, result.status, result.carbon_g_total, result.gap, result.iterations,
            index.terminal.get("value_g_per_gpu_s", float("nan")),
        )
        if result.status == "infeasible":
            log.warning("windward slot %d: optimiser infeasible: %s", snapshot.slot, result.reason)
            self._last = None
            return self._fallback(snapshot, result)
        if index.terminal:
            result = replace(result, diagnostics={**result.diagnostics, "terminal": dict(index.terminal)})
        if result.diagnostics.get("left_out_jobs"):  # no pool holds them in any slot (kernels.check.unplaceable)
            ids = [index.job_ids[j] for j in result.diagnostics["left_out_jobs"] if j < index.n_real]
            log.warning("windward slot %d: left out of the plan, no pool can hold them in any slot: %s",
                        snapshot.slot, ", ".join(ids))
            result = replace(result, diagnostics={**result.diagnostics, "left_out_job_ids": ids})
        if result.diagnostics.get("displaced_jobs"):  # slot 0 cannot hold them (kernels.check.running_blocks)
            ids = [index.job_ids[j] for j in result.diagnostics["displaced_jobs"] if j < index.n_real]
            log.warning("windward slot %d: running non-preemptible jobs displaced (the inference takes their pool, or "
                        "this slot's healthy GPUs or cap cannot hold them), stopped and planned again: %s",
                        snapshot.slot, ", ".join(ids))
            result = replace(result, diagnostics={**result.diagnostics, "displaced_job_ids": ids})
        self._last = (result, index)
        decisions = decisions_from_result(result, index)
        if result.diagnostics.get("displaced_job_ids"):  # stopped now, as the plan has them (not kept running)
            decisions = replace(decisions, shed=decisions.shed | frozenset(result.diagnostics["displaced_job_ids"]))
        if self.slot0_admission:
            decisions = self._admit_slot0(snapshot, problem, index, result, decisions)
        if self.slot0_running:
            decisions = self._settle_running_slot0(snapshot, problem, index, result, decisions)
        decisions = self._start_due_work(problem, index, decisions)
        # the plan's per-job schedule, computed only when asked (scheduler.reasons: planned_start)
        return replace(self._meet_deadlines_within_slot(snapshot, decisions), schedule=LazySchedule(result, index))

    @staticmethod
    def _admit_slot0(snapshot: Snapshot, problem: PlanProblem, index: PlanIndex, result: PlanResult,
                     decisions: Decisions) -> Decisions:
        """Hold back new starts in the current slot whose *actual* marginal grid carbon exceeds their value.

        The optimiser's repair and fill passes price a slot's watts at its dual price, which sits anywhere
        between 0 and the grid's carbon when the facility load is right at the wind: headroom there looks
        cheap and gets filled. Only the current slot is applied, so it is checked here against its
        forecast: new starts of queued preemptible work, least valuable first, each costing
        ``carbon_g_per_kwh`` for the part of its marginal watts above the wind, are dropped while that cost
        per GPU-second of work exceeds the job's weight (the value the plan gives its work). Jobs due
        inside the horizon carry a weight above any slot's carbon and are never dropped.
        """
        if not decisions.run or problem.n_jobs == 0:
            return decisions
        pools = snapshot.site.pools
        p_index = {p.name: i for i, p in enumerate(pools)}
        pue = float(problem.pue)
        wind_w = float(problem.wind_w[0])
        ci = float(problem.carbon_g_per_kwh[0])
        # only queued preemptible work is a new start that may be held back: rows picked by array, then
        # looked up in the decisions; least valuable first (then by id), each in turn (:func:`_in_turn`)
        n = index.n_real
        new_start = np.flatnonzero(~problem.must_run[:n] & (problem.running_pool[:n] < 0) & problem.preemptible[:n])
        ids, get = index.job_ids, decisions.run.get
        got = [(i, ids[i], a) for i in new_start.tolist() if (a := get(ids[i])) is not None]
        if not got:
            return decisions
        speed_of = _SpeedTable(pools)
        rows = np.fromiter((c[0] for c in got), np.int64, len(got))
        w = problem.weight[rows].astype(np.float64)
        order = np.lexsort((np.array([c[1] for c in got]), w)).tolist()
        got = [got[k] for k in order]
        rows, w = rows[order], w[order]
        g = problem.gpus[rows].astype(np.float64)
        f = np.fromiter((c[2].power_fraction for c in got), np.float64, len(got))
        p = np.fromiter((p_index[c[2].pool] for c in got), np.int64, len(got))
        tdp = np.array([pl.tdp_w for pl in pools], dtype=np.float64)[p]
        idle = np.array([pl.idle_w for pl in pools], dtype=np.float64)[p]
        load_w = pue * g * (f * tdp - idle)
        work = g * np.fromiter((speed_of(k, x) for k, x in zip(p.tolist(), f.tolist(), strict=True)), np.float64, len(got))

        def step(fac_w: np.ndarray, s: slice) -> tuple[np.ndarray, np.ndarray]:
            grid_w = np.minimum(load_w[s], np.maximum(fac_w - wind_w, 0.0))
            cost = ci * grid_w / 3.6e6 / np.maximum(work[s], 1e-9)  # g per GPU-second of work
            drop = ~(cost <= w[s])
            return drop, np.where(drop, -load_w[s], 0.0)

        dropped = [got[k][1] for k in np.flatnonzero(_in_turn(step, float(result.facility_w[0]), len(got))).tolist()]
        if not dropped:
            return decisions
        log.debug("windward slot %d: held back %d start(s) whose marginal carbon exceeds their value",
                  snapshot.slot, len(dropped))
        drop = set(dropped)
        return Decisions(run={j: a for j, a in decisions.run.items() if j not in drop}, plan=decisions.plan,
                         shed=decisions.shed)

    @staticmethod
    def _settle_running_slot0(snapshot: Snapshot, problem: PlanProblem, index: PlanIndex, result: PlanResult,
                              decisions: Decisions) -> Decisions:
        """Running work in the current slot at the power level its value pays for, or stopped.

        The optimiser's plan keeps running preemptible work in slot 0 (its primal's hysteresis) at the
        level it took, and its repair lowers levels only where a cap binds: work valued at the clearing
        price then runs at full power through dirty slots (2023 summer, 2 days: 32-GPU jobs worth 0.018
        g per GPU-second of work at 1.0 in slots costing 0.078 there, 0.041 at the efficient level;
        benchmarks/README.md issue 13, round 5). Only the current slot is applied, so it is settled here
        against its forecast, the way :meth:`_admit_slot0` settles new starts: per running job without a
        deadline inside the horizon, least valuable first, the net value of the slot at each level of its
        pool's speed curve at or below the planned one, ``slot_s * (weight * work - carbon_g_per_kwh *
        grid_w / 3.6e6)`` (``grid_w`` the part of its marginal watts above the wind, given what else runs),
        against stopping it (preemptible work only), which costs ``weight * gpus * preempt_loss_s`` (the
        work lost since its checkpoint plus the restart overhead); the best is taken.

        The jobs are settled in turn (each sees the facility watts the ones before it left), as arrays
        (:func:`_in_turn`: the same answers as the loop over jobs; 15,000 running jobs at scale).
        """
        if not decisions.run or problem.n_jobs == 0:
            return decisions
        pools = snapshot.site.pools
        speed_of = _SpeedTable(pools)
        p_index = {p.name: i for i, p in enumerate(pools)}
        pue = float(problem.pue)
        slot_s = float(problem.slot_s)
        wind_w = float(problem.wind_w[0])
        ci = float(problem.carbon_g_per_kwh[0])
        T = problem.n_slots
        # the rows concerned by array (running, not must-run, no deadline inside the horizon), then looked up
        n = index.n_real
        rows = np.flatnonzero(~problem.must_run[:n] & (problem.running_pool[:n] >= 0) & (problem.deadline[:n] >= T))
        ids, get = index.job_ids, decisions.run.get
        got = [(i, ids[i], a) for i in rows.tolist() if (a := get(ids[i])) is not None]
        if not got:
            return decisions
        rows = np.fromiter((g[0] for g in got), np.int64, len(got))
        jids = [g[1] for g in got]
        assign = [g[2] for g in got]
        w = problem.weight[rows].astype(np.float64)
        order = np.lexsort((np.array(jids), w))  # least valuable first, then by id
        rows, w = rows[order], w[order]
        jids = [jids[k] for k in order.tolist()]
        assign = [assign[k] for k in order.tolist()]
        g = problem.gpus[rows].astype(np.float64)
        fa = np.fromiter((a.power_fraction for a in assign), np.float64, len(assign))
        p = np.fromiter((p_index[a.pool] for a in assign), np.int64, len(assign))
        tdp = np.array([pl.tdp_w for pl in pools], dtype=np.float64)[p]
        idle = np.array([pl.idle_w for pl in pools], dtype=np.float64)[p]
        load_now = pue * g * (fa * tdp - idle)
        stop_net = np.where(problem.preemptible[rows], -w * g * problem.preempt_loss_s[rows].astype(np.float64), np.nan)
        # each pool's levels, descending (padded with nan: no level), and their speeds
        lv = [speed_of.levels_upto(k, math.inf) for k in range(len(pools))]
        K = max((len(x) for x in lv), default=0)
        lev = np.full((len(pools), K), np.nan)
        spd = np.zeros((len(pools), K))
        for k, x in enumerate(lv):
            lev[k, : len(x)] = x
            spd[k, : len(x)] = [speed_of(k, f) for f in x]
        lev, spd = lev[p], spd[p]

        def step(fac_w: np.ndarray, s: slice) -> tuple[np.ndarray, np.ndarray]:
            """(level, watts change) of the jobs ``s`` given the facility watts each sees (``fac_w``)."""
            best_f, best_net, best_load = fa[s].copy(), np.full(fa[s].shape, -math.inf), load_now[s].copy()
            gs, ws, ln = g[s], w[s], load_now[s]
            for k in range(K):  # each level at or below the planned one, descending: the first strictly better
                f = lev[s, k]
                load_w = pue * gs * (f * tdp[s] - idle[s])
                grid_w = np.minimum(load_w, np.maximum(fac_w - ln + load_w - wind_w, 0.0))
                net = slot_s * (ws * gs * spd[s, k] - ci * grid_w / 3.6e6)
                better = (f <= fa[s] + 1e-9) & (net > best_net + 1e-9)
                best_f = np.where(better, f, best_f)
                best_net = np.where(better, net, best_net)
                best_load = np.where(better, load_w, best_load)
            stop = stop_net[s] > best_net  # (nan: not preemptible)
            best_f = np.where(stop, 0.0, best_f)
            best_load = np.where(stop, 0.0, best_load)
            return best_f, np.where(best_f == fa[s], 0.0, best_load - ln)

        level = _in_turn(step, float(result.facility_w[0]), len(assign))
        changed = np.flatnonzero(level != fa)
        if not changed.size:
            return decisions
        run = dict(decisions.run)
        for k in changed.tolist():
            if level[k] == 0.0:
                del run[jids[k]]
            else:
                run[jids[k]] = Assignment(pool=assign[k].pool, power_fraction=float(level[k]))
        log.debug("windward slot %d: %d running job(s) lowered or stopped where the slot's carbon exceeds "
                  "their value", snapshot.slot, changed.size)
        return Decisions(run=run, plan=decisions.plan, shed=decisions.shed)

    @staticmethod
    def _start_due_work(problem: PlanProblem, index: PlanIndex, decisions: Decisions) -> Decisions:
        """Start released work that cannot wait another slot for its deadline, displacing cheaper work.

        In the problem's own terms (``problem.deadline``, margin included) a job whose latest on-time start
        is the current slot (``deadline - ceil(remaining_s / slot_s) <= 0``; a deadline already out of reach
        sits at the earliest finish, so such work finishes as soon as it can) and that the plan leaves out
        of slot 0 misses its deadline unless it starts now. The optimiser does leave such work out when its
        pools are full of running work it would have to preempt (the study's 2022 summer 2-day and 2023
        autumn 4-day misses, benchmarks/README.md issue 13 round 5), and a start deferred to the last slot
        has no second chance when the executor cannot place it. Each such job, most valuable first, starts
        at full power in an eligible pool with free GPUs (the most free), else in place of planned work of
        one pool: preemptible, valued below it, and able to give up this slot and still be on time in the
        problem's terms; new starts are displaced before running work, one job of at least its size where
        there is one (its GPUs then hold the gang), else the cheapest until it fits. Nothing is displaced
        where no pool can hold it that way, and nothing starts where the current slot is closed
        (:func:`kernels.check.closed_slots`: its cap holds the idle floor and at most the inference the plan
        serves there, so the plan runs nothing else in it; round 24 found a due job started there).
        """
        n = index.n_real
        if n == 0 or closed_slots(problem)[0]:
            return decisions
        slot_s = float(problem.slot_s)
        needed = np.ceil(problem.remaining_s[:n] / slot_s - 1e-9)
        has_deadline = problem.deadline[:n] != NO_DEADLINE
        slack_slots = np.where(has_deadline, problem.deadline[:n] - needed, np.inf)
        due = (has_deadline & (slack_slots <= 0) & (problem.release[:n] == 0) & ~problem.must_run[:n]
               & (problem.remaining_s[:n] > 0))
        rows = {jid: i for i, jid in enumerate(index.job_ids[:n])}
        left_out = [i for i in np.flatnonzero(due).tolist() if index.job_ids[i] not in decisions.run]
        if not left_out:
            return decisions
        P = problem.n_pools
        pool_of = {name: k for k, name in enumerate(index.pool_names)}
        run = dict(decisions.run)
        used = np.zeros(P)
        for jid, a in run.items():
            i = rows.get(jid)
            if i is not None:
                used[pool_of[a.pool]] += problem.gpus[i]
        free = np.asarray(problem.pool_gpus, dtype=np.float64).reshape(P, -1)[:, 0] - used
        started = 0
        for i in sorted(left_out, key=lambda r: -float(problem.weight[r])):
            g = int(problem.gpus[i])
            pools = np.flatnonzero(problem.eligible[i])
            if pools.size == 0:
                continue
            best = int(pools[np.argmax(free[pools])])
            victims: list[str] = []
            if free[best] < g:
                best, victims = -1, []
                cost_best: tuple[float, float] | None = None
                for p in pools.tolist():
                    cands = []
                    for jid, a in run.items():
                        k = rows.get(jid)
                        if (k is None or pool_of[a.pool] != p or not problem.preemptible[k] or problem.must_run[k]
                                or slack_slots[k] < 1 or problem.weight[k] >= problem.weight[i]):
                            continue
                        cands.append((float(problem.running_pool[k] >= 0), float(problem.weight[k] * problem.gpus[k]),
                                      int(problem.gpus[k]), jid))
                    cands.sort()
                    whole = [c for c in cands if c[2] >= g]
                    if whole:
                        pick = [whole[0]]
                    else:
                        pick, got = [], free[p]
                        for c in cands:
                            if got >= g:
                                break
                            pick.append(c)
                            got += c[2]
                        if free[p] + sum(c[2] for c in pick) < g:
                            continue
                    cost = (sum(c[0] for c in pick), sum(c[1] for c in pick))
                    if cost_best is None or cost < cost_best:
                        best, victims, cost_best = p, [c[3] for c in pick], cost
                if best < 0:
                    continue
            for jid in victims:
                free[best] += problem.gpus[rows[jid]]
                del run[jid]
            free[best] -= g
            run[index.job_ids[i]] = Assignment(pool=index.pool_names[best], power_fraction=1.0)
            started += 1
        log.debug("windward: started %d job(s) due now that the plan left out", started)
        return Decisions(run=run, plan=decisions.plan, shed=decisions.shed)

    @staticmethod
    def _meet_deadlines_within_slot(snapshot: Snapshot, decisions: Decisions) -> Decisions:
        """Raise the power of a job with a deadline just enough that running on from now ends by it.

        The plan counts work per slot, so a job due inside the slot it finishes in looks on time at any
        power level, and slippage between ticks eats a tight plan's margin; at a low level it may end
        minutes late. A job whose remaining work at its planned level would not be done by its deadline
        even running without a break gets the lowest level of its pool's speed curve at which
        ``now + remaining / speed <= deadline`` (full power when none does).
        """
        below_full = {jid: a for jid, a in decisions.run.items() if a.power_fraction < 1.0}
        pools = {p.name: k for k, p in enumerate(snapshot.site.pools)}
        speed_of = _SpeedTable(snapshot.site.pools)
        run = dict(decisions.run)
        for js in snapshot.jobs:  # each job is looked at on its own: the order is immaterial
            if js.job.deadline_s is None:
                continue
            jid = js.job.job_id
            a = below_full.get(jid)
            if a is None:
                continue
            p = pools.get(a.pool)
            if p is None:
                continue
            left_s = js.job.deadline_s - snapshot.now_s
            need_f = 1.0
            for f in speed_of.levels(p, a.power_fraction):
                if js.remaining_s / max(speed_of(p, f), 1e-9) <= left_s + 1e-6:
                    need_f = float(f)
                    break
            if need_f > a.power_fraction:
                run[jid] = Assignment(pool=a.pool, power_fraction=need_f)
        return Decisions(run=run, plan=decisions.plan, shed=decisions.shed)

    @staticmethod
    def _fallback(snapshot: Snapshot, result: PlanResult) -> Decisions:
        """Serve inference and keep running non-preemptible work; everything else waits a tick."""
        from scheduler.jobs import eligible_pools

        run: dict[str, Assignment] = {}
        for js in snapshot.jobs:
            if js.state == "running" and js.pool and (js.job.must_run or not js.job.preemptible):
                run[js.job.job_id] = Assignment(pool=js.pool, power_fraction=1.0)
            elif js.job.must_run and js.job.submit_s <= snapshot.now_s:
                pools = eligible_pools(snapshot.site, js.job)
                if pools:
                    run[js.job.job_id] = Assignment(pool=snapshot.site.pools[pools[0]].name, power_fraction=1.0)
        return Decisions(run=run, plan=result)
