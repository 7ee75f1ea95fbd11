"""Vectorised list scheduling: the completion pass of the optimiser's plan and the EDF greedy witness.

One mechanism, two orders (:func:`list_schedule`). Rounds: every job that still lacks work proposes, in each
pool it may use (a loop over pools), the slots it needs at one power level against the residual capacity
(free pool GPUs, facility watts under both caps, tenant quota, free slots after its release, outside the
infeasible slots): a preemptible job its cheapest feasible slots in the caller's slot order (on-time slots
before late ones), a non-preemptible one the cheapest feasible single block (one that finishes before one
that is cut off by the horizon end, on time before late; a running one starts now in its pool). Each job
keeps the pool whose proposal misses fewest slots, then is latest least, then costs least. The proposals
are accepted in the caller's job order by prefix sums (tenant quotas, pool GPUs, facility watts; a
non-preemptible block all or nothing). A cell rejected in a round still counted in the prefix sums of
later rows, so acceptance is conservative and never overfills a slot; the next round proposes again.

- The optimiser (:func:`kernels.planner._primal`) runs it after its price-driven repair and fill, with
  slots in order of the dual prices (``lam * watts + mu``) and jobs earliest deadline first: whatever the
  prices leave undone is placed if there is room for it anywhere.
- :func:`greedy_plan` runs it from an empty plan (inference and running non-preemptible jobs first) with
  slots in order of grid carbon intensity ("greenest first") and jobs earliest deadline first, at full
  power: the witness that ``kernels.plan`` must dominate.

- :func:`slack_rank`: another job order (least slack first, non-preemptible and wider first on ties) for the
  optimiser's own list schedules in price order, where the greedy leaves work undone.
- :func:`improve` / :func:`shift_cells`: a price-order local search on a valid plan: each preemptible job's
  dearest slots move to its cheapest free ones that hold it, at the same power level and never past its
  deadline, so every job finished (on time) stays finished (on time); a round is kept only where the exact
  carbon and objective do not rise. ``kernels.plan`` runs it where the witness runs (``plan``'s docstring).

Costs are put on a 2^-30 grid of their magnitude first (:func:`_grid`): sums of them are exact, so ties
between equal-cost slots break the same way on every backend.

No Python loop over jobs or slots: loops run over rounds, pools and power levels.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from kernels import planner as _pl
from kernels.backend import Ops, get_ops
from kernels.problem import PlanProblem, PlanResult

#: key added per late slot (every on-time choice first) and per slot a proposal misses (complete first)
_LATE = 1e12
_SHORT = 1e15
ROUNDS = 12  # at most this many list-scheduling rounds per completion call (each stops when nothing is placed)
ACCEPT_PASSES = 3  # prefix-sum acceptance passes per round
GREEDY_ROUNDS = 48  # the greedy places every job from an empty plan: more rounds


def edf_rank(xp: Ops, c: Any, d: Any) -> Any:
    """``(J,)`` rank of every job in earliest-deadline-first order: inference and running non-preemptible
    jobs first, then by deadline, value of work (higher first), fewer GPUs, release, index."""
    forced = d.forced
    order = xp.lexsort((d.rel, d.gpus, -d.rho_on, d.dl_raw, xp.where(forced, 0, 1)))
    rank = xp.empty(c.J, xp.i64)
    rank[order] = xp.arange(c.J)
    return rank


def slack_slots(xp: Ops, c: Any, d: Any, tb: Any) -> Any:
    """``(J,)`` float64 slack of every job: its deadline (or the horizon end) minus its release minus the slots
    it needs at full power in its fastest eligible pool (0: one start only finishes it in time)."""
    wfull = xp.astype(tb.work[xp.arange(c.P), xp.index(tb.vfull)], xp.f64)  # (P,) work per GPU-slot at f = 1
    best_w = xp.zeros(c.J, xp.f64)
    for p in range(c.P):  # pools
        best_w = xp.maximum(best_w, xp.where(d.eligible[:, p], wfull[p], 0.0))
    nslots = xp.ceil((d.R + d.loss) / xp.maximum(best_w, 1e-9) - 1e-9)
    return xp.astype(d.dl - d.rel, xp.f64) - nslots


def slack_rank(xp: Ops, c: Any, d: Any, tb: Any, first: Any = None) -> Any:
    """``(J,)`` rank of every job in least-slack-first order: inference and running non-preemptible jobs
    first, then by slack (deadline, or the horizon end, minus release minus the slots the job needs at full
    power in its fastest eligible pool), non-preemptible before preemptible, wider first, index. Long and
    wide gangs without a deadline are placed before the room they need is cut up. ``first : (J,) bool``:
    those jobs before the others (after the forced ones)."""
    forced = d.forced
    slack = slack_slots(xp, c, d, tb)
    later = xp.zeros(c.J, xp.i64) if first is None else xp.where(first, 0, 1)
    order = xp.lexsort((xp.arange(c.J), -d.gpus, xp.where(d.preempt, 1, 0), slack, later, xp.where(forced, 0, 1)))
    rank = xp.empty(c.J, xp.i64)
    rank[order] = xp.arange(c.J)
    return rank


def list_schedule(xp: Ops, c: Any, d: Any, tb: Any, vmat: Any, pool: Any, rank: Any, cost: Any, *,
                  lowest: bool = False, rounds: int = ROUNDS, use: Any = None) -> tuple[Any, Any]:
    """Place the work still missing from ``vmat``/``pool`` (module docstring).

    ``rank : (J,)`` job order (lower first); ``cost : (P, T)`` float64 slot order per pool (lower first);
    ``lowest``: propose at each pool's lowest power level (most work per watt) instead of full power.
    ``use``: the plan's usage (:class:`kernels.planner._Use`) where the caller carries it: read instead of
    a pass over the plan, and updated in place to the new plan's.
    Returns the new ``(vmat, pool)``; rows that cannot be placed keep what they had."""
    T, P = c.T, c.P
    if c.J == 0:
        return vmat, pool
    vmat, pool = xp.copy(vmat), xp.copy(pool)
    cost = _grid(xp, cost)
    lv_host = xp.to_numpy(tb.vmin if lowest else tb.vfull).astype(np.int64)
    work_h = xp.to_numpy(tb.work).astype(np.float64)
    load_h = xp.to_numpy(tb.load).astype(np.float64)
    tt = xp.arange(T)[None, :]
    has_q = bool(np.isfinite(c.quota).any())
    quota = xp.asarray(c.quota, xp.f64)
    # the jobs' distinct GPU counts (a handful): a slot's room is tested once per count, not once per row
    g_u, g_inv = np.unique(xp.to_numpy(d.gpus), return_inverse=True)
    g_ud, g_invd = xp.asarray(g_u, xp.f64), xp.asarray(g_inv.reshape(-1), xp.i64)
    feasible_slot = ~d.infeas
    dead = xp.zeros(c.J, xp.bool_)  # rows with no feasible proposal: the residual only shrinks, so none later
    # usage, work and on-time work once; each round adds what it placed (no (J, T) pass per round)
    if use is None:
        busy, fac = _pl._usage(d, tb, vmat, pool, xp)
        done = _pl._job_work(tb, pool, vmat, xp)
    else:
        busy, fac, done = use.busy, use.fac, xp.copy(use.done)
    runs = xp.any(vmat > 0, 1)
    done_on = xp.copy(done)
    dlr = xp.nonzero(d.has_dl & runs)
    if dlr.shape[0]:  # rows that run past their deadline (the others' on-time work is all their work)
        sub = vmat[dlr]
        on_time = tt < d.dl[dlr][:, None]
        past = xp.nonzero(xp.any((sub > 0) & ~on_time, 1))
        if past.shape[0]:
            sub = xp.astype(xp.where(on_time[past], sub[past], 0), xp.i8)
            done_on[dlr[past]] = _pl._job_work(tb, pool[dlr[past]], sub, xp)
    # GPUs per tenant with a quota (a tenant without one has infinite room whatever it uses: left 0)
    used_q = _pl._quota_use(c, d, vmat > 0, xp) if has_q else None
    work_d = xp.astype(tb.work, xp.f64)
    load_d = xp.astype(tb.load, xp.f64)
    # each pool's slot order, its inverse and its cost prefix sums: the cost is the same every round
    ords = [xp.argsort(cost[p]) for p in range(P)]  # pools
    invs = [xp.argsort(o) for o in ords]  # pools
    ccs = [xp.concatenate([xp.zeros((1,), xp.f64), xp.cumsum(cost[p], 0)], 0) for p in range(P)]  # pools
    for _ in range(rounds):  # rounds
        stay = (pool == d.rpool) & (vmat[:, 0] > 0)
        need = d.R + xp.where(stay, 0.0, d.loss)
        short = ~d.must & (d.R > 0) & (d.rel < T) & xp.where(d.preempt, done < need * (1 - 1e-7) - 1e-6, ~runs)
        # a preemptible job that finishes but late asks for on-time slots (its late tail is trimmed after)
        short = short | (d.preempt & ~d.must & d.has_dl & runs & (done_on < need * (1 - 1e-7) - 1e-6))
        rows = xp.nonzero(short & ~dead)
        n = rows.shape[0]
        if n == 0:
            break
        g = d.gpus[rows]
        gi = g_invd[rows]  # each row's GPU count in g_u
        rel, dl = d.rel[rows], d.dl[rows]
        npre = ~d.preempt[rows]
        rp = d.rpool[rows]
        # a row that runs keeps its pool (a running job placed in another pool by a pass before this one
        # stays there: its cells are counted in that pool), one that does not yet runs where it runs now
        fixed = xp.where(runs[rows], pool[rows], xp.where(rp >= 0, rp, -1))
        deficit = need[rows] - done[rows]
        deficit_on = xp.where(d.has_dl[rows], need[rows] - done_on[rows], 0.0)
        free = (vmat[rows] == 0) & (tt >= rel[:, None]) & feasible_slot[None, :]
        room_w = d.room_cap - fac
        if used_q is not None:  # rows of tenants with a quota (the others have infinite room)
            qr = xp.nonzero(d.qten[rows] < c.quota.size)
            if qr.shape[0]:
                free[qr] = free[qr] & ((quota[:, None] - used_q)[d.tenant[rows[qr]]] >= g[qr][:, None] - 1e-9)
        start_ok = (tt >= rel[:, None]) & ((rp < 0)[:, None] | (tt == 0))  # running NP: start now
        best_key = xp.full((n,), np.inf, xp.f64)
        best_p = xp.full((n,), -1, xp.i64)
        best_prop = xp.zeros((n, T), xp.bool_)
        best_on = xp.zeros(n, xp.f64)
        best_all = xp.zeros(n, xp.f64)
        for p in range(P):  # pools
            okp = d.eligible[rows, p] & ((fixed < 0) | (fixed == p))
            if not bool(xp.any(okp)):
                continue
            w = float(work_h[p, lv_host[p]])
            ldw = float(load_h[p, lv_host[p]])
            if w <= 0:
                continue
            # pool GPUs and facility watts left in each slot for each distinct GPU count, then per row
            room_g = ((d.H[p] - busy[p])[None, :] >= g_ud[:, None] - 1e-6) & (room_w[None, :] >= (ldw * g_ud)[:, None])
            feas = free & okp[:, None] & room_g[gi]
            nslots = xp.maximum(xp.ceil(deficit / w - 1e-9), 0.0)
            n_on_want = xp.maximum(nslots, xp.ceil(deficit_on / w - 1e-9))
            cp = cost[p]
            key = xp.full((n,), np.inf, xp.f64)
            prop = xp.zeros((n, T), xp.bool_)
            want_on = xp.zeros(n, xp.f64)
            want_all = xp.zeros(n, xp.f64)
            ip = xp.nonzero(~npre & okp)
            if ip.shape[0]:  # preemptible: the first feasible cells in slot order, on-time ones before late
                Fp = feas[ip]
                ns, nw = nslots[ip], n_on_want[ip]
                ordp = ords[p]
                tp, n_late = _pick(xp, T, xp.take_cols(Fp, ordp), ordp, dl[ip], nw, ns)
                pp = xp.take_cols(tp, invs[p])  # back in slot space
                ntake = xp.astype(xp.count_nonzero(tp, 1), xp.f64)
                # the costs are on a 2^-30 grid (_grid): their sum is exact in any order (a product, no table)
                kp = ((xp.maximum(ns, nw) - ntake) * _SHORT + n_late * _LATE
                      + xp.mask_matmul(pp, cp[:, None])[:, 0])
                key[ip] = xp.where(ntake > 0, kp, np.inf)
                prop[ip] = Fp  # every feasible cell: acceptance trims to the cheapest ones it needs
                want_on[ip], want_all[ip] = nw, ns
            inp = xp.nonzero(npre & okp)
            if inp.shape[0]:  # non-preemptible: the cheapest feasible single block (cut off at the horizon end)
                m = inp.shape[0]
                nb = xp.astype(nslots[inp], xp.i64)
                bad = xp.astype(~feas[inp], xp.i32)
                cb = xp.concatenate([xp.zeros((m, 1), xp.i32), xp.cumsum(bad, 1)], 1)
                cc = ccs[p]
                stop = tt + nb[:, None]  # (m, T) where a block started in each slot ends (past T: cut off)
                end = xp.minimum(stop, T)
                clear = (xp.take_along(cb, end, 1) == cb[:, :T]) & start_ok[inp] & (nb > 0)[:, None]
                # slots the block misses past the horizon end, then late, then its cost (the sum in this order)
                key_np = xp.astype(stop - end, xp.f64) * _SHORT
                key_np += xp.astype(stop > dl[inp][:, None], xp.f64) * _LATE
                key_np += cc[end] - cc[:T][None, :]
                key_np = xp.where(clear, key_np, np.inf)
                st = xp.argmin(key_np, 1)
                kbest = xp.take_along(key_np, st[:, None], 1)[:, 0]
                key[inp] = kbest
                prop[inp] = (tt >= st[:, None]) & (tt < xp.minimum(st + nb, T)[:, None]) & xp.isfinite(kbest)[:, None]
            key = xp.where(okp, key, np.inf)
            better = key < best_key
            best_key = xp.where(better, key, best_key)
            best_p = xp.where(better, p, best_p)
            rb = xp.nonzero(better)  # rows whose best pool is this one so far (their proposal replaced)
            best_prop[rb] = prop[rb]
            best_on = xp.where(better, want_on, best_on)
            best_all = xp.where(better, want_all, best_all)
        fin = xp.isfinite(best_key)
        dead[rows[~fin]] = True
        sel = xp.nonzero(fin)
        if sel.shape[0] == 0:
            break
        sel = sel[xp.argsort(rank[rows[sel]])]
        rs, pl, prop = rows[sel], best_p[sel], best_prop[sel]
        gs = g[sel]
        lvl = xp.asarray(lv_host, xp.i64)[pl]
        ldr = xp.astype(tb.load[pl, xp.index(lvl)], xp.f64) * gs
        ok = xp.zeros(prop.shape, xp.bool_)
        ask = prop
        for _ in range(ACCEPT_PASSES):  # acceptance passes: cells a prefix rejected retry on the room left
            acc = ask
            if used_q is not None:
                left_q = quota[:, None] - used_q - _pl._quota_use(c, d, ok, xp, rs, gs)
                acc = acc & _pl._prefix_keep_grouped(gs, acc, d.tenant[rs], left_q, 1e-9, xp)
            acc = acc & _pl._prefix_keep_grouped(gs, acc, pl, d.H - busy - xp.group_rowsum(pl, P, gs, ok), 1e-3, xp)
            acc = acc & _pl._prefix_keep_w(ldr, acc, room_w - xp.rowsum_w(ldr, ok), 0.0, xp)
            ok = ok | acc
            ask = ask & ~acc
            if not bool(xp.any(acc)) or not bool(xp.any(ask)):
                break
        # preemptible rows keep the cheapest accepted cells they need (on-time first): the rest is freed
        pre_s = ~npre[sel]
        for p in range(P):  # pools
            ip = xp.nonzero(pre_s & (pl == p))
            if ip.shape[0] == 0:
                continue
            ordp = ords[p]
            kept, _ = _pick(xp, T, xp.take_cols(ok[ip], ordp), ordp, dl[sel][ip], best_on[sel][ip], best_all[sel][ip])
            ok[ip] = xp.take_cols(kept, invs[p])
        whole = xp.all(ok == prop, 1)
        ok = ok & (whole | pre_s)[:, None]
        got = xp.any(ok, 1)
        if not bool(xp.any(got)):
            break
        vmat[rs] = xp.where(ok, xp.astype(lvl, xp.i8)[:, None], vmat[rs])
        pool[rs] = xp.astype(xp.where(got, pl, pool[rs]), pool.dtype)
        # what this round placed, added to the usage, the tenants' GPUs and the jobs' work
        busy = busy + xp.group_rowsum(pl, P, gs, ok)
        fac = fac + xp.rowsum_w(load_d[pl, xp.index(lvl)] * gs, ok)
        if used_q is not None:
            used_q = used_q + _pl._quota_use(c, d, ok, xp, rs, gs)
        wr = work_d[pl, xp.index(lvl)]
        done[rs] = done[rs] + xp.astype(xp.count_nonzero(ok, 1), xp.f64) * wr
        done_on[rs] = done_on[rs] + xp.astype(xp.count_nonzero(ok & (tt < d.dl[rs][:, None]), 1), xp.f64) * wr
        runs[rs] = runs[rs] | got
    out = _pl._Use(busy, fac, done) if use is not None else None
    if bool(xp.any(d.has_dl)):
        # late tails that on-time slots made unneeded (``done``: kept up to date by every round)
        vmat = _pl._trim(d, tb, vmat, pool, xp, done=done, use=out)
    if use is not None and out is not None:
        use.busy, use.fac, use.done = out.busy, out.fac, out.done
    return vmat, pool


def _grid(xp: Ops, cost: Any) -> Any:
    """``cost : (P, T)`` rounded to multiples of a power of two 2^-30 of its largest magnitude: every sum of
    up to 2^22 of them is then exact in float64 whatever the order, so the proposals' keys (sums of slot
    costs, prefix-sum block costs) and their ties are the same on every backend (numpy and torch add in
    different orders: last-bit differences had broken ties between equal-cost slots differently)."""
    h = xp.to_numpy(cost).astype(np.float64)
    fin = np.isfinite(h)
    top = float(np.abs(h[fin]).max()) if fin.any() else 0.0
    if top <= 0:
        return cost
    q = 2.0 ** (math.floor(math.log2(top)) - 30)
    return xp.asarray(np.where(fin, np.round(h / q) * q, h), xp.f64)


def _pick(xp: Ops, T: int, F: Any, ordp: Any, dl: Any, k_on: Any, k_all: Any) -> tuple[Any, Any]:
    """A preemptible row's cells from ``F : (n, T)`` (its feasible cells in the slot order ``ordp``): the
    first ``k_on`` on-time ones (slots before its deadline ``dl``), then late ones up to ``k_all`` in all.
    Returns the cells taken (in that order) and how many of them are late (float64). Rows whose deadline
    is the horizon end have no late cells and rows that take no late cell need no late pass: the late
    cells are found only for the others (the same cells as on every row)."""
    dr = xp.nonzero(dl < T)  # rows with late cells
    if dr.shape[0] == 0:
        return _first_k(xp, F, k_on), xp.zeros(F.shape[0], xp.f64)
    late = ordp[None, :] >= dl[dr][:, None]  # their late cells, in slot order
    on = xp.copy(F)
    on[dr] = F[dr] & ~late
    k_late = k_all - xp.minimum(xp.astype(xp.count_nonzero(on, 1), xp.f64), k_on)
    take = _first_k(xp, on, k_on)
    n_late = xp.zeros(F.shape[0], xp.f64)
    sub = xp.nonzero(k_late[dr] >= 1)  # rows of dr that take a late cell (k_late is a whole number)
    if sub.shape[0]:
        rows = dr[sub]
        tl = _first_k(xp, F[rows] & late[sub], k_late[rows])
        take[rows] = take[rows] | tl
        n_late[rows] = xp.astype(xp.count_nonzero(tl, 1), xp.f64)
    return take, n_late


def _first_k(xp: Ops, m: Any, k: Any) -> Any:
    """The first ``k[i]`` true cells of each row of the mask ``m : (n, T)`` (a row with at most ``k`` of them
    keeps all: its running count never passes ``k``)."""
    return m & xp.count_upto(m, k)


def greedy_plan(problem: PlanProblem, *, backend: str = "numpy", device: str = "cpu") -> PlanResult:
    """The EDF greedy witness: inference in its windows and running non-preemptible jobs first, then every
    job earliest deadline first at full power in the greenest feasible slots (grid carbon intensity), a
    non-preemptible one in one contiguous block; obeys pool GPUs, site max, grid cap, tenant quotas,
    must-run inference, eligibility and the infeasible slots. Pure arrays on every backend; the same
    :func:`list_schedule` as the optimiser's completion pass. ``lower_bound`` is ``-inf`` (no certificate)."""
    T = int(np.shape(problem.wind_w)[0]) if np.ndim(problem.wind_w) == 1 else 0
    J = int(np.shape(problem.gpus)[0]) if np.ndim(problem.gpus) == 1 else 0
    P = int(np.shape(problem.tdp_w)[0]) if np.ndim(problem.tdp_w) == 1 else 0
    c = _pl._clean_inputs(problem)
    if isinstance(c, str):
        return _pl._infeasible(problem, c, J, T, P)
    perm = _pl.canonical_job_order(problem)
    if perm is not None:  # the jobs in the order kernels.plan takes them (its witness is this plan)
        problem = _pl.permute_jobs(problem, perm)
        c = _pl._clean_inputs(problem)
        assert not isinstance(c, str), c  # the checked values, in another row order
    xp = get_ops(backend, device)
    pr = _pl._prepare(c)
    d = _pl._to_dev(xp, c, pr, problem.deadline)
    tb = _pl._tabs(c, pr, xp)
    vmat, pool = greedy_vmat(xp, c, pr, d, tb)
    pool = xp.astype(xp.where(xp.any(vmat > 0, 1), pool, -1), xp.i32)
    ev = _pl._evaluate_plan(problem, c, pr, vmat, pool, xp=xp, d=d)
    pf = xp.to_numpy(xp.take(d.fv32, xp.index(vmat)))
    r = _pl._result(problem, c, xp.to_numpy(vmat > 0), pf, xp.to_numpy(pool), -math.inf, c.kappa,
                    np.zeros((c.P, c.T)), 0, 0.0, {"backend": xp.name, "device": xp.device, "greedy": True}, ev=ev)
    return r if perm is None else _pl._rows(r, np.argsort(perm), perm)  # the caller's row order


def greedy_vmat(xp: Ops, c: Any, pr: Any, d: Any, tb: Any, cost: Any = None, rank: Any = None) -> tuple[Any, Any]:
    """The greedy plan on the backend: ``(vmat, pool)`` (see :func:`greedy_plan`); ``cost : (P, T)`` another
    slot order than grid carbon intensity (the optimiser's price-order list schedule); ``rank : (J,)``
    another job order than earliest deadline first (:func:`slack_rank`)."""
    T, J = c.T, c.J
    tt = xp.arange(T)[None, :]
    vmat = xp.zeros((J, T), xp.i8)
    has_full = (c.lev_ok & (np.abs(c.lev_f - 1.0) < 1e-9)).any(axis=1)  # (P,) pools with an f = 1 level
    first = xp.argmax(d.eligible & xp.asarray(has_full)[None, :], 1)
    pool = xp.where(d.rpool >= 0, d.rpool, first)
    mrow = xp.nonzero(d.must)
    if mrow.shape[0]:
        win = (tt >= d.ms[mrow][:, None]) & (tt < d.me[mrow][:, None]) & ~d.infeas[None, :]
        vmat[mrow] = xp.astype(xp.where(win, tb.vfull[pool[mrow]][:, None], 0), xp.i8)
    rank = edf_rank(xp, c, d) if rank is None else rank
    forced = d.forced
    prio = xp.argsort(rank)
    if mrow.shape[0]:
        vmat, pool = _pl._repair(c, d, tb, vmat, pool, prio, forced, xp=xp)
    if cost is None:
        cost = xp.asarray(np.broadcast_to(c.kappa[None, :], (c.P, T)).copy(), xp.f64)
    return list_schedule(xp, c, d, tb, vmat, pool, rank, cost, rounds=GREEDY_ROUNDS)


IMPROVE_ROUNDS = _pl.IMPROVE_ROUNDS  # at most this many cell-moving rounds per improve() call


def shift_cells(xp: Ops, c: Any, d: Any, tb: Any, vmat: Any, pool: Any, rank: Any, wind: Any) -> tuple[Any, int]:
    """One round of moving preemptible jobs' slots to cheaper ones, each job's own work kept: per job its
    most expensive run cells (the carbon they cost at the slot's current facility watts and wind) pair with
    its cheapest free cells that hold it (pool GPUs, facility watts, tenant quota, after its release, before
    its deadline when it has one in the horizon, outside the infeasible slots), the k-th with the k-th,
    while the pair saves carbon; the target cells are accepted in job order by prefix sums (a freed source
    is not counted as room until the next round: conservative). A moved cell keeps its power level, so a
    job's work is unchanged and its on-time work never falls: the set of finished and of on-time jobs is
    the same or larger. Slot 0 of a running job in its pool stays (no switching loss). Returns the new
    ``vmat`` and the number of cells moved. No loop over jobs or slots."""
    T = c.T
    rows = xp.nonzero(d.preempt & ~d.must & (pool >= 0) & xp.any(vmat > 0, 1))
    n = rows.shape[0]
    if n == 0:
        return vmat, 0
    tt = xp.arange(T)[None, :]
    busy, fac = _pl._usage(d, tb, vmat, pool, xp)
    sub = vmat[rows]
    pl = xp.astype(pool[rows], xp.i64)
    g = xp.astype(d.gpus[rows], xp.f64)
    L = xp.astype(xp.lookup(tb.load, pl, sub), xp.f64) * g[:, None]  # (n, T) facility watts of each cell
    Lmax = xp.take_along(L, xp.argmax(L, 1)[:, None], 1)[:, 0]  # (n,) its widest cell: what a target must hold
    imp = xp.maximum(fac - wind, 0.0)
    kap = d.kappa
    keep0 = (d.rpool[rows] == pl) & (sub[:, 0] > 0)
    src = (sub > 0) & ~((tt == 0) & keep0[:, None])
    rem = xp.where(src, kap[None, :] * (imp[None, :] - xp.maximum(fac[None, :] - L - wind[None, :], 0.0)), -np.inf)
    room_w = d.room_cap - fac
    tgt = (sub == 0) & (tt >= d.rel[rows][:, None]) & (tt < d.dl[rows][:, None]) & ~d.infeas[None, :]
    tgt = tgt & ((d.H - busy)[pl] >= g[:, None] - 1e-6) & (room_w[None, :] >= Lmax[:, None])
    has_q = bool(np.isfinite(c.quota).any())
    quota = xp.asarray(c.quota, xp.f64)
    if has_q:
        used_q = _pl._quota_use(c, d, vmat > 0, xp)
        tgt = tgt & ((quota[:, None] - used_q)[d.tenant[rows]] >= g[:, None] - 1e-9)
    add = xp.where(tgt, kap[None, :] * (xp.maximum(fac[None, :] + Lmax[:, None] - wind[None, :], 0.0) - imp[None, :]),
                   np.inf)
    ord_s = xp.argsort(-rem, 1)  # most expensive source first
    ord_t = xp.argsort(add, 1)  # cheapest target first
    rem_k = xp.take_along(rem, ord_s, 1)
    add_k = xp.take_along(add, ord_t, 1)
    pair = xp.isfinite(rem_k) & xp.isfinite(add_k) & (rem_k - add_k > 1e-9 * xp.maximum(rem_k, 1.0))
    if not bool(xp.any(pair)):
        return vmat, 0
    ask = xp.scatter_rows(ord_t, pair)  # target cells of the pairs, in slot space
    o = xp.argsort(rank[rows])
    rows_o, ask, pl_o, g_o = rows[o], ask[o], pl[o], g[o]
    ok = ask
    if has_q:
        ok = ok & _pl._prefix_keep_grouped(g_o, ok, d.tenant[rows_o], quota[:, None] - used_q, 1e-9, xp)
    ok = ok & _pl._prefix_keep_grouped(g_o, ok, pl_o, d.H - busy, 1e-3, xp)
    ok = ok & _pl._prefix_keep_w(Lmax[o], ok, room_w, 0.0, xp)
    # accepted targets, in pair order; each frees its paired source and takes its power level
    inv_o = xp.inv_perm_rows(o[None, :])[0]
    ok = ok[inv_o]
    ok_k = xp.take_along(ok, ord_t, 1) & pair
    nmov = int(xp.to_numpy(xp.count_nonzero(ok_k, 1)).sum())
    if nmov == 0:
        return vmat, 0
    lvl_k = xp.take_along(sub, ord_s, 1)
    freed = xp.scatter_rows(ord_s, ok_k)
    new_lvl = xp.scatter_rows(ord_t, xp.where(ok_k, lvl_k, 0))
    new_sub = xp.where(ok, new_lvl, xp.where(freed, 0, sub))
    vmat = xp.copy(vmat)
    vmat[rows] = xp.astype(new_sub, xp.i8)
    return vmat, nmov


def improve(problem: PlanProblem, xp: Ops, c: Any, pr: Any, d: Any, tb: Any, vmat: Any, pool: Any,
            rounds: int = IMPROVE_ROUNDS) -> tuple[Any, dict[str, Any], int]:
    """Rounds of :func:`shift_cells` on a valid plan, each kept only where the plan's carbon AND objective
    do not rise (evaluated exactly: moves made together can saturate the same wind); the first round that
    would raise either ends it. Every job finished (on time) before is finished (on time) after. Returns the
    plan, its evaluation and the cells moved."""
    rank = edf_rank(xp, c, d)
    wind = xp.asarray(c.wind_w, xp.f64)
    ev = _pl._evaluate_plan(problem, c, pr, vmat, pool, xp=xp, d=d)
    moved = 0
    for _ in range(rounds):  # improvement rounds
        nv, k = shift_cells(xp, c, d, tb, vmat, pool, rank, wind)
        if k == 0:
            break
        nev = _pl._evaluate_plan(problem, c, pr, nv, pool, xp=xp, d=d)
        if nev["carbon_g"] > ev["carbon_g"] * (1 + 1e-12) or nev["objective"] > ev["objective"] * (1 + 1e-12):
            break
        vmat, ev, moved = nv, nev, moved + k
    return vmat, ev, moved
