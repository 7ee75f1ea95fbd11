"""Vectorised list scheduling: the completion pass of the optimiser's plan and the EDF greedy witness.

One mechanism, two orders (:func:`list_schedule`). Rounds: every job that still lacks work proposes, in each
pool it may use (every (pool, job) pair in one batch), the slots it needs at one power level against the
residual capacity (free pool GPUs, facility watts under both caps, tenant quota, free slots after its
release, outside the infeasible slots): a preemptible job its cheapest feasible slots in the caller's slot
order (on-time slots before late ones), a non-preemptible one the cheapest feasible single block (one that
finishes before one that is cut off by the horizon end, on time before late; a running one starts now in
its pool). Each job keeps the pool whose proposal misses fewest slots, then is latest least, then costs
least (the first such pool). The proposals
are accepted in the caller's job order by prefix sums (tenant quotas, pool GPUs, facility watts; a
non-preemptible block all or nothing). A cell rejected in a round still counted in the prefix sums of
later rows, so acceptance is conservative and never overfills a slot; the next round proposes again.

- The optimiser (:func:`kernels.planner._primal`) runs it after its price-driven repair and fill, with
  slots in order of the dual prices (``lam * watts + mu``) and jobs earliest deadline first: whatever the
  prices leave undone is placed if there is room for it anywhere.
- :func:`greedy_plan` runs it from an empty plan (inference and running non-preemptible jobs first) with
  slots in order of grid carbon intensity ("greenest first") and jobs earliest deadline first, at full
  power: the witness that ``kernels.plan`` must dominate. Where that leaves inference unserved or a running
  non-preemptible job stopped, it tries again with the running blocks (where any is kept) placed with the
  inference in its packing pool, repaired together (their levels lowered where both do not fit at full power).

- :func:`slack_rank`: another job order (least slack first, non-preemptible and wider first on ties) for the
  optimiser's own list schedules in price order, where the greedy leaves work undone.
- :func:`improve` / :func:`shift_cells`: a price-order local search on a valid plan: each preemptible job's
  dearest slots move to its cheapest free ones that hold it, at the same power level and never past its
  deadline, so every job finished (on time) stays finished (on time); a round is kept only where the exact
  carbon and objective do not rise. ``kernels.plan`` runs it where the witness runs (``plan``'s docstring).

Costs are put on a 2^-30 grid of their magnitude first (:func:`_grid`): sums of them are exact, so ties
between equal-cost slots break the same way on every backend.

No Python loop over jobs or slots: loops run over rounds and acceptance passes (over pools only on large
tables, :data:`BY_POOL_MIN_CELLS`).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np

from kernels import planner as _pl
from kernels.backend import Ops, get_ops
from kernels.check import full_level_pools
from kernels.problem import PlanProblem, PlanResult

#: key added per late slot (every on-time choice first) and per slot a proposal misses (complete first)
_LATE = 1e12
_SHORT = 1e15
ROUNDS = 12  # at most this many list-scheduling rounds per completion call (each stops when nothing is placed)
ACCEPT_PASSES = 3  # prefix-sum acceptance passes per round
GREEDY_ROUNDS = 48  # the greedy places every job from an empty plan: more rounds
#: :func:`greedy_vmat`'s second try also where no running block is kept (none, or every one displaced: slot 0
#: cannot hold it, kernels.check.running_blocks): the inference moved to its packing pool (``_Clean.mpack``) and
#: repaired with nothing before it. Round 26, H2: with slot 0's cap below every running block's lowest level (the
#: blocks displaced, planned again from slot 1 as queued non-preemptible jobs) the first try, the inference in its
#: first eligible pool, left it unserved and the witness refused 10 of test_np_levels' 40 (``slot0_cap``)
GREEDY_RETRY_WITHOUT_BLOCKS = True
#: :func:`_first_k` counts a mask's true cells with one running count (int64) up to this many ``(n, T)`` cells,
#: with :meth:`Ops.count_upto` above (its byte count and word paths: fewer bytes, a higher fixed cost). Round 20,
#: H1, process CPU on random masks (/tmp/h1/micro.py): 16 x 24 6.2 vs 17.5 us, 64 x 32 9.6 vs 17.1 us,
#: 400 x 32 39.1 vs 46.8 us, 2,000 x 96 351 vs 244 us
FIRST_K_CUMSUM_MAX_CELLS = 8_192
#: :func:`_accept` sums its prefixes by products with ``(n, n)`` 0/1 matrices up to this many ``n * n * T``
#: (row, row, slot) cells, by the planner's prefix sums above (no n^2 table). Round 20, H1, process CPU of the
#: pools' and the watts' prefixes over 4 pools, matrix vs planner (/tmp/h1/micro_acc.py): 8 x 24 25 vs 50 us,
#: 32 x 32 21 vs 70 us, 64 x 96 68 vs 234 us, 128 x 96 222 vs 358 us, 128 x 192 367 vs 494 us; 256 x 48 557 vs
#: 397 us, 256 x 192 1,876 vs 920 us
ACCEPT_MATRIX_MAX_CELLS = 2_097_152
#: :class:`_Slots` puts ``(K, T)`` rows in their pools' slot orders and sums their costs for all pools at once below
#: this many cells (a few calls), pool by pool from it (one pass over the rows instead of one per pool). Round 20,
#: H1, process CPU of the cost sums, at once vs by pool (/tmp/h1/micro_spent.py): 20 x 24 4.0 vs 20.8 us, 60 x 32
#: 6.2 vs 30.7 us, 2,000 x 96 224 vs 137 us, 7,400 x 192 5,187 vs 1,074 us
BY_POOL_MIN_CELLS = 32_768
#: :func:`list_schedule` tests a slot's room once per row up to this many ``J * T * P`` cells, once per distinct
#: GPU count above (:class:`_Counts`: a unique of the counts per call, a gather per round). Round 20, H1, process
#: CPU on random rooms, half the jobs asking, 4 pools, per row vs per count (its unique, then a round)
#: (/tmp/h1/micro_room.py): 32 x 32 8.3 vs 19.3 (8.0) us, 100 x 96 27.0 vs 23.3 (15.0) us, 300 x 96 79.5 vs
#: 36.0 (14.8) us, 5,000 x 192 2,904 vs 291 (136) us; a call runs ~2.5 rounds on the corpus
ROOM_PER_ROW_MAX_CELLS = 16_384


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
    k = _Slots(xp, c, tb, _grid(xp, cost), lowest)
    tt = k.tt
    has_q = bool(np.isfinite(c.quota).any())
    quota = xp.asarray(c.quota, xp.f64)
    # the jobs' distinct GPU counts (a handful): a slot's room is tested once per count, not once per row (on
    # small instances once per row: no unique to find)
    counts = _Counts(xp, d, k) if c.J * c.T * c.P > ROOM_PER_ROW_MAX_CELLS else None
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
    need_move = d.R + d.loss
    may = ~d.must & (d.R > 0) & (d.rel < T)  # rows that may lack work
    may_late = d.preempt & ~d.must & d.has_dl  # ... and those that may lack on-time work
    for _ in range(rounds):  # rounds
        # (d.R + 0.0 where it stays; and for a running non-preemptible row whose block a later slot's GPUs or cap
        # cuts, kernels.check.running_blocks: it can only start now in its pool, where it stays)
        need = xp.where((pool == d.rpool) & ((vmat[:, 0] > 0) | (~d.preempt & (d.npend < T))), d.R, need_move)
        lack = need * (1 - 1e-7) - 1e-6
        # a preemptible job that finishes but late asks for on-time slots (its late tail is trimmed after)
        short = (may & xp.where(d.preempt, done < lack, ~runs)) | (may_late & runs & (done_on < lack))
        rows = xp.nonzero(short & ~dead)
        n = rows.shape[0]
        if n == 0:
            break
        g = d.gpus[rows]
        rel = d.rel[rows]
        rp = d.rpool[rows]
        # a row that runs keeps its pool (a running job placed in another pool by a pass before this one
        # stays there: its cells are counted in that pool), one that does not yet runs where it runs now
        # (none: a negative pool)
        fixed = xp.where(runs[rows], pool[rows], rp)
        free = (vmat[rows] == 0) & (tt >= rel[:, None]) & feasible_slot[None, :]
        room_w = d.room_cap - fac
        if used_q is not None:  # rows of tenants with a quota (the others have infinite room)
            qr = xp.nonzero(d.qten[rows] < c.quota.size)
            if qr.shape[0]:
                free[qr] = free[qr] & ((quota[:, None] - used_q)[d.tenant[rows[qr]]] >= g[qr][:, None] - 1e-9)
        # (P, n): the pools each row may use (eligible, its fixed pool if any, work at the level)
        okp = d.eligible[rows].T & ((fixed < 0)[None, :] | (fixed[None, :] == k.pools)) & k.wpos
        # (P, n, T): pool GPUs and facility watts left in each slot for each row
        room = _room(xp, k, d.H - busy, room_w, g) if counts is None else counts.room(d.H - busy, room_w, rows)
        feas = free[None] & okp[:, :, None] & room
        if not bool(xp.any(feas)):  # no row has a feasible cell in any pool: none proposes (all would be dead)
            break
        dl = d.dl[rows]
        npre = ~d.preempt[rows]
        deficit = need[rows] - done[rows]
        deficit_on = xp.where(d.has_dl[rows], need[rows] - done_on[rows], 0.0)
        nslots = xp.maximum(xp.ceil(deficit[None, :] / k.wdiv - 1e-9), 0.0)  # (P, n)
        n_on_want = xp.maximum(nslots, xp.ceil(deficit_on[None, :] / k.wdiv - 1e-9))
        key, prop = _proposals(xp, k, feas, okp, nslots, n_on_want, dl, npre, rel, rp, d.npend[rows])
        # each row's best pool: the first of the least key (a key that is not below inf never wins)
        key = xp.where(okp & (key < np.inf), key, np.inf)
        bp = xp.argmin(key, 0)
        ar = xp.arange(n)
        fin = xp.isfinite(key[bp, ar])
        dead[rows[~fin]] = True
        sel = xp.nonzero(fin)
        if sel.shape[0] == 0:
            break
        sel = sel[xp.argsort(rank[rows[sel]])]
        rs, pl = rows[sel], bp[sel]
        prop = prop[pl * n + sel]
        gs = g[sel]
        lvl = k.lv[pl]
        ldr = k.ld[pl] * gs
        ok = _accept(xp, c, d, P, rs, pl, gs, ldr, prop, quota, used_q, d.H - busy, room_w)
        # preemptible rows keep the cheapest accepted cells they need (on-time first): the rest is freed
        pre_s = ~npre[sel]
        ok = _keep_cheapest(xp, k, ok, pre_s, pl, dl[sel], n_on_want[pl, sel], nslots[pl, sel])
        whole = xp.all(ok == prop, 1)
        ok = ok & (whole | pre_s)[:, None]
        got = xp.any(ok, 1)
        if not bool(xp.any(got)):
            break
        vmat[rs] = xp.where(ok, xp.astype(lvl, xp.i8)[:, None], vmat[rs])
        pool[rs] = xp.astype(xp.where(got, pl, pool[rs]), pool.dtype)
        # what this round placed, added to the usage, the tenants' GPUs and the jobs' work
        busy = busy + xp.group_rowsum(pl, P, gs, ok)
        fac = fac + xp.rowsum_w(ldr, ok)
        if used_q is not None:
            used_q = used_q + _pl._quota_use(c, d, ok, xp, rs, gs)
        wr = k.w[pl]
        done[rs] = done[rs] + xp.astype(xp.count_nonzero(ok, 1), xp.f64) * wr
        done_on[rs] = done_on[rs] + xp.astype(xp.count_nonzero(ok & (tt < dl[sel][:, None]), 1), xp.f64) * wr
        runs[rs] = runs[rs] | got
    out = _pl._Use(busy, fac, done) if use is not None else None
    if bool(xp.any(d.has_dl)):
        # late tails that on-time slots made unneeded (``done``: kept up to date by every round)
        vmat = _pl._trim(d, tb, vmat, pool, xp, done=done, use=out)
    if use is not None and out is not None:
        use.busy, use.fac, use.done = out.busy, out.fac, out.done
    return vmat, pool


def _room(xp: Ops, k: Any, left: Any, room_w: Any, g: Any) -> Any:
    """``(P, n, T)``: pool GPUs ``left : (P, T)`` and facility watts ``room_w : (T,)`` hold a row of ``g`` GPUs at
    the proposal level (per row; :class:`_Counts` per distinct count)."""
    return (left[:, None, :] >= (g - 1e-6)[None, :, None]) & (room_w[None, None, :] >= (k.ld[:, None] * g)[:, :, None])


class _Counts:
    """The jobs' distinct GPU counts (a handful): :func:`_room` once per count, then taken per row."""

    def __init__(self, xp: Ops, d: Any, k: Any) -> None:
        g_u, g_inv = np.unique(xp.to_numpy(d.gpus), return_inverse=True)
        self.xp, self.k = xp, k
        self.g, self.inv = xp.asarray(g_u, xp.f64), xp.asarray(g_inv.reshape(-1), xp.i64)

    def room(self, left: Any, room_w: Any, rows: Any) -> Any:
        return _room(self.xp, self.k, left, room_w, self.g)[:, self.inv[rows]]


class _Slots:
    """What :func:`list_schedule` keeps for a whole call (the cost is the same every round): per pool the
    proposal level ``lv``, its work ``w`` and facility watts ``ld`` per GPU-slot (float64), the pools with
    work there ``wpos : (P, 1)`` and the work to divide by ``wdiv : (P, 1)`` (1 where none: those pools
    propose nothing), each pool's slot order ``ords : (P, T)`` and the costs in that order ``cs``; on first
    use (a call may need none of them) the order's inverse ``invs()``, the cost prefix sums ``ccs() : (P, T +
    1)`` and the late cells ``late() : (P, T + 1, T)`` (``[p, dl]``: the cells at or past a deadline ``dl``, in
    pool ``p``'s slot order)."""

    def __init__(self, xp: Ops, c: Any, tb: Any, cost: Any, lowest: bool) -> None:
        P, T = c.P, c.T
        self.xp, self.cost = xp, cost
        self.first_closed = _pl._first_infeasible(c)  # a running non-preemptible block may end before it
        self.tt = xp.arange(T)[None, :]
        self.pools = xp.arange(P)[:, None]
        self.lv = xp.astype(tb.vmin if lowest else tb.vfull, xp.i64)
        at = (xp.arange(P), self.lv)
        self.w = xp.astype(tb.work[at], xp.f64)
        self.ld = xp.astype(tb.load[at], xp.f64)
        self.wpos = (self.w > 0)[:, None]
        self.wdiv = xp.where(self.w > 0, self.w, 1.0)[:, None]
        self.ords = xp.argsort(cost, 1)
        self.cs = xp.take_along(cost, self.ords, 1)
        self._invs: Any = None
        self._ccs: Any = None
        self._late: Any = None

    def invs(self) -> Any:
        if self._invs is None:
            self._invs = self.xp.argsort(self.ords, 1)
        return self._invs

    def ccs(self) -> Any:
        if self._ccs is None:
            xp = self.xp
            self._ccs = xp.concatenate([xp.zeros((self.cost.shape[0], 1), xp.f64), xp.cumsum(self.cost, 1)], 1)
        return self._ccs

    def late(self, pp: Any, dl: Any) -> Any:
        """``(K, T)``: the cells at or past the deadline ``dl[k]`` (clipped to ``0..T``) in pool ``pp[k]``'s slot
        order (one lookup in the table of every pool and deadline: no ``(K, T)`` index array)."""
        xp = self.xp
        T = self.ords.shape[1]
        if self._late is None:
            self._late = self.ords[:, None, :] >= xp.arange(T + 1)[None, :, None]
        return self._late[pp, xp.minimum(xp.maximum(dl, 0), T)]

    def in_order(self, m: Any, pp: Any, back: bool = False) -> Any:
        """The rows of the mask ``m : (K, T)``, row ``k`` in pool ``pp[k]``'s slot order (``back``: from it to
        slot order). Up to ``BY_POOL_MIN_CELLS`` ``(K, T)`` cells every pool's order taken by columns, then
        each row's own (no ``(K, T)`` index array); above, each pool's rows by their pool's order."""
        xp = self.xp
        o = self.invs() if back else self.ords
        K, T = m.shape
        if K * T < BY_POOL_MIN_CELLS:
            return xp.take_cols(m, o.reshape(-1)).reshape(K, o.shape[0], T)[xp.arange(K), pp]
        out = xp.zeros(m.shape, xp.bool_)
        for p, rows in self.by_pool(pp):  # pools
            out[rows] = xp.take_cols(m[rows], o[p])
        return out

    def spent(self, tp: Any, pp: Any) -> Any:
        """``(K,)`` float64: the cost of the cells ``tp : (K, T)`` (in pool ``pp[k]``'s slot order) at their
        pool's costs. The costs are on a 2^-30 grid (:func:`_grid`): every sum of them is exact, in any order
        (products with the mask, as the planner's ``mask_matmul``: a cost that is not finite makes the
        sum NaN whether taken or not). Up to ``BY_POOL_MIN_CELLS`` one product, above it one per pool."""
        xp = self.xp
        if tp.shape[0] * tp.shape[1] < BY_POOL_MIN_CELLS:
            return xp.sum(xp.astype(tp, xp.f64) * self.cs[pp], 1)
        out = xp.zeros(tp.shape[0], xp.f64)
        for p, rows in self.by_pool(pp):  # pools
            out[rows] = xp.mask_matmul(tp[rows], self.cs[p][:, None])[:, 0]
        return out

    def by_pool(self, pp: Any) -> list[tuple[int, Any]]:
        """``(pool, rows)`` of every pool that ``pp`` names."""
        out = []
        for p in range(self.ords.shape[0]):  # pools
            rows = self.xp.nonzero(pp == p)
            if rows.shape[0]:
                out.append((p, rows))
        return out


def _proposals(xp: Ops, k: _Slots, feas: Any, okp: Any, nslots: Any, n_on_want: Any, dl: Any, npre: Any,
               rel: Any, rp: Any, npend: Any) -> tuple[Any, Any]:
    """Every row's proposal in every pool it may use (``okp : (P, n)``; ``feas : (P, n, T)`` its feasible
    cells there), all (pool, row) pairs at once: ``(P, n)`` keys (slots missed, late, cost; inf: none) and
    the ``(P * n, T)`` cells (pair ``p * n + i``). A preemptible row proposes every feasible cell
    (acceptance trims to the cheapest ones it needs), a non-preemptible one its cheapest block
    (:func:`_block_keys`)."""
    Pn, n, T = feas.shape
    cells = feas.reshape(Pn * n, T)
    key = xp.full((Pn * n,), np.inf, xp.f64)
    pair = xp.nonzero(okp.reshape(Pn * n))
    if pair.shape[0] == 0:
        return key.reshape(Pn, n), cells
    ns, nw = nslots.reshape(Pn * n), n_on_want.reshape(Pn * n)
    if bool(xp.any(npre)):
        blocks = npre[pair % n]
        bp, pair = pair[blocks], pair[~blocks]
        if bp.shape[0]:  # (non-preemptible rows asking may have no pool they may use: no block to key)
            pb, ib = bp // n, bp % n
            start_ok = (k.tt >= rel[ib][:, None]) & ((rp[ib] < 0)[:, None] | (k.tt == 0))  # running NP: start now
            # ... and its block may end unfinished before the first closed slot (as the planner's, _np_windows)
            lim = xp.where(rp[ib] >= 0, xp.minimum(npend[ib], k.first_closed), T)  # (a later cut: npend)
            key[bp], cells[bp] = _block_keys(xp, k, cells[bp], pb, ns[bp], dl[ib], start_ok, lim)
    if pair.shape[0]:
        key[pair] = _pick_keys(xp, k, cells, pair, pair // n, ns[pair], nw[pair], dl[pair % n])
    return key.reshape(Pn, n), cells


def _pick_keys(xp: Ops, k: _Slots, cells: Any, pair: Any, pp: Any, ns: Any, nw: Any, dl: Any) -> Any:
    """Keys of preemptible rows' (pool, row) pairs ``pair`` (rows of ``cells : (P * n, T)``; ``pp``: their
    pools): the first feasible cells in the pool's slot order, on-time ones before late (:func:`_pick`):
    slots short of what it needs, late ones, then their cost; inf where none is taken."""
    tp, n_late = _pick(xp, k.in_order(cells[pair], pp), k.late(pp, dl), nw, ns)
    ntake = xp.astype(xp.count_nonzero(tp, 1), xp.f64)
    spent = k.spent(tp, pp)
    kp = (xp.maximum(ns, nw) - ntake) * _SHORT + n_late * _LATE + spent
    return xp.where(ntake > 0, kp, np.inf)


def _block_keys(xp: Ops, k: _Slots, F: Any, pp: Any, nslots: Any, dl: Any, start_ok: Any,
                lim: Any = None) -> tuple[Any, Any]:
    """Keys and cells of non-preemptible rows' (pool, row) pairs (``F : (m, T)`` their feasible cells, ``pp``
    their pools): the cheapest feasible single block (cut off at the horizon end, or at ``lim : (m,)`` where
    given), by slots it misses past the end, then late, then cost."""
    m, T = F.shape
    tt = k.tt
    nb = xp.astype(nslots, xp.i64)[:, None]
    cb = xp.concatenate([xp.zeros((m, 1), xp.i32), xp.cumsum(xp.astype(~F, xp.i32), 1)], 1)
    stop = tt + nb  # (m, T) where a block started in each slot ends (past T or lim: cut off)
    end = xp.minimum(stop, T) if lim is None else xp.minimum(xp.minimum(stop, lim[:, None]), T)
    clear = (xp.take_along(cb, end, 1) == cb[:, :T]) & start_ok & (nb > 0)
    # slots the block misses past the horizon end, then late, then its cost (the sum in this order)
    key = xp.astype(stop - end, xp.f64) * _SHORT
    key += xp.astype(stop > dl[:, None], xp.f64) * _LATE
    ccs = k.ccs()
    key += xp.take(ccs, end + pp[:, None] * (T + 1)) - ccs[:, :T][pp]
    key = xp.where(clear, key, np.inf)
    st = xp.argmin(key, 1)[:, None]
    kbest = xp.take_along(key, st, 1)
    blk = (tt >= st) & (tt < xp.take_along(end, st, 1)) & xp.isfinite(kbest)
    return kbest[:, 0], blk


def _accept(xp: Ops, c: Any, d: Any, P: int, rs: Any, pl: Any, gs: Any, ldr: Any, prop: Any, quota: Any,
            used_q: Any, room_g: Any, room_w: Any) -> Any:
    """The proposals ``prop`` (rows in job order) accepted by prefix sums: tenant quotas, pool GPUs
    ``room_g : (P, T)``, facility watts ``room_w : (T,)``; cells a prefix rejected retry on the room left
    (``ACCEPT_PASSES``: nothing is accepted yet in the first, so its room is the room as it is). Up to
    ``ACCEPT_MATRIX_MAX_CELLS`` (row, row, slot) cells each prefix is one product with an ``(n, n)`` matrix
    of the earlier rows' demands in the row's group (:class:`_Prefix`), above them the planner's prefix
    sums: the same sums (whole GPU counts; float32 watts times GPU counts, which float64 adds exactly in any
    order), the same limits (the room left plus the planner's tolerance)."""
    ten = d.tenant[rs]
    left_q = quota[:, None] - used_q if used_q is not None else None
    small = rs.shape[0] ** 2 * prop.shape[1] <= ACCEPT_MATRIX_MAX_CELLS
    pre = _Prefix(xp, pl, ten if left_q is not None else None, gs, ldr) if small else None
    ok = None
    ask = prop
    for _ in range(ACCEPT_PASSES):  # acceptance passes: cells a prefix rejected retry on the room left
        acc = ask
        if left_q is not None:
            lq = (left_q if ok is None else left_q - _pl._quota_use(c, d, ok, xp, rs, gs)) + 1e-9
            acc = acc & (_pl._prefix_keep_grouped(gs, acc, ten, lq, 0.0, xp) if pre is None
                         else pre.within(pre.ten, acc, lq[ten]))
        lg = (room_g if ok is None else room_g - xp.group_rowsum(pl, P, gs, ok)) + 1e-3
        acc = acc & (_pl._prefix_keep_grouped(gs, acc, pl, lg, 0.0, xp) if pre is None
                     else pre.within(pre.pool, acc, lg[pl]))
        lw = room_w if ok is None else room_w - xp.rowsum_w(ldr, ok)
        acc = acc & (_pl._prefix_keep_w(ldr, acc, lw, 0.0, xp) if pre is None
                     else pre.within(pre.watts, acc, lw[None, :]))
        ok = acc if ok is None else ok | acc
        ask = ask & ~acc
        if not bool(xp.any(acc)) or not bool(xp.any(ask)):
            break
    return ok


class _Prefix:
    """The ``(n, n)`` float64 matrices of :func:`_accept`'s prefix sums over rows in job order (row ``j``: the
    demand of each row up to ``j``, 0 elsewhere): ``watts`` (every such row's watts ``ldr``), ``pool`` (the
    GPUs ``gs`` of those in ``j``'s pool) and ``ten`` (of those of ``j``'s tenant; ``None`` without quotas)."""

    def __init__(self, xp: Ops, pl: Any, ten: Any, gs: Any, ldr: Any) -> None:
        ar = xp.arange(pl.shape[0])
        tri = ar[:, None] >= ar[None, :]
        self.xp = xp
        self.watts = xp.where(tri, ldr[None, :], 0.0)
        self.pool = xp.where(tri & (pl[:, None] == pl[None, :]), gs[None, :], 0.0)
        self.ten = None if ten is None else xp.where(tri & (ten[:, None] == ten[None, :]), gs[None, :], 0.0)

    def within(self, m: Any, mask: Any, lim: Any) -> Any:
        """``(n, T)``: where the prefix (by ``m``) of the demand where ``mask`` holds stays within ``lim``."""
        return m @ self.xp.astype(mask, self.xp.f64) <= lim


def _keep_cheapest(xp: Ops, k: _Slots, ok: Any, pre: Any, pl: Any, dl: Any, k_on: Any, k_all: Any) -> Any:
    """``ok`` with each preemptible row (``pre``) cut to its first accepted cells in its pool's slot order,
    on-time ones first (:func:`_pick`, ``k_on`` and ``k_all`` cells)."""
    ip = xp.nonzero(pre)
    if ip.shape[0] == 0:
        return ok
    every = ip.shape[0] == pre.shape[0]
    sub = ok if every else ok[ip]
    if not every:
        pl, dl, k_on, k_all = pl[ip], dl[ip], k_on[ip], k_all[ip]
    kept, _ = _pick(xp, k.in_order(sub, pl), k.late(pl, dl), k_on, k_all)
    kept = k.in_order(kept, pl, back=True)
    if every:
        return kept
    ok[ip] = kept
    return ok


def _grid(xp: Ops, cost: Any) -> Any:
    """``cost : (P, T)`` rounded to multiples of a power of two 2^-30 of its largest magnitude: every sum of
    up to 2^22 of them is then exact in float64 whatever the order, so the proposals' keys (sums of slot
    costs, prefix-sum block costs) and their ties are the same on every backend (numpy and torch add in
    different orders: last-bit differences had broken ties between equal-cost slots differently)."""
    h = xp.to_numpy(cost).astype(np.float64)
    top = float(np.abs(h).max()) if h.size else 0.0
    if not math.isfinite(top):  # (some cost is not finite: the largest finite one sets the grid)
        fin = np.isfinite(h)
        top = float(np.abs(h[fin]).max()) if fin.any() else 0.0
    if top <= 0:
        return cost
    q = 2.0 ** (math.floor(math.log2(top)) - 30)
    # in place on the host copy: the same quotients, roundings and products; a cost that is not finite
    # stays as it is (inf / q, its rounding and times q are inf again, NaN stays NaN)
    h /= q
    np.round(h, out=h)
    h *= q
    return xp.asarray(h, xp.f64)


def _pick(xp: Ops, F: Any, late: Any, k_on: Any, k_all: Any) -> tuple[Any, Any]:
    """Preemptible rows' cells from ``F : (n, T)`` (their feasible cells in a slot order; ``late``: the cells
    at or past each row's deadline, in that order): the first ``k_on`` on-time ones, then late ones up to
    ``k_all`` in all. Returns the cells taken (in that order) and how many of them are late (float64). A
    row with no late cell, or one that takes none (``k_all`` at most the on-time ones it takes), takes no
    late cell (a first-``k`` of at most 0 cells); from ``BY_POOL_MIN_CELLS`` cells the late cells are found
    only for the rows that take some (the same cells)."""
    if F.shape[0] * F.shape[1] >= BY_POOL_MIN_CELLS:
        return _pick_late_rows(xp, F, late, k_on, k_all)
    on = F & ~late
    take = _first_k(xp, on, k_on)
    k_late = k_all - xp.minimum(xp.astype(xp.count_nonzero(on, 1), xp.f64), k_on)
    tl = _first_k(xp, F & late, k_late)
    return take | tl, xp.astype(xp.count_nonzero(tl, 1), xp.f64)


def _pick_late_rows(xp: Ops, F: Any, late: Any, k_on: Any, k_all: Any) -> tuple[Any, Any]:
    """:func:`_pick` with the late cells found only for the rows that have some and take some."""
    dr = xp.nonzero(xp.any(late, 1))  # rows with late cells
    if dr.shape[0] == 0:
        return _first_k(xp, F, k_on), xp.zeros(F.shape[0], xp.f64)
    on = xp.copy(F)
    on[dr] = F[dr] & ~late[dr]
    k_late = k_all - xp.minimum(xp.astype(xp.count_nonzero(on, 1), xp.f64), k_on)
    take = _first_k(xp, on, k_on)
    n_late = xp.zeros(F.shape[0], xp.f64)
    rows = dr[xp.nonzero(k_late[dr] >= 1)]  # rows of dr that take a late cell (k_late is a whole number)
    if rows.shape[0]:
        tl = _first_k(xp, F[rows] & late[rows], k_late[rows])
        take[rows] = take[rows] | tl
        n_late[rows] = xp.astype(xp.count_nonzero(tl, 1), xp.f64)
    return take, n_late


def _first_k(xp: Ops, m: Any, k: Any) -> Any:
    """The first ``k[i]`` true cells of each row of the mask ``m : (n, T)`` (a row with at most ``k`` of them
    keeps all: its running count never passes ``k``; whole numbers ``k``, below 0: none). Up to
    ``FIRST_K_CUMSUM_MAX_CELLS`` cells the running count itself, above it :meth:`Ops.count_upto`."""
    if m.shape[0] * m.shape[1] <= FIRST_K_CUMSUM_MAX_CELLS:
        return m & (xp.cumsum(m, 1) <= k[:, None])
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
    aside = _pl._set_aside(problem, c, lambda q, _w: greedy_plan(q, backend=backend, device=device))
    if aside is not None:  # jobs left out or displaced: the others planned (as kernels.plan does)
        return aside
    perm = _pl.canonical_job_order(problem)
    if perm is not None:  # the jobs in the order kernels.plan takes them (its witness is this plan)
        problem = _pl.permute_jobs(problem, perm)
        # the checked values, in another row order (the shed order of kernels.check.inference_shed kept)
        c = replace(c, **{f: getattr(c, f)[perm] for f in _pl._CLEAN_JOB_FIELDS})
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
    vmat = xp.zeros((J, T), xp.i8)
    has_full = full_level_pools(c.lev_f, c.lev_ok)
    first = xp.argmax(d.eligible & xp.asarray(has_full)[None, :], 1)
    pool = xp.where(d.rpool >= 0, d.rpool, first)
    pin = xp.asarray(c.mpool)  # inference served in a marked slot: in the pool its served watts assume
    pool = xp.where(pin >= 0, pin, pool)
    mrow = xp.nonzero(d.must)
    if mrow.shape[0]:
        win = _pl._must_win(xp, d, mrow, T)
        vmat[mrow] = xp.astype(xp.where(win, tb.vfull[pool[mrow]][:, None], 0), xp.i8)
    rank = edf_rank(xp, c, d) if rank is None else rank
    forced = d.forced
    prio = xp.argsort(rank)
    if cost is None:
        cost = xp.asarray(np.broadcast_to(c.kappa[None, :], (c.P, T)).copy(), xp.f64)
    v0, p0 = (_pl._repair(c, d, tb, vmat, pool, prio, forced, xp=xp) if mrow.shape[0] else (vmat, pool))
    gv, gp = list_schedule(xp, c, d, tb, v0, p0, rank, cost, rounds=GREEDY_ROUNDS)
    if _pl._serves_forced_dev(c, d, gv, xp):
        return gv, gp
    blocks = _running_blocks(xp, c, d, tb)
    if blocks is None and not GREEDY_RETRY_WITHOUT_BLOCKS:
        return gv, gp
    if blocks is None:  # no running block kept: the inference alone, in its packing pool
        blocks = xp.zeros((J, T), xp.bool_)
    # the running blocks, placed after the inference at full power, found no room (or took the inference's), or the
    # inference in its first eligible pool found none: again with the blocks placed with it and first (they keep
    # their pool, the inference moves), the inference in its packing pool (``_Clean.mpack``, the most frugal that
    # holds it), so that the repair lowers the blocks' levels where both do not fit at once (planner._repair,
    # NP_LOWER_FOR_FORCED), their tails past their work trimmed (a block that stays in its pool owes no switching
    # loss), a block left broken dropped; taken where it serves the inference and the blocks
    pool = xp.where(d.must & (pin < 0), d.mpack, pool)
    vmat = xp.where(blocks | (vmat > 0), xp.astype(tb.vfull[pool], xp.i8)[:, None], 0)
    stay = xp.any(blocks, 1)
    prio = xp.lexsort((rank, xp.where(stay, 0, xp.where(forced, 1, 2))))
    fv, fp = _pl._repair(c, d, tb, vmat, pool, prio, forced, xp=xp)
    fv = _pl._trim(replace(d, loss=xp.where(stay, 0.0, d.loss)), tb, fv, fp, xp)
    fv = _pl._np_valid(c, d, tb, fv, fp, xp)
    fv, fp = list_schedule(xp, c, d, tb, fv, fp, rank, cost, rounds=GREEDY_ROUNDS)
    return (fv, fp) if _pl._serves_forced_dev(c, d, fv, xp) else (gv, gp)


def _running_blocks(xp: Ops, c: Any, d: Any, tb: Any) -> Any:
    """``(J, T)`` bool: every running non-preemptible job's (not must-run, work left) block from slot 0 in its
    pool, as long as its work needs at the pool's lowest level (the most slots it may take once the repair lowers
    it: the trim cuts what a higher level does not need), cut at the first infeasible slot or the horizon end;
    None where there is none (or slot 0 is infeasible: none must keep running)."""
    rows = (d.rpool >= 0) & ~d.preempt & ~d.must & (d.R > 0)
    if c.infeas[0] or not bool(xp.any(rows)):
        return None
    rp = xp.maximum(d.rpool, 0)
    w_low = xp.astype(tb.work[rp, xp.index(tb.vmin[rp])], xp.f64)  # (J,) work of one slot at the lowest level
    n = xp.ceil(d.R / xp.maximum(w_low, 1e-9) - 1e-9)
    tt = xp.arange(c.T)[None, :]
    return (rows[:, None] & (tt < _pl._first_infeasible(c)) & (tt < d.npend[:, None])
            & (xp.astype(tt, xp.f64) < n[:, None]))


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
