"""The last completion pass of :func:`kernels.plan` (issue 11 item 1): work the chosen plan leaves undone that
a plan can finish.

Two defects it repairs, both found by :func:`kernels.check.explain_unfinished`'s ``optimiser`` reason:

- **Room left over.** The chosen plan is often not the optimiser's own primal but a candidate built from the
  greedy witness and moved by the price search (:func:`kernels.listsched.improve`) and the power-level
  search (:mod:`kernels.powersearch`): neither places new work, so where such a plan wins on its objective
  the room it leaves (on cap-bound sites whole dirty slots, the watts above the idle floor unused) stays
  empty while jobs whose penalty is ~100x their carbon never run. The remedy is the optimiser's own
  completion (:func:`kernels.planner._finish`: list scheduling in price order, power raised, trimmed and
  placed again) run on the chosen plan.
- **Starved non-preemptible blocks.** Every construction places preemptible work first or in the same
  pass, and a non-preemptible job needs one unbroken block: once preemptible work is spread over the slots,
  no such block is left for a low-priority non-preemptible job, which then runs cut off at the horizon end or
  not at all. The remedy displaces: each unfinished non-preemptible job gets its price-order block as if no
  preemptible work ran (:func:`kernels.planner._np_blocks`: a list schedule over those rows only, every job at
  once, in another job order where the first leaves one without a whole block; in a second set of tries every
  block not yet running is placed again with them, side by side), the blocks go into the plan, the repair
  (:func:`kernels.planner._repair`, those jobs ranked before every preemptible one) drops the preemptible
  cells that no longer fit, and the completion places that work again.

Each candidate is kept only where the evaluated objective falls, inference and running non-preemptible jobs
are still served, and the plan still dominates the greedy witness job by job; the passes build valid plans
(the repair and list scheduling keep every hard rule). Pure array code on the backend (:class:`Ops`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from kernels import listsched, powersearch
from kernels import planner as _pl
from kernels.backend import Ops
from kernels.problem import PlanProblem


def _undone(c: Any, ev: dict[str, Any]) -> Any:
    """``(J,)`` host bool: jobs (not must-run, work left, released in the horizon) the plan leaves unfinished."""
    return ~np.asarray(ev["finished"], bool) & ~c.must & (c.R > 0) & (c.rel < c.T)


#: transplant rounds of :func:`carry` (each one repair and one completion on the whole plan; at 50,000 x 192
#: one does, on small family instances a second one carries a few more)
CARRY_ROUNDS = 2


def refine_budget(J: int, T: int) -> float:
    """The cells the power-level search of :func:`complete` may propose: the main search's
    (:func:`kernels.powersearch.search_budget`), scaled down once more by ``(SEARCH_BUDGET_KNEE / (J * T))^3``
    above the knee (the same on the published instances and the corpus; 5,000 x 192: 0.59M cells of 4.2M,
    10,000 x 192: 37k). At 5,000 x 192 (make_problem, loaded machine, threads off) the pass cost 9.5 s CPU of a
    22 s solve with the main search's budget; with 0.54M cells 1.7 s (three price searches cut to one as
    well), objective +0.08% (105.09 vs 105.01 Mg; without the search 105.48; round 8's start 105.51)."""
    return powersearch.search_budget(J, T) * min(1.0, powersearch.SEARCH_BUDGET_KNEE / max(J * T, 1)) ** 3


def _evaluated(problem: PlanProblem, xp: Ops, c: Any, pr: Any, d: Any, v: Any, p: Any) -> tuple[Any, dict[str, Any]]:
    """The plan's pools (-1 on rows that do not run, int32) and its evaluation."""
    p = xp.astype(xp.where(xp.any(v > 0, 1), p, -1), xp.i32)
    return p, _pl._evaluate_plan(problem, c, pr, v, p, xp=xp, d=d)


def _raise_all(c: Any, d: Any, tb: Any, vmat: Any, pool: Any, prio: Any, xp: Ops, among: Any, V: int,
               use: Any = None) -> Any:
    """:func:`kernels.planner._raise_any` (forced) once per power level while it raises a cell (``use``: as
    there)."""
    for _ in range(V - 1):  # power levels
        vmat, raised, among = _pl._raise_any(c, d, tb, vmat, pool, prio, xp, force=True, among=among, use=use)
        if not raised or among is None:
            break
    return vmat


def _over_caps(c: Any, d: Any, tb: Any, vmat: Any, pool: Any, xp: Ops) -> bool:
    """Whether the plan breaks a pool's GPUs, a slot's watts (the construction's ``room_cap``) or a tenant's
    quota: :func:`_displace`'s rebuilds keep the rows that were not placed again as they were, and the blocks
    placed again may have taken their room (such a plan is repaired before the rebuilds start from it) (:func:`kernels.planner._np_blocks` places them as if only the rows
    asking for work held any: round 24, H3, ``benchmarks.instances.extreme`` seed 200104 ran 12 GPUs in an
    8-GPU pool)."""
    busy, fac = _pl._usage(d, tb, vmat, pool, xp)
    if bool(xp.any(busy > d.H + 1e-9)) or bool(xp.any(fac > d.room_cap)):
        return True
    if not np.isfinite(c.quota).any():
        return False
    capq = xp.asarray(np.repeat(c.quota[:, None], c.T, axis=1), xp.f64)
    return bool(xp.any(_pl._quota_use(c, d, vmat > 0, xp) > capq + 1e-9))


def _displace(xp: Ops, c: Any, pr: Any, d: Any, tb: Any, vmat: Any, pool: Any, rows: Any,
              lam: Any, mu: Any, first: Any = None) -> list[tuple[Any, Any, str]]:
    """Plans with the unfinished non-preemptible jobs ``rows`` (host bool ``(J,)``) placed in price-order
    blocks as if no preemptible work ran (one list schedule over those rows, every job at once), then the
    preemptible work around them: only the cells that no longer fit dropped (those jobs ranked after every
    non-preemptible one) and placed again (``"+displace"``), or every preemptible row placed again
    (``"+rebuild"``: the room between the blocks is cut up differently, and a wide job may need that), jobs
    earliest deadline first and, where ``first`` (host bool ``(J,)``: the jobs the witness finishes) is
    given, also least slack first with those jobs before the others (so that the plan keeps them)."""
    rows_d = xp.asarray(rows)
    pre = d.preempt & ~d.must
    base = xp.astype(xp.where((pre | rows_d)[:, None], 0, vmat), xp.i8)
    bv, bp, _ = _pl._np_blocks(xp, c, d, tb, base, pool, rows_d, lam, mu)
    got = rows_d & xp.any(bv > 0, 1)
    if not bool(xp.any(got)):
        return []
    new = xp.astype(xp.where(got[:, None], bv, vmat), xp.i8)
    pool = xp.where(got, bp, pool)
    forced = d.forced
    rank = listsched.edf_rank(xp, c, d)
    # forced first, then the non-preemptible jobs (the new blocks among them), then preemptible work
    prio = xp.lexsort((rank, xp.where(forced, 0, xp.where(d.preempt, 2, 1))))
    av, ap = _pl._repair(c, d, tb, xp.copy(new), xp.copy(pool), prio, forced, xp=xp)
    out = [(*_pl._finish(xp, c, pr, d, tb, av, ap, prio, lam, mu), "+displace")]
    rv = xp.astype(xp.where(pre[:, None], 0, new), xp.i8)
    rp = xp.copy(pool)
    if _over_caps(c, d, tb, rv, rp, xp):
        rv, rp = _pl._repair(c, d, tb, rv, rp, prio, forced, xp=xp)
    out.append((*_pl._finish(xp, c, pr, d, tb, xp.copy(rv), xp.copy(rp), prio, lam, mu), "+rebuild"))
    if first is not None:  # least slack first, the jobs the witness finishes before the others, in price order
        srank = listsched.slack_rank(xp, c, d, tb, xp.asarray(first))
        sv, sp = listsched.list_schedule(xp, c, d, tb, rv, xp.copy(rp), srank, _pl._level_cost(xp, c, tb, lam, mu))
        out.append((*_pl._finish(xp, c, pr, d, tb, sv, sp, xp.argsort(srank), lam, mu), "+rebuild"))
    return out


def complete(problem: PlanProblem, xp: Ops, c: Any, pr: Any, d: Any, tb: Any, vmat: Any, pool: Any,
             ev: dict[str, Any], gev: dict[str, Any] | None, lam: Any, mu: Any, *, again: bool = True,
             meter: dict[str, float] | None = None) -> tuple[Any, Any, dict[str, Any], str]:
    """The plan ``vmat``/``pool`` (evaluation ``ev``) with the work it leaves undone placed where that lowers
    the objective (module docstring): the room left (``"+complete"``), then unfinished non-preemptible jobs
    by displacing preemptible work (:func:`_displace`, each plan moved by the price search
    :func:`kernels.listsched.improve`, and the lowest of them by the power-level search
    :func:`kernels.powersearch.refine`). ``gev``: the greedy witness's evaluation the result must still
    dominate job by job (None: no such check, no power-level search). Returns the plan, its evaluation and
    what changed it ("" where nothing did: the inputs themselves). ``again`` False: no second set of tries
    (every block placed again; :func:`kernels.powersearch.refine_starts` asks for it on its first plan only).
    ``meter``: the cells its power-level searches draw on (:func:`kernels.powersearch.refine`; refine_starts
    meters its later starts); a search that finds none left is not run."""
    if not _undone(c, ev).any():
        return vmat, pool, ev, ""
    best = (vmat, pool, ev, "")

    def evaluated(v: Any, p: Any) -> tuple[Any, dict[str, Any]]:
        return _evaluated(problem, xp, c, pr, d, v, p)

    def wins(v: Any, e: dict[str, Any]) -> bool:
        return bool(e["objective"] < best[2]["objective"] * (1 - 1e-9) and _pl._serves_forced_dev(c, d, v, xp)
                    and (gev is None or _pl._dominates_jobs(c, e, gev)))

    prio = xp.argsort(listsched.edf_rank(xp, c, d))
    pool64 = xp.astype(pool, xp.i64)  # (the passes write int64 pool indices: torch keeps the dtype it has)
    v, p = _pl._finish(xp, c, pr, d, tb, xp.copy(vmat), xp.copy(pool64), prio, lam, mu)
    p, e = evaluated(v, p)
    if wins(v, e):
        best = (v, p, e, "+complete")
    npu = _undone(c, best[2]) & ~c.preempt
    if not npu.any():
        return best
    first = None if gev is None else np.asarray(gev["finished"], bool)
    # the unfinished blocks placed beside the others as they are, and (below the knee) every block not yet
    # running placed again with them, side by side at full power: blocks the power search lowered and
    # stretched, or placed one by one, can hold the room another needs (family seeds 19, 28, 31 of
    # tests/kernels/test_complete.py: one block at 40% power for 13 slots instead of 8 at full power); the
    # second set, like the later starts, only up to powersearch.STARTS_MAX_CELLS: its displacement and search
    # cost as much as the first set's (the published summer-1500, 288k cells: 19 -> 27 s CPU, the same plan)
    knee = c.J * c.T > powersearch.SEARCH_BUDGET_KNEE
    sets = [npu]
    rows_again = npu | _pl._np_rows(c)
    if again and powersearch.several_starts(c) and (rows_again & ~npu).any():
        sets.append(rows_again)
    # per set two or three plans, each moved by the price search; past the knee only the lowest of them as
    # built (the search costs about as much as the rest of the pass: at 5,000 x 192 ~1.5 s CPU for the three)
    groups = [[(v, *evaluated(v, p), best[3] + tag)
               for v, p, tag in _displace(xp, c, pr, d, tb, best[0], xp.astype(best[1], xp.i64), rows, lam, mu, first)]
              for rows in sets]
    if knee:
        groups = [[min(g, key=lambda x: x[2]["objective"])] for g in groups if g]
    for g in groups:  # (one or two sets)
        for k, (v, p, _, tag) in enumerate(g):  # (at most three)
            v, e, _ = listsched.improve(problem, xp, c, pr, d, tb, v, p)
            g[k] = (v, p, e, tag)
    # the power-level search on the lowest of each set, dominant or not yet (levels lowered free watts that
    # finish more work), and whether or not it beats the plan before the search (a plan the search has already
    # lowered far is a high bar for an unsearched try: seed-0 corpus-62 and -85 lost their displacement once the
    # gcongest phase lowered the plan): one search a set, each costs as much as the rest of this pass (the
    # lowest set before the search is not always the lowest after it: seed-0 corpus-3, 116)
    tries = [t for g in groups for t in g]
    for g in groups:
        low = min(g, key=lambda x: x[2]["objective"], default=None)
        if gev is not None and low is not None and (meter is None or meter["left"] > 0):
            lv, lp, le, ltag = low
            tries.append(powersearch.refine(problem, xp, c, pr, d, tb, lv, lp, le, gev, ltag,
                                            budget=refine_budget(c.J, c.T), meter=meter))
    for v, p, e, tag in tries:  # (at most eight plans)
        if wins(v, e):
            best = (v, p, e, tag)
    return best


def carry(problem: PlanProblem, xp: Ops, c: Any, pr: Any, d: Any, tb: Any, vmat: Any, pool: Any,
          ev: dict[str, Any], gv: Any, gp: Any, gev: dict[str, Any], lam: Any, mu: Any, *,
          rounds: int = CARRY_ROUNDS, use: Any = None, raises: bool = True, judge: Any = None, delta: bool = False,
          rank: Any = None, keep_taken: bool = False, more: bool = False, must: bool = False
          ) -> tuple[Any, Any, dict[str, Any]] | None:
    """The plan ``vmat``/``pool`` (evaluation ``ev``) made to dominate the greedy witness (``gv``/``gp``,
    evaluation ``gev``) job by job, or None where the result does not (issue 11 item 2: past
    ``SEARCH_MAX_CELLS`` the optimiser's own plan, not a fallback, should carry the solve).

    - The few jobs the witness finishes and the plan does not, and those it runs on time and the plan late,
      take the witness's rows (and pools) whole; the repair (:func:`kernels.planner._repair`: forced rows
      first, then those jobs, then the rest, last the preemptible jobs the witness leaves unfinished, each
      group earliest deadline first) drops what no longer fits, and the completion
      (:func:`kernels.planner._finish`) places again what it can of the work dropped.
    - Where the plan still does less work in all than the witness (the witness runs at full power, so the
      jobs the horizon cuts off do more work there), the unfinished non-preemptible blocks are raised a level
      at a time where the watts allow (:func:`kernels.planner._raise_any`, as the completion raises the
      preemptible ones); failing that every preemptible row is raised where the watts allow, the cells the
      finished ones no longer need are trimmed and the completion gives the GPUs freed to unfinished work
      (the plan's jobs at lower levels held more GPU-slots than the witness's).

    Every row but those few keeps its cells wherever they fit. Array code on the whole plan: a repair and a
    completion per round (``rounds``, at most), a raise per power level; no loop over jobs or slots. ``gev``
    needs only the per-job fields and totals :func:`kernels.planner._dominates_jobs` reads (``ev`` as well;
    the plan returned where a round ran is evaluated whole). ``use``: the plan's :class:`kernels.planner._Use`
    where the caller has it (a round's completion then updates it by the rows the repair changed instead of
    summing the whole plan again). ``raises`` False: no power raises after the rounds. ``judge``: what the
    result must pass in place of dominating ``gev`` job by job (an evaluation -> bool). ``delta``: each plan
    is evaluated from ``ev`` (a whole evaluation: :func:`kernels.planner._evaluate_plan`) and the rows where it
    differs from ``vmat`` (:func:`kernels.planner._evaluate_change`: a warm carry changes few rows). ``rank``:
    :func:`kernels.listsched.edf_rank` where the caller has it. ``keep_taken``: a job taken from the witness
    keeps its row in every later round too (taken again, whether or not it is still behind), and the repair
    lowers the taken rows' power levels last, only as far as dropping the other rows' cells would not free
    the watts (``_repair``'s ``hold``: the witness runs them at full power, so the plain repair lowers them
    first and they lose the work the witness finishes them with; the family chains of
    tests/kernels/test_warm_witness.py: ticks where the plain carry moves a loss from one job to another
    round after round). ``more``: each round also takes the witness's rows of the fewest jobs both leave
    unfinished, the witness less of their work undone, that cover the plan's deficit in unfinished work
    (:func:`_fewest_short`; ranked after the jobs taken above, before the rest; with ``keep_taken`` kept
    taken in later rounds too). ``must``: ``more`` takes the jobs behind on their must-do work
    (:func:`kernels.planner._must_undone_s`) that cover the plan's deficit in must-do work."""

    def evaluated(v: Any, p: Any) -> tuple[Any, dict[str, Any]]:
        if not delta:
            return _evaluated(problem, xp, c, pr, d, v, p)
        p = xp.astype(xp.where(xp.any(v > 0, 1), p, -1), xp.i32)
        ch = xp.nonzero(xp.any(v != vmat, 1) | (p != pool))
        return p, _pl._evaluate_change(problem, c, pr, d, ev, xp.to_numpy(ch), vmat[ch], pool[ch], v[ch], p[ch], xp)

    dom = (lambda e: _pl._dominates_jobs(c, e, gev)) if judge is None else judge
    fw = np.asarray(gev["finished"], bool)
    rank = listsched.edf_rank(xp, c, d) if rank is None else rank
    prio = xp.argsort(rank)
    forced = d.forced
    last = xp.asarray(c.preempt & ~c.must & ~fw)  # the jobs whose cells give way first
    v, p, e = vmat, xp.astype(pool, xp.i64), ev
    took = np.zeros(c.J, bool)  # (keep_taken: the jobs taken so far)
    took_s = np.zeros(c.J, bool)  # (... and those taken for their work: ``more``)
    for _ in range(rounds):  # a round's repair can cost a job the witness finishes its cells
        fo = np.asarray(e["finished"], bool)
        take = ~c.must & (c.R > 0) & ((fw & ~fo) | (_pl._late(c, e) & ~_pl._late(c, gev)))
        short = _fewest_short(c, e, gev, must) & ~take if more else took_s
        if not (take | short).any() or dom(e):
            break
        if keep_taken:
            take = took = take | took
            short = took_s = (short | took_s) & ~take
        tk, sk = xp.asarray(take), xp.asarray(short)
        hold = tk if keep_taken else None
        # forced rows, the jobs taken, those taken for their work, the rest, the cells that give way first
        order = xp.lexsort((rank, xp.where(forced, 0, xp.where(tk, 1, xp.where(sk, 2, xp.where(last, 4, 3))))))
        tk = tk | sk
        v0, p0 = v, xp.astype(p, xp.i64)
        v = xp.astype(xp.where(tk[:, None], gv, v), xp.i8)
        p = xp.where(tk, xp.astype(gp, xp.i64), p0)
        if use is None:
            v, p = _pl._repair(c, d, tb, v, p, order, forced, xp=xp, hold=hold)
        else:  # only the rows that can lose a cell repaired (_repair_over), the rows the round changed among them
            v, p, sel = _repair_over(c, d, tb, v, p, v0, p0, tk, order, forced, use, xp, hold)
            ch = sel[xp.nonzero(xp.any(v[sel] != v0[sel], 1) | (p[sel] != p0[sel]))]
            use = _pl._Use(xp.copy(use.busy), xp.copy(use.fac), xp.copy(use.done))
            _pl._use_swap(use, d, tb, ch, v0[ch], p0[ch], v[ch], p[ch], xp)
        v, p = _pl._finish(xp, c, pr, d, tb, v, p, prio, lam, mu, use=use)
        p, e = evaluated(v, p)
    if raises and not dom(e):
        among = xp.asarray(_undone(c, e) & ~c.preempt)  # the unfinished non-preemptible rows, raised
        if bool(xp.any(among)):
            # (the raise looks at preemptible rows only)
            v = _raise_all(c, replace(d, preempt=d.preempt | among), tb, xp.copy(v), p, prio, xp, among, pr.fv.size)
            p, e = evaluated(v, p)
    if raises and not dom(e) and bool(xp.any(xp.asarray(_undone(c, e) & c.preempt))):
        # every preemptible row raised where the watts allow (as if none were finished), the cells that
        # finished rows no longer need trimmed, and the GPUs freed given to the unfinished work
        pre = d.preempt & ~d.must
        dh = replace(d, R=xp.where(pre, d.R + d.R.max() + 1.0, d.R))
        v = _raise_all(c, dh, tb, xp.copy(v), p, prio, xp, None, pr.fv.size)
        v = _pl._trim(d, tb, v, p, xp)
        v, p = _pl._finish(xp, c, pr, d, tb, v, xp.astype(p, xp.i64), prio, lam, mu)
        p, e = evaluated(v, p)
    if not (_pl._serves_forced_dev(c, d, v, xp) and dom(e)):
        return None
    return v, p, e


def _fewest_short(c: Any, e: dict[str, Any], b: dict[str, Any], must: bool = False) -> NDArray[np.bool_]:
    """The fewest jobs of :func:`kernels.planner._short_of` (``b`` leaves less of their work undone than ``e``,
    both unfinished) whose GPU-seconds behind ``b`` add up to what ``e`` leaves undone in all beyond ``b``
    (largest first; none where ``e`` leaves no more in all): host bool ``(J,)``. ``must``: of their must-do
    work (:func:`kernels.planner._must_undone_s`), against ``e``'s deficit in must-do work."""
    short = _pl._short_of(c, e, b, must)
    deficit = (_pl._must_gpu_s(c, e) - _pl._must_gpu_s(c, b) if must
               else float(e["unfinished_gpu_s"]) - float(b["unfinished_gpu_s"]))
    if deficit <= 0 or not short.any():
        return np.zeros(c.J, bool)
    js = np.flatnonzero(short)
    gap = c.gpus[js] * (_pl._undone_of(c, e, must)[js] - _pl._undone_of(c, b, must)[js])
    o = np.argsort(-gap, kind="stable")
    n = int(np.searchsorted(np.cumsum(gap[o]), deficit)) + 1  # (the prefix that reaches the deficit)
    out = np.zeros(c.J, bool)
    out[js[o[:n]]] = True
    return out


#: :func:`_repair_over` repairs, in each column the carried rows over-fill, the lowest-priority rows whose
#: demand below them is under this many times the excess (a pure prefix repair drops those under 1x; the
#: margin leaves room for its pool moves and power lowering)
REPAIR_TAIL = 4.0


def _repair_over(c: Any, d: Any, tb: Any, v: Any, p: Any, v0: Any, p0: Any, tk: Any, order: Any, forced: Any,
                 use: Any, xp: Ops, hold: Any = None) -> tuple[Any, Any, Any]:
    """:func:`kernels.planner._repair` of the plan ``v``/``p``: the valid plan ``v0``/``p0`` (its
    :class:`kernels.planner._Use` ``use``) with the rows ``tk`` (backend bool ``(J,)``) replaced, rows in
    priority ``order``. Only those rows and the rows that run in a pool's slot, a slot or a tenant's slot that
    the replaced rows over-fill can lose a cell, and of those only the last in priority order (the repair keeps
    each column's prefix): the replaced rows and, per over-full column, the rows whose demand after them in
    that order is under ``REPAIR_TAIL`` x the excess are repaired, in the room the other rows leave (which keep
    their cells). Any such set gives a valid plan. ``hold``: as :func:`kernels.planner._repair`'s. Returns the plan and the rows repaired (backend indices).
    At 50,000 x 192 a warm carry's ~70 rows over-filled one pool's slot by 24 GPUs: ~120 of ~18,000 rows
    that run there repaired."""
    rows = xp.nonzero(tk)
    b0, f0 = _pl._rows_use(d, tb, rows, v0[rows], p0[rows], xp)
    b1, f1 = _pl._rows_use(d, tb, rows, v[rows], p[rows], xp)
    busy, fac = use.busy - b0 + b1, use.fac - f0 + f1
    quota = np.isfinite(c.quota).any()
    qcap: Any = None
    qu: Any = None
    if quota:
        qcap = xp.asarray(np.repeat(c.quota[:, None], c.T, axis=1), xp.f64)
        qu = _pl._quota_use(c, d, v > 0, xp)
    sel_m = xp.copy(tk)
    g = xp.astype(d.gpus, xp.f64)

    def tail(grp: Any, k: int | None, ex: Any, watts: bool) -> None:
        """the rows (of group ``k`` of ``grp``; every row: None) in the tail of the columns where ``ex`` > 0"""
        cols = xp.nonzero(ex > 0)
        if cols.shape[0] == 0:
            return
        rk = order if k is None else order[grp[order] == k]
        sub = v[rk][:, cols]
        dem = (xp.lookup(tb.load, xp.maximum(p[rk], 0), sub) if watts else (sub > 0)) * g[rk][:, None]
        dem = xp.where(sub > 0, dem, 0.0)
        after = xp.flip(xp.cumsum64(xp.flip(dem, 0), 0), 0) - dem  # (the demand of the rows after each)
        sel_m[rk[xp.any((dem > 0) & (after < REPAIR_TAIL * ex[cols][None, :]), 1)]] = True

    exg = xp.where(busy > d.H + 1e-3, busy - d.H, 0.0)  # (P, T): over the repair's own prefix tolerance
    for k in np.flatnonzero(xp.to_numpy(xp.any(exg > 0, 1))):  # over-full pools
        tail(p, int(k), exg[k], False)
    tail(None, None, xp.where(fac > d.room_cap - 1e-3, fac - d.room_cap + 1e-3, 0.0), True)
    if quota:
        exq = xp.where(qu > qcap + 1e-9, qu - qcap, 0.0)  # tenants without a quota never
        for k in np.flatnonzero(xp.to_numpy(xp.any(exq > 0, 1))):
            tail(d.tenant, int(k), exq[k], False)
    sel = xp.nonzero(sel_m)
    bs, fs = _pl._rows_use(d, tb, sel, v[sel], p[sel], xp)
    left = (d.H - (busy - bs), d.room_cap - fac + fs,
            qcap - (qu - _pl._quota_use(c, d, v[sel] > 0, xp, sel)) if quota else None)
    v, p = _pl._repair(c, d, tb, v, p, order[sel_m[order]], forced, xp=xp, left=left, hold=hold)
    return v, p, sel


def carry_rows(problem: PlanProblem, xp: Ops, c: Any, pr: Any, d: Any, tb: Any, vmat: Any, pool: Any,
               ev: dict[str, Any], reference: Any, lam: Any, mu: Any, *, rounds: int, raises: bool = True,
               use: Any = None) -> tuple[Any, Any, dict[str, Any], dict[str, Any]]:
    """A warm re-plan's plan ``vmat``/``pool`` (evaluation ``ev``) carried past a reference plan of which only
    the rows it asks for are read (``reference(rows)``: levels ``(n, T)`` and pools ``(n,)`` of the canonical
    jobs ``rows`` on the backend: :class:`kernels.planner._WarmReference`, the previous tick's plan). Returns
    the plan, its evaluation and what happened (``diagnostics["warm_carry"]``).

    Only jobs the plan leaves unfinished or late can be behind the reference: those rows (not must-run) are
    read and judged (``kernels.evaluate``'s work: :func:`kernels.planner._row_work`). The jobs the reference
    finishes and the plan does not, or runs on time and the plan late, take the reference's rows; the
    preemptible jobs both leave unfinished give way. One priority-order prefix pass over those rows only
    (:func:`_fit_rows`) keeps what fits beside every other row; a taken job that loses a cell and no longer
    finishes (a non-preemptible one: any cell) gets its own row back and the pass runs once more. Every other
    row is as it was; the pass is kept where fewer jobs are behind the reference. Then, with ``rounds`` and
    jobs still behind, the plan is carried (:func:`carry`, at most ``rounds`` rounds: a repair of the whole
    plan with those jobs first and a completion) past the reference where it was read and the plan elsewhere,
    kept where it dominates that job by job (``raises`` False: no power raises after the rounds, and kept
    where fewer jobs are behind and no job the plan finished (ran on time) is lost, a further round taking
    such a job's row back; past ``WARM_FULL_MAX_CELLS``, where the raises cost two more completions and
    evaluations). Either is kept only where every job the plan finished (ran on time) still is. The jobs the
    plan and the reference both leave unfinished that can finish on their own are read as if the reference
    finished them (:func:`_own_finish`); where the carry then leaves jobs behind, it runs again without them
    and the plan that leaves fewer of the reference's own jobs behind is kept. The passes and the hybrid are judged on the rows they change (:func:`_with_rows`: the
    plan's evaluation elsewhere); only the plan returned is evaluated whole. First the plan's unfinished
    non-preemptible rows are raised towards full power where the watts allow (:func:`_np_full`), and its late
    rows in their cells before the deadline, kept where the job then runs on time (:func:`_late_on_time`). ``use``: the
    plan's :class:`kernels.planner._Use` where the caller has it (read, and its ``done`` updated in place;
    otherwise summed from the plan)."""
    done = None if use is None else use.done
    use = _use_all(c, d, tb, vmat, pool, xp, busy=ev["busy_gpus"], fac=None if use is None else use.fac)
    rank_d = listsched.edf_rank(xp, c, d)
    prio = xp.argsort(rank_d)
    vmat, ev, use, n_np = _np_full(problem, xp, c, pr, d, tb, vmat, pool, ev, use, done, prio)
    vmat, ev, use, n_late = _late_on_time(problem, xp, c, pr, d, tb, vmat, pool, ev, use, done, prio)
    fo = np.asarray(ev["finished"], bool) | c.must | (c.R <= 0)
    lo = _pl._late(c, ev)
    rows = np.flatnonzero(~c.must & (c.R > 0) & (~fo | lo))
    info: dict[str, Any] = {"ran": True, "reference": "previous plan", "rows_read": int(rows.size),
                            "carried": False, "full_carry": False, "np_raised": n_np, "late_raised": n_late}
    rv, rp = reference(rows)
    work, won, need = _pl._row_work(problem, c, pr, d, rv, rp, xp, rows)
    rank = xp.to_numpy(rank_d)[rows]
    rd_all = xp.asarray(rows)
    v0, p0 = vmat[rd_all], xp.astype(pool[rd_all], xp.i32)

    def worse(e: dict[str, Any]) -> bool:  # a job the own plan finishes (runs on time) that ``e`` does not
        return bool((fo & ~np.asarray(e["finished"], bool)).any() or (~lo & _pl._late(c, e)).any())

    def past(rv: Any, rp: Any, work: NDArray[np.float64], won: NDArray[np.float64]
             ) -> tuple[Any, Any, dict[str, Any], dict[str, Any], Any]:
        """The plan carried past the reference rows ``rv``/``rp`` (their work and on-time work): the plan, its
        evaluation, what happened and how many jobs are behind a plan (an evaluation -> int)."""
        rf = _pl._done(work, need)
        rl = c.has_dl[rows] & ~_pl._done(won, need)

        def behind(e: dict[str, Any]) -> int:  # jobs the reference finishes (on time) and the plan does not
            return int(((rf & ~np.asarray(e["finished"], bool)[rows]) | (~rl & _pl._late(c, e)[rows])).sum())

        vm, pl, e0 = vmat, pool, ev
        take = (rf & ~fo[rows]) | (~rl & lo[rows])
        got: dict[str, Any] = {"jobs_behind": int(take.sum()), "jobs_behind_after": int(take.sum())}
        if not take.any():
            return vm, pl, e0, got, behind
        give = c.preempt[rows] & ~fo[rows] & ~rf & ~take  # unfinished in both: their cells give way first
        for _ in range(2):  # a second pass once the taken jobs that do not fit have their own rows back
            sel = np.flatnonzero(take | give)
            o = sel[np.lexsort((rank[sel], np.where(take[sel], 0, 1)))]  # taken jobs first, each group EDF
            od, tk = xp.asarray(o), xp.asarray(take[o])
            want = xp.astype(xp.where(tk[:, None], rv[od], v0[od]), xp.i8)
            sp = xp.where(tk, rp[od], p0[od])
            sv = _fit_rows(c, d, tb, rows[o], want, sp, _left_by(c, d, tb, vm, pl, use, xp.asarray(rows[o]), xp), xp)
            lost = xp.to_numpy(xp.any((want > 0) & (sv == 0), 1))
            w2, _, n2 = _pl._row_work(problem, c, pr, d, sv, sp, xp, rows[o])
            bad = take[o] & lost & (~_pl._done(w2, n2) | ~c.preempt[rows[o]])
            if not bad.any():
                break
            take = take & ~np.isin(np.arange(rows.size), o[bad])
        if take.any():
            sv = xp.astype(xp.where(xp.asarray(~c.preempt[rows[o]] & lost)[:, None], 0, sv), xp.i8)  # (a broken block)
            v, p = xp.copy(vm), xp.astype(xp.copy(pl), xp.i32)
            ro = xp.asarray(rows[o])
            v[ro] = sv
            p[ro] = xp.where(xp.any(sv > 0, 1), sp, -1)
            e = _changed(problem, xp, c, pr, d, e0, rows[o], v0[od], p0[od], sv, p[ro])
            after = behind(e)
            if after < got["jobs_behind"] and not worse(e) and _pl._serves_forced_dev(c, d, v, xp):
                vm, pl, e0 = v, p, e
                got.update(carried=True, jobs_taken=int(take.sum()), jobs_behind_after=after)
        if got["jobs_behind_after"] and rounds:
            # the hybrid: the reference's rows where they were read, the plan's elsewhere (judged, not
            # evaluated: it need not be a valid plan)
            hv, hp = xp.copy(vm), xp.astype(xp.copy(pl), xp.i32)
            hv[rd_all], hp[rd_all] = rv, rp
            hev = _with_rows(c, e0, rows, work, won, need)
            # (the plan's: the own one's + the pass)
            u = _pl._Use(use[0], use[1], _pl._job_work(tb, pool, vmat, xp) if done is None else xp.copy(done))
            if got.get("carried"):
                _pl._use_swap(u, d, tb, ro, v0[od], p0[od], sv, p[ro], xp)
            was = got["jobs_behind_after"]
            wc = carry(problem, xp, c, pr, d, tb, vm, pl, e0, hv, hp, hev, lam, mu, rounds=rounds, use=u,
                       raises=raises, judge=None if raises else lambda e: behind(e) < was and not worse(e),
                       delta="active_w" in e0, rank=rank_d)
            after = behind(wc[2]) if wc is not None else was
            if wc is not None and after < was and not worse(wc[2]):
                got.update(carried=True, full_carry=True, full_carry_from=was, jobs_behind_after=after)
                vm, pl, e0 = wc[0], xp.astype(wc[1], xp.i32), wc[2]
        return vm, pl, e0, got, behind

    # the jobs both leave unfinished that can finish on their own given rows that finish them (_own_finish);
    # where that carry leaves jobs behind, it is tried without those rows too and the one that leaves fewer
    # of the reference's jobs behind kept (rows that finish them can cost the carry jobs the reference finishes:
    # family chains past both limits, corpus(40, seed=5, n_jobs=(20, 40)) case 17 tick 1, 2 jobs lost)
    ov, op, ow, oo, n_own = _own_finish(problem, xp, c, pr, d, tb, vmat, pool, use, rows, ~fo[rows], rv, rp,
                                        work, won, need)
    vm, pl, e, got, _ = past(ov, op, ow, oo)
    if n_own and got["jobs_behind_after"]:
        vm2, pl2, e2, got2, behind0 = past(rv, rp, work, won)
        if behind0(e2) < behind0(e):
            vm, pl, e, got, n_own = vm2, pl2, e2, got2, 0
    info.update(got, own_finish=n_own)
    vmat, pool, ev = vm, pl, e
    if "rows_only" in ev:  # (an evaluation of the rows only: the caller's was not whole)
        pool, ev = _evaluated(problem, xp, c, pr, d, vmat, pool)
    return vmat, pool, ev, info


def _own_finish(problem: PlanProblem, xp: Ops, c: Any, pr: Any, d: Any, tb: Any, vmat: Any, pool: Any,
                use: tuple[Any, Any, Any], rows: NDArray[np.int64], unf: NDArray[np.bool_], rv: Any, rp: Any,
                work: NDArray[np.float64], won: NDArray[np.float64], need: NDArray[np.float64]
                ) -> tuple[Any, Any, NDArray[np.float64], NDArray[np.float64], int]:
    """The reference rows ``rv``/``rp`` of the jobs ``rows`` (host indices; their work, on-time work and need:
    :func:`kernels.planner._row_work`) with each preemptible job that the plan (``unf``: host bool per row) and
    the reference both leave unfinished, but that can finish on its own, given a row that finishes it: its plan
    row (pool and cells kept; a job that does not run: its eligible pool with the most GPUs) plus the fewest
    cells at full power in its free slots from its release, those where it fits beside the plan's other rows
    (pool GPUs, facility watts, its tenant's quota: ``use``, :func:`_use_all`) first, cleanest first; where its
    own levels cannot finish it in the slots left, every cell at full power. The greedy witness runs every job
    at full power in earliest-deadline order: at 50,000 x 192 (seed 1, ticks 2-3) it finished two 16-GPU jobs
    of tenant 0 that need 138-140 of the 142-146 slots from their release, which neither the plan nor the
    previous plan finished (tenant 0's quota full in the last 35 slots: the plan's quota went to small jobs that
    can run earlier). The carry (:func:`carry_rows`) then takes those rows as it takes the reference's. Returns
    the rows, their work and on-time work, and how many rows were replaced."""
    cand = unf & c.preempt[rows] & ~_pl._done(work, need)
    if not cand.any():
        return rv, rp, work, won, 0
    k = np.flatnonzero(cand)
    jr = rows[k]
    kd, jd = xp.asarray(k), xp.asarray(jr)
    T = c.T
    own = vmat[jd]  # (a row that does not run is empty: its pool is -1)
    pl = xp.to_numpy(pool[jd]).astype(np.int64)
    big = np.where(c.eligible[jr], c.H.sum(1)[None, :], -1.0).argmax(1)
    pd = xp.asarray(np.where(pl >= 0, pl, big), xp.i64)
    full = xp.astype(tb.vfull[pd], xp.i8)[:, None]  # (n, 1)
    tt = xp.arange(T)[None, :]
    ok = (tt >= d.rel[jd][:, None]) & ~d.infeas[None, :]
    free = ok & (own == 0)
    g = xp.astype(d.gpus[jd], xp.f64)[:, None]
    busy, fac, q = use
    fits = (d.H[pd] - busy[pd] >= g) & (d.room_cap[None, :] - fac[None, :]
                                        >= g * xp.astype(xp.lookup(tb.load, pd, full), xp.f64))
    if q is not None:
        qten = d.qten[jd]
        qq = xp.concatenate([xp.asarray(c.quota[:, None], xp.f64) - q, xp.full((1, T), np.inf, xp.f64)], 0)
        fits = fits & (qq[qten] >= g)
    ck = xp.astype(xp.argsort(xp.argsort(d.kappa)), xp.f64)  # (T,) the slots cleanest first
    key = xp.where(free, xp.where(fits, 0.0, float(T)) + ck[None, :], np.inf)
    wf = xp.astype(xp.lookup(tb.work, pd, full), xp.f64)[:, 0]
    nd = xp.asarray(need[k], xp.f64)
    k_own = xp.ceil(xp.maximum(nd - _pl._job_work(tb, pd, own, xp), 0.0) / wf - 1e-9)
    n_free = xp.astype(xp.count_nonzero(free, 1), xp.f64)
    at_own = k_own <= n_free
    # (too few slots at its own levels: every cell at full power, its own cells first)
    k_all = xp.ceil(nd / wf - 1e-9) - xp.astype(xp.count_nonzero(ok & (own > 0), 1), xp.f64)
    add = _pl._smallest_k(xp, key, xp.where(at_own, k_own, xp.maximum(k_all, 0.0))) & free
    new = xp.astype(xp.where(add, full, xp.where(at_own[:, None], own, xp.where(own > 0, full, 0))), xp.i8)
    w2, o2, _ = _pl._row_work(problem, c, pr, d, new, pd, xp, jr)
    good = _pl._done(w2, need[k])
    if not good.any():
        return rv, rp, work, won, 0
    gd = xp.asarray(good)
    rv, rp = xp.copy(rv), xp.copy(rp)
    rv[kd] = xp.astype(xp.where(gd[:, None], new, rv[kd]), xp.i8)
    rp[kd] = xp.where(gd, xp.astype(pd, xp.i32), rp[kd])
    work, won = work.copy(), won.copy()
    work[k[good]], won[k[good]] = w2[good], o2[good]
    return rv, rp, work, won, int(good.sum())


def _np_full(problem: PlanProblem, xp: Ops, c: Any, pr: Any, d: Any, tb: Any, vmat: Any, pool: Any,
             ev: dict[str, Any], use: tuple[Any, Any, Any], done: Any, prio: Any
             ) -> tuple[Any, dict[str, Any], tuple[Any, Any, Any], int]:
    """The plan's unfinished non-preemptible rows (not must-run) raised a level at a time where the watts allow
    (:func:`_raise_all`, in place; only the steps a job still needs, cleanest slots first: the same block of
    cells at higher levels). The greedy witness runs every block at full power: at 50,000 x 192 such jobs at
    their pool's lowest level ended ~1% short of their work in the warm plan and in the previous tick's, so no
    carry took them (job 46185: 26.86 of 27.12 h). Returns the plan, its evaluation (those rows judged:
    :func:`_with_rows`), ``use`` (:func:`_use_all`, its watts updated) and how many rows gained work.
    ``done``: the plan's work per row where the caller has it (updated in place; None: summed here); ``prio``:
    the rows in :func:`kernels.listsched.edf_rank` order."""
    among = _undone(c, ev) & ~c.preempt & (np.asarray(ev["work_done_s"]) > 0)
    if not among.any():
        return vmat, ev, use, 0
    rows = np.flatnonzero(among)
    rd = xp.asarray(rows)
    if done is None:  # (only these rows are read)
        done = xp.zeros(c.J, xp.f64)
        done[rd] = _pl._job_work(tb, pool[rd], vmat[rd], xp)
    before = xp.copy(done[rd])
    u = _pl._Use(use[0], use[1], done)
    am = xp.asarray(among)
    old = vmat[rd]
    vmat = _raise_all(c, replace(d, preempt=d.preempt | am), tb, vmat, pool, prio, xp, am, pr.fv.size, use=u)
    gained = int(xp.to_numpy(xp.sum(xp.astype(u.done[rd] > before, xp.i64))))
    if not gained:
        return vmat, ev, use, 0
    ev = _changed(problem, xp, c, pr, d, ev, rows, old, pool[rd], vmat[rd], pool[rd])
    return vmat, ev, (use[0], u.fac, use[2]), gained


def _late_on_time(problem: PlanProblem, xp: Ops, c: Any, pr: Any, d: Any, tb: Any, vmat: Any, pool: Any,
                  ev: dict[str, Any], use: tuple[Any, Any, Any], done: Any, prio: Any
                  ) -> tuple[Any, dict[str, Any], tuple[Any, Any, Any], int]:
    """The plan's late rows (not must-run, some work before the deadline) raised a level at a time where the
    watts allow in their cells before the deadline (:func:`_raise_all`, forced: only the steps a job still
    needs by its deadline, cleanest slots first); a row that then does all its work on time drops its cells
    at and past the deadline (the watts and GPUs freed), every other row keeps its old levels (the raise only
    lifts levels in the same cells, so any subset of rows taken back is valid). The greedy witness runs every
    job at full power: at 50,000 x 192 the third warm tick ran 181 jobs late that the greedy runs on time,
    156 of them preemptible, all finished, at a mean power fraction of 0.60 (the greedy 1.0), ~93% of their
    work done by the deadline (deadlines 1-11 slots ahead). Returns the plan, its evaluation (:func:`_changed`),
    ``use`` (:func:`_use_all`, busy and watts updated) and how many rows now run on time. ``done``: the
    plan's work per row where the caller has it (updated in place; None: not kept); ``prio``: the rows in
    :func:`kernels.listsched.edf_rank` order."""
    late = _pl._late(c, ev) & ~c.must & (np.asarray(ev["work_on_time_s"], np.float64) > 0)
    if not late.any():
        return vmat, ev, use, 0
    rows = np.flatnonzero(late)
    rd = xp.asarray(rows)
    old = vmat[rd]
    pl = pool[rd]
    on = xp.arange(c.T)[None, :] < d.dl_raw[rd][:, None]
    vmat[rd] = xp.astype(xp.where(on, old, 0), xp.i8)  # (the raise sees the on-time cells only)
    won = xp.zeros(c.J, xp.f64)  # work on time (the late rows'; the raise reads no other row)
    won[rd] = _pl._job_work(tb, pl, vmat[rd], xp)
    # (the watts of the late cells stay counted: the room the raise sees is the plan's own)
    u = _pl._Use(use[0], use[1], won)
    am = xp.asarray(late)
    vmat = _raise_all(c, replace(d, preempt=d.preempt | am), tb, vmat, pool, prio, xp, am, pr.fv.size, use=u)
    need = np.asarray(ev["need_s"], np.float64)[rows]
    ok = _pl._done(xp.to_numpy(u.done[rd]), need)
    new = xp.astype(xp.where(xp.asarray(ok)[:, None], vmat[rd], old), xp.i8)
    vmat[rd] = new
    if not ok.any():
        return vmat, ev, use, 0
    k = xp.asarray(np.flatnonzero(ok))
    old, new, pl = old[k], new[k], pl[k]
    b = _pl._Use(use[0], use[1], xp.zeros(c.J, xp.f64) if done is None else done)
    _pl._use_swap(b, d, tb, rd[k], old, pl, new, pl, xp)
    ev = _changed(problem, xp, c, pr, d, ev, rows[ok], old, pl, new, pl)
    q = use[2]  # (cells dropped: the tenants' GPUs freed)
    if q is not None:
        q = q - _pl._quota_use(c, d, old > 0, xp, rd[k]) + _pl._quota_use(c, d, new > 0, xp, rd[k])
    return vmat, ev, (b.busy, b.fac, q), int(ok.sum())


def _changed(problem: PlanProblem, xp: Ops, c: Any, pr: Any, d: Any, ev: dict[str, Any], rows: NDArray[np.int64],
             old: Any, old_pool: Any, new: Any, new_pool: Any) -> dict[str, Any]:
    """The evaluation of the plan that ``ev`` evaluates with the rows of the jobs ``rows`` (host indices) changed
    from ``old`` to ``new``: whole (:func:`kernels.planner._evaluate_change`) where ``ev`` is, else those rows
    judged (:func:`_with_rows`)."""
    if "active_w" in ev:
        return _pl._evaluate_change(problem, c, pr, d, ev, rows, old, old_pool, new, new_pool, xp)
    return _with_rows(c, ev, rows, *_pl._row_work(problem, c, pr, d, new, new_pool, xp, rows))


def _with_rows(c: Any, ev: dict[str, Any], rows: NDArray[np.int64], work: NDArray[np.float64],
               won: NDArray[np.float64], need: NDArray[np.float64]) -> dict[str, Any]:
    """The evaluation ``ev`` of a plan with the rows of the jobs ``rows`` replaced by rows whose work, work on
    time and need (:func:`kernels.planner._row_work`) are ``work``, ``won``, ``need``: the per-job fields and
    the unfinished work that the domination tests read (:func:`kernels.planner._dominates_jobs`); the
    objective and carbon are not known (inf: a carbon comparison never fails against it)."""
    w, o, n = (np.array(ev[k], np.float64) for k in ("work_done_s", "work_on_time_s", "need_s"))
    w[rows], o[rows], n[rows] = work, won, need
    return {"rows_only": True, "objective": np.inf, "carbon_g": np.inf, "work_done_s": w, "work_on_time_s": o,
            "need_s": n, "finished": _pl._done(w, n), "unfinished_gpu_s": _pl._unfinished_gpu_s(c, w, n)}


def _use_all(c: Any, d: Any, tb: Any, vmat: Any, pool: Any, xp: Ops, busy: Any = None, fac: Any = None
             ) -> tuple[Any, Any, Any]:
    """The plan's busy GPUs ``(P, T)`` (``busy``: the plan's evaluation's ``busy_gpus``, where the caller has
    it), facility watts ``(T,)`` (``fac``: the same) and tenant GPUs ``(NQ, T)`` (None where no tenant has a
    quota)."""
    if busy is None:
        busy, fac = _pl._usage(d, tb, vmat, pool, xp)
    else:
        busy, fac = xp.asarray(busy, xp.f64), _pl._fac(d, tb, vmat, pool, xp) if fac is None else fac
    q = _pl._quota_use(c, d, vmat > 0, xp) if np.isfinite(c.quota).any() else None
    return busy, fac, q


def _left_by(c: Any, d: Any, tb: Any, vmat: Any, pool: Any, use: tuple[Any, Any, Any], rows: Any, xp: Ops
             ) -> tuple[Any, Any, Any]:
    """The room the plan's rows other than ``rows`` (backend indices) leave (``use``: :func:`_use_all`): free
    GPUs ``(P, T)``, facility watts under the construction's cap ``(T,)``, tenant quota ``(NQ, T)``."""
    busy, fac, q = use
    b0, f0 = _pl._rows_use(d, tb, rows, vmat[rows], pool[rows], xp)
    quota = None
    if q is not None:
        used = q - _pl._quota_use(c, d, vmat[rows] > 0, xp, rows)
        quota = xp.asarray(np.repeat(c.quota[:, None], c.T, axis=1), xp.f64) - used
    return d.H - (busy - b0), d.room_cap - (fac - f0), quota


def _fit_rows(c: Any, d: Any, tb: Any, rows: Any, sv: Any, sp: Any, left: tuple[Any, Any, Any], xp: Ops) -> Any:
    """The plan rows ``sv`` (pools ``sp``) of the jobs ``rows`` (host indices, in priority order): the cells
    that fit, in that order, in the room ``left`` (:func:`_left_by`): pool GPUs, then facility watts, then
    tenant quotas, :func:`kernels.planner._repair`'s prefix rules (without its pool moves and power lowering)."""
    gpus, room_w, quota = left
    rd = xp.asarray(rows)
    g = d.gpus[rd]
    run = sv > 0
    run = run & _pl._prefix_keep_grouped(g, run, sp, gpus, 1e-3, xp)
    # (rows without a pool, -1, run no cell: numpy's lookup leaves them unset, so they are read in pool 0)
    lds = xp.where(run, xp.lookup(tb.load, xp.maximum(sp, 0), sv) * xp.astype(g, xp.f32)[:, None], 0.0)
    run = run & _pl._prefix_keep(lds, room_w, 0.0, xp)
    if quota is not None:  # every tenant's prefix at once
        run = run & _pl._prefix_keep_grouped(g, run, d.tenant[rd], quota, 1e-9, xp)
    return xp.astype(xp.where(run, sv, 0), xp.i8)
