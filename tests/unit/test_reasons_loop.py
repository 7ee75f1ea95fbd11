"""Why and when from the real loop (real ControlLoop, simulated executor, real policies and optimiser): the
reasons come from what held each job in the tick, the planned start from the windward policy's plan."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from scheduler.control import ControlLoop
from scheduler.energy import EnergySeries
from scheduler.executors.simulated import SimulatedExecutor, VirtualClock
from scheduler.jobs import Job
from scheduler.models import load_site
from scheduler.policies import get_policy
from scheduler.policies.base import TenantInfo
from scheduler.reasons import HoldReason

SITE = load_site("demo")
PUB = "h100-eu-public"


def series(n: int, calm_slots: int, seed: int) -> EnergySeries:
    """No wind and dirty grid power for ``calm_slots`` slots, then strong wind and clean power."""
    rng = np.random.default_rng(seed)
    wind = np.where(np.arange(n) < calm_slots, 0.0, 60_000.0)
    carbon = np.where(np.arange(n) < calm_slots, 600.0, 50.0) + rng.uniform(0, 5, n)
    return EnergySeries(start_utc=datetime(2023, 1, 1, tzinfo=UTC), slot_s=900, wind_w=wind, carbon_g_per_kwh=carbon,
                        price_eur_per_mwh=np.full(n, 50.0), grid_cap_w=np.full(n, 25_000.0),
                        site_max_w=np.full(n, 50_000.0), source="test")  # fmt: skip


def tick(loop: ControlLoop, e: EnergySeries, horizon: int) -> object:
    s = loop.slot
    return loop.tick(e.window(s, 1), e.window(s, horizon))


@pytest.mark.parametrize("seed", range(3))
def test_windward_defers_for_wind_and_says_when(seed: int) -> None:
    calm = 4 + seed
    e = series(48, calm, seed)
    clock = VirtualClock()
    job = Job("flex", "t", "batch", 0.0, 4, 3600.0, deadline_s=40 * 900.0)
    loop = ControlLoop(SITE, SimulatedExecutor(SITE, clock), get_policy("windward", horizon_hours=8.0), clock,
                       jobs=[job])  # fmt: skip
    rep = tick(loop, e, 32)
    assert "flex" not in rep.starts  # type: ignore[attr-defined]
    ex, queued = loop.explainer(rep)  # type: ignore[arg-type]
    w = ex.why(queued["flex"])
    assert w.reason is HoldReason.DEFERRED_FOR_WIND, w
    assert w.planned is not None and w.planned.start_slot >= calm and w.planned.pool in {p.name for p in SITE.pools}
    # the plan keeps its word: the job starts in the slot it was planned for (perfect forecast)
    for _ in range(w.planned.start_slot):
        rep = tick(loop, e, 32)
    assert "flex" in rep.starts  # type: ignore[attr-defined]


def test_quota_with_a_quota_aware_planner_and_with_a_baseline() -> None:
    e = series(48, 0, 0)
    for name in ("windward", "backfill"):
        clock = VirtualClock()
        jobs = [Job(f"q{i}", "t", "batch", 0.0, 8, 7200.0) for i in range(2)]
        loop = ControlLoop(SITE, SimulatedExecutor(SITE, clock), get_policy(name, horizon_hours=4.0) if name ==
                           "windward" else get_policy(name), clock, jobs=jobs,
                           tenant_info={"t": TenantInfo(quota_gpus=8)})  # fmt: skip
        rep = tick(loop, e, 16)
        ex, queued = loop.explainer(rep)  # type: ignore[arg-type]
        assert len(rep.starts) == 1 and len(queued) == 1, name  # type: ignore[attr-defined]
        (waiting,) = queued.values()
        assert ex.why(waiting).reason is HoldReason.QUOTA, name


class Journal:
    """Records what the loop journals (the server's is the SQLite store)."""

    def __init__(self) -> None:
        self.outcomes: list[object] = []

    def intend(self, intents: list[object]) -> list[int]:
        return list(range(len(intents)))

    def record(self, outcomes: list[object]) -> list[str]:
        self.outcomes += outcomes
        return []


@pytest.mark.parametrize("slack_slots", [0, 1, 3])
def test_a_hard_deadline_fails_the_job_once_it_cannot_be_met_and_a_soft_one_waits(slack_slots: int) -> None:
    """Tenant quota 8 and an 8-GPU job running: the queued hard-deadline job fails, naming why, in the first
    tick after which its work no longer fits before its deadline; its soft twin stays queued; a hard job that
    is late from the start fails at once; the running job is never stopped."""
    e = series(48, 0, 0)
    clock = VirtualClock()
    dur = 2 * 900.0
    deadline = dur + slack_slots * 900.0
    jobs = [Job("blocker", "t", "batch", 0.0, 8, 40 * 900.0, deadline_s=1.0, deadline_hard=False),
            Job("hard", "t", "batch", 1.0, 8, dur, deadline_s=deadline, deadline_hard=True),
            Job("soft", "t", "batch", 1.0, 8, dur, deadline_s=deadline),
            Job("late", "t", "batch", 1.0, 8, dur, deadline_s=dur / 2, deadline_hard=True)]  # fmt: skip
    journal = Journal()
    loop = ControlLoop(SITE, SimulatedExecutor(SITE, clock), get_policy("backfill"), clock, jobs=jobs,
                       tenant_info={"t": TenantInfo(quota_gpus=8)}, journal=journal)  # fmt: skip
    tick(loop, e, 8)  # the blocker starts; the others are released at the next tick
    states = []
    for _ in range(slack_slots + 3):
        tick(loop, e, 8)
        states.append((loop.records["hard"].state, loop.records["late"].state))
    assert loop.records["blocker"].state == "running" and loop.records["soft"].state == "queued"
    assert states[0][1] == "failed"  # late from the start
    first_failed = [h for h, _ in states].index("failed")
    # released at t=900 with dur + slack slots to go: fits while now + dur <= deadline
    assert first_failed == slack_slots, states
    details = {o.job_id: o.detail for o in journal.outcomes if getattr(o, "final_state", None) == "failed"}  # type: ignore[attr-defined]
    assert set(details) == {"hard", "late"} and all("deadline_policy hard: cannot finish" in d for d in details.values())


def test_a_running_hard_deadline_job_is_never_stopped_for_it() -> None:
    """deadline_policy hard refuses starts that cannot finish; what already runs (here: adopted at a restart,
    already past its deadline) runs on."""
    from scheduler.policies.base import Assignment

    e = series(48, 0, 0)
    clock = VirtualClock()
    ex = SimulatedExecutor(SITE, clock)
    r = Job("r", "t", "batch", 0.0, 4, 20 * 900.0, deadline_s=1.0, deadline_hard=True)
    placed = ex.start(r, PUB, 1.0, 0.0)  # it ran before the restart
    assert placed is not None
    loop = ControlLoop(SITE, ex, get_policy("backfill"), clock)
    loop.adopt(r, running=Assignment(PUB, 1.0), nodes=tuple(placed.nodes))
    loop.adopt(Job("q", "t", "batch", 0.0, 4, 20 * 900.0, deadline_s=1.0, deadline_hard=True))
    tick(loop, e, 8)
    assert loop.records["r"].state == "running" and loop.records["q"].state == "failed"
