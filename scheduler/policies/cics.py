"""``cics``: a CICS-style baseline (Radovanovic et al., "Carbon-Aware Computing for Datacenters", Google's
Carbon-Intelligent Compute System, 2021): a *virtual capacity curve* (VCC) caps the GPUs that deferrable work
may use in each slot, shaped by the carbon forecast so that the day's expected flexible demand still fits.

Each tick, over the snapshot (forecast only; CICS computes the curve day-ahead, here it is re-computed every
tick over the next ``day_hours``, so forecast updates and new arrivals are taken into account):

1. Running jobs keep running at full power (shed only if they break the forecast budget of the current
   slot, as in ``backfill``); queued inference starts at once (must-run, outside the curve).
2. Flexible demand over the day, in GPU-slots: the queued and running deferrable work (each job's GPUs for
   the slots of its remaining run, clipped to the day) plus the expected arrivals of the day
   (:class:`scheduler.arrivals.ArrivalModel`, fitted from the submissions seen so far), times
   ``1 + headroom``.
3. The curve: slots are filled cleanest first (forecast marginal grid carbon of one more GPU, given what is
   already booked) up to their free GPUs and power budget until the demand is covered; ``vcc[0]`` is the
   cap of the current slot for new starts (running work is booked in the profile before the curve is
   drawn, so it is never capped).
4. Queued deferrable jobs, earliest deadline first, start while the deferrable GPUs in use stay within
   ``vcc[0]`` and they fit (GPUs for their run, power for ``power_lookahead_s``); a job out of slack starts
   whenever it fits, curve or not. Running work is never preempted by the curve (CICS shapes admission).
"""

from __future__ import annotations

import math

import numpy as np

from scheduler.arrivals import ArrivalModel
from scheduler.policies.base import Assignment, Decisions, Snapshot
from scheduler.policies.capacity import (
    SiteTools,
)
from scheduler.policies.threshold import due_s


def virtual_capacity_curve(free_gpus: np.ndarray, cost_per_gpu: np.ndarray, demand_gpu_slots: float) -> np.ndarray:
    """``(T,)`` GPUs per slot: fill slots in order of ``cost_per_gpu`` (cleanest first, earlier on ties) up
    to ``free_gpus`` until ``demand_gpu_slots`` is covered (all of ``free_gpus`` if it never is)."""
    free = np.maximum(np.asarray(free_gpus, dtype=np.float64), 0.0)
    cost = np.asarray(cost_per_gpu, dtype=np.float64)
    if free.shape != cost.shape:
        raise ValueError(f"free_gpus {free.shape} and cost_per_gpu {cost.shape} must have one shape")
    order = np.lexsort((np.arange(cost.size), cost))
    cum = np.cumsum(free[order])
    need = max(float(demand_gpu_slots), 0.0)
    out = np.zeros_like(free)
    k = int(np.searchsorted(cum, need - 1e-9))  # first slot (in order) at which the demand is covered
    if k >= order.size:
        return free
    out[order[:k]] = free[order[:k]]
    out[order[k]] = need - (cum[k - 1] if k > 0 else 0.0)
    return out


class CicsPolicy(SiteTools):
    name = "cics"

    def __init__(self, day_hours: float = 24.0, headroom: float = 0.1, max_delay_s: float = 24 * 3600.0,
                 power_lookahead_s: float = 4 * 3600.0) -> None:
        if day_hours <= 0 or headroom < 0 or max_delay_s < 0 or power_lookahead_s < 0:
            raise ValueError(
                f"day_hours must be > 0 and headroom, max_delay_s, power_lookahead_s >= 0, got {day_hours}, "
                f"{headroom}, {max_delay_s}, {power_lookahead_s}"
            )
        self.day_hours = float(day_hours)
        self.headroom = float(headroom)
        self.max_delay_s = float(max_delay_s)
        self.power_lookahead_s = float(power_lookahead_s)
        self.arrivals = ArrivalModel()
        self.last_vcc: np.ndarray | None = None  # the curve of the last tick (GPUs per slot), for reports

    def decide(self, snapshot: Snapshot) -> Decisions:
        self.arrivals.observe(snapshot)
        slot_s = float(snapshot.forecast.slot_s)
        now = snapshot.now_s
        start = self._begin(snapshot, math.ceil(self.day_hours * 3600 / slot_s))
        power, elig, prof, queued, run = start.power, start.elig, start.prof, start.queued, start.run
        t_h = prof.n_slots
        rest = [js for js in queued if not js.job.must_run]
        # flexible demand of the day in GPU-slots (running work is in the profile already, so it is not
        # counted again: the curve is for what is still to be placed)
        demand = float(sum(js.job.gpus * min(math.ceil(js.remaining_s / slot_s - 1e-9), t_h) for js in rest))
        demand += self.arrivals.expected_gpu_s(now, t_h * slot_s) / slot_s
        demand *= 1.0 + self.headroom
        # cost of one more GPU per slot, and the GPUs that fit there (site-wide: pools summed)
        free = prof.free.sum(axis=0)
        w1 = float(power.gpu_w_full.mean())
        room_w = np.maximum(prof.budget_w - prof.load_w, 0.0)
        free = np.minimum(free, np.floor(room_w / max(w1, 1e-9)))
        cost = prof.marginal_carbon_g(0, 1, 1.0)
        vcc = virtual_capacity_curve(free, cost, demand)
        self.last_vcc = vcc
        used = 0.0
        cap0 = float(vcc[0])
        rest.sort(key=lambda js: (due_s(js, self.max_delay_s), -js.job.priority, js.job.submit_s))
        look = max(1, math.ceil(self.power_lookahead_s / slot_s))
        for js in rest:
            job = js.job
            slack_s = due_s(js, self.max_delay_s) - now - js.remaining_s
            urgent = slack_s <= slot_s
            if not urgent and used + job.gpus > cap0 + 1e-9:
                continue
            for p in elig(job):
                if prof.free[p, 0] < job.gpus:
                    continue
                n = prof.slots_needed(js.remaining_s, p)
                if prof.fits(p, job.gpus, 1.0, n, min(n, look)):
                    prof.add(p, job.gpus, 1.0, 0, n)
                    run[job.job_id] = Assignment(power.names[p], 1.0)
                    used += job.gpus
                    break
        return Decisions(run=run, plan=None)
