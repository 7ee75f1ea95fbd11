"""The numpy backend runs the independent parts of a solve on threads (``kernels.planner.CONCURRENT``): the
greedy witness beside the price ascent, the second and third primal tries beside the first, and on a cold
solve past ``SEARCH_MAX_CELLS`` the price-order list schedule beside them. The plan must be the one the same solve makes with every part in turn, bit for bit; a part's exception
reaches the caller."""

from __future__ import annotations

import sys
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

import kernels
from benchmarks.instances import corpus, make, make_problem, shift_problem
from kernels import planner as P
from kernels.problem import PlanProblem, PlanResult


def _same(a: PlanResult, b: PlanResult) -> None:
    for f in ("run", "power_fraction", "pool", "work_done_s", "facility_w"):
        assert np.array_equal(np.asarray(getattr(a, f)), np.asarray(getattr(b, f))), f
    assert (a.objective, a.lower_bound, a.status, a.iterations) == (b.objective, b.lower_bound, b.status, b.iterations)
    for k in ("primal_variant", "witness", "own_plan", "primal_candidates"):
        assert a.diagnostics.get(k) == b.diagnostics.get(k), k


def _solve(monkeypatch: pytest.MonkeyPatch, concurrent: bool, pb: PlanProblem, **kw: Any) -> tuple[PlanResult, int]:
    """``kernels.plan`` with ``CONCURRENT`` set; also how many of its own parts it ran on threads (not the
    power search's second lane, ``kernels.powersearch._responses``: test_powersearch checks that)."""
    started = []
    init = P._Later.__init__

    def counting(self: Any, fn: Any, *, thread: bool) -> None:
        started.append(thread and sys._getframe(1).f_globals.get("__name__") == P.__name__)
        init(self, fn, thread=thread)

    monkeypatch.setattr(P, "CONCURRENT", concurrent)
    monkeypatch.setattr(P._Later, "__init__", counting)
    r = kernels.plan(pb, **kw)
    monkeypatch.undo()
    return r, sum(started)


CASES = [make_problem(200, 24, seed=1)] + [make(*c) for c in corpus(2, seed=5, n_jobs=(20, 40))]


@pytest.mark.parametrize("i", range(len(CASES)))
@pytest.mark.parametrize("tries", [None, 3])
@pytest.mark.parametrize("limit", [None, 0])
def test_threads_give_the_plan_made_in_turn(monkeypatch: pytest.MonkeyPatch, i: int, tries: int | None,
                                            limit: int | None) -> None:
    """Cold (two or three primal tries; ``limit=0``: every instance past the search limit, where the carry
    and, failing it, the price-order list schedule run in turn) and a warm tick after it (witness 'always', and 'auto' with the check
    due by age): the same plans and diagnostics with threads as in turn, and the threads did run."""
    pb = CASES[i]
    if limit is not None:
        monkeypatch.setattr(P, "SEARCH_MAX_CELLS", limit)
    seq, n_seq = _solve(monkeypatch, False, pb, primal_tries=tries)
    if limit is not None:
        monkeypatch.setattr(P, "SEARCH_MAX_CELLS", limit)
    par, n_par = _solve(monkeypatch, True, pb, primal_tries=tries)
    # witness, every primal try but the first (the price list past the search limit only without the carry:
    # with it the list schedule is built in turn where the carry fails)
    assert n_seq == 0 and n_par == 1 + seq.diagnostics["primal_candidates"] - 1 + (limit is not None and not P.CARRY)
    _same(seq, par)
    q = shift_problem(pb, 1)
    for witness in ("always", "auto"):  # auto: the check is due by age (built ahead where the start left work)
        ws = [replace(r, diagnostics={**r.diagnostics, "witness": {**r.diagnostics["witness"], "age_ticks": 7}})
              for r in (seq, par)]
        if limit is not None:
            monkeypatch.setattr(P, "SEARCH_MAX_CELLS", limit)
        wseq, _ = _solve(monkeypatch, False, q, warm_start=ws[0], primal_tries=tries, witness=witness)
        if limit is not None:
            monkeypatch.setattr(P, "SEARCH_MAX_CELLS", limit)
        wpar, _ = _solve(monkeypatch, True, q, warm_start=ws[1], primal_tries=tries, witness=witness)
        _same(wseq, wpar)


def test_a_threaded_part_raises_to_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    """The witness fails on its thread: ``kernels.plan`` raises that error (not a plan without a witness)."""
    from kernels import listsched

    def broken(*a: Any, **k: Any) -> Any:
        raise RuntimeError("witness failed")

    monkeypatch.setattr(P, "CONCURRENT", True)
    monkeypatch.setattr(listsched, "greedy_vmat", broken)
    with pytest.raises(RuntimeError, match="witness failed"):
        kernels.plan(CASES[0])
