"""``backfill``: FIFO with EASY backfilling as Slurm does it, carbon-agnostic, full power, cap-respecting.

Each tick, over the snapshot (forecast only, never actuals):

1. Running jobs keep running at full power. If their load already breaks the forecast budget of the
   current slot (``min(site_max_w, grid_cap_w + wind_w)``), the lowest-priority preemptible ones (latest
   submitted first) are shed until it fits; inference and non-preemptible jobs are never shed.
2. Queued inference (must-run) starts at once wherever GPUs are free (demand is served, not deferred).
3. The rest in FIFO order of submit time. A job starts when GPUs in an eligible pool are free for its whole
   expected run (within the horizon) and the facility power with it stays within the forecast budget for
   the next ``power_lookahead_s`` (so it is not started just before a known cap drop; the fast path and
   the next ticks handle what a forecast got wrong). The first job that cannot start (the head) gets a
   reservation: the earliest slot at which both fit, with its GPUs and power booked in the profile from
   there; later jobs may start only if they fit around that booking, i.e. they do not delay the head
   (EASY). If the head has no slot within the horizon, later jobs fit against the running work only.

Pools are handled at pool-count level; node fragmentation is the executor's business (a start that does
not fit the nodes returns None and the job stays queued).
"""

from __future__ import annotations

import math

from scheduler.policies.base import Assignment, Decisions, Snapshot
from scheduler.policies.capacity import (
    CapacityProfile,
    SiteTools,
    running_first_slot_shed,
    start_inference,
)


class BackfillPolicy(SiteTools):
    name = "backfill"

    def __init__(self, horizon_hours: float = 48.0, power_lookahead_s: float = 4 * 3600.0) -> None:
        if horizon_hours <= 0 or power_lookahead_s < 0:
            raise ValueError(
                f"horizon_hours must be > 0 and power_lookahead_s >= 0, got {horizon_hours}, {power_lookahead_s}"
            )
        self.horizon_hours = float(horizon_hours)
        self.power_lookahead_s = float(power_lookahead_s)

    def decide(self, snapshot: Snapshot) -> Decisions:
        power, elig = self._setup(snapshot)
        slot_s = snapshot.forecast.slot_s
        prof = CapacityProfile(power, snapshot, math.ceil(self.horizon_hours * 3600 / slot_s))
        running = [js for js in snapshot.jobs if js.state == "running"]
        queued = [js for js in snapshot.jobs if js.state != "running"]
        kept, _shed = running_first_slot_shed(prof, power, running)
        full = {name: Assignment(name, 1.0) for name in power.names}  # immutable: one per pool, shared
        run: dict[str, Assignment] = {js.job.job_id: full[js.pool or power.names[0]] for js in kept}
        # inference first: must run now (displacing preemptible training if GPUs are short)
        start_inference(prof, power, elig, queued, kept, run, lambda pool: Assignment(pool, 1.0))
        look = max(1, math.ceil(self.power_lookahead_s / slot_s))
        head_reserved = False
        fifo = sorted((js for js in queued if not js.job.must_run), key=lambda js: (js.job.submit_s, js.job.job_id))
        for js in fifo:
            job = js.job
            pools = elig(job)
            if not pools:
                continue
            # quick reject on slot 0 before any array work
            free0 = max(prof.free[p, 0] for p in pools)
            started = False
            if free0 >= job.gpus:
                for p in pools:
                    n = prof.slots_needed(js.remaining_s, p)
                    if prof.fits(p, job.gpus, 1.0, n, min(n, look)):
                        prof.add(p, job.gpus, 1.0, 0, n)
                        run[job.job_id] = Assignment(power.names[p], 1.0)
                        started = True
                        break
            if started or head_reserved:
                continue
            # the head of the queue: book the earliest window where it fits
            best: tuple[int, int, int] | None = None
            for p in pools:
                n = prof.slots_needed(js.remaining_s, p)
                s = prof.earliest_window(p, job.gpus, 1.0, n)
                if s is not None and (best is None or s < best[0]):
                    best = (s, p, n)
            if best is not None:
                prof.add(best[1], job.gpus, 1.0, best[0], best[2])
            head_reserved = True
        return Decisions(run=run, plan=None)
