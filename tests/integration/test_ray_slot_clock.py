"""The Ray executor's slot clock: a control loop that drives time charges each slot for ``dt_s`` seconds, so
the jobs must do ``dt_s`` seconds of work per slot, however long the loop's own work between steps (its tick)
takes. Without ``slot_clock`` each step waited ``dt_s`` from its call and the tick's time was extra, unaccounted
work (the demo's Windward-on-Ray run came out below its clairvoyant bound). Real Ray, a real workload."""

from __future__ import annotations

import time

import pytest

from scheduler.jobs import Job

pytestmark = pytest.mark.integration

POOL = "h100-eu-public"


# slot_clock=False (the old clock) gave 2,600 s of work for the 1,800 s charged here: seen failing, and the
# case is not kept in the suite (it exercises nothing the other Ray tests' hand-stepped clocks do not)
@pytest.mark.parametrize("slot_clock", [True])
def test_work_per_slot_is_the_accounted_slot_whatever_the_tick_takes(ray_ex, slot_clock: bool) -> None:
    jid = f"clock-{int(slot_clock)}"
    dt_s, tick_wall_s, n = 300.0, 0.15, 6  # time_scale 1000: a 0.3 s slot and a 0.15 s tick (150 virtual s)
    tick_s = tick_wall_s * ray_ex.time_scale
    ray_ex.slot_clock = slot_clock
    try:
        ray_ex.set_workload_params(jid, {"steps": 2000})  # progress every 100 s of work
        assert ray_ex.start(Job(jid, "acme", "training", 0.0, 1, 200_000.0), POOL, 1.0, 0.0) is not None
        ray_ex.step(dt_s)  # the first slot sets the grid
        time.sleep(tick_wall_s)
        # a job started inside a slot: on the grid, it became ready that far into the slot
        slot_start_s = ray_ex.now_s
        assert ray_ex.start(Job(jid + "-late", "acme", "training", 0.0, 1, 20_000.0), POOL, 1.0, 0.0)
        late_seen = ray_ex.late_ready.get(jid + "-late")
        ray_ex.step(dt_s)
        # its start-up (seconds on a loaded machine) put the loop behind the grid: later steps catch up
        for _ in range(100):
            if not slot_clock or ray_ex._slot_end_wall >= time.monotonic():
                break
            time.sleep(tick_wall_s)
            ray_ex.step(dt_s)
        ray_ex.step(dt_s)  # the jobs' own schedules catch up too (they pace against the wall clock)
        w0 = ray_ex.running()[jid].work_done_s
        for _ in range(n):
            time.sleep(tick_wall_s)  # the loop's own work between steps
            ray_ex.step(dt_s)
        work = ray_ex.running()[jid].work_done_s - w0
        left = dict(ray_ex.late_ready)
    finally:
        ray_ex.slot_clock = False
    if slot_clock:
        assert late_seen is not None and late_seen >= slot_start_s + 0.9 * tick_s
        assert left == {}  # the grid has passed it
    else:
        assert late_seen is None and left == {}
    if slot_clock:
        assert work == pytest.approx(n * dt_s, abs=0.5 * n * tick_s)
    else:  # the old clock: every slot ran for its own length plus the tick
        assert work > n * dt_s + 0.5 * n * tick_s
