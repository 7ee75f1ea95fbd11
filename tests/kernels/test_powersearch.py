"""The power-level local search (kernels.powersearch) on valid plans of the instance family: the plan stays
valid (checker), the objective never rises, and without a floor every job finished (on time) stays finished
(on time); with the greedy witness as its floor the plan still dominates the greedy job by job. It does move
the family's plans (it is not a no-op), kernels.plan uses it, and numpy and torch give the same plan."""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import numpy as np
import pytest
from _backends import BACKENDS
from _family import dominance_failures, greedy_start, outcome

import kernels
from benchmarks.instances import corpus, make
from kernels import listsched as L
from kernels import planner as PL
from kernels import powersearch as PS
from kernels.problem import NO_DEADLINE, PlanProblem

CASES = corpus(40, seed=31, n_jobs=(8, 32), n_slots=(12, 32))


def _search(i: int, *, floor: bool, start: str = "greedy", backend: str = "numpy", device: str = "cpu") -> dict[str, Any]:
    """The search from a valid plan of case ``i`` (the greedy's, or the greedy's after ``listsched.improve``),
    with the greedy as its floor or none; both plans as PlanResults for the checker. Each search runs once per
    session: the per-case tests and the family test judge the same searches (no test changes what it gets)."""
    return _search_once(i, floor, start, backend, device)


@functools.cache
def _search_once(i: int, floor: bool, start: str, backend: str, device: str) -> dict[str, Any]:
    pb = make(*CASES[i])
    s = greedy_start(pb, backend, device)
    c, xp, gv, gp, gev = s.c, s.xp, s.gv, s.gp, s.gev
    sv, sev = gv, gev
    if start == "improved":
        sv, sev, _ = L.improve(pb, xp, c, s.pr, s.d, s.tb, gv, gp)
    nv, npool, nev, k = PS.power_search(pb, xp, c, s.pr, s.d, s.tb, sv, gp, ev=sev, floor=gev if floor else None)
    res = s.result

    return {"pb": pb, "c": c, "start": res(sv, gp, sev), "greedy": res(gv, gp, gev), "new": res(nv, npool, nev),
            "sev": sev, "nev": nev, "k": k, "vmat": xp.to_numpy(nv), "pool": xp.to_numpy(npool)}


def _valid_lower_keeping_jobs(pb: Any, s: Any, nev: dict[str, Any], sv: Any, sp: Any, sev: dict[str, Any]) -> None:
    """What a polish move's plan ``sv``/``sp`` (evaluated ``sev``) must be against the plan ``nev`` it started from
    on the case ``s``: valid, lower in carbon and in the objective, no job lost or late that was finished (on
    time), and it still dominates the greedy witness."""
    assert kernels.check_result(pb, s.result(sv, sp, sev)) == []
    assert sev["carbon_g"] < nev["carbon_g"] and sev["objective"] < nev["objective"]
    lost, late = _late_or_lost(s.c, nev, sev)
    assert lost.size == 0 and late.size == 0
    assert dominance_failures(outcome(pb, s.result(sv, sp, sev)), outcome(pb, s.result(s.gv, s.gp, s.gev))) == []


def _hull(xp: Any, C: Any, wk: Any, forced0: Any, work: Any) -> tuple[Any, Any, Any, Any]:
    """``powersearch._hull_wc``'s tables with the steps' work and cost apart: ``(K, DW, DC, TO)``."""
    K, DWC, TO = PS._hull_wc(xp, C, wk, forced0, work)
    return K, DWC[0], DWC[1], TO


def _late_or_lost(c: Any, before: dict[str, Any], after: dict[str, Any]) -> tuple[Any, Any]:
    """Jobs finished before and not after; jobs on time before and late after."""
    def on_time(e: dict[str, Any]) -> Any:
        need = np.asarray(e["need_s"])
        return np.asarray(e["work_on_time_s"]) >= need - 1e-6 * np.maximum(need, 1.0)

    lost = np.asarray(before["finished"], bool) & ~np.asarray(after["finished"], bool) & ~c.must & (c.R > 0)
    late = c.has_dl & (c.R > 0) & on_time(before) & ~on_time(after)
    return np.flatnonzero(lost), np.flatnonzero(late)


@pytest.mark.parametrize("start", ["greedy", "improved"])
@pytest.mark.parametrize("i", range(len(CASES)))
def test_without_a_floor_every_job_keeps_its_promise(i: int, start: str) -> None:
    """No floor: valid, objective never up, every finished job still finished, every on-time job on time."""
    r = _search(i, floor=False, start=start)
    assert kernels.check_result(r["pb"], r["new"]) == [], kernels.check_result(r["pb"], r["new"])
    assert r["nev"]["objective"] <= r["sev"]["objective"] * (1 + 1e-12)
    lost, late = _late_or_lost(r["c"], r["sev"], r["nev"])
    assert lost.size == 0, f"jobs {lost} no longer finished"
    assert late.size == 0, f"jobs {late} turned late"
    assert (r["k"] == 0) == (r["nev"]["objective"] == r["sev"]["objective"])


@pytest.mark.parametrize("i", range(len(CASES)))
def test_with_the_greedy_as_floor_the_plan_still_dominates_it(i: int) -> None:
    """The floor mode kernels.plan uses: valid, objective never up, and no dominance loss against the greedy
    (judged from the plans alone, as the corpus test does)."""
    r = _search(i, floor=True, start="improved")
    pb = r["pb"]
    assert kernels.check_result(pb, r["new"]) == []
    assert r["nev"]["objective"] <= r["sev"]["objective"] * (1 + 1e-12)
    fails = dominance_failures(outcome(pb, r["new"]), outcome(pb, r["greedy"]))
    assert fails == [], fails


def test_the_search_lowers_the_objective_across_the_family() -> None:
    """Not a no-op: it changes the plan on most of the family and lowers the objective by more than 1% on
    some, with and without a floor; and its carbon phase lowers the carbon of plans that finish every job.
    (With the floor from the improved start, as kernels.plan searches and the test above judges: the
    searches are the ones it made; round 12: lowered on 40 of 40.)"""
    for floor in (False, True):
        gains = []
        for i in range(len(CASES)):
            r = _search(i, floor=floor, start="improved" if floor else "greedy")
            gains.append(1 - r["nev"]["objective"] / max(r["sev"]["objective"], 1e-9))
        assert sum(g > 1e-9 for g in gains) >= len(CASES) // 2, f"floor={floor}: lowered {sum(g > 0 for g in gains)}"
        assert max(gains) > 0.01
    saved = []
    for i in range(len(CASES)):
        r = _search(i, floor=False, start="improved")
        if not (~np.asarray(r["sev"]["finished"], bool) & ~r["c"].must & (r["c"].R > 0)).any():
            saved.append(1 - r["nev"]["carbon_g"] / max(r["sev"]["carbon_g"], 1e-9))
    assert saved and max(saved) > 0.005 and min(saved) >= -1e-12


def test_kernels_plan_uses_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """The hook in kernels.plan: some of the family's plans are the searched ones, and they are valid (on 6
    cases: 5 carried, 11 of the first 12, round 12; the 12 took 25 s of the suite, these 6 a third of it).
    Without the certified stop (``STOP_GAP = -1``; with it 3 of the 6 are within 2% of their bound before
    any search, round 13: test_the_starts_stop_once_a_plan_is_certified_close)."""
    monkeypatch.setattr(PS, "STOP_GAP", -1.0)
    used = 0
    for i in range(6):
        pb = make(*CASES[i])
        res = kernels.plan(pb)
        assert kernels.check_result(pb, res) == []
        used += "+power" in str(res.diagnostics.get("primal_variant", ""))  # (then "+flips" where polished)
    assert used >= 4, f"the power search carried {used} of 6 plans"


@pytest.mark.parametrize("be", BACKENDS[1:])
@pytest.mark.parametrize("i", [0, 5, 11, 17])
def test_the_search_gives_the_numpy_plan_on_torch(be: tuple[str, str], i: int) -> None:
    """torch on the CPU: the same plan; CUDA (other summation orders upstream of the search): within the
    tolerance tests/kernels/test_backend.py allows a warm chain there."""
    a = _search(i, floor=True)
    b = _search(i, floor=True, backend=be[0], device=be[1])
    if be[1] == "cpu":
        assert a["k"] == b["k"] and np.array_equal(a["vmat"], b["vmat"]) and np.array_equal(a["pool"], b["pool"])
    else:
        assert b["nev"]["objective"] == pytest.approx(a["nev"]["objective"], rel=1e-6)
        assert (a["vmat"] == b["vmat"]).mean() >= 0.999
        assert kernels.check_result(b["pb"], b["new"]) == []


# --- the exchange on a row's hull steps (kernels.powersearch._exchange): seeded families of rows -----------

def _hull_rows(seed: int, n: int = 6, T: int = 9, S: int = 3) -> dict[str, Any]:
    """Rows of hull steps as ``_best_rows`` builds them: per cell ``S`` steps of rising cost per work (the
    same work per step index in every cell, as one pool's levels give; costs vary by slot), some cells not
    an option (``K`` inf), a taken prefix ``cnt`` per cell, a slot 0 kept (``forced0``) on some rows, and a
    target ``tgt`` the taken work reaches (on most rows) with less than one step to spare."""
    rng = np.random.default_rng(seed)
    dw = np.sort(rng.uniform(50.0, 600.0, S))[::-1].copy()  # steps shrink: 0.4 -> 0.6 -> 0.8 levels
    DW = np.broadcast_to(dw, (n, T, S)).copy()
    slope = np.cumsum(rng.uniform(0.1, 1.0, (n, T, S)), 2) * rng.uniform(0.5, 2.0, (n, T, 1))
    DC = np.round(DW * slope, 3)
    K = DC / DW
    off = rng.random((n, T)) < 0.2
    K[off], DW[off], DC[off] = np.inf, 0.0, 0.0
    cnt = np.where(off, 0, rng.integers(0, S + 1, (n, T)))
    forced0 = np.zeros((n, T), bool)
    forced0[:, 0] = rng.random(n) < 0.3
    cnt[:, 0] = np.where(forced0[:, 0] & ~off[:, 0], np.maximum(cnt[:, 0], 1), cnt[:, 0])
    forced0 &= cnt > 0
    taken = np.arange(S)[None, None, :] < cnt[:, :, None]
    got = (DW * taken).sum((1, 2))
    cost = (DC * taken).sum((1, 2))
    spare = rng.uniform(0.0, 1.0, n) * dw[-1]
    tgt = np.where(rng.random(n) < 0.85, got - spare, got + 1.0)  # some rows below their target
    return {"DW": DW, "DC": DC, "K": K, "cnt": cnt, "got": got, "cost": cost, "tgt": tgt, "forced0": forced0}


def _run_exchange(h: dict[str, Any], backend: str = "numpy", device: str = "cpu") -> tuple[Any, Any, Any]:
    from kernels.backend import get_ops

    xp = get_ops(backend, device)
    a = {k: xp.asarray(v, xp.i64 if k == "cnt" else xp.bool_ if k == "forced0" else xp.f64) for k, v in h.items()}
    cnt, got, cost = PS._exchange(xp, a["DW"], a["DC"], a["K"], a["cnt"], a["got"], a["cost"], a["tgt"], a["forced0"])
    return xp.to_numpy(cnt), xp.to_numpy(got), xp.to_numpy(cost)


def _best_pair_gain(h: dict[str, Any], j: int) -> float:
    """Brute force on row ``j``: the largest saving of giving back one cell's last step and taking one next
    step of another cell, the row's work still at its target (0: none)."""
    DW, DC, K, cnt, f0 = h["DW"][j], h["DC"][j], h["K"][j], h["cnt"][j], h["forced0"][j]
    T, S = cnt.size, DW.shape[1]
    best = 0.0
    for r in range(T):  # cells given back
        if cnt[r] == 0 or (f0[r] and cnt[r] == 1):
            continue
        for a in range(T):  # cells taking a step
            if a == r or cnt[a] >= S or not np.isfinite(K[a, cnt[a]]):
                continue
            if h["got"][j] - DW[r, cnt[r] - 1] + DW[a, cnt[a]] >= h["tgt"][j] - 1e-6:
                best = max(best, DC[r, cnt[r] - 1] - DC[a, cnt[a]])
    return best


@pytest.mark.parametrize("T", [9, 40])
@pytest.mark.parametrize("by_order", [False, True])
@pytest.mark.parametrize("seed", range(40))
def test_the_exchange_keeps_each_row_whole_and_never_costs_more(seed: int, by_order: bool, T: int,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """On seeded families of hull rows: every cell's steps stay a prefix of its options (a forced slot 0
    keeps its first step), the reported work and cost are those of the steps taken, a row that reaches its
    target still does, a row below it is left alone, the cost never rises, and it is at least as good as
    the best single give-back-one, take-one exchange (brute force). Both ways: every order at once, and
    one order at a time (``_orders_one_by_one``, above ``EXCHANGE_ORDERS_MAX_CELLS``), which give the same
    rows bit for bit; on 9 slots (``_cheapest`` sorts) and 40 (it picks by argmins)."""
    h = _hull_rows(seed, T=T)
    monkeypatch.setattr(PS, "EXCHANGE_ORDERS_MAX_CELLS", 10**9)
    at_once = _run_exchange(h)
    monkeypatch.setattr(PS, "EXCHANGE_ORDERS_MAX_CELLS", 0 if by_order else 10**9)
    cnt, got, cost = _run_exchange(h)
    assert all(np.array_equal(x, y) for x, y in zip((cnt, got, cost), at_once))
    S = h["DW"].shape[2]
    assert ((cnt >= 0) & (cnt <= S)).all()
    assert (cnt[h["K"][:, :, 0] == np.inf] == 0).all(), "a step taken in a cell that is not an option"
    assert (cnt[h["forced0"]] >= 1).all(), "a kept slot 0 turned off"
    taken = np.arange(S)[None, None, :] < cnt[:, :, None]
    assert np.allclose(got, (h["DW"] * taken).sum((1, 2)), rtol=1e-12, atol=1e-6)
    assert np.allclose(cost, (h["DC"] * taken).sum((1, 2)), rtol=1e-12, atol=1e-6)
    reach = h["got"] >= h["tgt"] - 1e-6
    assert (got[reach] >= h["tgt"][reach] - 1e-6).all(), "a row that reached its target no longer does"
    assert (cnt[~reach] == h["cnt"][~reach]).all(), "a row below its target was changed"
    assert (cost <= h["cost"] + 1e-9).all()
    for j in np.flatnonzero(reach):
        assert h["cost"][j] - cost[j] >= _best_pair_gain(h, j) - 1e-6, f"row {j} misses a better exchange"


def _trims_by_row(h: dict[str, Any], surplus: Any) -> tuple[Any, Any, Any, int]:
    """``_best_rows``'s trims row by row (plain loops): up to ``TRIMS`` times, undo the dearest (first of equal)
    last step of a cell that the surplus covers (less the tolerance), of positive cost and not a kept slot 0's
    first; the work, cost and surplus each lowered step by step. Returns ``cnt, got, cost`` and the trims made."""
    cnt, got, cost, sur = h["cnt"].copy(), h["got"].copy(), h["cost"].copy(), surplus.copy()
    made = 0
    for j in range(cnt.shape[0]):  # rows
        for _ in range(PS.TRIMS):  # trims
            best = None
            for t in range(cnt.shape[1]):  # cells
                k = cnt[j, t]
                if k == 0 or (h["forced0"][j, t] and k == 1):
                    continue
                dw, dc = h["DW"][j, t, k - 1], h["DC"][j, t, k - 1]
                if dw <= sur[j] - PS._TOL_W and dc > 0 and (best is None or dc > best[0]):
                    best = (dc, dw, t)
            if best is None:
                break
            dc, dw, t = best
            cnt[j, t] -= 1
            sur[j], got[j], cost[j] = sur[j] - dw, got[j] - dw, cost[j] - dc
            made += 1
    return cnt, got, cost, made


@pytest.mark.parametrize("be", BACKENDS)
def test_the_trims_are_the_row_by_row_trims(be: tuple[str, str]) -> None:
    """``_trims`` (round 20: each cell's last step read and rewritten at flat positions of one (2, n, T) table of
    work and cost) undoes the steps the row-by-row loop does, in its order: the same steps per cell, work and
    cost bit for bit (on rows with one to three trims, some twice in one cell), every backend."""
    from kernels.backend import get_ops

    xp = get_ops(*be)
    made = 0
    for seed in range(12):
        h = _hull_rows(seed, n=8, T=9, S=3)
        # a surplus of up to two of the rows' largest steps (several trims per row, some in one cell)
        surplus = np.random.default_rng(seed).uniform(0.0, 2.2, 8) * h["DW"].max()
        cnt, got, cost, m = _trims_by_row(h, surplus)
        made += m
        a = {k: xp.asarray(h[k], xp.i64 if k == "cnt" else xp.bool_ if k == "forced0" else xp.f64)
             for k in ("DW", "DC", "cnt", "got", "cost", "forced0")}
        out = PS._trims(xp, xp.stack([a["DW"], a["DC"]], 0), a["forced0"], a["cnt"], xp.asarray(surplus, xp.f64),
                        a["got"], a["cost"])
        for x, y in zip(out, (cnt, got, cost)):
            assert np.array_equal(xp.to_numpy(x), y)
    assert made >= 100  # (the rows do trim: 144 trims in these families, 21 cells trimmed twice)


@pytest.mark.parametrize("be", BACKENDS)
def test_min_and_max_are_the_entries_at_argmin_and_argmax(be: tuple[str, str]) -> None:
    """``Ops.min`` / ``Ops.max`` along an axis (round 20: the exchange reads its best cost and gain with them):
    the entries at ``argmin`` / ``argmax``, with ties and infinities, every backend."""
    from kernels.backend import get_ops

    xp = get_ops(*be)
    q = np.random.default_rng(3).integers(-4, 5, (6, 4, 7)).astype(np.float64)
    q[q == 4] = np.inf
    q[q == -4] = -np.inf
    for ax in (0, 1, 2):
        a = xp.asarray(q, xp.f64)
        assert np.array_equal(xp.to_numpy(xp.min(a, ax)), np.take_along_axis(q, q.argmin(ax)[(slice(None),) * ax + (None,)], ax).squeeze(ax))
        assert np.array_equal(xp.to_numpy(xp.max(a, ax)), np.take_along_axis(q, q.argmax(ax)[(slice(None),) * ax + (None,)], ax).squeeze(ax))


@pytest.mark.parametrize("be", BACKENDS)
@pytest.mark.parametrize("T", [5, 9, 40])
def test_cheapest_is_the_stable_sorts_first_k(be: tuple[str, str], T: int) -> None:
    """``_cheapest(q, k)``: the first ``k`` columns of each row's stable argsort (ties by column) and their values,
    where the row has at least ``k`` finite entries (past them any column, valued inf), on (rows, orders, T)
    tables with ties and infinities; both ways (one sort where ``8 k >= T``, ``k`` argmins above), every backend."""
    from kernels.backend import get_ops

    xp = get_ops(*be)
    rng = np.random.default_rng(T)
    for k in (1, 3):
        q = rng.integers(0, 6, (7, 4, T)).astype(np.float64)
        q[rng.random(q.shape) < 0.3] = np.inf
        q[0, 0] = np.inf  # (a row of no finite entry)
        o, v = (xp.to_numpy(x) for x in PS._cheapest(xp, xp.asarray(q, xp.f64), k))
        want = np.argsort(q, -1, kind="stable")[..., :k]
        nfin = np.isfinite(q).sum(-1)[..., None]
        real = np.arange(k)[None, None, :] < nfin
        assert o.shape == v.shape == want.shape
        assert np.array_equal(np.where(real, o, -1), np.where(real, want, -1))
        assert np.array_equal(v, np.where(real, np.take_along_axis(q, want, -1), np.inf))


def test_the_exchange_finds_the_slot_fewer_and_a_level_up() -> None:
    """The case it exists for: four slots at the lowest level where three and a half would do, and one of
    them a level higher is cheaper than the fourth: it ends at the cheapest way to reach the target
    (brute force over every prefix per cell: the three cheapest slots, the cheapest of them a level up)."""
    # one row, 5 cells, steps: 558 work-s for the lowest level, 180 more for the next; costs per cell
    DW = np.broadcast_to(np.array([558.0, 180.0]), (1, 5, 2)).copy()
    DC = np.array([[[146.0, 100.0], [140.0, 96.0], [150.0, 103.0], [160.0, 110.0], [139.0, 95.0]]])
    h = {"DW": DW, "DC": DC, "K": DC / DW, "cnt": np.array([[1, 1, 1, 1, 0]]), "got": np.array([4 * 558.0]),
         "cost": np.array([146.0 + 140 + 150 + 160]), "tgt": np.array([1707.0]), "forced0": np.zeros((1, 5), bool)}
    cnt, got, cost = _run_exchange(h)
    import itertools

    best = min(sum(DC[0, t, :k].sum() for t, k in enumerate(ks)) for ks in itertools.product(range(3), repeat=5)
               if sum(DW[0, t, :k].sum() for t, k in enumerate(ks)) >= 1707.0)
    assert best == 139.0 + 95 + 140 + 146
    assert got[0] == 3 * 558.0 + 180.0 and cost[0] == pytest.approx(best)
    assert (cnt[0] > 0).sum() == 3


def _one_row_response(req: float, need: float, value: float, extra: float, dl: int) -> tuple[Any, float]:
    """``_best_rows`` of one row in 4 slots on given options: levels 1 (10 work-s a slot, 5 g) and 2 (15 work-s,
    9 g: dearer per work), none running now, deadline ``dl``. Returns its new levels and estimated saving."""
    from types import SimpleNamespace

    from kernels.backend import get_ops

    xp = get_ops("numpy")
    T = 4
    C = np.broadcast_to(np.array([0.0, 5.0, 9.0]), (1, T, 3)).copy()
    wk = np.array([[0.0, 10.0, 15.0]])
    opts = (C, wk, np.zeros((1, T), np.int8), np.zeros(1, bool))
    c, d, tb = SimpleNamespace(T=T), SimpleNamespace(dl=np.array([dl])), SimpleNamespace(work=wk)
    f = np.array
    new_sub, saving, _ = PS._best_rows(xp, c, d, tb, None, None, f([0]), f([T]), f([req]), f([need]), f([value]),
                                       f([extra]), opts=opts)
    return new_sub[0], float(saving[0])


def test_a_row_buys_work_up_to_its_need_where_it_costs_less_than_its_value() -> None:
    """A best response keeps what the row must (``req``) and buys more, up to its ``need``, where a step costs
    less per work than the row's ``value`` (0.5 g per work-s at level 1): two slots at level 1 for a need of 20
    work-s and nothing to keep; none where the value is below that cost, or where need is what it keeps (0).
    Before its deadline its work is worth ``extra`` more: a value of 0.4 with 0.3 extra buys the two slots before
    a deadline at slot 2 (round 23: ``_best_rows`` skips the need test where need is req, and the deadline's
    shift where no row has an extra value; this fails where either is skipped where it counts)."""
    lv, sv = _one_row_response(0.0, 20.0, 1.0, 0.0, 4)
    assert (lv == 1).sum() == 2 and (lv == 0).sum() == 2 and sv == pytest.approx(20.0 * 1.0 - 10.0)
    assert not _one_row_response(0.0, 20.0, 0.4, 0.0, 4)[0].any()
    assert not _one_row_response(0.0, 0.0, 1.0, 0.0, 4)[0].any()
    lv, _ = _one_row_response(0.0, 20.0, 0.4, 0.3, 2)
    assert lv.tolist() == [1, 1, 0, 0]


@pytest.mark.parametrize("by_order", [False, True])
@pytest.mark.parametrize("be", BACKENDS[1:])
def test_the_exchange_gives_the_numpy_rows_on_torch(be: tuple[str, str], by_order: bool,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(PS, "EXCHANGE_ORDERS_MAX_CELLS", 0 if by_order else 10**9)
    for seed in range(8):
        h = _hull_rows(seed)
        a, b = _run_exchange(h), _run_exchange(h, *be)
        assert np.array_equal(a[0], b[0]) and np.allclose(a[1], b[1]) and np.allclose(a[2], b[2])


# --- the hull of each cell's options (kernels.powersearch._hull_wc): gift wrapping cell by cell ----------

def _hull_cells(seed: int, rising: bool, n: int = 5, T: int = 8) -> tuple[Any, Any, Any, Any]:
    """Options as ``_options`` gives them: small integer work and costs (many collinear levels: ties of
    slope), some levels not an option (inf), a kept slot 0 on some rows. ``rising``: the work rises with the
    level (one pool's curve); else one pool's table has a level missing (work 0) and one out of order."""
    rng = np.random.default_rng(seed)
    work = np.array([[0.0, 2.0, 4.0, 6.0, 8.0], [0.0, 3.0, 4.0, 6.0, 9.0]] if rising
                    else [[0.0, 2.0, 4.0, 6.0, 8.0], [0.0, 6.0, 0.0, 3.0, 9.0]])
    wk = work[rng.integers(0, 2, n)]
    C = rng.integers(0, 9, (n, T, 5)).astype(float) * rng.choice([1.0, 2.0], (n, T, 1))
    C[:, :, 0] = 0.0
    C[rng.random((n, T, 5)) < 0.25] = np.inf
    C[:, :, 1:][np.broadcast_to(wk[:, None, 1:] == 0, (n, T, 4))] = np.inf
    forced0 = np.zeros((n, T), bool)
    forced0[:, 0] = rng.random(n) < 0.4
    C[forced0, 0] = np.inf
    return C, wk, forced0, work


def _hull_by_cell(C: Any, wk: Any, forced0: Any) -> tuple[Any, Any, Any, Any]:
    """Gift wrapping one cell at a time (plain loops): from (0, 0), each step to the level of the smallest
    cost per work among those of more work (the farthest of equal slopes), as many steps as levels - 1."""
    n, T, V = C.shape
    K, DW, DC, TO = np.full((n, T, V - 1), np.inf), np.zeros((n, T, V - 1)), np.zeros((n, T, V - 1)), np.zeros((n, T, V - 1), np.int64)
    for i in range(n):  # rows
        for t in range(T):  # slots
            cw = cc = 0.0
            cur = 0
            for s in range(V - 1):  # hull steps
                best = None
                for v in range(V):  # levels
                    dw = wk[i, v] - cw
                    if np.isfinite(C[i, t, v]) and dw > 1e-9:
                        sl = (C[i, t, v] - cc) / dw
                        if best is None or sl <= best[0]:
                            best = (sl, v, dw, C[i, t, v] - cc)
                if best is not None:
                    K[i, t, s] = -np.inf if s == 0 and forced0[i, t] else best[0]
                    DW[i, t, s], DC[i, t, s], cur = best[2], best[3], best[1]
                    cw, cc = cw + best[2], cc + best[3]
                TO[i, t, s] = cur
    return K, DW, DC, TO


@pytest.mark.parametrize("by_level", [True, False])
@pytest.mark.parametrize("rising", [True, False])
@pytest.mark.parametrize("seed", range(12))
def test_the_hull_is_the_cell_by_cell_gift_wrap(seed: int, rising: bool, by_level: bool,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Each cell's hull steps (slope, work, cost, level reached) are those of a cell-by-cell gift wrap,
    bit for bit: ties of slope go to the farthest level, and where a pool's work does not rise with the
    level every level stays a candidate at every step; both ways of walking the levels (one table per
    level above ``HULL_LEVELS_MIN_CELLS`` cells, all at once below)."""
    from kernels.backend import get_ops

    monkeypatch.setattr(PS, "HULL_LEVELS_MIN_CELLS", 0 if by_level else 10**9)
    C, wk, forced0, work = _hull_cells(seed, rising)
    got = _hull(get_ops("numpy"), C, wk, forced0, work)
    _same_steps(got, _hull_by_cell(C, wk, forced0))


def _same_steps(got: tuple[Any, ...], ref: tuple[Any, ...]) -> int:
    """``_hull``'s tables ``got`` are the first ``S'`` steps of the gift wrap's ``ref`` (all ``V - 1``), bit for
    bit, and the steps it leaves out are "no step" in every cell (slope inf, no work or cost, the level reached
    as after the last step it keeps); returns ``S'`` (at least 1)."""
    sp = int(np.asarray(got[0]).shape[2])
    assert 1 <= sp <= ref[0].shape[2]
    for a, b in zip(got, ref):
        assert np.asarray(a).shape == b[:, :, :sp].shape and np.array_equal(np.asarray(a), b[:, :, :sp])
    assert (ref[0][:, :, sp:] == np.inf).all() and (ref[1][:, :, sp:] == 0).all() and (ref[2][:, :, sp:] == 0).all()
    assert (ref[3][:, :, sp:] == ref[3][:, :, sp - 1:sp]).all()
    return sp


@pytest.mark.parametrize("by_level", [True, False])
@pytest.mark.parametrize("rising", [True, False])
@pytest.mark.parametrize("top", [0, 1, 2])
def test_the_hull_stops_where_no_cell_takes_a_step(top: int, rising: bool, by_level: bool,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Where no cell has an option above level ``top``, no cell takes a step past its ``top``-th and ``_hull`` stops
    its passes there (the corpus's hulls end by the fourth of six steps) and leaves the steps no cell takes out
    of its tables (round 19: the tables after it a third shorter): the steps it keeps are the cell-by-cell gift
    wrap's, bit for bit, the ones it leaves out "no step" there (slope inf, no work or cost, the level reached),
    and it keeps exactly the steps some cell takes (one where none does)."""
    from kernels.backend import get_ops

    monkeypatch.setattr(PS, "HULL_LEVELS_MIN_CELLS", 0 if by_level else 10**9)
    for seed in range(6):
        C, wk, forced0, work = _hull_cells(seed, rising)
        C[:, :, top + 1:] = np.inf
        ref = _hull_by_cell(C, wk, forced0)
        assert (ref[0][:, :, top:] == np.inf).all() and (ref[3][:, :, -1] > 0).any() == (top > 0)
        got = _hull(get_ops("numpy"), C, wk, forced0, work)
        steps = int(np.isfinite(ref[0]).any((0, 1)).sum())  # (the steps some cell takes: at most top)
        assert steps <= top and _same_steps(got, ref) == max(steps, 1)


@pytest.mark.parametrize("by_level", [True, False])
@pytest.mark.parametrize("be", BACKENDS[1:])
def test_the_hull_gives_the_numpy_steps_on_torch(be: tuple[str, str], by_level: bool,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from kernels.backend import get_ops

    monkeypatch.setattr(PS, "HULL_LEVELS_MIN_CELLS", 0 if by_level else 10**9)
    for seed in range(6):
        C, wk, forced0, work = _hull_cells(seed, seed % 2 == 0)
        xp = get_ops(*be)
        a = _hull(get_ops("numpy"), C, wk, forced0, work)
        b = _hull(xp, xp.asarray(C, xp.f64), xp.asarray(wk, xp.f64), xp.asarray(forced0, xp.bool_), xp.asarray(work, xp.f32))
        for x, y in zip(a, b):
            assert np.allclose(x, xp.to_numpy(y), equal_nan=True) if be[1] != "cpu" else np.array_equal(x, xp.to_numpy(y))


@pytest.mark.parametrize("scale", [1e-310, 1e-300, 1e-3, 1.0, 7e5, 1e300])
def test_the_options_grid_is_the_rounded_quotient_and_keeps_infinities(scale: float) -> None:
    """``_grid``: each finite option the nearest multiple (ties up) of q, the power of two 2^-30 of the
    largest finite magnitude's, bit for bit the rounded quotient ``ceil(a / q - 0.5) * q`` (also where q is
    subnormal); infinities of either sign and -0.0 kept as they are."""
    from kernels.backend import get_ops

    rng = np.random.default_rng(int(-math.log10(scale)) + 400)
    a = rng.normal(size=(30, 24, 5)) * scale
    a[rng.random(a.shape) < 0.2] = np.inf
    a[rng.random(a.shape) < 0.05] = -np.inf
    a[0, 0, 0] = -0.0
    got = np.asarray(PS._grid(get_ops("numpy"), a))
    fin = np.isfinite(a)
    q = 2.0 ** (math.floor(math.log2(np.abs(a[fin]).max())) - 30)
    want = np.where(fin, np.ceil(a / q - 0.5) * q, a)
    assert np.array_equal(got.view(np.int64), want.view(np.int64))
    assert np.array_equal(got[~fin], a[~fin]) and np.signbit(got[0, 0, 0])


# --- shortened non-preemptible blocks (kernels.powersearch._shorten_blocks): seeded families of blocks -----

def _blocks(seed: int, n: int = 6, T: int = 10, empty: bool = False) -> dict[str, Any]:
    """Blocks as ``_best_blocks`` leaves them: levels 0 (off), 1 (low), 2 (high) with the work of an
    H100-class curve, per-cell option costs (some high levels not an option), one unbroken block per row at
    level 1 or 2 doing less than one slot of work more than its need; some rows run now (keep slot 0)."""
    rng = np.random.default_rng(seed)
    wk = np.broadcast_to(np.array([0.0, 558.0, 738.0]), (n, 3)).copy()
    up = np.broadcast_to(np.array([0, 2, 2]), (n, 3)).copy()
    c1 = np.round(rng.uniform(100.0, 200.0, (n, T)), 2)
    C = np.stack([np.zeros((n, T)), c1, np.round(c1 * rng.uniform(1.4, 2.2, (n, T)), 2)], 2)
    C[:, :, 2][rng.random((n, T)) < 0.2] = np.inf
    start = rng.integers(0, 4, n)
    length = rng.integers(2, T - 3, n)
    may_move = rng.random(n) < 0.7
    start = np.where(may_move, start, 0)
    tt = np.arange(T)[None, :]
    blk = (tt >= start[:, None]) & (tt < (start + length)[:, None])
    lv = np.where(np.isfinite(C[:, :, 2]).all(1) & (rng.random(n) < 0.3), 2, 1)
    lvl = np.where(blk, lv[:, None], 0)
    work = (wk[np.arange(n)[:, None], lvl]).sum(1)
    need = work - rng.uniform(0.0, 1.0, n) * wk[:, 1] * 0.999
    key = np.take_along_axis(C, lvl[:, :, None], 2)[:, :, 0].sum(1)
    if empty:  # rows without a block (jobs the plan does not run), as _best_blocks passes them too
        gone = rng.random(n) < 0.4
        gone[0] = True
        blk, lvl = blk & ~gone[:, None], np.where(gone[:, None], 0, lvl)
        need, work, key = np.where(gone, 0.0, need), np.where(gone, 0.0, work), np.where(gone, 0.0, key)
    return {"C": C, "wk": wk, "up": up, "lvl": lvl, "blk": blk, "surplus": work - need, "key": key,
            "may_move": may_move, "need": need}


def _run_shorten(h: dict[str, Any], backend: str = "numpy", device: str = "cpu") -> tuple[Any, Any]:
    from kernels.backend import get_ops

    xp = get_ops(backend, device)
    ty = {"up": xp.i64, "lvl": xp.i64, "blk": xp.bool_, "may_move": xp.bool_}
    a = {k: xp.asarray(v, ty.get(k, xp.f64)) for k, v in h.items() if k != "need"}
    lvl, key = PS._shorten_blocks(xp, a["C"], a["wk"], a["up"], a["lvl"], a["blk"], a["surplus"], a["key"],
                                  a["may_move"])
    return xp.to_numpy(lvl), xp.to_numpy(key)


@pytest.mark.parametrize("seed", range(30))
def test_a_shortened_block_stays_one_block_that_does_the_work(seed: int) -> None:
    """On seeded families of blocks: each row is still one unbroken run inside its old block (a row that
    runs now still starts at slot 0), does at least its need, its reported cost is that of its cells, the
    cost never rises, and it is at least as good as dropping the last cell and raising one other (brute
    force)."""
    h = _blocks(seed)
    lvl, key = _run_shorten(h)
    n, T = lvl.shape
    for j in range(n):
        on = np.flatnonzero(lvl[j] > 0)
        assert on.size and (np.diff(on) == 1).all(), f"row {j}: {lvl[j]} is not one block"
        assert h["blk"][j, on].all(), f"row {j} left its old block"
        assert h["may_move"][j] or lvl[j, 0] > 0, f"row {j} runs now and lost slot 0"
        assert h["wk"][j, lvl[j]].sum() >= h["need"][j] - 1e-6
        assert key[j] == pytest.approx(h["C"][j, np.arange(T), lvl[j]].sum(), rel=1e-12)
        assert key[j] <= h["key"][j] + 1e-9
        best = 0.0
        last = np.flatnonzero(h["blk"][j])[-1]
        for a in np.flatnonzero(h["blk"][j]):  # the one cell raised
            if a == last or lvl[j, a] == 2 and h["lvl"][j, a] == 2 or not np.isfinite(h["C"][j, a, 2]):
                continue
            if h["lvl"][j, a] == 1 and h["surplus"][j] - h["wk"][j, h["lvl"][j, last]] + 180.0 >= -1e-6:
                best = max(best, h["C"][j, last, h["lvl"][j, last]] - (h["C"][j, a, 2] - h["C"][j, a, 1]))
        assert h["key"][j] - key[j] >= best - 1e-6, f"row {j} misses a shorter block"


@pytest.mark.parametrize("be", BACKENDS[1:])
def test_shortened_blocks_are_the_numpy_ones_on_torch(be: tuple[str, str]) -> None:
    for seed in range(8):
        for empty in (False, True):  # with rows that have no block: torch refuses the index -1 numpy wraps
            h = _blocks(seed, empty=empty)
            a, b = _run_shorten(h), _run_shorten(h, *be)
            assert np.array_equal(a[0], b[0]) and np.allclose(a[1], b[1])
            assert not a[0][~h["blk"].any(1)].any()  # a row without a block stays without one


# --- the pair phase (kernels.powersearch._pairs): a donor's watts in a slot to a receiver ------------------

#: the family, and members under pressure (demand near capacity, grid + wind short, tight deadlines): late rows
PAIR_CASES = corpus(16, seed=41, n_jobs=(6, 16), n_slots=(8, 16)) + corpus(
    16, seed=43, n_jobs=(6, 16), n_slots=(8, 16), demand_share=0.9, short_share=0.9, tight_share=0.6)


def _pair_start(i: int, backend: str = "numpy", device: str = "cpu") -> tuple[Any, Any, Any, Any]:
    """Case ``i`` of PAIR_CASES: the prepared inputs and a plan at mixed power levels: the greedy's after
    ``listsched.improve`` and, on odd cases, two rounds of the search (where single rows stop moving)."""
    pb = make(*PAIR_CASES[i])
    s = greedy_start(pb, backend, device)
    sv, sev, _ = L.improve(pb, s.xp, s.c, s.pr, s.d, s.tb, s.gv, s.gp)
    if i % 2:
        sv, pool, sev, _ = PS.power_search(pb, s.xp, s.c, s.pr, s.d, s.tb, sv, s.gp, ev=sev, floor=s.gev, rounds=2)
        s.gp = pool  # the plan's pools (the carbon phase may move a row whole); s.gev stays the greedy's
    return pb, s, sv, sev


def _pair_model_by_hand(s: Any, sv: Any, sev: Any, rows: np.ndarray) -> np.ndarray:
    """The per-slot best gain of _pair_moves's model (its docstring), by loops over every donor move,
    receiver move and other slot (no PAIR_K cut): the slow reference."""
    xp, c, d, tb = s.xp, s.c, s.d, s.tb
    T = c.T
    fin = np.asarray(sev["finished"], bool)[rows]
    need = np.asarray(sev["need_s"], np.float64)[rows]
    got = np.asarray(sev["work_done_s"], np.float64)[rows]
    won = np.asarray(sev["work_on_time_s"], np.float64)[rows]
    late = np.where(c.has_dl[rows] & ~fin, np.maximum(need - won, 0.0), 0.0)
    lim = np.where(c.has_dl[rows] & fin, c.dl[rows], T)
    ri = xp.asarray(rows, xp.i64)
    C, wk, sub, _ = PS._options(xp, c, d, tb, sv, s.gp, ri, xp.asarray(lim, xp.i64))
    Cf, _, _, _ = PS._options(xp, c, d, tb, sv, s.gp, ri, xp.asarray(lim, xp.i64), room_free=True)
    C, Cf, wk, sub = (np.asarray(xp.to_numpy(x), np.float64) for x in (C, Cf, wk, sub))
    sub = sub.astype(np.int64)
    V = wk.shape[1]
    pl = np.asarray(xp.to_numpy(s.gp), np.int64)[rows]
    load = np.asarray(xp.to_numpy(tb.load), np.float64)
    down, up_t, vmin = (np.asarray(xp.to_numpy(x), np.int64) for x in (tb.down, tb.up, tb.vmin))
    _, fac = PL._usage(d, tb, sv, s.gp, xp)
    fac = np.asarray(xp.to_numpy(fac), np.float64)
    cap = np.asarray(xp.to_numpy(d.room_cap), np.float64)
    kappa = np.asarray(xp.to_numpy(d.kappa), np.float64)
    dl = np.asarray(xp.to_numpy(d.dl), np.int64)[rows]
    wind = np.asarray(c.wind_w, np.float64)
    n = rows.size
    value = np.where(fin, 0.0, c.weight[rows] * c.gpus[rows])
    sur = np.maximum(got - need, 0.0)

    def dn(r: int, t: int) -> int:
        v = sub[r, t]
        w = down[pl[r], v]
        return 0 if w == v else int(w)

    def upl(r: int, t: int) -> int:
        v = sub[r, t]
        return int(vmin[pl[r]]) if v == 0 else int(up_t[pl[r], v])

    def watts(r: int, u: int) -> float:
        return float(c.gpus[rows[r]] * load[pl[r], u])

    best = np.full(T, -np.inf)
    for t in range(T):  # slots
        moves_d = []  # (row, loss, watts freed)
        for a in range(n):  # donors
            v = sub[a, t]
            if v == 0 or not np.isfinite(C[a, t, v]):
                continue
            for u in range(v):  # lower levels
                if not (u == 0 or wk[a, u] > 0) or not np.isfinite(C[a, t, u]):
                    continue
                if fin[a]:
                    if u != dn(a, t):
                        continue
                    lose = wk[a, v] - wk[a, u] - sur[a]
                    A = 0.0 if lose <= 1e-6 else np.inf
                    for s2 in range(T):  # the slot the donor buys its work back in
                        u2, w2 = upl(a, s2), sub[a, s2]
                        if s2 != t and u2 != w2 and np.isfinite(C[a, s2, u2]) and np.isfinite(C[a, s2, w2]) \
                                and wk[a, u2] - wk[a, w2] > 1e-9 and wk[a, u2] - wk[a, w2] >= lose - 1e-6 and lose > 1e-6:
                            A = min(A, C[a, s2, u2] - C[a, s2, w2])
                else:
                    A = value[a] * (1.0 + (t < dl[a] and late[a] > 0)) * (wk[a, v] - wk[a, u])
                fa = watts(a, v) - watts(a, u)
                if np.isfinite(A) and fa > 0:
                    moves_d.append((a, A, fa))
        for b in range(n):  # receivers
            w = sub[b, t]
            if not np.isfinite(C[b, t, w]):
                continue
            for u in range(w + 1, V):  # higher levels
                gb = wk[b, u] - wk[b, w]
                if not (wk[b, u] > 0) or not np.isfinite(Cf[b, t, u]) or gb <= 1e-9:
                    continue
                if fin[b]:
                    if u != upl(b, t):
                        continue
                    B = -np.inf
                    for s2 in range(T):  # the slot the receiver gives a step back in
                        w2, d2 = sub[b, s2], dn(b, s2)
                        if s2 != t and w2 > 0 and np.isfinite(C[b, s2, w2]) and np.isfinite(C[b, s2, d2]) \
                                and wk[b, w2] - wk[b, d2] <= sur[b] + gb + 1e-6:
                            B = max(B, C[b, s2, w2] - C[b, s2, d2])
                else:
                    B = value[b] * (min(gb, max(need[b] - got[b], 0.0))
                                    + (t < dl[b] and late[b] > 0) * min(gb, late[b]))
                if not B > 0:
                    continue
                for a, A, fa in moves_d:  # donors
                    if a == b:
                        continue
                    delta = watts(b, u) - watts(b, w) - fa
                    if not (fac[t] + delta <= cap[t] or delta <= 0):
                        continue
                    dc = kappa[t] * (max(fac[t] + delta - wind[t], 0.0) - max(fac[t] - wind[t], 0.0))
                    best[t] = max(best[t], B - A - dc)
    return np.where(best > PS._TOL_G, best, -np.inf)


@pytest.mark.parametrize("i", range(len(PAIR_CASES)))
def test_pair_moves_are_the_best_pairs_of_their_model(i: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """With every donor and receiver tried (PAIR_K >= rows), _pair_moves's gain per slot is the best of
    its model over every donor, receiver and other slot, computed by loops."""
    monkeypatch.setattr(PS, "PAIR_K", 10_000)
    pb, s, sv, sev = _pair_start(i)
    got = PS._pair_candidates(s.xp, s.c, s.d, s.tb, sv, s.gp, sev)
    if got is None:
        pytest.skip("fewer than two rows")
    rows = np.asarray(got[0])
    want = _pair_model_by_hand(s, sv, sev, rows)
    gain = np.asarray(got[1])
    assert np.array_equal(np.isfinite(gain), np.isfinite(want)), (gain, want)
    f = np.isfinite(want)
    np.testing.assert_allclose(gain[f], want[f], rtol=1e-9, atol=1e-9)


def _apply_pair(s: Any, sv: Any, got: tuple[Any, ...], t: int) -> np.ndarray:
    """The plan with slot ``t``'s exchange of ``_pair_candidates`` applied alone (host arrays)."""
    rows, _, a, b, la, lb, sa, las, sb, lbs = (np.asarray(s.xp.to_numpy(x)) for x in got)
    v = np.asarray(s.xp.to_numpy(sv)).copy()
    for who, lt, sx, ls in ((a, la, sa, las), (b, lb, sb, lbs)):  # donor, receiver
        r = rows[int(who[t])]
        v[r, t] = int(lt[t])
        if int(sx[t]) >= 0:
            v[r, int(sx[t])] = int(ls[t])
    return v


@pytest.mark.parametrize("i", range(len(PAIR_CASES)))
def test_a_pair_exchange_alone_is_valid_and_gains_what_it_estimates(i: int) -> None:
    """Every slot's exchange applied alone: the checker passes, the donor stays finished (on time), and the
    exact objective falls by the estimate (exactly where the two other slots differ and the receiver's work
    is not also on time for a deadline: then by at least the estimate)."""
    pb, s, sv, sev = _pair_start(i)
    got = PS._pair_candidates(s.xp, s.c, s.d, s.tb, sv, s.gp, sev)
    if got is None:
        pytest.skip("fewer than two rows")
    rows, gain, a, b = (np.asarray(s.xp.to_numpy(x)) for x in got[:4])
    sa, sb = np.asarray(s.xp.to_numpy(got[6])), np.asarray(s.xp.to_numpy(got[8]))
    tried = 0
    for t in np.flatnonzero(np.isfinite(gain)):  # slots with an exchange
        nv = s.xp.asarray(_apply_pair(s, sv, got, int(t)), s.xp.i8)
        nev = PL._evaluate_plan(pb, s.c, s.pr, nv, s.gp, xp=s.xp, d=s.d)
        assert kernels.check_result(pb, s.result(nv, s.gp, nev)) == []
        lost, late = _late_or_lost(s.c, sev, nev)
        assert lost.size == 0 and late.size == 0
        drop = sev["objective"] - nev["objective"]
        tol = 1e-6 * max(abs(sev["objective"]), 1.0)
        if sa[t] >= 0 and sa[t] == sb[t]:
            continue  # both rows change the same other slot: the estimate is each one's alone
        assert drop == pytest.approx(gain[t], abs=tol), (t, drop, gain[t])
        tried += 1
    assert tried > 0 or not np.isfinite(gain).any()


def test_the_pair_phase_moves_the_family() -> None:
    """Not a no-op: on the family the phase finds exchanges in most cases and lowers the exact objective
    (valid, nothing lost) in some of them."""
    found = lowered = 0
    for i in range(len(PAIR_CASES)):  # cases
        pb, s, sv, sev = _pair_start(i)
        got = PS._pair_candidates(s.xp, s.c, s.d, s.tb, sv, s.gp, sev)
        found += got is not None and bool(np.isfinite(np.asarray(s.xp.to_numpy(got[1]))).any())
        nv, npool, nev, k = PS._pairs(pb, s.xp, s.c, s.pr, s.d, s.tb, sv, s.gp, sev, s.gev)
        if k:
            assert nev["objective"] < sev["objective"]
            assert kernels.check_result(pb, s.result(nv, npool, nev)) == []
            lowered += 1
    assert found >= len(PAIR_CASES) // 2 and lowered >= 3, (found, lowered)


@pytest.mark.parametrize("be", BACKENDS[1:])
def test_pair_moves_are_the_numpy_ones_on_torch(be: tuple[str, str]) -> None:
    """torch: the same exchanges and the same plan after the phase, case by case."""
    for i in range(0, len(PAIR_CASES), 3):  # cases
        outs = []
        for backend, device in (("numpy", "cpu"), be):  # backends
            pb, s, sv, sev = _pair_start(i, backend, device)
            got = PS._pair_candidates(s.xp, s.c, s.d, s.tb, sv, s.gp, sev)
            nv, _, nev, k = PS._pairs(pb, s.xp, s.c, s.pr, s.d, s.tb, sv, s.gp, sev, s.gev)
            outs.append((None if got is None else [np.asarray(s.xp.to_numpy(x)) for x in got[:4]],
                         np.asarray(s.xp.to_numpy(nv)), k))
        (ga, va, ka), (gb, vb, kb) = outs
        assert (ga is None) == (gb is None)
        if ga is not None:
            for x, y in zip(ga, gb):
                np.testing.assert_array_equal(x, y)
        assert ka == kb and np.array_equal(va, vb)


def test_a_plan_the_witness_carries_is_searched_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the greedy witness carries the plan (kernels.plan's fallback), the power search still runs on it:
    the plan stays valid and dominant and emits less carbon than the greedy's (38 and 93 reach 0 g: the wind
    covers the work at lower power). Instances 38, 93 and 184 of the seed-0 corpus of benchmarks/optimizer.py
    were carried by the witness until round 9; the optimiser's own plans carry them now (H3's search of the
    own plan, H1's carry), so the fallback is forced here: no candidate of the optimiser dominates the
    witness (``_dominates_jobs`` answers no outside the power search and the totals rule is off)."""
    real_dom, real_tot, real_refine = PL._dominates_jobs, PL._dominates, PS.refine
    searching = [False]

    def refine(*a: Any, **k: Any) -> Any:
        searching[0] = True
        try:
            return real_refine(*a, **k)
        finally:
            searching[0] = False

    monkeypatch.setattr(PL, "_dominates_jobs", lambda c, a, b: searching[0] and real_dom(c, a, b))
    monkeypatch.setattr(PL, "_dominates", lambda a, b: searching[0] and real_tot(a, b))
    monkeypatch.setattr(PS, "refine", refine)
    cases = corpus(200, seed=0, n_jobs=(8, 32), n_slots=(12, 32))
    for i in (38, 93, 184):
        pb = make(*cases[i])
        res, gr = kernels.plan(pb), kernels.greedy_plan(pb)
        assert res.diagnostics["witness"]["used"] is True
        assert res.diagnostics["primal_variant"] == "greedy_witness+power"
        assert kernels.check_result(pb, res) == []
        assert dominance_failures(outcome(pb, res), outcome(pb, gr)) == []
        assert res.carbon_g_total < 0.5 * gr.carbon_g_total


@pytest.mark.parametrize("seed", range(3))
def test_a_budget_bounds_the_cells_proposed_and_keeps_every_promise(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """``budget`` bounds the row-slot cells the phases propose (counted where every proposal starts,
    ``_options``), whatever the instance: without one the same search proposes more than the budget (so the
    budget binds here), and with it the plan is still valid, its objective not above the start, and it
    still dominates the greedy floor job by job. On 3 seeded family instances of 2, 3 and 4 pools (the carbon
    phase proposes movable rows once per pool). (Seeds 3-5, 2-4 pools again, went in round 12: the budget
    never cut, a row's per-pool proposals not counted, one row past the budget kept each fail seeds 0 and 1
    as they fail 3-5; seed 2 fails the second.)"""
    from benchmarks.instances import Knobs

    pb = make(9100 + seed, Knobs(n_jobs=60, n_slots=48, n_pools=2 + seed % 3, demand_share=0.7))
    s = greedy_start(pb)
    sv, sev, _ = L.improve(pb, s.xp, s.c, s.pr, s.d, s.tb, s.gv, s.gp)
    counted = [0]
    real = PS._options

    def counting(xp: Any, c: Any, d: Any, tb: Any, vmat: Any, pool: Any, rows: Any, *a: Any, **k: Any) -> Any:
        counted[0] += int(rows.shape[0]) * c.T
        return real(xp, c, d, tb, vmat, pool, rows, *a, **k)

    monkeypatch.setattr(PS, "_options", counting)
    PS.power_search(pb, s.xp, s.c, s.pr, s.d, s.tb, sv, s.gp, ev=sev, floor=s.gev, budget=None)
    unlimited = counted[0]
    budget = 20 * 48 * (1 + s.c.P)  # about a third of a carbon phase's rows
    assert unlimited > budget, (unlimited, budget)
    counted[0] = 0
    nv, npool, nev, k = PS.power_search(pb, s.xp, s.c, s.pr, s.d, s.tb, sv, s.gp, ev=sev, floor=s.gev, budget=budget)
    assert 0 < counted[0] <= budget, (counted[0], budget)
    new = s.result(nv, npool, nev)
    assert kernels.check_result(pb, new) == []
    assert nev["objective"] <= sev["objective"] * (1 + 1e-12)
    assert dominance_failures(outcome(pb, new), outcome(pb, s.result(s.gv, s.gp, s.gev))) == []


@pytest.mark.parametrize("be", BACKENDS)
def test_the_cheapest_picks_are_a_stable_sorts_first(be: tuple[str, str]) -> None:
    """``_cheapest`` (the exchange's next steps bought) gives the first ``k`` columns of a stable argsort
    per row and their values, ties by column and infinities last, on every backend: rows of many ties, of
    infinities, of fewer finite entries than ``k``."""
    from kernels.backend import get_ops

    xp = get_ops(*be)
    rng = np.random.default_rng(7)
    q = rng.integers(0, 4, (300, 17)).astype(np.float64)  # many ties
    q[rng.random(q.shape) < 0.3] = np.inf
    q[:20] = np.inf
    q[20:40, 2:] = np.inf  # two finite entries, k = 3
    for k in (1, 3, 17):
        cols, vals = PS._cheapest(xp, xp.asarray(q, xp.f64), k)
        o = np.argsort(q, 1, kind="stable")[:, :k]
        cols_h, vals_h = xp.to_numpy(cols), xp.to_numpy(vals)
        fin = np.isfinite(np.take_along_axis(q, o, 1))
        assert np.array_equal(vals_h, np.take_along_axis(q, o, 1))
        assert np.array_equal(np.where(fin, cols_h, -1), np.where(fin, o, -1))  # past the finite: any column


def test_kernels_plan_gives_the_search_the_instances_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """``refine`` (what ``kernels.plan`` runs) searches with ``search_budget(J, T)``: the full
    ``SEARCH_BUDGET_CELLS`` up to ``SEARCH_BUDGET_KNEE`` job-slot cells, in proportion less above (a 5,000 x
    192 instance half of it, a 10,000 x 192 one a quarter), and the plan is valid and dominant with it. (With
    one start, its search gets all of it; several starts share their own budget,
    :func:`kernels.powersearch.refine_starts`.)"""
    full = PS.SEARCH_BUDGET_CELLS
    assert PS.search_budget(1500, 192) == full
    assert PS.search_budget(5000, 192) == pytest.approx(full * PS.SEARCH_BUDGET_KNEE / 960_000)
    assert PS.search_budget(10_000, 192) < PS.search_budget(5000, 192) < full
    seen: list[float] = []
    real = PS.power_search

    def spy(*a: Any, **k: Any) -> Any:
        seen.append(k["meter"]["left"])  # (refine hands it the cells it may propose)
        return real(*a, **k)

    monkeypatch.setattr(PS, "power_search", spy)
    monkeypatch.setattr(PS, "SEARCH_BUDGET_KNEE", 100)
    monkeypatch.setattr(PS, "REFINE_STARTS", 1)  # (several starts share STARTS_MAX_SPENT: test_the_starts_share_...)
    pb = make(*corpus(200, seed=0, n_jobs=(8, 32), n_slots=(12, 32))[5])
    res, gr = kernels.plan(pb), kernels.greedy_plan(pb)
    assert seen and seen[0] == pytest.approx(full * 100 / (pb.n_jobs * pb.n_slots))
    assert all(x <= seen[0] for x in seen), seen
    assert kernels.check_result(pb, res) == []
    assert dominance_failures(outcome(pb, res), outcome(pb, gr)) == []


@pytest.mark.parametrize("threads", [True, False])
@pytest.mark.parametrize("split", [2, 10_000])
@pytest.mark.parametrize("seed", range(3))
def test_the_responses_in_two_lanes_are_the_calls_one_by_one(seed: int, split: int, threads: bool,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """``_responses`` (the carbon phase's own-pool and move responses, in two lanes, the second on a thread
    where ``planner.CONCURRENT``, here from 0 cells (``THREAD_MIN_CELLS``); there the own-pool rows in two
    parts from ``LANE_SPLIT_ROWS``; without threads all of them in one ``_best_rows`` call,
    ``_responses_one_call``) gives exactly what ``_best_rows`` gives called one by one: the rows' responses
    in their own pools, and per pool the responses of the rows that may move there, saving against their
    current cost in their own pools. On 3 seeded family instances of 3-4 pools."""
    from benchmarks.instances import Knobs

    monkeypatch.setattr(PL, "CONCURRENT", threads)
    monkeypatch.setattr(PS, "THREAD_MIN_CELLS", 0)
    monkeypatch.setattr(PS, "LANE_SPLIT_ROWS", split)
    pb = make(9200 + seed, Knobs(n_jobs=60, n_slots=48, n_pools=3 + seed % 2, demand_share=0.6))
    s = greedy_start(pb)
    xp, c = s.xp, s.c
    ev = s.gev
    finished, need_h, _, on_time = PS._row_status(ev)
    pool_h = xp.to_numpy(s.gp).astype(np.int64)
    rows_h = np.flatnonzero(c.preempt & ~c.must & (c.R > 0) & (pool_h >= 0) & finished & (~c.has_dl | on_time))
    moves = PS._moves(c, pool_h, rows_h)
    assert rows_h.size and moves.any(0).sum() >= 2
    rows = xp.asarray(rows_h, xp.i64)
    lim = np.where(c.has_dl[rows_h], c.dl[rows_h], c.T)
    z = np.zeros(rows_h.size)
    args = (xp.asarray(lim, xp.i64), xp.asarray(need_h[rows_h], xp.f64), xp.asarray(need_h[rows_h], xp.f64),
            xp.asarray(z, xp.f64), xp.asarray(z, xp.f64), None)
    got = PS._responses(xp, c, s.d, s.tb, s.gv, s.gp, rows, args, moves)
    own = PS._best_rows(xp, c, s.d, s.tb, s.gv, s.gp, rows, *args)
    assert sorted(got) == [-1] + [p for p in range(c.P) if moves[:, p].any()]
    for p, (ns, sv, _) in got.items():
        if p < 0:
            ref_ns, ref_sv = own[0], own[1]
        else:
            k = np.flatnonzero(moves[:, p])
            ref_ns, ref_sv, _ = PS._best_rows(xp, c, s.d, s.tb, s.gv, s.gp, rows[k], *(a[k] for a in args[:5]), None,
                                              to_pool=xp.full((k.size,), p, xp.i64), old=(own[2][0][k], own[2][1][k]))
        assert np.array_equal(xp.to_numpy(ns), xp.to_numpy(ref_ns)) and np.array_equal(xp.to_numpy(sv), xp.to_numpy(ref_sv))


#: corpus members (test_corpus's seed-11 corpus) whose plans ran an on-time job past its deadline before
#: the search dropped such tails (2026-12-04, round 8: 52, 84, 100, 184 of its every-4th sample)
TAIL_CASES = (52, 84, 100, 184)


@pytest.mark.parametrize("i", TAIL_CASES)
def test_no_plan_runs_an_on_time_job_past_its_deadline(i: int) -> None:
    """A cell at or after the deadline of a job whose work before it covers its need adds carbon and nothing
    else; the phases cannot move it (no option outside the row's window), so the search drops such tails
    first (``_drop_late_tails``): kernels.plan's plan has none, and is valid."""
    pb = make(*corpus(200, seed=11, n_jobs=(8, 32), n_slots=(12, 32))[i])
    res = kernels.plan(pb)
    assert kernels.check_result(pb, res) == []
    po = outcome(pb, res)
    dl = np.asarray(pb.deadline)
    has = (dl < pb.n_slots) & ~np.asarray(pb.must_run)
    tail = res.run & (np.arange(pb.n_slots)[None, :] >= dl[:, None]) & (has & ~po["late"] & po["finished"])[:, None]
    assert not tail.any(), f"jobs {np.flatnonzero(tail.any(1))} run past their deadline though on time"


def test_dropping_late_tails_keeps_every_job_and_lowers_carbon() -> None:
    """``_drop_late_tails`` on the greedy's plan of case 84 with a cell added past the deadline of up to
    three on-time rows (where the plan stays valid): exactly those cells go, every job keeps its finished and
    on-time state, carbon and objective fall."""
    pb = make(*corpus(200, seed=11, n_jobs=(8, 32), n_slots=(12, 32))[84])
    s = greedy_start(pb)
    c, xp = s.c, s.xp
    dl = np.asarray(pb.deadline)
    # a tail on every on-time deadline row: its last on-time cell's level repeated in the slots after the
    # deadline where that row alone fits the plan's room (checked whole by the checker below)
    v = xp.to_numpy(s.gv).copy()
    _, _, _, on_time = PS._row_status(s.gev)
    rows = np.flatnonzero(c.has_dl & on_time & ~c.must & (c.R > 0) & np.asarray(s.gev["finished"], bool))
    added = 0
    for j in rows[:3]:  # three rows, one cell each: a small hand-made case
        t = int(dl[j])
        if t >= pb.n_slots or not (v[j, :t] > 0).any():
            continue
        trial = v.copy()
        trial[j, t] = v[j, :t][v[j, :t] > 0][-1]
        if kernels.check_result(pb, s.result(xp.asarray(trial), s.gp, PL._evaluate_plan(
                pb, c, s.pr, xp.asarray(trial), s.gp, xp=xp, d=s.d))) == []:
            v, added = trial, added + 1
    assert added, "no tail fits: the case does not exercise the drop"
    tv = xp.asarray(v)
    tev = PL._evaluate_plan(pb, c, s.pr, tv, s.gp, xp=xp, d=s.d)
    nv, nev, k = PS._drop_late_tails(pb, xp, c, s.pr, s.d, tv, s.gp, tev)
    assert k == added
    assert nev["carbon_g"] < tev["carbon_g"] and nev["objective"] < tev["objective"]
    assert np.array_equal(np.asarray(nev["finished"]), np.asarray(tev["finished"]))
    lost, late = _late_or_lost(c, tev, nev)
    assert lost.size == 0 and late.size == 0
    assert np.array_equal(xp.to_numpy(nv), xp.to_numpy(s.gv))
    assert kernels.check_result(pb, s.result(nv, s.gp, nev)) == []



#: test_corpus's seed-11 corpus members where a non-preemptible block is better placed through preemptible
#: work (round 8, kernels.plan's objective: 28 -0.6%, 152 -1.5%, 156 -47%)
DISPLACE_CASES = (28, 152, 156)


def _valid_dominant_plans(monkeypatch: pytest.MonkeyPatch, pb: Any, knob: str, values: tuple[int, ...]
                          ) -> dict[int, Any]:
    """``kernels.plan(pb)`` with ``powersearch.<knob>`` set to each of ``values``: each plan passes the checker
    and dominates the greedy job by job; the plans by value."""
    greedy = outcome(pb, kernels.greedy_plan(pb))
    res = {}
    for value in values:
        monkeypatch.setattr(PS, knob, value)
        r = res[value] = kernels.plan(pb)
        assert kernels.check_result(pb, r) == []
        assert dominance_failures(outcome(pb, r), greedy) == []
    return res


@pytest.mark.parametrize("i", DISPLACE_CASES)
def test_displacing_preemptible_work_places_a_block_better(i: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The search's last move (``_displace``): a non-preemptible block placed where it is cheapest against
    the plan without preemptible work, the work it pushes out placed again and searched. On these cases
    kernels.plan's objective is lower with it than without it (``DISPLACE_ROWS = 0``), and the plan is
    valid and dominates the greedy. (The polish's preemptible-row moves off, ``PREEMPT_POOLS``: on case 28 the polish
    of the plan without the move reaches its objective by moving a preemptible row into another pool; and its block
    stretch off, ``STRETCH_SLOTS``: without the search's displacement it reaches case 28's plan too, round 21.)"""
    pb = make(*corpus(200, seed=11, n_jobs=(8, 32), n_slots=(12, 32))[i])
    monkeypatch.setattr(PS, "PREEMPT_POOLS", False)
    monkeypatch.setattr(PS, "STRETCH_SLOTS", 0)
    on = PS.DISPLACE_ROWS
    res = _valid_dominant_plans(monkeypatch, pb, "DISPLACE_ROWS", (on, 0))
    assert res[on].objective < res[0].objective * (1 - 1e-6), (res[on].objective, res[0].objective)


def test_a_displaced_block_keeps_every_promise_of_the_search() -> None:
    """From the greedy's plan (searched by ``listsched.improve``) of case 152 the move changes the plan: the
    plan stays valid, every job finished (on time) stays so, and it still dominates the greedy."""
    pb = make(*corpus(200, seed=11, n_jobs=(8, 32), n_slots=(12, 32))[152])
    s = greedy_start(pb)
    c, xp = s.c, s.xp
    sv, sev, _ = L.improve(pb, xp, c, s.pr, s.d, s.tb, s.gv, s.gp)
    out = {}
    for displace in (False, True):
        nv, npool, nev, _ = PS.power_search(pb, xp, c, s.pr, s.d, s.tb, sv, s.gp, ev=sev, floor=s.gev,
                                            displace=displace)
        out[displace] = nev["objective"]
        assert kernels.check_result(pb, s.result(nv, npool, nev)) == []
        lost, late = _late_or_lost(c, sev, nev)
        assert lost.size == 0 and late.size == 0
        assert dominance_failures(outcome(pb, s.result(nv, npool, nev)), outcome(pb, s.result(s.gv, s.gp, s.gev))) == []
    assert out[True] < out[False] * (1 - 1e-6), out


#: test_corpus's seed-11 corpus members where GPUs (a tenant's quota, a pool's) hold back more valuable
#: unfinished work (round 9, kernels.plan's objective with and without the gcongest phase: 32 -10.6%,
#: 48 -1.2%, 140 -3.0%)
GCONGEST_CASES = (32, 48, 140)


@pytest.mark.parametrize("i", GCONGEST_CASES)
def test_pricing_scarce_gpus_gives_them_to_more_valuable_work(i: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The gcongest phase: where a pool's free GPUs or a tenant's quota cannot hold unfinished work, every
    GPU-slot there is priced at the most valuable such work per GPU, the rows answer with that price, the
    room freed is refilled at full power and the work phase runs on top. On these cases kernels.plan's
    objective is lower with it than without it, and the plan is valid and dominates the greedy."""
    pb = make(*corpus(200, seed=11, n_jobs=(8, 32), n_slots=(12, 32))[i])
    greedy = outcome(pb, kernels.greedy_plan(pb))
    res = {}
    for on in (True, False):
        monkeypatch.setattr(PS, "PHASES", PS.PHASES if on else tuple(p for p in PS.PHASES if p != "gcongest"))
        r = res[on] = kernels.plan(pb)
        assert kernels.check_result(pb, r) == []
        assert dominance_failures(outcome(pb, r), greedy) == []
    assert res[True].objective < res[False].objective * (1 - 1e-3), (res[True].objective, res[False].objective)


@pytest.mark.parametrize("i", (32, 140))
def test_gpu_prices_are_the_most_valuable_blocked_work_per_gpu(i: int) -> None:
    """``_gpu_price`` against a loop over rows and slots on the greedy's plan: a pool's (a tenant's) price in
    a slot is the largest ``weight x work per GPU-slot at full power`` (twice before a deadline inside the
    horizon) of the unfinished rows that do not run there, may (released, in the horizon), and find fewer
    free GPUs in their pool (less quota left to their tenant) than they need; 0 where none."""
    pb = make(*corpus(200, seed=11, n_jobs=(8, 32), n_slots=(12, 32))[i])
    s = greedy_start(pb)
    c, xp, d, tb = s.c, s.xp, s.d, s.tb
    vmat, pool = xp.to_numpy(s.gv), xp.to_numpy(s.gp).astype(np.int64)
    short = ~np.asarray(s.gev["finished"], bool) & c.preempt & ~c.must & (c.R > 0) & (pool >= 0)
    assert short.any()
    got = PS._gpu_price(xp, c, d, tb, s.gv, s.gp, short)
    assert got is not None
    busy, _ = PL._usage(d, tb, s.gv, s.gp, xp)
    free = np.asarray(d.H) - np.asarray(busy)
    gpus = np.asarray(c.gpus, np.float64)
    used_q = np.zeros((c.quota.size, c.T))
    for j in range(c.J):  # rows
        used_q[c.tenant[j]] += gpus[j] * (vmat[j] > 0)
    want_p, want_q = np.zeros((c.P, c.T)), np.zeros((c.quota.size, c.T))
    work, vfull = np.asarray(tb.work), np.asarray(tb.vfull)
    infeas, rel, dl = np.asarray(d.infeas), np.asarray(d.rel), np.asarray(d.dl)
    for j in np.flatnonzero(short):  # unfinished rows
        p = pool[j]
        for t in range(c.T):  # slots
            if vmat[j, t] or t < rel[j] or infeas[t]:
                continue
            val = c.weight[j] * work[p, vfull[p]] * (2.0 if c.has_dl[j] and t < dl[j] else 1.0)
            if free[p, t] < gpus[j] - 1e-6:
                want_p[p, t] = max(want_p[p, t], val)
            if np.isfinite(c.quota[c.tenant[j]]) and c.quota[c.tenant[j]] - used_q[c.tenant[j], t] < gpus[j] - 1e-9:
                want_q[c.tenant[j], t] = max(want_q[c.tenant[j], t], val)
    np.testing.assert_allclose(xp.to_numpy(got[0]), want_p, rtol=1e-12)
    np.testing.assert_allclose(xp.to_numpy(got[1]), want_q, rtol=1e-12)
    assert (want_p > 0).any() or (want_q > 0).any()


def test_a_running_job_placed_in_another_pool_gets_its_missing_work_there() -> None:
    """kernels.listsched.list_schedule: a running job that a pass before it placed in another eligible pool
    (paying its preemption loss) and that still lacks work is completed in the pool its cells are in. It was
    sent back to its running pool with those cells (round 9: kernels.complete's displacement plans of
    test_corpus's s1100066 then put 36 GPUs in a 32-GPU pool, once the gcongest phase changed the plan they
    start from)."""
    pb = make(*CASES[2])
    s = greedy_start(pb)
    c, xp, d, tb = s.c, s.xp, s.d, s.tb
    r = 9
    p0 = int(c.rpool[r])
    p1 = int(next(p for p in np.flatnonzero(c.eligible[r]) if p != p0))
    assert c.preempt[r] and not c.must[r]
    v = np.zeros((c.J, c.T), np.int8)
    v[r, 1] = int(np.asarray(tb.vfull)[p1])
    pool = np.full(c.J, -1, np.int32)
    pool[r] = p1
    rank = L.edf_rank(xp, c, d)
    cost = xp.asarray(np.broadcast_to(c.kappa[None, :], (c.P, c.T)).copy(), xp.f64)
    nv, npool = L.list_schedule(xp, c, d, tb, xp.asarray(v), xp.asarray(pool), rank, cost)
    nv, npool = xp.to_numpy(nv), xp.to_numpy(npool)
    assert npool[r] == p1 and nv[r, 1] > 0 and (nv[r] > 0).sum() > 1
    busy, _ = PL._usage(d, tb, xp.asarray(nv), xp.asarray(npool), xp)
    assert (np.asarray(busy) <= np.asarray(d.H) + 1e-6).all()


#: list_schedule's table-size switches (kernels.listsched), each set to take its large-table path on every call
LARGE_PATHS = {"FIRST_K_CUMSUM_MAX_CELLS": -1, "ACCEPT_MATRIX_MAX_CELLS": -1, "BY_POOL_MIN_CELLS": 0,
               "ROOM_PER_ROW_MAX_CELLS": -1}


def _list_schedules(s: Any, seed: int) -> list[tuple[Any, Any, Any]]:
    """Two list schedules of a greedy start ``s``: the EDF greedy from its must-run rows (48 rounds, grid carbon
    order) and the completion's (the greedy plan with every other preemptible row and every third
    non-preemptible one emptied, then placed again at the lowest level in a seeded price order that differs
    per pool, the plan's usage carried). Returns ``(vmat, pool, use.done)`` of each (``None`` for the first)."""
    c, xp, d, tb = s.c, s.xp, s.d, s.tb
    out = [(*L.greedy_vmat(xp, c, s.pr, d, tb), None)]
    v = xp.to_numpy(s.gv).copy()
    pool = xp.to_numpy(s.gp).astype(np.int64)
    drop = ~c.must & ((c.preempt & (np.arange(c.J) % 2 == 0)) | (~c.preempt & (np.arange(c.J) % 3 == 0)))
    v[drop] = 0
    pool[drop & (c.rpool < 0)] = -1
    vd, pd = xp.asarray(v), xp.asarray(pool)
    use = PL._use_of(d, tb, vd, pd, xp)
    cost = xp.asarray(np.random.default_rng(seed).integers(1, 6, (c.P, c.T)).astype(np.float64) * 0.37, xp.f64)
    nv, npool = L.list_schedule(xp, c, d, tb, vd, pd, L.edf_rank(xp, c, d), cost, lowest=True, use=use)
    out.append((nv, npool, use.done))
    return out


@pytest.mark.parametrize("be", BACKENDS)
def test_list_schedules_are_the_same_on_the_small_and_the_large_table_paths(
        be: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """kernels.listsched.list_schedule switches by table size (round 20): the first cells of a row by one running
    count or Ops.count_upto, the acceptance's prefixes by (n, n) products or the planner's prefix sums, the
    rows in their pools' slot orders and their costs for every pool at once or pool by pool (the late cells
    for every row or only the rows that take some), a slot's room per row or per distinct GPU count. The
    corpus's small tables take the first of each; with every switch set to the second the same plans, usage
    and work, on cases with several pools, quotas, non-preemptible and deadline jobs."""
    kinds = {"pools": False, "quota": False, "np": False, "deadline": False}
    for i in range(6):  # cases
        s = greedy_start(make(*CASES[i]), *be)
        c = s.c
        kinds["pools"] |= c.P > 1
        kinds["quota"] |= bool(np.isfinite(c.quota).any())
        kinds["np"] |= bool((~c.preempt & ~c.must).any())
        kinds["deadline"] |= bool(c.has_dl.any())
        small = _list_schedules(s, i)
        with monkeypatch.context() as m:
            for name, value in LARGE_PATHS.items():  # (each switch exists: a renamed one fails here)
                assert hasattr(L, name), name
                m.setattr(L, name, value)
            large = _list_schedules(s, i)
        xp = s.xp
        for (va, pa, ua), (vb, pb_, ub) in zip(small, large):  # the greedy's, the completion's
            assert np.array_equal(xp.to_numpy(va), xp.to_numpy(vb)), i
            assert np.array_equal(xp.to_numpy(pa), xp.to_numpy(pb_)), i
            assert ua is None or np.array_equal(xp.to_numpy(ua), xp.to_numpy(ub)), i
        assert np.count_nonzero(xp.to_numpy(small[1][0])) > np.count_nonzero(xp.to_numpy(small[0][0])) // 3, i
    assert all(kinds.values()), kinds


@pytest.mark.parametrize("be", BACKENDS)
def test_list_schedules_on_torch_are_the_numpy_ones(be: tuple[str, str]) -> None:
    """kernels.listsched.list_schedule on torch (round 20: every pool's proposals at once, the acceptance's
    prefixes by products): the numpy plans, usage and work of both list schedules of each case."""
    for i in range(6):  # cases
        pb = make(*CASES[i])
        want = _list_schedules(greedy_start(pb), i)
        s = greedy_start(pb, *be)
        for (va, pa, ua), (vb, pb_, ub) in zip(want, _list_schedules(s, i)):  # the greedy's, the completion's
            assert np.array_equal(va, s.xp.to_numpy(vb)), i
            assert np.array_equal(pa, s.xp.to_numpy(pb_)), i
            assert ua is None or np.array_equal(ua, s.xp.to_numpy(ub)), i


def _plain_keys(cost: np.ndarray, feas: np.ndarray, okp: np.ndarray, ns: np.ndarray, nw: np.ndarray,
                dl: np.ndarray, npre: np.ndarray, rel: np.ndarray, rp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """list_schedule's proposals by their definition (kernels.listsched's docstring), pool by pool and row by
    row: a preemptible row its first feasible cells in the pool's (stable) slot order, ``nw`` on-time ones then
    late ones up to ``ns`` in all, keyed by slots short, late ones, then cost; a non-preemptible one its first
    cheapest block of ``ns`` slots (cut off at the horizon end; from its release, a running one at slot 0) by
    slots cut off, late, then cost."""
    P, n, T = feas.shape
    key = np.full((P, n), np.inf)
    cells = feas.copy()
    for p in range(P):  # pools
        order = np.argsort(cost[p], kind="stable")
        for i in np.flatnonzero(okp[p]):  # rows
            if not npre[i]:
                on = [t for t in order if feas[p, i, t] and t < dl[i]][: int(nw[p, i])]
                late = [t for t in order if feas[p, i, t] and t >= dl[i]][: max(int(ns[p, i]) - len(on), 0)]
                take = on + late
                if take:
                    short = max(ns[p, i], nw[p, i]) - len(take)
                    key[p, i] = short * 1e15 + len(late) * 1e12 + sum(cost[p, t] for t in take)
                continue
            nb = int(ns[p, i])
            cells[p, i] = False
            for t in range(T):  # starts
                end = min(t + nb, T)
                if nb <= 0 or t < rel[i] or (rp[i] >= 0 and t > 0) or not feas[p, i, t:end].all():
                    continue
                k = (t + nb - end) * 1e15 + (t + nb > dl[i]) * 1e12 + sum(cost[p, t:end])
                if k < key[p, i]:
                    key[p, i] = k
                    cells[p, i] = False
                    cells[p, i, t:end] = True
    return key, cells


@pytest.mark.parametrize("be", BACKENDS)
@pytest.mark.parametrize("seed", range(24))
def test_every_pools_proposals_at_once_are_their_plain_definition(be: tuple[str, str], seed: int,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """kernels.listsched._proposals (round 20: every (pool, row) pair's proposal in one batch) against the
    definition pool by pool and row by row: the same keys (the costs on list_schedule's grid: every sum exact)
    and cells, on random feasible cells, pools a row may not use, deadlines inside and at the horizon end,
    rows short of more on-time slots than slots, non-preemptible rows (running ones start at slot 0; on every
    fourth seed none of them may use a pool), slot orders with ties; both table-size paths (``BY_POOL_MIN_CELLS``)."""
    from types import SimpleNamespace

    from kernels.backend import get_ops

    rng = np.random.default_rng(9100 + seed)
    P, n, T = int(rng.integers(1, 5)), int(rng.integers(1, 12)), int(rng.choice([1, 5, 16, 24]))
    xp = get_ops(*be)
    cost = L._grid(xp, xp.asarray(rng.integers(0, 4, (P, T)) * rng.uniform(0.5, 3.0), xp.f64))
    tb = SimpleNamespace(vmin=xp.asarray(np.zeros(P, np.int8)), vfull=xp.asarray(np.ones(P, np.int8)),
                         work=xp.asarray(rng.uniform(1, 3, (P, 2)).astype(np.float32)),
                         load=xp.asarray(rng.uniform(100, 400, (P, 2)).astype(np.float32)))
    k = L._Slots(xp, SimpleNamespace(P=P, T=T, infeas=np.zeros(T, dtype=bool)), tb, cost, False)  # no closed slot
    feas = rng.random((P, n, T)) < rng.uniform(0.2, 0.9)
    okp = rng.random((P, n)) < 0.7
    ns = rng.integers(1, T + 2, (P, n)).astype(np.float64)
    nw = ns + rng.integers(0, 3, (P, n)) * (rng.random((P, n)) < 0.3)
    dl = np.where(rng.random(n) < 0.4, T, rng.integers(0, T + 1, n)).astype(np.int64)
    npre = rng.random(n) < (0.0 if seed % 4 == 0 else 0.4)
    rel = rng.integers(0, max(T // 2, 1), n).astype(np.int64)
    rp = np.where(rng.random(n) < 0.3, rng.integers(0, P, n), -1).astype(np.int64)
    rel[rp >= 0] = 0  # (a running job is released)
    # non-preemptible rows: short blocks in mostly feasible slots (most of them have a block somewhere)
    ns[:, npre] = rng.integers(1, 5, (P, int(npre.sum())))
    feas[:, npre] |= rng.random((P, int(npre.sum()), T)) < 0.6
    if seed % 4 == 1:  # non-preemptible rows that may use no pool (a running one whose pool it may not use)
        okp[:, npre] = False
    want_key, want_cells = _plain_keys(xp.to_numpy(cost), feas, okp, ns, nw, dl, npre, rel, rp)
    for by_pool in (False, True):  # both table-size paths
        monkeypatch.setattr(L, "BY_POOL_MIN_CELLS", 0 if by_pool else 1 << 30)
        npend = np.full(n, T, np.int64)  # (no later slot ends a running block: kernels.check.running_blocks)
        args = [xp.asarray(a) for a in (feas.copy(), okp, ns, nw, dl, npre, rel, rp, npend)]
        key, cells = L._proposals(xp, k, *args)
        key = xp.to_numpy(key)
        assert np.array_equal(np.isfinite(key), np.isfinite(want_key))
        assert np.array_equal(key[np.isfinite(key)], want_key[np.isfinite(want_key)])
        got = xp.to_numpy(cells).reshape(P, n, T)
        fin = np.isfinite(want_key)  # (cells of a pair without a proposal are never read)
        assert np.array_equal(got[fin], want_cells[fin])


def test_the_completion_searches_its_lowest_displacement_even_above_the_plan() -> None:
    """kernels.complete: the power-level search runs on the lowest displacement try whether or not that
    unsearched try already beats the plan. On the seed-0 corpus's member 62 the searched plan the pass
    receives (gcongest lowered it) is below every unsearched try; the searched try still wins by 6%
    (kernels.plan's variant ends with "+displace+power"; with the old gate the pass returned the plan it got)."""
    pb = make(*corpus(200, seed=0, n_jobs=(8, 32), n_slots=(12, 32))[62])
    r = kernels.plan(pb)
    assert kernels.check_result(pb, r) == []
    assert dominance_failures(outcome(pb, r), outcome(pb, kernels.greedy_plan(pb))) == []
    assert r.diagnostics["primal_variant"].endswith("+displace+power"), r.diagnostics["primal_variant"]


#: seed-0 corpus instances where the search from a candidate other than the lowest ends lowest (round 10:
#: penalised gap to the LP with one start / with REFINE_STARTS: 18 3.44% / 0.69%, 44 4.22% / 2.65%; 157 left
#: in round 13: since running jobs may move pools in the carbon phase one start ends where four do, 24,353 g,
#: below both of round 12's, 25,254 and 24,530 g)
STARTS_CASES = (18, 44)
#: the starts these tests ask for (``REFINE_STARTS``, 4 by default again since round 11: the later starts metered)
MANY_STARTS = 4


@pytest.mark.parametrize("i", STARTS_CASES)
def test_searching_from_several_candidates_ends_lower(i: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """kernels.plan runs the power search from up to ``REFINE_STARTS`` distinct candidate plans and keeps the
    lowest: on these cases its objective is lower than with one start (the lowest candidate's), and the
    plan is valid and dominates the greedy."""
    pb = make(*corpus(200, seed=0, n_jobs=(8, 32), n_slots=(12, 32))[i])
    many = MANY_STARTS
    res = _valid_dominant_plans(monkeypatch, pb, "REFINE_STARTS", (many, 1))
    assert res[many].objective < res[1].objective * (1 - 1e-2), (res[many].objective, res[1].objective)


def test_the_starts_are_distinct_plans_lowest_first_and_one_past_the_cells(monkeypatch: pytest.MonkeyPatch) -> None:
    """``refine_starts`` searches each distinct candidate once (a plan listed twice is searched once), at
    most ``REFINE_STARTS`` of them in objective order (then, with cells left, the lowest plan once more), only
    the lowest past ``STARTS_MAX_CELLS``, and returns the searched plans lowest objective first."""
    monkeypatch.setattr(PS, "REFINE_STARTS", MANY_STARTS)
    pb = make(*CASES[3])
    s = greedy_start(pb, "numpy", "cpu")
    xp, c = s.xp, s.c
    iv, iev, moved = L.improve(pb, xp, c, s.pr, s.d, s.tb, s.gv, s.gp)
    assert moved
    cands = [(iev["objective"], iv, s.gp, iev, "improved"), (s.gev["objective"], s.gv, s.gp, s.gev, "greedy"),
             (iev["objective"], xp.copy(iv), xp.copy(s.gp), iev, "improved again")]
    seen: list[str] = []
    real = PS.refine

    def spy(*a: Any, **k: Any) -> Any:
        seen.append(a[-1])
        return real(*a, **k)

    monkeypatch.setattr(PS, "refine", spy)
    outs = PS.refine_starts(pb, xp, c, s.pr, s.d, s.tb, cands, s.gev)
    assert seen[:2] == ["improved", "greedy"] and len(seen) <= 3, seen  # (then the lowest plan, with cells left)
    assert [o[2]["objective"] for o in outs] == sorted(o[2]["objective"] for o in outs)
    seen.clear()
    monkeypatch.setattr(PS, "STARTS_MAX_CELLS", c.J * c.T - 1)
    PS.refine_starts(pb, xp, c, s.pr, s.d, s.tb, cands, s.gev)
    assert seen == ["improved"]


def _steps_of_the_starts(monkeypatch: pytest.MonkeyPatch, i: int, bound: float | None = None
                         ) -> tuple[list[float], list[tuple[bool, float]], list[float]]:
    """``refine_starts`` on seed-31 case ``i`` from three distinct candidates (the EDF greedy's plan moved by
    the price search with one round and with its default rounds, the greedy's plan itself) with a completion
    that returns its plan as it is, recorded: the objectives of the plans each search started from, the
    completions in order (first flag, objective), and the candidates' objectives. ``bound``: the lower bound
    passed on."""
    monkeypatch.setattr(PS, "REFINE_STARTS", MANY_STARTS)
    pb = make(*CASES[i])
    s = greedy_start(pb)
    xp, c = s.xp, s.c
    cands = [(s.gev["objective"], s.gv, s.gp, s.gev, "greedy")]
    for rounds in (1, L.IMPROVE_ROUNDS):  # (a few)
        iv, iev, _ = L.improve(pb, xp, c, s.pr, s.d, s.tb, s.gv, s.gp, rounds=rounds)
        cands.append((iev["objective"], iv, s.gp, iev, f"improved{rounds}"))
    searched: list[float] = []
    completed: list[tuple[bool, float]] = []
    real = PS.refine

    def spy(*a: Any, **k: Any) -> Any:
        searched.append(float(a[8]["objective"]))
        return real(*a, **k)

    def finish(v: Any, p: Any, e: dict[str, Any], first: bool, m: dict[str, float]) -> Any:
        completed.append((first, float(e["objective"])))
        return v, p, e, ""

    monkeypatch.setattr(PS, "refine", spy)
    PS.refine_starts(pb, xp, c, s.pr, s.d, s.tb, cands, s.gev, finish=finish, bound=bound)
    return searched, completed, sorted(x[0] for x in cands)


def test_the_lowest_plan_is_not_searched_again_where_a_search_ended_on_it_settled(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``refine_starts`` searches the lowest plan once more with the cells left only where no search ended on it
    settled (``_settled``, round 14): on seed-31 case 3 every search starts from a candidate, each once, and the
    lowest plan returned is one a search of it returns as it is (searches run until a round moves no row,
    ``STALL_GAIN = 0``: a search that stalls does not end settled, and the last search runs)."""
    monkeypatch.setattr(PS, "STALL_GAIN", 0.0)
    searched, completed, cands = _steps_of_the_starts(monkeypatch, 3)
    assert len(set(cands)) == 3 and len(searched) >= 2, (cands, searched)
    assert len(searched) == len(set(searched)) and set(searched) <= set(cands), (searched, cands)
    assert completed[0][0] and not any(f for f, _ in completed[1:]), completed
    pb = make(*CASES[3])
    s = greedy_start(pb)
    cand = [(s.gev["objective"], s.gv, s.gp, s.gev, "greedy")]
    low = PS.refine_starts(pb, s.xp, s.c, s.pr, s.d, s.tb, cand, s.gev)[0]
    again = PS.power_search(pb, s.xp, s.c, s.pr, s.d, s.tb, low[0], low[1], ev=low[2], floor=s.gev, meter={"left": 1e9})
    assert again[3] == 0 and again[2]["objective"] == low[2]["objective"], (again[3], again[2]["objective"])


@pytest.mark.parametrize("i", (3, 5))
def test_a_search_that_ends_settled_returns_that_plan_searched_again(i: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A search that leaves ``meter["settled"]`` True ended on a plan a search of it returns as it is, cell for
    cell (what ``_settled`` lets ``refine_starts`` skip); one round of the phases does not settle the greedy's
    plan of two seed-31 cases, the full search does (until a round moves no row: ``STALL_GAIN = 0``; a search
    that stalls is not settled)."""
    monkeypatch.setattr(PS, "STALL_GAIN", 0.0)
    pb = make(*CASES[i])
    s = greedy_start(pb)
    xp = s.xp
    got = []
    for rounds in (1, PS.POWER_ROUNDS):
        m: dict[str, Any] = {"left": 1e9}
        v, p, e, _ = PS.power_search(pb, xp, s.c, s.pr, s.d, s.tb, s.gv, s.gp, ev=s.gev, floor=s.gev, rounds=rounds,
                                     meter=m)
        v2, p2, e2, k2 = PS.power_search(pb, xp, s.c, s.pr, s.d, s.tb, v, p, ev=e, floor=s.gev, rounds=rounds,
                                         meter={"left": 1e9})
        got.append(m["settled"])
        if m["settled"]:
            assert k2 == 0 and e2["objective"] == e["objective"], (rounds, k2)
            assert np.array_equal(xp.to_numpy(v2), xp.to_numpy(v)) and np.array_equal(xp.to_numpy(p2), xp.to_numpy(p))
    assert got == [False, True], got


def test_a_later_start_searched_far_above_the_lowest_plan_is_not_completed(monkeypatch: pytest.MonkeyPatch) -> None:
    """A later start's searched plan more than ``STARTS_COMPLETE_ABOVE`` above the lowest plan completed so far
    is not completed (round 14: from past 20% none won; the completion is the costly part of a step): with the
    share just below where the first later start's searched plan that is completed lies (relative to the lowest
    plan completed before it) it is not completed, just above it is."""
    monkeypatch.setattr(PS, "STARTS_COMPLETE_ABOVE", math.inf)
    _, completed, cands = _steps_of_the_starts(monkeypatch, 3)
    k = next(k for k in range(1, len(completed)) if completed[k][1] not in cands)  # (searched: it moved)
    best, second = min(o for _, o in completed[:k]), completed[k][1]
    share = (second - best) / abs(best)
    for delta, taken in ((-1e-6, False), (1e-6, True)):
        monkeypatch.setattr(PS, "STARTS_COMPLETE_ABOVE", share + delta)
        _, got, _ = _steps_of_the_starts(monkeypatch, 3)
        assert (second in [o for _, o in got[1:]]) is taken, (share, delta, got)


def test_the_later_starts_run_only_where_the_first_plan_is_not_certified_near(monkeypatch: pytest.MonkeyPatch) -> None:
    """The later starts run only where the first start's completed plan is more than ``STARTS_LATER_GAP`` above the
    lower bound (round 14: below it they can gain at most that share) or leaves work undone: on seed-31 case 10
    (its first plan does all its work) with a bound just within the share of the first plan only the first start
    is searched and completed, with one just past it the later ones run too; on case 3 (its first plan leaves work
    undone) they run within the share too."""
    searched, completed, _ = _steps_of_the_starts(monkeypatch, 10)
    assert len(searched) >= 2 and len(completed) >= 2, (searched, completed)
    first = completed[0][1]
    for share, later in ((PS.STARTS_LATER_GAP * 0.99, False), (PS.STARTS_LATER_GAP * 1.01, True)):
        got_s, got_c, _ = _steps_of_the_starts(monkeypatch, 10, bound=first - share * abs(first))
        assert (len(got_s) > 1 and len(got_c) > 1) is later, (share, got_s, got_c)
    first = _steps_of_the_starts(monkeypatch, 3)[1][0][1]
    got_s, got_c, _ = _steps_of_the_starts(monkeypatch, 3, bound=first * (1 - PS.STARTS_LATER_GAP / 2))
    assert len(got_s) > 1 and len(got_c) > 1, (got_s, got_c)


def test_each_plan_is_completed_before_and_after_the_search(monkeypatch: pytest.MonkeyPatch) -> None:
    """With several starts, kernels.plan completes (kernels.complete) every distinct plan among the starts and their searched
    plans and keeps the lowest: on seed-0 corpus-178 a start completed before its search ends at 113,186
    (round 10), where round 9's plan (the lowest start searched, then completed) was 183,536. (Its first start
    spends 133k cells, past the default ``STARTS_MAX_SPENT``: the cap is lifted here.)"""
    monkeypatch.setattr(PS, "REFINE_STARTS", MANY_STARTS)
    monkeypatch.setattr(PS, "STARTS_MAX_SPENT", 1e12)
    pb = make(*corpus(200, seed=0, n_jobs=(8, 32), n_slots=(12, 32))[178])
    res = kernels.plan(pb)
    assert kernels.check_result(pb, res) == []
    assert dominance_failures(outcome(pb, res), outcome(pb, kernels.greedy_plan(pb))) == []
    assert res.objective < 0.8 * 183_536, res.objective


@pytest.mark.parametrize("i", [3, 19])
def test_remembered_work_phases_give_the_same_search(i: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The work phase remembered per search (``_work_phase``: a plan it has run on gets the result of then)
    gives the search without the memo (``MEMO_MAX_CELLS = 0``), cell for cell: the same plan, pools,
    objective, rows changed and cells left on the meter, with a budget that does not bind and with one that
    does (half the cells the search proposes without one: the phases it cuts are not remembered); and the
    memo is used (fewer work phases run). Two cases of the seed-31 corpus whose congest halvings refill to
    plans the work phase has already run on. (The bound is half the cells of the search without one, with
    the memo and without: one test per case since round 12, the unbounded searches run once, not twice; the
    bounded case's work phases are counted with the unbounded search's, as when it ran that search itself.)"""
    pb = make(*CASES[i])
    s = greedy_start(pb)
    real, calls = PS._phase, [0]

    def counting(*a: Any, **k: Any) -> Any:
        calls[0] += a[9] == "work"
        return real(*a, **k)

    monkeypatch.setattr(PS, "_phase", counting)
    half, before = {}, {}  # per memo setting: half the unbounded search's cells, its work phases
    memo_on = PS.MEMO_MAX_CELLS
    for bound in (False, True):
        got = []
        for memo_cells in (memo_on, 0):
            monkeypatch.setattr(PS, "MEMO_MAX_CELLS", memo_cells)
            calls[0] = before[memo_cells] if bound else 0
            meter: dict[str, Any] = {"left": half[memo_cells] if bound else 1e9}
            nv, npool, nev, k = PS.power_search(pb, s.xp, s.c, s.pr, s.d, s.tb, s.gv, s.gp, ev=s.gev, floor=s.gev,
                                                meter=meter)
            if not bound:
                half[memo_cells], before[memo_cells] = (1e9 - meter["left"]) / 2, calls[0]
            got.append((s.xp.to_numpy(nv), s.xp.to_numpy(npool), nev["objective"], k, meter["left"], calls[0]))
        (v1, p1, o1, k1, l1, n1), (v0, p0, o0, k0, l0, n0) = got
        assert np.array_equal(v1, v0) and np.array_equal(p1, p0) and (o1, k1, l1) == (o0, k0, l0), bound
        assert n1 < n0, (bound, n1, n0)


def test_remembered_phases_give_the_same_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every phase remembered per search (``_remembered``: the carbon, blocks, congest and pair phases too, not
    only the work phase) gives kernels.plan's plan without the memos (``MEMO_MAX_CELLS = 0``) cell for cell:
    the same run, levels, pools, objective and search cells (a remembered result charges the meter what the
    call charged then), and fewer of those phases run (seed-0 corpus-65: the searches ``_displace`` runs and
    the later starts reach plans an earlier search ran its phases on)."""
    pb = make(*corpus(200, seed=0, n_jobs=(8, 32), n_slots=(12, 32))[65])
    real_phase, real_pairs, calls = PS._phase, PS._pairs, [0]

    def phase(*a: Any, **k: Any) -> Any:
        calls[0] += a[9] != "work"
        return real_phase(*a, **k)

    def pairs(*a: Any, **k: Any) -> Any:
        calls[0] += 1
        return real_pairs(*a, **k)

    monkeypatch.setattr(PS, "_phase", phase)
    monkeypatch.setattr(PS, "_pairs", pairs)
    (a, na), (b, nb) = _with_and_without_memos(monkeypatch, pb, calls)
    assert a.objective == b.objective and np.array_equal(a.run, b.run)
    assert np.array_equal(a.power_fraction, b.power_fraction) and np.array_equal(a.pool, b.pool)
    assert a.diagnostics["search_cells"] == b.diagnostics["search_cells"]
    assert na < nb, (na, nb)


def _with_and_without_memos(monkeypatch: pytest.MonkeyPatch, pb: Any, calls: list[int]) -> list[tuple[Any, int]]:
    """``kernels.plan(pb)`` with the search's memos (``MEMO_MAX_CELLS`` as it is) and without (0), each with the
    count the caller's spy keeps in ``calls[0]`` during that plan."""
    got = []
    for memo in (PS.MEMO_MAX_CELLS, 0):
        monkeypatch.setattr(PS, "MEMO_MAX_CELLS", memo)
        calls[0] = 0
        got.append((kernels.plan(pb), calls[0]))
    return got


def _spy_meters(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, float]]:
    """The meters ``kernels.plan``'s searches draw on (:func:`kernels.powersearch.refine`'s ``meter``), each once,
    in the order first used: the first start's (unlimited, counted), then the later starts'."""
    meters: list[dict[str, float]] = []
    real = PS.refine

    def spy(*a: Any, **k: Any) -> Any:
        m = k.get("meter")
        if m is not None and not any(m is x for x in meters):
            meters.append(m)
        return real(*a, **k)

    monkeypatch.setattr(PS, "refine", spy)
    return meters


def _overrun(cells: int) -> float:
    """The most a meter can pass its budget by: a search stops starting phases once its cells are spent, but
    the phase that spends the last of them still charges its tries (each a refill and the work phase's call
    in a congest phase), and a block displacement ``J x T`` when it starts."""
    return (PS.HALVINGS + 1) * (PS.TRY_CELLS + PS.REFILL_CELLS + PS.PHASE_CELLS) + PS.PHASE_CELLS + cells


@pytest.mark.parametrize("i", (18, 57))
def test_the_starts_share_one_budget(i: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """With several starts every search (the starts', their completions', the last one on the lowest plan)
    draws on one meter of ``STARTS_MAX_SPENT`` cells (round 12: four starts with only the later ones metered
    spent up to 8.7 s CPU on seed-0 corpus-11, the first start alone up to 6.5 s); the cells a search left
    unspent go to the ones after it. A cap of a few cells still gives a valid plan that dominates the greedy."""
    monkeypatch.setattr(PS, "REFINE_STARTS", MANY_STARTS)
    pb = make(*corpus(200, seed=0, n_jobs=(8, 32), n_slots=(12, 32))[i])
    slack = _overrun(pb.n_jobs * pb.n_slots)
    spent: list[float] = []
    real = PS.refine
    meters: list[dict[str, Any]] = []

    def spy(*a: Any, **k: Any) -> Any:
        m = k["meter"]
        if not any(m is x for x in meters):
            meters.append(m)
        before = m.get("spent", 0.0)
        out = real(*a, **k)
        spent.append(m["spent"] - before)
        return out

    monkeypatch.setattr(PS, "refine", spy)
    kernels.plan(pb)
    assert len(meters) == 1 and len(spent) >= 3, (meters, spent)
    assert 0 < meters[0]["spent"] <= PS.STARTS_MAX_SPENT + slack, meters
    for cap in (1.0, 5_000.0):
        monkeypatch.setattr(PS, "STARTS_MAX_SPENT", cap)
        meters.clear()
        res = kernels.plan(pb)
        assert meters[0]["spent"] <= cap + slack, meters
        assert kernels.check_result(pb, res) == []
        assert dominance_failures(outcome(pb, res), outcome(pb, kernels.greedy_plan(pb))) == []


@pytest.mark.parametrize("i", (3, 19))
def test_the_meter_charges_a_calls_fixed_cost(i: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A phase call that proposes rows is charged ``PHASE_CELLS`` on top of its cells (the rows it proposes
    times the slots, counted where every proposal starts, ``_options``) and ``TRY_CELLS`` per try it
    evaluates; one that proposes none is charged nothing (round 12: on the corpus a call's fixed cost is ~10x
    its cells, and a budget that counted only cells let a "30k-cell" search run for seconds). The carbon,
    blocks and work phases of a whole search of two seed-31 cases, call by call."""
    pb = make(*CASES[i])
    s = greedy_start(pb)
    real_phase, real_pass, real_opts = PS._phase, PS._passes, PS._options
    rec: list[dict[str, Any]] = []
    done: list[dict[str, Any]] = []

    def opts(xp: Any, c: Any, d: Any, tb: Any, vmat: Any, pool: Any, rows: Any, *a: Any, **k: Any) -> Any:
        if rec:
            rec[-1]["cells"] += int(rows.shape[0]) * c.T
        return real_opts(xp, c, d, tb, vmat, pool, rows, *a, **k)

    def passes(*a: Any, **k: Any) -> Any:
        if rec:
            rec[-1]["tries"] += 1
        return real_pass(*a, **k)

    def phase(*a: Any) -> Any:
        if a[9] in PS.CONGEST:
            return real_phase(*a)
        rec.append({"phase": a[9], "cells": 0, "tries": 0, "before": a[11]["left"]})
        out = real_phase(*a)
        r = rec.pop()
        r["charged"] = r["before"] - a[11]["left"]
        done.append(r)
        return out

    monkeypatch.setattr(PS, "_options", opts)
    monkeypatch.setattr(PS, "_passes", passes)
    monkeypatch.setattr(PS, "_phase", phase)
    PS.power_search(pb, s.xp, s.c, s.pr, s.d, s.tb, s.gv, s.gp, ev=s.gev, floor=s.gev, meter={"left": 1e9})
    assert sum(r["cells"] > 0 and r["tries"] > 0 for r in done) >= 3, done
    for r in done:
        want = PS.PHASE_CELLS + r["cells"] + PS.TRY_CELLS * r["tries"] if r["cells"] else 0.0
        assert r["charged"] == want, r


def test_remembered_searches_give_the_same_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    """A search run again from a plan it has searched (``refine``'s memo, the work phase's shared by every
    search of a plan) gives the plan of kernels.plan without the memos (``MEMO_MAX_CELLS = 0``) cell for
    cell, and fewer searches run (seed-0 corpus-18, the caps lifted: its later starts and completions search
    plans again). Without the certified stop (``STOP_GAP = -1``: with it the searches of corpus-18 stop before
    they repeat one, round 13)."""
    monkeypatch.setattr(PS, "REFINE_STARTS", MANY_STARTS)
    monkeypatch.setattr(PS, "STARTS_MAX_SPENT", 1e12)
    monkeypatch.setattr(PS, "STOP_GAP", -1.0)
    pb = make(*corpus(200, seed=0, n_jobs=(8, 32), n_slots=(12, 32))[18])
    real, calls = PS.power_search, [0]

    def counting(*a: Any, **k: Any) -> Any:
        calls[0] += 1
        return real(*a, **k)

    monkeypatch.setattr(PS, "power_search", counting)
    (a, na), (b, nb) = _with_and_without_memos(monkeypatch, pb, calls)
    assert a.objective == b.objective and np.array_equal(a.power_fraction, b.power_fraction)
    assert np.array_equal(a.pool, b.pool)
    assert na < nb, (na, nb)


def _options_tables(seed: int, backend: str, device: str, monkeypatch: pytest.MonkeyPatch) -> list[list[Any]]:
    """``_options`` on a seeded family instance's greedy plan (3-4 pools; every placed row), with and without a
    congestion price (also one that is infinite in a slot: some options' costs not finite), moved to another
    pool or in its own, the cap applied or not, slot 0 held on every other row, each built every level at once
    and a level at a time: per call the two tables (host arrays)."""
    from benchmarks.instances import Knobs

    pb = make(9300 + seed, Knobs(n_jobs=40, n_slots=24, n_pools=3 + seed % 2, demand_share=0.7))
    s = greedy_start(pb, backend, device)
    xp, c = s.xp, s.c
    rows = xp.asarray(np.flatnonzero(xp.to_numpy(s.gp) >= 0), xp.i64)
    n = int(rows.shape[0])
    lim = xp.full((n,), c.T, xp.i64)
    price = np.linspace(0.0, 3.0, c.T)
    price_inf = price.copy()
    price_inf[c.T // 2] = np.inf
    to = xp.full((n,), (seed + 1) % c.P, xp.i64)
    out = []
    hold0 = xp.asarray(np.arange(n) % 2 == 0)  # (every other row keeps slot 0: "off" is not an option there)
    for kw in ({}, {"price": xp.asarray(price, xp.f64)}, {"price": xp.asarray(price_inf, xp.f64)}, {"to_pool": to},
               {"room_free": True}, {"hold0": hold0}):
        tabs = []
        for cells in (10**9, 0):
            monkeypatch.setattr(PS, "OPTIONS_LEVELS_MAX_CELLS", cells)
            tabs.append([xp.to_numpy(a) for a in PS._options(xp, c, s.d, s.tb, s.gv, s.gp, rows, lim, **kw)])
        assert n and np.isfinite(tabs[0][0][:, :, 1:]).any()
        assert "hold0" not in kw or np.isinf(tabs[0][0][:, 0, 0]).any()
        out.append(tabs)
    return out


def _bits(a: Any) -> Any:
    """An array's values bit for bit (float64 as its 64-bit patterns: -0.0 is not 0.0)."""
    a = np.asarray(a)
    return a.view(np.int64) if a.dtype == np.float64 else a


@pytest.mark.parametrize("seed", range(3))
def test_the_options_at_once_and_level_by_level_are_the_same_table(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """``_options`` builds every level at once up to ``OPTIONS_LEVELS_MAX_CELLS`` row-slot cells (one (n, T, V)
    table masked and gridded once: ``_options_table``) and a level at a time above (each level masked, the
    whole table gridded by ``_grid``): the same ``(n, T, V)`` table bit for bit (also "off"'s -0.0 on the grid
    and a kept slot 0's inf), with and without a congestion price (one infinite in a slot: the table is then
    gridded whole), moved to another pool or in its own, the cap applied or not, slot 0 held on some rows (3
    seeded family instances)."""
    for (a, b), kw in zip(_options_tables(seed, "numpy", "cpu", monkeypatch), range(6)):
        assert all(np.array_equal(_bits(x), _bits(y)) for x, y in zip(a, b)), kw


@pytest.mark.parametrize("be", BACKENDS[1:])
def test_the_options_tables_are_the_numpy_ones_on_torch(be: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """torch on the CPU: ``_options``' tables both ways are numpy's bit for bit (CUDA: within 1e-9 relative)."""
    for seed in range(2):
        want = _options_tables(seed, "numpy", "cpu", monkeypatch)
        got = _options_tables(seed, be[0], be[1], monkeypatch)
        for tabs_a, tabs_b in zip(want, got):
            for a, b in zip(tabs_a, tabs_b):
                for x, y in zip(a, b):
                    assert (np.array_equal(_bits(x), _bits(y)) if be[1] == "cpu"
                            else np.allclose(x, y, rtol=1e-9, equal_nan=True))


def _blocks_both_ways(seed: int, backend: str, device: str, monkeypatch: pytest.MonkeyPatch) -> list[list[Any]]:
    """``_best_blocks`` on a seeded family instance's greedy plan (every running row; needs of 0.6x, 1x and 1.4x
    the work it does now, without and with a stretch window of lengths and levels), with every level at once
    and a level at a time: per call the levels and savings, as host arrays."""
    from benchmarks.instances import Knobs

    pb = make(9300 + seed, Knobs(n_jobs=40, n_slots=24, n_pools=3 + seed % 2, demand_share=0.7))
    s = greedy_start(pb, backend, device)
    xp, c = s.xp, s.c
    rows = xp.asarray(np.flatnonzero(xp.to_numpy(s.gp) >= 0), xp.i64)
    n = int(rows.shape[0])
    lim = xp.full((n,), c.T, xp.i64)
    opts = PS._options(xp, c, s.d, s.tb, s.gv, s.gp, rows, lim)
    w_now = xp.to_numpy(PS._old_cost(xp, opts[0], opts[1], opts[2])[1])
    rng = np.random.default_rng(seed)
    V = int(s.tb.load.shape[1])
    stretch = (xp.asarray(rng.integers(1, 7, n), xp.i64), xp.asarray(rng.integers(1, V + 1, n), xp.i64))
    outs: list[list[Any]] = [[], []]
    for f in (0.6, 1.0, 1.4):  # needs
        need = xp.asarray(w_now * f, xp.f64)
        for st in (None, stretch):
            for k, cells in enumerate((10**9, 0)):  # every level at once, a level at a time
                monkeypatch.setattr(PS, "BLOCKS_LEVELS_MAX_CELLS", cells)
                ns, sv = PS._best_blocks(xp, c, s.d, s.tb, s.gv, s.gp, rows, lim, need, raw=True, stretch=st)
                outs[k].append((np.asarray(xp.to_numpy(ns)), np.asarray(xp.to_numpy(sv))))
    return outs


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("be", BACKENDS[:2])
def test_the_blocks_at_once_and_level_by_level_are_the_same(seed: int, be: tuple[str, str],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """``_best_blocks`` finds every level's cheapest block at once up to ``BLOCKS_LEVELS_MAX_CELLS`` row-slot cells
    and a level at a time above (round 21): the same levels and savings bit for bit, on numpy and on CPU torch
    (which gives the numpy ones), with and without the block stretch's window (3 seeded family instances of 3-4
    pools; some rows find a better block)."""
    at_once, by_level = _blocks_both_ways(seed, *be, monkeypatch)
    ref = _blocks_both_ways(seed, "numpy", "cpu", monkeypatch)[1] if be[0] != "numpy" else by_level
    assert any(np.isfinite(sv).any() for _, sv in at_once)
    for (na, sa), (nb, sb), (nr, sr) in zip(at_once, by_level, ref):
        assert np.array_equal(na, nb) and np.array_equal(sa.view(np.int64), sb.view(np.int64))
        assert np.array_equal(na, nr) and np.array_equal(sa.view(np.int64), sr.view(np.int64))


#: a seeded family with tenant quotas on every instance and several pools (the acceptance's quota test)
QUOTA_CASES = corpus(24, seed=13, n_jobs=(8, 32), n_slots=(12, 32), quota_share=1.0)


@pytest.mark.parametrize("i", range(len(QUOTA_CASES)))
def test_a_row_moved_whole_is_not_charged_its_own_quota_twice(i: int) -> None:
    """kernels.powersearch._accept: a running row proposed whole in another eligible pool, at the same cells and
    levels, adds GPUs to its new pool but nothing to its tenant's quota (its own GPUs are counted there already).
    Where the new pool has its GPUs free and the site its watts, the row is taken, also where the tenant has fewer
    GPUs left than the row's own beside it, and the plan with it moved keeps every rule (checker). Round 13: the
    acceptance charged the quota twice and refused such moves (seed-0 corpus-13: a 24-GPU row's -2.1 kg move to
    the 400 W pool, refused in the one slot where its tenant had 13 GPUs left)."""
    pb = make(*QUOTA_CASES[i])
    s = greedy_start(pb)
    c, xp, d, tb = s.c, s.xp, s.d, s.tb
    v, p = np.asarray(xp.to_numpy(s.gv)), np.asarray(xp.to_numpy(s.gp)).astype(np.int64)
    busy, fac = (np.asarray(xp.to_numpy(a)) for a in PL._usage(d, tb, s.gv, s.gp, xp))
    H, load, work = (np.asarray(xp.to_numpy(a)) for a in (d.H, tb.load, tb.work))
    room = np.asarray(xp.to_numpy(d.room_cap)) - fac
    used_q = np.asarray(xp.to_numpy(xp.group_rowsum(d.tenant, c.quota.size, d.gpus, s.gv > 0)))
    tight = 0
    for r in np.flatnonzero((v > 0).any(1) & c.preempt & ~c.must & (c.rpool < 0)):  # (a test: rows one by one)
        on = v[r] > 0
        for q in np.flatnonzero(c.eligible[r]):
            if q == p[r] or not (work[q, v[r][on]] > 0).all():
                continue  # its own pool, or a level the pool lacks
            d_w = np.maximum(load[q, v[r]] - load[p[r], v[r]], 0.0) * c.gpus[r]
            if not ((H[q] - busy[q] >= c.gpus[r])[on].all() and (d_w <= room).all()):
                continue  # no room there: not the case under test
            tight += bool(np.isfinite(c.quota[c.tenant[r]]) and (c.quota[c.tenant[r]] - used_q[c.tenant[r]] < c.gpus[r])[on].any())
            acc = PS._accept(xp, c, d, tb, s.gv, s.gp, xp.asarray([r], xp.i64), xp.asarray(v[r:r + 1]),
                             xp.asarray([q], xp.i64))
            assert xp.to_numpy(acc).tolist() == [0], f"row {r} to pool {q} refused"
            npool = p.copy()
            npool[r] = q
            nev = PL._evaluate_plan(pb, c, s.pr, s.gv, xp.asarray(npool.astype(np.int32)), xp=xp, d=d)
            assert kernels.check_result(pb, s.result(s.gv, xp.asarray(npool.astype(np.int32)), nev)) == []
    _TIGHT[i] = tight


_TIGHT: dict[int, int] = {}  # case -> its rows moved where the tenant was tight (the test above)


def test_the_quota_family_has_rows_whose_tenant_is_tight_beside_them() -> None:
    """The family above exercises the case (a row moved where its tenant has fewer GPUs left than the row's
    own): counted over its instances, at least a few."""
    for i in range(len(QUOTA_CASES)):  # (the cases this session has not run yet)
        if i not in _TIGHT:
            test_a_row_moved_whole_is_not_charged_its_own_quota_twice(i)
    assert sum(_TIGHT.values()) >= 3, _TIGHT


@pytest.mark.parametrize("how", ["MOVE_RUNNING", "cold"])
def test_the_carbon_phase_moves_running_jobs_to_other_pools_paying_their_loss(how: str,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """kernels.powersearch's carbon phase: a running job may move whole to another eligible pool, its response
    there asked for its switching loss too (``_moves``, ``_phase``). From the greedy's plans of the family, one
    carbon phase: the plan stays valid, carbon does not rise, and every running job moved is finished where it
    was, its need now including the loss; across the family such moves happen (round 13: before, running jobs
    never moved, and seed-0 corpus-110 held a running 8-GPU job in the 1,000 W pool at 0.43 of full power beside
    a 400 W pool with room: 15% above the MILP's incumbent). On where ``MOVE_RUNNING`` says so, or on a cold
    plan (``c.cold``, round 14) where ``MOVE_RUNNING_COLD`` does; elsewhere none moves (the last assertion)."""
    monkeypatch.setattr(PS, "MOVE_RUNNING", how == "MOVE_RUNNING")
    monkeypatch.setattr(PS, "MOVE_RUNNING_COLD", how == "cold")
    moved = 0
    for i in range(len(CASES)):  # (the family: one phase each)
        pb = make(*CASES[i])
        s = greedy_start(pb)
        c, xp = (s.c, s.xp) if how == "MOVE_RUNNING" else (dataclasses.replace(s.c, cold=True), s.xp)
        nv, npool, nev, _ = PS._phase(pb, xp, c, s.pr, s.d, s.tb, s.gv, s.gp, s.gev, "carbon", None, None)
        assert kernels.check_result(pb, s.result(nv, npool, nev)) == []
        assert nev["carbon_g"] <= s.gev["carbon_g"] * (1 + 1e-12)
        p0, p1 = np.asarray(xp.to_numpy(s.gp)), np.asarray(xp.to_numpy(npool))
        mv = np.flatnonzero((c.rpool >= 0) & (p0 >= 0) & (p1 != p0))
        was = np.asarray(s.gev["finished"], bool)[mv]
        assert np.asarray(nev["finished"], bool)[mv][was].all()
        assert (np.asarray(nev["need_s"])[mv] >= (c.R + c.loss)[mv] - 1e-6).all()
        moved += mv.size
    assert moved >= 12, moved  # (18 at round 13; asked without the loss, 7: the rest fail the exact test)
    # MOVE_RUNNING off, and a warm plan whatever MOVE_RUNNING_COLD says: a running job keeps its pool
    monkeypatch.setattr(PS, "MOVE_RUNNING", False)
    assert not greedy_start(make(*CASES[0])).c.cold
    for i in range(len(CASES)):
        pb = make(*CASES[i])
        s = greedy_start(pb)
        c = s.c if how == "cold" else dataclasses.replace(s.c, cold=True)
        nv, npool, nev, _ = PS._phase(pb, s.xp, c, s.pr, s.d, s.tb, s.gv, s.gp, s.gev, "carbon", None, None)
        p0, p1 = np.asarray(s.xp.to_numpy(s.gp)), np.asarray(s.xp.to_numpy(npool))
        assert not ((s.c.rpool >= 0) & (p0 >= 0) & (p1 != p0)).any(), i


def test_a_plan_is_close_only_with_a_bound_its_work_done_and_within_the_stop_gap() -> None:
    """``_close`` (the certified stop, round 13): a plan within ``STOP_GAP`` of the meter's lower bound that
    finishes all its work, and no higher than the lowest plan completed so far, is close; one past the gap,
    one that leaves work undone (the search or a completion may still finish it: seed-0 corpus-167), one
    above the lowest plan so far (seed-1 corpus-100077), or a meter without a bound is not."""
    ev = {"objective": 100.0, "unfinished_gpu_s": 0.0}
    near = {"bound": 100.0 * (1 - PS.STOP_GAP) + 1e-6}
    assert PS._close(ev, near) and PS._close(ev, {**near, "best": 100.0})
    assert not PS._close(ev, {**near, "best": 99.0})
    assert not PS._close(ev, {"bound": 100.0 * (1 - PS.STOP_GAP) - 1e-3})
    assert not PS._close({**ev, "unfinished_gpu_s": 3600.0}, near)
    assert not PS._close(ev, {"left": 1e9}) and not PS._close(ev, None)


def _no_polish(monkeypatch: pytest.MonkeyPatch) -> None:
    """The polish's moves all off (``PS.polish`` then returns the plan as it is given)."""
    for name in ("SLOT0_FLIPS", "BLOCK_SWAPS", "EXCHANGE_WATTS", "BLOCK_REFILL", "POOL_TRADES", "POOL_CHAINS",
                 "DISPLACE_POOLS", "PREEMPT_POOLS", "SHADOW_CAP", "STRETCH_SLOTS"):
        monkeypatch.setattr(PS, name, False)


@pytest.mark.parametrize("i", (0, 167))
def test_the_starts_stop_once_a_plan_is_certified_close(i: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """With several starts the searches carry kernels.plan's lower bound and stop once the plan is within
    ``STOP_GAP`` of it (round 13; seed-0 corpus-0 and -167: the full search takes them to 1.5% and 1.2%): the
    plan comes with a certified gap within ``STOP_GAP``, finishes every job the full search does, dominates
    the greedy, and the starts spend fewer cells than without the stop (``STOP_GAP = -1``: never close; a
    count, not a clock). The one-start path (past ``STARTS_MAX_CELLS``: the published instances) gets no
    bound and keeps its plans. (The polish after the searches off, ``polish``: it may take the stopped plan
    below the full search's, corpus-0 79,299.98 against 79,300.55, round 16.)"""
    monkeypatch.setattr(PS, "REFINE_STARTS", MANY_STARTS)
    _no_polish(monkeypatch)
    pb = make(*corpus(200, seed=0, n_jobs=(8, 32), n_slots=(12, 32))[i])
    meters = _spy_meters(monkeypatch)
    monkeypatch.setattr(PS, "STOP_GAP", 0.02)  # (at 1% these two end at 1.8% and 1.2%: not stopped)
    got, gap0 = [], PS.STOP_GAP
    for gap in (gap0, -1.0):
        monkeypatch.setattr(PS, "STOP_GAP", gap)
        meters.clear()
        res = kernels.plan(pb)
        assert len(meters) == 1 and meters[0].get("bound") == pytest.approx(res.lower_bound), meters
        got.append((res, meters[0]["spent"]))
    (stop, n_stop), (full, n_full) = got
    assert full.objective <= stop.objective and stop.gap <= gap0, (stop.gap, full.gap)
    assert n_stop < n_full, (n_stop, n_full)
    po = outcome(pb, stop)
    assert po["unfinished_jobs"] == outcome(pb, full)["unfinished_jobs"] == 0
    assert kernels.check_result(pb, stop) == []
    assert dominance_failures(po, outcome(pb, kernels.greedy_plan(pb))) == []
    monkeypatch.setattr(PS, "STARTS_MAX_CELLS", pb.n_jobs * pb.n_slots - 1)
    meters.clear()
    kernels.plan(pb)
    assert meters and all("bound" not in m for m in meters), meters


def test_a_start_above_the_lowest_plan_is_not_stopped_close(monkeypatch: pytest.MonkeyPatch) -> None:
    """A later start's search is not stopped close while its plan is above the lowest plan completed so far
    (seed-1 corpus-100077: its third start stopped at 1.8% above the LP bound, above a plan that leaves a job
    undone, which then won: 18 of 19 jobs finished; searched on, that start ends at 0.5% with all 19): the
    plan finishes every job, as without the stop (``STOP_GAP = -1``)."""
    monkeypatch.setattr(PS, "REFINE_STARTS", MANY_STARTS)
    pb = make(*corpus(100, seed=1, n_jobs=(8, 32), n_slots=(12, 32))[74])
    res = kernels.plan(pb)
    assert outcome(pb, res)["unfinished_jobs"] == 0, res.diagnostics
    assert kernels.check_result(pb, res) == []


#: seed-31 cases where a search without the swap phase ends with a swap left to make (its carbon phase moves
#: nothing there; round 14: 7, 8, 13, 20 and 28 of the 40)
SWAP_CASES = (7, 8, 13, 20, 28)


def _same_options_without(s: Any, nv: Any, npool: Any, v: Any, a: int, b: int, shift: Any, where: Any,
                          **kw: Any) -> None:
    """Row ``a``'s options (``_options``, ``kw``: ``to_pool``) with row ``b`` shifted out (``shift``) are its
    options on the plan without row ``b``, cell for cell."""
    xp, c = s.xp, s.c
    lim = xp.asarray([c.T], xp.i64)
    got = PS._options(xp, c, s.d, s.tb, nv, npool, xp.asarray([a], xp.i64), lim, shift=shift, **kw)
    wo = v.copy()
    wo[b] = 0
    want = PS._options(xp, c, s.d, s.tb, xp.asarray(wo), npool, xp.asarray([a], xp.i64), lim, **kw)
    ga, wa = np.asarray(xp.to_numpy(got[0])), np.asarray(xp.to_numpy(want[0]))
    assert np.array_equal(np.isinf(ga), np.isinf(wa)), where
    np.testing.assert_allclose(ga[np.isfinite(ga)], wa[np.isfinite(wa)], rtol=1e-9, atol=1e-6)


@functools.cache
def _searched_without_swaps(i: int, backend: str = "numpy", device: str = "cpu") -> tuple[Any, ...]:
    """Case ``i``'s greedy plan searched with every phase but the swap phase (the greedy its floor), until a round
    moves no row (``STALL_GAIN = 0``: the plan the other phases leave where it is)."""
    pb = make(*CASES[i])
    s = greedy_start(pb, backend, device)
    keep, stall = PS.PHASES, PS.STALL_GAIN
    PS.PHASES, PS.STALL_GAIN = tuple(p for p in keep if p != "swaps"), 0.0
    try:
        nv, npool, nev, _ = PS.power_search(pb, s.xp, s.c, s.pr, s.d, s.tb, s.gv, s.gp, ev=s.gev, floor=s.gev)
    finally:
        PS.PHASES, PS.STALL_GAIN = keep, stall
    return pb, s, nv, npool, nev


def _running_row_pairs(cases: Any, first: int | None = None) -> Any:
    """Each case's plan searched without the swap phase (:func:`_searched_without_swaps`) and each ordered pair
    of two of its running preemptible rows in a pool (``a`` among the first ``first``): yields the case, the
    search's helpers, the plan, its pools, the host levels ``v`` and pools ``p``, and ``a``, ``b``."""
    for i in cases:  # cases
        _, s, nv, npool, _ = _searched_without_swaps(i)
        c, xp = s.c, s.xp
        v, p = np.asarray(xp.to_numpy(nv)), np.asarray(xp.to_numpy(npool)).astype(np.int64)
        rows = np.flatnonzero((v > 0).any(1) & c.preempt & ~c.must & (p >= 0))
        for a in rows[:first]:  # (a test: row pairs one by one)
            for b in rows:
                if b != a:
                    yield i, s, nv, npool, v, p, a, b


def _freed_by(s: Any, v: Any, p: Any, b: int) -> tuple[Any, Any]:
    """``(1, T)`` the GPUs and the facility watts row ``b`` (levels ``v[b]`` in pool ``p[b]``) frees by leaving:
    the GPU and watt parts of an ``_options`` shift."""
    c, xp = s.c, s.xp
    load = np.asarray(xp.to_numpy(s.tb.load))
    return (xp.asarray((c.gpus[b] * (v[b] > 0))[None, :], xp.f64),
            xp.asarray((load[p[b], v[b]] * c.gpus[b])[None, :], xp.f64))


def test_a_shifted_option_is_the_option_with_the_other_row_out() -> None:
    """``_options(shift=...)`` (the swap phase): a row's options in another pool with another row's GPUs there
    and watts taken out are its options on the plan without that row, cell for cell (rows of different
    tenants, so that no quota is shared), across the pairs of rows in different pools of the swap cases."""
    tried = 0
    for i, s, nv, npool, v, p, a, b in _running_row_pairs(SWAP_CASES, first=6):
        c, xp = s.c, s.xp
        if p[b] == p[a] or not c.eligible[a, p[b]] or c.tenant[a] == c.tenant[b]:
            continue
        _same_options_without(s, nv, npool, v, a, b, _freed_by(s, v, p, b), (i, a, b),
                              to_pool=xp.asarray([p[b]], xp.i64))
        tried += 1
    assert tried >= 20, tried


@pytest.mark.parametrize("i", SWAP_CASES)
def test_two_rows_exchange_pools_where_no_single_move_does(i: int) -> None:
    """The swap phase (``_swaps``) on a plan the search without it left where it is (its carbon phase moves
    no row there): rows change pools in pairs (p to q and q to p), the plan keeps every rule (checker),
    carbon and the objective fall, every job stays finished (on time) and the greedy still dominated (round
    14: the carbon phase moves one row at a time against the others held fixed, and a pool full of one row
    never lets the other in)."""
    pb, s, nv, npool, nev = _searched_without_swaps(i)
    c, xp = s.c, s.xp
    assert PS._phase(pb, xp, c, s.pr, s.d, s.tb, nv, npool, nev, "carbon", s.gev, None)[3] == 0
    # (pool exchanges alone: the slot exchanges, on a cold plan, have their own test below)
    sv, sp, sev, k = PS._swaps(pb, xp, dataclasses.replace(c, cold=False), s.pr, s.d, s.tb, nv, npool, nev, s.gev,
                               None)
    assert k > 0 and k % 2 == 0
    _valid_lower_keeping_jobs(pb, s, nev, sv, sp, sev)
    p0, p1 = np.asarray(xp.to_numpy(npool)), np.asarray(xp.to_numpy(sp))
    moved = np.flatnonzero(p0 != p1)
    assert moved.size == k
    ex = sorted(zip(p0[moved].tolist(), p1[moved].tolist()))
    assert sorted((b, a) for a, b in ex) == ex  # each move p -> q has its q -> p


def _swaps_same_on(be: tuple[str, str], cases: tuple[int, ...], swap: Any) -> None:
    """The swap phase (``swap(pb, s, nv, npool, nev)``, a start ``s`` on each backend) on numpy and on backend
    ``be`` gives the same plan, pools and count, case by case, from the numpy search's plan without it."""
    for i in cases:  # cases
        outs = []
        _, s0, nv0, np0, _ = _searched_without_swaps(i)
        for backend, device in (("numpy", "cpu"), be):  # backends
            pb = make(*CASES[i])
            s = greedy_start(pb, backend, device)
            nv = s.xp.asarray(np.asarray(s0.xp.to_numpy(nv0)))
            npool = s.xp.asarray(np.asarray(s0.xp.to_numpy(np0)))
            nev = PL._evaluate_plan(pb, s.c, s.pr, nv, npool, xp=s.xp, d=s.d)
            sv, sp, _, k = swap(pb, s, nv, npool, nev)
            outs.append((np.asarray(s.xp.to_numpy(sv)), np.asarray(s.xp.to_numpy(sp)), k))
        (va, pa, ka), (vb, pb_, kb) = outs
        assert ka == kb > 0 and np.array_equal(va, vb) and np.array_equal(pa, pb_), i


@pytest.mark.parametrize("be", BACKENDS[1:])
def test_swaps_are_the_numpy_ones_on_torch(be: tuple[str, str]) -> None:
    """torch: the swap phase gives the numpy plan and pools, case by case (from the numpy search's plan)."""
    _swaps_same_on(be, SWAP_CASES, lambda pb, s, nv, npool, nev: PS._swaps(pb, s.xp, s.c, s.pr, s.d, s.tb, nv, npool,
                                                                              nev, s.gev, None))


def _bounded_answers(monkeypatch: pytest.MonkeyPatch, seen: list[dict[str, Any]]) -> None:
    """``_swap_answers`` where the swap phase gives it a ``bound`` (its second rows): also answered without it,
    and per call in ``seen`` the host levels and savings both ways and the bound's ``(first, own, least)``."""
    real = PS._swap_answers

    def spy(xp: Any, *a: Any, bound: Any = None, **kw: Any) -> Any:
        got = real(xp, *a, bound=bound, **kw)
        if bound is not None:
            full = real(xp, *a, **kw)
            seen.append({"bound": bound, **{k: np.asarray(xp.to_numpy(x)) for k, x in
                                            (("ns", got[0]), ("sv", got[1]), ("ns0", full[0]), ("sv0", full[1]))}})
        return got

    monkeypatch.setattr(PS, "_swap_answers", spy)


@pytest.mark.parametrize("be", BACKENDS)
def test_the_second_rows_skipped_could_not_make_a_pair_pass(be: tuple[str, str],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """``SWAP_BOUND`` (round 21): the swap phase's second rows answer only where ``_may_pass`` says their answer
    may make the pair pass. Every answer given is the answer without the bound, level for level and to the bit;
    every row skipped has an answer (without it) whose pair does not pass; the bound skips rows whose first row
    has an answer, some only by the least cost per work (its cost now alone would let them answer); the phase
    gives the same plans with the bound and without it (pool exchanges, and slot and watt exchanges on cold
    plans), on numpy and on torch."""
    seen: list[dict[str, Any]] = []
    _bounded_answers(monkeypatch, seen)
    monkeypatch.setattr(PS, "EXCHANGE_SLOTS", True)
    for i in SWAP_CASES + SLOT_CASES + WATT_CASES:  # cases
        _, s0, nv0, np0, _ = _searched_without_swaps(i)
        pb = make(*CASES[i])
        s = greedy_start(pb, *be)
        nv = s.xp.asarray(np.asarray(s0.xp.to_numpy(nv0)))
        npool = s.xp.asarray(np.asarray(s0.xp.to_numpy(np0)))
        nev = PL._evaluate_plan(pb, s.c, s.pr, nv, npool, xp=s.xp, d=s.d)
        outs = []
        for on in (True, False):  # with the bound and without it
            monkeypatch.setattr(PS, "SWAP_BOUND", on)
            for cold in (False, True):  # pool exchanges; and slot and watt exchanges
                c = dataclasses.replace(s.c, cold=cold)
                sv, sp, _, k = PS._swaps(pb, s.xp, c, s.pr, s.d, s.tb, nv, npool, nev, s.gev, None, watt_pairs=cold)
                outs.append((np.asarray(s.xp.to_numpy(sv)), np.asarray(s.xp.to_numpy(sp)), k))
        for (va, pa, ka), (vb, pb_, kb) in zip(outs[:2], outs[2:]):
            assert ka == kb and np.array_equal(va, vb) and np.array_equal(pa, pb_), i
    assert seen
    skipped = by_cost = 0
    for call in seen:  # the swap phase's calls with the bound
        first, own, least = call["bound"]
        answered = np.isfinite(call["sv"])
        assert np.array_equal(call["ns"][answered], call["ns0"][answered])
        assert np.array_equal(call["sv"][answered], call["sv0"][answered])
        with np.errstate(invalid="ignore"):
            passes = np.isfinite(first + call["sv0"]) & (first + call["sv0"] > least)
        assert not (passes & ~answered).any()
        skip = ~answered & np.isfinite(first) & np.isfinite(call["sv0"])
        skipped += int(skip.sum())
        by_cost += int((skip & (first + own > least)).sum())
    assert skipped > 0 and by_cost > 0, (skipped, by_cost)


def _greedy_matching(ia: np.ndarray, ib: np.ndarray, gain: np.ndarray) -> list[int]:
    """The reference: pairs in gain order (ties: the first), each taken where both its rows are still free."""
    used: set[int] = set()
    out = []
    for k in np.argsort(-gain, kind="stable"):  # (a test: pairs one by one)
        if np.isfinite(gain[k]) and ia[k] not in used and ib[k] not in used:
            out.append(int(k))
            used |= {int(ia[k]), int(ib[k])}
    return out


@pytest.mark.parametrize("seed", range(12))
def test_each_row_is_in_one_swap_the_greedy_matchings_first(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """``_one_pair_per_row``: each row in at most one pair taken, largest gain first; the pairs taken are the
    first of the greedy matching in gain order, all of them with passes enough (seeded families of ordered
    pairs with ties and pairs never to take)."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 14))
    ia, ib = (x.ravel() for x in np.meshgrid(np.arange(n), np.arange(n), indexing="ij"))
    k = rng.random(ia.size) < 0.4
    ia, ib = ia[k & (ia != ib)], ib[k & (ia != ib)]
    gain = np.round(rng.normal(1.0, 1.0, ia.size), 1)
    gain[rng.random(ia.size) < 0.2] = -np.inf
    got = PS._one_pair_per_row(ia, ib, gain, n)
    rows = np.concatenate([ia[got], ib[got]])
    assert np.unique(rows).size == rows.size
    assert np.isfinite(gain[got]).all() and (np.diff(gain[got]) <= 0).all()
    want = _greedy_matching(ia, ib, gain)
    assert set(got.tolist()) <= set(want)
    monkeypatch.setattr(PS, "ACCEPT_PASSES", n * n)
    assert PS._one_pair_per_row(ia, ib, gain, n).tolist() == want


def test_only_a_cold_plan_moves_running_jobs(monkeypatch: pytest.MonkeyPatch) -> None:
    """kernels.plan marks a plan without a warm start cold (``c.cold``): the search's pool moves (``_moves``)
    see a cold plan there and a warm one on the re-plan from it, and the warm re-plan keeps every running job
    in the pool it runs in (the control loop re-plans warm every tick: a move there is a preemption decided
    again each tick, round 13's itp60 policy run). Seed-31 case 1 (two pools, running jobs)."""
    seen: list[bool] = []
    real = PS._moves

    def moves(c: Any, *a: Any) -> Any:
        seen.append(bool(c.cold))
        return real(c, *a)

    monkeypatch.setattr(PS, "_moves", moves)
    pb = make(*CASES[1])
    assert pb.n_pools >= 2 and (np.asarray(pb.running_pool) >= 0).any()
    cold = kernels.plan(pb)
    assert seen and all(seen)
    seen.clear()
    warm = kernels.plan(pb, warm_start=cold, warm_shift=0, witness="always")  # (a tick whose check is due: searched)
    assert seen and not any(seen)
    rp = np.asarray(pb.running_pool)
    run = np.flatnonzero((rp >= 0) & np.asarray(warm.run)[:, 0])
    assert (np.asarray(warm.pool)[run] == rp[run]).all()


@pytest.mark.parametrize("phase", ["carbon", "blocks", "work", "pairs"])
def test_a_phase_computes_the_plans_usage_once(phase: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A phase computes the plan's usage (``kernels.planner._usage``: busy GPUs and facility watts) once and
    hands it to every step that reads it (the responses, the acceptance; the pair moves and their room): no
    phase call computes it twice for the plan it starts from (round 15: the acceptance and the pair moves
    computed it again, ~30% of the usage calls on the slowest seed-0 corpus instances), and the phase
    does move rows on the family (the steps that read it ran)."""
    import collections

    seen: collections.Counter[tuple[bytes, bytes]] = collections.Counter()
    usage = PL._usage

    def counted(d: Any, tb: Any, vmat: Any, pool: Any, xp: Any = PL._NP) -> Any:
        seen[(np.asarray(xp.to_numpy(vmat)).tobytes(), np.asarray(xp.to_numpy(pool)).tobytes())] += 1
        return usage(d, tb, vmat, pool, xp)

    monkeypatch.setattr(PL, "_usage", counted)
    moved = 0
    for i in range(len(CASES)):  # (the family: one phase each)
        pb = make(*CASES[i])
        s = greedy_start(pb)
        seen.clear()
        if phase == "pairs":
            k = PS._pairs(pb, s.xp, s.c, s.pr, s.d, s.tb, s.gv, s.gp, s.gev, s.gev)[3]
        else:
            k = PS._phase(pb, s.xp, s.c, s.pr, s.d, s.tb, s.gv, s.gp, s.gev, phase, s.gev, None)[3]
        moved += k > 0
        start = (np.asarray(s.xp.to_numpy(s.gv)).tobytes(), np.asarray(s.xp.to_numpy(s.gp)).tobytes())
        assert seen[start] <= 1, (i, seen[start])
    assert moved > 0


_STALLED = PS._stalled  # (the rule itself, under the spies of _stalled_rounds)


def _stalled_rounds(monkeypatch: pytest.MonkeyPatch, i: int, share: float, rounds: int = PS.POWER_ROUNDS
                    ) -> tuple[dict[str, Any], list[tuple[float, float]]]:
    """A search (no block displacement after its rounds) of seed-31 case ``i`` from the greedy's improved plan
    with ``STALL_GAIN = share``, and per round that moved rows its objective before and after (a spy on
    ``_stalled``, which power_search asks after each such round)."""
    monkeypatch.setattr(PS, "STALL_GAIN", share)
    seen: list[tuple[float, float]] = []

    def spy(obj0: float, ev: dict[str, Any], s: float) -> bool:
        seen.append((obj0, float(ev["objective"])))
        return _STALLED(obj0, ev, s)

    monkeypatch.setattr(PS, "_stalled", spy)
    pb = make(*CASES[i])
    s = greedy_start(pb)
    sv, sev, _ = L.improve(pb, s.xp, s.c, s.pr, s.d, s.tb, s.gv, s.gp)
    nv, npool, nev, k = PS.power_search(pb, s.xp, s.c, s.pr, s.d, s.tb, sv, s.gp, ev=sev, floor=s.gev,
                                        rounds=rounds, displace=False)
    return {"vmat": s.xp.to_numpy(nv), "pool": s.xp.to_numpy(npool), "nev": nev, "k": k}, seen


@pytest.mark.parametrize("i", (11, 34))
def test_a_search_ends_after_a_round_that_gains_less_than_the_stall_share(i: int, monkeypatch: pytest.MonkeyPatch
                                                                          ) -> None:
    """``STALL_GAIN``: the rounds end after the first round that lowered the objective by less than that share
    of it (where the search would have gone on: without the rule it runs more rounds), and the plan is the
    one the same number of rounds gives without the rule. Past ``STARTS_MAX_CELLS`` (the one-start path: the
    published instances) the rule is off and the search is the one without it."""
    full, seen0 = _stalled_rounds(monkeypatch, i, 0.0)
    share = PS.STALL_GAIN if PS.STALL_GAIN > 0 else 1e-3
    got, seen = _stalled_rounds(monkeypatch, i, share)
    gains = [(a - b) / abs(a) for a, b in seen]
    assert len(seen) < len(seen0), (seen, seen0)  # (the case stalls: the rule is exercised)
    assert all(g >= share for g in gains[:-1]) and gains[-1] < share, gains
    same, _ = _stalled_rounds(monkeypatch, i, 0.0, rounds=len(seen))
    assert np.array_equal(got["vmat"], same["vmat"]) and np.array_equal(got["pool"], same["pool"])
    assert got["nev"]["objective"] >= full["nev"]["objective"]
    pb = make(*CASES[i])
    monkeypatch.setattr(PS, "STARTS_MAX_CELLS", pb.n_jobs * pb.n_slots - 1)
    off, seen1 = _stalled_rounds(monkeypatch, i, share)
    off0, seen2 = _stalled_rounds(monkeypatch, i, 0.0)
    assert len(seen1) == len(seen2) > len(seen) and np.array_equal(off["vmat"], off0["vmat"])


def test_a_block_displacement_spends_at_most_its_share_of_the_cells_it_found(monkeypatch: pytest.MonkeyPatch) -> None:
    """``DISPLACE_SHARE``: with several starts on one meter, a search's block displacement starts no try once
    it has spent that share of the cells it found (each try is a whole search of the displaced plan: seed-0
    corpus-10's first search spent 900k of its 1.2M cells in four failed tries, corpus-1's the rest of the
    budget, and the completion and the later starts got none). Seed-0 corpus-10 at a share of 0.1 (its first
    search's displacement is cut): every try started within the share, the plan is valid and dominates the
    greedy."""
    monkeypatch.setattr(PS, "REFINE_STARTS", MANY_STARTS)
    share = 0.1  # (at 2M cells corpus-10's first search's four tries spend 0, 3k, 172k and 342k of 1.8M)
    monkeypatch.setattr(PS, "DISPLACE_SHARE", share)
    monkeypatch.setattr(PS, "STARTS_MAX_SPENT", 2_000_000.0)
    pb = make(*corpus(200, seed=0, n_jobs=(8, 32), n_slots=(12, 32))[10])
    seen: list[tuple[float, float, float, bool]] = []
    real = PS._displace_more

    def spy(meter: dict[str, Any], left0: float, cap: float) -> bool:
        out = real(meter, left0, cap)
        seen.append((left0, left0 - meter["left"], cap, out))
        return out

    monkeypatch.setattr(PS, "_displace_more", spy)
    res = kernels.plan(pb)
    assert seen, "no block displacement ran"
    assert all(cap == pytest.approx(share * left0) for left0, _, cap, _ in seen), seen
    assert all(spent < cap for _, spent, cap, ok in seen if ok), seen
    assert any(not ok and spent < left0 for left0, spent, _, ok in seen), seen  # (stopped by the share, cells left)
    assert kernels.check_result(pb, res) == []
    assert dominance_failures(outcome(pb, res), outcome(pb, kernels.greedy_plan(pb))) == []


#: seed-31 cases where the swap phase's slot exchanges alone (no row may change pools) move rows on the plan the
#: search without the swap phase leaves, a plan that does all its work (round 15: 8, 20, 21, 22 and 26 of the 40;
#: all but 20 with tenant quotas) ...
SLOT_CASES = (8, 20, 21, 22, 26)
#: ... and where they would on the plan it leaves with work undone (9, 12 and 30; 12 and 30 one pool)
SLOT_UNDONE_CASES = (9, 12, 30)


def _slot_exchanges(pb: Any, s: Any, nv: Any, npool: Any, nev: dict[str, Any],
                    monkeypatch: pytest.MonkeyPatch, cold: bool = True, on: bool = True,
                    watt_pairs: bool = False) -> tuple[Any, ...]:
    """The swap phase on the plan, as a cold plan's (``c.cold``: slot exchanges only there) or a warm one's, with
    no row allowed to change pools (``_moves`` empty): its slot exchanges alone (``EXCHANGE_SLOTS`` set to ``on``),
    with the watt exchanges where ``watt_pairs`` (as :func:`PS.polish` asks; the search never does)."""
    monkeypatch.setattr(PS, "EXCHANGE_SLOTS", on)
    monkeypatch.setattr(PS, "_moves", lambda c, pool_h, rows_h: np.zeros((rows_h.size, c.P), bool))
    c = dataclasses.replace(s.c, cold=cold)
    return PS._swaps(pb, s.xp, c, s.pr, s.d, s.tb, nv, npool, nev, s.gev, None, watt_pairs=watt_pairs)


def test_a_shifted_option_with_the_quota_is_the_option_with_the_other_row_out() -> None:
    """``_options(shift=...)`` with the quota shifted (a slot exchange): a row's options in its own pool with
    another row of its pool and tenant taken out (its GPUs, watts and quota) are its options on the plan
    without that row, cell for cell, across the pairs of rows that share a pool and a tenant with a quota."""
    tried = 0
    for i, s, nv, npool, v, p, a, b in _running_row_pairs(SLOT_CASES):
        c = s.c
        if p[b] != p[a] or c.tenant[a] != c.tenant[b] or not np.isfinite(c.quota[c.tenant[a]]):
            continue
        out, watts = _freed_by(s, v, p, b)
        _same_options_without(s, nv, npool, v, a, b, (out, watts, out), (i, a, b))
        tried += 1
    assert tried >= 20, tried


@pytest.mark.parametrize("i", SLOT_CASES)
def test_two_rows_exchange_slots_where_no_single_move_does(i: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The swap phase's slot exchanges (round 15): on a plan the search without the swap phase left where it is
    (its carbon phase moves no row there), with no row allowed to change pools, rows exchange slots in pairs (a
    row enters slots of its pool where it lacks the GPUs, or its tenant's quota, that another row's leaving
    frees): no pool changes, the plan keeps every rule (checker), carbon and the objective fall, every job
    stays finished (on time) and the greedy still dominated (seed-0 corpus-6: a 4-GPU job held the greenest
    slots under its tenant's quota, where an 8-GPU job of the same tenant saves more). On a cold plan only,
    up to ``STARTS_MAX_CELLS``: a warm one's swap phase makes none, nor one past that size."""
    pb, s, nv, npool, nev = _searched_without_swaps(i)
    c, xp = s.c, s.xp
    assert PS._phase(pb, xp, c, s.pr, s.d, s.tb, nv, npool, nev, "carbon", s.gev, None)[3] == 0
    sv, sp, sev, k = _slot_exchanges(pb, s, nv, npool, nev, monkeypatch)
    assert k > 0 and k % 2 == 0
    assert np.array_equal(np.asarray(xp.to_numpy(sp)), np.asarray(xp.to_numpy(npool)))
    assert int((np.asarray(xp.to_numpy(sv)) != np.asarray(xp.to_numpy(nv))).any(1).sum()) == k
    _valid_lower_keeping_jobs(pb, s, nev, sv, sp, sev)
    # a warm plan's (the control loop's ticks), and the phase without them: nothing to do there
    assert _slot_exchanges(pb, s, nv, npool, nev, monkeypatch, cold=False)[3] == 0
    assert _slot_exchanges(pb, s, nv, npool, nev, monkeypatch, on=False)[3] == 0
    # nor past STARTS_MAX_CELLS (the one-start path: the published winter-600 ended 1.07% higher with them)
    monkeypatch.setattr(PS, "STARTS_MAX_CELLS", c.J * c.T - 1)
    assert _slot_exchanges(pb, s, nv, npool, nev, monkeypatch)[3] == 0


@pytest.mark.parametrize("i", SLOT_UNDONE_CASES)
def test_a_plan_that_leaves_work_undone_exchanges_no_slots(i: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the plan leaves work undone the swap phase makes no slot exchange (``_cold_and_done``: the search's
    cells go to the phases that finish work; seed-1 corpus-14 finished a job fewer with them), though it would
    on the plan with every job's work done as it is (the plan's evaluation is what decides)."""
    pb, s, nv, npool, nev = _searched_without_swaps(i)
    assert nev["unfinished_gpu_s"] > 0
    assert _slot_exchanges(pb, s, nv, npool, nev, monkeypatch)[3] == 0
    assert _slot_exchanges(pb, s, nv, npool, {**nev, "unfinished_gpu_s": 0.0}, monkeypatch)[3] > 0


@pytest.mark.parametrize("be", BACKENDS[1:])
def test_slot_exchanges_are_the_numpy_ones_on_torch(be: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """torch: the swap phase's slot exchanges give the numpy plan, case by case (from the numpy search's plan)."""
    _swaps_same_on(be, SLOT_CASES, lambda pb, s, nv, npool, nev: _slot_exchanges(pb, s, nv, npool, nev, monkeypatch))


#: seed-31 cases where the slot exchanges move rows on the plan the search without the swap phase leaves only with
#: the watt exchanges (round 16: 1, 10, 14 and 25 of the 40; without them none there)
WATT_CASES = (1, 10, 14, 25)


@pytest.mark.parametrize("i", WATT_CASES)
def test_two_rows_exchange_watts_under_the_cap_where_no_single_move_does(i: int,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The slot exchanges' watt exchanges (``EXCHANGE_WATTS``, round 16; in the polish only): on a plan the search without the swap
    phase left where it is, with no row allowed to change pools, two rows exchange slots where the first's next
    level up does not fit under the site's cap and the second's leaving frees the watts: without them the phase
    makes no exchange there, with them it does; no pool changes, the plan keeps every rule (checker), carbon and
    the objective fall, every job stays finished (on time), the greedy still dominated, and some row now runs
    above its old level in a slot where that step did not fit under the cap (seed-0 corpus-17: an 8-GPU row
    lowered in the capped slots lets another run there at its lowest level)."""
    pb, s, nv, npool, nev = _searched_without_swaps(i)
    c, xp = s.c, s.xp
    assert PS._phase(pb, xp, c, s.pr, s.d, s.tb, nv, npool, nev, "carbon", s.gev, None)[3] == 0
    monkeypatch.setattr(PS, "EXCHANGE_WATTS", False)
    assert _slot_exchanges(pb, s, nv, npool, nev, monkeypatch, watt_pairs=True)[3] == 0
    monkeypatch.setattr(PS, "EXCHANGE_WATTS", True)
    assert _slot_exchanges(pb, s, nv, npool, nev, monkeypatch)[3] == 0  # (the search's call: no watt pairs)
    sv, sp, sev, k = _slot_exchanges(pb, s, nv, npool, nev, monkeypatch, watt_pairs=True)
    assert k > 0 and k % 2 == 0
    assert np.array_equal(np.asarray(xp.to_numpy(sp)), np.asarray(xp.to_numpy(npool)))
    _valid_lower_keeping_jobs(pb, s, nev, sv, sp, sev)
    v0, v1 = np.asarray(xp.to_numpy(nv)).astype(np.int64), np.asarray(xp.to_numpy(sv)).astype(np.int64)
    p0 = np.asarray(xp.to_numpy(npool)).astype(np.int64)
    rows = np.flatnonzero(p0 >= 0)
    tt = np.arange(c.T)
    win = (tt[None, :] >= c.rel[rows][:, None]) & (tt[None, :] < np.where(c.has_dl[rows], c.dl[rows], c.T)[:, None])
    use = PL._usage(s.d, s.tb, nv, npool, xp)
    _, _, _, short, _ = PS._watts_short(xp, s.d, s.tb, p0[rows], v0[rows], c.gpus[rows].astype(np.float64), use[1], win)
    work = np.asarray(xp.to_numpy(s.tb.work), np.float64)[p0[rows]]
    assert (short & (np.take_along_axis(work, v1[rows], 1) > np.take_along_axis(work, v0[rows], 1))).any()


@pytest.mark.parametrize("be", BACKENDS[1:])
def test_watt_exchanges_are_the_numpy_ones_on_torch(be: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """torch: the slot exchanges with the watt exchanges give the numpy plan, case by case."""
    monkeypatch.setattr(PS, "EXCHANGE_WATTS", True)
    _swaps_same_on(be, WATT_CASES, lambda pb, s, nv, npool, nev: _slot_exchanges(pb, s, nv, npool, nev, monkeypatch,
                                                                                 watt_pairs=True))


def test_a_shift_that_takes_the_room_leaves_no_level_not_even_the_current_one() -> None:
    """``_options(shift=...)``: where another row's change takes every GPU of a row's pool (a slot exchange's
    second row answers with the first moved into its cells), the row has no level there, not even the one it
    runs at now (without a shift that one is always an option: the plan is valid as it is); "off" stays one."""
    pb, s, nv, npool, _ = _searched_without_swaps(SLOT_CASES[0])
    c, xp, d, tb = s.c, s.xp, s.d, s.tb
    v, p = np.asarray(xp.to_numpy(nv)), np.asarray(xp.to_numpy(npool)).astype(np.int64)
    rows = np.flatnonzero((v > 0).any(1) & c.preempt & ~c.must & (p >= 0) & (c.rpool < 0))
    assert rows.size >= 2
    r = xp.asarray(rows, xp.i64)
    lim = xp.asarray(np.full(rows.size, c.T), xp.i64)
    H = np.asarray(xp.to_numpy(d.H), np.float64)[p[rows]]
    shift = (xp.asarray(-H, xp.f64), xp.zeros((rows.size, c.T), xp.f64))
    got = np.asarray(xp.to_numpy(PS._options(xp, c, d, tb, nv, npool, r, lim, shift=shift)[0]))
    assert np.isinf(got[:, :, 1:]).all() and (got[:, :, 0] == 0).all()
    plain = np.asarray(xp.to_numpy(PS._options(xp, c, d, tb, nv, npool, r, lim)[0]))
    at = np.take_along_axis(plain, v[rows][:, :, None].astype(np.int64), 2)[:, :, 0]
    assert np.isfinite(at).all()  # (without the shift the current levels are options)


#: seed-31 cases whose searched plan (the search without slot-0 flips, on a cold plan) has a running job the carbon
#: phase's slot-0 flips move (round 15: 16, 17, 22, 25 and 36 of the 40)
FLIP_CASES = (16, 17, 22, 25, 36)


@functools.cache
def _family(seed: int) -> Any:
    """The seed-31 cases (``CASES``), or another seed's corpus of 200 (the corpus the rounds measure; seed 0)."""
    return CASES if seed == 31 else corpus(200, seed=seed, n_jobs=(8, 32), n_slots=(12, 32))


@functools.cache
def _searched_without_flips(i: int, seed: int = 31) -> tuple[Any, ...]:
    """Case ``i`` (of :func:`_family` ``seed``): its greedy plan searched as a cold plan (``c.cold``; the search makes
    no slot-0 flip, the polish after it does) with the greedy its floor."""
    pb = make(*_family(seed)[i])
    s = greedy_start(pb)
    c = dataclasses.replace(s.c, cold=True)
    nv, npool, nev, _ = PS.power_search(pb, s.xp, c, s.pr, s.d, s.tb, s.gv, s.gp, ev=s.gev, floor=s.gev)
    return pb, s, c, nv, npool, nev


@pytest.mark.parametrize("i", FLIP_CASES)
def test_a_running_job_takes_slot_0_back_or_gives_it_up_where_that_saves(i: int) -> None:
    """The carbon phase's slot-0 flips (round 15, ``flips``): on a cold plan the search left where it is, a job
    that runs now and stays in its pool takes slot 0 back (its switching loss no longer paid as work) or gives
    it up (paying it) where that saves carbon: its slot 0 changes, the plan keeps every rule (checker), carbon
    and the objective fall, every job stays finished (on time). Without the flips the phase moves no such row
    (seed-0 corpus-13: two running jobs left slot 0 and paid their loss in dearer slots later; the MILP runs
    both in slot 0)."""
    pb, s, c, nv, npool, nev = _searched_without_flips(i)
    xp = s.xp
    sv, sp, sev, k = PS._phase(pb, xp, c, s.pr, s.d, s.tb, nv, npool, nev, "carbon", s.gev, None, flips=True)
    v0, v1 = np.asarray(xp.to_numpy(nv)), np.asarray(xp.to_numpy(sv))
    flipped = np.flatnonzero((c.rpool >= 0) & ((v0[:, 0] > 0) != (v1[:, 0] > 0)))
    assert k > 0 and flipped.size > 0
    assert (np.asarray(xp.to_numpy(sp))[flipped] == c.rpool[flipped]).all()
    assert kernels.check_result(pb, s.result(sv, sp, sev)) == []
    assert sev["carbon_g"] < nev["carbon_g"] and sev["objective"] < nev["objective"]
    lost, late = _late_or_lost(c, nev, sev)
    assert lost.size == 0 and late.size == 0
    ov = PS._phase(pb, xp, c, s.pr, s.d, s.tb, nv, npool, nev, "carbon", s.gev, None)[0]
    o = np.asarray(xp.to_numpy(ov))
    assert ((c.rpool >= 0) & ((v0[:, 0] > 0) != (o[:, 0] > 0))).sum() == 0


@pytest.mark.parametrize("i", FLIP_CASES)
def test_the_search_makes_no_flip_and_the_polish_keeps_every_job(i: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The slot-0 flips run only as a polish of the plan the search chose (``polish``, ``SLOT0_FLIPS``): the
    search gives the same plan whatever ``SLOT0_FLIPS``, ``BLOCK_SWAPS`` and ``EXCHANGE_WATTS`` say (round 15: flips inside the search took seed-0
    corpus-118's first start to a plan 2.6% higher, and the start that then won leaves a job unfinished), and
    the polish of its plan flips a running job's slot 0, lowers carbon and the objective, keeps every job
    finished (on time) and every rule (checker), and still dominates the greedy. Off, or on a warm plan, the
    polish returns the plan as it is."""
    pb, s, c, nv, npool, nev = _searched_without_flips(i)
    xp = s.xp
    for on_ in (False, True):  # the polish's moves off, on: the same search
        monkeypatch.setattr(PS, "SLOT0_FLIPS", on_)
        monkeypatch.setattr(PS, "BLOCK_SWAPS", on_)
        monkeypatch.setattr(PS, "EXCHANGE_WATTS", on_)
        monkeypatch.setattr(PS, "POOL_TRADES", on_)
        monkeypatch.setattr(PS, "POOL_CHAINS", on_)
        got = PS.power_search(pb, xp, c, s.pr, s.d, s.tb, s.gv, s.gp, ev=s.gev, floor=s.gev)
        assert np.array_equal(xp.to_numpy(got[0]), xp.to_numpy(nv))
        assert np.array_equal(xp.to_numpy(got[1]), xp.to_numpy(npool))
    # (the block displacements into other pools off: the polish's last move, a block moved there places the rows it
    # meets again, and on case 16 a flipped row with them: slot 0 as before, the plan lower still; the preemptible
    # rows' moves after them too)
    monkeypatch.setattr(PS, "DISPLACE_POOLS", False)
    monkeypatch.setattr(PS, "PREEMPT_POOLS", False)
    sv, sp, sev, k = PS.polish(pb, xp, c, s.pr, s.d, s.tb, nv, npool, nev, s.gev)
    v0, v1 = np.asarray(xp.to_numpy(nv)), np.asarray(xp.to_numpy(sv))
    assert k > 0 and ((c.rpool >= 0) & ((v0[:, 0] > 0) != (v1[:, 0] > 0))).any()
    assert sev["carbon_g"] < nev["carbon_g"] and sev["objective"] < nev["objective"]
    lost, late = _late_or_lost(c, nev, sev)
    assert lost.size == 0 and late.size == 0
    assert kernels.check_result(pb, s.result(sv, sp, sev)) == []
    assert dominance_failures(outcome(pb, s.result(sv, sp, sev)), outcome(pb, s.result(s.gv, s.gp, s.gev))) == []
    warm = dataclasses.replace(c, cold=False)
    assert PS.polish(pb, xp, warm, s.pr, s.d, s.tb, nv, npool, nev, s.gev)[3] == 0
    _no_polish(monkeypatch)
    assert PS.polish(pb, xp, c, s.pr, s.d, s.tb, nv, npool, nev, s.gev)[3] == 0


def test_kernels_plan_reports_the_polish(monkeypatch: pytest.MonkeyPatch) -> None:
    """kernels.plan polishes the plan it chose (``polish``): where the polish lowers it, the variant ends in
    ``"+polish"`` and ``diagnostics["polish_cells"]`` counts the cells the polish spent (apart from
    ``"search_cells"``: at most ``FLIP_SEARCH_CELLS`` of what the search left, its rounds' moves included); where it
    moves nothing, only its first round's moves, no search (seed-31 case 25 and 17; 16, polished by the block refill
    since round 17); the block stretch (round 21) then tries a block on what the meter has left (a try is a search:
    case 17 19,776 cells with it), the plan as it was."""
    for stretch in (PS.STRETCH_SLOTS, 0):  # the block stretch on, off
        monkeypatch.setattr(PS, "STRETCH_SLOTS", stretch)
        for i, polished in ((25, True), (17, False)):  # cases
            pb = make(*CASES[i])
            res = kernels.plan(pb)
            assert str(res.diagnostics["primal_variant"]).endswith("+polish") == polished
            cells = res.diagnostics["polish_cells"]
            most = PS.FLIP_SEARCH_CELLS if polished or stretch else PS.POLISH_MIN_CELLS / 2
            assert 0 < cells <= most, (i, cells)
            assert kernels.check_result(pb, res) == []


def test_a_warm_plan_flips_no_running_job() -> None:
    """A warm re-plan (``c.cold`` False: the control loop's ticks) flips no running job's slot 0 (in the 3-day
    itp60 policy run, flips on warm ticks cost 175.1 -> 179.9 g/GPU-h: each tick decides again), nor does a
    plan that leaves work undone (``_cold_and_done``)."""
    for i in FLIP_CASES:  # cases
        pb, s, c, nv, npool, nev = _searched_without_flips(i)
        rows = np.flatnonzero(c.rpool >= 0)
        assert PS._slot0_rows(s.xp, c, nv, np.asarray(s.xp.to_numpy(npool)).astype(np.int64), rows, nev).any()
        warm = dataclasses.replace(c, cold=False)
        assert not PS._slot0_rows(s.xp, warm, nv, np.asarray(s.xp.to_numpy(npool)).astype(np.int64), rows, nev).any()
        undone = {**nev, "unfinished_gpu_s": 1.0}
        assert not PS._slot0_rows(s.xp, c, nv, np.asarray(s.xp.to_numpy(npool)).astype(np.int64), rows, undone).any()


def test_only_a_job_that_stays_where_it_runs_and_pays_a_loss_flips_slot_0() -> None:
    """``_slot0_rows``: the slot-0 flips are for a job that runs now, in the pool it runs in, and pays a switching
    loss there when it stops (``c.loss > 0``): the flip's response keeps its need without the loss (taking slot 0
    back) or adds it (giving it up), so a job the plan moved to another pool (which pays its loss there whatever
    slot 0 does) or one with no loss flips nothing. On each case's searched plan, such rows made so (its pool
    moved, its loss taken away) get 0, the others as before. (Round 18's mutation audit: without either condition
    no test failed.)"""
    for i in FLIP_CASES:  # cases
        pb, s, c, nv, npool, nev = _searched_without_flips(i)
        pool_h = np.asarray(s.xp.to_numpy(npool)).astype(np.int64)
        rows = np.flatnonzero(c.rpool >= 0)
        flip = PS._slot0_rows(s.xp, c, nv, pool_h, rows, nev)
        k = np.flatnonzero(flip != 0)
        assert k.size > 0, i
        # (every other flipping row moved where there is another pool, the rest without a loss)
        moved, free = (k[0::2], k[1::2]) if c.P > 1 else (k[:0], k)
        ph = pool_h.copy()
        ph[rows[moved]] = (ph[rows[moved]] + 1) % c.P
        loss = c.loss.copy()
        loss[rows[free]] = 0.0
        got = PS._slot0_rows(s.xp, dataclasses.replace(c, loss=loss), nv, ph, rows, nev)
        assert not got[k].any() and np.array_equal(np.delete(got, k), np.delete(flip, k)), i


#: seed-31 cases whose plan searched as a cold plan without block exchanges has a block (a finished non-preemptible
#: row that does not run now) the swap phase exchanges with a preemptible row of another pool (round 16: 21 of the 40)
BLOCK_CASES = (21,)


@functools.cache
def _searched_without_block_swaps(i: int, backend: str = "numpy", device: str = "cpu") -> tuple[Any, ...]:
    """Case ``i``'s greedy plan searched as a cold plan (``c.cold``; the search makes no block exchange, the polish
    after it does) until a round moves no row (``STALL_GAIN = 0``), the greedy its floor."""
    pb = make(*CASES[i])
    s = greedy_start(pb, backend, device)
    c = dataclasses.replace(s.c, cold=True)
    stall = PS.STALL_GAIN
    PS.STALL_GAIN = 0.0
    try:
        nv, npool, nev, _ = PS.power_search(pb, s.xp, c, s.pr, s.d, s.tb, s.gv, s.gp, ev=s.gev, floor=s.gev)
    finally:
        PS.STALL_GAIN = stall
    return pb, s, c, nv, npool, nev


@pytest.mark.parametrize("i", BLOCK_CASES)
def test_a_block_exchanges_pools_with_a_preemptible_row(i: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The swap phase's block exchanges (round 16, ``BLOCK_SWAPS``; asked by the polish after the search,
    ``blocks``): on a cold plan the search (which makes none) left
    where it is, a finished non-preemptible row moves whole to another pool as one unbroken block that does its
    work there, a preemptible row of that pool moves to its pool; the plan keeps every rule (checker), carbon and
    the objective fall, every job stays finished (on time), the greedy still dominated (seed-0 corpus-28: the
    MILP runs job 12's block in pool 0 and job 0 in pool 2, the plan the other way round). Not asked (the
    search's swap phase), off, or on a warm plan, no block changes its pool; the polish makes the exchange."""
    pb, s, c, nv, npool, nev = _searched_without_block_swaps(i)
    xp = s.xp
    sv, sp, sev, k = PS._swaps(pb, xp, c, s.pr, s.d, s.tb, nv, npool, nev, s.gev, None, blocks=True)
    p0, p1 = np.asarray(xp.to_numpy(npool)), np.asarray(xp.to_numpy(sp))
    v1 = np.asarray(xp.to_numpy(sv))
    blocks = np.flatnonzero((p0 != p1) & ~c.preempt)
    assert k > 0 and blocks.size > 0
    v0 = np.asarray(xp.to_numpy(nv))
    for r in blocks:  # (a test: the moved blocks one by one)
        on = np.flatnonzero(v1[r] > 0)
        assert on.size > 0 and on[-1] - on[0] + 1 == on.size  # one unbroken block
        partner = np.flatnonzero((p0 == p1[r]) & (p1 == p0[r]) & c.preempt)
        assert partner.size == 1
        # its cheapest block in the new pool on the plan without its partner (the block answers first here)
        wo = v0.copy()
        wo[partner] = 0
        lim = xp.asarray([c.dl[r] if c.has_dl[r] else c.T], xp.i64)
        want = PS._best_blocks(xp, c, s.d, s.tb, xp.asarray(wo), npool, xp.asarray([r], xp.i64), lim,
                               xp.asarray([nev["need_s"][r]], xp.f64), to_pool=xp.asarray([p1[r]], xp.i64))[0]
        assert np.array_equal(np.asarray(xp.to_numpy(want))[0], v1[r])
    _valid_lower_keeping_jobs(pb, s, nev, sv, sp, sev)
    # not asked (the search's swap phase), on a warm plan, or off: no block changes its pool
    for cc, on_, ask in ((c, True, False), (dataclasses.replace(c, cold=False), True, True), (c, False, True)):
        monkeypatch.setattr(PS, "BLOCK_SWAPS", on_)
        wp = np.asarray(xp.to_numpy(PS._swaps(pb, xp, cc, s.pr, s.d, s.tb, nv, npool, nev, s.gev, None,
                                              blocks=ask)[1]))
        assert not ((wp != p0) & ~c.preempt).any()
    # the polish makes the exchange (and keeps every job and rule)
    monkeypatch.setattr(PS, "BLOCK_SWAPS", True)
    qv, qp, qev, kq = PS.polish(pb, xp, c, s.pr, s.d, s.tb, nv, npool, nev, s.gev)
    assert kq > 0 and ((np.asarray(xp.to_numpy(qp)) != p0) & ~c.preempt).any()
    assert qev["objective"] <= sev["objective"] and kernels.check_result(pb, s.result(qv, qp, qev)) == []
    assert _late_or_lost(c, nev, qev)[0].size == 0


def _numpy_plan_on(spec: Any, s0: Any, nv0: Any, np0: Any, backend: str, device: str) -> tuple[Any, ...]:
    """The instance ``spec`` (a ``make`` argument tuple) on ``backend``/``device`` as a cold plan, with the plan
    ``nv0`` and pools ``np0`` the numpy start ``s0`` holds, and its evaluation: the parity tests' set-up (one move
    run from the same plan on each backend)."""
    pb = make(*spec)
    s = greedy_start(pb, backend, device)
    c = dataclasses.replace(s.c, cold=True)
    nv, npool = (s.xp.asarray(np.asarray(s0.xp.to_numpy(x))) for x in (nv0, np0))
    return pb, s, c, nv, npool, PL._evaluate_plan(pb, c, s.pr, nv, npool, xp=s.xp, d=s.d)


@pytest.mark.parametrize("be", BACKENDS[1:])
def test_block_exchanges_are_the_numpy_ones_on_torch(be: tuple[str, str]) -> None:
    """torch: the swap phase with its block exchanges gives the numpy plan and pools, case by case (from the
    numpy search's plan)."""
    for i in BLOCK_CASES:  # cases
        outs = []
        _, s0, _, nv0, np0, _ = _searched_without_block_swaps(i)
        for backend, device in (("numpy", "cpu"), be):  # backends
            pb, s, c, nv, npool, nev = _numpy_plan_on(CASES[i], s0, nv0, np0, backend, device)
            sv, sp, _, k = PS._swaps(pb, s.xp, c, s.pr, s.d, s.tb, nv, npool, nev, s.gev, None, blocks=True)
            outs.append((np.asarray(s.xp.to_numpy(sv)), np.asarray(s.xp.to_numpy(sp)), k))
        (va, pa, ka), (vb, pb_, kb) = outs
        assert ka == kb > 0 and np.array_equal(va, vb) and np.array_equal(pa, pb_), i


#: seed-31 cases whose plan searched as a cold plan (:func:`_searched_without_block_swaps`) has blocks the refill
#: changes (round 17: 8 of the 40; case 10 starts four blocks earlier, case 14 ends one later)
REFILL_CASES = (10, 14)


@pytest.mark.parametrize("i", REFILL_CASES)
def test_a_refilled_block_is_one_block_that_does_its_work_for_less(i: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The polish's block refill (round 17, ``BLOCK_REFILL``, :func:`_refill_blocks`): on the plan the search left
    (its blocks phase settled), finished non-preemptible rows take new levels, some on a window other than their
    own (one slot longer or shorter at an end; a job that runs now keeps slot 0), each one unbroken block in its
    pool that does its work; the plan keeps every rule (checker), carbon and the objective fall, every job stays
    finished (on time), the greedy still dominated (seed-0 corpus-161: the MILP's 10-slot block at mostly its
    lowest level, where the plan ran 9 slots a level higher). The polish refills with its other moves off, and
    not with it off too."""
    pb, s, c, nv, npool, nev = _searched_without_block_swaps(i)
    xp = s.xp
    sv, sp, sev, k = PS._refill_blocks(pb, xp, c, s.pr, s.d, s.tb, nv, npool, nev, s.gev)
    v0, v1 = np.asarray(xp.to_numpy(nv)), np.asarray(xp.to_numpy(sv))
    changed = np.flatnonzero((v0 != v1).any(1))
    assert k == changed.size > 0 and not c.preempt[changed].any()
    assert np.array_equal(np.asarray(xp.to_numpy(sp)), np.asarray(xp.to_numpy(npool)))
    moved = 0
    for r in changed:  # (a test: the refilled blocks one by one)
        on0, on1 = np.flatnonzero(v0[r] > 0), np.flatnonzero(v1[r] > 0)
        assert on1.size > 0 and on1[-1] - on1[0] + 1 == on1.size  # one unbroken block
        assert sev["work_done_s"][r] >= nev["need_s"][r] - 1e-6
        assert c.rpool[r] < 0 or on1[0] == 0  # a job that runs now keeps slot 0
        moved += int(on0[0] != on1[0] or on0[-1] != on1[-1])
    assert moved > 0
    _valid_lower_keeping_jobs(pb, s, nev, sv, sp, sev)
    _no_polish(monkeypatch)
    assert PS.polish(pb, xp, c, s.pr, s.d, s.tb, nv, npool, nev, s.gev)[3] == 0
    monkeypatch.setattr(PS, "BLOCK_REFILL", True)
    qv, qp, qev, kq = PS.polish(pb, xp, c, s.pr, s.d, s.tb, nv, npool, nev, s.gev)
    assert kq > 0 and qev["objective"] <= sev["objective"] and kernels.check_result(pb, s.result(qv, qp, qev)) == []


def test_the_first_passing_prefix_keeps_the_room(monkeypatch: pytest.MonkeyPatch) -> None:
    """``_first_passing`` (the halvings the block refill, the pair phase and the swap phase share) returns the first
    prefix whose plan keeps the room (``_within_room``: every pool's GPUs, the site's cap, the quotas) and passes the
    exact test: the exact test does not look at the room (``_passes``: objective, carbon, jobs), so a prefix that
    breaks a cap is never tried. Seed-31 case 10's searched plan, the exact test passing everything: prefixes of 8
    and 4 moves that run every row at full power everywhere (over the room) are skipped, the prefix of 2 (the plan as
    it is) is taken; the halvings stop at 1; with the exact test itself, prefixes that leave a job unfinished are
    never taken. (Round 18's mutation audit: without the room check, or the exact test, no polish test failed.)"""
    pb, s, c, nv, npool, nev = _searched_without_block_swaps(10)
    xp = s.xp
    use0 = PS._room_use(xp, c, s.d, s.tb, nv, npool)
    pool_h = np.asarray(xp.to_numpy(npool)).astype(np.int64)
    full = np.where(pool_h >= 0, np.asarray(xp.to_numpy(s.tb.vfull)).astype(np.int64)[np.maximum(pool_h, 0)], 0)
    over = xp.astype(xp.asarray(np.repeat(full[:, None], c.T, 1)), nv.dtype)  # (every placed row at full power)
    assert not PS._within_room(xp, c, s.d, s.tb, over, npool, use0)
    tried: list[int] = []

    def build(m: int) -> tuple[Any, Any]:
        tried.append(m)
        return (over if m > 2 else nv), npool

    monkeypatch.setattr(PS, "_passes", lambda *a: True)
    finished, _, _, on_time = PS._row_status(nev)
    got = PS._first_passing(pb, xp, c, s.pr, s.d, s.tb, nv, npool, nev, 8, build, "blocks", finished, on_time, None,
                            use0, None)
    assert got is not None and got[3] == 2 and tried == [8, 4, 2], (tried, got and got[3])
    assert PS._within_room(xp, c, s.d, s.tb, got[0], got[1], use0)
    tried.clear()
    assert PS._first_passing(pb, xp, c, s.pr, s.d, s.tb, nv, npool, nev, 8, lambda m: (tried.append(m), (over, npool))[
        1], "blocks", finished, on_time, None, use0, None) is None
    assert tried == [8, 4, 2, 1]
    # and the exact test: prefixes that keep the room but leave a job unfinished (the objective up) are never taken
    monkeypatch.undo()
    off = xp.copy(nv)
    off[int(np.flatnonzero(np.asarray(nev["finished"], bool) & (c.R > 0) & ~c.must)[0])] = 0
    tried.clear()
    assert PS._first_passing(pb, xp, c, s.pr, s.d, s.tb, nv, npool, nev, 8, lambda m: (tried.append(m), (off, npool))[1],
                             "blocks", finished, on_time, None, use0, None) is None
    assert tried == [8, 4, 2, 1]


def test_the_block_refill_tries_its_rows_largest_saving_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """``_refill_blocks`` hands its rows to the halvings (``_first_passing``) in the order of their estimated saving,
    largest first, only those that save: the prefix of one row is the row of the largest saving, each longer prefix
    adds the next. Seed-31 case 10's searched plan (4 blocks refilled). (Round 18's mutation audit: with the order
    reversed, no test failed.)"""
    pb, s, c, nv, npool, nev = _searched_without_block_swaps(10)
    xp = s.xp
    got: dict[str, Any] = {}
    real_w, real_f = PS._window_answers, PS._first_passing

    def answers(*a: Any, **k: Any) -> Any:
        out = real_w(*a, **k)
        got["rows"], got["sv"] = np.asarray(xp.to_numpy(a[6])), np.asarray(xp.to_numpy(out[1]), np.float64)
        return out

    def first(*a: Any) -> Any:
        got["m"], got["build"] = a[9], a[10]
        return real_f(*a)

    monkeypatch.setattr(PS, "_window_answers", answers)
    monkeypatch.setattr(PS, "_first_passing", first)
    assert PS._refill_blocks(pb, xp, c, s.pr, s.d, s.tb, nv, npool, nev, s.gev)[3] > 0
    sv = got["sv"]
    saves = np.flatnonzero(np.isfinite(sv) & (sv > 0))
    want = got["rows"][saves[np.argsort(-sv[saves], kind="stable")]]
    assert got["m"] == want.size > 1
    v0 = np.asarray(xp.to_numpy(nv))
    for m in range(1, want.size + 1):  # prefixes
        v = np.asarray(xp.to_numpy(got["build"](m)[0]))
        assert set(np.flatnonzero((v != v0).any(1)).tolist()) <= set(want[:m].tolist()), m
        assert (v[want[m - 1]] != v0[want[m - 1]]).any(), m


def test_the_block_refill_runs_while_it_moves_rows_past_the_polish_meter(monkeypatch: pytest.MonkeyPatch) -> None:
    """The polish's refill stage (``BLOCK_REFILL``) runs its rounds while the refill moves rows, whatever the polish's
    meter has left (a window moves one slot a round: seed-0 corpus-65's blocks start three slots later over the
    rounds, 1.0207 -> 1.0157 x the carbon LP): seed-31 case 10's searched plan polished on a spent meter (1 cell)
    refills blocks round after round until a round moves none. (Round 18's mutation audit: with the refill's rounds
    held to the meter like the other stages', no test failed.)"""
    pb, s, c, nv, npool, nev = _searched_without_block_swaps(10)
    moved: list[int] = []
    real = PS._refill_blocks

    def spy(*a: Any, **k: Any) -> Any:
        out = real(*a, **k)
        moved.append(out[3])
        return out

    monkeypatch.setattr(PS, "_refill_blocks", spy)
    monkeypatch.setattr(PS, "SHADOW_CAP", 0.0)  # (the move past the cap, last, runs the stages again on its own cells)
    got = PS.polish(pb, s.xp, c, s.pr, s.d, s.tb, nv, npool, nev, s.gev, None, 1.0)
    assert len(moved) >= 3 and moved[-1] == 0 and all(k > 0 for k in moved[:-1]), moved
    assert got[2]["objective"] < nev["objective"] and kernels.check_result(pb, s.result(*got[:3])) == []


@pytest.mark.parametrize("be", BACKENDS[1:])
def test_refilled_blocks_are_the_numpy_ones_on_torch(be: tuple[str, str]) -> None:
    """torch: the block refill gives the numpy plan, case by case (from the numpy search's plan)."""
    for i in REFILL_CASES:  # cases
        outs = []
        _, s0, _, nv0, np0, _ = _searched_without_block_swaps(i)
        for backend, device in (("numpy", "cpu"), be):  # backends
            pb, s, c, nv, npool, nev = _numpy_plan_on(CASES[i], s0, nv0, np0, backend, device)
            sv, _, _, k = PS._refill_blocks(pb, s.xp, c, s.pr, s.d, s.tb, nv, npool, nev, s.gev)
            outs.append((np.asarray(s.xp.to_numpy(sv)), k))
        (va, ka), (vb, kb) = outs
        assert ka == kb > 0 and np.array_equal(va, vb), i


def test_a_response_runs_every_forced_cell() -> None:
    """``_best_rows(forced=...)`` (the block refill's windows): every forced cell with an option runs (its first hull
    step taken first, never given back) even where the need is met with fewer cells, and the need is kept; the
    same options without ``forced`` run fewer cells (seed-31 case 10's searched plan, its blocks' own cells forced,
    half their need asked)."""
    pb, s, c, nv, npool, nev = _searched_without_block_swaps(10)
    xp = s.xp
    pool_h = np.asarray(xp.to_numpy(npool)).astype(np.int64)
    rows_h = np.flatnonzero(~c.preempt & ~c.must & (c.R > 0) & (pool_h >= 0))
    rows = xp.asarray(rows_h, xp.i64)
    lim = xp.asarray(np.where(c.has_dl[rows_h], c.dl[rows_h], c.T), xp.i64)
    C, wk, sub, keep0 = PS._options(xp, c, s.d, s.tb, nv, npool, rows, lim)
    win = sub > 0
    V = int(s.tb.load.shape[1])
    Cw = xp.where(win[:, :, None] | (xp.arange(V) == 0)[None, None, :], C, float("inf"))
    half = xp.asarray(np.asarray(nev["need_s"], np.float64)[rows_h] / 2, xp.f64)
    zero = xp.zeros(rows_h.size, xp.f64)
    ran = []
    for forced in (win, None):  # forced, not
        ns = PS._best_rows(xp, c, s.d, s.tb, nv, npool, rows, lim, half, half, zero, zero, opts=(Cw, wk, sub, keep0),
                           raw=True, forced=forced)[0]
        on = np.asarray(xp.to_numpy(ns)) > 0
        lvl = np.asarray(xp.to_numpy(ns)).astype(np.int64)
        work = np.take_along_axis(np.asarray(xp.to_numpy(wk)), lvl, 1).sum(1)
        assert not (on & ~np.asarray(xp.to_numpy(win))).any() and (work >= np.asarray(xp.to_numpy(half)) - 1e-6).all()
        ran.append(on.sum(1))
    assert np.array_equal(ran[0], np.asarray(xp.to_numpy(win)).sum(1)) and (ran[1] < ran[0]).any()


def test_a_window_answer_runs_its_whole_window_or_gives_no_block() -> None:
    """``_window_answers`` keeps a response only where it runs exactly its window (one unbroken block): a forced
    cell with no level to run (its pool full or the cap taken there: a watt exchange's other row, ``BLOCK_WATTS``,
    can take the room of a block's own cells) is skipped by the response, which then breaks the block. Seed-31
    case 10's searched plan, every other block's middle cell (inside each of the refill's windows) left without
    a level: those rows give no block (``-inf``), the others the same answers as without the holes, and every
    answer with a saving is one unbroken block; with half the need asked the answers still run whole windows (their
    cells forced on). (Round 18's mutation audit: without the window test the holed rows answer with a broken block
    and a finite saving; without the forced cells the half-need answers break their windows; neither failed a
    test.)"""
    pb, s, c, nv, npool, nev = _searched_without_block_swaps(10)
    xp = s.xp
    status = PS._row_status(nev)
    rows_h = PS._settled_rows(c, np.asarray(xp.to_numpy(npool)).astype(np.int64), status, ~c.preempt)
    rows = xp.asarray(rows_h, xp.i64)
    lim = xp.asarray(PS._windows(c, rows_h)[0], xp.i64)
    C, wk, sub, keep0 = PS._options(xp, c, s.d, s.tb, nv, npool, rows, lim)
    old = PS._old_cost(xp, C, wk, sub)
    need = xp.asarray(status[1][rows_h], xp.f64)
    on = np.asarray(xp.to_numpy(sub)) > 0
    holed = np.arange(rows_h.size) % 2 == 0
    hole = np.zeros(on.shape + (int(s.tb.load.shape[1]),), bool)
    for r in np.flatnonzero(holed):  # (the holed rows: the middle cell of each one's block)
        t = np.flatnonzero(on[r])
        assert t.size >= 3  # (so its middle cell is inside every window)
        hole[r, t[t.size // 2], 1:] = True
    answers = []
    for Cx in (C, xp.where(xp.asarray(hole), float("inf"), C)):  # without, with the holes
        pick, sv = PS._window_answers(xp, c, s.d, s.tb, nv, npool, rows, lim, need, (Cx, wk, sub, keep0), old)
        answers.append((np.asarray(xp.to_numpy(pick)), np.asarray(xp.to_numpy(sv), np.float64)))
    (p0, s0), (p1, s1) = answers
    assert np.isfinite(s0[holed]).any()  # (without the holes they give blocks)
    # half the need asked: the answers still run whole windows (their cells forced on, whatever the need; an
    # unforced response stops at the need and breaks the window)
    ph, sh = (np.asarray(xp.to_numpy(x), np.float64) for x in PS._window_answers(
        xp, c, s.d, s.tb, nv, npool, rows, lim, need / 2, (C, wk, sub, keep0), old))
    assert np.isfinite(sh).any()
    assert all((ph[r] > 0).sum() >= on[r].sum() - 1 for r in np.flatnonzero(np.isfinite(sh)))
    assert np.isneginf(s1[holed]).all()
    assert np.array_equal(p1[~holed], p0[~holed]) and np.array_equal(s1[~holed], s0[~holed])
    for pick, sv in answers:  # (every answer with a saving: one unbroken block)
        for r in np.flatnonzero(np.isfinite(sv)):
            t = np.flatnonzero(pick[r] > 0)
            assert t.size > 0 and t[-1] - t[0] + 1 == t.size, (r, pick[r])


# --- a block moved whole (kernels.powersearch._shift_blocks, REFILL_SHIFTS) -----------------------------------


def _shift_problem() -> PlanProblem:
    """One pool of 8 GPUs with one power level (full; off the other option), one non-preemptible 8-GPU job of 3
    slots' work, wind for it in slots 6-8 only (none elsewhere, the grid's carbon the same in every slot)."""
    T, slot = 12, 900.0
    full = 1.15 * 8 * (700.0 + 450.0)  # (the job's facility watts)
    wind = np.zeros(T)
    wind[6:9] = 1.2 * full
    return PlanProblem(
        slot_s=slot, pue=1.15, wind_w=wind, carbon_g_per_kwh=np.full(T, 300.0), grid_cap_w=np.full(T, 2 * full),
        site_max_w=np.full(T, 2 * full), pool_gpus=np.full((1, T), 8), tdp_w=np.array([700.0]),
        idle_w=np.array([75.0]), host_w_per_gpu=np.array([450.0]), min_power_fraction=np.array([1.0]),
        curve_f=np.array([[1.0]]), curve_s=np.array([[1.0]]), gpus=np.array([8]), remaining_s=np.array([3 * slot]),
        release=np.array([0]), deadline=np.array([NO_DEADLINE]), weight=np.array([1.0]),
        eligible=np.ones((1, 1), bool), must_run=np.zeros(1, bool), preemptible=np.zeros(1, bool),
        running_pool=np.array([-1]), preempt_loss_s=np.zeros(1), tenant=np.array([0]),
        tenant_quota_gpus=np.array([np.inf]))


def _shift_start(backend: str = "numpy", device: str = "cpu") -> tuple[Any, ...]:
    """:func:`_shift_problem` as a cold plan with its block in slots 2-4 (no wind), and its evaluation."""
    pb = _shift_problem()
    s = greedy_start(pb, backend, device)
    c = dataclasses.replace(s.c, cold=True)
    xp = s.xp
    v = np.zeros((1, c.T), np.int64)
    v[0, 2:5] = 1
    nv, npool = xp.astype(xp.asarray(v), s.gv.dtype), xp.astype(xp.asarray(np.zeros(1, np.int64)), s.gp.dtype)
    return pb, s, c, nv, npool, PL._evaluate_plan(pb, c, s.pr, nv, npool, xp=xp, d=s.d)


def test_a_block_moves_whole_into_the_wind_where_no_window_reaches_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """The polish's block shifts (round 19, ``REFILL_SHIFTS``, ``_shift_blocks``): a block at its one level in slots
    2-4 (no wind) where the wind is in slots 6-8: none of the block refill's windows lowers it (one slot longer
    runs a fourth full-power slot, one shorter does not do the work), the carbon phase has no row to move; the
    block moved whole by 4 slots runs in the wind (only the idle GPUs import), valid. The polish moves it there only where asked: with
    ``REFILL_SHIFTS = ()`` the plan as it is given."""
    pb, s, c, nv, npool, nev = _shift_start()
    xp = s.xp
    assert nev["carbon_g"] > 0 and bool(np.asarray(nev["finished"], bool)[0])
    assert PS._refill_blocks(pb, xp, c, s.pr, s.d, s.tb, nv, npool, nev, None)[3] == 0
    assert PS._phase(pb, xp, c, s.pr, s.d, s.tb, nv, npool, nev, "carbon", None, None, flips=True)[3] == 0
    sv, sp, sev, k = PS._shift_blocks(pb, xp, c, s.pr, s.d, s.tb, nv, npool, nev, None, None)
    assert k == 1 and np.flatnonzero(np.asarray(xp.to_numpy(sv))[0] > 0).tolist() == [6, 7, 8]
    idle = PL._evaluate_plan(pb, c, s.pr, xp.zeros((1, c.T), nv.dtype), npool, xp=xp, d=s.d)["carbon_g"]  # (idle)
    assert sev["carbon_g"] == pytest.approx(idle, rel=1e-12) and sev["carbon_g"] < nev["carbon_g"]
    assert sev["objective"] < nev["objective"] and bool(np.asarray(sev["finished"])[0])
    assert kernels.check_result(pb, s.result(sv, sp, sev)) == []
    qv, qp, qev, kq = PS.polish(pb, xp, c, s.pr, s.d, s.tb, nv, npool, nev, None)
    assert kq > 0 and qev["carbon_g"] == pytest.approx(idle, rel=1e-12)
    assert kernels.check_result(pb, s.result(qv, qp, qev)) == []
    monkeypatch.setattr(PS, "REFILL_SHIFTS", ())
    assert PS._shift_blocks(pb, xp, c, s.pr, s.d, s.tb, nv, npool, nev, None, None)[3] == 0
    assert PS.polish(pb, xp, c, s.pr, s.d, s.tb, nv, npool, nev, None)[3] == 0


#: seed-31 cases whose cold searched plan (:func:`_searched_without_flips`), polished without the block shifts
#: (``REFILL_SHIFTS = ()``), has a block the shifts move (round 19: case 20 of the 40)
SHIFT_CASES = (20,)


@functools.cache
def _polished_without_shifts(i: int, backend: str = "numpy", device: str = "cpu") -> tuple[Any, ...]:
    """Seed-31 case ``i``'s cold searched plan (:func:`_searched_without_flips`) polished without the block shifts
    (``REFILL_SHIFTS = ()``), on an unlimited meter."""
    pb, s, c, nv, npool, nev = _searched_without_flips(i)
    keep = PS.REFILL_SHIFTS
    PS.REFILL_SHIFTS = ()
    try:
        pv, pp, pev, _ = PS.polish(pb, s.xp, c, s.pr, s.d, s.tb, nv, npool, nev, s.gev, None, math.inf)
    finally:
        PS.REFILL_SHIFTS = keep
    return pb, s, c, pv, pp, pev


@pytest.mark.parametrize("i", SHIFT_CASES)
def test_a_shifted_block_and_the_carbon_phase_after_it_lower_the_polished_plan(
        i: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """On the plan the polish without the shifts leaves (its refill settled), ``_shift_blocks`` moves one finished
    non-preemptible row that does not run now whole: one unbroken block of its length before, by one of
    ``REFILL_SHIFTS``; the other rows it changes are preemptible (the carbon phase after it: the block shifted alone
    does not pass the exact test, the two together do); the plan keeps every rule, carbon and the objective fall, every job stays finished (on time), the greedy still dominated. The polish
    with the shifts ends lower than without them (unlimited meter); without them it returns the plan as it is."""
    pb, s, c, nv, npool, nev = _polished_without_shifts(i)
    xp = s.xp
    sv, sp, sev, k = PS._shift_blocks(pb, xp, c, s.pr, s.d, s.tb, nv, npool, nev, s.gev, None)
    v0, v1 = np.asarray(xp.to_numpy(nv)), np.asarray(xp.to_numpy(sv))
    changed = np.flatnonzero((v0 != v1).any(1))
    blocks = changed[~c.preempt[changed]]
    assert k == changed.size > blocks.size == 1  # (the block and the rows the carbon phase moved)
    r = int(blocks[0])
    on0, on1 = np.flatnonzero(v0[r] > 0), np.flatnonzero(v1[r] > 0)
    assert c.rpool[r] < 0 and on1.size == on0.size and on1[-1] - on1[0] + 1 == on1.size
    assert int(on1[0] - on0[0]) in PS.REFILL_SHIFTS
    alone = xp.copy(nv)  # (the block shifted, the other rows as they were: not lower, the pair is)
    alone[r] = sv[r]
    aev = PL._evaluate_plan(pb, c, s.pr, alone, npool, xp=xp, d=s.d)
    assert not PS._passes(c, "blocks", nev, aev, *PS._row_status(nev)[::3], s.gev)
    _valid_lower_keeping_jobs(pb, s, nev, sv, sp, sev)
    pb0, s0, c0, nv0, np0, nev0 = _searched_without_flips(i)
    on = PS.polish(pb0, s0.xp, c0, s0.pr, s0.d, s0.tb, nv0, np0, nev0, s0.gev, None, math.inf)
    assert on[2]["objective"] < nev["objective"] and kernels.check_result(pb0, s0.result(*on[:3])) == []
    monkeypatch.setattr(PS, "REFILL_SHIFTS", ())
    assert PS.polish(pb, xp, c, s.pr, s.d, s.tb, nv, npool, nev, s.gev, None, math.inf)[3] == 0


@pytest.mark.parametrize("be", BACKENDS[1:])
def test_shifted_blocks_are_the_numpy_ones_on_torch(be: tuple[str, str]) -> None:
    """torch: the block shifts give the numpy plan and pools, on the constructed instance and case by case (from the
    numpy polish's plan without them)."""
    outs = []
    for backend, device in (("numpy", "cpu"), be):  # backends
        pb, s, c, nv, npool, nev = _shift_start(backend, device)
        sv, sp, _, k = PS._shift_blocks(pb, s.xp, c, s.pr, s.d, s.tb, nv, npool, nev, None, None)
        outs.append((np.asarray(s.xp.to_numpy(sv)), np.asarray(s.xp.to_numpy(sp)), k))
    for i in SHIFT_CASES:  # cases
        _, s0, _, nv0, np0, _ = _polished_without_shifts(i)
        for backend, device in (("numpy", "cpu"), be):  # backends
            pb, s, c, nv, npool, nev = _numpy_plan_on(CASES[i], s0, nv0, np0, backend, device)
            sv, sp, _, k = PS._shift_blocks(pb, s.xp, c, s.pr, s.d, s.tb, nv, npool, nev, s.gev, None)
            outs.append((np.asarray(s.xp.to_numpy(sv)), np.asarray(s.xp.to_numpy(sp)), k))
    for (va, pa, ka), (vb, pb_, kb) in zip(outs[::2], outs[1::2]):  # (numpy, torch) per instance
        assert ka == kb > 0 and np.array_equal(va, vb) and np.array_equal(pa, pb_)


# --- a block stretched longer at a lower level (kernels.powersearch._stretch_blocks, STRETCH_SLOTS) -------------------


def _stretch_start(backend: str = "numpy", device: str = "cpu") -> tuple[Any, ...]:
    """One pool of 8 GPUs with two levels (half power at 0.75 of the speed, full), no wind, the grid's carbon the same
    in every slot: a non-preemptible 8-GPU job that runs now (3 slots' work at full power, 4 at half) at full power in
    slots 0-2, and a preemptible 8-GPU job (1 slot's work) at full power in slot 3, as a cold plan, and its
    evaluation."""
    T, slot = 8, 900.0
    pb = PlanProblem(
        slot_s=slot, pue=1.15, wind_w=np.zeros(T), carbon_g_per_kwh=np.full(T, 300.0), grid_cap_w=np.full(T, 1e6),
        site_max_w=np.full(T, 1e6), pool_gpus=np.full((1, T), 8), tdp_w=np.array([700.0]), idle_w=np.array([50.0]),
        host_w_per_gpu=np.array([0.0]), min_power_fraction=np.array([0.5]), curve_f=np.array([[0.5, 1.0]]),
        curve_s=np.array([[0.75, 1.0]]), gpus=np.array([8, 8]), remaining_s=np.array([3 * slot, slot]),
        release=np.array([0, 0]), deadline=np.array([NO_DEADLINE, NO_DEADLINE]), weight=np.array([1.0, 1.0]),
        eligible=np.ones((2, 1), bool), must_run=np.zeros(2, bool), preemptible=np.array([False, True]),
        running_pool=np.array([0, -1]), preempt_loss_s=np.zeros(2), tenant=np.array([0, 0]),
        tenant_quota_gpus=np.array([np.inf]))
    s = greedy_start(pb, backend, device)
    c = dataclasses.replace(s.c, cold=True)
    xp = s.xp
    top = int(s.tb.load.shape[1]) - 1  # (full power)
    v = np.zeros((2, T), np.int64)
    v[0, 0:3] = top
    v[1, 3] = top
    nv, npool = xp.astype(xp.asarray(v), s.gv.dtype), xp.astype(xp.asarray(np.zeros(2, np.int64)), s.gp.dtype)
    return pb, s, c, nv, npool, PL._evaluate_plan(pb, c, s.pr, nv, npool, xp=xp, d=s.d)


def test_a_running_block_stretched_at_its_lowest_level_pushes_the_row_in_its_way_out(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The polish's block stretch (round 21, ``STRETCH_SLOTS``, ``_stretch_blocks``): a running block at full power in
    slots 0-2 with a preemptible row holding every GPU of slot 3: the block refill's one-slot-longer window finds no
    GPUs there, so no polish move but the stretch runs the block at its lowest level; the stretch makes it one
    unbroken block of 4 slots at the lowest level from slot 0 (the same work), the preemptible row placed again
    after it; valid, carbon and the objective lower, both jobs finished. The polish ends at that carbon with it and
    higher without it (``STRETCH_SLOTS = 0``), where the stretch leaves the plan as it is."""
    pb, s, c, nv, npool, nev = _stretch_start()
    xp = s.xp
    assert bool(np.asarray(nev["finished"], bool).all()) and kernels.check_result(pb, s.result(nv, npool, nev)) == []
    assert PS._refill_blocks(pb, xp, c, s.pr, s.d, s.tb, nv, npool, nev, None)[3] == 0
    sv, sp, sev, k = PS._stretch_blocks(pb, xp, c, s.pr, s.d, s.tb, nv, npool, nev, None, {"left": 1e6})
    v1 = np.asarray(xp.to_numpy(sv))
    assert k == 1 and v1[0].tolist() == [1, 1, 1, 1, 0, 0, 0, 0] and not (v1[1, :4] > 0).any()
    assert sev["carbon_g"] < nev["carbon_g"] and sev["objective"] < nev["objective"]
    assert bool(np.asarray(sev["finished"], bool).all()) and kernels.check_result(pb, s.result(sv, sp, sev)) == []
    on = PS.polish(pb, xp, c, s.pr, s.d, s.tb, nv, npool, nev, None)
    assert on[3] > 0 and on[2]["carbon_g"] == pytest.approx(sev["carbon_g"], rel=1e-12)
    assert kernels.check_result(pb, s.result(*on[:3])) == []
    monkeypatch.setattr(PS, "STRETCH_SLOTS", 0)
    off = PS.polish(pb, xp, c, s.pr, s.d, s.tb, nv, npool, nev, None)
    assert off[2]["carbon_g"] > sev["carbon_g"] * (1 + 1e-6)
    assert np.asarray(xp.to_numpy(off[0]))[0].max() > 1  # (the block still runs above its lowest level somewhere)


#: seed-0 corpus instances where, on the plan the polish without it leaves (:func:`_polished_without`), the block
#: stretch moves a block (round 21: 156, the one seed-0 plan it lowers in kernels.plan)
STRETCH_CASES = (156,)


@pytest.mark.parametrize("i", STRETCH_CASES)
def test_a_stretched_block_lowers_the_polished_plan(i: int) -> None:
    """On the plan the rest of the polish leaves, ``_stretch_blocks`` makes a finished non-preemptible block longer
    (by at most ``STRETCH_SLOTS``) and one unbroken run whose highest level is below the block's before, the rows
    in its way placed again and searched; the plan keeps every rule (checker), carbon and the objective fall, every
    job stays finished (on time), the greedy still dominated; on a spent meter, no try."""
    pb, s, c, nv, npool, nev = _polished_without("STRETCH_SLOTS", i)
    xp = s.xp
    spent: dict[str, Any] = {"left": 0.0}
    assert PS._stretch_blocks(pb, xp, c, s.pr, s.d, s.tb, nv, npool, nev, s.gev, spent)[3] == 0
    assert spent["left"] == 0.0  # (not a try)
    m = {"left": PS.FLIP_SEARCH_CELLS}
    sv, sp, sev, k = PS._stretch_blocks(pb, xp, c, s.pr, s.d, s.tb, nv, npool, nev, s.gev, m)
    assert k >= 1 and m["left"] < PS.FLIP_SEARCH_CELLS
    _valid_lower_keeping_jobs(pb, s, nev, sv, sp, sev)
    v0, v1 = np.asarray(xp.to_numpy(nv)), np.asarray(xp.to_numpy(sv))
    longer = []
    for r in np.flatnonzero(~c.preempt & (v0 != v1).any(1)):  # the blocks that changed
        on0, on1 = np.flatnonzero(v0[r] > 0), np.flatnonzero(v1[r] > 0)
        assert on1.size and on1[-1] - on1[0] + 1 == on1.size  # (one unbroken block)
        if on0.size < on1.size <= on0.size + PS.STRETCH_SLOTS and v1[r].max() < v0[r].max():
            longer.append(int(r))
    assert longer  # (a block longer and lower)


@pytest.mark.parametrize("be", BACKENDS[1:])
def test_stretched_blocks_are_the_numpy_ones_on_torch(be: tuple[str, str]) -> None:
    """torch: the block stretch gives the numpy plan and pools, on the constructed instance and case by case (from the
    numpy polish's plan without it), on the same meter."""
    outs = []
    for backend, device in (("numpy", "cpu"), be):  # backends
        pb, s, c, nv, npool, nev = _stretch_start(backend, device)
        m = {"left": 1e6}
        sv, sp, _, k = PS._stretch_blocks(pb, s.xp, c, s.pr, s.d, s.tb, nv, npool, nev, None, m)
        outs.append((np.asarray(s.xp.to_numpy(sv)), np.asarray(s.xp.to_numpy(sp)), k, m["left"]))
    (va, pa, ka, la), (vb, pb_, kb, lb) = outs
    assert ka == kb > 0 and la == lb and np.array_equal(va, vb) and np.array_equal(pa, pb_)
    _last_stage_on_torch(be, STRETCH_CASES, "STRETCH_SLOTS", PS._stretch_blocks)


def _last_stage_on_torch(be: tuple[str, str], cases: tuple[int, ...], move: str, stage: Any) -> None:
    """torch: one of the polish's last stages (``stage``, switched by ``move``) gives the numpy plan, pools, moves and
    meter, case by case, from the numpy polish's plan without it (:func:`_polished_without`), on the same meter."""
    for i in cases:  # cases
        outs = []
        _, s0, _, nv0, np0, _ = _polished_without(move, i)
        for backend, device in (("numpy", "cpu"), be):  # backends
            pb, s, c, nv, npool, nev = _numpy_plan_on(_family(0)[i], s0, nv0, np0, backend, device)
            m = {"left": PS.FLIP_SEARCH_CELLS}
            sv, sp, _, k = stage(pb, s.xp, c, s.pr, s.d, s.tb, nv, npool, nev, s.gev, m)
            outs.append((np.asarray(s.xp.to_numpy(sv)), np.asarray(s.xp.to_numpy(sp)), k, m["left"]))
        (va, pa, ka, la), (vb, pb_, kb, lb) = outs
        assert ka == kb >= 1 and la == lb and np.array_equal(va, vb) and np.array_equal(pa, pb_), i


#: seed-0 corpus instances where the polish's one-for-two pool exchanges (``POOL_TRADES``) move rows on the plan the rest
#: of the polish leaves from the greedy's cold search (round 17: 119 and 17; none of the 40 seed-31 cases, whose
#: searched plans that do all their work leave no such trade)
TRADE_CASES = (119, 17)


@functools.cache
def _polished_without(move: str, i: int) -> tuple[Any, ...]:
    """Seed-0 corpus-``i``'s cold searched plan (:func:`_searched_without_flips`) polished with the polish's
    ``move`` (a switch of :mod:`kernels.powersearch`) off, on an unlimited meter; and the move past the cap
    (``SHADOW_CAP``, round 19), the block displacements into other pools (``DISPLACE_POOLS``, round 20), the block
    stretch (``STRETCH_SLOTS``) and the preemptible rows' moves into pools that do more work per watt
    (``PREEMPT_POOLS``, round 21: the polish's last moves, after every move the earlier rounds' cases test) off too."""
    pb, s, c, nv, npool, nev = _searched_without_flips(i, 0)
    keep = {m: getattr(PS, m) for m in (move, "SHADOW_CAP", "DISPLACE_POOLS", "STRETCH_SLOTS", "PREEMPT_POOLS")}
    for m in keep:  # (off)
        setattr(PS, m, False)
    try:
        pv, pp, pev, _ = PS.polish(pb, s.xp, c, s.pr, s.d, s.tb, nv, npool, nev, s.gev, None, math.inf)
    finally:
        for m, v in keep.items():  # (restored)
            setattr(PS, m, v)
    return pb, s, c, pv, pp, pev


def _polished_without_trades(i: int) -> tuple[Any, ...]:
    """:func:`_polished_without` the one-for-two pool exchanges (``POOL_TRADES``)."""
    return _polished_without("POOL_TRADES", i)


@pytest.mark.parametrize("i", TRADE_CASES)
def test_one_row_leaves_a_pool_so_that_two_enter(i: int) -> None:
    """The polish's one-for-two pool exchanges (``_trades``, round 17): on the plan the rest of the polish leaves
    where it is (its carbon phase with slot-0 flips and its swap phase with block and watt exchanges move no row),
    one row moves from pool p to q and two from q to p; the plan keeps every rule (checker), carbon and the
    objective fall, every job stays finished (on time) and the greedy still dominated (seed-0 corpus-196: an
    8-GPU row enters a 16-GPU pool where two 8-GPU rows each hold half its slots)."""
    pb, s, c, nv, npool, nev = _polished_without_trades(i)
    xp = s.xp
    assert PS._cold_and_done(c, nev)
    assert PS._phase(pb, xp, c, s.pr, s.d, s.tb, nv, npool, nev, "carbon", s.gev, None, flips=True)[3] == 0
    assert PS._swaps(pb, xp, c, s.pr, s.d, s.tb, nv, npool, nev, s.gev, None, blocks=True, watt_pairs=True)[3] == 0
    sv, sp, sev, k = PS._trades(pb, xp, c, s.pr, s.d, s.tb, nv, npool, nev, s.gev)
    assert k == 3
    _valid_lower_keeping_jobs(pb, s, nev, sv, sp, sev)
    p0, p1 = np.asarray(xp.to_numpy(npool)), np.asarray(xp.to_numpy(sp))
    moved = np.flatnonzero(p0 != p1)
    assert moved.size == 3
    ex = list(zip(p0[moved].tolist(), p1[moved].tolist()))
    assert sorted(ex.count(e) for e in set(ex)) == [1, 2]  # one move p -> q, two q -> p
    assert len({tuple(sorted(e)) for e in ex}) == 1


@pytest.mark.parametrize("i", TRADE_CASES)
def test_each_trades_three_answers_fit_together(i: int) -> None:
    """Every trade ``_trade_answers`` proposes there (a into q against the plan without b1 and b2, b1 into p with a
    moved, b2 into p with both moved) keeps, all three rows applied together, every pool's GPUs and the site's cap
    (``_within_room``): each answer sees the rows that answered before it as they now are (none of these cases'
    rows shares a tenant's quota with another's move); some of them are estimated to save."""
    pb, s, c, nv, npool, nev = _polished_without_trades(i)
    xp = s.xp
    got = PS._trade_answers(xp, c, s.d, s.tb, nv, npool, nev)
    _each_keeps_the_room(got, s, c, nv, npool, i)


def _each_keeps_the_room(got: Any, s: Any, c: Any, nv: Any, npool: Any, i: int) -> None:
    """The multi-row exchanges ``got`` (``(moves, gain)`` of ``_trade_answers`` or ``_chain_answers``: each move's
    rows, new levels and pools): some estimated to save, and each, all its rows applied together, within the room
    (``_within_room``) of the plan ``nv``, ``npool``."""
    xp = s.xp
    assert got is not None
    moves, gain = got
    assert np.isfinite(gain).any()
    use0 = PS._room_use(xp, c, s.d, s.tb, nv, npool)
    for t in range(gain.size):  # exchanges
        v, p = xp.copy(nv), xp.copy(npool)
        for r, new, to in moves:  # (its rows)
            v[r[t]] = new[t]
            p[r[t]] = to[t]
        assert PS._within_room(xp, c, s.d, s.tb, v, p, use0), (i, t)


def _makes_only_where_asked(i: int, flag: str, polished_without: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The polish move ``flag`` on: the polish of case ``i``'s cold searched plan ends lower in objective and carbon
    than the polish without it (``polished_without``), valid; off: the polish of the plan that one left returns it
    as it is (both on an unlimited meter)."""
    pb, s, c, nv, npool, nev = _searched_without_flips(i, 0)
    _, _, _, pv, pp, pev = polished_without(i)
    on = PS.polish(pb, s.xp, c, s.pr, s.d, s.tb, nv, npool, nev, s.gev, None, math.inf)
    assert on[2]["objective"] < pev["objective"] and on[2]["carbon_g"] < pev["carbon_g"]
    assert kernels.check_result(pb, s.result(*on[:3])) == []
    monkeypatch.setattr(PS, flag, False)
    monkeypatch.setattr(PS, "SHADOW_CAP", False)  # (off in ``polished_without`` too: the polish's last moves)
    monkeypatch.setattr(PS, "DISPLACE_POOLS", False)
    monkeypatch.setattr(PS, "PREEMPT_POOLS", False)
    monkeypatch.setattr(PS, "STRETCH_SLOTS", False)
    assert PS.polish(pb, s.xp, c, s.pr, s.d, s.tb, pv, pp, pev, s.gev, None, math.inf)[3] == 0


def _three_rows_the_numpy_ones_on_torch(cases: tuple[int, ...], polished_without: Any, move: Any,
                                        be: tuple[str, str]) -> None:
    """The three-row move ``move`` (``PS._trades``, ``PS._chains``) on backend ``be`` gives the numpy plan and pools,
    case by case, from the numpy polish's plan without it (``polished_without``), three rows moved on each."""
    for i in cases:  # cases
        outs = []
        _, s0, _, nv0, np0, _ = polished_without(i)
        for backend, device in (("numpy", "cpu"), be):  # backends
            pb, s, c, nv, npool, nev = _numpy_plan_on(_family(0)[i], s0, nv0, np0, backend, device)
            sv, sp, _, k = move(pb, s.xp, c, s.pr, s.d, s.tb, nv, npool, nev, s.gev)
            outs.append((np.asarray(s.xp.to_numpy(sv)), np.asarray(s.xp.to_numpy(sp)), k))
        (va, pa, ka), (vb, pb_, kb) = outs
        assert ka == kb == 3 and np.array_equal(va, vb) and np.array_equal(pa, pb_), i


@pytest.mark.parametrize("i", TRADE_CASES)
def test_the_polish_makes_the_trades_only_where_asked(i: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """``POOL_TRADES`` on, the polish of the cold searched plan ends lower than with it off (the trades and the
    search after them), valid; off, the polish of the plan it left returns it as it is (both on an unlimited
    meter: a polish the budget ends may leave a move for the next)."""
    _makes_only_where_asked(i, "POOL_TRADES", _polished_without_trades, monkeypatch)


@pytest.mark.parametrize("be", BACKENDS[1:])
def test_trades_are_the_numpy_ones_on_torch(be: tuple[str, str]) -> None:
    """torch: the one-for-two pool exchanges give the numpy plan and pools, case by case (from the numpy polish's
    plan without them)."""
    _three_rows_the_numpy_ones_on_torch(TRADE_CASES, _polished_without_trades, PS._trades, be)


#: seed-0 corpus instances where the polish's pool chains (``POOL_CHAINS``) move rows on the plan the rest of the polish
#: leaves from the greedy's cold search (round 18: 17, where the non-preemptible job 5 leaves the 700 W pool 0 for
#: the 400 W pool 1, a 2-GPU row leaves pool 1 for pool 2 and a row of pool 2 answers around it)
CHAIN_CASES = (17,)


def _polished_without_chains(i: int) -> tuple[Any, ...]:
    """:func:`_polished_without` the pool chains (``POOL_CHAINS``)."""
    return _polished_without("POOL_CHAINS", i)


@pytest.mark.parametrize("i", CHAIN_CASES)
def test_a_row_leaves_a_pool_for_a_third_so_that_another_enters(i: int) -> None:
    """The polish's pool chains (``_chains``, round 18): on the plan the rest of the polish leaves where it is (its
    carbon phase, swap phase and one-for-two pool exchanges move no row), row a moves from pool p to q, row b from
    q to a third pool r, and row c of r answers there (or moves to p); the plan keeps every rule (checker), carbon
    and the objective fall, every job stays finished (on time) and the greedy still dominated."""
    pb, s, c, nv, npool, nev = _polished_without_chains(i)
    xp = s.xp
    assert PS._cold_and_done(c, nev)
    assert PS._phase(pb, xp, c, s.pr, s.d, s.tb, nv, npool, nev, "carbon", s.gev, None, flips=True)[3] == 0
    assert PS._swaps(pb, xp, c, s.pr, s.d, s.tb, nv, npool, nev, s.gev, None, blocks=True, watt_pairs=True)[3] == 0
    assert PS._trades(pb, xp, c, s.pr, s.d, s.tb, nv, npool, nev, s.gev)[3] == 0
    sv, sp, sev, k = PS._chains(pb, xp, c, s.pr, s.d, s.tb, nv, npool, nev, s.gev)
    assert k == 3
    _valid_lower_keeping_jobs(pb, s, nev, sv, sp, sev)
    p0, p1 = np.asarray(xp.to_numpy(npool)), np.asarray(xp.to_numpy(sp))
    moved = np.flatnonzero(p0 != p1)
    assert moved.size in (2, 3)
    ex = dict(zip(p0[moved].tolist(), p1[moved].tolist()))  # (each pool left by one row)
    assert len(ex) == moved.size and len(set(ex) | set(ex.values())) == 3  # a chain p -> q -> r (-> p) of three pools
    assert all(ex.get(q) != p for p, q in ex.items())  # (no two pools exchange rows: the swaps' and trades' moves)


@pytest.mark.parametrize("i", CHAIN_CASES)
def test_each_chains_three_answers_fit_together(i: int) -> None:
    """Every chain ``_chain_answers`` proposes there (a into q without b, b into r with a moved and without c, c in
    r or p with both moved) keeps, all three rows applied together, every pool's GPUs and the site's cap
    (``_within_room``): each answer sees the rows that answered before it as they now are; some of them are
    estimated to save."""
    pb, s, c, nv, npool, nev = _polished_without_chains(i)
    xp = s.xp
    got = PS._chain_answers(xp, c, s.d, s.tb, nv, npool, nev)
    _each_keeps_the_room(got, s, c, nv, npool, i)


@pytest.mark.parametrize("i", CHAIN_CASES)
def test_the_polish_makes_the_chains_only_where_asked(i: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """``POOL_CHAINS`` on, the polish of the cold searched plan ends lower than with it off (the chains and the
    search after them), valid; off, the polish of the plan it left returns it as it is (both on an unlimited
    meter)."""
    _makes_only_where_asked(i, "POOL_CHAINS", _polished_without_chains, monkeypatch)


@pytest.mark.parametrize("be", BACKENDS[1:])
def test_chains_are_the_numpy_ones_on_torch(be: tuple[str, str]) -> None:
    """torch: the pool chains give the numpy plan and pools, case by case (from the numpy polish's plan without
    them)."""
    _three_rows_the_numpy_ones_on_torch(CHAIN_CASES, _polished_without_chains, PS._chains, be)


#: seed-0 corpus instances where the polish's block displacements into other pools (``DISPLACE_POOLS``) move a block
#: on the plan the rest of the polish leaves from the greedy's cold search (round 20: 61, where the MILP runs the
#: 8-GPU block of job 16 in pool 0, not pool 1, and the preemptible rows it meets there elsewhere)
DISPLACE_POOL_CASES = (61,)


def _polished_without_pool_displacements(i: int) -> tuple[Any, ...]:
    """:func:`_polished_without` the block displacements into other pools (``DISPLACE_POOLS``)."""
    return _polished_without("DISPLACE_POOLS", i)


@pytest.mark.parametrize("i", DISPLACE_POOL_CASES)
def test_a_block_moves_into_another_pool_through_its_work(i: int) -> None:
    """The polish's block displacements into other pools (``_displace_pools``, round 20): on the plan the rest of the
    polish leaves where it is, a non-preemptible row that does not run now moves whole into another pool, the
    preemptible rows it meets there placed again and searched; the plan keeps every rule (checker), carbon and the
    objective fall, every job stays finished (on time) and the greedy still dominated; on a spent meter, no try."""
    pb, s, c, nv, npool, nev = _polished_without_pool_displacements(i)
    xp = s.xp
    assert PS._cold_and_done(c, nev)
    spent: dict[str, Any] = {"left": 0.0}
    assert PS._displace_pools(pb, xp, c, s.pr, s.d, s.tb, nv, npool, nev, s.gev, spent)[3] == 0
    assert spent["left"] == 0.0  # (not a try)
    m = {"left": PS.FLIP_SEARCH_CELLS}
    sv, sp, sev, k = PS._displace_pools(pb, xp, c, s.pr, s.d, s.tb, nv, npool, nev, s.gev, m)
    assert k >= 1 and m["left"] < PS.FLIP_SEARCH_CELLS
    _valid_lower_keeping_jobs(pb, s, nev, sv, sp, sev)
    p0, p1 = np.asarray(xp.to_numpy(npool)), np.asarray(xp.to_numpy(sp))
    blocks = np.flatnonzero(~c.preempt & (c.rpool < 0) & (p0 >= 0) & (p1 >= 0) & (p0 != p1))
    assert blocks.size >= 1  # (a block in another pool)


@pytest.mark.parametrize("i", DISPLACE_POOL_CASES)
def test_the_polish_makes_the_pool_displacements_only_where_asked(i: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """``DISPLACE_POOLS`` on, the polish of the cold searched plan ends lower than with it off, valid; off, the polish
    of the plan it left returns it as it is (both on an unlimited meter)."""
    _makes_only_where_asked(i, "DISPLACE_POOLS", _polished_without_pool_displacements, monkeypatch)


@pytest.mark.parametrize("be", BACKENDS[1:])
def test_pool_displacements_are_the_numpy_ones_on_torch(be: tuple[str, str]) -> None:
    """torch: the block displacements into other pools give the numpy plan and pools, case by case (from the numpy
    polish's plan without them), on the same meter."""
    _last_stage_on_torch(be, DISPLACE_POOL_CASES, "DISPLACE_POOLS", PS._displace_pools)


def test_the_polish_draws_on_what_the_search_left(monkeypatch: pytest.MonkeyPatch) -> None:
    """The polish's meter is what the starts' meter has left, at most ``FLIP_SEARCH_CELLS`` and at least
    ``POLISH_MIN_CELLS`` (``_polished``), and its rounds' own moves draw on it too: with one cell a single
    round runs (seed-31 case 25, polished, whose polish runs more rounds with its default meter)."""
    seen: list[float] = []
    real = PS.polish

    def spy(*a: Any, **k: Any) -> Any:
        seen.append(a[-1])
        return real(*a, **k)

    monkeypatch.setattr(PS, "polish", spy)
    pb = make(*CASES[25])
    for cap, want in ((1e12, PS.FLIP_SEARCH_CELLS), (1.0, PS.POLISH_MIN_CELLS)):
        monkeypatch.setattr(PS, "STARTS_MAX_SPENT", cap)
        seen.clear()
        res = kernels.plan(pb)
        assert seen == [want], (cap, seen)
        assert kernels.check_result(pb, res) == []
    monkeypatch.undo()
    pb, s, c, nv, npool, nev = _searched_without_flips(25)
    rounds = [0]
    real_phase = PS._phase
    monkeypatch.setattr(PS, "SHADOW_CAP", 0.0)  # (the move past the cap runs the stages again on its own cells)

    def counting(*a: Any, **k: Any) -> Any:
        rounds[0] += bool(k.get("flips"))
        return real_phase(*a, **k)

    monkeypatch.setattr(PS, "_phase", counting)
    for cells in (PS.FLIP_SEARCH_CELLS, 1.0):
        rounds[0] = 0
        PS.polish(pb, s.xp, c, s.pr, s.d, s.tb, nv, npool, nev, s.gev, None, cells)
        assert (rounds[0] > 1) if cells > 1 else rounds[0] == 1, (cells, rounds)


#: seed-0 corpus instances where, on the plan the polish without them leaves, the watt exchanges with a block giving
#: the watts (round 17, ``BLOCK_WATTS``) move rows (118: job 21's block, 8 GPUs, lowers its cap-bound slot-18 cell
#: and starts a slot earlier, so that preemptible rows run higher there; 197: a block on its own window moves its
#: higher cells)
BLOCK_WATT_CASES = (118, 197)


def _polished_without_block_watts(i: int) -> tuple[Any, ...]:
    """:func:`_polished_without` the watt exchanges that a block gives (``BLOCK_WATTS``)."""
    return _polished_without("BLOCK_WATTS", i)


def _block_watt_swaps(i: int, backend: str, device: str, on: bool) -> tuple[Any, ...]:
    """The swap phase (block and watt exchanges and those a block gives asked, as the polish's last stage asks) on :func:`_polished_without_block_watts`'s
    plan, on a start of ``backend``, with ``BLOCK_WATTS`` set to ``on``."""
    pb, s0, _, pv0, pp0, _ = _polished_without_block_watts(i)
    s = greedy_start(pb, backend, device)
    c = dataclasses.replace(s.c, cold=True)
    nv, npool = s.xp.asarray(np.asarray(s0.xp.to_numpy(pv0))), s.xp.asarray(np.asarray(s0.xp.to_numpy(pp0)))
    nev = PL._evaluate_plan(pb, c, s.pr, nv, npool, xp=s.xp, d=s.d)
    keep = PS.BLOCK_WATTS
    PS.BLOCK_WATTS = on
    try:
        out = PS._swaps(pb, s.xp, c, s.pr, s.d, s.tb, nv, npool, nev, s.gev, None, blocks=True, watt_pairs=True,
                        block_watts=True)
    finally:
        PS.BLOCK_WATTS = keep
    return pb, s, c, nv, npool, nev, out


@pytest.mark.parametrize("i", BLOCK_WATT_CASES)
def test_a_block_gives_its_watts_under_the_cap_and_stays_one_block(i: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The swap phase's watt exchanges with a block giving the watts (round 17, ``BLOCK_WATTS``): on the plan the
    polish without them leaves (where the swap phase then moves no row), a non-preemptible row lowers its levels
    and may take another window of the block refill's (:data:`PS.REFILL_WINDOWS`) so that a preemptible row runs
    higher in a slot where that step did not fit under the site's cap: the block stays one unbroken block in its
    pool that does its work, no pool changes, the plan keeps every rule (checker), carbon and the objective fall,
    every job stays finished (on time) and the greedy still dominated (seed-0 corpus-118, H2's diagnosis). Each
    block's new levels are its answer on the refill's windows (``_window_answers``; round 18's mutation audit: with
    its cheapest block instead, ``_best_blocks``, corpus-197's block ends at a higher objective and no test failed)."""
    assert _block_watt_swaps(i, "numpy", "cpu", False)[-1][3] == 0
    answered: list[tuple[Any, Any]] = []  # (the window answers' rows and levels)
    real = PS._window_answers

    def spy(xp: Any, c: Any, d: Any, tb: Any, vmat: Any, pool: Any, rows: Any, *a: Any) -> Any:
        out = real(xp, c, d, tb, vmat, pool, rows, *a)
        answered.append((np.asarray(xp.to_numpy(rows)), np.asarray(xp.to_numpy(out[0])).astype(np.int64)))
        return out

    monkeypatch.setattr(PS, "_window_answers", spy)
    pb, s, c, nv, npool, nev, (sv, sp, sev, k) = _block_watt_swaps(i, "numpy", "cpu", True)
    xp = s.xp
    assert k > 0 and k % 2 == 0
    v0, v1 = np.asarray(xp.to_numpy(nv)).astype(np.int64), np.asarray(xp.to_numpy(sv)).astype(np.int64)
    p0 = np.asarray(xp.to_numpy(npool)).astype(np.int64)
    assert np.array_equal(np.asarray(xp.to_numpy(sp)), p0)
    changed = np.flatnonzero((v0 != v1).any(1))
    blocks = changed[~c.preempt[changed]]
    assert changed.size == k and blocks.size > 0
    for r in blocks:  # (a test: the blocks one by one)
        on0, on1 = np.flatnonzero(v0[r] > 0), np.flatnonzero(v1[r] > 0)
        assert on1.size > 0 and on1[-1] - on1[0] + 1 == on1.size  # one unbroken block
        assert (on1[0] - on0[0], on1[-1] - on0[-1]) in PS.REFILL_WINDOWS  # on one of the refill's windows
        assert sev["work_done_s"][r] >= nev["need_s"][r] - 1e-6
        assert c.rpool[r] < 0 or on1[0] == 0  # a job that runs now keeps slot 0
        assert any((lv[rs == r] == v1[r]).all(1).any() for rs, lv in answered), r  # (its window answer)
    _valid_lower_keeping_jobs(pb, s, nev, sv, sp, sev)
    rows = changed[c.preempt[changed]]
    tt = np.arange(c.T)
    win = (tt[None, :] >= c.rel[rows][:, None]) & (tt[None, :] < np.where(c.has_dl[rows], c.dl[rows], c.T)[:, None])
    use = PL._usage(s.d, s.tb, nv, npool, xp)
    _, _, _, short, _ = PS._watts_short(xp, s.d, s.tb, p0[rows], v0[rows], c.gpus[rows].astype(np.float64), use[1], win)
    work = np.asarray(xp.to_numpy(s.tb.work), np.float64)[p0[rows]]
    up = np.take_along_axis(work, v1[rows], 1) > np.take_along_axis(work, v0[rows], 1)
    lowered = (v1[blocks] < v0[blocks]).any(0)  # (T,) slots where a block gave watts
    assert (short & up & lowered[None, :]).any()


@pytest.mark.parametrize("be", BACKENDS[1:])
def test_block_watt_exchanges_are_the_numpy_ones_on_torch(be: tuple[str, str]) -> None:
    """torch: the watt exchanges with a block giving the watts give the numpy plan, case by case."""
    for i in BLOCK_WATT_CASES:  # cases
        outs = []
        for backend, device in (("numpy", "cpu"), be):  # backends
            _, st, _, _, _, _, (sv, sp, _, k) = _block_watt_swaps(i, backend, device, True)
            outs.append((np.asarray(st.xp.to_numpy(sv)), np.asarray(st.xp.to_numpy(sp)), k))
        (va, pa, ka), (vb, pb_, kb) = outs
        assert ka == kb > 0 and np.array_equal(va, vb) and np.array_equal(pa, pb_), i


@pytest.mark.parametrize(("seed", "i", "lower"), ((0, 118, True), (1, 151, False)))
def test_the_polish_gives_a_blocks_watts_last_and_never_ends_higher(seed: int, i: int, lower: bool,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """``kernels.plan`` with ``BLOCK_WATTS`` ends no higher than without, and lower where the polish makes them
    (seed-0 corpus-118); the polish asks for them only once its other moves and the block refill have settled
    (asked in each of their rounds they changed their path: seed-1 corpus-151 ended 0.97% higher)."""
    pb = make(*_family(seed)[i])
    objs = []
    monkeypatch.setattr(PS, "SHADOW_CAP", 0.0)  # (the move past the cap, round 19, ends 118 at the same plan either way)
    for on in (False, True):  # off, on
        monkeypatch.setattr(PS, "BLOCK_WATTS", on)
        res = kernels.plan(pb)
        assert kernels.check_result(pb, res) == []
        objs.append(res.objective)
    assert objs[1] < objs[0] if lower else objs[1] <= objs[0] * (1 + 1e-12)


#: seed-0 corpus instances whose plan, the rest of the polish done, imports in a slot while other slots sit at the wind
#: (round 18, ``SHADOW_WIND``): 184 imports 741 W in slot 8 only (61.7 g), slots 0-11 at the wind to within a few
#: hundred watts; the carbon LP and the MILP reach 0 g
HEADROOM_CASES = (184,)


def _polished_without_headroom(i: int) -> tuple[Any, ...]:
    """:func:`_polished_without` the polish's last move under a lowered wind (``SHADOW_WIND``)."""
    return _polished_without("SHADOW_WIND", i)


@pytest.mark.parametrize("i", HEADROOM_CASES)
def test_the_polish_under_a_lowered_wind_frees_the_slots_at_the_wind(i: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The polish's last move (round 18, ``SHADOW_WIND``, :func:`PS._headroom`): on the plan the rest of the polish
    leaves (settled: its stages move no row again), its stages under the wind less ``SHADOW_WIND`` of itself and then
    under the true wind, judged as one move: seed-0 corpus-184 emits no carbon (every step of the way saves 0 g: the
    at-wind slots price their watts at 0), every job stays finished, the plan keeps every rule (the checker: a
    non-preemptible job one unbroken block, a running one from slot 0), the greedy still dominated. With the stages
    run under the true wind instead the move changes nothing."""
    pb, s, c, pv, pp, pev = _polished_without_headroom(i)
    xp = s.xp
    assert pev["carbon_g"] > 0 and PS._near_wind(c, pev)
    assert PS._polish_stages(pb, xp, c, s.pr, s.d, s.tb, pv, pp, pev, s.gev, {"left": math.inf}, None)[3] == 0
    sv, sp, sev, k = PS._headroom(pb, xp, c, s.pr, s.d, s.tb, pv, pp, pev, s.gev, {"left": math.inf}, None)
    assert k > 0 and sev["carbon_g"] < pev["carbon_g"] and sev["objective"] < pev["objective"]
    if i == 184:
        assert sev["carbon_g"] <= 1e-9
    assert kernels.check_result(pb, s.result(sv, sp, sev)) == []
    lost, late = _late_or_lost(c, pev, sev)
    assert lost.size == 0 and late.size == 0
    assert dominance_failures(outcome(pb, s.result(sv, sp, sev)), outcome(pb, s.result(s.gv, s.gp, s.gev))) == []
    monkeypatch.setattr(PS, "SHADOW_WIND", 0.0)  # (the stages under the true wind: nothing moves)
    assert PS._headroom(pb, xp, c, s.pr, s.d, s.tb, pv, pp, pev, s.gev, {"left": math.inf}, None)[3] == 0


def _planned_off_then_on(i: int, flag: str, monkeypatch: pytest.MonkeyPatch) -> list[kernels.PlanResult]:
    """``kernels.plan`` of seed-0 case ``i`` with the shadow move ``flag`` (``SHADOW_WIND``, ``SHADOW_CAP``) off (0),
    then at its default; each valid and finishing every job."""
    pb = make(*_family(0)[i])
    res = []
    for on in (0.0, getattr(PS, flag)):  # off, on
        monkeypatch.setattr(PS, flag, on)
        r = kernels.plan(pb)
        assert kernels.check_result(pb, r) == [] and int(r.diagnostics["unfinished_jobs"]) == 0
        res.append(r)
    return res


@pytest.mark.parametrize("i", HEADROOM_CASES)
def test_kernels_plan_frees_the_slots_at_the_wind_and_never_ends_higher(i: int, monkeypatch: pytest.MonkeyPatch
                                                                       ) -> None:
    """``kernels.plan`` with ``SHADOW_WIND`` ends lower than without where the polish makes the move (seed-0 corpus-184:
    0 g against 61.7 g), and ``polish`` with it never ends higher than the plan its other stages leave (the move is
    kept only where it lowers the objective)."""
    res = _planned_off_then_on(i, "SHADOW_WIND", monkeypatch)
    assert res[1].objective < res[0].objective and res[0].carbon_g_total > 0
    if i == 184:
        assert res[1].carbon_g_total <= 1e-9


@pytest.mark.parametrize("be", BACKENDS[1:])
def test_the_polish_under_a_lowered_wind_is_the_numpy_one_on_torch(be: tuple[str, str]) -> None:
    """torch: the polish's last move (``SHADOW_WIND``) gives the numpy plan, case by case."""
    _shadow_the_numpy_one_on_torch(HEADROOM_CASES, _polished_without_headroom, PS._headroom, be)


def _shadow_the_numpy_one_on_torch(cases: tuple[int, ...], polished_without: Any, move: Any,
                                   be: tuple[str, str]) -> None:
    """The shadow move ``move`` (``PS._headroom``, ``PS._cap_shadow``) on backend ``be`` gives the numpy plan and
    pools, case by case, from the numpy polish's plan without it (``polished_without``), rows moved on each."""
    for i in cases:  # cases
        _, s0, _, pv0, pp0, _ = polished_without(i)
        outs = []
        for backend, device in (("numpy", "cpu"), be):  # backends
            pb, s, c, nv, npool, nev = _numpy_plan_on(_family(0)[i], s0, pv0, pp0, backend, device)
            sv, sp, _, k = move(pb, s.xp, c, s.pr, s.d, s.tb, nv, npool, nev, s.gev, {"left": math.inf}, None)
            outs.append((np.asarray(s.xp.to_numpy(sv)), np.asarray(s.xp.to_numpy(sp)), k))
        (va, pa, ka), (vb, pb_, kb) = outs
        assert ka == kb > 0 and np.array_equal(va, vb) and np.array_equal(pa, pb_), i


#: seed-0 corpus instances whose plan, the rest of the polish done, sits at the site's cap in slots where rows run at
#: their top levels while others are out (round 19, ``SHADOW_CAP``): 118 (slots 18-19, the cheapest; the MILP runs
#: eleven rows at their two lowest levels there; corpus-7, whose kernels.plan plan the move takes to 1.0198 x the
#: carbon LP, does not reach it from the greedy's cold search)
CAP_CASES = (118,)


def _polished_without_cap_shadow(i: int) -> tuple[Any, ...]:
    """:func:`_polished_without` the polish's move past the cap (``SHADOW_CAP``)."""
    return _polished_without("SHADOW_CAP", i)


@pytest.mark.parametrize("i", CAP_CASES)
def test_the_polish_under_dearer_capped_slots_runs_more_rows_lower_there(i: int, monkeypatch: pytest.MonkeyPatch
                                                                          ) -> None:
    """The polish's move past the cap (round 19, ``SHADOW_CAP``, :func:`PS._cap_shadow`): on the plan the rest of the
    polish leaves (settled: its stages move no row again), its stages with the carbon of the slots at the site's cap
    raised and then with the true carbon, judged as one move: carbon and the objective fall, more work is done in
    the capped slots for watts within the cap (more rows there, at lower levels on average), every job stays finished
    (on time), the plan keeps every rule (checker), the greedy still dominated. With the carbon not raised the move
    changes nothing."""
    pb, s, c, pv, pp, pev = _polished_without_cap_shadow(i)
    xp = s.xp
    at = PS._capped_slots(c, pev)
    assert at.any()
    assert PS._polish_stages(pb, xp, c, s.pr, s.d, s.tb, pv, pp, pev, s.gev, {"left": math.inf}, None)[3] == 0
    sv, sp, sev, k = PS._cap_shadow(pb, xp, c, s.pr, s.d, s.tb, pv, pp, pev, s.gev, {"left": math.inf}, None)
    assert k > 0 and sev["carbon_g"] < pev["carbon_g"] and sev["objective"] < pev["objective"]
    assert kernels.check_result(pb, s.result(sv, sp, sev)) == []
    lost, late = _late_or_lost(c, pev, sev)
    assert lost.size == 0 and late.size == 0
    assert dominance_failures(outcome(pb, s.result(sv, sp, sev)), outcome(pb, s.result(s.gv, s.gp, s.gev))) == []
    v0, v1 = (np.asarray(xp.to_numpy(v)).astype(np.int64)[:, at] for v in (pv, sv))
    assert (v1 > 0).sum() > (v0 > 0).sum()  # (more rows run in the capped slots ...)
    assert v1[v1 > 0].mean() < v0[v0 > 0].mean()  # (... at lower levels)
    monkeypatch.setattr(PS, "SHADOW_CAP", 0.0)  # (the stages under the true carbon: nothing moves)
    assert PS._cap_shadow(pb, xp, c, s.pr, s.d, s.tb, pv, pp, pev, s.gev, {"left": math.inf}, None)[3] == 0


@pytest.mark.parametrize("i", CAP_CASES)
def test_the_polish_makes_the_move_past_the_cap_only_where_asked(i: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """``SHADOW_CAP`` on, the polish of the cold searched plan ends lower than with it off, valid; off, the polish of
    the plan it left returns it as it is (both on an unlimited meter)."""
    _makes_only_where_asked(i, "SHADOW_CAP", _polished_without_cap_shadow, monkeypatch)


def test_kernels_plan_moves_past_the_cap_and_never_ends_higher(monkeypatch: pytest.MonkeyPatch) -> None:
    """``kernels.plan`` with ``SHADOW_CAP`` ends lower than without on seed-0 corpus-118 (1.0262 -> 1.0188 x the carbon
    LP, round 19), every job finished; the move is kept only where it lowers the objective."""
    res = _planned_off_then_on(118, "SHADOW_CAP", monkeypatch)
    assert res[1].objective < res[0].objective and res[1].carbon_g_total < res[0].carbon_g_total


@pytest.mark.parametrize("be", BACKENDS[1:])
def test_the_polish_under_dearer_capped_slots_is_the_numpy_one_on_torch(be: tuple[str, str]) -> None:
    """torch: the polish's move past the cap (``SHADOW_CAP``) gives the numpy plan, case by case."""
    _shadow_the_numpy_one_on_torch(CAP_CASES, _polished_without_cap_shadow, PS._cap_shadow, be)


#: seed-0 corpus instances whose plan, the rest of the polish done (:func:`_polished_without_cap_shadow`), the move past
#: the cap lowers (round 19: 118, 2 -3.4%, 193 -0.43%, 155, 131) and one where its stages on the true carbon come back
#: to the plan given, the move not kept (173: 76k cells -> 36k with ``SHADOW_HOME``; round 19, helper 4)
HOME_KEPT, HOME_BACK = (118, 2, 193, 155, 131), 173


def _cap_shadow_spent(i: int, home: bool, monkeypatch: pytest.MonkeyPatch, be: tuple[str, str] = ("numpy", "cpu")
                      ) -> tuple[Any, Any, int, float, float, float]:
    """The move past the cap on :func:`_polished_without_cap_shadow`'s plan (backend ``be``), ``SHADOW_HOME`` set to
    ``home``, on ``CAP_CELLS`` cells: its levels, pools, rows changed, objective, the objective given, cells spent."""
    _, s0, _, pv0, pp0, _ = _polished_without_cap_shadow(i)
    pb, s, c, pv, pp, pev = _numpy_plan_on(_family(0)[i], s0, pv0, pp0, *be)
    monkeypatch.setattr(PS, "SHADOW_HOME", home)
    spent: dict[str, float] = {}
    sv, sp, sev, k = PS._cap_shadow(pb, s.xp, c, s.pr, s.d, s.tb, pv, pp, pev, s.gev, {"left": PS.CAP_CELLS}, spent)
    return (np.asarray(s.xp.to_numpy(sv)), np.asarray(s.xp.to_numpy(sp)), k, float(sev["objective"]),
            float(pev["objective"]), spent["cells"])


@pytest.mark.parametrize("i", HOME_KEPT)
def test_the_shadow_stops_at_home_only_where_the_move_cannot_be_kept(i: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """``SHADOW_HOME`` (:func:`PS._shadowed`'s stages on the true problem stop where a round comes back to the plan
    given): where the move past the cap lowers the plan, it gives the very plan it gives without the stop."""
    off, on = (_cap_shadow_spent(i, home, monkeypatch) for home in (False, True))
    assert on[2] == off[2] > 0 and on[3] < on[4]
    assert np.array_equal(on[0], off[0]) and np.array_equal(on[1], off[1]) and on[3] == off[3]


def test_the_shadow_stops_when_its_stages_come_back_to_the_plan_given(monkeypatch: pytest.MonkeyPatch) -> None:
    """``SHADOW_HOME``: on seed-0 corpus-173 the move past the cap's stages on the true carbon undo the shadow's
    moves; with the stop they end there (the plan given, not kept, as without it) on far fewer cells."""
    off, on = (_cap_shadow_spent(HOME_BACK, home, monkeypatch) for home in (False, True))
    assert on[2] == off[2] == 0 and on[3] == off[3] == on[4]
    assert np.array_equal(on[0], off[0]) and np.array_equal(on[1], off[1])
    assert on[5] < 0.6 * off[5]


@pytest.mark.parametrize("be", BACKENDS[1:])
def test_the_shadow_stops_at_home_on_torch_as_on_numpy(be: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """torch: ``SHADOW_HOME``'s stop comes where numpy's does (the same cells spent, the same plan), case by case."""
    for i in (HOME_BACK, HOME_KEPT[0]):  # a case that comes back, one kept
        a, b = (_cap_shadow_spent(i, True, monkeypatch, x) for x in (("numpy", "cpu"), be))
        assert a[2] == b[2] and a[5] == b[5] and np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]), i


def test_the_trades_take_the_best_trade_that_keeps_the_room(monkeypatch: pytest.MonkeyPatch) -> None:
    """``_trades`` tries the trades one at a time, largest estimated saving first (up to ``HALVINGS + 1`` of them),
    and takes the first whose plan keeps the room (``_within_room``) and passes the exact test (which does not look
    at the room). Seed-0 corpus-119's best trade (on the plan the polish without trades leaves) proposed twice, the
    copy estimated to save more with its moving row at full power everywhere (over the room), the exact test
    passing everything: the trade as proposed is taken, not its copy. (Round 18's mutation audit: with the room
    check dropped, or one trade tried, no test failed.)"""
    pb, s, c, nv, npool, nev = _polished_without_trades(119)
    xp = s.xp
    moves, gain = PS._trade_answers(xp, c, s.d, s.tb, nv, npool, nev)
    t = int(np.nanargmax(gain))
    two = xp.asarray([t, t], xp.i64)
    twice = [(r[two], xp.copy(new[two]), to[two]) for r, new, to in moves]  # (the copy first, then the trade)
    ra, na, qa = twice[0]
    na[0] = xp.astype(xp.asarray(np.full(c.T, int(np.asarray(xp.to_numpy(s.tb.vfull))[int(np.asarray(xp.to_numpy(qa))[
        0])]))), na.dtype)
    use0 = PS._room_use(xp, c, s.d, s.tb, nv, npool)
    built = []
    for e in (0, 1):  # (the copy's plan, the trade's)
        v, p = xp.copy(nv), xp.copy(npool)
        for r, new, to in twice:  # (a, b1, b2)
            v[r[e]] = xp.astype(new[e], nv.dtype)
            p[r[e]] = xp.astype(to[e], npool.dtype)
        built.append((v, p))
    assert not PS._within_room(xp, c, s.d, s.tb, *built[0], use0) and PS._within_room(xp, c, s.d, s.tb, *built[1], use0)
    monkeypatch.setattr(PS, "_trade_answers", lambda *a: (twice, np.asarray([gain[t] + 1.0, gain[t]])))
    monkeypatch.setattr(PS, "_passes", lambda *a: True)
    sv, sp, _, k = PS._trades(pb, xp, c, s.pr, s.d, s.tb, nv, npool, nev, s.gev)
    assert k == 3 and np.array_equal(np.asarray(xp.to_numpy(sv)), np.asarray(xp.to_numpy(built[1][0])))
    assert np.array_equal(np.asarray(xp.to_numpy(sp)), np.asarray(xp.to_numpy(built[1][1])))


def test_the_polish_asks_the_block_refill_once_its_moves_settle_and_a_blocks_watts_last(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The polish's stages in order (``polish``): rounds of its moves (the carbon phase with slot-0 flips, the swap
    phase, the trades) until a round moves no row, then rounds with the block refill first until the refill moves
    none, then rounds of the swap phase with the watt exchanges a block gives (``block_watts``): the refill is
    never asked before its moves have settled (asked in their rounds it ended seed-0 corpus-77 0.03% higher), nor
    a block's watts before the refill has settled (seed-1 corpus-151 0.97% higher), and the trades and the carbon
    phase not in the last stage; the block shifts (``_shift_blocks``) only in the refill's stage, each right after a
    refill that moves no row (the phases it runs inside are left out of the order). Seed-31 case 10's searched plan,
    whose refill moves blocks. (Round 18's mutation audit: with the refill's stage first, no test failed.)"""
    pb, s, c, nv, npool, nev = _searched_without_block_swaps(10)
    monkeypatch.setattr(PS, "SHADOW_CAP", 0.0)  # (the move past the cap, last, runs the stages again)
    seen: list[tuple[str, int]] = []
    shifts: list[int] = []  # (where in ``seen`` each shift was asked)

    def spy(name: str, real: Any) -> Any:
        def call(*a: Any, **k: Any) -> Any:
            out = real(*a, **k)
            seen.append((name + ("_bw" if k.get("block_watts") else ""), out[3]))
            return out
        return call

    def shift(real: Any) -> Any:
        def call(*a: Any, **k: Any) -> Any:
            at = len(seen)
            shifts.append(at)
            out = real(*a, **k)
            del seen[at:]  # (its own carbon phase)
            return out
        return call

    for name in ("_phase", "_swaps", "_trades", "_refill_blocks"):  # the moves the polish asks
        monkeypatch.setattr(PS, name, spy(name, getattr(PS, name)))
    monkeypatch.setattr(PS, "_shift_blocks", shift(PS._shift_blocks))
    monkeypatch.setattr(PS, "power_search", lambda *a, **k: (a[6], a[7], k["ev"], 0))  # (its rounds' moves only)
    PS.polish(pb, s.xp, c, s.pr, s.d, s.tb, nv, npool, nev, s.gev, None, math.inf)
    names = [n for n, _ in seen]
    first_refill, first_bw = names.index("_refill_blocks"), names.index("_swaps_bw")
    assert first_refill >= 3 and sum(k for _, k in seen[first_refill - 3:first_refill]) == 0, seen  # (settled)
    assert names[first_refill - 3:first_refill] == ["_phase", "_swaps", "_trades"], seen
    assert first_refill < first_bw and seen[first_bw - 1] == ("_refill_blocks", 0), seen
    assert "_refill_blocks" not in names[:first_refill] and set(names[first_bw:]) == {"_swaps_bw"}, seen
    assert any(k for n, k in seen if n == "_refill_blocks"), seen
    assert shifts and all(first_refill < at <= first_bw and seen[at - 1] == ("_refill_blocks", 0) for at in shifts)
    monkeypatch.setattr(PS, "EXCHANGE_WATTS", False)  # (no watt exchanges: no stage of a block's watts)
    seen.clear()
    PS.polish(pb, s.xp, c, s.pr, s.d, s.tb, nv, npool, nev, s.gev, None, math.inf)
    assert seen and "_swaps_bw" not in [n for n, _ in seen], seen


def test_a_change_within_the_room_keeps_every_tenants_quota() -> None:
    """``_within_room`` (what the refill, pair, swap and trade moves are held to before their exact test, which does
    not look at the room) holds a tenant's quota as it holds the pools' GPUs and the site's cap: seed-31 case 10's
    searched plan with one more cell of a row, where its pool's GPUs and the cap have room, keeps the room while
    the row's tenant has the GPUs to spare there and not where its quota is exactly what it uses there. (Round 18's
    mutation audit: without the quota check no test failed.)"""
    pb, s, c, nv, npool, nev = _searched_without_block_swaps(10)
    xp = s.xp
    v0 = np.asarray(xp.to_numpy(nv)).astype(np.int64)
    pool_h = np.asarray(xp.to_numpy(npool)).astype(np.int64)
    vmin = np.asarray(xp.to_numpy(s.tb.vmin)).astype(np.int64)
    free = dataclasses.replace(c, quota=np.full(c.quota.size, np.inf))
    use0 = PS._room_use(xp, free, s.d, s.tb, nv, npool)
    found = None
    for r, t in zip(*np.nonzero((v0 == 0) & (pool_h >= 0)[:, None])):  # (a cell that may run, in the room)
        v = v0.copy()
        v[r, t] = vmin[pool_h[r]]
        if PS._within_room(xp, free, s.d, s.tb, xp.astype(xp.asarray(v), nv.dtype), npool, use0):
            found = r, t, v
            break
    assert found is not None
    r, t, v = found
    k = int(c.tenant[r])
    used = float(c.gpus[(c.tenant == k) & (v0[:, t] > 0)].sum())  # (the GPUs its tenant runs there)
    for quota, ok in ((used + c.gpus[r], True), (used, False)):  # (room for the cell, none)
        cq = dataclasses.replace(c, quota=np.where(np.arange(c.quota.size) == k, quota, np.inf))
        got = PS._within_room(xp, cq, s.d, s.tb, xp.astype(xp.asarray(v), nv.dtype), npool,
                              PS._room_use(xp, cq, s.d, s.tb, nv, npool))
        assert got == ok, (r, t, quota)


def test_a_block_that_runs_now_never_exchanges_pools(monkeypatch: pytest.MonkeyPatch) -> None:
    """The swap phase's block exchanges (``blocks``, ``BLOCK_SWAPS``) are for finished non-preemptible rows that do
    not run now: a block that runs now and moved to another pool would stop (a non-preemptible job runs in one
    unbroken block). Seed-31 case 10's searched plan (row 15, a block, runs now): the rows the swap phase is given
    (``_swap_rows``'s ``kind``) take blocks, none that runs now. (Round 18's mutation audit: with running blocks
    taken too, no test failed.)"""
    pb, s, c, nv, npool, nev = _searched_without_block_swaps(10)
    kinds: list[Any] = []
    real = PS._swap_rows

    def spy(*a: Any) -> Any:
        kinds.append(np.asarray(a[-1], bool).copy())
        return real(*a)

    monkeypatch.setattr(PS, "_swap_rows", spy)
    PS._swaps(pb, s.xp, c, s.pr, s.d, s.tb, nv, npool, nev, s.gev, None, blocks=True)
    running = ~c.preempt & (c.rpool >= 0)
    assert running.any() and len(kinds) == 1
    assert kinds[0][~c.preempt & (c.rpool < 0)].any() and not kinds[0][running].any()


def test_a_trade_moves_each_of_its_three_rows_only_where_it_may_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """``_trade_answers`` proposes a one-for-two exchange only where each of its three rows may move to the other's
    pool (``_moves``: eligible there, by its label selectors). Seed-0 corpus-119's best trade (on the plan the polish
    without trades leaves), with its second row of q made ineligible for p and then its first: no trade proposed
    moves that row into p. (Round 18's mutation audit: with the second row's check dropped, no test failed.)"""
    pb, s, c, nv, npool, nev = _polished_without_trades(119)
    xp = s.xp
    moves, gain = PS._trade_answers(xp, c, s.d, s.tb, nv, npool, nev)
    t = int(np.nanargmax(gain))
    for k in (2, 1):  # (b2, then b1)
        r = int(np.asarray(xp.to_numpy(moves[k][0]))[t])
        p = int(np.asarray(xp.to_numpy(moves[k][2]))[t])
        el = c.eligible.copy()
        el[r, p] = False
        got = PS._trade_answers(xp, dataclasses.replace(c, eligible=el), s.d, s.tb, nv, npool, nev)
        if got is None:
            continue
        for rows, _, to in got[0]:  # (a, b1, b2)
            into = (np.asarray(xp.to_numpy(rows)) == r) & (np.asarray(xp.to_numpy(to)) == p)
            assert not (into & np.isfinite(got[1])).any(), (k, r, p)


# --- a preemptible row moved into a pool that does more work per watt (kernels.powersearch._preempt_pools) --------


def _efficient_pool_problem() -> PlanProblem:
    """Two pools of 8 GPUs: pool 0 700 W with levels f 0.8 (speed 0.9) and 1, pool 1 400 W with levels f 0.5 (speed
    0.75) and 1 (its lowest level does 2.7 x the work per watt of pool 0's); two preemptible 8-GPU jobs, A of 3 slots'
    work and B of 2, no deadline, no wind, the grid's carbon the same in every slot; 4 slots."""
    T, slot = 4, 900.0
    return PlanProblem(
        slot_s=slot, pue=1.15, wind_w=np.zeros(T), carbon_g_per_kwh=np.full(T, 300.0), grid_cap_w=np.full(T, 1e6),
        site_max_w=np.full(T, 1e6), pool_gpus=np.full((2, T), 8), tdp_w=np.array([700.0, 400.0]),
        idle_w=np.array([75.0, 50.0]), host_w_per_gpu=np.zeros(2), min_power_fraction=np.array([0.8, 0.5]),
        curve_f=np.array([[0.8, 1.0], [0.5, 1.0]]), curve_s=np.array([[0.9, 1.0], [0.75, 1.0]]),
        gpus=np.array([8, 8]), remaining_s=np.array([3 * slot, 2 * slot]), release=np.array([0, 0]),
        deadline=np.array([NO_DEADLINE, NO_DEADLINE]), weight=np.array([1.0, 1.0]), eligible=np.ones((2, 2), bool),
        must_run=np.zeros(2, bool), preemptible=np.ones(2, bool), running_pool=np.array([-1, -1]),
        preempt_loss_s=np.zeros(2), tenant=np.array([0, 0]), tenant_quota_gpus=np.array([np.inf]))


def _efficient_pool_start(backend: str = "numpy", device: str = "cpu") -> tuple[Any, ...]:
    """:func:`_efficient_pool_problem` as a cold plan with A in pool 0 at f 0.8 in all 4 slots and B in pool 1 at its
    lowest level in slots 0-2 (both finished), and its evaluation."""
    pb = _efficient_pool_problem()
    s = greedy_start(pb, backend, device)
    c = dataclasses.replace(s.c, cold=True)
    xp = s.xp
    v = np.zeros((2, c.T), np.int64)
    v[0, :] = int(np.asarray(xp.to_numpy(s.tb.vmin))[0])
    v[1, :3] = int(np.asarray(xp.to_numpy(s.tb.vmin))[1])
    nv, npool = xp.astype(xp.asarray(v), s.gv.dtype), xp.astype(xp.asarray(np.array([0, 1])), s.gp.dtype)
    return pb, s, c, nv, npool, PL._evaluate_plan(pb, c, s.pr, nv, npool, xp=xp, d=s.d)


def test_a_preemptible_row_moves_into_the_pool_that_does_more_work_per_watt() -> None:
    """The polish's preemptible-row moves (``_preempt_pools``, round 21): A runs in the 700 W pool while the 400 W pool's
    lowest level does 2.7 x its work per watt, and B fills that pool where A's block would go. The only move ranked
    (``_preempt_gains``) is A into pool 1 (B is at its pool's best already); A's block there pushes B out, B is placed
    again (in pool 0) and the search runs on top: A runs in pool 1 at its lowest level, the plan keeps every rule
    (checker), carbon and the objective fall, both jobs stay finished. On a spent meter, no try."""
    pb, s, c, nv, npool, nev = _efficient_pool_start()
    xp = s.xp
    assert np.asarray(nev["finished"], bool).all()
    gain = PS._preempt_gains(xp, c, s.d, s.tb, nv, npool, np.array([0, 1]))
    assert gain[0, 1] > 0 and (gain[0, 0] == 0) and (gain[1] == 0).all()
    spent: dict[str, Any] = {"left": 0.0}
    assert PS._preempt_pools(pb, xp, c, s.pr, s.d, s.tb, nv, npool, nev, None, spent)[3] == 0
    assert spent["left"] == 0.0  # (not a try)
    m = {"left": PS.FLIP_SEARCH_CELLS}
    sv, sp, sev, k = PS._preempt_pools(pb, xp, c, s.pr, s.d, s.tb, nv, npool, nev, None, m)
    assert k == 1 and m["left"] < PS.FLIP_SEARCH_CELLS
    v1, p1 = np.asarray(xp.to_numpy(sv)), np.asarray(xp.to_numpy(sp))
    assert p1.tolist() == [1, 0]
    assert set(v1[0][v1[0] > 0].tolist()) == {int(np.asarray(xp.to_numpy(s.tb.vmin))[1])}  # (pool 1's lowest level)
    assert kernels.check_result(pb, s.result(sv, sp, sev)) == []
    assert sev["carbon_g"] < nev["carbon_g"] and sev["objective"] < nev["objective"]
    assert np.asarray(sev["finished"], bool).all()


def test_the_polish_moves_a_preemptible_row_only_where_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    """The polish's moves all off (``_no_polish``), the plan as it is given; with ``PREEMPT_POOLS`` on the polish runs
    (its rounds and this move) and A ends in pool 1, lower, valid; a warm plan is not polished."""
    pb, s, c, nv, npool, nev = _efficient_pool_start()
    xp = s.xp
    _no_polish(monkeypatch)
    assert PS.polish(pb, xp, c, s.pr, s.d, s.tb, nv, npool, nev, None)[3] == 0
    monkeypatch.setattr(PS, "PREEMPT_POOLS", True)
    sv, sp, sev, k = PS.polish(pb, xp, c, s.pr, s.d, s.tb, nv, npool, nev, None)
    assert k > 0 and np.asarray(xp.to_numpy(sp)).tolist() == [1, 0] and sev["carbon_g"] < nev["carbon_g"]
    assert kernels.check_result(pb, s.result(sv, sp, sev)) == []
    assert PS.polish(pb, xp, dataclasses.replace(c, cold=False), s.pr, s.d, s.tb, nv, npool, nev, None)[3] == 0


@pytest.mark.parametrize("be", BACKENDS[1:])
def test_preemptible_row_moves_are_the_numpy_ones_on_torch(be: tuple[str, str]) -> None:
    """torch: the preemptible-row moves give the numpy plan, pools and meter from the same start."""
    outs = []
    for backend, device in (("numpy", "cpu"), be):  # backends
        pb, s, c, nv, npool, nev = _efficient_pool_start(backend, device)
        m = {"left": PS.FLIP_SEARCH_CELLS}
        sv, sp, sev, k = PS._preempt_pools(pb, s.xp, c, s.pr, s.d, s.tb, nv, npool, nev, None, m)
        outs.append((np.asarray(s.xp.to_numpy(sv)), np.asarray(s.xp.to_numpy(sp)), k, m["left"], sev["carbon_g"]))
    (va, pa, ka, la, ga), (vb, pb_, kb, lb, gb) = outs
    assert ka == kb == 1 and la == lb and np.array_equal(va, vb) and np.array_equal(pa, pb_)
    assert gb == pytest.approx(ga, rel=1e-9)


#: seed-0 corpus instances where the polish's preemptible-row moves (``PREEMPT_POOLS``) move a row on the plan the rest of
#: the polish leaves from the greedy's cold search (round 21: 164, -0.19%; kernels.plan's plan of it -0.19% too)
PREEMPT_POOL_CASES = (164,)


def _polished_without_preempt_moves(i: int) -> tuple[Any, ...]:
    """:func:`_polished_without` the preemptible-row moves (``PREEMPT_POOLS``)."""
    return _polished_without("PREEMPT_POOLS", i)


@pytest.mark.parametrize("i", PREEMPT_POOL_CASES)
def test_a_preemptible_row_of_the_corpus_moves_into_a_pool_that_does_more_work_per_watt(i: int) -> None:
    """On the plan the rest of the polish leaves where it is, ``_preempt_pools`` moves a preemptible row into another
    pool whose lowest level does more work per watt than the row does now; the plan keeps every rule (checker), carbon
    and the objective fall, every job stays finished (on time) and the greedy still dominated."""
    pb, s, c, nv, npool, nev = _polished_without_preempt_moves(i)
    xp = s.xp
    assert PS._cold_and_done(c, nev)
    m = {"left": PS.FLIP_SEARCH_CELLS}
    sv, sp, sev, k = PS._preempt_pools(pb, xp, c, s.pr, s.d, s.tb, nv, npool, nev, s.gev, m)
    assert k >= 1 and m["left"] < PS.FLIP_SEARCH_CELLS
    _valid_lower_keeping_jobs(pb, s, nev, sv, sp, sev)
    p0, p1 = np.asarray(xp.to_numpy(npool)), np.asarray(xp.to_numpy(sp))
    assert (c.preempt & (p0 >= 0) & (p1 >= 0) & (p0 != p1)).any()  # (a preemptible row in another pool)


@pytest.mark.parametrize("i", PREEMPT_POOL_CASES)
def test_the_polish_makes_the_preemptible_moves_only_where_asked(i: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """``PREEMPT_POOLS`` on, the polish of the cold searched plan ends lower than with it off, valid; off, the polish
    of the plan it left returns it as it is (both on an unlimited meter)."""
    _makes_only_where_asked(i, "PREEMPT_POOLS", _polished_without_preempt_moves, monkeypatch)


@pytest.mark.parametrize("be", BACKENDS[1:])
def test_corpus_preemptible_moves_are_the_numpy_ones_on_torch(be: tuple[str, str]) -> None:
    """torch: the preemptible-row moves give the numpy plan and pools, case by case (from the numpy polish's plan
    without them), on the same meter."""
    _last_stage_on_torch(be, PREEMPT_POOL_CASES, "PREEMPT_POOLS", PS._preempt_pools)
