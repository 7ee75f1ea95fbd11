"""The plan cache the kernels tests share (tests/kernels/_plans.py): a cold plan is the same whatever the names it
leaves out of its key hold, each caller gets its own copy, and a setting a test changes gets its own plans."""

from __future__ import annotations

from typing import Any

import _plans
import numpy as np
import pytest
from _problems import small_problem

import kernels
from benchmarks.instances import corpus, make
from kernels import planner as P


def _changed(name: str, value: Any) -> Any:
    """Another value of a setting; a function that fails the test where a cold plan calls it."""
    if callable(value):
        def called(*a: object, **k: object) -> None:
            raise AssertionError(f"a cold plan calls planner.{name}")
        return called
    if isinstance(value, bool):
        return not value
    assert isinstance(value, int), (name, value)
    return 0 if value else 1


def test_a_cold_plan_is_the_same_whatever_the_warm_only_names_hold(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chain 1 of test_warm_witness's family (its cold plan leaves work undone, where the tick rules act on a warm
    re-plan): with every name of ``_plans.WARM_ONLY`` changed (its functions failing where called) the cold plan is
    the default one bit for bit, so the cache may hand it to a test that changed only those."""
    q = make(*corpus(40, seed=5, n_jobs=(20, 40))[1])
    default, greedy = _plans.plan(q), _plans.greedy_plan(q)
    assert default.diagnostics["own_plan"]["unfinished_jobs"] > 0
    for name in sorted(_plans.WARM_ONLY):
        monkeypatch.setattr(P, name, _changed(name, getattr(P, name)))
    assert _plans.digest(kernels.plan(q)) == _plans.digest(default)
    assert _plans.digest(kernels.greedy_plan(q)) == _plans.digest(greedy)


def test_each_caller_gets_its_own_copy_and_a_changed_setting_its_own_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    pb = small_problem(0)
    a = _plans.plan(pb)
    a.run[:] = False
    a.diagnostics["witness"]["used"] = "changed"
    b = _plans.plan(pb)
    assert _plans.digest(b) == _plans.digest(kernels.plan(pb)) and b.run.any()
    assert _plans.digest(_plans.greedy_plan(pb)) == _plans.digest(kernels.greedy_plan(pb))
    n = len(_plans._PLANS)
    monkeypatch.setattr(P, "SEARCH_MAX_CELLS", 0)
    _plans.plan(pb)
    assert len(_plans._PLANS) == n + 1  # (planned again under the changed setting)
    monkeypatch.setattr(P, "WARM_CARRY", not P.WARM_CARRY)
    _plans.plan(pb)
    assert len(_plans._PLANS) == n + 1  # (a cold plan: WARM_CARRY is not in its key)
    _plans.plan(pb, warm_start=b)
    monkeypatch.setattr(P, "WARM_CARRY", not P.WARM_CARRY)
    _plans.plan(pb, warm_start=b)
    assert len(_plans._PLANS) == n + 3  # (a warm re-plan: it is)
    assert np.array_equal(_plans.plan(pb, warm_start=b).run, kernels.plan(pb, warm_start=b).run)
