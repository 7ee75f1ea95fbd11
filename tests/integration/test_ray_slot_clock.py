"""The Ray executor's slot clock: a control loop that drives time charges each slot for ``dt_s`` seconds, so
the jobs must do ``dt_s`` seconds of work per slot, however long the loop's own work between steps (its tick)
takes. Without ``slot_clock`` each step waited ``dt_s`` from its call and the tick's time was extra, unaccounted
work (the demo's Windward-on-Ray run came out below its clairvoyant bound). Real Ray, a real workload.

With ``slot_clock`` the jobs pace on the clock the executor publishes, which runs only inside a step: a tick
that overruns its slot (starts of 9-16 s on a loaded 2-core machine) lets no job work uncharged. Before it,
the jobs paced on the wall clock and the steps caught the slot grid up; a tick more than 10 slots behind
restarted the grid, and the jobs' work through it was charged to no slot (the demo on a loaded machine:
-30.8% against the carbon-agnostic run, 0.976 of its clairvoyant bound)."""

from __future__ import annotations

import time

import pytest

from scheduler.jobs import Job

pytestmark = pytest.mark.integration

POOL = "h100-eu-public"


# slot_clock=False (the old clock) gave 2,600 s of work for the 1,800 s charged here: seen failing, and the
# case is not kept in the suite (it exercises nothing the other Ray tests' hand-stepped clocks do not).
# The wall-clock slot grid (before the published clock) did 6,600 s for the 2,100 s charged: the long
# tick restarted its grid, and the job worked through it uncharged.
def test_work_per_slot_is_the_accounted_slot_whatever_the_tick_takes(ray_ex) -> None:
    jid = "clock-1"
    dt_s, span_s = 300.0, 0.3  # time_scale 1000: a 0.3 s slot
    # the loop's own work between steps, in wall seconds: quick ticks inside the slot, half a slot, and one
    # that overruns the slot grid by 12 slots (a loaded machine's start-ups); deterministic, not a busy loop
    ticks = [0.05, 0.15, 12 * span_s, 0.05, 0.5 * span_s, 0.05, 0.15]
    # the executor has stepped virtual time before the clock is turned on (as the earlier modules of a session
    # do): a job must start on the clock at now, not at 0 (round 27: it began its pacing at 0 and ran flat out
    # through the 3,000 s to catch up, charged to no slot; on a loaded machine past the first slot, 31,100 s of
    # work for the 2,100 s charged below)
    ray_ex.step(3000.0)
    ray_ex.slot_clock = True
    try:
        ray_ex.set_workload_params(jid, {"steps": 2000})  # progress every 100 s of work
        ray_ex.set_workload_params(jid + "-late", {"steps": 200})
        assert ray_ex.start(Job(jid, "acme", "training", 0.0, 1, 200_000.0), POOL, 1.0, 0.0) is not None
        ray_ex.step(dt_s)  # the first slot sets the grid
        time.sleep(0.5)  # the clock stands still between steps: the job's reports settle at the slot's end
        ray_ex.step(0.0)
        w0 = ray_ex.running()[jid].work_done_s
        assert w0 == pytest.approx(dt_s, abs=150.0), (w0, dt_s)  # the first slot's work, no catch-up
        late_slots = 0
        for k, tick in enumerate(ticks):
            time.sleep(tick)
            if k == 2:  # a job started inside the long tick: its start-up is no slot's work either
                assert ray_ex.start(Job(jid + "-late", "acme", "training", 0.0, 1, 20_000.0), POOL, 1.0, 0.0)
            late_slots += k >= 2
            ray_ex.step(dt_s)
        time.sleep(0.5)
        ray_ex.step(0.0)
        run = ray_ex.running()
        work = run[jid].work_done_s - w0
        late = run[jid + "-late"].work_done_s
        stretched = ray_ex.stretched_slots
    finally:
        ray_ex.slot_clock = False
    n = len(ticks)
    # the work of the slots charged, to the job's progress granularity (100 s), never the overrun's 3,600 s
    assert work == pytest.approx(n * dt_s, abs=150.0), (work, n * dt_s)
    assert 0.0 < late <= late_slots * dt_s + 10.0, (late, late_slots * dt_s)
    assert stretched >= 1  # the long tick moved the grid (the replay took longer, nobody worked through it)
