"""The dual iteration (kernels.planner._dual_coarse) and the rank plan (_rank_plan) compute the late part of a
job's work only for the jobs with a deadline inside the horizon (``_Jobs.late_rows``): for the others the
late part reads one table cell twice and adds exactly 0. Both give what they give with every job's late
part computed (late_rows = every row), value for value, on every backend; without it (no late rows) the
dual differs."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from _backends import BACKENDS  # noqa: E402  (tests/kernels is on sys.path)
from _problems import small_problem  # noqa: E402

from kernels import backend as B
from kernels import planner as P


@pytest.mark.parametrize("be", BACKENDS)
@pytest.mark.parametrize("seed", range(12))
def test_late_part_only_for_late_rows(be: tuple[str, str], seed: int) -> None:
    xp = B.get_ops(*be)
    pb = small_problem(seed, J=60, T=24, P_=3, quota=seed % 2 == 1)
    c = P._clean_inputs(pb)
    assert not isinstance(c, str)
    pr = P._prepare(c)
    jb = P._Jobs(xp, c, pr)
    n_late = int(xp.to_numpy(jb.late_rows).size)
    assert 0 < n_late < jb.n  # some jobs with a deadline in the horizon, some without
    every = copy.copy(jb)
    every.late_rows = xp.arange(jb.n)
    rng = np.random.default_rng(seed)
    lam = c.kappa * rng.uniform(0.3, 1.7, c.T)
    mu = rng.uniform(0.0, 2.0 * float(c.kappa.mean()), (c.P, c.T)) * (rng.random((c.P, c.T)) < 0.5)
    out_a, env = P._dual_coarse(xp, c, pr, jb, lam, mu)
    out_b, _ = P._dual_coarse(xp, c, pr, every, lam, mu)
    assert out_a.value == out_b.value
    assert np.array_equal(xp.to_numpy(out_a.tau), xp.to_numpy(out_b.tau))
    assert np.array_equal(out_a.g_lam, out_b.g_lam) and np.array_equal(out_a.g_mu, out_b.g_mu)
    va, vb = P._rank_plan(c, pr, jb, env, xp), P._rank_plan(c, pr, every, env, xp)
    assert np.array_equal(xp.to_numpy(va), xp.to_numpy(vb))
    assert xp.to_numpy(va).any()  # the plan runs something (the comparison is not of two empty tables)
    # and the late part is computed: without it (no late rows) the dual value and the thresholds differ
    none = copy.copy(jb)
    none.late_rows = xp.arange(0)
    out_c, _ = P._dual_coarse(xp, c, pr, none, lam, mu)
    assert out_c.value != out_a.value or not np.array_equal(xp.to_numpy(out_c.tau), xp.to_numpy(out_a.tau))


@pytest.mark.parametrize("be", BACKENDS)
@pytest.mark.parametrize("seed", range(8))
def test_steps_past_are_the_sums_over_every_cell(be: tuple[str, str], seed: int) -> None:
    """_steps_past sums only over the cells some threshold falls in: bit for bit the suffix sums over every
    cell of the (slot, class, cell) histogram (the table as the dual iteration built it before)."""
    xp = B.get_ops(*be)
    rng = np.random.default_rng(seed)
    E, T, S, n, Gc = 3, 11, 4, 25, 256
    cls = rng.integers(0, E, n)
    rel = rng.integers(0, T, n)
    dl = np.minimum(rel + rng.integers(1, T + 1, n), T)
    r1 = rng.integers(0, Gc + 1, n)
    r2 = np.minimum(r1 + rng.integers(0, 40, n), Gc)
    g = rng.uniform(0.1, 8.0, n).round(rng.integers(0, 4))  # whole and fractional GPU counts
    cell = rng.integers(0, Gc, (E, T, S))
    cell[0, 0] = r1[:S] if n >= S else cell[0, 0]  # steps in a used cell (past it: the cells above only)
    idx = np.concatenate([rel * E * (Gc + 1) + cls * (Gc + 1) + r1, dl * E * (Gc + 1) + cls * (Gc + 1) + r1,
                          dl * E * (Gc + 1) + cls * (Gc + 1) + r2])
    H = np.bincount(idx, np.concatenate([g, -g, g]), minlength=(T + 1) * E * (Gc + 1))
    A = np.cumsum(H.reshape(T + 1, E, Gc + 1), axis=0)[:T]
    rsuf = np.cumsum(np.flip(A, 2), axis=2)
    want = rsuf[np.arange(T)[None, :, None], np.arange(E)[:, None, None], Gc - 1 - cell]
    got = P._steps_past(xp, E, T, cell, *(xp.asarray(a, xp.i64) for a in (cls, rel, dl, r1, r2)),
                        xp.asarray(g, xp.f64), Gc)
    assert np.array_equal(got, want)
    assert np.abs(want).max() > 0
