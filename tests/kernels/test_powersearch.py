"""The power-level local search (kernels.powersearch) on valid plans of the instance family: the plan stays
valid (checker), the objective never rises, and without a floor every job finished (on time) stays finished
(on time); with the greedy witness as its floor the plan still dominates the greedy job by job. It does move
the family's plans (it is not a no-op), kernels.plan uses it, and numpy and torch give the same plan."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from _backends import BACKENDS
from _family import dominance_failures, greedy_start, outcome

import kernels
from benchmarks.instances import corpus, make
from kernels import listsched as L
from kernels import powersearch as PS

CASES = corpus(40, seed=31, n_jobs=(8, 32), n_slots=(12, 32))


def _search(i: int, *, floor: bool, start: str = "greedy", backend: str = "numpy", device: str = "cpu") -> dict[str, Any]:
    """The search from a valid plan of case ``i`` (the greedy's, or the greedy's after ``listsched.improve``),
    with the greedy as its floor or none; both plans as PlanResults for the checker."""
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
    some, with and without a floor; and its carbon phase lowers the carbon of plans that finish every job."""
    for floor in (False, True):
        gains = []
        for i in range(len(CASES)):
            r = _search(i, floor=floor)
            gains.append(1 - r["nev"]["objective"] / max(r["sev"]["objective"], 1e-9))
        assert sum(g > 1e-9 for g in gains) >= len(CASES) // 2, f"floor={floor}: lowered {sum(g > 0 for g in gains)}"
        assert max(gains) > 0.01
    saved = []
    for i in range(len(CASES)):
        r = _search(i, floor=False, start="improved")
        if not (~np.asarray(r["sev"]["finished"], bool) & ~r["c"].must & (r["c"].R > 0)).any():
            saved.append(1 - r["nev"]["carbon_g"] / max(r["sev"]["carbon_g"], 1e-9))
    assert saved and max(saved) > 0.005 and min(saved) >= -1e-12


def test_kernels_plan_uses_it() -> None:
    """The hook in kernels.plan: some of the family's plans are the searched ones, and they are valid."""
    used = 0
    for i in range(12):
        pb = make(*CASES[i])
        res = kernels.plan(pb)
        assert kernels.check_result(pb, res) == []
        used += str(res.diagnostics.get("primal_variant", "")).endswith("+power")
    assert used >= 4, f"the power search carried {used} of 12 plans"


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
