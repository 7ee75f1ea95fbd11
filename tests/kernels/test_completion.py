"""The optimiser's plan is complete and valid on a seeded family, dominates the EDF greedy witness where it
should, keeps non-preemptible jobs in one unbroken block, and plans around slots no schedule can meet."""

from __future__ import annotations

import functools
from dataclasses import replace

import numpy as np
import pytest
from _backends import BACKENDS, same_plans  # noqa: E402  (tests/kernels is on sys.path)
from _problems import SLOT_S, small_problem  # noqa: E402

import kernels
from kernels.problem import NO_DEADLINE, PlanProblem

FAMILY = range(24)


def _family(seed: int) -> PlanProblem:
    """small_problem with more non-preemptible jobs, two pools with different speed curves (a block sized
    for one pool's levels does less work on the other's), tight caps on some seeds and work worth its carbon."""
    rng = np.random.default_rng(1000 + seed)
    pb = small_problem(seed, J=14, T=24, quota=bool(seed % 3 == 0), weight_scale=40.0,
                       cap_frac=float(rng.uniform(0.3, 0.9)))
    J = pb.n_jobs
    pre = np.asarray(pb.preemptible).copy()
    pre[rng.random(J) < 0.3] = False
    pre[0] = True  # the must-run row
    cs = np.array([[0.62, 0.82, 0.95, 1.0], [0.5, 0.75, 0.92, 1.0]])
    return replace(pb, preemptible=pre, curve_s=cs)


def _np_blocks(pb: PlanProblem, r: kernels.PlanResult) -> np.ndarray:
    rows = np.flatnonzero(~np.asarray(pb.preemptible) & ~np.asarray(pb.must_run) & r.run.any(axis=1))
    x = r.run[rows].astype(np.int8)
    return (np.diff(x, axis=1, prepend=0) == 1).sum(axis=1)


@functools.cache
def _planned(seed: int) -> tuple[PlanProblem, kernels.PlanResult, kernels.PlanResult]:
    """``_family(seed)``, its plan and the greedy's, made once per session: the family test, the idle-floor
    test, the torch test and the witness test judge the same plans (round 12: 17 plans and 3 greedy plans
    made again). Read only: a test that needs another result makes it with ``replace``."""
    pb = _family(seed)
    return pb, kernels.plan(pb), kernels.greedy_plan(pb)


#: family members where the optimiser's own plan still loses to the greedy witness (kernels.plan returns the
#: greedy's plan there, diagnostics["witness"]["used"]): none since the price-order local search from the
#: EDF plan (2026-12-03; 5 and 7 lost before). Add a seed here only with the reason.
LOSES: set[int] = set()


@pytest.mark.parametrize("seed", [pytest.param(s, marks=pytest.mark.xfail(strict=True, reason="own plan loses to the "
                                  "greedy witness here (see LOSES)")) if s in LOSES else s for s in FAMILY])
def test_plan_is_valid_complete_where_the_greedy_is_and_dominates_it(seed: int) -> None:
    pb, r, g = _planned(seed)
    assert r.status != "infeasible"
    assert kernels.check_result(pb, r) == []
    assert kernels.check_result(pb, g) == []
    assert (_np_blocks(pb, r) <= 1).all() and (_np_blocks(pb, g) <= 1).all()
    w = r.diagnostics["witness"]
    # whichever plan is returned, it is never worse than the greedy on unfinished work and late jobs
    assert r.diagnostics["unfinished_jobs"] <= w["unfinished_jobs"] and r.diagnostics["late_jobs"] <= w["late_jobs"]
    assert w["unfinished_jobs"] == int((~g.finished & ~np.asarray(pb.must_run) & (np.asarray(pb.remaining_s) > 0)).sum())
    assert w["used"] is False, (seed, w, r.diagnostics["own_plan"])
    # every job the greedy finishes, the plan finishes too (or at least as much work overall)
    assert r.diagnostics["unfinished_jobs"] <= w["unfinished_jobs"]
    assert r.unfinished_gpu_s <= w["unfinished_gpu_s"] * (1 + 1e-6) + 1e-3
    if w["unfinished_jobs"] == 0 and r.diagnostics["unfinished_jobs"] == 0:
        assert r.carbon_g_total <= w["carbon_g"] * (1 + 1e-9)


def test_a_block_sized_for_one_pool_is_never_left_short_on_another() -> None:
    """Two pools whose lowest level runs at different speeds: the non-preemptible job's plan (whatever pool it
    ends up in) is one block that does all its work (the bug of issue 11: a block remapped to a slower pool)."""
    T, J = 16, 3
    pb = PlanProblem(
        slot_s=SLOT_S, pue=1.15, wind_w=np.zeros(T), carbon_g_per_kwh=np.linspace(100, 400, T),
        grid_cap_w=np.full(T, 1e7), site_max_w=np.full(T, 1e7), pool_gpus=np.array([4, 4]),
        tdp_w=np.array([700.0, 1000.0]), idle_w=np.array([75.0, 100.0]), host_w_per_gpu=np.array([450.0, 600.0]),
        min_power_fraction=np.array([0.4, 0.4]), curve_f=np.tile([0.4, 0.6, 0.8, 1.0], (2, 1)),
        curve_s=np.array([[0.62, 0.82, 0.95, 1.0], [0.5, 0.8, 0.94, 1.0]]),
        gpus=np.array([4, 4, 4]), remaining_s=np.array([6 * 0.62 * SLOT_S, 6 * 0.62 * SLOT_S, 3 * SLOT_S]),
        release=np.zeros(J, np.int64), deadline=np.full(J, kernels.NO_DEADLINE), weight=np.full(J, 5.0),
        eligible=np.ones((J, 2), bool), must_run=np.zeros(J, bool), preemptible=np.array([False, False, True]),
        running_pool=np.full(J, -1), preempt_loss_s=np.zeros(J), tenant=np.zeros(J, np.int64),
        tenant_quota_gpus=np.array([np.inf]),
    )
    r = kernels.plan(pb)
    assert kernels.check_result(pb, r) == []
    assert r.finished.all() and (_np_blocks(pb, r) == 1).all()


@pytest.mark.parametrize("t", range(1, 7))
def test_the_checker_catches_a_broken_non_preemptible_block_at_any_slot(t: int) -> None:
    pb = replace(_family(3), preemptible=np.array([True] + [False] * 13))
    J, T = pb.n_jobs, pb.n_slots
    run = np.zeros((J, T), bool)
    run[5, 0:8] = True  # one block, then broken at slot t
    run[5, t] = False
    pf = np.where(run, 1.0, 0.0).astype(np.float32)
    pool = np.where(run.any(axis=1), int(np.flatnonzero(pb.eligible[5])[0]), -1).astype(np.int32)
    ev = kernels.evaluate(pb, run, pf, pool)
    res = kernels.PlanResult(
        status="feasible", reason="", run=run, power_fraction=pf, pool=pool, work_done_s=ev["work_done_s"],
        finished=ev["finished"], facility_w=ev["facility_w"], grid_import_w=ev["grid_import_w"],
        carbon_g=ev["carbon_g_slot"], busy_gpus=ev["busy_gpus"].astype(np.int64),
        dual_price_g_per_gpu_h=np.zeros(T), carbon_g_total=ev["carbon_g"], unfinished_gpu_s=ev["unfinished_gpu_s"],
        objective=ev["objective"], lower_bound=0.0, gap=1.0, iterations=0,
    )
    v = kernels.check_result(pb, res)
    assert any("non-preemptible job 5" in s for s in v), v


@pytest.mark.parametrize("seed", range(6))
def test_a_later_slot_below_the_idle_floor_does_not_stop_work_now(seed: int) -> None:
    pb = _family(seed)
    T = pb.n_slots
    cap = np.asarray(pb.grid_cap_w, np.float64).copy()
    wind = np.asarray(pb.wind_w, np.float64).copy()
    bad = np.arange(T) >= 12
    bad &= np.arange(T) < 15
    cap[bad], wind[bad] = 1000.0, 0.0  # a 1 kW cap announced for +3 h: below the idle floor
    q = replace(pb, grid_cap_w=cap, wind_w=wind)
    r0 = _planned(seed)[1]
    r = kernels.plan(q)
    assert r.status != "infeasible", r.reason
    assert kernels.check_result(q, r) == []
    assert r.diagnostics["infeasible_slots"] == [12, 13, 14]
    assert len(r.diagnostics["slot_deficit_w"]) == 3 and min(r.diagnostics["slot_deficit_w"]) > 0
    assert not r.run[:, bad].any()
    assert np.isfinite(r.dual_price_g_per_gpu_h).all()
    # work before the event is not shed: the GPU-slots run before it are at least half of the unconstrained
    # plan's (slot 0 alone may be the dearest slot: a plan may rightly start there less than another)
    g = np.asarray(pb.gpus)[:, None]
    before = int((r.run[:, :12] * g).sum())
    assert before >= max(1, int((r0.run[:, :12] * g).sum()) // 2), before
    assert kernels.check_result(q, kernels.greedy_plan(q)) == []


@pytest.mark.parametrize("be", BACKENDS[1:2])
@pytest.mark.parametrize("seed", [0, 4, 7])
def test_greedy_and_completion_give_the_same_plans_on_torch(be: tuple[str, str], seed: int) -> None:
    pb, pa, a = _planned(seed)
    b = kernels.greedy_plan(pb, backend=be[0], device=be[1])
    same_plans(a, b, be[1])
    assert np.array_equal(a.run, b.run) and np.array_equal(a.pool, b.pool)
    np.testing.assert_array_equal(a.power_fraction, b.power_fraction)
    pt = kernels.plan(pb, backend=be[0], device=be[1])
    same_plans(pa, pt, be[1])
    assert np.array_equal(pa.run, pt.run) and np.array_equal(pa.pool, pt.pool)
    assert pa.diagnostics["witness"] == pt.diagnostics["witness"]


def _with_age(r: kernels.PlanResult, age: int) -> kernels.PlanResult:
    """``r`` as a warm start whose last witness check was ``age`` ticks ago."""
    return replace(r, diagnostics={**r.diagnostics, "witness": {**r.diagnostics["witness"], "age_ticks": age}})


@pytest.mark.parametrize("seed", range(0, 24, 3))
def test_witness_auto_runs_cold_and_on_warm_replans_only_when_due(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """witness="auto": every cold solve checks against the greedy; a warm re-plan skips the check where its
    own plan finishes every job on time, and otherwise (past WITNESS_EVERY_TICK_MAX_CELLS, monkeypatched to 0;
    below it every tick: tests/kernels/test_warm_witness.py) runs it once the last check is WITNESS_EVERY_TICKS
    ticks old (then it returns exactly what witness="always" returns). Every plan passes the checker."""
    monkeypatch.setattr(kernels.planner, "WITNESS_EVERY_TICK_MAX_CELLS", 0)
    pb, cold, _ = _planned(seed)
    w = cold.diagnostics["witness"]
    assert w["ran"] is True and w["age_ticks"] == 0 and "unfinished_gpu_s" in w
    warm = kernels.plan(pb, warm_start=cold, warm_shift=0)
    ww = warm.diagnostics["witness"]
    assert kernels.check_result(pb, warm) == []
    assert ww["ran"] is False and ww["used"] is False and ww["age_ticks"] == 1, ww
    complete = warm.diagnostics["unfinished_jobs"] == 0 and warm.diagnostics["late_jobs"] == 0
    assert ("finishes every job" in ww["reason"]) == complete, ww
    assert "unfinished_gpu_s" not in ww  # no stale greedy numbers where it did not run
    due = kernels.plan(pb, warm_start=_with_age(cold, kernels.planner.WITNESS_EVERY_TICKS - 1), warm_shift=0)
    always = kernels.plan(pb, warm_start=cold, warm_shift=0, witness="always")
    assert always.diagnostics["witness"]["ran"] is True
    assert due.diagnostics["witness"]["ran"] is (not complete)
    if not complete:
        assert due.diagnostics["witness"]["age_ticks"] == 0
        assert np.array_equal(due.run, always.run) and np.array_equal(due.pool, always.pool)
        assert due.diagnostics["unfinished_jobs"] <= due.diagnostics["witness"]["unfinished_jobs"]
    never = kernels.plan(pb, witness="never")
    assert never.diagnostics["witness"] == {"ran": False, "used": False, "reason": "witness='never'", "age_ticks": 1}
    assert never.diagnostics["primal_variant"] != "greedy_witness"
    assert kernels.check_result(pb, never) == []


def test_witness_rejects_an_unknown_mode() -> None:
    with pytest.raises(ValueError, match=r"witness='sometimes': allowed auto, always, never"):
        kernels.plan(_family(0), witness="sometimes")


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_probe_skips_only_completions_that_place_nothing(backend: tuple[str, str]) -> None:
    """_finish's last completion runs its list schedules only where _may_place finds a cell they could place.
    On plans of the family with more work than the site holds (tight caps, quotas, deadlines, non-preemptible
    jobs: the greedy's plan, and it with one cell, one row or a share of the preemptible rows' cells cut):
    where the probe says no, the completion without it places nothing, and the probed completion gives the
    same plan and the same usage; the probe says no on some and the completion places work on some (the test
    is not vacuous). (Probed inside kernels.plan on this family, the completion never placed anything: a
    probe that always said no passed the equality there; it fails here, as do a probe that reads the GPUs
    or watts more strictly, the quota strictly, on-time cells for short rows or only the planned pool.)"""
    from _family import greedy_start

    import kernels.planner as P

    name, device = backend
    said, placed = [], 0
    for seed in range(12 if name == "numpy" else 4):  # (torch on the CPU: 4 seeds, ~5 s)
        pb = _family(seed)
        R = np.asarray(pb.remaining_s)
        rng = np.random.default_rng(seed)
        for q in (replace(pb, remaining_s=R * 3),  # more work than the site holds (all its GPUs, half of them)
                  replace(pb, pool_gpus=np.maximum(np.asarray(pb.pool_gpus) // 2, 1), remaining_s=R * 2)):
            s = greedy_start(q, name, device)
            c, xp, d, tb = s.c, s.xp, s.d, s.tb
            gv = xp.to_numpy(s.gv)
            cut_rows = c.preempt & ~c.must
            runs = np.flatnonzero(cut_rows & (gv > 0).any(1))
            for k in range(7):  # plans: the greedy's, then with cells of preemptible rows cut
                v = gv.copy()
                if k == 1 and runs.size:  # one cell of one row
                    j = rng.choice(runs)
                    v[j, rng.choice(np.flatnonzero(gv[j]))] = 0
                elif k == 2 and runs.size:  # one row whole
                    v[rng.choice(runs)] = 0
                elif k >= 3:  # half the cells of 10% / 30% of the rows
                    v[(cut_rows & (rng.random(c.J) < (0.1, 0.3)[k % 2]))[:, None] & (rng.random(v.shape) < 0.5)] = 0
                vm, pool = xp.asarray(v), xp.copy(s.gp)
                use = P._use_of(d, tb, vm, pool, xp)
                u0 = P._Use(xp.copy(use.busy), xp.copy(use.fac), xp.copy(use.done))
                v0, p0 = P._complete(xp, c, d, tb, xp.copy(vm), xp.copy(pool), c.kappa, np.zeros((c.P, c.T)), u0)
                may = P._may_place(c, d, tb, vm, pool, use, xp)
                moved = not np.array_equal(xp.to_numpy(v0), v)
                assert may or not moved, f"seed {seed}, plan {k}: the probe says no, the completion places work"
                said.append(may)
                placed += moved
                v1, p1 = P._complete(xp, c, d, tb, vm, pool, c.kappa, np.zeros((c.P, c.T)), use, probe=True)
                for a, b in ((v0, v1), (p0, p1), (u0.busy, use.busy), (u0.fac, use.fac), (u0.done, use.done)):
                    assert np.array_equal(xp.to_numpy(a), xp.to_numpy(b))
    assert said.count(False) >= 3 and placed >= 3, (said.count(False), placed)


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_probe_counts_the_tenant_quota(backend: tuple[str, str]) -> None:
    """Two jobs of one tenant on a pool with room for both: job 0 runs every slot, job 1 has none. With a
    quota of one job's GPUs job 1 can go nowhere: _may_place says so and the list schedule places nothing;
    with room in the quota for both it says there is a cell and the list schedule places job 1."""
    import kernels.planner as P

    base = small_problem(0, J=3, T=6, P_=1, cap_frac=1.0)
    xp = P.get_ops(*backend)
    for quota, placed in ((2.0, False), (4.0, True)):
        pb = replace(base, gpus=np.array([2, 2]), remaining_s=np.array([SLOT_S, 2 * SLOT_S]), release=np.zeros(2, int),
                     deadline=np.full(2, NO_DEADLINE), must_run=np.zeros(2, bool), preemptible=np.ones(2, bool),
                     running_pool=np.full(2, -1), eligible=np.ones((2, 1), bool), tenant=np.zeros(2, int),
                     weight=np.full(2, 0.3), preempt_loss_s=np.zeros(2),
                     tenant_quota_gpus=np.array([quota, np.inf]))
        c = P._clean_inputs(pb)
        assert not isinstance(c, str)
        pr = P._prepare(c)
        d, tb = P._to_dev(xp, c, pr), P._tabs(c, pr, xp)
        vfull = int(xp.to_numpy(tb.vfull)[0])
        vmat = xp.asarray(np.array([[vfull] * 6, [0] * 6], np.int8))
        pool = xp.asarray(np.array([0, 0]))
        use = P._use_of(d, tb, vmat, pool, xp)
        assert P._may_place(c, d, tb, vmat, pool, use, xp) is placed
        v, _ = P._complete(xp, c, d, tb, xp.copy(vmat), xp.copy(pool), c.kappa, np.zeros((1, 6)), use)
        assert bool(xp.to_numpy(v)[1].any()) is placed


@pytest.mark.parametrize("per_row", [True, False])
def test_the_greedy_fills_a_pool_to_its_last_gpu(per_row: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Jobs as wide as their pool, and two that fill it together: the EDF greedy (the completion's list schedule)
    places each where the pool's free GPUs equal its GPU count exactly, on the per-row room test and on the
    per-count one (``listsched.ROOM_PER_ROW_MAX_CELLS``)."""
    from kernels import listsched

    monkeypatch.setattr(listsched, "ROOM_PER_ROW_MAX_CELLS", 1 << 30 if per_row else 0)
    T, J = 8, 4
    pb = PlanProblem(
        slot_s=SLOT_S, pue=1.15, wind_w=np.zeros(T), carbon_g_per_kwh=np.linspace(100, 400, T),
        grid_cap_w=np.full(T, 1e7), site_max_w=np.full(T, 1e7), pool_gpus=np.array([8]),
        tdp_w=np.array([700.0]), idle_w=np.array([75.0]), host_w_per_gpu=np.array([450.0]),
        min_power_fraction=np.array([0.4]), curve_f=np.array([[0.4, 0.6, 0.8, 1.0]]),
        curve_s=np.array([[0.62, 0.82, 0.95, 1.0]]),
        gpus=np.array([8, 8, 5, 3]), remaining_s=np.full(J, 2 * SLOT_S),
        release=np.zeros(J, np.int64), deadline=np.full(J, 4), weight=np.full(J, 5.0),
        eligible=np.ones((J, 1), bool), must_run=np.zeros(J, bool), preemptible=np.array([True, False, True, True]),
        running_pool=np.full(J, -1), preempt_loss_s=np.zeros(J), tenant=np.zeros(J, np.int64),
        tenant_quota_gpus=np.array([np.inf]),
    )
    r = kernels.greedy_plan(pb)
    assert kernels.check_result(pb, r) == []
    assert r.finished.all()  # (6 of the horizon's 8 full-pool slots: each job fits only exactly)
