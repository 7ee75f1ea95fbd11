"""Reference solvers for the planning problem: the HiGHS LP relaxation and the exact MILP (tests and
benchmarks only, never the product path).

Both are built from the same :class:`~kernels.problem.PlanProblem` as ``kernels.plan`` and minimise the
same objective as ``kernels.evaluate`` (see :data:`OBJECTIVE`), so their optima are directly comparable with
the vectorised planner's objective and its lower bound.

Variables (one column per eligible job/pool pair, slot and power level)
-----------------------------------------------------------------------
- ``x[j, p, t, l] in [0, 1]``: the share of slot ``t`` that job ``j`` runs in pool ``p`` at power level
  ``l``. Levels are the pool's speed-curve points with ``f >= min_power_fraction`` (the discrete fractions
  the planner uses); ``x`` exists only for eligible pools and ``t >= release``; must-run jobs only at
  ``f = 1`` and only in their window ``[release, release + ceil(remaining_s / slot_s))``.
- ``y[t] >= 0``: grid import, with ``y[t] >= facility_w[t] - wind_w[t]`` and ``y[t] <= grid_cap_w[t]``
  (exact: the objective charges ``y`` with a non-negative price, so ``y = max(0, facility - wind)``).
- ``u[j] >= 0``: work left unfinished at the horizon end, ``v[j] >= 0``: work still undone at the deadline.

Rows: facility power ``<= site_max_w`` per slot; import per slot; busy GPUs ``<= pool_gpus[p, t]``;
``sum_{p,l} x <= 1`` per job and slot (``= 1`` for must-run slots); tenant quota GPUs per slot; work
accounting per job; a running non-preemptible job keeps running in its pool in slot 0.

Power of one variable (IT watts, times ``pue`` for the facility): ``gpus_j * (f_l * tdp_w_p - idle_w_p)``
on top of the constant ``sum_p pool_gpus[p, t] * (idle_w_p + host_w_per_gpu_p)`` (kernels.power's model
with busy GPUs replacing idle ones). Work of one variable: ``speed_p(f_l) * slot_s`` seconds.

The LP (``solve_lp``) relaxes integrality and the contiguity of non-preemptible jobs and lets a job split
its slot across pools and levels: it is a valid lower bound on every plan.

The MILP (``solve_milp``) models exactly the discrete planning problem the kernels plan: ``x`` binary (a job
runs a whole slot at one level), one pool per job over the horizon (binary ``z[j, p]``), a job that runs a
slot runs (and draws power for) the whole slot even when it finishes inside it, and a non-preemptible job
runs in one unbroken block that ends only when it is finished (or at the horizon end): start indicator
``s[j, t] >= r[j, t] - r[j, t-1]`` with ``sum_t s <= 1``, end indicator ``e[j, t] >= r[j, t-1] - r[j, t]``
with ``work before t >= (remaining + loss) * e[j, t]``. Use it on small instances (tens of jobs, a few
dozen slots).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray
from scipy.optimize import Bounds, LinearConstraint, linprog, milp

from kernels import power
from kernels.problem import PlanProblem, PlanResult

#: The objective both reference solvers minimise: ``kernels.planner.OBJECTIVE`` (``kernels.evaluate``'s
#: ``objective``); a test checks the MILP optimum against ``kernels.evaluate`` of its plan.
OBJECTIVE = (
    "carbon_g + sum_j weight_j * gpus_j * (unfinished_s_j + late_s_j) + energy_cost_weight * cost_eur, "
    "with unfinished_s_j = max(0, remaining_s_j + lost_s_j - work_s_j) at the horizon end, late_s_j the "
    "same quantity counting only work done before the deadline slot (jobs whose deadline lies inside the "
    "horizon), lost_s_j = preempt_loss_s_j when a running job does not run in its pool in slot 0, and "
    "cost_eur = sum_t max(price_t, 0) * grid_import_w_t * slot_h / 1e6"
)

_EPS = 1e-9


@dataclass(frozen=True)
class RefResult:
    """A reference solution.

    ``objective`` in the units of :data:`OBJECTIVE`; ``carbon_g`` the carbon part; ``status`` one of
    ``"optimal" | "time_limit" | "infeasible" | "error"``; ``x : (J, T)`` the share of each slot each job
    runs (summed over pools and levels; 0/1 for the MILP). For the MILP also ``run``, ``power_fraction``
    and ``pool`` (the plan in PlanResult's shapes) and ``lower_bound`` (HiGHS's dual bound).
    """

    objective: float
    carbon_g: float
    status: str
    solve_s: float
    x: NDArray[np.float64]
    unfinished_gpu_s: float = 0.0
    lower_bound: float = float("nan")
    message: str = ""
    n_vars: int = 0
    n_rows: int = 0
    run: NDArray[np.bool_] | None = None
    power_fraction: NDArray[np.float32] | None = None
    pool: NDArray[np.int32] | None = None
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class _Model:
    c: NDArray[np.float64]
    a: sp.csr_matrix
    lo: NDArray[np.float64]
    hi: NDArray[np.float64]
    lb: NDArray[np.float64]
    ub: NDArray[np.float64]
    integrality: NDArray[np.int8]
    # x-variable index arrays
    vj: NDArray[np.int64]
    vp: NDArray[np.int64]
    vt: NDArray[np.int64]
    vf: NDArray[np.float64]
    n_x: int
    iy: int  # first y column
    iu: int  # first u column
    iv: int  # first v column
    const_obj: float
    carbon_coef: NDArray[np.float64]


def _levels(problem: PlanProblem) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Power levels per pool ``(P, L)`` (speed-curve points >= the pool's minimum) and their mask."""
    P, K = problem.curve_f.shape
    f = np.asarray(problem.curve_f, dtype=np.float64)
    valid = f >= np.asarray(problem.min_power_fraction, dtype=np.float64)[:, None] - _EPS
    # drop repeated points (padding repeats the last point)
    dup = np.zeros_like(valid)
    dup[:, 1:] = np.abs(np.diff(f, axis=1)) < _EPS
    return f, valid & ~dup


def _build(problem: PlanProblem, *, integer: bool) -> _Model:
    T, J, P = problem.n_slots, problem.n_jobs, problem.n_pools
    slot_s = float(problem.slot_s)
    slot_h = slot_s / 3600.0
    pue = float(problem.pue)
    gpus = np.asarray(problem.gpus, dtype=np.float64)
    rem = np.asarray(problem.remaining_s, dtype=np.float64)
    release = np.asarray(problem.release, dtype=np.int64)
    deadline = np.asarray(problem.deadline, dtype=np.int64)
    must = np.asarray(problem.must_run, dtype=bool)
    preempt = np.asarray(problem.preemptible, dtype=bool)
    rpool = np.asarray(problem.running_pool, dtype=np.int64)
    loss = np.where(rpool >= 0, np.asarray(problem.preempt_loss_s, dtype=np.float64), 0.0)
    weight = np.asarray(problem.weight, dtype=np.float64)
    tdp = np.asarray(problem.tdp_w, dtype=np.float64)
    idle = np.asarray(problem.idle_w, dtype=np.float64)
    host = np.asarray(problem.host_w_per_gpu, dtype=np.float64)
    pool_gpus = np.asarray(problem.pool_gpus, dtype=np.float64)
    if pool_gpus.ndim == 1:
        pool_gpus = np.repeat(pool_gpus[:, None], T, axis=1)

    lev_f, lev_ok = _levels(problem)
    lev_s = power.pool_speed(problem.curve_f, problem.curve_s, np.arange(P)[:, None], lev_f)
    full = np.abs(lev_f - 1.0) < _EPS

    # ---- x variables: eligible pairs x slots x levels, filtered
    je, pe = np.nonzero(np.asarray(problem.eligible, dtype=bool))
    E = je.size
    n_must = np.where(must, np.ceil(rem / slot_s - _EPS).astype(np.int64), 0)
    tt = np.arange(T)
    ok = (tt[None, :] >= release[je, None])  # (E, T)
    ok &= ~must[je, None] | (tt[None, :] < (release + n_must)[je, None])
    okl = lev_ok[pe] & (~must[je, None] | full[pe])  # (E, L)
    grid = ok[:, :, None] & okl[:, None, :]
    ei, vt, vl = np.nonzero(grid)
    vj, vp = je[ei], pe[ei]
    vf = lev_f[vp, vl]
    vspeed = lev_s[vp, vl]
    n_x = vj.size

    # ---- columns: x | y (T) | u (J) | v (J) | [z (E) | s (J*T) | e (J*T)]
    iy = n_x
    iu = iy + T
    iv = iu + J
    n = iv + J
    iz = n
    if integer:
        n += E
        i_s = n
        n += J * T
        i_e = n
        n += J * T

    rows: list[NDArray[np.int64]] = []
    cols: list[NDArray[np.int64]] = []
    vals: list[NDArray[np.float64]] = []
    lo: list[NDArray[np.float64]] = []
    hi: list[NDArray[np.float64]] = []
    nrow = 0

    def add(r: NDArray, c: NDArray, v: NDArray, lo_: NDArray, hi_: NDArray) -> None:
        nonlocal nrow
        rows.append(np.asarray(r, dtype=np.int64) + nrow)
        cols.append(np.asarray(c, dtype=np.int64))
        vals.append(np.asarray(v, dtype=np.float64))
        lo.append(np.asarray(lo_, dtype=np.float64))
        hi.append(np.asarray(hi_, dtype=np.float64))
        nrow += len(lo_)

    inf = np.inf
    base_w = (pool_gpus * (idle + host)[:, None]).sum(axis=0)  # (T,) IT watts with every GPU idle
    px = gpus[vj] * (vf * tdp[vp] - idle[vp])  # IT watts on top of idle, per x
    # facility <= site_max
    add(vt, np.arange(n_x), pue * px, np.full(T, -inf), np.asarray(problem.site_max_w) - pue * base_w)
    # pue * px - y <= wind - pue * base
    add(
        np.concatenate([vt, tt]),
        np.concatenate([np.arange(n_x), iy + tt]),
        np.concatenate([pue * px, -np.ones(T)]),
        np.full(T, -inf),
        np.asarray(problem.wind_w, dtype=np.float64) - pue * base_w,
    )
    # pool capacity
    add(vp * T + vt, np.arange(n_x), gpus[vj], np.full(P * T, -inf), pool_gpus.reshape(-1))
    # one slot per job and slot (= 1 for must-run slots)
    slot_lo = np.zeros((J, T))
    mr = must[:, None] & (tt[None, :] >= release[:, None]) & (tt[None, :] < (release + n_must)[:, None])
    slot_lo[mr] = 1.0
    if integer:
        # MILP: sum_l x[j,p,t,l] <= z[j,p] implies sum over p,l <= 1 via sum_p z <= 1
        add(
            np.concatenate([ei * T + vt, np.repeat(np.arange(E) * T, T) + np.tile(tt, E)]),
            np.concatenate([np.arange(n_x), iz + np.repeat(np.arange(E), T)]),
            np.concatenate([np.ones(n_x), -np.ones(E * T)]),
            np.full(E * T, -inf),
            np.zeros(E * T),
        )
        add(je, iz + np.arange(E), np.ones(E), np.zeros(J), np.ones(J))
        # must-run rows (equalities)
        add(vj * T + vt, np.arange(n_x), np.ones(n_x), slot_lo.reshape(-1), np.where(mr, 1.0, inf).reshape(-1))
    else:
        add(vj * T + vt, np.arange(n_x), np.ones(n_x), slot_lo.reshape(-1), np.ones(J * T))
    # tenant quotas
    quota = np.asarray(problem.tenant_quota_gpus, dtype=np.float64)
    if np.isfinite(quota).any():
        ten = np.asarray(problem.tenant, dtype=np.int64)
        N = quota.size
        add(ten[vj] * T + vt, np.arange(n_x), gpus[vj], np.full(N * T, -inf), np.repeat(quota, T))
    # work: u + sum work*x + loss * r0 >= rem + loss   (r0: runs in its pool in slot 0)
    work_x = vspeed * slot_s
    r0 = (rpool[vj] == vp) & (vt == 0)
    jobs = np.arange(J)
    add(
        np.concatenate([vj, vj[r0], jobs]),
        np.concatenate([np.arange(n_x), np.flatnonzero(r0), iu + jobs]),
        np.concatenate([work_x, loss[vj[r0]], np.ones(J)]),
        np.where(must, -inf, rem + loss),
        np.full(J, inf),
    )
    # tardiness: v + sum_{t < deadline} work*x + loss * r0 >= rem + loss, for deadlines inside the horizon
    has_dl = (deadline < T) & ~must
    on_time = vt < deadline[vj]
    r0d = r0
    add(
        np.concatenate([vj[on_time], vj[r0d], jobs]),
        np.concatenate([np.flatnonzero(on_time), np.flatnonzero(r0d), iv + jobs]),
        np.concatenate([work_x[on_time], loss[vj[r0d]], np.ones(J)]),
        np.where(has_dl, rem + loss, -inf),
        np.full(J, inf),
    )
    # a running non-preemptible job keeps running in its pool in slot 0
    keep = (rpool >= 0) & ~preempt & ~must
    if keep.any():
        sel = r0 & keep[vj]
        add(vj[sel], np.flatnonzero(sel), np.ones(int(sel.sum())), keep.astype(float), np.full(J, inf))
    if integer:
        np_jobs = np.flatnonzero(~preempt & ~must)
        if np_jobs.size:
            # r[j,t] - r[j,t-1] - s[j,t] <= 0 ; sum_t s[j,t] <= 1
            # r[j,t-1] - r[j,t] - e[j,t] <= 0 ; sum_{t'<t} work x - (rem+loss) e[j,t] >= 0
            npm = np.zeros(J, dtype=bool)
            npm[np_jobs] = True
            xs = np.flatnonzero(npm[vj])
            xj, xt = vj[xs], vt[xs]
            # start rows (j, t): r[j,t] - r[j,t-1] - s[j,t] <= 0
            nxt = xt + 1 < T
            cells = np.repeat(np_jobs * T, T) + np.tile(tt, np_jobs.size)
            add(
                np.concatenate([xj * T + xt, xj[nxt] * T + xt[nxt] + 1, cells]),
                np.concatenate([xs, xs[nxt], i_s + cells]),
                np.concatenate([np.ones(xs.size), -np.ones(int(nxt.sum())), -np.ones(cells.size)]),
                np.full(J * T, -inf),
                np.zeros(J * T),
            )
            add(
                np.repeat(np_jobs, T),
                i_s + cells,
                np.ones(np_jobs.size * T),
                np.full(J, -inf),
                np.ones(J),
            )
            # end rows (j, t) for t >= 1: r[j,t-1] - r[j,t] - e[j,t] <= 0
            add(
                np.concatenate([xj[nxt] * T + xt[nxt] + 1, xj * T + xt, cells]),
                np.concatenate([xs[nxt], xs, i_e + cells]),
                np.concatenate([np.ones(int(nxt.sum())), -np.ones(xs.size), -np.ones(np_jobs.size * T)]),
                np.full(J * T, -inf),
                np.zeros(J * T),
            )
            # finished-at-end rows: sum_{t' < t} work x - (rem + loss) e[j,t] + loss * r0 >= 0
            # (pairs (x at t', row t) for t > t'), O(J T^2) entries: small instances only
            tri_x, tri_t = [], []
            for t in range(1, T):
                m = xt < t
                tri_x.append(xs[m])
                tri_t.append(np.full(int(m.sum()), t))
            tx = np.concatenate(tri_x) if tri_x else np.zeros(0, np.int64)
            trow = np.concatenate(tri_t) if tri_t else np.zeros(0, np.int64)
            add(
                np.concatenate([vj[tx] * T + trow, cells]),
                np.concatenate([tx, i_e + cells]),
                np.concatenate([work_x[tx] + np.where(r0[tx], loss[vj[tx]], 0.0),
                                -np.repeat((rem + loss)[np_jobs], T)]),
                np.where(np.repeat(npm, T), 0.0, -inf),
                np.full(J * T, inf),
            )

    a = sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(nrow, n)
    )
    a.sum_duplicates()

    # ---- objective and bounds
    ci = np.asarray(problem.carbon_g_per_kwh, dtype=np.float64)
    carbon_coef = slot_h / 1000.0 * ci
    y_coef = carbon_coef.copy()
    ecw = float(problem.energy_cost_weight_g_per_eur)
    if ecw and problem.price_eur_per_mwh is not None:
        y_coef = y_coef + ecw * np.maximum(np.asarray(problem.price_eur_per_mwh, dtype=np.float64), 0.0) * slot_h / 1e6
    c = np.zeros(n)
    c[iy : iy + T] = y_coef
    c[iu : iu + J] = np.where(must, 0.0, weight * gpus)
    c[iv : iv + J] = np.where(has_dl, weight * gpus, 0.0)
    lb = np.zeros(n)
    ub = np.ones(n)
    ub[iy : iy + T] = np.asarray(problem.grid_cap_w, dtype=np.float64)
    ub[iu:iv] = np.where(must, 0.0, inf)
    ub[iv : iv + J] = np.where(has_dl, inf, 0.0)
    integrality = np.zeros(n, dtype=np.int8)
    if integer:
        integrality[:n_x] = 1
        integrality[iz:] = 1
    return _Model(c, a, np.concatenate(lo), np.concatenate(hi), lb, ub, integrality, vj, vp, vt, vf, n_x, iy, iu, iv,
                  0.0, carbon_coef)


def _job_slot_share(m: _Model, problem: PlanProblem, sol: NDArray[np.float64]) -> NDArray[np.float64]:
    x = np.zeros((problem.n_jobs, problem.n_slots))
    np.add.at(x, (m.vj, m.vt), sol[: m.n_x])
    return x


def _status(code: int) -> str:
    return {0: "optimal", 1: "time_limit", 2: "infeasible", 3: "unbounded"}.get(code, "error")


def solve_lp(problem: PlanProblem, time_limit_s: float | None = None, *, carbon_only: bool = False,
             require_finished: NDArray[np.bool_] | None = None, require_on_time: NDArray[np.bool_] | None = None,
             method: str = "highs") -> RefResult:
    """The LP relaxation with HiGHS (a lower bound on every plan's objective).

    ``carbon_only``: minimise grid carbon alone (no penalties, no energy cost). ``require_finished : (J,)``
    jobs that must do all their work (their unfinished work fixed at 0), ``require_on_time : (J,)`` jobs
    with a deadline inside the horizon that must do it before the deadline. With both, the optimum is a
    lower bound on the carbon of every plan that finishes (on time) at least those jobs: what a plan's
    carbon is measured against (``status`` "infeasible" when no relaxed plan can). ``method``: scipy's
    HiGHS method (``"highs"``, ``"highs-ds"``, ``"highs-ipm"``; ``"ipm-no-crossover"``: highspy's interior point
    without crossover, the fastest on large instances, optimal to the IPM's tolerances)."""
    t0 = time.perf_counter()
    m = _build(problem, integer=False)
    J = problem.n_jobs
    if carbon_only or require_finished is not None or require_on_time is not None:
        c, ub = m.c.copy(), m.ub.copy()
        if carbon_only:
            c[:] = 0.0
            c[m.iy : m.iy + problem.n_slots] = m.carbon_coef
        for mask, first in ((require_finished, m.iu), (require_on_time, m.iv)):
            if mask is not None:
                mask = np.asarray(mask, dtype=bool)
                if mask.shape != (J,):
                    raise ValueError(f"solve_lp: a requirement mask has shape {mask.shape}; expected ({J},)")
                ub[first : first + J] = np.where(mask, 0.0, ub[first : first + J])
        m = replace(m, c=c, ub=ub)
    build_s = time.perf_counter() - t0
    opts: dict[str, Any] = {"presolve": True}
    if time_limit_s is not None:
        opts["time_limit"] = float(time_limit_s)
    t1 = time.perf_counter()
    if method == "ipm-no-crossover":
        res = _highspy_ipm(m, time_limit_s)
    else:
        res = linprog(
            m.c, bounds=np.stack([m.lb, m.ub], axis=1), method=method,
            options=opts, **_as_ub_eq(m),
        )
    solve_s = time.perf_counter() - t1
    status = _status(res.status)
    if res.x is None:
        return RefResult(math.nan, math.nan, status, solve_s, np.zeros((problem.n_jobs, problem.n_slots)),
                         message=str(res.message), n_vars=m.c.size, n_rows=m.a.shape[0],
                         extras={"build_s": build_s})
    sol = np.asarray(res.x)
    carbon = float(m.carbon_coef @ sol[m.iy : m.iy + problem.n_slots])
    unf = float(np.asarray(problem.gpus, dtype=np.float64) @ sol[m.iu : m.iu + problem.n_jobs])
    return RefResult(
        objective=float(res.fun), carbon_g=carbon, status=status, solve_s=solve_s,
        x=_job_slot_share(m, problem, sol), unfinished_gpu_s=unf, lower_bound=float(res.fun),
        message=str(res.message), n_vars=m.c.size, n_rows=m.a.shape[0],
        extras={"build_s": build_s, "carbon_g_by_slot": m.carbon_coef * sol[m.iy : m.iy + problem.n_slots]},
    )


def _highspy_ipm(m: _Model, time_limit_s: float | None) -> Any:
    """The LP of ``m`` with highspy's interior point method and no crossover; a linprog-like result
    (``status`` 0 optimal, 1 time limit, 2 infeasible, 4 other; ``x``, ``fun``, ``message``)."""
    from types import SimpleNamespace

    import highspy

    a = m.a.tocsc()
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = int(a.shape[1]), int(a.shape[0])
    inf = highspy.kHighsInf
    lp.col_cost_ = np.asarray(m.c, np.float64)
    lp.col_lower_ = np.where(np.isfinite(m.lb), m.lb, -inf)
    lp.col_upper_ = np.where(np.isfinite(m.ub), m.ub, inf)
    lp.row_lower_ = np.where(np.isfinite(m.lo), m.lo, -inf)
    lp.row_upper_ = np.where(np.isfinite(m.hi), m.hi, inf)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = a.indptr.astype(np.int32)
    lp.a_matrix_.index_ = a.indices.astype(np.int32)
    lp.a_matrix_.value_ = a.data.astype(np.float64)
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    if time_limit_s is not None:
        h.setOptionValue("time_limit", float(time_limit_s))
    h.setOptionValue("solver", "ipm")
    h.setOptionValue("run_crossover", "off")
    h.passModel(lp)
    h.run()
    msg = h.modelStatusToString(h.getModelStatus())
    code = {"Optimal": 0, "Time limit reached": 1, "Infeasible": 2}.get(msg, 4)
    x = np.asarray(h.getSolution().col_value) if code == 0 else None
    return SimpleNamespace(status=code, x=x, fun=float(m.c @ x) if x is not None else math.nan, message=msg)


def _as_ub_eq(m: _Model) -> dict[str, Any]:
    """linprog wants A_ub x <= b_ub and A_eq x = b_eq: split the two-sided rows."""
    eq = np.isfinite(m.lo) & np.isfinite(m.hi) & (np.abs(m.hi - m.lo) < _EPS)
    up = np.isfinite(m.hi) & ~eq
    dn = np.isfinite(m.lo) & ~eq
    a_ub = sp.vstack([m.a[up], -m.a[dn]]).tocsr()
    b_ub = np.concatenate([m.hi[up], -m.lo[dn]])
    out: dict[str, Any] = {"A_ub": a_ub, "b_ub": b_ub}
    if eq.any():
        out["A_eq"] = m.a[eq]
        out["b_eq"] = m.hi[eq]
    return out


def solve_milp(problem: PlanProblem, time_limit_s: float = 60.0) -> RefResult:
    """The exact MILP (see the module docstring) with scipy.optimize.milp (HiGHS branch and bound)."""
    t0 = time.perf_counter()
    m = _build(problem, integer=True)
    build_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    res = milp(
        m.c, constraints=LinearConstraint(m.a, m.lo, m.hi), integrality=m.integrality,
        bounds=Bounds(m.lb, m.ub), options={"time_limit": float(time_limit_s), "disp": False},
    )
    solve_s = time.perf_counter() - t1
    status = _status(res.status)
    J, T = problem.n_jobs, problem.n_slots
    if res.x is None:
        return RefResult(math.nan, math.nan, status, solve_s, np.zeros((J, T)), message=str(res.message),
                         n_vars=m.c.size, n_rows=m.a.shape[0], extras={"build_s": build_s})
    sol = np.asarray(res.x)
    xv = np.round(sol[: m.n_x]) > 0.5
    run = np.zeros((J, T), dtype=bool)
    run[m.vj[xv], m.vt[xv]] = True
    pf = np.zeros((J, T), dtype=np.float32)
    pf[m.vj[xv], m.vt[xv]] = m.vf[xv]
    pool = np.full(J, -1, dtype=np.int32)
    pool[m.vj[xv]] = m.vp[xv]
    carbon = float(m.carbon_coef @ sol[m.iy : m.iy + T])
    unf = float(np.asarray(problem.gpus, dtype=np.float64) @ sol[m.iu : m.iu + J])
    bound = getattr(res, "mip_dual_bound", None)
    return RefResult(
        objective=float(res.fun), carbon_g=carbon, status=status, solve_s=solve_s, x=run.astype(np.float64),
        unfinished_gpu_s=unf, lower_bound=float(bound) if bound is not None else math.nan,
        message=str(res.message), n_vars=m.c.size, n_rows=m.a.shape[0], run=run, power_fraction=pf,
        pool=pool, extras={"build_s": build_s, "mip_gap": getattr(res, "mip_gap", None)},
    )


def plan_result_from_ref(problem: PlanProblem, ref: RefResult) -> PlanResult:
    """A MILP solution in PlanResult form (aggregates from ``kernels.check.evaluate``), for
    ``kernels.check_result``. ``objective`` is the MILP's own value, so the checker also verifies that the
    MILP and ``kernels.evaluate`` agree on the objective."""
    from kernels.check import evaluate

    if ref.run is None or ref.power_fraction is None or ref.pool is None:
        raise ValueError("only a MILP solution (with run / power_fraction / pool) is a plan")
    ev = evaluate(problem, ref.run, ref.power_fraction, ref.pool)
    T = problem.n_slots
    return PlanResult(
        status="optimal" if ref.status == "optimal" else "feasible", reason="", run=ref.run,
        power_fraction=ref.power_fraction, pool=ref.pool, work_done_s=ev["work_done_s"], finished=ev["finished"],
        facility_w=ev["facility_w"], grid_import_w=ev["grid_import_w"], carbon_g=ev["carbon_g_slot"],
        busy_gpus=np.rint(ev["busy_gpus"]).astype(np.int64), dual_price_g_per_gpu_h=np.zeros(T),
        carbon_g_total=float(ev["carbon_g"]), unfinished_gpu_s=float(ev["unfinished_gpu_s"]),
        objective=ref.objective, lower_bound=ref.lower_bound if np.isfinite(ref.lower_bound) else ref.objective,
        gap=0.0, iterations=0, diagnostics={"source": "benchmarks.reference.solve_milp"},
    )
