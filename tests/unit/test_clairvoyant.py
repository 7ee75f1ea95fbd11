"""The clairvoyant reference (scheduler.clairvoyant): a lower bound on the carbon of a run's own work.

Seeded families of small runs on the demo site through the real control loop and simulated executor: the
bound never exceeds the run's carbon (every policy, both solvers), a hand-computed case is exact, relaxing
(merging, coarser buckets, dropping deadlines) only lowers it, and less work gives a smaller bound.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pytest

from scheduler import clairvoyant as cv
from scheduler.control import run_simulation
from scheduler.energy import EnergySeries
from scheduler.jobs import Job
from scheduler.models import load_site
from scheduler.policies import get_policy
from scheduler.policies.capacity import SitePower

SITE = load_site("demo")
H = 3600.0


def energy(n: int, seed: int, *, wind_scale_w: float = 40_000.0) -> EnergySeries:
    rng = np.random.default_rng(seed)
    wind = np.clip(wind_scale_w * (0.5 + 0.5 * np.sin(np.arange(n) / 9.0 + rng.uniform(0, 6))), 0, None)
    return EnergySeries(
        start_utc=datetime(2023, 3, 1, tzinfo=UTC), slot_s=int(SITE.slot_s),
        wind_w=wind, carbon_g_per_kwh=rng.uniform(100.0, 500.0, n), price_eur_per_mwh=np.full(n, 50.0),
        grid_cap_w=np.full(n, 40_000.0), site_max_w=np.full(n, 50_000.0), source="test",
    )


def workload(seed: int, n_jobs: int = 12) -> list[Job]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n_jobs):
        sub = float(rng.uniform(0, 8 * H))
        dur = float(rng.uniform(0.5, 4.0) * H)
        dl = sub + dur + float(rng.uniform(2, 10) * H) if rng.random() < 0.5 else None
        out.append(Job(f"j{i}", "t", "training", sub, int(rng.choice([1, 2, 4, 8])), dur, deadline_s=dl))
    for k in range(6):  # a little inference
        out.append(Job(f"inf{k}", "t", "inference", k * 3 * H, 2, SITE.slot_s, preemptible=False))
    return out


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("policy", ["backfill", "greedy-green", "threshold", "cics"])
def test_bound_never_exceeds_the_runs_carbon(seed: int, policy: str) -> None:
    n = 96
    e = energy(n + 8, seed)
    res = run_simulation(SITE, workload(seed), e, get_policy(policy), n_slots=n, horizon_slots=32)
    carbon = cv.run_carbon_g(res)
    lp = cv.bound_of_run(res, solver="highs-lp")
    dual = cv.bound_of_run(res, solver="kernels-dual")
    assert lp.status == "optimal" and lp.method == "highs-lp"
    assert math.isfinite(dual.bound_carbon_g)
    assert 0.0 < lp.bound_carbon_g <= carbon * (1 + 1e-6)
    # the dual bound relaxes deadlines too: it is at most the LP optimum (small solver tolerance)
    assert dual.bound_carbon_g <= lp.bound_carbon_g * (1 + 1e-4) + 1e-6
    assert lp.ratio(carbon) is not None and lp.ratio(carbon) >= 1 - 1e-6
    assert 0.0 <= lp.idle_carbon_g <= lp.bound_carbon_g * (1 + 1e-6)
    # the LP's carbon slot by slot: one value a slot, none negative, summing to the bound (the dual has none)
    assert lp.carbon_g_by_slot is not None and len(lp.carbon_g_by_slot) == n and dual.carbon_g_by_slot is None
    assert min(lp.carbon_g_by_slot) >= -1e-6 and sum(lp.carbon_g_by_slot) == pytest.approx(lp.bound_carbon_g)
    wr = lp.work_ratio(carbon)
    assert wr is None or wr >= lp.ratio(carbon) - 1e-6  # the idle share only dilutes the ratio


@pytest.mark.parametrize("seed", range(4))
def test_relaxations_only_lower_the_bound(seed: int) -> None:
    n = 96
    e = energy(n, seed)
    items = [cv.WorkItem(j, j.duration_s, j.deadline_s is not None and not j.must_run) for j in workload(seed, 16)]
    exact, on_time = cv.build_problem(SITE, items, e, n, merge=False)
    from benchmarks.reference import solve_lp

    def lp(pb, ot):  # noqa: ANN001, ANN202
        r = solve_lp(pb, carbon_only=True, require_finished=~np.asarray(pb.must_run), require_on_time=ot)
        assert r.status == "optimal"
        return r.carbon_g

    full = lp(exact, on_time)
    for bucket in (1, 4, 16):
        merged, ot = cv.build_problem(SITE, items, e, n, bucket=bucket)
        assert merged.n_jobs <= exact.n_jobs
        assert lp(merged, ot) <= full * (1 + 1e-6) + 1e-6
    assert lp(exact, np.zeros_like(on_time)) <= full * (1 + 1e-6) + 1e-6
    # a bound capped to few LP columns coarsens and stays below the exact one
    small = cv.bound(SITE, items, e, n, max_lp_vars=2_000)
    assert small.release_bucket_slots > 1 and small.bound_carbon_g <= full * (1 + 1e-6) + 1e-6


def test_hand_computed_single_job_no_wind() -> None:
    """One 8-GPU job, no wind, constant carbon: the bound is the idle site's carbon plus the job's work at
    the most efficient power level (facility watts per unit of work)."""
    n = 16
    c = 250.0
    e = EnergySeries(
        start_utc=datetime(2023, 3, 1, tzinfo=UTC), slot_s=int(SITE.slot_s), wind_w=np.zeros(n),
        carbon_g_per_kwh=np.full(n, c), price_eur_per_mwh=np.zeros(n), grid_cap_w=np.full(n, 1e9),
        site_max_w=np.full(n, 1e9), source="test",
    )
    job = Job("a", "t", "training", 0.0, 8, 2 * H)
    b = cv.bound(SITE, [cv.WorkItem(job, job.duration_s, False)], e, n, solver="highs-lp")
    power = SitePower(SITE)
    healthy = np.array([float(p.gpus) for p in SITE.pools])
    base_w = power.base_w(healthy)
    slot_h = SITE.slot_s / H
    best = math.inf
    for p, pool in enumerate(SITE.pools):
        for f, s in pool.speed_curve:
            if f >= pool.min_power_fraction - 1e-9:
                # facility W above idle per GPU at f, per unit of speed
                best = min(best, power.gpu_w(p, f) / s)
    work_gpu_s = 8 * 2 * H
    expect_g = c * (base_w * n * slot_h + best * work_gpu_s / H) / 1000.0
    assert b.bound_carbon_g == pytest.approx(expect_g, rel=1e-6)
    assert b.idle_carbon_g == pytest.approx(c * base_w * n * slot_h / 1000.0, rel=1e-9)
    assert b.work_ratio(b.bound_carbon_g) == pytest.approx(1.0)


def test_less_work_gives_a_smaller_bound_and_bad_input_is_named() -> None:
    n = 64
    e = energy(n, 3)
    jobs = [j for j in workload(3) if not j.must_run]
    full = cv.bound(SITE, [cv.WorkItem(j, j.duration_s, False) for j in jobs], e, n)
    half = cv.bound(SITE, [cv.WorkItem(j, j.duration_s / 2, False) for j in jobs], e, n)
    assert half.bound_carbon_g < full.bound_carbon_g
    empty = cv.bound(SITE, [], e, n)
    assert empty.status == "empty" and empty.bound_carbon_g == 0.0
    with pytest.raises(ValueError, match="solver='lp'"):
        cv.bound(SITE, [cv.WorkItem(jobs[0], 1.0, False)], e, n, solver="lp")
    with pytest.raises(ValueError, match="n_slots=0"):
        cv.build_problem(SITE, [], e, 0)


def test_inference_is_served_in_the_slots_it_ran() -> None:
    """A must-run service that ran in fewer slots than its duration (a real-time executor that started it
    late) is bound in exactly those slots: the bound stays below a run that served it less."""
    n = 32
    e = energy(n, 5)
    svc = Job("svc", "t", "inference", 0.0, 6, n * SITE.slot_s, preemptible=False)
    ran = tuple(range(4, n))
    few = cv.bound(SITE, [cv.WorkItem(svc, len(ran) * SITE.slot_s, False, ran)], e, n, solver="highs-lp")
    full = cv.bound(SITE, [cv.WorkItem(svc, n * SITE.slot_s, False)], e, n, solver="highs-lp")
    gap = cv.bound(SITE, [cv.WorkItem(svc, 8 * SITE.slot_s, False, (0, 1, 2, 3, 10, 11, 12, 13))], e, n,
                   solver="highs-lp")
    assert few.status == full.status == gap.status == "optimal"
    assert gap.bound_carbon_g < few.bound_carbon_g < full.bound_carbon_g
    power = SitePower(SITE)
    slot_h = SITE.slot_s / H
    healthy = np.array([float(p.gpus) for p in SITE.pools])
    # exact: the idle site plus 6 GPUs at full power in exactly the slots it ran
    fac = power.base_w(healthy) + np.where(np.isin(np.arange(n), ran), 6 * power.gpu_w_full.max(), 0.0)
    want = float(np.sum(np.maximum(fac - e.wind_w[:n], 0.0) * e.carbon_g_per_kwh[:n])) * slot_h / 1000.0
    assert few.bound_carbon_g == pytest.approx(want, rel=1e-6)


def test_work_of_run_counts_done_partial_and_on_time() -> None:
    n = 48
    e = energy(n + 4, 1)
    jobs = workload(1, 8)
    res = run_simulation(SITE, jobs, e, get_policy("backfill"), n_slots=n, horizon_slots=16)
    items = {it.job.job_id: it for it in cv.work_of_run(res.loop.records, n * SITE.slot_s)}
    for jid, rec in res.loop.records.items():
        if rec.job.must_run:
            if rec.slots:
                assert items[jid].slots == tuple(rec.slots)  # whole slots (inference runs whole slots here)
            else:
                assert jid not in items
            continue
        if rec.state == "finished":
            assert items[jid].work_s == rec.job.duration_s
        elif rec.work_done_s > 0:
            assert items[jid].work_s == pytest.approx(rec.work_done_s)
            assert not items[jid].on_time
        else:
            assert jid not in items


def test_a_run_too_large_for_the_dual_bound_is_skipped_not_planned(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fallback bound plans the run's jobs x slots: above MAX_DUAL_CELLS it is skipped (a 60-day replay
    once grew to 21 GB there), with a ratio of None and the reason named; below, it is computed."""
    n = 48
    res = run_simulation(SITE, workload(0, 6), energy(n + 8, 0), get_policy("backfill"), n_slots=n, horizon_slots=16)
    ok = cv.bound_of_run(res, solver="kernels-dual")
    assert ok.status == "optimal" and math.isfinite(ok.bound_carbon_g)
    monkeypatch.setattr(cv, "MAX_DUAL_CELLS", ok.n_rows * n - 1)
    big = cv.bound_of_run(res, solver="kernels-dual")
    assert big.status == "skipped" and math.isnan(big.bound_carbon_g) and "cell limit" in big.message
    assert big.ratio(1e6) is None and big.as_dict()["bound_carbon_kg"] is None
