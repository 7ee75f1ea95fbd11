"""report.summary and report.build_report without the clairvoyant bound (benchmarks/simulator.py's and
tests/integration/test_replay_itp.py's calls): the same figures, minus the three keys of the LP bound, and no
LP solved."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import pytest

import scheduler.clairvoyant
from benchmarks.policies import summarise
from scheduler.control import run_simulation
from scheduler.energy import EnergySeries
from scheduler.jobs import Job
from scheduler.models import load_site
from scheduler.policies import get_policy
from scheduler.report import build_report, summary

BOUND_KEYS = {"carbon_over_bound", "work_carbon_over_bound", "clairvoyant"}


@pytest.mark.parametrize("seed", range(3))
def test_summary_without_the_bound_is_the_summary_minus_its_keys(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    site = load_site("demo")
    rng = np.random.default_rng(seed)
    n = 16
    energy = EnergySeries(
        start_utc=datetime(2023, 3, 1, tzinfo=UTC), slot_s=site.slot_s, wind_w=rng.uniform(5e3, 3e4, n),
        carbon_g_per_kwh=rng.uniform(150, 450, n), price_eur_per_mwh=np.full(n, 80.0),
        grid_cap_w=np.full(n, 25_000.0), site_max_w=np.full(n, site.site_max_mw * 1e6), source="seeded test series",
    )  # fmt: skip
    jobs = [Job(f"t{k}", "science", "training", float(rng.uniform(0, 3600)), int(rng.choice([2, 4, 8])),
                float(rng.uniform(1800, 7200)), checkpoint_interval_s=900.0) for k in range(5)]  # fmt: skip
    res = run_simulation(site, jobs, energy, get_policy("backfill"), horizon_slots=8)

    def _no_lp(*_a: object, **_k: object) -> None:
        raise AssertionError("clairvoyant=False solved the LP bound")

    with monkeypatch.context() as m:
        m.setattr(scheduler.clairvoyant, "bound_of_run", _no_lp)
        lean = summary(res, clairvoyant=False)
        lean_report = build_report(res, workload_description="seeded", clairvoyant=False)
        lean_row = summarise("backfill", res, jobs, bound=False)
    full = summary(res)
    assert BOUND_KEYS <= set(full) and not BOUND_KEYS & set(lean)
    assert {k: v for k, v in full.items() if k not in BOUND_KEYS} == lean
    # the report without the bound (tests/integration/test_replay_itp.py's call): the full report, its summary
    # minus the same three keys
    full_report = build_report(res, workload_description="seeded")
    assert lean_report["summary"] == lean and full_report["summary"] == full
    assert {k: v for k, v in full_report.items() if k != "summary"} == {k: v for k, v in lean_report.items()
                                                                         if k != "summary"}
    # benchmarks.policies' row without the bound (tests/integration/test_policy_comparison.py's call): the same
    # row with its three bound fields None
    full_row = summarise("backfill", res, jobs)
    assert full_row.bound_kg is not None and full_row.carbon_over_bound is not None
    assert replace(full_row, carbon_over_bound=None, work_carbon_over_bound=None, bound_kg=None) == lean_row


def test_deadline_misses_count_against_the_stated_deadline_and_say_which_were_unreachable() -> None:
    """The simulation report counts misses by scheduler.lateness (the rule windward plan's late jobs use): a job
    due 1 h after submission with 2 h of work misses and could not have met it; one due in 3 h with 1 h of
    work meets it; of two that each need a whole pool for 2 h, due at 2 h, one misses (it could have met it)."""
    site = load_site("demo")
    n = 16
    energy = EnergySeries(
        start_utc=datetime(2023, 3, 1, tzinfo=UTC), slot_s=site.slot_s, wind_w=np.full(n, 3e4),
        carbon_g_per_kwh=np.full(n, 300.0), price_eur_per_mwh=np.full(n, 80.0),
        grid_cap_w=np.full(n, 25_000.0), site_max_w=np.full(n, site.site_max_mw * 1e6), source="flat test series",
    )  # fmt: skip
    jobs = [Job("unreachable", "science", "training", 0.0, 8, 7200.0, deadline_s=3600.0, checkpoint_interval_s=900.0),
            Job("met", "science", "training", 0.0, 4, 3600.0, deadline_s=10800.0, checkpoint_interval_s=900.0),
            *(Job(k, "science", "training", 0.0, 16, 7200.0, deadline_s=7200.0, pool="h100-nl-secret",
                  preemptible=False) for k in ("x", "y"))]
    res = run_simulation(site, jobs, energy, get_policy("backfill"), horizon_slots=8)
    s = summary(res, clairvoyant=False)
    recs = res.loop.records
    assert recs["met"].state == "finished" and recs["met"].end_s <= 10800.0
    assert s["deadline_misses"] == 2 and s["deadline_misses_unreachable"] == 1
