"""report.summary without the clairvoyant bound (benchmarks/simulator.py's call): the same figures, minus the
three keys of the LP bound, and no LP solved."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

import scheduler.clairvoyant
from scheduler.control import run_simulation
from scheduler.energy import EnergySeries
from scheduler.jobs import Job
from scheduler.models import load_site
from scheduler.policies import get_policy
from scheduler.report import summary

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
    full = summary(res)
    assert BOUND_KEYS <= set(full) and not BOUND_KEYS & set(lean)
    assert {k: v for k, v in full.items() if k not in BOUND_KEYS} == lean
