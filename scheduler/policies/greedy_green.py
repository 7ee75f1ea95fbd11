"""``greedy-green``: start each job in the greenest window of the horizon it can have, respecting caps.

Each tick, over the snapshot (forecast only):

1. Running jobs keep running at full power (shed only if they break the forecast budget of the current
   slot, as in ``backfill``); queued inference starts at once (must-run).
2. The other queued jobs, most urgent first (least slack to their deadline, then priority, then submit
   time), each pick the start slot ``s`` whose window ``[s, s + n)`` (n = slots of work left at full power)
   has the least forecast carbon of *marginal grid energy*: a slot costs ``carbon_g_per_kwh`` times the grid
   import the job would add there, so slots where wind covers the load cost nothing. Only windows where
   the job's GPUs and power fit the forecast budget in every slot are eligible, and only starts that still
   meet the deadline. If the best start is now, the job starts; otherwise its window is booked in the
   profile (so later jobs see those green slots taken) and it waits. A job whose slack is gone starts now
   if it fits the current slot.
3. A job without a deadline is treated as due ``max_delay_s`` after its earliest possible finish, so no job
   waits for green energy forever.

Windows are contiguous because a started job is not paused: greedy-green shifts start times; it does not
split work across slots (that is what the optimiser does).
"""

from __future__ import annotations

import math

import numpy as np

from scheduler.policies.base import Assignment, Decisions, JobState, Snapshot
from scheduler.policies.capacity import (
    SiteTools,
)


class GreedyGreenPolicy(SiteTools):
    name = "greedy-green"

    def __init__(self, horizon_hours: float = 24.0, max_delay_s: float = 24 * 3600.0) -> None:
        if horizon_hours <= 0 or max_delay_s < 0:
            raise ValueError(f"horizon_hours must be > 0 and max_delay_s >= 0, got {horizon_hours}, {max_delay_s}")
        self.horizon_hours = float(horizon_hours)
        self.max_delay_s = float(max_delay_s)

    def _due_s(self, js: JobState) -> float:
        j = js.job
        if j.deadline_s is not None:
            return float(j.deadline_s)
        return j.submit_s + j.duration_s + self.max_delay_s

    def decide(self, snapshot: Snapshot) -> Decisions:
        slot_s = float(snapshot.forecast.slot_s)
        now = snapshot.now_s
        # inference first: must run now (displacing preemptible training if GPUs are short)
        start = self._begin(snapshot, math.ceil(self.horizon_hours * 3600 / slot_s))
        power, elig, prof, queued, run = start.power, start.elig, start.prof, start.queued, start.run
        t_h = prof.n_slots
        rest = [js for js in queued if not js.job.must_run]
        rest.sort(key=lambda js: (self._due_s(js) - now - js.remaining_s, -js.job.priority, js.job.submit_s))
        ramp = np.arange(t_h) * 1e-9  # prefer earlier slots on equal cost
        for js in rest:
            job = js.job
            slack_s = self._due_s(js) - now - js.remaining_s
            best: tuple[float, int, int, int] | None = None  # (cost per slot, start, pool, n)
            for p in elig(job):
                n = prof.slots_needed(js.remaining_s, p)
                mask = prof.slot_mask(p, job.gpus, 1.0)
                cost = prof.marginal_carbon_g(p, job.gpus, 1.0) + ramp
                w = min(n, t_h)
                last_start = t_h - w  # a window must lie inside the horizon
                last_start = min(last_start, int(math.floor(max(slack_s, 0.0) / slot_s)))
                if last_start < 0:
                    continue
                bad = np.concatenate([[0], np.cumsum(~mask)])
                cc = np.concatenate([[0.0], np.cumsum(cost)])
                starts = np.arange(last_start + 1)
                ok = (bad[starts + w] - bad[starts]) == 0
                if not ok.any():
                    continue
                wc = (cc[starts + w] - cc[starts])[ok]
                i = int(np.argmin(wc))
                cand = (float(wc[i]) / w, int(starts[ok][i]), p, n)
                if best is None or cand[:2] < best[:2]:
                    best = cand
            if best is not None:
                _, s, p, n = best
                prof.add(p, job.gpus, 1.0, s, n)
                if s == 0:
                    run[job.job_id] = Assignment(power.names[p], 1.0)
                continue
            if slack_s <= slot_s:
                # out of slack and no clean window: start now if the current slot allows it
                for p in elig(job):
                    n = prof.slots_needed(js.remaining_s, p)
                    if prof.fits(p, job.gpus, 1.0, 1, 1):
                        prof.add(p, job.gpus, 1.0, 0, n)
                        run[job.job_id] = Assignment(power.names[p], 1.0)
                        break
        return Decisions(run=run, plan=None)
