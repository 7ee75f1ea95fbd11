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

What is attainable on a corpus (issue 11's targets, ``run_attainable``)::

    python benchmarks/optimizer.py --corpus 200 --shared --out out/c            # the plans, the LPs
    python -m benchmarks.reference --attainable out/c/corpus.json --milp-time-limit 30 --workers 2 --out out/a

For every corpus instance whose plan finishes every job on time at more than 1.02 x its carbon LP, the
carbon MILP (``solve_milp(carbon_only=True)``, every job required finished and on time: the LP's own
requirements) gives a proven lower bound on the carbon of every discrete plan that does that work; where it
exceeds 1.02 x the LP, no plan meets the carbon target there. For every instance whose penalised gap to the
LP exceeds 3%, the penalised MILP's dual bound; the gap to the best proven bound (the larger of the two)
is what the plan can still be asked to close.
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
    m = _restrict(_build(problem, integer=False), problem, carbon_only, require_finished, require_on_time, "solve_lp")
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


def _restrict(m: _Model, problem: PlanProblem, carbon_only: bool, require_finished: NDArray[np.bool_] | None,
              require_on_time: NDArray[np.bool_] | None, who: str) -> _Model:
    """``m`` with the objective cut to grid carbon (``carbon_only``) and the unfinished work (late work) of
    the jobs in ``require_finished`` (``require_on_time``) fixed at 0 (see :func:`solve_lp`)."""
    if not (carbon_only or require_finished is not None or require_on_time is not None):
        return m
    J = problem.n_jobs
    c, ub = m.c.copy(), m.ub.copy()
    if carbon_only:
        c[:] = 0.0
        c[m.iy : m.iy + problem.n_slots] = m.carbon_coef
    for mask, first in ((require_finished, m.iu), (require_on_time, m.iv)):
        if mask is not None:
            mask = np.asarray(mask, dtype=bool)
            if mask.shape != (J,):
                raise ValueError(f"{who}: a requirement mask has shape {mask.shape}; expected ({J},)")
            ub[first : first + J] = np.where(mask, 0.0, ub[first : first + J])
    return replace(m, c=c, ub=ub)


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


def solve_milp(problem: PlanProblem, time_limit_s: float = 60.0, *, carbon_only: bool = False,
               require_finished: NDArray[np.bool_] | None = None,
               require_on_time: NDArray[np.bool_] | None = None) -> RefResult:
    """The exact MILP (see the module docstring) with scipy.optimize.milp (HiGHS branch and bound).
    ``carbon_only``, ``require_finished``, ``require_on_time``: as in :func:`solve_lp`; then ``lower_bound``
    (HiGHS's proven dual bound, also at a time limit) bounds the carbon of every plan that finishes (on
    time) at least those jobs."""
    t0 = time.perf_counter()
    m = _restrict(_build(problem, integer=True), problem, carbon_only, require_finished, require_on_time,
                  "solve_milp")
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


# ---------------------------------------------------------------------------------------------------------
# What is attainable on a corpus (issue 11): the MILP's proven bounds beside the LP's
# ---------------------------------------------------------------------------------------------------------

#: Issue 11's corpus targets: carbon / carbon LP bound where the plan finishes every job, the median
#: penalised-objective gap.
CARBON_TARGET = 1.02
GAP_TARGET = 0.03


def attainable_tasks(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """The MILPs that decide what is attainable on a corpus (``benchmarks/optimizer.py --corpus`` rows):
    ``("carbon", name)`` for every instance whose plan finishes every job on time and misses
    :data:`CARBON_TARGET` x its carbon LP, ``("objective", name)`` for every instance whose penalised gap to
    the LP exceeds :data:`GAP_TARGET` (an instance at or below it stays there against any larger bound, so
    these decide the median's side of the target). An instance that finishes every job but some late is
    left out of the carbon MILPs (its LP required only its on-time jobs on time: counted apart)."""
    out: list[tuple[str, str]] = []
    for r in rows:
        if r.get("carbon_vs_lp", 0.0) > CARBON_TARGET and r.get("plan_late", 0) == 0:
            out.append(("carbon", r["name"]))
        if r.get("objective_gap_vs_lp", 0.0) > GAP_TARGET:
            out.append(("objective", r["name"]))
    return out


def _attain_one(arg: tuple[str, str, PlanProblem, float]) -> dict[str, Any]:
    """One MILP of :func:`attainable_tasks` (a process-pool worker)."""
    kind, name, pb, limit_s = arg
    if kind == "carbon":  # every job finished, on time: what the carbon LP of such a plan requires
        on = np.ones(pb.n_jobs, bool)
        mi = solve_milp(pb, time_limit_s=limit_s, carbon_only=True, require_finished=on, require_on_time=on)
        val = mi.carbon_g
    else:
        mi = solve_milp(pb, time_limit_s=limit_s)
        val = mi.objective
    return {"kind": kind, "name": name, "status": mi.status, "incumbent": val, "bound": mi.lower_bound,
            "solve_s": mi.solve_s}


def attainable_summary(rows: list[dict[str, Any]], milps: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    """Issue 11's corpus targets against the best proven bound: per instance the larger of the LP's
    optimum and the MILP's dual bound (``milps[(kind, name)]``, :func:`_attain_one`), the carbon one where
    the plan finishes every job on time, the penalised one everywhere the LP was solved."""
    gaps_lp, gaps_best, per = [], [], []
    carbon_rows = [r for r in rows if "carbon_vs_lp" in r]
    within_lp = within_best = unattainable = late_apart = 0
    for r in rows:
        rec: dict[str, Any] = {"name": r["name"], "J": r["J"], "T": r["T"], "P": r["P"]}
        if "objective_gap_vs_lp" in r:
            obj, lp = r["objective"], r["highs_objective"]
            m = milps.get(("objective", r["name"]))
            best = max(lp, m["bound"]) if m and np.isfinite(m["bound"]) else lp
            g = (obj - best) / max(abs(obj), 1e-9)
            gaps_lp.append(r["objective_gap_vs_lp"])
            gaps_best.append(g)
            rec.update(gap_lp=r["objective_gap_vs_lp"], gap_best=g)
            if m:
                rec.update(obj_milp_status=m["status"], obj_milp_bound=m["bound"], obj_milp_incumbent=m["incumbent"],
                           gap_milp_bound=(obj - m["bound"]) / max(abs(obj), 1e-9) if np.isfinite(m["bound"]) else None,
                           plan_vs_milp_incumbent=obj / m["incumbent"] if abs(m["incumbent"]) > 1e-6 else None)
        if "carbon_vs_lp" in r:
            cl, pc = r["carbon_lp_g"], r["plan_carbon_g"]
            within_lp += r["carbon_vs_lp"] <= CARBON_TARGET
            m = milps.get(("carbon", r["name"]))
            best = max(cl, m["bound"]) if m and np.isfinite(m["bound"]) else cl
            ratio_best = pc / best if best > 1e-6 else (1.0 if pc <= 1e-6 else math.inf)
            within_best += ratio_best <= CARBON_TARGET
            rec.update(carbon_vs_lp=r["carbon_vs_lp"], carbon_vs_best=ratio_best)
            if r["carbon_vs_lp"] > CARBON_TARGET and r.get("plan_late", 0) > 0:
                late_apart += 1
            if m:
                lb_over = m["bound"] / cl if cl > 1e-6 and np.isfinite(m["bound"]) else None
                unattainable += bool(lb_over is not None and lb_over > CARBON_TARGET)
                rec.update(c_milp_status=m["status"], c_milp_bound=m["bound"], c_milp_incumbent=m["incumbent"],
                           c_milp_bound_vs_lp=lb_over,
                           carbon_vs_milp_incumbent=pc / m["incumbent"] if m["incumbent"] > 1e-6 else None)
        per.append(rec)
    med = lambda xs: float(np.median(xs)) if xs else math.nan  # noqa: E731
    cm = [m for (k, _), m in milps.items() if k == "carbon"]
    return {
        "instances": len(rows), "carbon_n": len(carbon_rows), "carbon_within_lp": within_lp,
        "carbon_missing_lp": len(carbon_rows) - within_lp, "carbon_milps": len(cm),
        "carbon_milps_optimal": sum(m["status"] == "optimal" for m in cm),
        "carbon_unattainable": unattainable, "carbon_missing_but_late": late_apart,
        "carbon_within_best": within_best,
        "gap_n": len(gaps_lp), "gap_lp_median": med(gaps_lp), "gap_best_median": med(gaps_best),
        "gap_lp_within": sum(g <= GAP_TARGET for g in gaps_lp), "gap_best_within": sum(g <= GAP_TARGET for g in gaps_best),
        "objective_milps": sum(k == "objective" for k, _ in milps),
        "objective_milps_optimal": sum(m["status"] == "optimal" for (k, _), m in milps.items() if k == "objective"),
        "per_instance": per,
    }


def run_attainable(corpus_json: list[str], *, time_limit_s: float, workers: int, out: str,
                   reuse: list[str] | None = None, instances: str | None = None,
                   write_instances: str | None = None) -> dict[str, Any]:
    """The MILPs of :func:`attainable_tasks` over one or more ``corpus.json`` files of the same corpus
    (e.g. a baseline's and a change's: each MILP solved once), then :func:`attainable_summary` per file.
    ``reuse``: ``attainable.json`` files of earlier runs on the same corpus whose MILPs (bounds of the
    instance, whatever the plan) are taken as they are. Writes ``attainable.json`` to ``out``.
    ``write_instances``: only pickle the instances the MILPs need (``{name: PlanProblem}``) to that file;
    ``instances``: take them from such a file (a machine without the family's dependencies)."""
    import argparse
    import json
    import os
    import pickle
    from concurrent.futures import ProcessPoolExecutor
    from pathlib import Path

    files = [json.loads(Path(f).read_text()) for f in corpus_json]
    ap = argparse.ArgumentParser()  # the corpus options of benchmarks/optimizer.py (its defaults)
    ap.add_argument("--corpus", type=int)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--corpus-jobs", default="8,32")
    ap.add_argument("--corpus-slots", default="12,32")
    keys = set()
    for fj in files:
        ca, _ = ap.parse_known_args(fj["meta"]["argv"])
        keys.add((ca.corpus, ca.seed, ca.corpus_jobs, ca.corpus_slots))
    if len(keys) != 1:
        raise ValueError(f"run_attainable: the corpus files describe different corpora {sorted(keys)}; expected one")
    import scipy

    old = {(r["kind"], r["name"]): r for f in reuse or [] for r in json.loads(Path(f).read_text())["milps"]}
    tasks = sorted({t for fj in files for t in attainable_tasks(fj["groups"]["corpus"])} - set(old))
    if instances:
        inst = pickle.loads(Path(instances).read_bytes())
    else:
        from benchmarks.instances import corpus, make

        n, seed, cj, cs = keys.pop()
        lo_j, hi_j = (int(x) for x in cj.split(","))
        lo_t, hi_t = (int(x) for x in cs.split(","))
        want = {name for _, name in tasks}
        inst = {f"corpus-{s}": make(s, k) for s, k in corpus(n, seed=seed, n_jobs=(lo_j, hi_j), n_slots=(lo_t, hi_t))
                if f"corpus-{s}" in want}
    if write_instances:
        Path(write_instances).write_bytes(pickle.dumps(inst))
        return {"tasks": tasks}
    args = [(kind, name, inst[name], time_limit_s) for kind, name in tasks]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=max(1, workers)) as ex:
        res = [{**r, "scipy": scipy.__version__} for r in ex.map(_attain_one, args)]
    milps = {**old, **{(r["kind"], r["name"]): r for r in res}}
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / "milps.json").write_text(json.dumps({"milps": list(milps.values())}, indent=1, default=str))
    result = {
        "meta": {"corpus_json": corpus_json, "reuse": reuse or [], "milp_time_limit_s": time_limit_s,
                 "workers": workers, "cpus": os.cpu_count(), "scipy": scipy.__version__,
                 "load_average": tuple(round(x, 2) for x in os.getloadavg()), "wall_s": time.perf_counter() - t0},
        "milps": list(milps.values()),
        "summaries": {f: attainable_summary(fj["groups"]["corpus"], milps) for f, fj in zip(corpus_json, files)},
    }
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / "attainable.json").write_text(json.dumps(result, indent=1, default=str))
    return result


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.reference --attainable CORPUS_JSON [...]``: see :func:`run_attainable`."""
    import argparse
    import json

    ap = argparse.ArgumentParser(description="reference solvers: what is attainable on a corpus (issue 11)")
    ap.add_argument("--attainable", nargs="+", required=True, metavar="CORPUS_JSON",
                    help="corpus.json files of benchmarks/optimizer.py --corpus (one corpus)")
    ap.add_argument("--milp-time-limit", type=float, default=20.0, help="seconds per MILP")
    ap.add_argument("--workers", type=int, default=1, help="MILPs solved at once (processes)")
    ap.add_argument("--reuse", nargs="*", default=[], metavar="ATTAINABLE_JSON",
                    help="attainable.json files of earlier runs on the same corpus: their MILPs are not solved again")
    ap.add_argument("--write-instances", metavar="PICKLE", help="only write the instances the MILPs need")
    ap.add_argument("--instances", metavar="PICKLE", help="the instances from --write-instances")
    ap.add_argument("--out", default="out/attainable")
    a = ap.parse_args(argv)
    res = run_attainable(a.attainable, time_limit_s=a.milp_time_limit, workers=a.workers, out=a.out, reuse=a.reuse,
                         instances=a.instances, write_instances=a.write_instances)
    if a.write_instances:
        print(f"{len(res['tasks'])} MILPs; their instances in {a.write_instances}")
        return 0
    for f, sm in res["summaries"].items():
        print(json.dumps({"file": f, **{k: v for k, v in sm.items() if k != "per_instance"}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
