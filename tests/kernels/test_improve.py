"""The price-order local search (kernels.listsched.improve) on valid plans of the instance family: the plan
stays valid (checker), every job finished stays finished, no job turns late, carbon and the objective never
rise, and it does move work where cheaper room exists (it is not a no-op). On numpy and torch: the same plan."""

from __future__ import annotations

import numpy as np
import pytest
from _backends import BACKENDS
from _family import greedy_start

import kernels
from benchmarks.instances import corpus, make
from kernels import listsched as L

CASES = corpus(40, seed=23, n_jobs=(8, 32), n_slots=(12, 32))


def _greedy_then_improve(i: int, backend: str = "numpy", device: str = "cpu") -> tuple:
    pb = make(*CASES[i])
    s = greedy_start(pb, backend, device)
    iv, iev, moved = L.improve(pb, s.xp, s.c, s.pr, s.d, s.tb, s.gv, s.gp)
    res = s.result(iv, s.gp, iev)
    return pb, s.c, s.gev, iev, moved, res, s.xp.to_numpy(s.gv), s.xp.to_numpy(iv)


@pytest.mark.parametrize("i", range(len(CASES)))
def test_the_search_keeps_every_job_finished_and_on_time_and_never_adds_carbon(i: int) -> None:
    pb, c, gev, iev, moved, res, gv, iv = _greedy_then_improve(i)
    assert kernels.check_result(pb, res) == []
    fg, fi = np.asarray(gev["finished"], bool), np.asarray(iev["finished"], bool)
    assert not (fg & ~fi).any(), f"jobs {np.flatnonzero(fg & ~fi)} no longer finished"
    need = np.asarray(gev["need_s"])
    on_g = np.asarray(gev["work_on_time_s"]) >= need - 1e-6 * np.maximum(need, 1.0)
    on_i = np.asarray(iev["work_on_time_s"]) >= np.asarray(iev["need_s"]) - 1e-6 * np.maximum(need, 1.0)
    late_now = c.has_dl & (c.R > 0) & on_g & ~on_i
    assert not late_now.any(), f"jobs {np.flatnonzero(late_now)} turned late"
    assert iev["carbon_g"] <= gev["carbon_g"] * (1 + 1e-12) and iev["objective"] <= gev["objective"] * (1 + 1e-12)
    # every job does the same work as before (a moved cell keeps its power level)
    assert np.allclose(iev["work_done_s"], gev["work_done_s"], rtol=1e-9, atol=1e-6)
    assert (moved == 0) == np.array_equal(gv, iv)


def test_the_search_moves_work_and_saves_carbon_on_the_family() -> None:
    saved, moved_on = [], 0
    for i in range(len(CASES)):
        _, _, gev, iev, moved, *_ = _greedy_then_improve(i)
        moved_on += moved > 0
        saved.append(1 - iev["carbon_g"] / max(gev["carbon_g"], 1e-9))
    assert moved_on >= len(CASES) // 4, f"moved work on {moved_on} of {len(CASES)}"
    assert max(saved) > 0.01


@pytest.mark.parametrize("be", BACKENDS[1:])
@pytest.mark.parametrize("i", [0, 5, 11])
def test_the_search_gives_the_numpy_plan_on_torch(be: tuple[str, str], i: int) -> None:
    a = _greedy_then_improve(i)
    b = _greedy_then_improve(i, *be)
    assert a[4] == b[4] and np.array_equal(a[7], b[7])
