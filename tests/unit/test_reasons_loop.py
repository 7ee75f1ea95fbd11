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
