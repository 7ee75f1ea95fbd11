"""Baseline policies: EASY backfill, greedy-green, caps against the forecast, eligibility, the registry."""

from __future__ import annotations

import inspect
from datetime import UTC, datetime

import numpy as np
import pytest

from scheduler.energy import EnergySeries
from scheduler.errors import InputError
from scheduler.jobs import Job
from scheduler.models import load_site
from scheduler.policies import (
    POLICIES,
    SHARED_OPTIONS,
    FallbackPolicy,
    available_policies,
    check_policy,
    get_policy,
    make_policy,
    policy_help,
)
from scheduler.policies.base import JobState, Snapshot
from scheduler.policies.capacity import SitePower

SITE = load_site("demo")
PUB, SEC = "h100-eu-public", "h100-nl-secret"
H = 3600.0


def fc(n: int = 96, wind_w: float = 60_000.0, cap_w: float = 50_000.0, carbon: np.ndarray | None = None) -> EnergySeries:
    return EnergySeries(
        start_utc=datetime(2023, 1, 1, tzinfo=UTC),
        slot_s=900,
        wind_w=np.full(n, wind_w),
        carbon_g_per_kwh=np.full(n, 300.0) if carbon is None else carbon,
        price_eur_per_mwh=np.full(n, 50.0),
        grid_cap_w=np.full(n, cap_w),
        site_max_w=np.full(n, 50_000.0),
        source="test",
    )


def q(jid: str, gpus: int, dur: float, submit: float = 0.0, **kw) -> JobState:
    return JobState(job=Job(jid, "t", kw.pop("kind", "training"), submit, gpus, dur, **kw), state="queued")


def r(jid: str, gpus: int, dur: float, where: str, **kw) -> JobState:
    return JobState(job=Job(jid, "t", "training", 0.0, gpus, dur, **kw), state="running", pool=where)


def snap(jobs: list[JobState], forecast: EnergySeries, healthy: dict[str, int] | None = None) -> Snapshot:
    return Snapshot(0.0, 0, SITE, tuple(jobs), healthy or {PUB: 16, SEC: 16}, forecast)


def test_backfill_easy_reservation() -> None:
    # the public pool is full of a 2-hour job; the secret pool is off-limits for these jobs
    sel = "jurisdiction=eu"
    jobs = [
        r("run", 16, 2 * H, PUB, pool=sel),
        q("head", 8, H, 1.0, pool=sel),  # must wait for "run": reservation at 2 h
        q("short", 8, H, 2.0, pool="jurisdiction=nl"),  # other pool: starts
        q("after", 8, H, 3.0, pool=sel),  # cannot start now either
    ]
    d = get_policy("backfill").decide(snap(jobs, fc()))
    assert set(d.run) == {"run", "short"}
    # with the public pool half free, FIFO head starts; a later job that would delay nothing backfills
    jobs = [r("run", 8, 2 * H, PUB, pool=sel), q("head", 16, H, 1.0, pool=sel), q("fill", 8, H, 2.0, pool=sel),
            q("long", 8, 5 * H, 3.0, pool=sel)]
    d = get_policy("backfill").decide(snap(jobs, fc()))
    # head (16) must wait for "run" (2 h); "fill" (1 h) ends before that and backfills; "long" would delay head
    assert set(d.run) == {"run", "fill"}


def test_backfill_respects_the_forecast_cap_and_runs_full_power() -> None:
    power = SitePower(SITE)
    base = power.base_w(np.array([16.0, 16.0]))
    cap = base + 4.5 * power.gpu_w(0, 1.0)  # room for 4 GPUs at full power, no wind
    jobs = [q("a", 4, H), q("b", 4, H, 1.0), q("c", 1, H, 2.0)]
    d = get_policy("backfill").decide(snap(jobs, fc(wind_w=0.0, cap_w=cap)))
    assert set(d.run) == {"a"}
    assert all(a.power_fraction == 1.0 for a in d.run.values())
    # running work above the forecast budget is shed, lowest priority first; inference stays
    jobs = [r("lo", 8, H, PUB, priority=0), r("hi", 8, H, SEC, priority=2),
            JobState(Job("inf", "t", "inference", 0.0, 4, 900.0, preemptible=False), "running", pool=PUB)]
    d = get_policy("backfill").decide(snap(jobs, fc(wind_w=0.0, cap_w=base + 12.5 * power.gpu_w(0, 1.0))))
    assert set(d.run) == {"hi", "inf"}


def test_inference_runs_now_and_displaces_preemptible_training() -> None:
    jobs = [r("t1", 16, 10 * H, PUB), r("t2", 8, 10 * H, SEC, priority=1),
            q("inf", 4, 900.0, kind="inference", preemptible=False)]
    healthy = {PUB: 16, SEC: 8}
    for name in available_policies():  # every policy (round 24: the two baselines only, by hand)
        d = get_policy(name).decide(snap(jobs, fc(), healthy))
        assert "inf" in d.run
        # the lowest-priority training in the pool made room
        assert "t1" not in d.run and "t2" in d.run


def test_greedy_green_waits_for_the_green_window_unless_the_deadline_says_now() -> None:
    carbon = np.full(96, 500.0)
    carbon[8:16] = 50.0  # 2-4 h from now the grid is clean
    f = fc(wind_w=0.0, carbon=carbon)
    d = get_policy("greedy-green").decide(snap([q("a", 4, 2 * H)], f))
    assert d.run == {}
    # 30 min of slack: waiting 2 slots still meets the deadline and catches 2 green slots
    d = get_policy("greedy-green").decide(snap([q("a", 4, 2 * H, deadline_s=2.5 * H)], f))
    assert d.run == {}
    # less than a slot of slack: now
    d = get_policy("greedy-green").decide(snap([q("a", 4, 2 * H, deadline_s=2 * H + 600)], f))
    assert set(d.run) == {"a"}
    # green now: starts now
    d = get_policy("greedy-green").decide(snap([q("a", 4, 2 * H)], fc(wind_w=0.0, carbon=carbon[::-1].copy() * 0 + 50)))
    assert set(d.run) == {"a"}


def test_greedy_green_respects_cap_and_eligibility() -> None:
    power = SitePower(SITE)
    base = power.base_w(np.array([16.0, 16.0]))
    f = fc(wind_w=0.0, cap_w=base + 2.5 * power.gpu_w(0, 1.0))
    d = get_policy("greedy-green").decide(snap([q("big", 4, H, deadline_s=H), q("ok", 2, H, 1.0)], f))
    assert "big" not in d.run  # 4 GPUs never fit the cap
    assert d.run["ok"].pool in (PUB, SEC)
    d = get_policy("greedy-green").decide(snap([q("s", 2, H, pool="clearance=secret")], fc()))
    assert d.run["s"].pool == SEC


def test_registry() -> None:
    assert {"backfill", "greedy-green"} <= set(available_policies())
    assert get_policy("greedy-green", horizon_hours=6).horizon_hours == 6
    with pytest.raises(InputError, match="unknown policy"):
        get_policy("fifo")
    assert available_policies() == list(POLICIES)  # every registered module is in this build
    with pytest.raises(InputError, match=r"--policy: unknown policy 'fifo'; allowed: windward, backfill, "):
        check_policy("fifo", "--policy")


#: the constructor parameter behind each shared option of make_policy
_PARAM = {"horizon_hours": "horizon_hours", "plan_kwargs": "plan_kwargs", "run_end_s": "run_end_s",
          "deferral": "deferral"}


@pytest.mark.parametrize("name", available_policies())
def test_each_policy_takes_the_shared_options_its_entry_says(name: str) -> None:
    """The registry's ``takes`` against the constructor: a policy is handed a shared option exactly when it
    has the parameter (``cics`` has no ``horizon_hours``: make_policy crashed on it while the entry could not
    say so)."""
    from scheduler.policies import _load

    params = inspect.signature(_load(name).__init__).parameters
    assert set(_PARAM) == set(SHARED_OPTIONS)
    for opt in SHARED_OPTIONS:
        assert (opt in POLICIES[name].takes) == (_PARAM[opt] in params), (name, opt, list(params))


@pytest.mark.parametrize("name", available_policies())
def test_make_policy_builds_every_registered_policy(name: str) -> None:
    """make_policy as simulate, server and demo call it (every shared option given), alone and with the
    demo's fallback: the policy asked for, not a fallback, and it decides on a snapshot."""
    kw = dict(plan_kwargs={"backend": "numpy", "device": "cpu"}, defer_history_days=2.0, beyond_age_h=12.0,
              max_defer_h=30.0)
    pol = make_policy(name, 6.0, **kw)
    assert pol.name == name
    if "horizon_hours" in POLICIES[name].takes:
        assert pol.horizon_hours == 6.0
    wrapped = make_policy(name, 6.0, run_end_s=4 * 3600.0, fallback=True, **kw)
    if name != "backfill":
        assert isinstance(wrapped, FallbackPolicy) and wrapped.primary.name == name and wrapped.failed is None
    d = wrapped.decide(snap([q("a", 2, H, deadline_s=H + 60.0)], fc()))
    assert set(d.run) == {"a"}
    assert wrapped.name == name  # it did not fall back


def test_policy_help_names_every_policy_once() -> None:
    text = policy_help()
    for name, spec in POLICIES.items():
        assert f"{name} ({spec.summary})" in text


def test_the_readme_commands_table_names_every_registered_policy() -> None:
    """README's `windward simulate` row lists the policies a user can pick: every registered one (it listed
    three of five while `threshold` and `cics` were registered)."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    row = next(line for line in readme.splitlines() if line.startswith("| `windward simulate` |"))
    assert [name for name in POLICIES if f"`{name}`" not in row] == [], row
