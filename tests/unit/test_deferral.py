"""scheduler.deferral: the price of work left past the horizon, from the observed past only.

The history is what the policy saw (slot 0 of each tick's forecast, and a seed of the signals before the run):
changing anything after the current slot leaves it and the price unchanged, changing the past moves them. A
clean past lowers the price of work that may wait past the horizon, a dirty one raises it; too short a past
keeps the horizon's own price. Deadlines: seeded runs where the past is windy (deferral tempting) and the
slack is short miss no more deadlines than backfill and finish the same work.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import pytest

from scheduler.control import run_simulation
from scheduler.deferral import TrailingSignals
from scheduler.energy import EnergySeries
from scheduler.errors import InputError
from scheduler.jobs import Job
from scheduler.models import load_site
from scheduler.planner import WeightSettings, build_problem, slot_work_capacity
from scheduler.policies import get_policy
from scheduler.policies.base import JobState, Snapshot
from scheduler.policies.windward import DEFAULT_WEIGHTS, WindwardPolicy

SITE = load_site("demo")
SLOT_S = int(SITE.slot_s)
H = 3600.0


def series(n: int, seed: int, *, wind_w: float = 20_000.0, carbon: tuple[float, float] = (200.0, 500.0)
           ) -> EnergySeries:
    rng = np.random.default_rng(seed)
    return EnergySeries(
        start_utc=datetime(2023, 3, 1, tzinfo=UTC), slot_s=SLOT_S,
        wind_w=np.clip(wind_w * (0.5 + 0.5 * np.sin(np.arange(n) / 7.0 + rng.uniform(0, 6))), 0, None),
        carbon_g_per_kwh=rng.uniform(*carbon, n), price_eur_per_mwh=np.full(n, 50.0),
        grid_cap_w=np.full(n, 40_000.0), site_max_w=np.full(n, 50_000.0), source="test",
    )  # fmt: skip


def observed(e: EnergySeries, upto: int, T: int, history_days: float = 1.0) -> TrailingSignals:
    """A history that saw ticks 0..upto of ``e`` through forecast windows of T slots (each showing T-1 slots of
    what was then the future)."""
    tr = TrailingSignals(history_days=history_days, min_history_h=0.0)
    for s in range(upto + 1):
        tr.observe(s, e.window(s, T))
    return tr


def snapshot(forecast: EnergySeries, n_jobs: int = 12, seed: int = 0, dur_h: tuple[float, float] = (0.25, 1.0)
             ) -> Snapshot:
    rng = np.random.default_rng(seed)
    jobs = tuple(JobState(Job(f"j{i}", "t", "training", 0.0, int(rng.choice([1, 2, 4])), float(rng.uniform(*dur_h)) * H),
                          "queued") for i in range(n_jobs))
    return Snapshot(now_s=0.0, slot=0, site=SITE, jobs=jobs, healthy_gpus={}, forecast=forecast)


def beyond_value(snap: Snapshot, T: int, tr: TrailingSignals | None) -> float:
    w = WeightSettings(terminal_value="clearing", beyond_horizons=1.0, beyond_share=0.5)
    _, index = build_problem(snap, T, weights=w, expected_arrival_gpu_s_per_s=0.5,
                             beyond_price=None if tr is None else tr.beyond_price)
    return float(index.terminal["beyond_value_g_per_gpu_s"])


@pytest.mark.parametrize("seed", range(5))
def test_the_history_and_the_price_use_only_the_past(seed: int) -> None:
    T, now = 16, 40
    a = series(now + 3 * T, seed)
    b = series(now + 3 * T, seed)
    rng = np.random.default_rng(100 + seed)
    # b's future (every slot after the current one) differs from a's
    b.wind_w[now + 1:] = rng.uniform(0, 40_000.0, b.n_slots - now - 1)
    b.carbon_g_per_kwh[now + 1:] = rng.uniform(20.0, 900.0, b.n_slots - now - 1)
    ta, tb = observed(a, now, T), observed(b, now, T)
    np.testing.assert_array_equal(ta.history(), tb.history())
    snap = snapshot(a.window(now, T), seed=seed)  # the same horizon forecast for both: only the history differs
    assert beyond_value(snap, T, ta) == beyond_value(snap, T, tb)
    # ... while a different past moves the price (the comparison above can fail)
    c = series(now + 3 * T, seed)
    c.carbon_g_per_kwh[:now] *= 3.0
    assert beyond_value(snap, T, observed(c, now, T)) > beyond_value(snap, T, ta)


def test_the_history_keeps_the_last_days_and_one_sample_a_slot() -> None:
    e = series(200, 0)
    tr = TrailingSignals(history_days=24 * SLOT_S / 86400.0)  # 24 slots
    tr.seed(series(30, 1))  # slots -30..-1
    assert tr.n_slots == 24 and tr.history()[1, -1] == series(30, 1).carbon_g_per_kwh[-1]
    for s in range(10):
        tr.observe(s, e.window(s, 8))
        tr.observe(s, e.window(s, 8))  # a tick re-run in the same slot keeps one sample
    h = tr.history()
    assert h.shape == (4, 24)
    np.testing.assert_array_equal(h[1, -10:], e.carbon_g_per_kwh[:10])
    np.testing.assert_array_equal(h[1, :14], series(30, 1).carbon_g_per_kwh[-14:])
    with pytest.raises(InputError, match="history_days"):
        TrailingSignals(history_days=0.0)
    with pytest.raises(InputError, match="slot_s"):
        tr.observe(11, EnergySeries(e.start_utc, SLOT_S * 2, e.wind_w, e.carbon_g_per_kwh, e.price_eur_per_mwh,
                                    e.grid_cap_w, e.site_max_w, "x"))


@pytest.mark.parametrize("seed", range(4))
def test_a_clean_past_lowers_the_price_past_the_horizon_and_a_dirty_one_raises_it(seed: int) -> None:
    T = 16
    fc = series(T, seed, wind_w=5_000.0)  # a calm, dirty horizon
    snap = snapshot(fc, n_jobs=30, seed=seed)
    own = beyond_value(snap, T, None)
    windy = TrailingSignals(history_days=1.0, min_history_h=0.0)
    windy.seed(series(96, seed + 10, wind_w=200_000.0, carbon=(50.0, 100.0)))
    dirty = TrailingSignals(history_days=1.0, min_history_h=0.0)
    dirty.seed(series(96, seed + 20, wind_w=0.0, carbon=(600.0, 900.0)))
    assert beyond_value(snap, T, windy) < own < beyond_value(snap, T, dirty)


def test_too_short_a_history_keeps_the_horizons_own_price() -> None:
    T = 16
    snap = snapshot(series(T, 3), n_jobs=30)
    tr = TrailingSignals(history_days=7.0, min_history_h=24.0)
    tr.seed(series(8, 4, wind_w=200_000.0, carbon=(50.0, 100.0)))  # 2 hours: not enough
    assert tr.beyond_price is not None and not tr.enough()
    assert beyond_value(snap, T, tr) == beyond_value(snap, T, None)
    tr.seed(series(96, 4, wind_w=200_000.0, carbon=(50.0, 100.0)))  # 24 hours
    assert tr.enough() and beyond_value(snap, T, tr) != beyond_value(snap, T, None)


def tempting_case(seed: int) -> tuple[list[Job], EnergySeries, EnergySeries]:
    """Jobs whose deadlines fall just past the horizon or just past the priced span (short slack), a dirty
    calm run, and a windy clean past: deferral past the horizon is tempting and must not cost deadlines."""
    rng = np.random.default_rng(seed)
    jobs = []
    for i in range(14):
        sub = float(rng.uniform(0, 6 * H))
        dur = float(rng.uniform(1.0, 6.0) * H)
        slack = float(rng.choice([2.0, 6.0, 9.0, 14.0, 20.0])) * H  # horizon 8 h, span 16 h
        dl = sub + dur + slack if rng.random() < 0.8 else None
        jobs.append(Job(f"j{i}", "t", "training", sub, int(rng.choice([1, 2, 4, 8])), dur, deadline_s=dl))
    run = series(200, seed, wind_w=8_000.0, carbon=(300.0, 600.0))
    past = series(7 * 96, seed + 50, wind_w=120_000.0, carbon=(40.0, 120.0))
    return jobs, run, past


def replay(seed: int, history_days: float, n: int = 160, T: int = 32) -> tuple[dict[str, tuple[int, int, int]], int]:
    """(policy -> (deadlines missed, jobs finished, jobs with a deadline finished), history slots at the end)."""
    jobs, run, past = tempting_case(seed)
    tr = TrailingSignals(history_days=history_days)
    tr.seed(past)
    res = {}
    for name, pol in (("backfill", get_policy("backfill")),
                      ("defer", WindwardPolicy(T * SLOT_S / H, weights=DEFAULT_WEIGHTS, deferral=tr))):
        sim = run_simulation(SITE, jobs, run, pol, n_slots=n, horizon_slots=T)
        recs = list(sim.loop.records.values())
        done = [r for r in recs if r.state == "finished"]
        late = sum(1 for r in recs if r.job.deadline_s is not None
                   and not (r in done and r.end_s is not None and r.end_s <= r.job.deadline_s + 1e-6))
        res[name] = (late, len(done), sum(1 for r in done if r.job.deadline_s is not None))
    return res, tr.n_slots


@pytest.mark.parametrize("seed", range(4))
def test_deferral_keeps_deadlines_where_it_is_tempting_and_slack_is_short(seed: int) -> None:
    """A week of windy past before a calm, dirty run: work may wait for wind that does not come within the
    run; every job with a deadline still finishes, with no more misses than backfill."""
    res, seen = replay(seed, history_days=7.0)
    assert seen == 7 * 96  # the policy's own ticks were recorded, the oldest seeded slots dropped
    assert res["defer"][0] <= res["backfill"][0]
    assert res["defer"][2] == res["backfill"][2] == sum(1 for j in tempting_case(seed)[0] if j.deadline_s)


@pytest.mark.parametrize("seed", range(2))
def test_a_windy_past_that_does_not_come_back_rolls_out_and_the_work_is_done(seed: int) -> None:
    """With a day of history the windy past leaves the window within the run, the price rises to the calm
    run's costs, and every job finishes (no starvation of work without a deadline)."""
    res, _ = replay(seed, history_days=1.0)
    assert res["defer"][0] <= res["backfill"][0]
    assert res["defer"][1] == res["backfill"][1] == len(tempting_case(seed)[0])


def test_a_job_that_needs_most_of_the_span_is_priced_at_its_dearest_slots() -> None:
    """Per job: the cost of the dearest slot it uses if it takes the cheapest ``needed`` of ``max(span,
    (1 + margin) x needed)`` slots; one that needs a slot pays the cheapest (or the site's clearing price,
    whichever is higher), one longer than the span skips only the dearest margin / (1 + margin)."""
    T = 16
    snap = snapshot(series(T, 5, wind_w=5_000.0), n_jobs=30)
    w = WeightSettings(terminal_value="clearing", beyond_horizons=1.0, beyond_share=0.5)
    problem, _ = build_problem(snap, T, weights=w)
    tr = TrailingSignals(history_days=1.0, min_history_h=0.0, slack_margin=1.0)
    tr.seed(series(96, 6, wind_w=60_000.0, carbon=(100.0, 700.0)))
    probe = replace(problem, gpus=problem.gpus[:0], remaining_s=problem.remaining_s[:0],
                    release=problem.release[:0], deadline=problem.deadline[:0], weight=problem.weight[:0],
                    eligible=problem.eligible[:0], must_run=problem.must_run[:0],
                    preemptible=problem.preemptible[:0], running_pool=problem.running_pool[:0],
                    preempt_loss_s=problem.preempt_loss_s[:0], tenant=np.zeros(0, dtype=np.int64),
                    tenant_quota_gpus=np.zeros(0))
    R = np.zeros((probe.n_pools, T))
    got = tr.beyond_price(probe, 0.0, R, 0.1, 1.0, 0.5, np.array([1, 8, 16, 32, 64, 1000]))
    assert got is not None
    prices, _ = got
    site = tr.beyond_price(probe, 0.0, R, 0.1, 1.0, 0.5)
    assert site is not None
    span, RS = tr.span_probe(probe, R, T)
    cost, green, avail, _ = slot_work_capacity(span, RS)
    eff = np.sort(cost * (1.0 - green / np.maximum(avail, 1e-9)))
    assert np.all(np.diff(prices) >= 0)  # the more slots a job needs, the dearer its price
    assert prices[0] == pytest.approx(max(eff[0], site[0]))
    assert prices[1] == pytest.approx(max(eff[7], site[0]))  # the 8th cheapest of 32 slots
    # 16 or more slots: at margin 1 each skips the dearest half of 2 x needed slots
    assert prices[2] == prices[3] == prices[4] == prices[5] == pytest.approx(max(eff[15], site[0]))
    assert prices[5] > prices[0]


def test_beyond_age_h_ages_only_the_work_priced_past_the_span() -> None:
    """Work without a deadline inside the span ages over beyond_age_h; work due inside it, and everything when
    beyond_age_h is None, keeps age_h (the default weights are unchanged)."""
    T = 16
    fc = series(T, 7, wind_w=5_000.0)
    now = 48 * H
    jobs = (JobState(Job("free", "t", "training", 0.0, 2, 4 * H), "queued"),  # waited 48 h, no deadline
            JobState(Job("due", "t", "training", 0.0, 2, 2 * H, deadline_s=now + 8 * H), "queued"))  # in the span, not urgent
    snap = Snapshot(now_s=now, slot=192, site=SITE, jobs=jobs, healthy_gpus={}, forecast=fc)
    base = WeightSettings(terminal_value="clearing", beyond_horizons=1.0, beyond_share=0.5)
    p0, i0 = build_problem(snap, T, weights=base)
    w0, w1 = p0.weight, build_problem(snap, T, weights=replace(base, beyond_age_h=96.0))[0].weight
    assert i0.terminal["urgent_jobs"] == 0 and i0.terminal["due_in_span_jobs"] == 1
    assert w1[1] == w0[1]
    assert w1[0] == pytest.approx(w0[0] * (1 + 48 / 96) / (1 + 48 / 24))  # the same price, aged 48 h over 96
    assert DEFAULT_WEIGHTS.beyond_age_h is None
    with pytest.raises(InputError, match="beyond_age_h"):
        WeightSettings(beyond_age_h=0.0)
