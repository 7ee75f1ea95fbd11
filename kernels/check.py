"""The objective of any plan (``evaluate``) and the re-verification of every hard constraint (``check_result``).

Both are independent of how the plan was made: they recompute everything from ``run``, ``power_fraction``
and ``pool`` with :mod:`kernels.power` in float64. The objective is defined in :mod:`kernels.planner`
(``OBJECTIVE``) and is the one ``benchmarks.reference`` minimises.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from kernels import power
from kernels.problem import PlanProblem, PlanResult

_EPS = 1e-9
#: relative slack over a slot's cap before its idle floor (:func:`infeasible_slots`) or the floor plus the must-run
#: inference (:func:`inference_shed`) counts as breaking it (``kernels.planner.CAP_TOL``, the same figure)
FLOOR_TOL = 1e-9


def levels(problem: PlanProblem) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Power levels per pool ``(P, K)``: speed-curve points ``>= min_power_fraction`` (repeats dropped)."""
    f = np.asarray(problem.curve_f, dtype=np.float64)
    valid = f >= np.asarray(problem.min_power_fraction, dtype=np.float64)[:, None] - _EPS
    dup = np.zeros_like(valid)
    dup[:, 1:] = np.abs(np.diff(f, axis=1)) < _EPS
    return f, valid & ~dup


def pool_gpus_pt(problem: PlanProblem) -> NDArray[np.float64]:
    h = np.asarray(problem.pool_gpus, dtype=np.float64)
    if h.ndim == 1:
        h = np.repeat(h[:, None], problem.n_slots, axis=1)
    return h


def must_window(problem: PlanProblem) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """``[start, end)`` slots (clipped to the horizon) in which each must-run job has to run."""
    T = problem.n_slots
    rel = np.asarray(problem.release, dtype=np.int64)
    n = np.ceil(np.asarray(problem.remaining_s, dtype=np.float64) / float(problem.slot_s) - _EPS).astype(np.int64)
    start = np.clip(rel, 0, T)
    end = np.clip(rel + np.maximum(n, 0), 0, T)
    must = np.asarray(problem.must_run, dtype=bool)
    return np.where(must, start, 0), np.where(must, end, 0)


def cap_w(problem: PlanProblem) -> NDArray[np.float64]:
    """``(T,)`` the facility watts a slot allows: ``min(site_max_w, wind_w + grid_cap_w)``."""
    return np.minimum(np.asarray(problem.site_max_w, np.float64),
                      np.asarray(problem.wind_w, np.float64) + np.asarray(problem.grid_cap_w, np.float64))


def idle_floor_w(problem: PlanProblem) -> NDArray[np.float64]:
    """``(T,)`` the idle floor: facility watts with every healthy GPU idle (idle and host watts, PUE)."""
    per_gpu = np.asarray(problem.idle_w, np.float64) + np.asarray(problem.host_w_per_gpu, np.float64)
    return problem.pue * (pool_gpus_pt(problem) * per_gpu[:, None]).sum(axis=0)


def full_level_pools(lev_f: NDArray[np.float64], lev_ok: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """``(P,)`` the pools with a full-power (f = 1) level among :func:`levels`' allowed ones: where must-run
    inference can run (it runs at full power)."""
    return np.asarray((lev_ok & (np.abs(lev_f - 1.0) < 1e-9)).any(axis=1), dtype=bool)


def unplaceable(problem: PlanProblem) -> NDArray[np.bool_]:
    """``(J,)`` the jobs no plan can run in any slot, left out of the plan (never run, unfinished for
    ``capacity``, proven) while every other job is planned as usual: a job with no eligible pool (a selector
    nothing matches now), a must-run job none of whose eligible pools has a full-power level (it runs at full
    power), and a job that is not must-run wider than the healthy GPUs of each of its eligible pools in every
    slot (a node failure under the only pool that could hold it). A must-run job wider than its pools is not
    here: :func:`inference_shed` marks and sheds it in the slots of its window. One that fits some pool in some
    slot (a ``(P, T)`` ``pool_gpus`` with a maintenance window) is planned in those. The planner, the greedy
    witness, the checker and :func:`explain_unfinished` all read this one rule."""
    must = np.asarray(problem.must_run, dtype=bool)
    ok = np.asarray(problem.eligible, dtype=bool) & np.where(must[:, None], full_level_pools(*levels(problem))[None, :],
                                                             True)
    gmax = (pool_gpus_pt(problem).max(axis=1)[None, :] * ok).max(axis=1, initial=0.0)
    return np.asarray(~ok.any(axis=1) | (~must & (np.asarray(problem.gpus, np.float64) > gmax + 1e-9)), dtype=bool)


def unplaceable_why(problem: PlanProblem) -> list[str]:
    """Per job, why :func:`unplaceable` leaves it out ("" for the others), as ``windward plan`` says it."""
    out = unplaceable(problem)
    must = np.asarray(problem.must_run, dtype=bool)
    elig = np.asarray(problem.eligible, dtype=bool)
    gmax = (pool_gpus_pt(problem).max(axis=1)[None, :] * elig).max(axis=1, initial=0.0)
    gpus = np.asarray(problem.gpus, np.float64)
    return ["" if not o else "it has no eligible pool" if not e.any() else
            "none of its eligible pools has a full-power level" if m and g <= h + 1e-9 else
            f"it needs {g:.0f} GPUs, its eligible pools have at most {h:.0f} healthy in any slot"
            for o, e, m, g, h in zip(out.tolist(), elig, must.tolist(), gpus.tolist(), gmax.tolist(), strict=True)]


def infeasible_slots(problem: PlanProblem) -> tuple[NDArray[np.bool_], NDArray[np.float64]]:
    """Slots no plan can keep within their caps: the facility with every healthy GPU idle (the idle floor)
    already exceeds ``min(site_max_w, wind_w + grid_cap_w)``. Returns the mask ``(T,)`` and the deficit in
    watts (floor minus cap there, 0 elsewhere). A valid plan runs nothing in those slots."""
    floor, cap = idle_floor_w(problem), cap_w(problem)
    bad = np.asarray(floor > cap * (1 + FLOOR_TOL), dtype=bool)
    return bad, np.where(bad, floor - cap, 0.0)


#: why a marked slot sheds inference (:func:`inference_shed`'s ``cause``, in this order), with what ``windward
#: plan``'s exit-3 lines say cannot hold it: its cap cannot hold the watts, a pool cannot hold the GPUs, or a
#: tenant's GPU quota cannot hold its inference (the plan JSON's ``slot_shed_cause`` and ``/v1/plan``'s
#: ``shed_cause``: the names that hold, joined by "+")
SHED_CAUSES = {"cap": "its cap", "GPUs": "its pools' healthy GPUs", "quota": "its tenant's GPU quota"}


class InferenceShed(NamedTuple):
    """:func:`inference_shed`'s answer: which must-run cells a valid plan serves, per slot."""

    marked: NDArray[np.bool_]  # (T,) slots whose idle floor fits but the window's inference (watts, GPUs, quota) does not
    rank: NDArray[np.int64]  # (J,) the serving order of the must-run rows of marked slots (0 first); J: others
    cut: NDArray[np.int64]  # (P, T) a must-run row is served in slot t of its window iff rank < cut[pack, t] ...
    qcut: NDArray[np.int64]  # (N, T) ... and rank < qcut[tenant, t] (its tenant's quota)
    pool: NDArray[np.int64]  # (J,) the pool the must-run rows of marked slots run in (-1: any; see below)
    pack: NDArray[np.int64]  # (J,) the pool :func:`pack_inference` gives each must-run row (0: the others)
    served_w: NDArray[np.float64]  # (T,) facility watts above the idle floor of the inference served (marked)
    shed_w: NDArray[np.float64]  # (T,) the same of the inference shed there (0 elsewhere)
    shed_gpus: NDArray[np.float64]  # (T,) GPUs of the inference shed there (0 elsewhere)
    load_w: NDArray[np.float64]  # (J,) each must-run row's watts above the floor that the figures count (0: others)
    cause: NDArray[np.bool_]  # (T, 3) per marked slot, what cannot hold its inference (:data:`SHED_CAUSES`)
    #: ``pack`` is :func:`inference_shed`'s second packing (beside the running non-preemptible jobs): every
    #: must-run row runs there (``pool``), and a problem that stops the jobs it still displaces pins them there
    #: (``kernels.planner._restarted``)
    repacked: bool = False

    @property
    def closed(self) -> NDArray[np.bool_]:
        """``(T,)`` the marked slots where nothing but the inference served runs: those whose cap cannot hold it."""
        return self.cause[:, 0]


def shed_cause_names(cause: NDArray[np.bool_]) -> list[str]:
    """Per marked slot (the rows of ``cause : (n, 3)``, :attr:`InferenceShed.cause` of those slots) what cannot
    hold its inference: the :data:`SHED_CAUSES` that hold, joined by "+" ("cap", "GPUs" or "cap+GPUs")."""
    return ["+".join(n for n, on in zip(SHED_CAUSES, row, strict=True) if on)
            for row in np.asarray(cause, dtype=bool).tolist()]


def serving_order(weight: NDArray[Any], gpus: NDArray[Any], remaining_s: NDArray[Any], release: NDArray[Any],
                  row: NDArray[Any]) -> NDArray[np.int64]:
    """THE order in which must-run inference is served where a cap cannot hold all of it: higher ``weight``
    first, then fewer ``gpus``, less ``remaining_s``, earlier ``release``, then the lower ``row`` (each ``(M,)``,
    one entry per job). Returns the indices into them in serving order; a cap serves the longest prefix whose
    watts fit and sheds the rest. :func:`inference_shed` (the plan, the greedy witness, the checker) and the
    loop's fast path (``scheduler.fastpath.enforce_caps``, which sheds from the end) both call it, so the plan
    and the loop shed the same jobs in the same order. Pure; a stable sort (equal keys keep their order)."""
    return np.lexsort((np.asarray(row), np.asarray(release), np.asarray(remaining_s), np.asarray(gpus),
                       -np.asarray(weight, dtype=np.float64))).astype(np.int64)


def pack_inference(ok: NDArray[np.bool_], per_gpu: NDArray[np.float64], pin: NDArray[np.int64],
                   gpus: NDArray[np.float64], active: NDArray[np.bool_], H: NDArray[np.float64],
                   held: NDArray[np.float64] | None = None) -> NDArray[np.int64]:
    """THE pool of each must-run row (rows given in :func:`serving_order`): a job keeps one pool for the horizon,
    so its GPUs have to fit in that pool in every slot of its window. A pinned row (``pin >= 0``: a running
    one) stays in its pool and holds its GPUs there first; then the pools are taken in order of ``per_gpu``
    (the most frugal first; ties: the lower index), and each takes, of the rows not yet placed that may run in
    it (``ok : (M, P)``), every row whose GPUs fit under its healthy GPUs (``H : (P, T)``) in every slot of its
    window (``active : (M, T)``) on top of the rows before it in the order that it was offered (taken or not:
    one cumulative sum per pool, no loop over rows, so a row that did not fit still takes room from those after
    it in that pool: a first fit that can leave a packing unfound, never one that breaks a pool). A row no
    pool holds over its whole window is given its most frugal pool (``ok``'s first in that order), where it is
    served in the slots that hold it (:func:`inference_shed`). Where every row fits in its most frugal pool
    that is where each goes (the pools' order is the order of the rows' own choice). With ``held : (P, T)``
    (the GPUs running non-preemptible jobs hold, :func:`inference_shed`'s second packing) the pools are first
    offered under their healthy GPUs less those (a row placed there displaces nothing), then the rows still
    unplaced are offered as above. Loops over pools only."""
    M, P = ok.shape
    pool = np.where(pin >= 0, pin, -1).astype(np.int64)
    take = np.where(active, gpus[:, None], 0.0)  # (M, T)
    used = np.stack([take[pool == p].sum(axis=0) for p in range(P)]) if M else np.zeros_like(H)
    order = np.argsort(per_gpu, kind="stable")
    for room in ([H] if held is None else [H - held, H]):  # passes: room beside the running jobs first
        for p in order:  # pools, the most frugal first
            cand = (pool < 0) & ok[:, p]
            if not cand.any():
                continue
            cum = used[p][None, :] + np.cumsum(np.where(cand[:, None], take, 0.0), axis=0)
            fit = cand & ~(active & (cum > room[p][None, :] + 1e-9)).any(axis=1)
            pool[fit] = p
            used[p] += take[fit].sum(axis=0)
    first = order[np.argmax(ok[:, order], axis=1)] if M else np.zeros(0, np.int64)
    return np.where(pool < 0, first, pool).astype(np.int64)


def inference_shed(problem: PlanProblem) -> InferenceShed:
    """The must-run inference a plan serves where the site cannot hold all of it (:func:`shed_and_blocks`' first
    part)."""
    return shed_and_blocks(problem)[0]


def shed_and_blocks(problem: PlanProblem) -> tuple[InferenceShed, RunningBlocks]:
    """The must-run inference a plan serves where the site cannot hold all of it (:func:`_shed`, in the pools
    :func:`pack_inference` gives it) and the running non-preemptible blocks beside it (:func:`running_blocks`,
    computed once here for the packing kept: the planner reads both from this one call). Where that packing cuts
    running non-preemptible blocks short (``cut``: displaced now, or ended before their shortest block ends) a
    second packing is tried that first offers each pool only the GPUs those jobs do not hold over their shortest
    blocks: it is kept where it serves at least as many inference GPU-slots and cuts less (the cut jobs' weight x
    GPUs: the work at stake, the order in which :func:`running_blocks` keeps them), so it never cuts more than the
    first and never serves less inference (DESIGN section 2: inference first, then commitments; the second may
    use a less frugal pool)."""
    sh = _shed(problem)
    first = running_blocks(problem, sh)
    if not first.cut.any():
        return sh, first
    r, g, active = first.pool, first.gpus, first.active
    held = np.stack([np.where(active & (r == p)[:, None], g[:, None], 0.0).sum(axis=0)
                     for p in range(problem.n_pools)])  # (P, T) pools
    alt = _shed(problem, held)
    second = running_blocks(problem, alt)
    gpus = np.asarray(problem.gpus, np.float64)
    wg = np.asarray(problem.weight, np.float64) * gpus
    if (float((must_cells(problem, alt) * gpus[:, None]).sum()) >= float((must_cells(problem, sh) * gpus[:, None]).sum())
            and float(wg[second.cut].sum()) < float(wg[first.cut].sum())):
        pin = np.asarray(problem.must_run, dtype=bool) & ~unplaceable(problem)  # they run where it packs them
        return alt._replace(repacked=True, pool=np.where(pin, alt.pack, alt.pool)), second
    return sh, first


def _shed(problem: PlanProblem, held: NDArray[np.float64] | None = None) -> InferenceShed:
    """The must-run inference a plan serves where the site cannot hold all of it (DESIGN section 2: "no hard
    violation; inference served"). Each must-run job runs, at full power, in the pool :func:`pack_inference`
    gives it (``pack``: its most frugal eligible pool with a full-power level where its GPUs fit there over its
    window; a running row, ``running_pool >= 0``: the pool it runs in, where it has a full-power level, since
    moving it would lose its work) and draws ``pue * gpus * (tdp_w - idle_w)`` of that pool above the idle
    floor. A slot is *marked* where its idle floor fits under its cap (not :func:`infeasible_slots`) but the
    inference of its windows does not: the floor plus its watts break the cap (``cause`` "cap"), or its GPUs
    break a pool's healthy GPUs in that slot (``cause`` "GPUs": a pool short of healthy GPUs, or inference
    that cannot be packed into its pools), or a tenant's must-run GPUs break its ``tenant_quota_gpus``
    (``cause`` "quota"; :data:`SHED_CAUSES`). There the jobs are served in one fixed order
    (:func:`serving_order`), higher ``weight`` (priority) first, then fewer GPUs, less remaining work, earlier
    release, then the lower row, and a prefix of that order is served (a job that does not fit sheds itself
    and every job after it: the rule is one prefix, so the plan, the greedy witness and the checker agree on
    it), the rest is shed in that slot only:

    Where the cap is a cause nothing else runs there (its cap is held at the floor plus the inference served:
    :attr:`InferenceShed.closed`).
    - where the cap cannot hold it: the longest prefix whose watts fit under the cap and whose GPUs fit in every
      pool and every tenant's quota (one prefix for the slot, ``cut`` and ``qcut`` the same everywhere);
    - where only the GPUs or a quota cannot: per pool, the longest prefix of its rows whose GPUs fit in it
      (``cut[p]``: a pool the failure did not touch serves all of its inference), and per tenant the longest
      prefix of its rows whose GPUs fit its quota (``qcut[n]``), a row served where both hold; the rest of the
      site is planned as usual (the cap holds all the inference there, so other work takes no watts from it).

    In an infeasible slot nothing is served (``cut`` 0); elsewhere everything is (``cut`` J + 1). ``pool`` is
    set for the must-run rows with a cell served in a marked slot (they run in that pool, which the served
    watts and GPUs assume) and, where a slot is marked for GPUs, for every must-run row (the packing is what
    holds the GPUs of the unmarked slots). Loops over pools only: arrays."""
    T, J, P = problem.n_slots, problem.n_jobs, problem.n_pools
    must = np.asarray(problem.must_run, dtype=bool) & ~unplaceable(problem)  # (those are left out of the plan)
    bad, _ = infeasible_slots(problem)
    cut = np.repeat(np.where(bad, 0, J + 1).astype(np.int64)[None, :], P, axis=0)
    quota = np.asarray(problem.tenant_quota_gpus, dtype=np.float64)
    qcut = np.full((quota.size, T), J + 1, dtype=np.int64)
    zero = np.zeros(T)
    rank = np.full(J, J, dtype=np.int64)
    pool = np.full(J, -1, dtype=np.int64)
    pack = np.zeros(J, dtype=np.int64)
    mrows = np.flatnonzero(must)
    if mrows.size == 0:
        return InferenceShed(np.zeros(T, dtype=bool), rank, cut, qcut, pool, pack, zero, zero.copy(), zero.copy(),
                             np.zeros(J), np.zeros((T, len(SHED_CAUSES)), dtype=bool))
    gpus = np.asarray(problem.gpus, dtype=np.float64)[mrows]
    weight = np.asarray(problem.weight, dtype=np.float64)[mrows]
    rem = np.asarray(problem.remaining_s, np.float64)[mrows]
    rel = np.asarray(problem.release, np.int64)[mrows]
    ten = np.asarray(problem.tenant, np.int64)[mrows]
    has_full = full_level_pools(*levels(problem))
    per_gpu = problem.pue * (np.asarray(problem.tdp_w, np.float64) - np.asarray(problem.idle_w, np.float64))
    ok = np.asarray(problem.eligible, dtype=bool)[mrows] & has_full[None, :]
    # a running row stays where it runs (moving it loses its work): its load and pin are its running pool's
    rp = np.asarray(problem.running_pool, dtype=np.int64)[mrows]
    stay = (rp >= 0) & ok[np.arange(mrows.size), np.clip(rp, 0, P - 1)]
    ms, me = must_window(problem)
    tt = np.arange(T)[None, :]
    active = (tt >= ms[mrows][:, None]) & (tt < me[mrows][:, None])  # (M, T)
    H = pool_gpus_pt(problem)
    so = serving_order(weight, gpus, rem, rel, mrows)
    packed = np.empty(mrows.size, dtype=np.int64)
    packed[so] = pack_inference(ok[so], per_gpu, np.where(stay, rp, -1)[so], gpus[so], active[so], H, held)
    pack[mrows] = packed
    load = np.where(ok.any(axis=1), per_gpu[packed], 0.0) * gpus  # (M,) watts at full power
    floor, cap = idle_floor_w(problem), cap_w(problem)
    need = (active * load[:, None]).sum(axis=0)
    over_w = floor + need > cap * (1 + FLOOR_TOL)
    over_g = np.zeros(T, dtype=bool)
    for p in range(P):  # pools
        over_g |= np.where(active & (packed == p)[:, None], gpus[:, None], 0.0).sum(axis=0) > H[p] + 1e-9
    over_q = np.zeros(T, dtype=bool)
    for n in np.unique(ten[np.isfinite(quota[ten])]):  # tenants with a quota and inference
        over_q |= np.where(active & (ten == n)[:, None], gpus[:, None], 0.0).sum(axis=0) > quota[n] + 1e-9
    marked = ~bad & (over_w | over_g | over_q)
    cause = np.stack([marked & over_w, marked & over_g, marked & over_q], axis=1)
    served_w, shed_w, shed_g = zero.copy(), zero.copy(), zero.copy()
    cols = np.flatnonzero(marked)
    if cols.size:
        hit = active[:, cols].any(axis=1)  # the rows with a cell in a marked slot, ranked
        h = np.flatnonzero(hit)
        o = h[serving_order(weight[h], gpus[h], rem[h], rel[h], mrows[h])]
        rank[mrows[o]] = np.arange(o.size)
        a = active[o][:, cols]
        cum = np.cumsum(np.where(a, load[o][:, None], 0.0), axis=0)
        fits_w = floor[cols] + cum <= cap[cols] * (1 + FLOOR_TOL)  # (cum is non-decreasing: one prefix per column)
        fits_p = np.stack([np.cumsum(np.where(a & (packed[o] == p)[:, None], gpus[o][:, None], 0.0), axis=0)
                           <= H[p, cols][None, :] + 1e-9 for p in range(P)])  # (P, rows, cols) each a prefix
        fits_q = np.stack([np.cumsum(np.where(a & (ten[o] == n)[:, None], gpus[o][:, None], 0.0), axis=0)
                           <= quota[n] + 1e-9 for n in range(quota.size)])  # (N, rows, cols) each a prefix
        one = (fits_w & fits_p.all(axis=0) & fits_q.all(axis=0)).sum(axis=0)  # the slot's one prefix
        cut[:, cols] = np.where(over_w[cols][None, :], one[None, :], fits_p.sum(axis=1))
        qcut[:, cols] = np.where(over_w[cols][None, :], one[None, :], fits_q.sum(axis=1))
        k = np.arange(o.size)[:, None]
        served = a & (k < cut[packed[o]][:, cols]) & (k < qcut[ten[o]][:, cols])
        served_w[cols] = (np.where(served, load[o][:, None], 0.0)).sum(axis=0)
        shed_w[cols] = need[cols] - served_w[cols]
        shed_g[cols] = (np.where(a & ~served, gpus[o][:, None], 0.0)).sum(axis=0)
        keep = served.any(axis=1)  # rows (in serving order) served in a marked slot
        pool[mrows[o][keep]] = packed[o][keep]
        if cause[:, 1].any():
            pool[mrows] = packed
    load_w = np.zeros(J)
    load_w[mrows] = load
    return InferenceShed(marked, rank, cut, qcut, pool, pack, served_w, shed_w, shed_g, load_w, cause)


def must_cells(problem: PlanProblem, shed: InferenceShed | None = None) -> NDArray[np.bool_]:
    """``(J, T)`` the cells a valid plan runs at full power: each must-run job's window, less the slots where it
    is shed (:func:`inference_shed`: none in an infeasible slot, the prefix that fits in a marked one)."""
    ms, me = must_window(problem)
    sh = inference_shed(problem) if shed is None else shed
    tt = np.arange(problem.n_slots)[None, :]
    must = np.asarray(problem.must_run, dtype=bool) & ~unplaceable(problem)
    ten = np.asarray(problem.tenant, dtype=np.int64)
    return (must[:, None] & (tt >= ms[:, None]) & (tt < me[:, None]) & (sh.rank[:, None] < sh.cut[sh.pack])
            & (sh.rank[:, None] < sh.qcut[ten]))


def _np_rows(problem: PlanProblem) -> NDArray[np.bool_]:
    """``(J,)`` the running non-preemptible jobs (not must-run, not :func:`unplaceable`, with work left)."""
    rp = np.asarray(problem.running_pool, dtype=np.int64)
    cand = ((rp >= 0) & ~np.asarray(problem.preemptible, dtype=bool) & ~np.asarray(problem.must_run, dtype=bool)
            & (np.asarray(problem.remaining_s, np.float64) > 0))
    return cand & ~unplaceable(problem) if cand.any() else cand


class RunningBlocks(NamedTuple):
    """:func:`running_blocks`' answer: what the site lets each running non-preemptible job keep."""

    displaced: NDArray[np.bool_]  # (J,) stopped in slot 0 (slot 0 cannot hold it), planned again from slot 1
    #: (J,) the slot before which a kept block may end unfinished, the first after slot 0 that is closed or whose
    #: pool GPUs or cap cannot hold it (T: none, and for every other row, the displaced ones included)
    end: NDArray[np.int64]
    #: (J,) what cuts it at ``end``, an index into :data:`_BLOCKS`: 0 its pool's GPUs (``capacity``), 1 the cap or a
    #: closed slot (``cap``); -1: none
    end_by: NDArray[np.int64]
    #: (J,) displaced or cut before its shortest block ends: the work at stake that :func:`shed_and_blocks` weighs
    cut: NDArray[np.bool_]
    rows: NDArray[np.int64]  # (n,) the running non-preemptible rows, in the order they are kept
    pool: NDArray[np.int64]  # (n,) the pools they run in
    gpus: NDArray[np.float64]  # (n,)
    active: NDArray[np.bool_]  # (n, T) their shortest blocks (see :func:`running_blocks`)


def running_blocks(problem: PlanProblem, shed: InferenceShed | None = None) -> RunningBlocks:
    """THE rule for a running non-preemptible job (not must-run, not :func:`unplaceable`, with work left) whose
    block a slot cuts, its pool's GPUs, a cap or a closed slot alike: it is stopped now only where slot 0 cannot
    hold it; otherwise it keeps running up to the first slot that cannot, where its block may end, its work left
    unfinished in this plan (issue 11 item 5: a slot announced for later that no plan can meet stops no work now).

    What the job keeps decides it. The executors checkpoint a job every ``checkpoint_interval_s`` of work,
    non-preemptible or not (``scheduler.executors.simulated``, the Ray runtime), and a stop at any slot loses the
    work since the last checkpoint before it and nothing else. A stop at a later slot ``t`` therefore keeps what a
    stop now keeps (the checkpoint now) plus the work of ``[0, t)`` up to its last checkpoint there, and loses at
    most one checkpoint interval, the bound a stop now loses as well; a stop now gains only the GPUs and watts of
    ``[0, t)`` for other work, and acts on a forecast the next ticks may revise. So the block runs on and the
    plan reports its work left for what cuts it (:func:`explain_unfinished`: ``capacity`` for the GPUs, ``cap``
    for the watts or a closed slot; proven: every valid plan ends it there). When that slot comes it is slot 0:
    the control loop's tick finds the job displaced, stops it (its checkpoint kept) and plans the rest again as a
    queued non-preemptible job (``kernels.planner._restarted``).

    The room: inference is served first (DESIGN section 2), so in each pool and slot the must-run inference served
    (:func:`must_cells`, in the pool :func:`pack_inference` gives it) takes its GPUs, and the idle floor and the
    inference take their watts; the running jobs are kept in one order, higher ``weight`` first (then the lower
    row), each over its shortest block (``active``: from slot 0 to the end of its work at its pool's fastest
    level, or to the first closed slot after slot 0, or to its cap end), by one cumulative sum per pool of their
    GPUs (a job's own GPUs counted past its shortest block too: where its block may still run) and one of their
    watts at their pools' lowest levels (:func:`_cap_end`). A job cut still takes room from those after it (no
    loop over rows: an end is never later than the room allows). ``end`` is the first slot after slot 0 that is
    closed (:func:`infeasible_slots`, :attr:`InferenceShed.closed`: nothing but the inference served runs there)
    or whose pool GPUs (``pool_gpus``: a maintenance window or a node failure announced for later) or cap cannot
    hold it. ``displaced`` where slot 0's GPUs or cap cannot hold it (where slot 0 is closed none keeps running
    anyway). The planner (``_Clean.displaced``, ``_Clean.npend``: computed once per plan with the packing,
    :func:`shed_and_blocks`), the greedy witness, :func:`check_result` and :func:`explain_unfinished` all read
    this one rule. ``shed``: the inference served (None: :func:`shed_and_blocks`' packing, the one every plan
    serves). Loops over pools only."""
    if shed is None:  # the packing kept, and its blocks
        return shed_and_blocks(problem)[1]
    J, P, T = problem.n_jobs, problem.n_pools, problem.n_slots
    npr = _np_rows(problem)
    if T == 0 or not npr.any():
        return RunningBlocks(np.zeros(J, dtype=bool), np.full(J, T, dtype=np.int64), np.full(J, -1, dtype=np.int64),
                             np.zeros(J, dtype=bool), np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0),
                             np.zeros((0, T), dtype=bool))
    sh = shed
    rows = np.flatnonzero(npr)
    rows = rows[np.lexsort((rows, -np.asarray(problem.weight, np.float64)[rows]))]
    _, lev_ok = levels(problem)
    fast = np.where(lev_ok, np.asarray(problem.curve_s, np.float64), 0.0).max(axis=1)  # (P,) the fastest level
    r = np.asarray(problem.running_pool, dtype=np.int64)[rows]
    n = np.ceil(np.asarray(problem.remaining_s, np.float64)[rows] / (float(problem.slot_s) * np.maximum(fast[r], 1e-12))
                - 1e-9).astype(np.int64)
    closed = infeasible_slots(problem)[0] | sh.closed
    later = np.flatnonzero(closed[1:])
    first = int(later[0]) + 1 if later.size else T  # the first closed slot after slot 0
    end0 = np.clip(np.minimum(n, first), 1, T)
    cend = _cap_end(problem, sh, rows, r, end0, closed)
    tt = np.arange(T)[None, :]
    active = tt < np.clip(np.minimum(end0, cend), 1, T)[:, None]  # the shortest blocks (a cap ahead included)
    gpus = np.asarray(problem.gpus, dtype=np.float64)
    g = gpus[rows][:, None]
    served = must_cells(problem, sh)
    room = pool_gpus_pt(problem) - np.stack([np.where(served & (sh.pack == p)[:, None], gpus[:, None], 0.0).sum(axis=0)
                                             for p in range(P)])  # (P, T) pools
    need = np.where(active, 0.0, g)  # its own GPUs past its shortest block too
    for p in np.unique(r).tolist():  # pools with running non-preemptible jobs
        mine = r == p
        need[mine] += np.cumsum(np.where(active[mine], g[mine], 0.0), axis=0)
    over = need > room[r] + 1e-9
    gend = np.where(over & (tt >= 1), tt, T).min(axis=1)  # the first slot after slot 0 (T: none)
    wend = np.where((cend >= 1) & (cend < first), cend, first)  # the watts' end: the cap, or a closed slot
    dis = over[:, 0] | (cend == 0)
    end = np.where(dis, T, np.minimum(gend, wend))
    out_end, by, cut, out_dis = np.full(J, T, dtype=np.int64), np.full(J, -1, dtype=np.int64), np.zeros(J, bool), \
        np.zeros(J, bool)
    out_end[rows] = end
    by[rows] = np.where(end >= T, -1, np.where(gend < wend, 0, 1))  # (a tie: the cap)
    cut[rows] = (active & over).any(axis=1) | (cend == 0)
    out_dis[rows] = dis
    return RunningBlocks(out_dis, out_end, by, cut, rows, r, gpus[rows], active)


def _cap_end(problem: PlanProblem, sh: InferenceShed, rows: NDArray[np.int64], r: NDArray[np.int64],
             end: NDArray[np.int64], closed: NDArray[np.bool_]) -> NDArray[np.int64]:
    """``(n,)`` per running non-preemptible row (``rows`` in :func:`running_blocks`' order, running in pools
    ``r``, shortest blocks ending at ``end``) the first open slot whose cap, after the idle floor and the
    inference served there (:func:`must_cells`), cannot hold it and the rows before it at their pools' lowest
    levels (one cumulative sum in that order: the rows kept are a prefix, as for the GPUs; a row's own watts counted
    past its shortest block too, as its GPUs are: a block held below its fastest level runs on there); T where none."""
    T = problem.n_slots
    lev_f, lev_ok = levels(problem)
    low = np.where(lev_ok, lev_f, np.inf).min(axis=1)  # (P,) each pool's lowest level
    per = problem.pue * (low * np.asarray(problem.tdp_w, np.float64) - np.asarray(problem.idle_w, np.float64))
    w = per[r] * np.asarray(problem.gpus, np.float64)[rows]  # (n,) watts above the floor at the lowest level
    inf_w = (must_cells(problem, sh) * sh.load_w[:, None]).sum(axis=0)  # (T,) the inference served
    tt = np.arange(T)[None, :]
    active = tt < end[:, None]
    cum = np.cumsum(np.where(active, w[:, None], 0.0), axis=0) + np.where(active, 0.0, w[:, None])  # its own past it
    over = ~closed[None, :] & (idle_floor_w(problem) + inf_w + cum > cap_w(problem) * (1 + FLOOR_TOL))
    return np.where(over.any(axis=1), np.argmax(over, axis=1), T).astype(np.int64)


def displaced(problem: PlanProblem, shed: InferenceShed | None = None) -> NDArray[np.bool_]:
    """``(J,)`` the running non-preemptible jobs slot 0 cannot hold (:func:`running_blocks`' ``displaced``):
    stopped in slot 0, their work since the checkpoint lost, planned again from slot 1."""
    return running_blocks(problem, shed).displaced


def closed_slots(problem: PlanProblem) -> NDArray[np.bool_]:
    """``(T,)`` slots where only the inference served runs: the infeasible slots and the marked ones whose cap
    cannot hold the inference (:attr:`InferenceShed.closed`; one marked for GPUs only stays open to other work)."""
    return infeasible_slots(problem)[0] | inference_shed(problem).closed


def _cost_eur(problem: PlanProblem, grid_import_w: NDArray[np.float64]) -> float:
    """``OBJECTIVE``'s cost_eur of a grid-import timeline (negative prices count as 0)."""
    if problem.price_eur_per_mwh is None:
        return 0.0
    price = np.maximum(np.asarray(problem.price_eur_per_mwh, dtype=np.float64), 0.0)
    return float((grid_import_w * price).sum() * (float(problem.slot_s) / 3600.0) / 1e6)


def floor_bound(problem: PlanProblem) -> float:
    """A lower bound on every plan's objective from the site alone: each healthy GPU draws at least the lesser
    of its idle watts and its pool's lowest allowed level, plus its host share, so the facility never draws
    less than that floor; its grid import's carbon and cost are a floor under the objective (the penalties are
    >= 0). Valid where the Lagrangian bound is weak (a tiny instance far from its prices can prove < 0)."""
    lev_f, lev_ok = levels(problem)
    fmin = np.where(lev_ok, lev_f, np.inf).min(axis=1)  # (P,)
    idle = np.asarray(problem.idle_w, np.float64)
    least = np.minimum(idle, np.where(np.isfinite(fmin), fmin, 1.0) * np.asarray(problem.tdp_w, np.float64))
    zero = np.zeros((problem.n_pools, problem.n_slots))
    tl = power.facility_timeline(problem.pue, problem.slot_s, zero, zero, pool_gpus_pt(problem), least,
                                 problem.host_w_per_gpu, problem.wind_w, problem.carbon_g_per_kwh)
    return float(tl["carbon_g"].sum()) + float(problem.energy_cost_weight_g_per_eur) * _cost_eur(
        problem, tl["grid_import_w"])


def evaluate(
    problem: PlanProblem, run: NDArray[np.bool_], power_fraction: NDArray[np.floating], pool: NDArray[np.integer]
) -> dict[str, Any]:
    """Objective parts of any plan (float64; see ``kernels.planner.OBJECTIVE``).

    Returns ``carbon_g, energy_cost_eur, unfinished_gpu_s, unfinished_penalty_g, tardiness_penalty_g,
    lost_work_s`` (per job), ``objective`` and the per-slot ``facility_w, grid_import_w, carbon_g_slot,
    busy_gpus, active_gpu_w`` and per-job ``work_done_s, work_on_time_s, finished`` (and ``work_slot_s``: each
    job's work in each slot, ``(J, T)``).
    """
    T, J, P = problem.n_slots, problem.n_jobs, problem.n_pools
    run = np.asarray(run, dtype=bool)
    pf = np.where(run, np.asarray(power_fraction, dtype=np.float64), 0.0)
    pool = np.asarray(pool, dtype=np.int64)
    gpus = np.asarray(problem.gpus, dtype=np.float64)
    tdp = np.asarray(problem.tdp_w, dtype=np.float64)
    runs_any = run.any(axis=1)
    pool_c = np.clip(pool, 0, P - 1)
    onehot = np.zeros((J, P))
    onehot[np.arange(J)[runs_any & (pool >= 0)], pool_c[runs_any & (pool >= 0)]] = 1.0
    busy = (onehot * gpus[:, None]).T @ run.astype(np.float64)
    active = (onehot * (gpus * tdp[pool_c])[:, None]).T @ pf
    tl = power.facility_timeline(
        problem.pue, problem.slot_s, active, busy, pool_gpus_pt(problem), problem.idle_w,
        problem.host_w_per_gpu, problem.wind_w, problem.carbon_g_per_kwh,
    )
    cost_eur = _cost_eur(problem, tl["grid_import_w"])
    spd = np.zeros((J, T))
    for p in range(P):  # P pools: a loop over pools, never over jobs
        m = (pool_c == p)[:, None] & run
        if m.any():
            spd[m] = power.speed(problem.curve_f[p], problem.curve_s[p], pf[m])
    work_slot = spd * float(problem.slot_s)
    work = work_slot.sum(axis=1)
    dl = np.asarray(problem.deadline, dtype=np.int64)
    on_time_mask = np.arange(T)[None, :] < np.minimum(dl, T)[:, None]
    work_on = np.where(on_time_mask, work_slot, 0.0).sum(axis=1)
    must = np.asarray(problem.must_run, dtype=bool)
    rpool = np.asarray(problem.running_pool, dtype=np.int64)
    lost = np.where((rpool >= 0) & ~((pool == rpool) & run[:, 0]), np.asarray(problem.preempt_loss_s, dtype=np.float64), 0.0)
    need = np.asarray(problem.remaining_s, dtype=np.float64) + lost
    unfinished_s = np.maximum(need - work, 0.0)
    has_dl = (dl < T) & ~must
    late_s = np.where(has_dl, np.maximum(need - work_on, 0.0), 0.0)
    weight = np.asarray(problem.weight, dtype=np.float64)
    unf_pen = float(np.where(must, 0.0, weight * gpus * unfinished_s).sum())
    late_pen = float((weight * gpus * late_s).sum())
    carbon = float(tl["carbon_g"].sum())
    ecw = float(problem.energy_cost_weight_g_per_eur)
    objective = carbon + ecw * cost_eur + unf_pen + late_pen
    return {
        "objective": objective,
        "carbon_g": carbon,
        "energy_cost_eur": cost_eur,
        "unfinished_penalty_g": unf_pen,
        "tardiness_penalty_g": late_pen,
        "unfinished_gpu_s": float((gpus * unfinished_s).sum()),
        "lost_work_s": lost,
        "facility_w": tl["facility_w"],
        "grid_import_w": tl["grid_import_w"],
        "carbon_g_slot": tl["carbon_g"],
        "busy_gpus": busy,
        "active_gpu_w": active,
        "work_done_s": work,
        "work_on_time_s": work_on,
        "work_slot_s": work_slot,
        "finished": work >= need - 1e-6 * np.maximum(need, 1.0),
    }


def check_result(problem: PlanProblem, result: PlanResult, tol: float = 1e-6) -> list[str]:
    """Re-verify every hard constraint of ``result`` on ``problem``; returns the violations (empty: OK).

    Checks: shapes; facility <= site_max_w and grid import <= grid_cap_w per slot; busy GPUs <= pool_gpus per
    pool and slot; tenant quota per slot; must-run jobs served at full power in their window; eligibility of
    the pool; power fractions on the pool's levels within [min_power_fraction, 1] where running and 0
    elsewhere; no run before release; a non-preemptible job runs one unbroken block that ends only when it
    is finished, at the horizon end or before an infeasible slot (or, a running one, before the first slot after
    slot 0 whose GPUs or cap cannot hold it: :func:`running_blocks`' ``end``), and a running one keeps running in
    its pool in slot 0; in an infeasible slot (:func:`infeasible_slots`: the idle floor alone breaks a cap) nothing runs
    (its cap is not checked: no plan meets it; nor are must-run cells there); in a marked slot
    (:func:`inference_shed`: the floor fits, the inference on top of it does not, in watts, in a pool's GPUs or
    in a tenant's quota)
    the inference served runs (the shed cells are not required; its cap and pools are checked), and where the
    cap is what cannot hold it nothing else may run (a non-preemptible block may end before it as before an
    infeasible slot); a job no pool can hold in any slot (:func:`unplaceable`) is not required to run (a
    running one included), and cannot: no pool it runs in holds it; a running non-preemptible job that slot 0
    cannot hold (:func:`running_blocks`' ``displaced``: the inference takes its pool, or slot 0's cap cannot hold
    it) does not run in slot 0; the reported
    aggregates (facility, import, carbon, busy, work, objective) equal the recomputed ones. ``tol`` is
    relative (watts, grams) and absolute on fractions.
    """
    out: list[str] = []
    T, J, P = problem.n_slots, problem.n_jobs, problem.n_pools
    if result.status == "infeasible":
        return out
    run = np.asarray(result.run, dtype=bool)
    if run.shape != (J, T) or np.shape(result.power_fraction) != (J, T) or np.shape(result.pool) != (J,):
        return [f"shapes: run {run.shape}, power_fraction {np.shape(result.power_fraction)}, pool "
                f"{np.shape(result.pool)}; expected ({J}, {T}) and ({J},)"]
    pf = np.asarray(result.power_fraction, dtype=np.float64)
    pool = np.asarray(result.pool, dtype=np.int64)
    runs_any = run.any(axis=1)
    bad = np.flatnonzero(runs_any & ((pool < 0) | (pool >= P)))
    if bad.size:
        out.append(f"job {bad[0]} runs but has pool {pool[bad[0]]} ({bad.size} such jobs)")
        return out
    elig = np.asarray(problem.eligible, dtype=bool)
    pc = np.clip(pool, 0, P - 1)
    bad = np.flatnonzero(runs_any & ~elig[np.arange(J), pc])
    if bad.size:
        out.append(f"job {bad[0]} runs in pool {pool[bad[0]]}, which it is not eligible for ({bad.size} jobs)")
    bad = np.flatnonzero((pf != 0) & ~run)
    if bad.size:
        out.append(f"job {bad[0] // T} has power fraction {pf.flat[bad[0]]} in slot {bad[0] % T} but does not run")
    lev_f, lev_ok = levels(problem)
    on_level = np.zeros((J, T), dtype=bool)
    for k in range(lev_f.shape[1]):
        on_level |= (np.abs(pf - lev_f[pc, k][:, None]) <= 1e-5) & lev_ok[pc, k][:, None]
    jj, tt = np.nonzero(run & ~on_level)
    if jj.size:
        out.append(f"job {jj[0]} runs at power fraction {pf[jj[0], tt[0]]:.4f} in slot {tt[0]}, not a level of pool "
                   f"{pool[jj[0]]} in [min_power_fraction, 1] ({jj.size} cells)")
    rel = np.asarray(problem.release, dtype=np.int64)
    jj, tt = np.nonzero(run & (np.arange(T)[None, :] < rel[:, None]))
    if jj.size:
        out.append(f"job {jj[0]} runs in slot {tt[0]} before its release slot {rel[jj[0]]}")
    must = np.asarray(problem.must_run, dtype=bool)
    infeas, _ = infeasible_slots(problem)
    tt_ = np.flatnonzero(infeas & run.any(axis=0))
    if tt_.size:
        out.append(f"slot {tt_[0]}: its idle floor alone breaks a cap (infeasible slot) but jobs run there "
                   f"({tt_.size} such slots)")
    shed, blocks = shed_and_blocks(problem)
    win = must_cells(problem, shed)
    jj, tt = np.nonzero(win & ~(run & (np.abs(pf - 1.0) <= 1e-5)))
    if jj.size:
        out.append(f"must-run job {jj[0]} is not served at full power in slot {tt[0]} ({jj.size} cells)")
    jj, tt = np.nonzero(run & ~win & shed.closed[None, :])
    if jj.size:
        out.append(f"job {jj[0]} runs in slot {tt[0]}, where the cap cannot hold the inference (marked: only the "
                   f"inference served runs there) ({jj.size} cells)")
    closed = infeas | shed.closed
    ev = evaluate(problem, run, pf, pool)
    cap_site = np.asarray(problem.site_max_w, dtype=np.float64)
    cap_grid = np.asarray(problem.grid_cap_w, dtype=np.float64)
    fac, imp = ev["facility_w"], ev["grid_import_w"]
    for name, val, cap in (("facility_w", fac, cap_site), ("grid_import_w", imp, cap_grid)):
        over = np.flatnonzero((val > cap * (1 + tol) + tol) & ~infeas)
        if over.size:
            t = over[0]
            out.append(f"slot {t}: {name} {val[t] / 1e6:.4f} MW exceeds its cap {cap[t] / 1e6:.4f} MW ({over.size} slots)")
    H = pool_gpus_pt(problem)
    pp, tt = np.nonzero(ev["busy_gpus"] > H + 1e-9)
    if pp.size:
        out.append(f"pool {pp[0]} slot {tt[0]}: {ev['busy_gpus'][pp[0], tt[0]]:.0f} busy GPUs > {H[pp[0], tt[0]]:.0f} healthy")
    quota = np.asarray(problem.tenant_quota_gpus, dtype=np.float64)
    if np.isfinite(quota).any():
        ten = np.asarray(problem.tenant, dtype=np.int64)
        gpus = np.asarray(problem.gpus, dtype=np.float64)
        oh = np.zeros((J, quota.size))
        oh[np.arange(J), ten] = gpus
        use = oh.T @ run.astype(np.float64)
        nn, tt = np.nonzero(use > quota[:, None] + 1e-9)
        if nn.size:
            out.append(f"tenant {nn[0]} slot {tt[0]}: {use[nn[0], tt[0]]:.0f} GPUs > quota {quota[nn[0]]:.0f}")
    # non-preemptible: one block, ending only when finished or at the horizon end
    npj = np.flatnonzero(~np.asarray(problem.preemptible, dtype=bool) & ~must & runs_any)
    if npj.size:
        r = run[npj].astype(np.int8)
        starts = (np.diff(r, axis=1, prepend=0) == 1).sum(axis=1)
        multi = npj[starts > 1]
        if multi.size:
            out.append(f"non-preemptible job {multi[0]} runs in {int(starts[starts > 1][0])} separate blocks")
        last = T - 1 - np.argmax(r[:, ::-1], axis=1)
        need = np.asarray(problem.remaining_s, dtype=np.float64)[npj] + ev["lost_work_s"][npj]
        open_end = (last == T - 1) | closed[np.minimum(last + 1, T - 1)] | (last + 1 == blocks.end[npj])
        early = ~open_end & (ev["work_done_s"][npj] < need - 1e-6 * np.maximum(need, 1.0))
        if early.any():
            j = npj[early][0]
            out.append(f"non-preemptible job {j} stops in slot {int(last[early][0]) + 1} before it is finished")
    rpool = np.asarray(problem.running_pool, dtype=np.int64)
    dis = blocks.displaced
    gone = np.flatnonzero(dis & run[:, 0])
    if gone.size:
        out.append(f"job {gone[0]} runs in slot 0, but it is displaced there (the inference takes its pool, or slot "
                   f"0's cap cannot hold it: it stops, restarts later)")
    keep = np.flatnonzero((rpool >= 0) & ~np.asarray(problem.preemptible, dtype=bool) & ~must & ~unplaceable(problem)
                          & ~dis)
    bad = keep[~(run[keep, 0] & (pool[keep] == rpool[keep]))] if keep.size and not closed[0] else keep[:0]
    if bad.size:
        out.append(f"running non-preemptible job {bad[0]} does not keep running in its pool {rpool[bad[0]]} in slot 0")
    # reported aggregates
    rtol = 1e-6
    for name, mine in (("facility_w", fac), ("grid_import_w", imp), ("carbon_g", ev["carbon_g_slot"])):
        theirs = np.asarray(getattr(result, name), dtype=np.float64)
        if theirs.shape != mine.shape or not np.allclose(theirs, mine, rtol=rtol, atol=1e-3):
            out.append(f"reported {name} differs from the recomputed one (max abs diff "
                       f"{np.max(np.abs(theirs - mine)) if theirs.shape == mine.shape else 'shape'})")
    if not np.array_equal(np.asarray(result.busy_gpus, dtype=np.float64), ev["busy_gpus"]):
        out.append("reported busy_gpus differs from the recomputed one")
    if not np.allclose(np.asarray(result.work_done_s, dtype=np.float64), ev["work_done_s"], rtol=1e-5, atol=1e-3):
        out.append("reported work_done_s differs from the recomputed one")
    if not np.isclose(result.carbon_g_total, ev["carbon_g"], rtol=rtol, atol=1e-3):
        out.append(f"reported carbon_g_total {result.carbon_g_total} != recomputed {ev['carbon_g']}")
    if not np.isclose(result.objective, ev["objective"], rtol=1e-5, atol=1e-3):
        out.append(f"reported objective {result.objective} != recomputed {ev['objective']}")
    if np.isfinite(result.lower_bound) and result.lower_bound > result.objective * (1 + 1e-6) + 1e-6:
        out.append(f"lower bound {result.lower_bound} exceeds the objective {result.objective}")
    return out


#: why a job is unfinished (:func:`explain_unfinished`); "other" is kept for the JSON's shape and no longer given
UNFINISHED_REASONS = ("deadline", "capacity", "cap", "quota", "optimiser", "other")
_BLOCKS = ("capacity", "cap", "quota")  # what stops a job in a slot (:func:`_room`)


def _room(problem: PlanProblem, rows: NDArray[np.int64], free_g: NDArray[np.float64],
          room_w: NDArray[np.float64], quota_left: NDArray[np.float64] | None) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """The most work each job ``rows`` can do in the room given (free GPUs ``free_g : (n, P, T)`` or ``(P, T)``,
    facility watts ``room_w : (n, T)`` or ``(T,)``, GPUs left under its tenant's quota ``quota_left : (n, T)``,
    None without quotas), one pool for the horizon, from its release: a preemptible job in every slot it fits at
    the highest power level that fits, a non-preemptible one in its best unbroken block. Returns that work
    ``(n,)`` (seconds at full speed) and, in its best pool, the slots after its release where it cannot run
    at all, by what stops it first ``(n, 3)`` (:data:`_BLOCKS`: its pool's GPUs, the watts under the site max /
    grid cap (or an infeasible slot), its tenant's quota). Loops over pools and levels, never jobs or slots."""
    T, P = problem.n_slots, problem.n_pools
    n = rows.size
    g = np.asarray(problem.gpus, np.float64)[rows][:, None]
    since = np.arange(T)[None, :] >= np.asarray(problem.release, np.int64)[rows][:, None]
    infeas = closed_slots(problem)[None, :]
    after = since & ~infeas
    elig = np.asarray(problem.eligible, dtype=bool)[rows]
    nonpre = ~np.asarray(problem.preemptible, dtype=bool)[rows]
    quota_ok = np.ones((n, T), dtype=bool) if quota_left is None else quota_left >= g
    lev_f, lev_ok = levels(problem)
    tdp, idle = np.asarray(problem.tdp_w, np.float64), np.asarray(problem.idle_w, np.float64)
    best = np.full(n, -1.0)
    blocked = np.zeros((n, len(_BLOCKS)), dtype=np.int64)
    for p in range(P):  # pools
        gpu_ok = after & (np.broadcast_to(free_g[..., p, :], (n, T)) >= g)
        spd = np.zeros((n, T))
        lowest = np.zeros((n, T), dtype=bool)
        for k in np.flatnonzero(lev_ok[p]):  # the pool's power levels
            w = problem.pue * (lev_f[p, k] * tdp[p] - idle[p]) * g
            fits = gpu_ok & quota_ok & (room_w >= w - 1e-6)
            lowest |= fits
            spd = np.maximum(spd, np.where(fits, power.speed(problem.curve_f[p], problem.curve_s[p], lev_f[p, k]), 0.0))
        cs = np.cumsum(spd, axis=1)
        block = cs - np.maximum.accumulate(np.where(spd > 0, 0.0, cs), axis=1)  # work of the unbroken run so far
        work = np.where(nonpre, block.max(axis=1, initial=0.0), cs[:, -1]) * float(problem.slot_s)
        work = np.where(elig[:, p], work, -1.0)
        stop = np.stack([(after & ~gpu_ok).sum(axis=1), (gpu_ok & quota_ok & ~lowest).sum(axis=1)
                         + (since & infeas).sum(axis=1), (gpu_ok & ~quota_ok).sum(axis=1)], axis=1)
        better = work > best
        best = np.where(better, work, best)
        blocked = np.where(better[:, None], stop, blocked)
    return np.maximum(best, 0.0), blocked


#: the parts of :func:`site_shortfall`, in the order ``windward plan`` names them
SHORTFALL_PARTS = ("deadline", "capacity", "cap", "infeasible")


def must_shed_gpu_s(problem: PlanProblem) -> NDArray[np.float64]:
    """``(T,)`` the GPU-seconds of must-run (inference) work no plan serves in each slot: the work of each
    must-run row's window (``ceil(remaining_s / slot_s)`` slots from its release, full slots then the rest)
    that falls in a slot whose idle floor alone breaks a cap (:func:`infeasible_slots`: nothing runs there).
    Slots past the horizon end are not here (:func:`site_shortfall`'s ``deadline``)."""
    T, slot_s = problem.n_slots, float(problem.slot_s)
    must = np.flatnonzero(np.asarray(problem.must_run, dtype=bool))
    bad = infeasible_slots(problem)[0]
    if must.size == 0 or not bad.any():
        return np.zeros(T)
    rel = np.asarray(problem.release, dtype=np.int64)[must]
    rem = np.maximum(np.asarray(problem.remaining_s, dtype=np.float64)[must], 0.0)
    cols = np.flatnonzero(bad)
    k = cols[None, :] - rel[:, None]  # the slot's place in each row's window
    part = np.where(k >= 0, np.clip(rem[:, None] - k * slot_s, 0.0, slot_s), 0.0)  # (rows, bad slots)
    out = np.zeros(T)
    out[cols] = np.asarray(problem.gpus, dtype=np.float64)[must] @ part
    return out


def least_undone_gpu_h(shortfall: dict[str, float]) -> float:
    """What every plan leaves undone at least, from :func:`site_shortfall`'s parts: ``deadline + infeasible +
    max(capacity, cap)`` (capacity and cap bound the same work two ways; the others are work of their own)."""
    return shortfall.get("deadline", 0.0) + shortfall.get("infeasible", 0.0) + max(
        shortfall.get("capacity", 0.0), shortfall.get("cap", 0.0))


def site_shortfall(problem: PlanProblem) -> dict[str, float]:
    """Lower bounds on the GPU-hours (of work at full speed) that every plan, even a fractional one, leaves
    undone, from the problem alone:

    - ``deadline``: work past what the slots from its release to the horizon end hold at full speed (a
      must-run row's window past the horizon end included);
    - ``capacity``: for a set of pools and a slot ``t0``, the rest of the work of the jobs eligible only in
      those pools and released at ``t0`` or later, beyond those pools' healthy GPU-slots from ``t0`` (the
      slots whose idle floor breaks a cap excluded); the largest over every set and ``t0``, plus the work of
      the jobs no pool holds in any slot (:func:`unplaceable`: none of it can be done; they are in no set);
    - ``cap``: the energy that work needs above the idle floor (each job at its most frugal eligible level)
      beyond the energy under min(site max, wind + grid cap) above the floor from ``t0``, divided by the
      largest need per GPU-second among those jobs; the largest over ``t0``;
    - ``infeasible``: must-run (inference) work in slots whose idle floor alone breaks a cap
      (:func:`must_shed_gpu_s`; inference shed in a marked slot is not here: another choice of what to serve there
      could shed less, so it bounds nothing).

    capacity and cap count the work that is not must-run (must-run work takes no room from them: the bounds
    stay valid), so any plan leaves at least :func:`least_undone_gpu_h` undone. Loops over pool sets (every
    set up to 8 pools, else each pool and all of them) and power levels, never over jobs or slots."""
    T, J, P = problem.n_slots, problem.n_jobs, problem.n_pools
    out = {"deadline": 0.0, "capacity": 0.0, "cap": 0.0, "infeasible": float(must_shed_gpu_s(problem).sum() / 3600.0)}
    if J == 0:
        return out
    slot_s = float(problem.slot_s)
    must = np.asarray(problem.must_run, dtype=bool)
    rel = np.clip(np.asarray(problem.release, dtype=np.int64), 0, T)
    gm = np.asarray(problem.gpus, dtype=np.float64)
    rem = np.maximum(np.asarray(problem.remaining_s, dtype=np.float64), 0.0)
    work = np.minimum(rem, (T - rel) * slot_s)  # what the horizon can hold at full speed (seconds)
    out["deadline"] = float((gm * (rem - work)).sum() / 3600.0)
    if not (~must).any():
        return out
    out_ = unplaceable(problem) & ~must  # work no plan does at all: its own part of the capacity bound
    left_out_h = float((gm * work)[out_].sum() / 3600.0)
    g = np.where(must | out_, 0.0, gm)
    infeas = closed_slots(problem)
    H = pool_gpus_pt(problem) * ~infeas[None, :]
    elig = np.asarray(problem.eligible, dtype=bool)

    def suffix(x: NDArray[np.float64]) -> NDArray[np.float64]:  # x (..., T) -> sums over [t0, T), t0 = 0..T
        return np.concatenate([np.cumsum(x[..., ::-1], axis=-1)[..., ::-1], np.zeros(x.shape[:-1] + (1,))], axis=-1)

    sets = range(1, 2**P) if P <= 8 else [1 << p for p in range(P)] + [2**P - 1]
    bits = 1 << np.arange(P)
    job_bits = (elig * bits[None, :]).sum(axis=1)
    for m in sets:  # pool sets
        inside = (job_bits & ~m) == 0
        by_rel = np.bincount(rel[inside], weights=(g * work)[inside] / slot_s, minlength=T + 1)
        need = np.cumsum(by_rel[::-1])[::-1]  # GPU-slots of work released at t0 or later
        have = suffix(H[(m & bits) > 0].sum(axis=0))
        out["capacity"] = max(out["capacity"], float((need - have).max()) * slot_s / 3600.0)
    cap, floor = cap_w(problem), idle_floor_w(problem)
    idle = np.asarray(problem.idle_w, np.float64)
    lev_f, lev_ok = levels(problem)
    lev_s = power.pool_speed(problem.curve_f, problem.curve_s, np.arange(P)[:, None], lev_f)
    per = problem.pue * (lev_f * np.asarray(problem.tdp_w, np.float64)[:, None] - idle[:, None]) / np.maximum(lev_s, 1e-12)
    e_pool = np.where(lev_ok, per, np.inf).min(axis=1)  # J above the floor per GPU-second of work, (P,)
    e = np.where(elig, e_pool[None, :], np.inf).min(axis=1)
    e = np.where(np.isfinite(e) & (g > 0), np.maximum(e, 0.0), 0.0)
    need_j = np.cumsum(np.bincount(rel, weights=e * g * work, minlength=T + 1)[::-1])[::-1]
    have_j = suffix(np.where(infeas, 0.0, np.maximum(cap - floor, 0.0)) * slot_s)
    worst = np.zeros(T + 1)
    np.maximum.at(worst, rel, e)
    worst = np.maximum.accumulate(worst[::-1])[::-1]  # the largest need among jobs released at t0 or later
    short = np.where(worst > 0, (need_j - have_j) / np.where(worst > 0, worst, 1.0), 0.0)
    out["cap"] = max(0.0, float(short.max()) / 3600.0)
    out["capacity"] = max(out["capacity"], 0.0) + left_out_h
    return out


def _ended_blocks(problem: PlanProblem, run: NDArray[np.bool_],
                  rows: NDArray[np.int64]) -> tuple[NDArray[np.bool_], NDArray[np.str_]]:
    """Of ``rows``, the running non-preemptible jobs kept running (:func:`running_blocks`) whose block in ``run``
    ends where the rule lets it end unfinished (its ``end``), and what cuts it there (``end_by``, a name of
    :data:`_BLOCKS`: ``capacity`` for its pool's GPUs, ``cap`` for the watts or a closed slot)."""
    T = problem.n_slots
    blocks = shed_and_blocks(problem)[1]
    r = run[rows]
    nxt = np.where(r.any(axis=1), T - np.argmax(r[:, ::-1], axis=1), T)  # the slot after the block's last
    ended = (nxt < T) & (nxt == blocks.end[rows]) & ~blocks.displaced[rows] & (r[:, 0] if T else False)
    return ended, np.asarray(_BLOCKS)[np.clip(blocks.end_by[rows], 0, None)]


def explain_unfinished(problem: PlanProblem, result: PlanResult) -> dict[str, Any]:
    """Why each job with work left is unfinished in ``result``.

    A must-run row (inference) is served in every feasible slot of its window (a plan that does not is
    infeasible), so what it leaves lies past the horizon end (``deadline``: its window does not fit) or in
    slots whose idle floor alone breaks a cap, or whose cap cannot hold all the inference (:func:`inference_shed`:
    where it is shed) (``cap``), or, where it is shed only in slots whose pools' GPUs alone cannot hold the
    inference or it has no eligible pool that can run it (:func:`unplaceable`), ``capacity``, or where it is shed
    only for its tenant's GPU quota, ``quota``; all ``proven``.
    For the other jobs (one no pool holds in any slot, :func:`unplaceable`, reads ``capacity``, proven: alone
    on the site it has no room):

    ``deadline``: the slots from its release to the horizon end cannot hold its work even alone at full
    speed. Otherwise the room it could have used is measured (:func:`_room`: free GPUs in its eligible pools,
    facility watts under min(site max, wind + grid cap), its tenant's quota, after its release, at its pool's
    power levels; a non-preemptible job only in one unbroken block) against its remaining work, twice:
    - alone on the site (every healthy GPU free, only the idle floor drawn): where that room is too small no
      plan can finish it (``proven``), and the reason is what stopped it in the most slots;
    - in this plan, with every other job as planned (its own slots given back): where that room holds its
      whole work it provably could have finished (``optimiser``: a quality defect of the plan; each job is
      tested on its own, not the optimiser-labelled jobs all together); otherwise the
      reason is what stopped it in the most slots there: ``capacity`` (its pools' GPUs taken or unhealthy),
      ``cap`` (the watts under the caps, or a slot whose idle floor alone breaks a cap) or ``quota`` (its
      tenant's GPU quota), and not ``proven`` (another plan might have given it that room).
    A running non-preemptible job kept running whose block the plan ends where :func:`running_blocks` lets it end
    (a later slot whose GPUs or cap cannot hold it, or a closed slot) reads what cuts it there, ``capacity`` (its
    pool's GPUs) or ``cap`` (the watts, a closed slot), ``proven`` (every valid plan ends it there), whatever the
    two rooms say (its work may exceed the horizon as well: the cut is what ends it).
    Returns ``reason`` and ``proven`` (one per job: "" / False where nothing is left), ``jobs`` and ``gpu_h``
    (count and unfinished GPU-hours per reason, :data:`UNFINISHED_REASONS`) and ``proven_jobs`` /
    ``proven_gpu_h`` (the same for the proven ones) and ``site_shortfall_gpu_h`` (:func:`site_shortfall`: work
    no plan can do, whichever jobs it falls on). Vectorised over jobs and slots (loops over pools and
    levels only)."""
    T, J, P = problem.n_slots, problem.n_jobs, problem.n_pools
    jobs = dict.fromkeys(UNFINISHED_REASONS, 0)
    gpu_h = dict.fromkeys(UNFINISHED_REASONS, 0.0)
    out: dict[str, Any] = {"reason": [""] * J, "proven": [False] * J, "jobs": jobs, "gpu_h": gpu_h,
                           "proven_jobs": dict(jobs), "proven_gpu_h": dict(gpu_h),
                           "site_shortfall_gpu_h": site_shortfall(problem)}
    run = np.asarray(result.run, dtype=bool)
    if run.shape != (J, T) or result.status == "infeasible" or J == 0:
        return out
    pf = np.where(run, np.asarray(result.power_fraction, np.float64), 0.0)
    pool = np.asarray(result.pool, dtype=np.int64)
    ev = evaluate(problem, run, pf, pool)
    must = np.asarray(problem.must_run, dtype=bool)
    gpus = np.asarray(problem.gpus, dtype=np.float64)
    need = np.asarray(problem.remaining_s, dtype=np.float64) + ev["lost_work_s"]
    left = np.maximum(need - ev["work_done_s"], 0.0)
    undone = ~np.asarray(ev["finished"], bool) & (need > 0)
    mrows = np.flatnonzero(undone & must)
    if mrows.size:  # must-run: past the horizon end, or in infeasible slots (the docstring)
        mrel = np.clip(np.asarray(problem.release, dtype=np.int64)[mrows], 0, T)
        mrem = np.asarray(problem.remaining_s, dtype=np.float64)[mrows]
        sh = inference_shed(problem)
        ms, me = must_window(problem)
        tt = np.arange(T)[None, :]
        gone = (tt >= ms[mrows][:, None]) & (tt < me[mrows][:, None]) & ~must_cells(problem, sh)[mrows]
        open_ = ~sh.cause[:, 0] & ~infeasible_slots(problem)[0]  # marked, not for the cap
        by_pool = gone & (sh.rank[mrows][:, None] >= sh.cut[sh.pack[mrows]])  # cut by its pool's GPUs
        lo = unplaceable(problem)[mrows]  # no eligible pool with a full-power level: left out
        by_cap = ~lo & (gone & ~open_[None, :]).any(axis=1)
        by_gpus = lo | (~by_cap & by_pool.any(axis=1))
        mwhy = np.where((T - mrel) * float(problem.slot_s) < mrem - 1e-6, "deadline",
                        np.where(by_cap, "cap", np.where(by_gpus, "capacity", "quota")))
        mleft_h = gpus[mrows] * left[mrows] / 3600.0
        for j, r, h in zip(mrows.tolist(), mwhy.tolist(), mleft_h.tolist(), strict=True):
            out["reason"][j], out["proven"][j] = r, True
            jobs[r] += 1
            gpu_h[r] += h
            out["proven_jobs"][r] += 1
            out["proven_gpu_h"][r] += h
    rows = np.flatnonzero(undone & ~must)
    if rows.size == 0:
        return out
    rel = np.clip(np.asarray(problem.release, dtype=np.int64)[rows], 0, T)
    # the proofs count its remaining work only: a plan that keeps a running job running loses nothing
    rem = np.asarray(problem.remaining_s, dtype=np.float64)[rows]
    short = (T - rel) * float(problem.slot_s) < rem - 1e-6
    H = pool_gpus_pt(problem)
    tol = 1e-6 * np.maximum(need[rows], 1.0)
    cap, floor = cap_w(problem), idle_floor_w(problem)
    tdp, idle = np.asarray(problem.tdp_w, np.float64), np.asarray(problem.idle_w, np.float64)
    quota = np.asarray(problem.tenant_quota_gpus, dtype=np.float64)
    ten = np.asarray(problem.tenant, dtype=np.int64)[rows]
    has_quota = bool(np.isfinite(quota).any())
    # alone on the site
    alone_w, alone_stop = _room(problem, rows, H, cap - floor,
                                np.broadcast_to(quota[ten][:, None], (rows.size, T)) if has_quota else None)
    # in this plan, its own slots given back
    mine = run[rows]
    pc = np.clip(pool[rows], 0, P - 1)
    own_g = np.where(mine, gpus[rows][:, None], 0.0)
    free_g = np.repeat((H - ev["busy_gpus"])[None], rows.size, axis=0)
    free_g[np.arange(rows.size), pc] += own_g
    own_w = problem.pue * gpus[rows][:, None] * (pf[rows] * tdp[pc][:, None] - idle[pc][:, None]) * mine
    quota_left = None
    if has_quota:
        oh = np.zeros((J, quota.size))
        oh[np.arange(J), np.asarray(problem.tenant, dtype=np.int64)] = gpus
        quota_left = (quota[:, None] - oh.T @ run.astype(np.float64))[ten] + own_g
    plan_w, plan_stop = _room(problem, rows, free_g, (cap - ev["facility_w"])[None, :] + own_w, quota_left)
    proven = short | (alone_w < rem - 1e-6 * np.maximum(rem, 1.0))
    stop = np.where(proven[:, None], alone_stop, plan_stop)
    blocked = np.asarray(_BLOCKS, dtype=object)[np.argmax(stop, axis=1)]  # ties: capacity, then cap
    why = np.where(short, "deadline", np.where(~proven & (plan_w >= need[rows] - tol), "optimiser", blocked))
    # a running non-preemptible block the plan ends where the rule ends it (running_blocks: a later slot's GPUs or
    # cap, or a closed slot): what cuts it there is why, proven (every valid plan ends it there or stops it now)
    ended, by = _ended_blocks(problem, run, rows)
    why = np.where(ended, by, why)
    proven = proven | ended
    lab = np.array(out["reason"], dtype=object)
    lab[rows] = why
    prv = np.array(out["proven"], dtype=bool)
    prv[rows] = proven
    out["reason"] = lab.tolist()
    out["proven"] = prv.tolist()
    left_h = gpus[rows] * left[rows] / 3600.0
    for r in UNFINISHED_REASONS:  # the reasons (added to the must-run rows' above)
        m = why == r
        jobs[r] += int(m.sum())
        gpu_h[r] += float(left_h[m].sum())
        out["proven_jobs"][r] += int((m & proven).sum())
        out["proven_gpu_h"][r] += float(left_h[m & proven].sum())
    return out
