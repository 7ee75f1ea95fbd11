"""A workload's pacing keeps to an absolute schedule from the moment it is ready: the work it paces is due
at ready + work / (time_scale x speed) whatever the job does between paces (compute, progress writes,
checkpoints, a late wake-up). Relative sleeps added every overhead to the job's run time, so under load a
Ray job did less work than the slots it was charged for. A fake clock and sleep, seeded families."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from scheduler.workloads.runtime import JobConfig, JobContext


class FakeTime:
    def __init__(self, oversleep_s: float = 0.0) -> None:
        self.now = 100.0
        self.oversleep_s = oversleep_s  # every sleep wakes this late (a loaded machine)

    def clock(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.now += s + self.oversleep_s


@pytest.mark.parametrize("seed", range(8))
def test_overheads_between_paces_do_not_add_up(tmp_path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    ts = float(rng.choice([1.0, 60.0, 900.0]))
    t = FakeTime(oversleep_s=float(rng.uniform(0.0, 0.02)))
    cfg = JobConfig(job_id=f"p{seed}", kind="training", duration_s=1e6, job_dir=str(tmp_path / f"p{seed}"),
                    time_scale=ts)  # fmt: skip
    ctx = JobContext(cfg, sleep=t.sleep, clock=t.clock)
    ctx.report(0.0, 0)  # ready: the schedule starts here
    t0 = t.now
    steps = rng.uniform(0.05, 2.0, size=40) * ts  # work per step, in full-speed seconds
    overhead = rng.uniform(0.0, 0.5, size=40) * steps / ts  # wall time the job spends outside pace
    for w, o in zip(steps, overhead):
        t.now += o
        ctx.pace(float(w))
    due = t0 + steps.sum() / ts
    # on schedule: never early, late by at most one sleep's oversleep (not by the sum of the overheads)
    assert due - 1e-9 <= t.now <= due + t.oversleep_s + 1e-9
    assert overhead.sum() > 2 * t.oversleep_s  # the relative schedule would have been this much late


def test_a_job_that_fell_behind_catches_up_without_sleeping(tmp_path: Path) -> None:
    t = FakeTime()
    cfg = JobConfig(job_id="late", kind="inference", duration_s=1e6, job_dir=str(tmp_path / "late"), time_scale=10.0)
    ctx = JobContext(cfg, sleep=t.sleep, clock=t.clock)
    ctx.report(0.0, 0)
    t.now += 5.0  # stalled for 50 virtual seconds
    slept = []
    ctx._sleep = lambda s: (slept.append(s), t.sleep(s))  # type: ignore[method-assign]
    for _ in range(4):
        ctx.wait_virtual(10.0)  # 1 s of wall each: 4 s due, 5 s already passed
    assert slept == []
    ctx.wait_virtual(20.0)  # due at +6 s: one more second to wait
    assert sum(slept) == pytest.approx(1.0)


def test_a_job_on_the_published_clock_works_only_while_it_runs(tmp_path: Path) -> None:
    """With ``clock_path`` (the Ray executor's slot clock) the job paces on the published virtual time, which
    stands still at the end of the slot stepped: a job cannot work through the loop's tick, however long."""
    from scheduler.workloads.runtime import PublishedClock, publish_clock

    t = FakeTime()
    path = tmp_path / "clock.json"
    publish_clock(path, 0.0, 0.0, 800.0, wall=t.now)  # standing still at 0 (before the first slot)
    cfg = JobConfig(job_id="pc", kind="training", duration_s=1e6, job_dir=str(tmp_path / "pc"), time_scale=800.0,
                    clock_path=str(path))  # fmt: skip
    ctx = JobContext(cfg, sleep=t.sleep)
    assert isinstance(ctx._clock, PublishedClock)
    ctx._clock._wall = t.clock  # type: ignore[attr-defined]
    ctx.report(0.0, 0)
    done = 0.0
    stop_after = [0]

    def sleep(s: float) -> None:  # the tick: 20 wall seconds (20 slots at 800x) with the clock standing still
        t.sleep(s)
        stop_after[0] += 1
        if stop_after[0] > 400:
            ctx.request_stop()

    ctx._sleep = sleep  # type: ignore[method-assign]
    publish_clock(path, 0.0, 800.0, 1600.0, wall=t.now)  # one slot of 800 s, run in half a second of wall
    while not ctx.should_stop():
        ctx.pace(100.0)
        if not ctx.should_stop():
            done += 100.0
    assert done == 800.0  # the slot's work, not the 20 s (16,000 virtual s) the loop took around it
    assert t.now > 100.0 + 19.0  # the loop took its 20 s
