"""The ``windward`` policy: a rolling-horizon optimiser that re-plans the whole horizon every tick.

Each tick: flatten the snapshot (with the forecast the simulator or the service gives it) into a
:class:`~kernels.problem.PlanProblem` (:func:`scheduler.planner.build_problem`), solve it with
``kernels.plan`` warm-started from the previous tick's plan shifted to the current slot (rows re-matched
by job id, slot prices shifted and their last value held), and apply only the first slot. The returned
:class:`~scheduler.policies.base.Decisions` carries the :class:`~kernels.problem.PlanResult` in ``plan``
(dual prices, gap, iterations) for reports and metrics.

When the optimiser reports ``infeasible`` (for example inference alone breaks a cap in some slot), the
policy still answers: it keeps inference served and running non-preemptible work running in its pool at
full power, and leaves the rest queued; the control loop's fast path then deals with the caps.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import numpy as np

from kernels.problem import PlanResult
from scheduler.planner import PlanIndex, WeightSettings, build_problem, decisions_from_result
from scheduler.policies.base import Assignment, Decisions, Snapshot

log = logging.getLogger(__name__)


def shift_result(prev: PlanResult, prev_index: PlanIndex, index: PlanIndex, n_slots: int) -> PlanResult:
    """The previous plan moved to the new slot origin and job rows: the warm start for this tick.

    Columns move left by the number of slots elapsed (the tail holds the last slot); jobs that are new get
    empty rows; per-slot aggregates and prices are shifted the same way.
    """
    d = max(index.slot - prev_index.slot, 0)
    T_prev = prev.run.shape[1] if prev.run.ndim == 2 else 0
    cols = np.minimum(np.arange(n_slots) + d, max(T_prev - 1, 0))
    J = len(index.job_ids)
    rows_prev = {jid: i for i, jid in enumerate(prev_index.job_ids)}
    src = np.array([rows_prev.get(jid, -1) for jid in index.job_ids], dtype=np.int64)
    have = src >= 0
    run = np.zeros((J, n_slots), dtype=bool)
    pf = np.zeros((J, n_slots), dtype=np.float32)
    pool = np.full(J, -1, dtype=np.int32)
    work = np.zeros(J)
    finished = np.zeros(J, dtype=bool)
    if T_prev and have.any():
        valid_col = (np.arange(n_slots) + d) < T_prev
        run[have] = prev.run[src[have]][:, cols] & valid_col
        pf[have] = np.where(run[have], prev.power_fraction[src[have]][:, cols], 0.0)
        pool[have] = prev.pool[src[have]]

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
    ) -> None:
        if horizon_hours <= 0:
            from scheduler.errors import InputError

            raise InputError(f"horizon_hours must be > 0, got {horizon_hours}")
        self.horizon_hours = float(horizon_hours)
        self.weights = weights or WeightSettings()
        self.energy_cost_weight_g_per_eur = float(energy_cost_weight_g_per_eur)
        self.warm_start = warm_start
        self.plan_kwargs = dict(plan_kwargs or {})
        self._last: tuple[PlanResult, PlanIndex] | None = None

    def horizon_slots(self, slot_s: float) -> int:
        return max(1, int(round(self.horizon_hours * 3600.0 / slot_s)))

    def decide(self, snapshot: Snapshot) -> Decisions:
        import kernels

        # plan over the forecast the caller gives, up to this policy's horizon (never invent slots)
        T = min(self.horizon_slots(snapshot.forecast.slot_s), max(snapshot.forecast.n_slots, 1))
        problem, index = build_problem(
            snapshot, T, weights=self.weights, energy_cost_weight_g_per_eur=self.energy_cost_weight_g_per_eur
        )
        warm = None
        if self.warm_start and self._last is not None and problem.n_jobs:
            warm = shift_result(self._last[0], self._last[1], index, T)
        result: PlanResult = kernels.plan(problem, warm_start=warm, **self.plan_kwargs)
        log.info(
            "windward slot %d: %d jobs, status %s, carbon %.0f g, gap %.4f, %d iterations",
            snapshot.slot, problem.n_jobs, result.status, result.carbon_g_total, result.gap, result.iterations,
        )
        if result.status == "infeasible":
            log.warning("windward slot %d: optimiser infeasible: %s", snapshot.slot, result.reason)
            self._last = None
            return self._fallback(snapshot, result)
        self._last = (result, index)
        return decisions_from_result(result, index)

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
