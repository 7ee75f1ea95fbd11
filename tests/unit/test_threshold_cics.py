"""The threshold (Let's-Wait-Awhile-style) and CICS-style baselines: waiting for clean slots within slack,
starting when slack is gone, the virtual capacity curve, caps, and replays through the real control loop."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from scheduler.control import run_simulation
from scheduler.energy import EnergySeries
from scheduler.jobs import Job
from scheduler.models import load_site
from scheduler.policies import available_policies, get_policy
from scheduler.policies.base import JobState, Snapshot
from scheduler.policies.capacity import SitePower
from scheduler.policies.cics import virtual_capacity_curve
from scheduler.report import summary

SITE = load_site("demo")
PUB, SEC = "h100-eu-public", "h100-nl-secret"
H = 3600.0
N = 96  # 24 h of 15-minute slots


def fc(carbon: np.ndarray, wind_w: float = 0.0, cap_w: float = 1e9) -> EnergySeries:
    n = carbon.size
    return EnergySeries(
        start_utc=datetime(2023, 1, 1, tzinfo=UTC), slot_s=900, wind_w=np.full(n, wind_w),
        carbon_g_per_kwh=carbon, price_eur_per_mwh=np.full(n, 50.0), grid_cap_w=np.full(n, cap_w),
        site_max_w=np.full(n, 1e9), source="test",
    )


def dirty_now(n: int = N, clean_from: int = 8) -> np.ndarray:
    c = np.full(n, 500.0)
    c[clean_from:] = 50.0
    return c


def q(jid: str, gpus: int, dur: float, deadline: float | None = None, kind: str = "training", **kw) -> JobState:
    return JobState(job=Job(jid, "t", kind, 0.0, gpus, dur, deadline_s=deadline, **kw), state="queued")


#: the two carbon-threshold policies this file is about (a subset of the registry on purpose; every policy meets
#: the loop's rules in tests/unit/test_rules.py and tests/unit/test_infeasible_future_slots.py)
THIS_FILES_POLICIES = ("threshold", "cics")


def snap(jobs: list[JobState], forecast: EnergySeries) -> Snapshot:
    return Snapshot(0.0, 0, SITE, tuple(jobs), {PUB: 16, SEC: 16}, forecast)


@pytest.mark.parametrize("name", THIS_FILES_POLICIES)
def test_waits_for_clean_slots_within_slack_and_starts_when_it_is_gone(name: str) -> None:
    pol = get_policy(name)
    # dirty for 2 h, clean after: a 1-h job due in 12 h waits; one due in 1 h starts now; inference starts
    jobs = [q("flex", 4, H, deadline=12 * H), q("due", 4, H, deadline=H + 60.0),
            q("inf", 2, 900.0, kind="inference", preemptible=False)]
    d = pol.decide(snap(jobs, fc(dirty_now())))
    assert "flex" not in d.run
    assert {"due", "inf"} <= set(d.run)
    # clean now: the flexible job starts too
    d = get_policy(name).decide(snap(jobs, fc(np.full(N, 50.0))))
    assert {"flex", "due", "inf"} <= set(d.run)


@pytest.mark.parametrize("name", THIS_FILES_POLICIES)
def test_no_start_beyond_the_forecast_power_budget(name: str) -> None:
    power = SitePower(SITE)
    base = power.base_w(np.array([16.0, 16.0]))
    cap = base + 4.5 * power.gpu_w(0, 1.0)  # room for 4 GPUs at full power, no wind
    jobs = [q("a", 4, H, deadline=H + 60), q("b", 4, H, deadline=H + 60), q("c", 2, H, deadline=H + 60)]
    d = get_policy(name).decide(snap(jobs, fc(np.full(N, 50.0), cap_w=cap)))
    assert sum(js.job.gpus for js in jobs if js.job.job_id in d.run) <= 4
    assert d.run  # and something that fits does start


def test_threshold_interrupts_a_preemptible_job_with_slack_only() -> None:
    pol = get_policy("threshold")
    run = [
        JobState(Job("p", "t", "training", 0.0, 4, 4 * H, deadline_s=20 * H), "running", pool=PUB),
        JobState(Job("np", "t", "training", 0.0, 4, 4 * H, deadline_s=20 * H, preemptible=False), "running", pool=PUB),
        JobState(Job("tight", "t", "training", 0.0, 4, 4 * H, deadline_s=4 * H + 300), "running", pool=PUB),
        # work since the last checkpoint above max_loss_s: pausing would lose it, so it keeps running
        JobState(Job("lossy", "t", "training", 0.0, 4, 4 * H, deadline_s=20 * H), "running", pool=SEC,
                 work_done_s=3600.0, checkpoint_work_s=0.0),
    ]
    d = pol.decide(snap(run, fc(dirty_now())))
    assert set(d.run) == {"np", "tight", "lossy"}
    d = get_policy("threshold", interrupt=False).decide(snap(run, fc(dirty_now())))
    assert set(d.run) == {"p", "np", "tight", "lossy"}


@pytest.mark.parametrize("seed", range(20))
def test_virtual_capacity_curve_fills_cleanest_first(seed: int) -> None:
    rng = np.random.default_rng(seed)
    t = int(rng.integers(1, 60))
    free = rng.integers(0, 20, t).astype(float)
    cost = rng.uniform(0, 10, t)
    demand = float(rng.uniform(0, 1.2) * free.sum())
    v = virtual_capacity_curve(free, cost, demand)
    assert (v >= -1e-9).all() and (v <= free + 1e-9).all()
    assert v.sum() == pytest.approx(min(demand, free.sum()), abs=1e-6)
    # cleanest first: a slot is used only when every strictly cleaner slot is full
    for i in np.flatnonzero(v > 1e-9):
        cleaner = cost < cost[i]
        assert np.allclose(v[cleaner], free[cleaner])
    with pytest.raises(ValueError, match="shape"):
        virtual_capacity_curve(free, cost[:-1] if t > 1 else np.zeros(2), demand)


def test_bad_parameters_are_named() -> None:
    with pytest.raises(ValueError, match="quantile=1.5"):
        get_policy("threshold", quantile=1.5)
    with pytest.raises(ValueError, match="day_hours"):
        get_policy("cics", day_hours=0)
    assert set(THIS_FILES_POLICIES) <= set(available_policies())


def _energy(n: int, seed: int) -> EnergySeries:
    rng = np.random.default_rng(seed)
    return EnergySeries(
        start_utc=datetime(2023, 3, 1, tzinfo=UTC), slot_s=900,
        wind_w=np.clip(30_000 * (0.5 + 0.6 * np.sin(np.arange(n) / 10.0 + seed)), 0, None),
        carbon_g_per_kwh=rng.uniform(100, 500, n), price_eur_per_mwh=np.full(n, 50.0),
        grid_cap_w=np.full(n, 30_000.0), site_max_w=np.full(n, 50_000.0), source="test",
    )


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("name", THIS_FILES_POLICIES)
def test_replay_accounts_for_every_job_and_keeps_caps(seed: int, name: str) -> None:
    rng = np.random.default_rng(seed)
    jobs = [Job(f"j{i}", "t", "training", float(rng.uniform(0, 6 * H)), int(rng.choice([1, 2, 4, 8])),
                float(rng.uniform(0.5, 3) * H), deadline_s=float(rng.uniform(10, 20) * H)) for i in range(14)]
    res = run_simulation(SITE, jobs, _energy(N + 16, seed), get_policy(name), n_slots=N, horizon_slots=32)
    s = summary(res)
    assert s["cap_violations"] == 0
    assert s["jobs_total"] == len(jobs)
    assert sum(s["jobs_by_state"].values()) == len(jobs)
    assert s["deadline_misses"] == 0
    assert s["carbon_over_bound"] is not None and s["carbon_over_bound"] >= 1 - 1e-6
