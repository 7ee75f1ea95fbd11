"""``threshold``: a Let's-Wait-Awhile-style baseline (Wiesner et al., Middleware 2021): run deferrable work
only while the grid is clean enough, within each job's slack.

Each tick, over the snapshot (forecast only):

1. Running jobs keep running at full power (shed only if they break the forecast budget of the current
   slot, as in ``backfill``); queued inference starts at once (must-run).
2. Each queued job, earliest deadline first, gets a threshold: the ``quantile`` of the forecast marginal
   grid carbon it would cause per slot (``CapacityProfile.marginal_carbon_g``: the carbon intensity times the
   grid import it adds, zero where wind covers it) over the slots it may still use (now up to its latest
   start plus its run, within the horizon). It starts now when the current slot's cost is at or below the
   threshold, or when its slack is gone, and it fits (GPUs for its run, power for ``power_lookahead_s``).
3. With ``interrupt`` (LWA's interruptible mode), a running preemptible job whose current slot costs more
   than its threshold is paused when it has slack for the rest of its work and pausing loses at most
   ``max_loss_s`` of work (its last checkpoint is recent).
4. A job without a deadline is treated as due ``max_delay_s`` after its earliest possible finish.

The control loop's rules and fast path run after it like after every policy.
"""

from __future__ import annotations

import math

import numpy as np

from scheduler.policies.base import Assignment, Decisions, JobState, Snapshot
from scheduler.policies.capacity import (
    SiteTools,
)


def due_s(js: JobState, max_delay_s: float) -> float:
    """A job's deadline, or ``max_delay_s`` after its earliest possible finish when it has none."""
    j = js.job
    if j.deadline_s is not None:
        return float(j.deadline_s)
    return j.submit_s + j.duration_s + max_delay_s


class ThresholdPolicy(SiteTools):
    name = "threshold"

    def __init__(self, horizon_hours: float = 24.0, quantile: float = 0.3, max_delay_s: float = 24 * 3600.0,
                 power_lookahead_s: float = 4 * 3600.0, interrupt: bool = True, max_loss_s: float = 600.0) -> None:
        if horizon_hours <= 0:
            raise ValueError(f"horizon_hours={horizon_hours}: must be > 0")
        if not 0.0 <= quantile <= 1.0:
            raise ValueError(f"quantile={quantile}: must be in [0, 1]")
        if max_delay_s < 0 or power_lookahead_s < 0 or max_loss_s < 0:
            raise ValueError(
                f"max_delay_s, power_lookahead_s and max_loss_s must be >= 0, got {max_delay_s}, "
                f"{power_lookahead_s}, {max_loss_s}"
            )
        self.horizon_hours = float(horizon_hours)
        self.quantile = float(quantile)
        self.max_delay_s = float(max_delay_s)
        self.power_lookahead_s = float(power_lookahead_s)
        self.interrupt = bool(interrupt)
        self.max_loss_s = float(max_loss_s)

    def _threshold(self, cost: np.ndarray, last_slot: int) -> float:
        w = cost[: max(1, min(last_slot, cost.size))]
        return float(np.quantile(w, self.quantile))

    def decide(self, snapshot: Snapshot) -> Decisions:
        slot_s = float(snapshot.forecast.slot_s)
        now = snapshot.now_s
        start = self._begin(snapshot, math.ceil(self.horizon_hours * 3600 / slot_s))
        power, elig, prof, queued, kept, run = start.power, start.elig, start.prof, start.queued, start.kept, start.run
        t_h = prof.n_slots
        if self.interrupt:
            for js in kept:
                job = js.job
                if job.must_run or not job.preemptible or js.job.job_id not in run or js.pool is None:
                    continue
                if js.work_done_s - js.checkpoint_work_s > self.max_loss_s:
                    continue
                p = power.index[js.pool]
                n = prof.slots_needed(js.remaining_s, p)
                slack_s = due_s(js, self.max_delay_s) - now - js.remaining_s
                if slack_s <= 2 * slot_s:
                    continue
                # its own load is in the profile: its cost is the import that removing it would save
                cost = -prof.marginal_carbon_g(p, -job.gpus, 1.0)
                last = int(math.floor(slack_s / slot_s)) + n
                if cost[0] > self._threshold(cost, last) + 1e-9:
                    prof.add(p, -job.gpus, 1.0, 0, n)  # frees its GPUs and power for the others
                    del run[job.job_id]
        rest = [js for js in queued if not js.job.must_run]
        rest.sort(key=lambda js: (due_s(js, self.max_delay_s), -js.job.priority, js.job.submit_s))
        look = max(1, math.ceil(self.power_lookahead_s / slot_s))
        for js in rest:
            job = js.job
            slack_s = due_s(js, self.max_delay_s) - now - js.remaining_s
            for p in elig(job):
                if prof.free[p, 0] < job.gpus:
                    continue
                n = prof.slots_needed(js.remaining_s, p)
                if not prof.fits(p, job.gpus, 1.0, n, min(n, look)):
                    continue
                cost = prof.marginal_carbon_g(p, job.gpus, 1.0)
                last = min(t_h, int(math.floor(max(slack_s, 0.0) / slot_s)) + n)
                if slack_s <= slot_s or cost[0] <= self._threshold(cost, last) + 1e-9:
                    prof.add(p, job.gpus, 1.0, 0, n)
                    run[job.job_id] = Assignment(power.names[p], 1.0)
                break  # the first eligible pool with room decides (as backfill places it)
        return Decisions(run=run, plan=None)
