"""The vectorised carbon- and power-cap planner: Lagrangian slot prices, per-job fractional knapsacks
solved in O(1) table look-ups, a certified lower bound, and a vectorised repair.

Objective (``OBJECTIVE``; ``benchmarks.reference`` minimises exactly this, ``kernels.evaluate`` computes it)
------------------------------------------------------------------------------------------------------------
::

    objective = carbon_g + energy_cost_weight_g_per_eur * cost_eur
              + sum_{j not must_run} weight_j * gpus_j * (unfinished_s_j + late_s_j)

    carbon_g        = sum_t grid_import_w[t] * slot_h / 1000 * carbon_g_per_kwh[t]
    grid_import_w   = max(0, facility_w - wind_w)             (facility from kernels.power)
    cost_eur        = sum_t max(price_eur_per_mwh[t], 0) * grid_import_w[t] * slot_h / 1e6
    unfinished_s_j  = max(0, remaining_s_j + lost_s_j - work_s_j)        at the horizon end
    late_s_j        = max(0, remaining_s_j + lost_s_j - work_on_time_s_j) if deadline_j < T, else 0
    work_on_time_s  = work done in slots t < deadline_j;  work per slot = speed_pool(f) * slot_s
    lost_s_j        = preempt_loss_s_j if the job runs now (running_pool >= 0) and does not run in its
                      pool in slot 0, else 0 (the switching cost: work lost since the last checkpoint)

A job that runs a slot runs (and draws power for) the whole slot. ``tardiness_factor`` of PlanProblem is
not used by this objective (late work is charged through ``late_s``, i.e. an on-time GPU-second is worth
``2 * weight`` and a late one ``weight`` for a job with a deadline inside the horizon).

Method
------
1. Relax the coupling constraints of each slot with prices: ``lam[t] >= 0`` on facility watts and
   ``mu[p, t] >= 0`` on busy GPUs. The slot's own part, ``min_{F in [idle, cap]} kappa (F - wind)^+ -
   lam F``, is piecewise linear and convex: solved exactly (price 0 under the wind, ``kappa`` above it,
   more where a cap binds). ``cap = min(site_max, wind + grid_cap)``.
2. Given prices, every job is a fractional knapsack over (slot, power level, pool) choices: per GPU, a slot
   at level ``l`` in pool ``p`` gives ``speed * slot_s`` seconds of work for ``lam pue (f tdp - idle) + mu``
   grams. Per (eligibility class, slot) the best choice as a function of the job's marginal value of work
   ``a`` is the upper envelope of a few lines (one per distinct speed); a job's total work at threshold
   ``tau`` is then ``Gw[class, deadline, rank(tau)] - Gw[class, release, rank(tau)] + (late part)``, with
   ``Gw`` a (slots x breakpoints) prefix-sum table per class. Bisection on ``tau`` per job costs O(log)
   look-ups, independent of T; the dual value and the per-slot loads (the subgradient) come from the same
   tables. One dual iteration is O(E T^2 K + J log) for E classes: no (J, T) array is touched.
3. Prices move by sign-adaptive (Rprop-like) projected subgradient steps from ``lam = kappa, mu = 0``
   (small first steps, ``_STEP0``: the dual is flat near its optimum and the plan is best from prices
   near it); the iterate with the best coarse dual value (slot part AND jobs' part) is kept and its exact
   value is the certified ``lower_bound`` (any prices give a valid bound; the relaxation also drops integrality, single
   pool, contiguity, tenant quotas and switching losses, so it is below the LP relaxation too).
4. The plan (:func:`_primal`, on the same backend as the prices: every (J, T) array is made and used on the
   device, and only the finished plan comes back to the host), built in rank space and repaired price-aware:
   a. per class, the envelope steps of every slot sorted by breakpoint (ties: earliest slot) are one
      order; each job takes the shortest prefix of it (inside its window, only steps below its value of
      work) whose work covers its need (:func:`_rank_plan`): it overshoots by less than one step, where a
      threshold on the breakpoint value takes every tied step at once (hourly data: 4 slots share a price);
   b. non-preemptible jobs: the best single block at one power level (cumsum sliding windows per level,
      levels whose watts cannot fit a slot excluded); running preemptible jobs keep slot 0;
   c. one pool per job, capacity-aware (:func:`_assign_pools`): (preference, pool) groups, most
      restrictive eligibility and priority first, accepted while the pool's per-slot GPU prefix sum fits
      (jobs of a class no longer herd onto the pool that is cheapest by a hair);
   d. repair in priority order (forced, running, non-preemptible, then value density) by prefix sums that
      touch only the over-full slots (:func:`_prefix_keep`): pool GPUs (moves to the pool with most room),
      facility watts by LOWERING the power of the lowest-priority preemptible jobs, top levels first,
      before dropping anything, then, where the forced rows alone overfill a slot, the running
      non-preemptible blocks' levels (:data:`NP_LOWER_FOR_FORCED`: a block may change level, never stop, and
      inference runs at full power); tenant quotas; a non-preemptible job that loses a slot is dropped whole;
   e. fill: unfinished preemptible work takes free slots with room at its pool's lowest level (the most
      work per watt), most valuable first; raise: watts left go one level up to unfinished jobs, cleanest
      slots first, only as many steps as the job still needs and only where the work beats the carbon.
   The objective parts are computed from level counts and per-level sums (:func:`_evaluate_plan`, the
   same formulas as ``kernels.evaluate``, which the tests and the checker use independently).

No Python loop over jobs or slots: loops run over pools, power levels, iterations (per-class searches run
as one batched call, :meth:`kernels.backend.Ops.searchsorted_rows`).

Backends (``backend=``/``device=``): ``numpy`` on the CPU, or ``torch`` on ``cpu`` / ``cuda`` through
:mod:`kernels.backend` — one code path, the same algorithm and the same plan (tests/kernels/test_backend.py:
equal plans on numpy and torch-cpu; CUDA within the tolerance stated there). Torch is imported only when
asked for. The host keeps what is per class, pool or slot (the envelope, the price steps: a few KB).
"""

from __future__ import annotations

import functools
import math
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from kernels.backend import Ops, get_ops
from kernels.check import (
    FLOOR_TOL,
    displaced,
    floor_bound,
    infeasible_slots,
    inference_shed,
    levels,
    must_window,
    shed_and_blocks,
    shed_cause_names,
    unplaceable,
)
from kernels.problem import NO_DEADLINE, PlanProblem, PlanResult

IMPROVE_ROUNDS = 6  # local-search rounds (kernels.listsched.improve) per candidate where the witness runs

OBJECTIVE = (
    "carbon_g + sum_j weight_j * gpus_j * (unfinished_s_j + late_s_j) + energy_cost_weight * cost_eur, "
    "with unfinished_s_j = max(0, remaining_s_j + lost_s_j - work_s_j) at the horizon end, late_s_j the "
    "same quantity counting only work done before the deadline slot (jobs whose deadline lies inside the "
    "horizon), lost_s_j = preempt_loss_s_j when a running job does not run in its pool in slot 0, and "
    "cost_eur = sum_t max(price_t, 0) * grid_import_w_t * slot_h / 1e6"
)

_BIG = 1e30
_STEP0 = 0.0003  # first Rprop step, relative to the mean carbon price (cold start)
_LOWER_ALL = False  # in over-full slots lower every preemptible job to its lowest level (most work per watt)
#: :func:`_repair` lowers the running non-preemptible rows' power levels where the forced rows alone (must-run
#: inference, running blocks) exceed a slot's watts, before the prefix drops one of them (round 25: a running
#: block at its lowest level makes room for inference that a higher one does not; False: today's refusal)
NP_LOWER_FOR_FORCED = True
_STEP0_NU = 0.01  # first step of the tenant-quota prices (cold start; they start at 0, far from optimal)
_STEP0_WARM = 0.002  # the same from a warm start
_EPS = 1e-9
COLD_ITERS = 60  # default dual iterations of a cold solve
WARM_ITERS = 10  # default dual iterations of a warm-started re-plan (an upper limit: see WARM_PATIENCE)
WARM_PATIENCE = 2  # a warm-started ascent stops after this many iterations without a better dual value
#: ... and after this many on an instance of more than SEARCH_MAX_CELLS job-slot cells (at 50,000 x 192 the
#: second and third warm iterates were below the first on every tick measured: benchmarks/README.md, issue 11)
WARM_PATIENCE_LARGE = 1
#: a cold ascent on an instance of more than SEARCH_MAX_CELLS job-slot cells stops after this many iterations
#: without a better dual value (at 50,000 x 192 the best iterate is the 30th of 60; on the small corpus
#: instances a patience of 10 would have lost up to 1.2% of the dual value on 17 of 200: not used there)
COLD_PATIENCE = 10
#: ... and on an instance of at most COLD_PATIENCE_SMALL_MAX_CELLS cells after this many (round 29: on the seed-0
#: and seed-1 corpora of 200 the best iterate comes before such a run of 15 on 394 of 400, so they keep their prices
#: and plans, with 22% fewer dual iterations; 10 would change 26 of 400, 20 keeps 398 and saves 17%) ...
COLD_PATIENCE_SMALL = 15
#: ... (the corpus and the families: <= 1,024 cells); between it and SEARCH_MAX_CELLS the cold ascent runs all its
#: iterations (the published instances, 115k and 288k cells: with a patience of 15 nl2023-summer-1500's certified
#: bound fell 0.085% and its plan rose 0.048%, for none of its ~14 s)
COLD_PATIENCE_SMALL_MAX_CELLS = 50_000
WITNESS_MODES = ("auto", "always", "never")  # plan(witness=...)
WITNESS_EVERY_TICKS = 8  # witness="auto": a warm re-plan that leaves work undone runs it at least this often
#: ... and every tick up to this many job-slot cells (a count, not a clock; past it every WITNESS_EVERY_TICKS
#: ticks) the warm plan is compared with the witness and, where it loses a job to it (a job the greedy finishes
#: left unfinished, more late jobs), carried past it (kernels.complete.carry); where it is behind on the total
#: of unfinished work only (in the itp60 policy run: long jobs the carbon prices run slower than the greedy's
#: full power, 90 of 97 losing ticks) it is carried past it where that dominates it, kept otherwise
#: (TICK_CARRY_WORK; round 13: kept). Only a full check resets the age, so the full check and its
#: power and local searches still run every WITNESS_EVERY_TICKS ticks (round 12's version reset it on every
#: tick that dominated: the 3-day itp60 policy lost that refinement, 175.7 -> 179.1 g/GPU-h). Family warm chains
#: (40 x 3 ticks): jobs lost to the greedy 148 on 13 chains -> 8 on 4, the same itp60 policy outcome
#: (benchmarks/README.md, issue 11 round 13)
WITNESS_EVERY_TICK_MAX_CELLS = 2_000_000
#: where the carry fails on such a tick, check in full (as a cold solve) at once instead of at the next
#: WITNESS_EVERY_TICKS tick: the family's losses 8 -> 0 at 5x the warm ticks' CPU, but in the 3-day itp60 policy
#: run those checks (the last 9 ticks) cost 3 jobs done (402 vs 405) and 87 more preemptions: off by default
WITNESS_TICK_FULL = False
#: where the carry of such a tick fails (and WITNESS_TICK_FULL is off), the plan is carried again, for up to
#: this many rounds, keeping the jobs taken from the witness (``complete.carry``'s ``keep_taken``: taken again
#: every round, their full-power rows lowered last; the plain carry moved the loss from one job to another
#: round after round, or lowered the taken rows below the work the witness finishes them with), without the
#: power raises, and returned where it loses no job to the witness and leaves no more work unfinished than the
#: own plan or the witness (:func:`_keeps_jobs_and_work`; the rest of the total waits for the full check, as
#: above); 0: off. Family warm chains (40 x 3 ticks, tools famdef): jobs lost to the greedy 8 on 4 chains -> 0,
#: ticks with more late jobs 8 -> 0 (with 5 rounds too; 3 or 4: 3 jobs on 1 chain; 2: 8 on 4), warm ticks' CPU
#: unchanged (4.5-4.9 s for the 120). The 3-day itp60 policy run, TICK_CARRY_WORK off: the same
#: outcome (its 6 such ticks are not carried; returned on losing no job alone, the 5 such ticks of that run
#: did 15-66 GPU-h less work than their own plans: 409 jobs, 26,695.1 GPU-h, 175.85 g/GPU-h, 254 preemptions
#: vs 406, 26,721.8, 175.68, 256; with the power raises 412, 26,760.7, 175.83, 224)
TICK_CARRY_ROUNDS = 6
#: a tick's plan behind the witness on the total of unfinished work only (no job lost) is carried past it too
#: (``complete.carry``, returned where it then dominates the witness job by job; kept as it is otherwise, the
#: full check waiting for the age rule). The 3-day itp60 policy run: 406 -> 417 jobs done, 26,721.8 ->
#: 26,756.9 GPU-h, 175.68 -> 175.51 g/GPU-h, 256 -> 197 preemptions, no misses; family warm chains: no tick
#: changes its count (7 ticks behind the greedy on unfinished work: their carry fails), their 120 warm ticks'
#: CPU 4.7 -> 4.8-5.0 s (a carry on each such tick). In the policy run 6 of its 90 such ticks were carried
#: (and 1 of 5 by the second carry, TICK_CARRY_ROUNDS). False: kept (round 13)
TICK_CARRY_WORK = True
#: a tick's carries past the witness (TICK_CARRY_WORK, and after the carry of a tick that loses a job) also
#: take its rows of the fewest jobs both leave unfinished, the witness less of their work undone, that cover the
#: plan's deficit in unfinished work (``complete.carry``'s ``more``), again for TICK_CARRY_ROUNDS rounds keeping
#: the jobs taken where that fails. Family warm chains (40 x 3 ticks, tools famdef): ticks with more unfinished
#: work than the greedy 7 -> 3 (the rest: TICK_FALLBACK), no job lost. But in the 3-day itp60 policy run (its
#: ~90 such ticks: long low-weight jobs the prices run in the clean slots only, the greedy all the time) it
#: turns the plans towards the greedy's: 418 -> 377 jobs done, 26,800 -> 26,428 GPU-h, 175.1 -> 178.4 g/GPU-h,
#: 212 -> 341 preemptions (round 15). On 10 windows (round 16, H5, benchmarks/simulator.py --windows 10, 95fdb13):
#: jobs done 7,598 -> 7,460 (-119..+45 a window, 1 up, 3 down), g/GPU-h 387.06 -> 389.03 (up in 5 windows, by up to
#: 2.1%, down in 2), preemptions 2,833 -> 3,031, CPU +7%. Off by default
TICK_CARRY_MORE = False
#: where a tick's carries leave its plan behind the witness on the totals (unfinished work, late jobs), the
#: witness's plan is returned and ``diagnostics["witness"]["used"]`` says so (the full check instead costs ~10x
#: the tick: 1.9 vs 0.2 s CPU on family chain 500020's first warm tick). With TICK_CARRY_MORE: family chains 3
#: -> 0 ticks behind the greedy (chain 500020's 3 ticks return the greedy's plan); the itp60 policy run 361
#: jobs done, 26,110 GPU-h, 181.6 g/GPU-h, 444 preemptions (~18 such ticks). By itself on 10 windows (round 16, H5,
#: benchmarks/simulator.py --windows 10, 95fdb13): jobs done 7,598 -> 7,314 (down in 5 windows by up to 146, up in 1
#: by 4), g/GPU-h 387.06 -> 391.50 (up in 6 windows by 1.0-3.6%, down in 1 by 0.01%), preemptions 2,833 -> 3,041,
#: beyond the spread of a budget change (simulator.WINDOW_STRIDE_DAYS). Off by default
TICK_FALLBACK = False
#: a tick's plan (after the carries above) that leaves more must-do work undone than the witness
#: (:func:`_must_undone_s`: the work the horizon must hold, what a job cannot do after the horizon's end and
#: still meet its deadline) is carried past it on that work (``complete.carry``'s ``more``, ``must``); the rest
#: of its unfinished work can follow the horizon and is not judged on a warm tick (the lead's ruling, round 16).
#: Family warm chains (tools famdef, 120 ticks): ticks behind the greedy on must-do work 13 -> 0 (the 7 ticks
#: behind it on unfinished work in all, each on long jobs with a deadline at or inside the horizon's end, both
#: plans late on them; and 6 ticks ahead of it in all), ticks behind it on unfinished work 7 -> 3 (all three on
#: jobs without a deadline, each at a lower objective than the greedy's), ticks above the greedy's objective
#: 7 -> 0, CPU 28.5 -> 32.2 s (3 full checks). The itp60 policy run and the 50,000 x 192 chains: no tick of
#: theirs leaves must-do work (plan or greedy): the same plans
TICK_HOLD_MUST = True
#: where that carry fails, or leaves its plan's objective above the witness's, the tick is checked in full at
#: once (as a cold solve: the plan returned dominates the witness job by job and in totals, or is the
#: witness's, ``diagnostics["witness"]["used"]``). Family warm chains' 7 such ticks, each re-planned alone from
#: the same warm start: returning the witness's plan instead gave 4 of them its objective, the full check
#: 7-31% below it (chain 500020 ticks 1-3: 5.50 / 5.47 / 5.43 M vs the witness's 5.93 / 5.94 / 5.87 M g) at
#: ~1.2 s vs ~0.15 s CPU for such a tick. The full check judges the totals: where its plan is still behind the
#: witness on must-do work, the witness's own plan is returned
TICK_MUST_FULL = True
#: a warm tick's plan (after the carries and TICK_HOLD_MUST above) behind the witness on the totals (more
#: unfinished work or late jobs: not :func:`_dominates`) at an objective above the witness's: the work it
#: defers is not deferred for its carbon, and nothing else limits the deferral of work without a deadline (the
#: must-do rule leaves it free). Such a tick is carried past the witness's totals (``complete.carry``'s ``more``:
#: the rows of the fewest jobs behind on their work that cover the deficit; ``+carry_total``), kept where it then
#: dominates it job by job at no higher objective, otherwise checked in full at once (as ``TICK_MUST_FULL``: the
#: plan returned dominates the witness in totals, or is the witness's). False: such a tick is returned. Measured
#: 60f8ddb -> this rule (round 17): no tick of the measures is such a tick, so the same plans: family warm chains
#: (tools famdef, 120 ticks; the 3 behind the greedy in total are at 0.95 / 0.71 / 0.62 of its objective), warm
#: CPU 7.5 -> 7.3 s; the itp60 policy on 10 windows (2,347 ticks checked, 246 behind on unfinished work, at most
#: 0.985 of the greedy's objective): every figure the same, policy CPU 243.7 -> 248.6 s; the 50,000 x 192 chains
#: do not check the witness on their warm ticks (WITNESS_EVERY_TICK_MAX_CELLS; their 6 ticks behind the greedy in
#: total are at 0.86-0.94 of its objective). Stale prices reach it (test_warm_witness: chain 500047, no
#: deadlines, carbon prices 10x: 166,779 g, 869,834 GPU-s undone vs the greedy's 140,535 g, 365,834 -> carried
#: past it, 127,533 g, 232,428 GPU-s), and with TICK_HOLD_MUST off it carries or checks in full the family's ticks
#: behind on must-do work (chains 500016, 500020)
TICK_HOLD_TOTAL = True
#: where the witness runs, the local search and the other list schedules (plan()'s docstring) are tried only up
#: to this many job-slot cells: each costs one to three greedy-sized list schedules (at 50,000 x 192 they
#: took the cold solve from ~17 to ~60 s CPU; benchmarks/README.md, issue 11)
SEARCH_MAX_CELLS = 2_000_000
#: the numpy backend runs the independent parts of a solve on threads (numpy's array loops release the GIL;
#: each part reads the shared arrays and writes its own: the same plans as in turn): the EDF greedy witness
#: beside the price ascent (a cold solve; a warm re-plan whose check is likely due), the second and third
#: primal tries beside the first, and (past SEARCH_MAX_CELLS, cold) the price-order list schedule beside the
#: first try, the later tries built (where RACE_TRIES keeps them) beside each other once it is evaluated.
#: Other backends run them in turn, when they are needed. False: in turn on numpy too.
CONCURRENT = True
#: past SEARCH_MAX_CELLS a cold solve races its first primal try (plan's docstring, ``primal_tries``); False:
#: every try is built (tests compare the two)
RACE_TRIES = True
#: where the witness runs and no candidate dominates it job by job, the own plan is carried past it
#: (:func:`kernels.complete.carry`) before the price-order list schedule is built (the fallback; past
#: SEARCH_MAX_CELLS no longer beside the first try); False: round 8's plans
CARRY = True
#: a warm re-plan that skips the witness and leaves work undone is carried past the previous tick's plan (that
#: plan dominated its own witness or reference) where it does not dominate it job by job, row by row
#: (:func:`kernels.complete.carry_rows`, :class:`_WarmReference`; ~0.1 s CPU at 50,000 x 192); False: round
#: 9's warm plans (the optimiser's own, unchecked between witness checks)
WARM_CARRY = True
#: ... and, where jobs are still behind it, carried past it whole (:func:`kernels.complete.carry`: a repair and
#: a completion of the whole plan per round): ``complete.CARRY_ROUNDS`` rounds up to this many job-slot cells,
#: past them :data:`WARM_ROUNDS_PAST`
WARM_FULL_MAX_CELLS = 2_000_000
#: rounds of the whole warm carry past ``WARM_FULL_MAX_CELLS`` cells, without the carry's power raises (0: the
#: rows' pass only). At 50,000 x 192 (3 ticks of benchmarks.instances.make_problem) one round leaves no job
#: behind the previous plan (the rows' pass: 71 / 114 / 56) and, with the unfinished non-preemptible rows
#: raised first (:func:`kernels.complete.carry_rows`), no job the greedy finishes unfinished (the rows' pass
#: alone, round 11: 9 / 10 / 6). Round 11's round cost ~0.25 s CPU (a repair, a completion and an evaluation of
#: the whole plan); now the repair runs over the rows that can lose a cell and the evaluation over the rows
#: that changed (benchmarks/README.md, issue 11, round 12). A round after the first runs only where the first
#: loses a job the own plan finishes (runs on time): the second takes its row back (make_problem(50000, 192,
#: seed=2), tick 2: one round's plan lost such a job, so the whole carry was dropped and 5 jobs were lost to the
#: greedy; two rounds: none, at ~0.09 s CPU on that tick only)
WARM_ROUNDS_PAST = 2


#: the plan construction fills every slot's facility watts up to ``cap_w * (1 + CAP_TOL)`` (``_Dev.room_cap``; in
#: an infeasible slot 1 W below its idle floor: nothing runs there), the tolerance :func:`_clean_inputs` admits
#: inference with and :func:`kernels.check.infeasible_slots` judges the idle floor with. The checker and the
#: control plane allow 1e-6 of the cap above it (the float32 per-GPU watts of the tables err by under 6e-8).
#: It was 1 W + 1e-6 of the cap BELOW it: an instance with 1 W of slack or less (inference on the idle floor,
#: a whole-pool non-preemptible job at full power) was refused as infeasible or left unfinished though a plan
#: exists (tests/kernels/test_corpus.py's worst cases).
CAP_TOL = FLOOR_TOL  # (one figure: kernels.check.FLOOR_TOL)


# ----------------------------------------------------------------------------------------------- inputs
@dataclass(frozen=True, slots=True)
class _Clean:
    """Validated float64 / int64 copies of the problem plus derived per-slot quantities."""

    T: int
    J: int
    P: int
    slot_s: float
    pue: float
    wind_w: NDArray[np.float64]
    kappa: NDArray[np.float64]  # grams per facility watt held for one slot (carbon + energy cost)
    cap_w: NDArray[np.float64]  # min(site_max, wind + grid_cap)
    base_w: NDArray[np.float64]  # facility watts with every healthy GPU idle
    H: NDArray[np.float64]  # (P, T)
    tdp: NDArray[np.float64]
    idle: NDArray[np.float64]
    lev_f: NDArray[np.float64]  # (P, K)
    lev_ok: NDArray[np.bool_]
    lev_s: NDArray[np.float64]
    gpus: NDArray[np.float64]
    R: NDArray[np.float64]
    rel: NDArray[np.int64]  # clipped to [0, T]
    dl: NDArray[np.int64]  # clipped to [rel, T]
    has_dl: NDArray[np.bool_]
    #: work (seconds at full speed) each job can still do after the horizon's end and meet its deadline, one
    #: slot of full speed per slot from the horizon's end up to its deadline (inf: no deadline, and must-run
    #: rows, which the plan serves or is invalid): what the horizon need not hold (:func:`_must_undone_s`)
    after_s: NDArray[np.float64]
    weight: NDArray[np.float64]
    eligible: NDArray[np.bool_]
    must: NDArray[np.bool_]
    preempt: NDArray[np.bool_]
    rpool: NDArray[np.int64]
    loss: NDArray[np.float64]
    tenant: NDArray[np.int64]
    quota: NDArray[np.float64]
    ms: NDArray[np.int64]
    me: NDArray[np.int64]
    #: (T,) closed slots: nothing but the inference served runs there (the infeasible slots, ``floor_bad``, and
    #: the marked ones, where the cap cannot hold the must-run inference: kernels.check.inference_shed)
    infeas: NDArray[np.bool_]
    floor_bad: NDArray[np.bool_]  # (T,) slots whose idle floor alone breaks a cap: nothing runs there
    deficit_w: NDArray[np.float64]  # (T,) idle floor minus the cap in those slots (0 elsewhere)
    #: must-run row j is served in slot t of its window iff ``mrank[j] < mcut[mpack[j], t]``
    #: (kernels.check.inference_shed)
    mrank: NDArray[np.int64]  # (J,)
    mcut: NDArray[np.int64]  # (P, T)
    mqcut: NDArray[np.int64]  # (N, T) ... and ``mrank[j] < mqcut[tenant[j], t]`` (its tenant's quota)
    mpack: NDArray[np.int64]  # (J,) the pool kernels.check.pack_inference gives a must-run row (0: the others)
    mpool: NDArray[np.int64]  # (J,) the pool of the must-run rows served in a marked slot (-1: free)
    marked: NDArray[np.bool_]  # (T,) the marked slots (closed where the cap cannot hold the inference: ``infeas``)
    shed_w: NDArray[np.float64]  # (T,) inference watts (above the floor) shed in the marked slots
    shed_gpus: NDArray[np.float64]  # (T,) inference GPUs shed in the marked slots
    shed_cause: NDArray[np.bool_]  # (T, 3) what cannot hold the inference there (kernels.check.SHED_CAUSES)
    left_out: NDArray[np.bool_]  # (J,) kernels.check.unplaceable: no pool holds them in any slot (:func:`_set_aside`)
    #: (J,) kernels.check.running_blocks' ``displaced``: running non-preemptible, stopped in slot 0 (slot 0's GPUs
    #: or cap cannot hold it)
    displaced: NDArray[np.bool_]
    #: (J,) kernels.check.running_blocks' ``end``: the slot before which a kept running non-preemptible block may
    #: end unfinished, a later slot's GPUs or cap not holding it (T: none); as before a closed slot (``infeas``)
    npend: NDArray[np.int64]
    # a plan without a warm start (kernels.plan: a one-off plan such as ``windward plan``; the control loop's
    # ticks re-plan warm): its search may move running jobs to other pools (kernels.powersearch._moves)
    cold: bool = False


def kappa_of(carbon_g_per_kwh: Any, slot_s: float) -> Any:
    """Grams per facility watt held for one slot of ``slot_s`` seconds at ``carbon_g_per_kwh``: the planner's
    ``kappa`` (before any energy price), written once (:func:`_clean_inputs`; the polish's move past the cap raises
    it by the kappa of the carbon it adds, ``kernels.powersearch._cap_shadow``)."""
    return carbon_g_per_kwh * (slot_s / 3600.0) / 1000.0


def _clean_inputs(pb: PlanProblem) -> _Clean | str:
    """Shapes, dtypes, finiteness and the obvious infeasibilities; a string is the reason it is refused.

    Where the line between a refusal and a plan that leaves a job unfinished lies: a refusal (``kernels.plan``'s
    status "infeasible", ``windward plan`` exit 2) is a data error the user must fix, whatever the site does:
    a field of the wrong shape or type, not finite, below its bound (a job's GPUs < 1, negative work or watts),
    a pool or tenant index that does not exist, a speed curve with no point at or above its pool's
    min_power_fraction. What the site does now (a node failure, a maintenance window, a selector nothing
    matches now, a cap or a quota) never refuses the plan: no plan can do more than serve what the site holds,
    so the plan does that and reports the rest. A job no pool can hold in any slot (no eligible pool, a
    must-run one without a full-power level in its pools, one wider than each of its eligible pools' healthy
    GPUs in every slot: :func:`kernels.check.unplaceable`) is left out of the plan (:func:`_without`) and is
    unfinished for ``capacity``; a slot whose idle floor breaks its cap is infeasible and a slot that cannot
    hold its inference is marked (both planned around, every other slot as usual)."""
    try:
        T = int(np.shape(pb.wind_w)[0])
        J = int(np.shape(pb.gpus)[0])
        P = int(np.shape(pb.tdp_w)[0])
    except (IndexError, TypeError):
        return "wind_w, gpus and tdp_w must be 1-d arrays"
    if T < 1 or P < 1:
        return f"need at least one slot and one pool, got T={T}, P={P}"

    def arr(name: str, shape: tuple[int, ...], dtype: Any, *, lo: float | None = None, allow_inf: bool = False) -> Any:
        a = getattr(pb, name)
        if a is None:
            raise ValueError(f"{name} is missing")
        a = np.asarray(a)
        if a.shape != shape:
            raise ValueError(f"{name} has shape {a.shape}, expected {shape}")
        if a.dtype.kind not in "biuf":
            raise ValueError(f"{name} has dtype {a.dtype}, expected numbers")
        a = a.astype(dtype)
        if a.dtype.kind == "f":
            bad = np.isnan(a) | (np.isinf(a) if not allow_inf else np.isneginf(a))
            if bad.any():
                i = int(np.flatnonzero(bad.reshape(-1))[0])
                raise ValueError(f"{name}[{np.unravel_index(i, shape)}] is {a.reshape(-1)[i]}: must be finite")
        if lo is not None and (a < lo).any():
            i = int(np.flatnonzero((a < lo).reshape(-1))[0])
            raise ValueError(f"{name}[{np.unravel_index(i, shape)}] = {a.reshape(-1)[i]} is below {lo}")
        return a

    try:
        slot_s = float(pb.slot_s)
        pue = float(pb.pue)
        if not (slot_s > 0 and math.isfinite(slot_s)):
            raise ValueError(f"slot_s = {pb.slot_s} must be positive")
        if not (pue >= 1.0 and math.isfinite(pue)):
            raise ValueError(f"pue = {pb.pue} must be >= 1")
        wind = arr("wind_w", (T,), np.float64, lo=0.0)
        carbon = arr("carbon_g_per_kwh", (T,), np.float64, lo=0.0)
        gcap = arr("grid_cap_w", (T,), np.float64, lo=0.0)
        smax = arr("site_max_w", (T,), np.float64, lo=0.0)
        Hraw = np.asarray(pb.pool_gpus)
        H = arr("pool_gpus", (P, T) if Hraw.ndim == 2 else (P,), np.float64, lo=0.0)
        if H.ndim == 1:
            H = np.repeat(H[:, None], T, axis=1)
        tdp = arr("tdp_w", (P,), np.float64, lo=0.0)
        idle = arr("idle_w", (P,), np.float64, lo=0.0)
        host = arr("host_w_per_gpu", (P,), np.float64, lo=0.0)
        mpf = arr("min_power_fraction", (P,), np.float64, lo=0.0)
        K = int(np.shape(pb.curve_f)[1]) if np.ndim(pb.curve_f) == 2 else 0
        cf = arr("curve_f", (P, K), np.float64, lo=0.0)
        cs = arr("curve_s", (P, K), np.float64, lo=0.0)
        if (np.diff(cf, axis=1) < -_EPS).any():
            raise ValueError("curve_f must be non-decreasing along each pool's curve")
        gpus = arr("gpus", (J,), np.float64, lo=1.0)
        rem = arr("remaining_s", (J,), np.float64, lo=0.0)
        rel = arr("release", (J,), np.int64)
        dl = arr("deadline", (J,), np.int64)
        weight = arr("weight", (J,), np.float64, lo=0.0)
        elig = np.asarray(pb.eligible)
        if elig.shape != (J, P):
            raise ValueError(f"eligible has shape {elig.shape}, expected {(J, P)}")
        elig = elig.astype(bool)
        must = arr("must_run", (J,), bool)
        preempt = arr("preemptible", (J,), bool)
        rpool = arr("running_pool", (J,), np.int64, lo=-1)
        if (rpool >= P).any():
            j = int(np.flatnonzero(rpool >= P)[0])
            raise ValueError(f"job {j}: running_pool {rpool[j]} is not a pool index (0..{P - 1})")
        loss = arr("preempt_loss_s", (J,), np.float64, lo=0.0)
        quota = arr("tenant_quota_gpus", (int(np.shape(pb.tenant_quota_gpus)[0]),), np.float64, lo=0.0, allow_inf=True)
        tenant = arr("tenant", (J,), np.int64, lo=0)
        if J and (tenant >= quota.shape[0]).any():
            j = int(np.flatnonzero(tenant >= quota.shape[0])[0])
            raise ValueError(f"job {j}: tenant {tenant[j]} has no entry in tenant_quota_gpus (N={quota.shape[0]})")
        price = None
        if pb.price_eur_per_mwh is not None:
            price = arr("price_eur_per_mwh", (T,), np.float64)
        ecw = float(pb.energy_cost_weight_g_per_eur)
        if not (math.isfinite(ecw) and ecw >= 0):
            raise ValueError(f"energy_cost_weight_g_per_eur = {ecw} must be finite and >= 0")
    except ValueError as e:
        return f"bad input: {e}"

    lev_f, lev_ok = levels(pb)
    if not lev_ok.any(axis=1).all():
        p = int(np.flatnonzero(~lev_ok.any(axis=1))[0])
        return f"pool {p}: no speed-curve point at or above min_power_fraction {mpf[p]}"
    lev_s = np.stack([np.interp(lev_f[p], np.r_[0.0, cf[p]], np.r_[0.0, cs[p]]) for p in range(P)])
    slot_h = slot_s / 3600.0
    kappa = kappa_of(carbon, slot_s)
    if price is not None and ecw > 0:
        kappa = kappa + ecw * np.maximum(price, 0.0) * slot_h / 1e6
    cap = np.minimum(smax, wind + gcap)
    base = pue * (H * (idle + host)[:, None]).sum(axis=0)

    # (a job no pool holds in any slot is not refused: kernels.check.unplaceable, left out by _without; a
    # must-run row wider than every eligible pool is not either: kernels.check.inference_shed marks the slots
    # of its window for GPUs and sheds it there, as it sheds any inference its pools cannot hold)
    # a slot whose idle floor alone breaks a cap cannot be met by any plan: it is marked, nothing runs
    # there (its cap is held at the floor, so it has no room), and every other slot is planned as usual
    infeas, deficit = infeasible_slots(pb)
    ms, me = must_window(pb)
    # nor can a slot whose floor fits but the must-run inference on top of it does not, in watts or in its pools'
    # GPUs (a node failure, a maintenance window, inference its pools cannot pack): the inference that fits is
    # served there (kernels.check.inference_shed, in its pool), the rest shed; where the cap is what cannot hold
    # it nothing else runs there (closed: its cap is held at the floor plus the inference served), where only the
    # GPUs cannot the rest of the site is planned there as usual, and every other slot is planned as usual (no
    # must-run rows: nothing marked, every slot but the infeasible ones serves everything)
    shed, blocks = shed_and_blocks(pb)  # (the running blocks once per plan: the planner and the witness read them)
    cap = np.where(infeas, base, np.where(shed.closed, base + shed.served_w, cap))
    relc = np.clip(rel, 0, T)
    dlc = np.clip(dl, relc, T)
    return _Clean(
        T=T, J=J, P=P, slot_s=slot_s, pue=pue, wind_w=wind, kappa=kappa, cap_w=cap, base_w=base, H=H,
        tdp=tdp, idle=idle, lev_f=lev_f, lev_ok=lev_ok, lev_s=lev_s, gpus=gpus, R=rem, rel=relc, dl=dlc,
        has_dl=(dl < T) & ~must, after_s=np.where((dl == NO_DEADLINE) | must, np.inf, np.maximum(dl - T, 0) * slot_s),
        weight=weight, eligible=elig, must=must, preempt=preempt, rpool=rpool,
        loss=np.where(rpool >= 0, loss, 0.0), tenant=tenant, quota=quota, ms=ms, me=me,
        infeas=infeas | shed.closed, floor_bad=infeas, deficit_w=deficit, mrank=shed.rank, mcut=shed.cut, mqcut=shed.qcut,
        mpack=shed.pack, mpool=shed.pool, marked=shed.marked, shed_w=shed.shed_w, shed_gpus=shed.shed_gpus,
        shed_cause=shed.cause, left_out=unplaceable(pb), displaced=blocks.displaced,
        npend=blocks.end,
    )


# ------------------------------------------------------------------------------------------ structure
@dataclass(frozen=True, slots=True)
class _Prep:
    """Problem structure that does not change with the prices (numpy, small) plus device copies."""

    E: int  # eligibility classes
    S: int  # distinct speeds (lines per class, besides "off")
    cls: NDArray[np.int64]  # (J,) class of each job
    line_p: NDArray[np.int64]  # (NL,) pool of each (pool, level) line
    line_k: NDArray[np.int64]
    line_load: NDArray[np.float64]  # facility watts per GPU above idle
    line_w: NDArray[np.float64]  # work seconds per GPU per slot
    line_full: NDArray[np.bool_]
    slopes: NDArray[np.float64]  # (S,) distinct works
    member: NDArray[np.bool_]  # (E, S, NL): line belongs to class e and slope s
    full_member: NDArray[np.bool_]  # (E, NL): full-power lines of class e
    fv: NDArray[np.float64]  # (V,) distinct power fractions, fv[0] = 0 (off)
    line_v: NDArray[np.int64]  # (NL,) index into fv
    spd_pv: NDArray[np.float64]  # (P, V) speed of pool p at fraction fv (0 where not a level of p)
    map_pv: NDArray[np.int64]  # (P, V) the pool's own level (as fv index) used for fraction fv
    ks: NDArray[np.bool_]  # (J,) knapsack jobs (not must-run, work left, released in the horizon)
    rho_on: NDArray[np.float64]  # (J,) grams per GPU-second of on-time work
    ldrop: NDArray[np.float64]  # (J,) rho_on - rho_late
    mcnt: NDArray[np.float64]  # (E, T) must-run GPUs per class and slot
    cls_ten: NDArray[np.int64]  # (E,) the quota tenant of class e (-1: its tenant has no quota)
    # the envelope's constants (the same every dual iteration): works of lines 0 (off) .. S, the divisor of
    # each pair's breakpoint (work gain h -> i, 1 where none), h < i, and the lines' load, pool and power
    # fraction index with a last entry for "none" (0 W, pool P, off)
    W0: NDArray[np.float64]  # (S + 1,)
    load_ext: NDArray[np.float64]  # (NL + 1,)
    pool_ext: NDArray[np.int64]  # (NL + 1,)
    v_ext: NDArray[np.int64]  # (NL + 1,)
    # each slope's lines (ids ascending, padded with line 0) and which of them each class may use: the
    # envelope's cheapest line per (class, slope) among L lines instead of all NL
    line_of: NDArray[np.int64]  # (S, L)
    member_k: NDArray[np.bool_]  # (E, S, L)
    # the pairs h < i of the lines 0 .. S, their divisors, and per line i (1 .. S) the pairs (h, i), per line h
    # (0 .. S - 1) the pairs (h, i), each padded to S with the pair index Q (-inf) or Q + 1 (+inf)
    pair_h: NDArray[np.int64]  # (Q,)
    pair_i: NDArray[np.int64]  # (Q,)
    pair_div: NDArray[np.float64]  # (Q,)
    lo_at: NDArray[np.int64]  # (S, S)
    hi_at: NDArray[np.int64]  # (S, S)


def _envelope_pairs(S: int, dW: NDArray[np.float64]) -> dict[str, Any]:
    """:class:`_Prep`'s pairs ``h < i`` of the lines ``0 .. S`` for :func:`_envelope`."""
    ii, hh = np.nonzero(np.tril(np.ones((S + 1, S + 1), bool), -1))  # (row-major: sorted by i, then h)
    Q = ii.size
    at = np.full((S + 1, S + 1), -1, np.int64)
    at[hh, ii] = np.arange(Q)
    k = np.arange(S)
    lo_at = np.where(k[None, :] < k[:, None] + 1, at[np.minimum(k[None, :], S), k[:, None] + 1], Q)  # (i - 1, h)
    hi_i = k[:, None] + 1 + k[None, :]  # (h, the k-th line above it)
    hi_at = np.where(hi_i <= S, at[k[:, None], np.minimum(hi_i, S)], Q + 1)
    return dict(pair_h=hh.astype(np.int64), pair_i=ii.astype(np.int64), pair_div=dW[hh, ii], lo_at=lo_at, hi_at=hi_at)


def _slope_lines(member: NDArray[np.bool_], sl_idx: NDArray[np.int64], S: int) -> tuple[NDArray[np.int64],
                                                                                        NDArray[np.bool_]]:
    """:class:`_Prep`'s ``line_of`` and ``member_k``: each slope's lines, ids ascending (padded), and the
    classes' membership of them."""
    cnt = np.bincount(sl_idx, minlength=S)
    L = max(int(cnt.max()) if cnt.size else 0, 1)
    line_of = np.zeros((S, L), np.int64)
    has = np.arange(L)[None, :] < cnt[:, None]
    line_of[has] = np.argsort(sl_idx, kind="stable")  # (the lines of slope 0 in id order, then slope 1, ...)
    return line_of, member[:, np.arange(S)[:, None], line_of] & has[None]


def _prepare(c: _Clean) -> _Prep:
    T, P = c.T, c.P
    # classes: eligibility and, for tenants with a finite GPU quota, the tenant (its price nu applies)
    qt = np.where(np.isfinite(c.quota)[c.tenant], c.tenant, -1) if c.J else np.zeros(0, np.int64)
    if not c.J:
        uniq, cls_ten, cls = np.ones((1, P), bool), -np.ones(1, np.int64), np.zeros(0, np.int64)
    elif P + math.log2(c.quota.size + 2) < 62:
        # one int64 per job, ordered as the rows (eligible[0], ..., eligible[P-1], tenant) sort: a 1-d
        # unique is ~20x faster than a row-wise one at 50k jobs
        bits = c.eligible.astype(np.int64) @ (np.int64(1) << np.arange(P - 1, -1, -1, dtype=np.int64))
        ukey1, cls = np.unique(bits * (c.quota.size + 1) + (qt + 1), return_inverse=True)
        ub, uq = np.divmod(ukey1, c.quota.size + 1)
        uniq = ((ub[:, None] >> np.arange(P - 1, -1, -1, dtype=np.int64)[None, :]) & 1).astype(bool)
        cls_ten = (uq - 1).astype(np.int64)
    else:
        key = np.concatenate([c.eligible.astype(np.int64), qt[:, None]], axis=1)
        ukey, cls = np.unique(key, axis=0, return_inverse=True)
        uniq = ukey[:, :P].astype(bool)
        cls_ten = ukey[:, P].astype(np.int64)
    cls = cls.reshape(-1).astype(np.int64)
    E = uniq.shape[0]
    pp, kk = np.nonzero(c.lev_ok)
    line_load = c.pue * (c.lev_f[pp, kk] * c.tdp[pp] - c.idle[pp])
    line_w = c.lev_s[pp, kk] * c.slot_s
    line_full = np.abs(c.lev_f[pp, kk] - 1.0) < 1e-9
    slopes, sl_idx = np.unique(np.round(line_w, 9), return_inverse=True)
    S = slopes.size
    member = np.zeros((E, S, pp.size), dtype=bool)
    member[:, sl_idx, np.arange(pp.size)] = uniq[:, pp]
    full_member = uniq[:, pp] & line_full[None, :]
    fvals = np.unique(np.round(c.lev_f[c.lev_ok], 9))
    fv = np.concatenate([[0.0], fvals])
    line_v = 1 + np.searchsorted(fvals, np.round(c.lev_f[pp, kk], 9))
    V = fv.size
    spd_pv = np.zeros((P, V))
    map_pv = np.zeros((P, V), dtype=np.int64)
    for p in range(P):  # pools
        own = 1 + np.searchsorted(fvals, np.round(c.lev_f[p][c.lev_ok[p]], 9))
        own_f = fv[own]
        # fraction fv -> the pool's smallest level >= it (or its largest)
        j = np.clip(np.searchsorted(own_f, fv - 1e-9), 0, own.size - 1)
        map_pv[p] = own[j]
        map_pv[p, 0] = 0
        spd_pv[p, own] = c.lev_s[p][c.lev_ok[p]]
    ks = ~c.must & (c.R > 0) & (c.rel < T)
    rho_on = c.weight * (1.0 + c.has_dl)
    ldrop = c.weight * c.has_dl
    mcnt = np.zeros((E, T + 1))
    mr = np.flatnonzero(c.must)
    np.add.at(mcnt, (cls[mr], c.ms[mr]), c.gpus[mr])
    np.add.at(mcnt, (cls[mr], c.me[mr]), -c.gpus[mr])
    mcnt = np.cumsum(mcnt, axis=1)[:, :T]
    srows = np.flatnonzero(c.mrank < c.J)  # must-run rows of marked slots: the GPUs they shed there are not drawn
    if srows.size:
        np.add.at(mcnt, cls[srows], -(_shed_cells(c, srows) * c.gpus[srows][:, None]))
    W0 = np.concatenate([[0.0], slopes])
    dW = W0[None, :] - W0[:, None]  # (h, i)
    line_of, member_k = _slope_lines(member, sl_idx.reshape(-1).astype(np.int64), S)
    return _Prep(E=E, S=S, cls=cls, line_p=pp, line_k=kk, line_load=line_load, line_w=line_w,
                 line_full=line_full, slopes=slopes, member=member, full_member=full_member, fv=fv,
                 line_v=line_v, spd_pv=spd_pv, map_pv=map_pv, ks=ks, rho_on=rho_on, ldrop=ldrop, mcnt=mcnt,
                 cls_ten=cls_ten, W0=W0,
                 load_ext=np.concatenate([line_load, [0.0]]), pool_ext=np.concatenate([pp, [P]]),
                 v_ext=np.concatenate([line_v, [0]]), line_of=line_of, member_k=member_k, **_envelope_pairs(S, dW))


# ------------------------------------------------------------------------------------------- envelope
@dataclass(frozen=True, slots=True)
class _Env:
    """Per (class, slot) upper envelope of the choice lines at given prices (small numpy arrays)."""

    b: NDArray[np.float64]  # (E, T, S) breakpoint of line i+1 (BIG: never chosen)
    dw: NDArray[np.float64]  # (E, T, S) work step at that breakpoint
    dload: NDArray[np.float64]  # (E, T, S) facility watt step
    pool_in: NDArray[np.int64]  # (E, T, S) pool entered at the breakpoint (P: none)
    pool_out: NDArray[np.int64]  # (E, T, S) pool left (P: none)
    dv: NDArray[np.int64]  # (E, T, S) step of the power-fraction index (into Prep.fv) at the breakpoint
    act_line: NDArray[np.int64]  # (E, T, S+1) c-th active line (global line id, -1 off)
    mr_cost: NDArray[np.float64]  # (E, T) cheapest full-power cost per GPU (must-run)
    mr_line: NDArray[np.int64]  # (E, T)


def _class_nu(c: _Clean, pr: _Prep, nu: NDArray[np.float64] | None) -> NDArray[np.float64]:
    """``(E, T)`` tenant-quota price per GPU and slot of each class (0 for tenants without a quota)."""
    if nu is None or nu.shape[0] == 0 or not (pr.cls_ten >= 0).any():
        return np.zeros((pr.E, c.T))
    return np.where(pr.cls_ten[:, None] >= 0, nu[np.maximum(pr.cls_ten, 0)], 0.0)


def _take_last(a: NDArray[Any], idx: NDArray[np.int64]) -> NDArray[Any]:
    """``a``'s entries at ``idx`` along its last axis (``idx`` of ``a``'s leading shape, with or without a last axis
    of its own): ``np.take_along_axis``'s, by flat index, without its index grids (round 21: the envelope's argmins)."""
    rows = np.arange(0, a.size, a.shape[-1]).reshape(a.shape[:-1] + (1,) * (idx.ndim - a.ndim + 1))
    return a.reshape(-1).take(rows + idx)


def _envelope(c: _Clean, pr: _Prep, lam: NDArray[np.float64], mu: NDArray[np.float64],
              nu: NDArray[np.float64] | None = None) -> _Env:
    """The upper envelope of each (class, slot)'s choice lines at prices ``lam``, ``mu`` (``nu``: tenant quotas).
    Round 20 (H3): each slope's cheapest line among that slope's lines only, the breakpoints of the pairs h < i
    only, the active lines written at their ranks (no sort), slot-major tables: every field the one of all lines,
    the whole (h, i) table and a stable sort, bit for bit (tests/kernels/test_planner.py; 551 calls captured
    from nine seed-0 corpus instances replayed both ways), at 0.6-0.8x its CPU (corpus-11, 62 calls: 1.03-1.06
    -> 0.64-0.73 ms a call; corpus-82: 0.44 -> 0.35-0.37 ms; 3 alternations)."""
    E, S, T, P = pr.E, pr.S, c.T, c.P
    # (slot-major: the lines of each (class, slot) along the last axis, whose reductions are contiguous)
    cost = lam[:, None] * pr.line_load[None, :] + mu[pr.line_p].T  # (T, NL)
    cost_e = cost[None] + _class_nu(c, pr, nu)[:, :, None]  # (E, T, NL)
    # per (class, slot, slope) the cheapest of the slope's lines the class may use (ids ascending: argmin's first
    # of ties is the lowest id, as over all lines)
    cm = np.where(pr.member_k[:, None], cost_e[:, :, pr.line_of], np.inf)  # (E, T, S, L)
    kb = cm.argmin(axis=3)  # (E, T, S)
    best = pr.line_of[np.arange(S)[None, None, :], kb]  # (E, T, S) their ids
    cbest = _take_last(cm, kb)
    valid = np.isfinite(cbest)
    # lines i = 0 (off) .. S, slopes W; an invalid line's cost +inf, so that a pair's breakpoint is -inf where h
    # is invalid (no constraint) and +inf where i is (never): where both are (nan) neither is read (lo of a
    # valid i, hi of a valid h only)
    W = pr.W0
    Cm = np.concatenate([np.zeros((E, T, 1)), np.where(valid, cbest, np.inf)], axis=2)  # (E, T, m)
    ok = np.concatenate([np.ones((E, T, 1), bool), valid], axis=2)
    m = S + 1
    # the breakpoint x[h, i] of each pair h < i only: the lowest breakpoint a line i is above every line h < i
    # from (lo), and the highest a line h is above every i > h up to (hi); a max and a min over the pairs of
    # each i, each h (exact: no sum)
    lo = np.full((E, T, m), -np.inf)
    hi = np.full((E, T, m), np.inf)
    if pr.pair_h.size:
        with np.errstate(invalid="ignore"):
            x = (Cm[:, :, pr.pair_i] - Cm[:, :, pr.pair_h]) / pr.pair_div  # (E, T, Q)
        x = np.concatenate([x, np.full((E, T, 1), -np.inf), np.full((E, T, 1), np.inf)], axis=2)
        lo[:, :, 1:] = x[:, :, pr.lo_at].max(axis=3)
        hi[:, :, :-1] = x[:, :, pr.hi_at].min(axis=3)
    active = ok & (lo < hi)
    active[:, :, 0] = True
    idx = np.arange(m)
    prev_src = np.where(active, idx[None, None], -1)
    prev = np.maximum.accumulate(prev_src, axis=2)
    prev = np.concatenate([np.full((E, T, 1), -1), prev[:, :, :-1]], axis=2)[:, :, 1:]  # for i >= 1
    act1 = active[:, :, 1:]
    b = np.where(act1, lo[:, :, 1:], _BIG)
    Wi = W[1:][None, None, :]
    dw = np.where(act1, Wi - W[np.maximum(prev, 0)], 0.0)
    gl = np.concatenate([np.full((E, T, 1), -1), np.where(valid, best, -1)], axis=2)  # (E, T, m)
    load_ext, pool_ext, v_ext = pr.load_ext, pr.pool_ext, pr.v_ext
    li = gl[:, :, 1:]
    lp = _take_last(gl, np.maximum(prev, 0))
    dload = np.where(act1, load_ext[li] - load_ext[lp], 0.0)
    pool_in = np.where(act1, pool_ext[li], P)
    pool_out = np.where(act1, pool_ext[lp], P)
    dv = np.where(act1, v_ext[li] - v_ext[lp], 0)
    # the active lines of each (class, slot) in order, then -1: each active one written at its rank
    sel = active.reshape(-1)
    at = (np.arange(0, E * T * m, m).reshape(E, T, 1) + np.cumsum(active, axis=2) - 1).reshape(-1)[sel]
    lines = np.full(E * T * m, -1, np.int64)
    lines[at] = gl.reshape(-1)[sel]
    act_line = lines.reshape(E, T, m)
    fm = np.where(pr.full_member[:, None, :], cost_e, np.inf)  # (E, T, NL)
    mr_line = fm.argmin(axis=2)
    mr_cost = _take_last(fm, mr_line)
    mr_cost = np.where(np.isfinite(mr_cost), mr_cost, 0.0)
    return _Env(b=b, dw=dw, dload=dload, pool_in=pool_in, pool_out=pool_out, dv=dv, act_line=act_line,
                mr_cost=mr_cost, mr_line=mr_line)


# --------------------------------------------------------------------------------------- dual tables
class _Jobs:
    """Knapsack jobs, sorted by class, on the backend (device) once per solve."""

    def __init__(self, xp: Ops, c: _Clean, pr: _Prep) -> None:
        ks = np.flatnonzero(pr.ks)
        order = ks[np.argsort(pr.cls[ks], kind="stable")]
        self.rows = order  # original job indices, class-sorted
        self.rows_d = xp.asarray(order, xp.i64)
        cl = pr.cls[order]
        self.bounds = np.searchsorted(cl, np.arange(pr.E + 1))
        self.layout = xp.row_layout(self.bounds)  # for per-class searches in one batched call
        self.n = order.size
        self.cls = xp.asarray(cl, xp.i64)
        self.g = xp.asarray(c.gpus[order], xp.f64)
        self.R = xp.asarray(c.R[order], xp.f64)
        self.rel = xp.asarray(c.rel[order], xp.i64)
        self.dl = xp.asarray(c.dl[order], xp.i64)
        self.late_rows = xp.asarray(np.flatnonzero(c.dl[order] < c.T), xp.i64)  # a late part in the horizon
        self.rho = xp.asarray(pr.rho_on[order], xp.f64)
        self.ld = xp.asarray(pr.ldrop[order], xp.f64)
        self.const = float((c.gpus[order] * pr.rho_on[order] * c.R[order]).sum())
        # jobs that can do nothing in the horizon pay their penalty in full
        dead = ~c.must & (c.R > 0) & (c.rel >= c.T)
        self.dead_const = float((c.gpus * pr.rho_on * c.R)[dead].sum())


@dataclass
class _DualOut:
    value: float  # dual value (exact in _bound_exact, an estimate in _dual_coarse)
    g_lam: NDArray[np.float64]
    g_mu: NDArray[np.float64]
    tau: Any  # backend (n,) job thresholds (grams per GPU-second of work)
    tau_w: Any = None  # backend (n,) width of the iteration-grid cell of each threshold
    g_nu: Any = None  # (N, T) tenant-quota subgradient


def _slot_and_grad(c: _Clean, pr: _Prep, env: _Env, lam: NDArray[np.float64], mu: NDArray[np.float64],
                   N: NDArray[np.float64], nu: NDArray[np.float64] | None = None
                   ) -> tuple[float, NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Slot part of the dual, must-run part, and the subgradient (watts, pool GPUs, tenant GPUs) from the
    envelope step counts ``N``."""
    T, P = c.T, c.P
    load = (N * env.dload).sum(axis=(0, 2))
    # the pools' busy GPUs: each step's GPUs into the pool it enters, out of the one it leaves (P: none), then
    # the must-run GPUs; one weighted count of the (pool, slot) cells in that order adds, per cell, the same
    # numbers in the same order as adding at each index (np.add.at) three times, at a fraction of its cost
    tt = np.arange(T)
    cells = np.concatenate([(env.pool_in * T + tt[None, :, None]).reshape(-1),
                            (env.pool_out * T + tt[None, :, None]).reshape(-1),
                            (pr.line_p[env.mr_line] * T + tt[None, :]).reshape(-1)])
    steps = np.concatenate([N.reshape(-1), -N.reshape(-1),
                            np.broadcast_to(pr.mcnt, env.mr_line.shape).reshape(-1).astype(np.float64)])
    busy = np.bincount(cells, steps, minlength=(P + 1) * T).reshape(P + 1, T)[:P]
    mr_val = float((pr.mcnt * env.mr_cost).sum())
    load = load + (pr.mcnt * pr.line_load[env.mr_line]).sum(axis=0)
    base, cap, wind, kap = c.base_w, c.cap_w, c.wind_w, c.kappa
    wc = np.minimum(np.maximum(wind, base), cap)  # (np.clip: the same, at 4x the cost of a call)
    phi = lambda F: kap * np.maximum(F - wind, 0.0) - lam * F  # noqa: E731
    slot_val = np.minimum(np.minimum(phi(base), phi(wc)), phi(cap)) + lam * base
    demand = base + load
    lo_set = np.where(lam <= 0, base, np.where(lam <= kap, wc, cap))
    hi_set = np.where(lam < kap, wc, cap)
    g_lam = demand - np.minimum(np.maximum(demand, lo_set), hi_set)
    g_mu = busy - c.H
    value = float(slot_val.sum()) - float((mu * c.H).sum()) + mr_val
    # tenant GPUs: a step from "off" starts the class's GPUs; must-run GPUs count too
    nq = c.quota.size
    use_e = (N * (env.pool_out == P)).sum(axis=2) + pr.mcnt  # (E, T)
    qe = np.flatnonzero(pr.cls_ten >= 0)
    use = np.bincount((pr.cls_ten[qe][:, None] * T + tt[None, :]).reshape(-1), use_e[qe].reshape(-1),
                      minlength=nq * T).reshape(nq, T)  # (as busy: each class's row added in class order)
    qcap = np.where(np.isfinite(c.quota), c.quota, 0.0)
    g_nu = np.where(np.isfinite(c.quota)[:, None], use - qcap[:, None], 0.0)
    if nu is not None:
        value -= float((nu * qcap[:, None]).sum())
    return value, g_lam, g_mu, g_nu


def _tables(xp: Ops, E: int, T: int, G: int, cell: NDArray[np.int64], vals: list[NDArray[np.float64]], *,
            slot_major: bool = False) -> list[Any]:
    """Prefix tables ``Tab[e, s, r] = sum over slots t < s and cells < r`` of ``vals`` scattered at ``cell``.

    ``cell : (E, T, S)`` the cell of each envelope step; returns backend arrays ``(E, T + 1, G + 1)``, or
    with ``slot_major`` ``(T + 1, E, G + 1)`` (``Tab[s, e, r]``: the slot prefix then adds contiguous
    slices, 5-10x faster on numpy than along the middle axis; the same additions in the same order, so the
    same sums bit for bit).
    """
    S = cell.shape[2]
    if slot_major:  # scattered into the zero-padded table directly; both prefixes in place of the copy
        # (all the tables in one array, table-major: one scatter and one pass per prefix for them all, each table's
        # cells adding the same values in the same order as its own pass: the same sums bit for bit)
        flat = ((np.arange(T)[None, :, None] + 1) * (E * (G + 1)) + np.arange(E)[:, None, None] * (G + 1)
                + cell + 1).reshape(-1)
        n = (T + 1) * E * (G + 1)
        nt = len(vals)
        # (joined where they are used: each table sent as it was, the cells' index once; on the host one array of
        # all of them would be a (J, T)-sized move to the device, test_backend's torch-plan test)
        fi0 = xp.asarray(flat, xp.i64)
        fi = xp.concatenate([fi0 + i * n for i in range(nt)])
        w = xp.concatenate([xp.asarray(v.reshape(-1), xp.f64) for v in vals])
        tab = xp.cumsum(xp.cumsum(xp.scatter_add(nt * n, fi, w, xp.f64).reshape(nt, T + 1, E, G + 1), axis=3),
                        axis=1)
        return [tab[i] for i in range(nt)]
    flat = (np.arange(E)[:, None, None] * (T * G) + np.arange(T)[None, :, None] * G + cell).reshape(-1)
    fi = xp.asarray(flat, xp.i64)
    out = []
    for v in vals:  # two or three tables
        m = xp.scatter_add(E * T * G, fi, xp.asarray(v.reshape(-1), xp.f64), xp.f64).reshape(E, T, G)
        m = xp.cumsum(xp.cumsum(m, axis=2), axis=1)
        z = xp.zeros((E, T + 1, G + 1), xp.f64)
        z[:, 1:, 1:] = m
        out.append(z)
    _ = S
    return out


def _median(a: NDArray[np.float64]) -> float:
    """``np.median`` of a non-empty 1-d array without NaN: the middle of the sorted values, or the mean of the
    two middle ones as numpy takes it ((lo + hi) / 2); the same value, ~20x cheaper than its call on the
    dual iteration's ~100 breakpoints."""
    b = np.sort(a)
    h = b.size // 2
    return float(b[h]) if b.size % 2 else float((b[h - 1] + b[h]) / 2)


def _used_tables(xp: Ops, E: int, T: int, G: int, cell: NDArray[np.int64], vals: list[NDArray[np.float64]]
                 ) -> tuple[list[Any], NDArray[np.int64]]:
    """The slot-major :func:`_tables` with a column only for the cells some step falls in (``k`` of ``G``)
    and ``cmap : (G + 1,)``: ``Tab[s, e, cmap[r]]`` is the full table's ``Tab[s, e, r]``, bit for bit (the
    other cells hold 0.0 in every row, and adding 0.0 changes no sum; the cells' chain of additions is
    ``k / G`` as long: ~1/3 on the corpus)."""
    # (np.unique's sorted cells and inverse, from the cells seen: the running count of those at or below each
    # cell is one past its column; ~4x cheaper than the sort on the ~2,000 steps of a slow corpus instance)
    seen = np.zeros(G + 1, bool)
    seen[cell.reshape(-1)] = True
    upto = np.cumsum(seen)  # used cells <= r
    tabs = _tables(xp, E, T, int(upto[-1]), upto[cell] - 1, vals, slot_major=True)
    return tabs, upto - seen  # used cells < r: np.searchsorted(used, r)


class _Grid:
    """A uniform grid in ``u = asinh(x / xs)``: O(1) cell of any value, no search (the iteration grid)."""

    def __init__(self, lo: float, hi: float, xs: float, n: int) -> None:
        self.xs = xs
        self.u0 = math.asinh(lo / xs) - 1e-9
        u1 = math.asinh(hi / xs) + 1e-9
        self.n = n
        self.du = max((u1 - self.u0) / n, 1e-12)

    def rank_np(self, x: NDArray[np.float64]) -> NDArray[np.int64]:
        # clipped to [0, n] first, so truncation is the floor
        return np.minimum(np.maximum((np.arcsinh(x / self.xs) - self.u0) / self.du, 0), self.n).astype(np.int64)

    def rank(self, xp: Ops, x: Any) -> Any:
        if xp.name == "numpy":
            return self.rank_np(x)
        t = xp.torch  # type: ignore[attr-defined]
        return t.clamp((t.asinh(x / self.xs) - self.u0) / self.du, 0, self.n).to(t.int64)

    def low(self, xp: Ops, r: NDArray[np.float64]) -> Any:
        """Smallest x of cell ``r`` (host values) as a backend array: computed on the host on every backend
        (torch's sinh differs from numpy's in the last bit in about a quarter of the cells; the cell edges
        are the jobs' thresholds, so the dual values the ascent compares differed and a tie between two
        iterates went the other way: make_problem(40, 24, seed=1)'s warm chain)."""
        return xp.asarray(self.xs * np.sinh(self.u0 + r * self.du), xp.f64)


def _dual_coarse(xp: Ops, c: _Clean, pr: _Prep, jb: _Jobs, lam: NDArray[np.float64], mu: NDArray[np.float64],
                 n_cells: int = 256, nu: NDArray[np.float64] | None = None) -> tuple[_DualOut, _Env]:
    """One dual iteration on the uniform iteration grid: thresholds by integer bisection, loads by histogram.

    Breakpoints are counted from the next cell up (an approximation used only to move prices; the bound
    is computed exactly by :func:`_bound_exact`).
    """
    env = _envelope(c, pr, lam, mu, nu)
    E, T, S = pr.E, c.T, pr.S
    act = env.b < _BIG / 2
    ab = np.abs(env.b[act])
    xs = _median(ab) if ab.size else 1.0
    xs = max(xs, 1e-12)
    lo = float(env.b[act].min()) if ab.size else 0.0
    # (the top: every row's largest value of work, the must-run rows' included, though they enter no objective
    # term: their weights' scale widens the grid; see scheduler.planner.SERVING_WEIGHT_STEP for what that does)
    hi = max(float(pr.rho_on.max()) if pr.rho_on.size else 1.0, lo + 1e-12)
    gr = _Grid(lo, hi, xs, n_cells)
    Gc = n_cells
    cell = np.where(act, np.minimum(gr.rank_np(np.where(act, env.b, hi)), Gc - 1), Gc - 1)
    dwb = np.where(act, env.dw * np.where(act, env.b, 0.0), 0.0)
    (Gw, Gb), cmap_np = _used_tables(xp, E, T, Gc, cell, [env.dw, dwb])  # (T + 1, E, k + 1)
    k = Gw.shape[2] - 1
    n = jb.n
    tau = xp.zeros(n, xp.f64)
    tau_w = xp.zeros(n, xp.f64)
    jobs_val = 0.0
    slot = E * (k + 1)  # one slot of the slot-major tables
    if n:
        cmap = xp.asarray(cmap_np, xp.i64)
        W = Gw.reshape(-1)
        off = jb.cls * (k + 1)
        o_rel = off + jb.rel * slot
        o_dl = off + jb.dl * slot
        o_T = off + T * slot

        # the lowest value of every cell r = -1 .. Gc + 1 once (float64 on every backend), and the two
        # pairs of table offsets a job's work reads (on time: deadline - release; late: end - deadline)
        lowx = gr.low(xp, np.arange(Gc + 3, dtype=np.float64) - 1.0)
        low = lowx[1:]  # low[r]: the smallest x of cell r
        o_on = xp.stack([o_dl, o_rel])
        o_late = xp.stack([o_T, o_dl])

        # only jobs with a deadline inside the horizon have a late part: for the others deadline = end, the
        # late part reads the same table cell twice and adds exactly 0 (skipped: no arcsinh, no gathers)
        lt = jb.late_rows
        o_late_l, ld_l = o_late[:, lt], jb.ld[lt]

        def work(r: Any) -> Any:
            a = W[o_on + cmap[r]]
            w = a[0] - a[1]
            if lt.shape[0]:
                b = W[o_late_l + cmap[gr.rank(xp, low[r[lt]] - ld_l)]]
                w[lt] = w[lt] + (b[0] - b[1])
            return w

        rmax = gr.rank(xp, jb.rho)
        wmax = work(rmax)
        full = wmax <= jb.R
        lo_r = xp.zeros(n, xp.i64)
        hi_r = rmax
        for _ in range(int(math.ceil(math.log2(Gc + 1))) + 1):  # integer bisection steps
            mid = (lo_r + hi_r) // 2
            wm = work(mid)
            ok = wm >= jb.R
            hi_r = xp.where(ok, mid, hi_r)
            lo_r = xp.where(ok, lo_r, mid)
        r1 = xp.where(full, rmax, hi_r)
        tau = xp.where(full, jb.rho, low[r1])
        tau_w = lowx[r1 + 2] - lowx[r1]
        r2 = gr.rank(xp, tau - jb.ld)
        # the jobs' part of the dual at these thresholds (exact for the on-time part: tau is a cell edge)
        B = Gb.reshape(-1)
        i1, i2 = o_on + cmap[r1], o_late + cmap[r2]
        a, b, ab, bb = W[i1], W[i2], B[i1], B[i2]
        w1, w2, b1, b2 = a[0] - a[1], b[0] - b[1], ab[0] - ab[1], bb[0] - bb[1]
        d = tau * w1 - b1 + (tau - jb.ld) * w2 - b2 + (jb.rho - tau) * jb.R
        jobs_val = xp.total(jb.g * d)
        N = _steps_past(xp, E, T, cell, jb.cls, jb.rel, jb.dl, r1, r2, jb.g, Gc)
        N = np.where(act, N, 0.0)
    else:
        N = np.zeros((E, T, S))
    value, g_lam, g_mu, g_nu = _slot_and_grad(c, pr, env, lam, mu, N, nu)
    value += jb.const - jobs_val + jb.dead_const
    return _DualOut(value=value, g_lam=g_lam, g_mu=g_mu, tau=tau, tau_w=tau_w, g_nu=g_nu), env


def _steps_past(xp: Ops, E: int, T: int, cell: NDArray[np.int64], cls: Any, rel: Any, dl: Any, r1: Any, r2: Any,
                g: Any, Gc: int) -> NDArray[np.float64]:
    """``N[e, t, s]``: the GPUs of the class-``e`` jobs running in slot ``t`` whose threshold cell is past the
    envelope step's ``cell[e, t, s]`` (each job's ``g`` from its release to its deadline above cell ``r1``,
    from its deadline to the end above ``r2``).

    A histogram over (slot, class, cell), a prefix over the slots, then a suffix over the cells read at each
    step. Only the cells some job's threshold falls in are columns (``k`` of the ``Gc + 1``; the others hold
    0.0 in every row, and adding 0.0 changes no sum: the same sums bit for bit as over all the cells, the
    cells' chain of additions ``k / (Gc + 1)`` as long)."""
    rr = xp.concatenate([r1, r1, r2])
    used = xp.scatter_add(Gc + 1, rr, xp.ones(rr.shape[0], xp.f64), xp.f64) > 0
    cum = xp.cumsum(xp.astype(used, xp.i64), axis=0)  # cum[r]: the used cells <= r
    k = int(cum[-1])
    # column 0 holds 0.0, column j >= 1 the j-th used cell from the top: the suffix over the cells is a prefix
    col = k + 1 - cum  # the column of used cell r
    w = k + 1
    H = xp.scatter_add(
        (T + 1) * E * w,
        xp.concatenate([rel * (E * w) + cls * w + col[r1], dl * (E * w) + cls * w + col[r1],
                        dl * (E * w) + cls * w + col[r2]]),
        xp.concatenate([g, -g, g]),
        xp.f64,
    )
    suf = xp.cumsum(xp.cumsum(H.reshape(T + 1, E, w), axis=0)[:T], axis=2)
    past = k - xp.to_numpy(cum)[cell]  # the used cells above the step's cell
    idx = (np.arange(T)[None, :, None] * (E * w) + np.arange(E)[:, None, None] * w + past).reshape(-1)
    return np.asarray(xp.to_numpy(xp.take(suf, xp.asarray(idx, xp.i64)))).reshape(cell.shape)


def _bound_exact(xp: Ops, c: _Clean, pr: _Prep, jb: _Jobs, lam: NDArray[np.float64], mu: NDArray[np.float64],
                 tau0: Any, tau_w: Any, n_refine: int = 6, nu: NDArray[np.float64] | None = None
                 ) -> tuple[float, Any, _Env]:
    """The certified dual value at (lam, mu): exact envelope tables; each job's threshold refined around
    ``tau0`` by a few bisection steps (any threshold gives a valid bound; better ones a tighter one)."""
    env = _envelope(c, pr, lam, mu, nu)
    E, T, S = pr.E, c.T, pr.S
    G = T * S
    bflat = env.b.reshape(E, G)
    order = np.argsort(bflat, axis=1, kind="stable")
    grid = np.take_along_axis(bflat, order, axis=1)
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(G)[None, :], axis=1)
    dwb = np.where(env.dw != 0, env.dw * np.where(env.b < _BIG / 2, env.b, 0.0), 0.0)
    Gw, Gb = _tables(xp, E, T, G, rank.reshape(E, T, S), [env.dw, dwb], slot_major=True)  # (T + 1, E, G + 1)
    gridd = xp.asarray(grid, xp.f64)
    value, _, _, _ = _slot_and_grad(c, pr, env, lam, mu, np.zeros((E, T, S)), nu)
    tau = xp.copy(tau0)
    dual_jobs = 0.0
    if jb.n:  # every class in one batched pass (flat tables, per-class searches in one call)
        Wf, Bf = Gw.reshape(-1), Gb.reshape(-1)
        off, slot = jb.cls * (G + 1), E * (G + 1)
        o_rel, o_dl, o_T = off + jb.rel * slot, off + jb.dl * slot, off + T * slot
        R, rho, ld = jb.R, jb.rho, jb.ld

        o_on, o_late = xp.stack([o_dl, o_rel]), xp.stack([o_T, o_dl])

        def parts(t: Any) -> tuple[Any, Any]:
            t2 = t - ld
            i1 = o_on + xp.searchsorted_rows(gridd, t, jb.layout)
            i2 = o_late + xp.searchsorted_rows(gridd, t2, jb.layout)
            a, b, ab, bb = Wf[i1], Wf[i2], Bf[i1], Bf[i2]
            w1, w2 = a[0] - a[1], b[0] - b[1]
            v = t * w1 - (ab[0] - ab[1]) + t2 * w2 - (bb[0] - bb[1])
            return w1 + w2, v + (rho - t) * R

        t0 = tau0
        w0, d0 = parts(t0)
        # bracket around tau0 and a few bisection steps on the exact work function
        step = xp.maximum(tau_w, 1e-12)
        lo = xp.where(w0 >= R, t0 - step, t0)
        hi = xp.where(w0 >= R, t0, xp.minimum(t0 + step, rho))
        best_t, best_d = t0, d0
        for _ in range(n_refine):  # refinement steps
            mid = 0.5 * (lo + hi)
            wm, dm = parts(mid)
            better = dm < best_d
            best_d = xp.where(better, dm, best_d)
            best_t = xp.where(better, mid, best_t)
            big = wm >= R
            hi = xp.where(big, mid, hi)
            lo = xp.where(big, lo, mid)
        dual_jobs = xp.total(jb.g * best_d)
        tau = best_t
    value += jb.const - dual_jobs + jb.dead_const
    return value, tau, env


# -------------------------------------------------------------------------------------------- primal
# The plan construction runs on the backend too (numpy, or torch on CPU / CUDA): every (J, T) array lives
# on the device; only per-class, per-pool and per-slot tables (a few KB) are built on the host.
_NP = get_ops()


@dataclass(frozen=True, slots=True)
class _Dev:
    """The per-job and per-slot arrays the plan construction reads, on the backend's device (numpy: the
    host arrays themselves, no copies)."""

    gpus: Any
    R: Any
    rel: Any
    dl: Any
    dl_raw: Any  # the problem's own deadline (not clipped)
    eligible: Any
    must: Any
    preempt: Any
    rpool: Any
    loss: Any
    tenant: Any
    ms: Any
    me: Any
    cap_w: Any
    base_w: Any
    kappa: Any
    H: Any
    tdp: Any
    rho_on: Any
    ldrop: Any
    map_pv: Any  # (P, V) int64
    map_pv8: Any  # (P, V) int8
    fv32: Any  # (V,) float32
    fv64: Any  # (V,) float64: fv32's values (the factors the active watts are summed with)
    infeas: Any  # (T,) bool: closed slots, where nothing but the inference served runs (``_Clean.infeas``)
    mrank: Any  # (J,) int64: ``_Clean.mrank`` (:func:`_must_win`)
    mcut: Any  # (P, T) int64: ``_Clean.mcut``
    mqcut: Any  # (N, T) int64: ``_Clean.mqcut``
    mpack: Any  # (J,) int64: ``_Clean.mpack``
    npend: Any  # (J,) int64: ``_Clean.npend``
    room_cap: Any  # (T,) the facility watts the plan construction fills up to (:data:`CAP_TOL`)
    has_dl: Any  # (J,) bool: a deadline inside the horizon (not must-run)
    qten: Any  # (J,) the job's tenant where that tenant has a quota, else the tenant count (sums skip it)

    @property
    def forced(self) -> Any:
        """``(J,)`` bool: the rows every construction keeps first: must-run inference and running
        non-preemptible jobs (in their pool)."""
        return self.must | ((self.rpool >= 0) & ~self.preempt)


def _to_dev(xp: Ops, c: _Clean, pr: _Prep, deadline: Any = None) -> _Dev:
    a = xp.asarray
    dl_raw = np.asarray(deadline if deadline is not None else c.dl, dtype=np.int64)
    return _Dev(
        gpus=a(c.gpus), R=a(c.R), rel=a(c.rel), dl=a(c.dl), dl_raw=a(dl_raw), eligible=a(c.eligible),
        must=a(c.must), preempt=a(c.preempt), rpool=a(c.rpool), loss=a(c.loss), tenant=a(c.tenant), ms=a(c.ms),
        me=a(c.me), cap_w=a(c.cap_w), base_w=a(c.base_w), kappa=a(c.kappa), H=a(c.H), tdp=a(c.tdp),
        rho_on=a(pr.rho_on), ldrop=a(pr.ldrop), map_pv=a(pr.map_pv, xp.i64), map_pv8=a(pr.map_pv.astype(np.int8)),
        fv32=a(pr.fv.astype(np.float32)), fv64=a(pr.fv.astype(np.float32).astype(np.float64)), infeas=a(c.infeas),
        mrank=a(c.mrank), mcut=a(c.mcut), mqcut=a(c.mqcut), mpack=a(c.mpack), npend=a(c.npend),
        room_cap=a(np.where(c.floor_bad, c.base_w - 1.0, c.cap_w * (1 + CAP_TOL))),
        has_dl=a(c.has_dl),
        qten=a(np.where(np.isfinite(c.quota)[c.tenant], c.tenant, c.quota.size)),
    )


def _must_win(xp: Ops, d: _Dev | _Clean, rows: Any, T: int) -> Any:
    """``(n, T)`` bool: the cells the must-run ``rows`` run at full power: their window, less the slots where they
    are shed (``mrank >= mcut`` of their pool or ``mqcut`` of their tenant: every infeasible slot, the part that does
    not fit in a marked one; :func:`kernels.check.inference_shed`). ``d``: the device arrays, or the host's
    ``_Clean`` (``xp`` numpy)."""
    tt = xp.arange(T)[None, :]
    k = d.mrank[rows][:, None]
    return ((tt >= d.ms[rows][:, None]) & (tt < d.me[rows][:, None]) & (k < d.mcut[d.mpack[rows]])
            & (k < d.mqcut[d.tenant[rows]]))


def _keep_rows(xp: Ops, n: int, cross: Any) -> Any:
    """``(n, C)`` bool: row ``j`` kept in column ``c`` while ``j < cross[c]``."""
    return xp.arange(n)[:, None] < cross[None, :]


def _prefix_keep(d: Any, cap: Any, tol: float, xp: Ops = _NP) -> Any:
    """Rows in priority order, ``d : (n, T)`` non-negative demand (0 where a row does not ask): keep a row's
    slot while the prefix sum through that row stays within ``cap[t] + tol``. The prefix only grows, so
    each slot keeps its leading rows (:meth:`Ops.prefix_cross`: a full prefix table only where a slot is
    over-full, and then only inside the block of rows where it crosses)."""
    if d.shape[0] == 0:
        return xp.ones(d.shape, xp.bool_)
    return _keep_rows(xp, d.shape[0], xp.prefix_cross(d, cap + tol))


def _prefix_keep_w(w: Any, mask: Any, cap: Any, tol: float, xp: Ops = _NP) -> Any:
    """:func:`_prefix_keep` of the demand ``w[j]`` where ``mask[j, t]`` (no (n, T) demand table)."""
    if mask.shape[0] == 0:
        return xp.ones(mask.shape, xp.bool_)
    return _keep_rows(xp, mask.shape[0], xp.prefix_cross(mask, cap + tol, w))


#: :func:`_prefix_keep_grouped`: up to this many (group, row, slot) cells every group's prefix is one (G, T, n)
#: table, above it a :meth:`Ops.prefix_cross` per group. Round 18 (H1; 1,830 calls captured from seed-0 corpus-11,
#: -105, -69 and replayed both ways: the same results; the acceptance passes of the list schedule and the phases'
#: acceptance): 19 vs 54 us a call there; on random tables 2,048 cells 26 vs 66 us, 12,288 95 vs 174 us, 24,576
#: 190 vs 181 us, 49,152 527 vs 219 us.
PREFIX_GROUPED_MAX_CELLS = 16_384


def _prefix_keep_grouped(w: Any, mask: Any, grp: Any, caps: Any, tol: float, xp: Ops = _NP, *,
                         is_sorted: bool = False) -> Any:
    """:func:`_prefix_keep` for every group at once, with demand ``w[j]`` where ``mask[j, t]``: rows in
    priority order within their group ``grp`` (``0..G-1``; rows outside count nowhere and are kept),
    ``caps : (G, T)``; a row's slot is kept while the prefix sum through it over the rows of its group
    stays within its group's cap. Up to ``PREFIX_GROUPED_MAX_CELLS`` (group, row, slot) cells one table of
    every group's prefixes, above them one :meth:`Ops.prefix_cross` per group (a loop over pools or tenants).
    ``w`` must hold whole numbers (GPU counts): then the sums are exact (the same in either way). ``is_sorted``:
    the rows are already sorted by group (each group's rows a slice, no gather; the loop's)."""
    n = mask.shape[0]
    if n == 0:
        return xp.ones(mask.shape, xp.bool_)
    G = caps.shape[0]
    lim = caps + tol
    if G * n * mask.shape[1] <= PREFIX_GROUPED_MAX_CELLS:
        # (G, T, n): each group's demand by slot and row, prefixed along the rows; a row's slot is dropped where
        # its own group's prefix passes its cap (the prefix only grows: the rows kept are the leading ones)
        one = (xp.astype(grp, xp.i64)[None, :] == xp.arange(G)[:, None])[:, None, :]  # (G, 1, n)
        pre = xp.cumsum(xp.where(one & mask.T[None], xp.astype(w, xp.f64)[None, None, :], 0.0), -1)
        return ~xp.any(one & (pre > lim[:, :, None]), 0).T
    keep = xp.ones(mask.shape, xp.bool_)
    if is_sorted:
        first = xp.to_numpy(xp.searchsorted(grp, xp.arange(G + 1)))
    fin = xp.to_numpy(xp.any(xp.isfinite(lim), 1))  # groups without a finite cap keep every row
    for k in range(G):  # pools or tenants
        if not fin[k]:
            continue
        if is_sorted:
            a, z = int(first[k]), int(first[k + 1])
            if z <= a:
                continue
            cross = xp.prefix_cross(mask[a:z], lim[k], w[a:z])
            if bool(xp.any(cross < z - a)):
                keep[a:z] = _keep_rows(xp, z - a, cross)
        else:
            rows = xp.nonzero(grp == k)
            if rows.shape[0] == 0:
                continue
            cross = xp.prefix_cross(mask[rows], lim[k], w[rows])
            if bool(xp.any(cross < rows.shape[0])):
                keep[rows] = _keep_rows(xp, rows.shape[0], cross)
    return keep


def _level_counts(vmat: Any, V: int, xp: Ops = _NP) -> Any:
    """``(n, V)`` slots each row runs at each fraction index (one int8 compare and count per level)."""
    return xp.level_counts(vmat, V)


def _job_work(tb: _Tabs, pool: Any, vmat: Any, xp: Ops = _NP) -> Any:
    """Work seconds per row from its level counts (no (J, T) float temporaries)."""
    cnt = _level_counts(vmat, tb.work.shape[1], xp)
    return xp.sum(cnt * xp.astype(tb.work[xp.maximum(pool, 0)], xp.f64), 1)


@dataclass(frozen=True, slots=True)
class _Tabs:
    """Per (pool, fraction index) tables for the primal (on the backend's device)."""

    load: Any  # (P, V) float32 facility watts per GPU above idle (0 at v = 0)
    work: Any  # (P, V) float32 work seconds per GPU and slot
    down: Any  # (P, V) int8 next lower level of the pool (itself at its lowest)
    up: Any  # (P, V) int8 next higher level of the pool (itself at its highest)
    vmin: Any  # (P,) int8 lowest level
    vfull: Any  # (P,) int8 the level used for f = 1
    dwork: Any  # (P, V) float32 work[p, up[p, v]] - work[p, v]: what a step up adds (float32, as a difference
    dload: Any  # (P, V) float32 load[p, up[p, v]] - load[p, v]   of two looked-up values would be)


def _tabs(c: _Clean, pr: _Prep, xp: Ops = _NP) -> _Tabs:
    P, V = c.P, pr.fv.size
    load = (c.pue * (pr.fv[None, :] * c.tdp[:, None] - c.idle[:, None])).astype(np.float32)
    load[:, 0] = 0.0
    work = (pr.spd_pv * c.slot_s).astype(np.float32)
    down = np.tile(np.arange(V, dtype=np.int8), (P, 1))
    up = down.copy()
    vmin = np.zeros(P, np.int8)
    for p in range(P):  # pools
        own = np.flatnonzero(pr.spd_pv[p] > 0)
        vmin[p] = own[0]
        for i, v in enumerate(own):  # a pool's few levels
            down[p, v] = own[max(i - 1, 0)]
            up[p, v] = own[min(i + 1, own.size - 1)]
    v_full = int(np.searchsorted(pr.fv, 1.0 - 1e-9))
    vfull = pr.map_pv[:, v_full].astype(np.int8)
    a = xp.asarray
    pp = np.arange(P)[:, None]
    dwork, dload = work[pp, up] - work, load[pp, up] - load
    return _Tabs(load=a(load), work=a(work), down=a(down), up=a(up), vmin=a(vmin), vfull=a(vfull), dwork=a(dwork),
                 dload=a(dload))


def _rank_plan(c: _Clean, pr: _Prep, jb: _Jobs, env: _Env, xp: Ops = _NP) -> Any:
    """Each knapsack job's envelope choice in rank space: per class the envelope steps of every slot sorted
    by breakpoint (ties: earliest slot first) are one order; a job takes the shortest prefix of it (inside
    its window) whose work covers what it needs, only steps worth their price (breakpoint below the value
    of its work), late steps against the value of late work. So a job overshoots by less than one step,
    where a threshold on the breakpoint VALUE takes every tied step at once (hourly energy data: four
    slots share a price). Returns ``vmat : (J, T) int8`` (rows of other jobs 0)."""
    E, T, S = pr.E, c.T, pr.S
    G = T * S
    vmat = xp.zeros((c.J, T), xp.i8)
    bflat = env.b.reshape(E, G)
    order = np.argsort(bflat, axis=1, kind="stable")
    grid = np.take_along_axis(bflat, order, axis=1)
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(G)[None, :], axis=1)
    rank = rank.reshape(E, T, S).astype(np.int32)
    (Gw,) = _tables(xp, E, T, G, rank, [env.dw])
    n = jb.n
    if n == 0:
        return vmat
    gridd, rankd = xp.asarray(grid, xp.f64), xp.asarray(rank)
    dv8 = env.dv.astype(np.int8)
    dvd = xp.asarray(dv8)
    ones = (dv8 == 1).all(axis=1)  # (E, S): the step adds one level in every slot
    tt = xp.arange(T)[None, :]
    # every class in one batched pass: flat prefix tables, per-class searches in one call
    W = Gw.reshape(-1)
    # the breakpoint just below a prefix of length r (-BIG for r = 0), per class: (E, G + 1) flat
    below = xp.asarray(np.concatenate([np.full((E, 1), -_BIG), grid + _EPS], axis=1).reshape(-1), xp.f64)
    gi = jb.cls * (G + 1)
    rel, dl, R, rho, ld = jb.rel, jb.dl, jb.R, jb.rho, jb.ld
    off = jb.cls * ((T + 1) * (G + 1))
    o_on = xp.stack([off + dl * (G + 1), off + rel * (G + 1)])
    o_late = xp.stack([off + T * (G + 1), off + dl * (G + 1)])
    rmax = xp.searchsorted_rows(gridd, rho, jb.layout)  # steps worth their price
    # only jobs with a deadline inside the horizon have a late part (as in _dual_coarse): their rows, still
    # class-sorted, with their own class blocks
    lt = jb.late_rows
    gi_l, rho_l, ld_l, o_late_l = gi[lt], rho[lt], ld[lt], o_late[:, lt]
    layout_l = xp.row_layout(np.searchsorted(pr.cls[jb.rows][xp.to_numpy(lt)], np.arange(E + 1)))

    def late_rank(r1: Any) -> Any:
        """The late prefix length of the late rows at their on-time prefix lengths ``r1`` (theirs only)."""
        return xp.searchsorted_rows(gridd, xp.minimum(below[gi_l + r1], rho_l) - ld_l, layout_l)

    def work(r1: Any) -> Any:
        a = W[o_on + r1]
        w = a[0] - a[1]
        if lt.shape[0]:
            b = W[o_late_l + late_rank(r1[lt])]
            w[lt] = w[lt] + (b[0] - b[1])
        return w

    lo = xp.zeros(n, xp.i64)
    hi = xp.astype(rmax, xp.i64)
    full = work(hi) < R - 1e-6
    for _ in range(int(math.ceil(math.log2(G + 1))) + 1):  # integer bisection on the prefix length
        mid = (lo + hi) // 2
        ok = work(mid) >= R - 1e-6
        hi = xp.where(ok, mid, hi)
        lo = xp.where(ok, lo, mid)
    r1 = xp.where(full, rmax, hi)
    r1 = xp.where(work(lo) >= R - 1e-6, lo, r1)
    v = xp.zeros((n, T), xp.i8)
    r1c = xp.astype(r1, xp.i32)[:, None]
    # each cell's prefix length: r1 on time, r2 late (one (n, T) table instead of a select per step); only
    # the late rows have late cells
    rc = r1c
    if lt.shape[0]:
        rc = r1c + xp.zeros((1, T), xp.i32)  # (n, T) in one pass
        r2c = xp.astype(late_rank(r1[lt]), xp.i32)[:, None]
        rc[lt] = xp.where(tt >= dl[lt][:, None], r2c, r1c[lt])
    bnd = jb.bounds  # the jobs are sorted by class: each class's rows a slice (no (n, T) gathers)
    for e in range(E):  # classes (a handful)
        a, z = int(bnd[e]), int(bnd[e + 1])
        if z <= a:
            continue
        for i in range(S):  # envelope steps of a slot: v = sum_i [rank_i < prefix] * dv_i (telescoping)
            if not dv8[e, :, i].any():
                continue
            rk = rankd[e, :, i][None, :]  # (1, T) the step's rank in its class's order
            take = rk < rc[a:z]
            if ones[e, i]:  # every slot's step is one level: add the mask (no int8 copy and product)
                v[a:z] += take
            else:
                v[a:z] += xp.astype(take, xp.i8) * dvd[e, :, i][None, :]
    vmat[jb.rows_d] = xp.where(tt >= rel[:, None], v, 0)
    return vmat


def _first_infeasible(c: _Clean) -> int:
    """The first slot whose idle floor alone breaks a cap (``_Clean.infeas``), or ``T`` where none does; at
    least 1 (slot 0 infeasible: a running job's block is cut at the next infeasible slot after it)."""
    bad = np.flatnonzero(c.infeas[1:])
    return int(bad[0]) + 1 if bad.size else c.T


def _np_windows(c: _Clean, d: _Dev, tb: _Tabs, npj: Any, pool: Any, lam: Any, mu: Any,
                xp: Ops = _NP) -> Any:
    """Non-preemptible jobs: the best single block of slots at one power level of the pool (value of the
    work done minus its price, by cumsum sliding windows per level); running ones start now; a job whose
    best block is worth nothing does not run. Returns the rows ``(len(npj), T)`` of fraction indices."""
    T = c.T
    n = npj.shape[0]
    V = d.map_pv.shape[1]
    tt = xp.arange(T)[None, :]
    pl = pool[npj]
    Rn, gn, reln = d.R[npj], d.gpus[npj], d.rel[npj]
    rho_t = xp.where(tt < d.dl[npj][:, None], d.rho_on[npj][:, None], (d.rho_on - d.ldrop)[npj][:, None])
    running = d.rpool[npj] >= 0
    best_val = xp.full((n,), -np.inf, xp.f64)
    best_start = xp.zeros(n, xp.i64)
    best_n = xp.zeros(n, xp.i64)
    best_v = xp.zeros(n, xp.i8)
    room = (d.room_cap - d.base_w)[None, :]
    released = tt >= reln[:, None]
    pp = xp.arange(c.P)
    for v in range(1, V):  # power levels (the same few for every pool)
        vv = d.map_pv[pl, v]
        w = xp.astype(tb.work[pl, vv], xp.f64)
        nn = xp.astype(xp.ceil(Rn / xp.maximum(w, 1e-9) - 1e-9), xp.i64)
        ldv = xp.astype(tb.load[pl, vv], xp.f64)
        # work beyond the need is worth nothing: the value of the block's work is scaled to the need
        scale = xp.minimum(Rn / xp.maximum(nn * w, 1e-9), 1.0)
        # a slot's price at this level depends on the pool only: a (P, T) table, gathered by the rows' pools
        price = lam[None, :] * xp.astype(tb.load[pp, d.map_pv[:, v]], xp.f64)[:, None] + mu
        val = rho_t * (w * scale)[:, None] - price[pl]
        val = xp.where(released, val, 0.0)
        # a level whose watts alone exceed a slot's room above idle cannot use that slot
        bad = (ldv * gn)[:, None] > room
        cs = xp.concatenate([xp.zeros((n, 1), xp.f64), xp.cumsum(val, 1)], 1)
        endi = xp.minimum(tt + nn[:, None], T)
        wv = xp.take_along(cs, endi, 1) - cs[:, :T]
        fits = released
        if bool(xp.any(bad)):  # blocks over such a slot are out (most levels fit every slot: no table)
            cb = xp.concatenate([xp.zeros((n, 1), xp.i32), xp.cumsum(xp.astype(bad, xp.i32), 1)], 1)
            fits = fits & (xp.take_along(cb, endi, 1) == cb[:, :T])
        wv = xp.where(fits, wv, -np.inf)
        wv[running, 1:] = -np.inf  # running: start now, and end by the slot a later one cuts it (npend: GPUs, cap)
        wv[running, 0] = xp.where((nn <= d.npend[npj]) | (d.npend[npj] >= T), wv[:, 0], -np.inf)[running]
        st = xp.argmax(wv, 1)
        bv = wv[xp.arange(n), st]
        better = bv > best_val + 1e-9
        best_val = xp.where(better, bv, best_val)
        best_start = xp.where(better, st, best_start)
        best_n = xp.where(better, nn, best_n)
        best_v = xp.astype(xp.where(better, vv, best_v), xp.i8)
    # a running job keeps going at full power (the repair decides), up to the first infeasible slot: no level's
    # block reaches its end before one, and it is shed there (a block may end unfinished before an infeasible
    # slot: _np_valid); a block over it would be dropped whole and stop the job now
    stuck = running & ~xp.isfinite(best_val)
    if bool(xp.any(stuck)):
        ps = pl[stuck]
        vfs = tb.vfull[ps]
        best_v[stuck] = vfs
        best_start[stuck] = 0
        nfull = xp.astype(xp.ceil(Rn[stuck] / xp.maximum(tb.work[ps, xp.index(vfs)], 1e-9) - 1e-9), xp.i64)
        best_n[stuck] = xp.minimum(xp.minimum(nfull, _first_infeasible(c)), d.npend[npj][stuck])
    go = running | (best_val > 0)
    win = (tt >= best_start[:, None]) & (tt < xp.minimum(best_start + best_n, T)[:, None]) & go[:, None]
    return xp.astype(xp.where(win, best_v[:, None], 0), xp.i8)


def _primal(xp: Ops, c: _Clean, pr: _Prep, jb: _Jobs, env: _Env,
            lam: NDArray[np.float64], mu: NDArray[np.float64], d: _Dev | None = None,
            tb: _Tabs | None = None, out: dict[str, Any] | None = None) -> tuple[Any, Any]:
    """Integer plan from the thresholds at prices (lam, mu), repaired to satisfy every hard constraint.

    Returns backend arrays ``vmat : (J, T) int8`` (index into ``Prep.fv``; 0 = not running) and
    ``pool : (J,)``. Steps: each job's envelope choice at its threshold; a first-choice pool; NP windows;
    trim to the work needed; a capacity-aware pool assignment (priority order, prefix sums per pool); the
    repair (pool GPUs, then facility watts by LOWERING power levels before dropping, tenant quotas); fill
    rounds that hand the headroom left to unfinished work at the lowest power level; a final raise of
    power levels where watts are left. ``out``: where given, ``out["use"]`` is the plan's :class:`_Use` (carried
    through the fill and the completion: the warm carry reads it instead of summing the plan again).
    """
    T, J = c.T, c.J
    d = d if d is not None else _to_dev(xp, c, pr)
    tb = tb if tb is not None else _tabs(c, pr, xp)
    lam_d, mu_d = xp.asarray(lam, xp.f64), xp.asarray(mu, xp.f64)
    vmat = _rank_plan(c, pr, jb, env, xp)
    v_full = int(np.searchsorted(pr.fv, 1.0 - 1e-9))
    mrow = xp.nonzero(d.must)
    if mrow.shape[0]:
        mwin = _must_win(xp, d, mrow, T)
        vmat[mrow] = xp.astype(xp.where(mwin, v_full, 0), xp.i8)
    run = vmat > 0
    # --- first-choice pool: cheapest at the prices over its run slots (full-power cost), current if running
    # (T, P) summed in float64 (float32 sums had ordered the pools of 2,305 of 50,000 jobs by their rounding)
    # each cost rounded to float32, its sums over slots taken in float64: exact (a few hundred float32 terms of
    # like magnitude), so every backend orders the pools alike whatever its summation order
    cfull = xp.asarray((lam[:, None] * (c.pue * (c.tdp - c.idle))[None, :] + mu.T).astype(np.float32), xp.f64)
    jc = xp.where(d.eligible, xp.mask_matmul(run, cfull), np.inf)
    pref = xp.argsort(jc, 1)  # (J, P) pools in order of cost
    keep_run = (d.rpool >= 0) & d.eligible[xp.arange(J), xp.maximum(d.rpool, 0)]
    pool = xp.where(keep_run, d.rpool, pref[:, 0])
    if bool((c.mpool >= 0).any()):  # inference served in a marked slot: in the pool its served watts assume
        pin = xp.asarray(c.mpool)
        keep_run = keep_run | (pin >= 0)
        pool = xp.where(pin >= 0, pin, pool)
    vmat = _remap(pr, d, vmat, pool, xp)
    # --- non-preemptible jobs: one contiguous window at full power (running ones start now)
    npj = xp.nonzero(~d.preempt & ~d.must & (d.R > 0))
    if npj.shape[0]:
        vmat[npj] = _np_windows(c, d, tb, npj, pool, lam_d, mu_d, xp)
    # running preemptible jobs keep slot 0 (no switching loss) when they run at all
    rp = xp.nonzero((d.rpool >= 0) & d.preempt & ~d.must & (vmat[:, 0] == 0) & (pool == d.rpool))
    if rp.shape[0]:
        rp = rp[xp.any(vmat[rp] > 0, 1)]
        first = xp.argmax(vmat[rp] > 0, 1)
        vmat[rp, 0] = vmat[rp, first]
    vmat = _trim(d, tb, vmat, pool, xp)
    # --- priority order: forced first, then running, then value density
    forced = d.forced
    # (non-preemptible jobs before preemptible ones: a lost slot drops them whole, while preemptible work
    # that loses a slot is lowered or moved by the fill rounds)
    cls_key = xp.where(forced, 0, xp.where(d.rpool >= 0, 1, xp.where(d.preempt, 3, 2)))
    # non-preemptible jobs of equal value density without slack first (listsched.slack_slots = 0: one start
    # only finishes them, e.g. a whole-pool job for the whole horizon), before those that can move (the
    # completion places a block again where it loses a slot). Least slack first for all of them instead
    # cost the corpus sample 0.3 points of median gap.
    from kernels import listsched  # imports this module: bound at call time

    np_key = xp.where((cls_key == 2) & (listsched.slack_slots(xp, c, d, tb) == 0), 0, 1)
    prio = xp.lexsort((d.rel, d.gpus, d.R, d.dl, np_key, -d.rho_on, cls_key))
    pool = _assign_pools(c, d, vmat > 0, pool, pref, keep_run, prio, xp)
    vmat = _remap(pr, d, vmat, pool, xp)
    vmat, pool = _repair(c, d, tb, vmat, pool, prio, forced, xp=xp)
    use = _use_of(d, tb, vmat, pool, xp)  # carried through the fill and the completion, updated by each pass
    among = None
    for _ in range(2):  # fill rounds at the lowest level (most work per watt)
        vmat, among = _fill(c, d, tb, vmat, pool, prio, lam_d, mu_d, lowest=True, xp=xp, use=use, among=among)
        if among is None:  # the same round again would place nothing either
            break
    if out is not None:
        out["use"] = use
    return _finish(xp, c, pr, d, tb, vmat, pool, prio, lam, mu, use)


def _finish(xp: Ops, c: _Clean, pr: _Prep, d: _Dev, tb: _Tabs, vmat: Any, pool: Any, prio: Any,
            lam: NDArray[np.float64], mu: NDArray[np.float64], use: _Use | None = None) -> tuple[Any, Any]:
    """The completion of a valid plan: what is undone list-scheduled in price order (:func:`_complete`),
    power raised where the work beats the carbon, then jobs still short run their slots at higher levels
    where the watts allow (a level per pass), their surplus slots are trimmed, and what is freed is
    list-scheduled again. Work is only added to jobs still short (and trimmed past what a job needs): a
    job finished (on time) before is finished (on time) after. ``use``: the plan's :class:`_Use` where the
    caller carries it (updated in place), else computed here once."""
    use = _use_of(d, tb, vmat, pool, xp) if use is None else use
    vmat, pool = _complete(xp, c, d, tb, vmat, pool, lam, mu, use)
    vmat, _, among = _raise_any(c, d, tb, vmat, pool, prio, xp, use=use)
    V = pr.fv.size
    for _ in range(V - 2):  # power levels (a pass that raises nothing leaves the next one the same input)
        if among is None:  # no row has a cell left to raise
            break
        vmat, raised, among = _raise_any(c, d, tb, vmat, pool, prio, xp, force=True, use=use, among=among)
        if not raised:
            break
    if bool(xp.any(_short_rows(d, use.done))):
        vmat = _trim(d, tb, vmat, pool, xp, use=use)
        vmat, pool = _complete(xp, c, d, tb, vmat, pool, lam, mu, use, probe=True)
    return vmat, pool


def _short_rows(d: _Dev, done: Any) -> Any:
    """``(J,)`` preemptible, not must-run jobs with work left in the plan (``done``: its work per row)."""
    return d.preempt & ~d.must & (d.R > 0) & (done < (d.R + d.loss) * (1 - 1e-7) - 1e-6)


def _np_valid(c: _Clean, d: _Dev, tb: _Tabs, vmat: Any, pool: Any, xp: Ops = _NP, use: _Use | None = None) -> Any:
    """Drop every non-preemptible (not must-run) plan row that is not one unbroken block doing all the
    job's work (a block may end unfinished only at the horizon end or before an infeasible slot): the
    checker's rule, enforced on the plan itself (a pool move or a level remap can leave a block short)."""
    T = c.T
    rows = xp.nonzero(~d.preempt & ~d.must & xp.any(vmat > 0, 1))
    if rows.shape[0] == 0:
        return vmat
    r = xp.astype(vmat[rows] > 0, xp.i8)
    prev = xp.concatenate([xp.zeros((rows.shape[0], 1), xp.i8), r[:, :-1]], 1)
    blocks = xp.count_nonzero((r == 1) & (prev == 0), 1)
    last = T - 1 - xp.argmax(xp.flip(r, 1) > 0, 1)
    nxt = xp.minimum(last + 1, T - 1)
    open_end = (last == T - 1) | d.infeas[nxt] | (last + 1 == d.npend[rows])
    done = _job_work(tb, pool[rows], vmat[rows], xp)
    stay = (pool[rows] == d.rpool[rows]) & (vmat[rows, 0] > 0)
    need = d.R[rows] + xp.where(stay, 0.0, d.loss[rows])
    bad = (blocks > 1) | (~open_end & (done < need * (1 - 1e-7)))
    if bool(xp.any(bad)):
        rb = rows[bad]
        old = vmat[rb]
        vmat[rb] = 0
        _use_swap(use, d, tb, rb, old, pool[rb], vmat[rb], pool[rb], xp)
    return vmat


def _level_cost(xp: Ops, c: _Clean, tb: _Tabs, lam: Any, mu: Any, lowest: bool = False) -> Any:
    """``(P, T)`` float64 price of a GPU in each pool and slot at the pool's full-power level (``lowest``:
    its lowest level): ``lam * watts + mu``, the slot order of the list schedules."""
    lv = xp.to_numpy(tb.vmin if lowest else tb.vfull).astype(np.int64)
    load = xp.to_numpy(tb.load).astype(np.float64)[np.arange(c.P), lv]
    return xp.asarray(lam[None, :] * load[:, None] + mu, xp.f64)


def _complete(xp: Ops, c: _Clean, d: _Dev, tb: _Tabs, vmat: Any, pool: Any, lam: NDArray[np.float64],
              mu: NDArray[np.float64], use: _Use | None = None, probe: bool = False,
              rank: Any = None) -> tuple[Any, Any]:
    """The completion pass: broken non-preemptible rows dropped (:func:`_np_valid`), then what the prices
    left undone placed by list scheduling (:func:`kernels.listsched.list_schedule`) in price order
    (``lam * watts + mu`` per pool and slot), jobs earliest deadline first (or in the order ``rank``), at
    full power and then at the lowest level (most work per watt where watts are what is short). ``probe``
    (with ``use``): each list schedule only where :func:`_may_place` finds a cell it could place (the same
    plan: it would place none)."""
    from kernels import listsched  # imports this module: bound at call time

    vmat = _np_valid(c, d, tb, vmat, pool, xp, use)
    for lowest in (False, True):  # power levels: full, then the pool's lowest
        if probe and use is not None and not _may_place(c, d, tb, vmat, pool, use, xp):
            break  # (nor would a later pass: the plan stays as it is)
        rank = listsched.edf_rank(xp, c, d) if rank is None else rank
        cost = _level_cost(xp, c, tb, lam, mu, lowest)
        vmat, pool = listsched.list_schedule(xp, c, d, tb, vmat, pool, rank, cost, lowest=lowest, use=use)
    return vmat, pool


def _np_rows(c: _Clean) -> NDArray[np.bool_]:
    """``(J,)`` host bool: the non-preemptible jobs whose block a construction may place anew (not must-run,
    not running, work left, released inside the horizon)."""
    return ~c.preempt & ~c.must & (c.rpool < 0) & (c.R > 0) & (c.rel < c.T)


#: job orders :func:`_np_blocks` tries past the first (least slack first, then the rows left without a whole
#: block moved to the front, once per try)
NP_PACK_TRIES = 3


def _np_blocks(xp: Ops, c: _Clean, d: _Dev, tb: _Tabs, base: Any, pool: Any, rows: Any,
               lam: NDArray[np.float64], mu: NDArray[np.float64]) -> tuple[Any, Any, Any]:
    """The non-preemptible jobs ``rows`` (``(J,)`` bool on the backend) placed in blocks on the plan ``base``
    (whose other rows stay as they are) by the completion's list schedule (:func:`_complete`: price order,
    full power, then the lowest level), as if only ``base`` ran: side by side where they fit. The first
    order is earliest deadline first; where it leaves a row without a block that does all its work (a block
    the horizon cuts off, or none: the blocks placed before it cut the free room up), the rows are placed
    again least slack first (long and wide blocks before the room is cut up), then with the rows still
    without a whole block first (at most :data:`NP_PACK_TRIES` more orders); the order that finishes most
    of them is kept (the first on ties). Returns the plan, its pools and the ``(J,)`` mask of the rows it
    leaves without a whole block. A list schedule per order over those rows only: no loop over jobs."""
    from kernels import listsched  # imports this module: bound at call time

    d_np = replace(d, R=xp.where(rows, d.R, 0.0))  # only these rows ask for work
    # (the rows do not run in base: a new block pays the switching loss; a running row that starts again in
    # its pool pays none, so it may count as short here: one order more is tried at most)
    need = (d.R + d.loss) * (1 - 1e-7)

    def place(rank: Any) -> tuple[Any, Any, Any, int]:
        v, p = _complete(xp, c, d_np, tb, xp.copy(base), xp.copy(pool), lam, mu, rank=rank)
        miss = rows & (_job_work(tb, p, v, xp) < need)
        return v, p, miss, int(xp.to_numpy(miss).sum())

    edf = listsched.edf_rank(xp, c, d)
    best = place(edf)
    order = listsched.slack_rank(xp, c, d, tb)
    for k in range(NP_PACK_TRIES):  # job orders
        if best[3] == 0:
            break
        if k:  # the rows the best order so far leaves without a whole block first
            order = xp.empty(c.J, xp.i64)
            order[xp.lexsort((edf, xp.where(best[2], 0, 1)))] = xp.arange(c.J)
        got = place(order)
        if got[3] < best[3]:
            best = got
    return best[0], best[1], best[2]


def _may_place(c: _Clean, d: _Dev, tb: _Tabs, vmat: Any, pool: Any, use: _Use, xp: Ops = _NP) -> bool:
    """False only where :func:`kernels.listsched.list_schedule` (at full power or at the lowest level) would
    place nothing on this plan (``use``: its :class:`_Use`): no row it may ask for has a free cell with room
    for it in a pool it may use. Every cell it places is one of its first round's proposals, and those are
    such cells; this is a superset of them: its rows (preemptible ones with work left, non-preemptible ones
    that do not run, and preemptible ones that finish but run past their deadline, which ask for on-time
    cells only) and their free released cells in a feasible slot with their GPUs left in their tenant's
    quota, in an eligible pool (their running or planned one where they have one) with the GPUs for them
    and the watts at the lower of the two levels. At scale the completion after the raises mostly places nothing (a full site:
    no room for any row that is still short), and this costs a fraction of its two list schedules."""
    T = c.T
    tt = xp.arange(T)[None, :]
    runs = xp.any(vmat > 0, 1)
    stay = (pool == d.rpool) & (vmat[:, 0] > 0)
    need = d.R + xp.where(stay, 0.0, d.loss)
    short = ~d.must & xp.where(d.preempt, use.done < need, ~runs & (d.R > 0) & (d.rel < T))
    late = d.preempt & ~d.must & d.has_dl & runs & ~short
    lr = xp.nonzero(late)
    if lr.shape[0]:  # ... those with a cell at or past their deadline
        late[lr] = xp.any((vmat[lr] > 0) & (tt >= d.dl[lr][:, None]), 1)
    rows = xp.nonzero(short | late)
    if rows.shape[0] == 0:
        return False
    free = (vmat[rows] == 0) & (tt >= d.rel[rows][:, None]) & ~d.infeas[None, :]
    free = free & (short[rows][:, None] | (tt < d.dl[rows][:, None]))  # a row that finishes: on-time cells
    fixed = xp.where(d.rpool >= 0, d.rpool, xp.where(runs, pool, -1))[rows]
    g = xp.astype(d.gpus[rows], xp.f64)
    if np.isfinite(c.quota).any():  # rows of tenants with a quota: the slots with their GPUs left in it
        qr = xp.nonzero(d.qten[rows] < c.quota.size)
        if qr.shape[0]:
            left_q = xp.asarray(c.quota, xp.f64)[:, None] - _quota_use(c, d, vmat > 0, xp)
            free[qr] = free[qr] & (left_q[d.tenant[rows[qr]]] >= g[qr][:, None] - 1e-9)
    room_w = d.room_cap - use.fac
    load = xp.to_numpy(tb.load).astype(np.float64)
    lo, hi = xp.to_numpy(tb.vmin).astype(np.int64), xp.to_numpy(tb.vfull).astype(np.int64)
    for p in range(c.P):  # pools
        okp = d.eligible[rows, p] & ((fixed < 0) | (fixed == p))
        if not bool(xp.any(okp)):
            continue
        ld = min(float(load[p, lo[p]]), float(load[p, hi[p]]))
        fits = (free & okp[:, None] & ((d.H[p] - use.busy[p])[None, :] >= g[:, None] - 1e-6)
                & (room_w[None, :] >= (ld * g)[:, None]))
        if bool(xp.any(fits)):
            return True
    return False


def _remap(pr: _Prep, d: _Dev, vmat: Any, pool: Any, xp: Ops = _NP) -> Any:
    """Power-fraction indices moved onto each job's pool's own levels (a no-op when pools share levels)."""
    V = pr.fv.size
    if bool((pr.map_pv == np.arange(V)[None, :]).all() or (pr.map_pv == pr.map_pv[:1]).all()):
        return vmat
    return xp.lookup(d.map_pv8, pool, vmat)


def _trim(d: _Dev, tb: _Tabs, vmat: Any, pool: Any, xp: Ops = _NP, done: Any = None, use: _Use | None = None) -> Any:
    """Drop the slots after a job has done all its work (earliest slots kept). ``done : (J,)``: the plan's
    work per row where the caller already holds it (:func:`_job_work` of this ``vmat``); ``use``: the plan's
    :class:`_Use` (its ``done`` read), updated in place by what is trimmed."""
    done = use.done if use is not None and done is None else done
    pc = xp.maximum(pool, 0)
    done = _job_work(tb, pool, vmat, xp) if done is None else done
    need = d.R + d.loss - 1e-3
    rows = xp.nonzero(~d.must & (done - tb.work[pc, xp.index(tb.vfull[pc])] >= need) & (done > 0))
    if rows.shape[0] == 0:
        return vmat
    sub = vmat[rows]
    work = xp.lookup(tb.work, pool[rows], sub)
    before = xp.cumsum(work, 1) - work
    old = xp.copy(sub) if use is not None else None
    sub[before >= xp.astype(need, xp.f32)[rows][:, None]] = 0
    vmat[rows] = sub
    if use is not None:
        _use_swap(use, d, tb, rows, old, pool[rows], sub, pool[rows], xp)
    return vmat


def _assign_pools(c: _Clean, d: _Dev, run: Any, pool: Any, pref: Any, fixed: Any, prio: Any,
                  xp: Ops = _NP) -> Any:
    """One pool per job that fits: jobs in (preference rank, pool) groups, most restrictive eligibility and
    then priority first, each accepted while the pool's per-slot GPU prefix sum stays within its GPUs (two
    passes per group). Running jobs keep their pool; a job that fits nowhere keeps its first choice (the
    repair then trims it). Avoids the herding of every job of a class onto the pool that is cheapest by
    a hair at the prices."""
    P, J = c.P, c.J
    asks = xp.any(run, 1)
    pool = xp.copy(pool)
    room = d.H - xp.group_rowsum(xp.where(fixed & asks, pool, P), P, d.gpus, run)
    todo = asks & ~fixed
    if P == 1 or not bool(xp.any(todo)):
        return pool
    rank = xp.empty(J, xp.i64)
    rank[prio] = xp.arange(J)
    key = xp.sum(d.eligible, 1) * (J + 1) + rank
    done = ~todo
    jj = xp.arange(J)
    for k in range(P):  # preference rank: every pool's group at once (a job is in one group per rank)
        pk = pref[:, k]
        rows = xp.nonzero(~done & d.eligible[jj, pk])
        if rows.shape[0] == 0:
            continue
        grp = pk[rows]
        o = xp.lexsort((key[rows], grp))  # by pool, then eligibility and priority
        rows, grp = rows[o], grp[o]
        gr, mr = d.gpus[rows], run[rows]
        for _ in range(2):  # passes: accept, then retry the rest on the room left
            ok = xp.all(_prefix_keep_grouped(gr, mr, grp, room, 1e-3, xp, is_sorted=True), 1)
            acc = rows[ok]
            if acc.shape[0]:
                pool[acc] = grp[ok]
                done[acc] = True
                room = room - xp.group_rowsum(grp[ok], P, gr[ok], mr[ok])
            nok = ~ok
            rows, grp, gr, mr = rows[nok], grp[nok], gr[nok], mr[nok]
            if rows.shape[0] == 0:
                break
    return pool


def _repair(c: _Clean, d: _Dev, tb: _Tabs, vmat: Any, pool: Any, prio: Any, forced: Any, rounds: int = 2,
            xp: Ops = _NP, left: tuple[Any, Any, Any] | None = None, hold: Any = None) -> tuple[Any, Any]:
    """Make the plan feasible, rows in priority order: pool GPUs (jobs that do not fit move to the eligible
    pool with the most room, ``rounds`` times), facility watts (first lower power levels of the lowest-
    priority preemptible jobs in over-full slots, top levels first, then drop), tenant quotas; a non-
    preemptible job that loses a slot is dropped whole. ``left``: the room the rows ``prio`` share where the
    other rows keep theirs (free GPUs ``(P, T)``, facility watts above the idle base ``(T,)``, tenant quota
    ``(NQ, T)`` or None where no tenant has one); the rows not in ``prio`` are returned as they are. ``hold``
    (backend bool ``(J,)``, rows ranked in ``prio`` before every row but the forced ones): rows whose power
    levels are lowered last, and only as far as dropping the other unforced rows' cells would not free the
    watts (:func:`kernels.complete.carry`'s rows taken from the witness, which ran them at full power)."""
    T, P = c.T, c.P
    H = d.H if left is None else left[0]
    V = d.map_pv.shape[1]
    # only the rows that run (in priority order): an empty row asks for nothing, counts in no prefix sum and
    # stays empty with its pool (the greedy repairs its must-run rows only)
    prio = prio[xp.any(vmat > 0, 1)[prio]]
    v = vmat[prio]
    pl = pool[prio]
    g = d.gpus[prio]
    g32 = xp.astype(g, xp.f32)
    el = d.eligible[prio]
    rp = d.rpool[prio]
    npre = ~d.preempt[prio]

    def pool_keep(run: Any) -> Any:  # every pool's prefix at once (rows in priority order within a pool)
        return _prefix_keep_grouped(g, run, pl, H, 1e-3, xp)

    run = v > 0
    run0 = xp.copy(run)
    keep = None  # pool_keep(run) at the current pools (None: a row moved since)
    for _ in range(rounds):  # re-assignment rounds
        keep = pool_keep(run)
        bad = run & ~keep
        short = xp.nonzero(xp.any(bad, 1) & ~((rp >= 0) & npre))
        ns = short.shape[0]
        if ns == 0:
            break
        room = H - xp.group_rowsum(pl, P, g, run & keep)
        rs = run[short]
        gs = g[short][:, None]
        lack = xp.stack([xp.count_nonzero(rs & (room[p][None, :] < gs), 1) for p in range(P)], 1)
        lack = xp.where(el[short], lack, T + 1)
        lack[xp.arange(ns), pl[short]] = T + 1  # its current pool is full: move
        best = xp.argmin(lack, 1)
        cur_bad = xp.count_nonzero(bad[short], 1)
        move = lack[xp.arange(ns), best] < cur_bad
        sm = short[move]
        if sm.shape[0]:
            pl[sm] = best[move]
            v[sm] = d.map_pv8[best[move][:, None], xp.index(v[sm])]
            keep = None
    run = run & (pool_keep(run) if keep is None else keep)
    v = xp.astype(xp.where(run, v, 0), xp.i8)
    # facility watts (site max and grid cap)
    room_w = d.room_cap - d.base_w if left is None else left[1]
    fac = xp.zeros(T, xp.f64)
    for lv in range(1, V):  # power levels
        fac = fac + xp.rowsum_w(g * xp.astype(tb.load[pl, lv], xp.f64), v == lv)
    exc = fac - room_w
    cols = xp.nonzero(exc > 0)
    if cols.shape[0]:
        vs, ex = v[:, cols], exc[cols]
        lds = xp.lookup(tb.load, pl, vs) * g32[:, None]
        can = (d.preempt & ~d.must)[prio]
        # the rows ``hold`` are lowered only after every other row, and only by what dropping the cells of
        # every row neither held nor forced (after them in ``prio``: _prefix_keep below) would not free
        phases = [can] if hold is None else [can & ~hold[prio], can & hold[prio]]
        for k, can in enumerate(phases):
            need = ex if k == 0 else ex - xp.sum(xp.where((~hold[prio] & ~forced[prio])[:, None], lds, 0.0), 0)
            vs, lds, need, ex = _lower_levels(xp, tb, pl, g32, vs, lds, can, need, ex, V, _LOWER_ALL)
        if NP_LOWER_FOR_FORCED:
            # the forced rows come first in ``prio``: where they alone exceed the room the prefix below would drop
            # one of them (inference unserved, a running block stopped); the running non-preemptible rows (forced,
            # not must-run: inference runs at full power) come down first, top levels first, by that excess only
            fz = forced[prio]
            need = xp.sum(xp.where(fz[:, None], lds, 0.0), 0) - room_w[cols]
            if bool(xp.any(need > 0)):
                vs, lds, need, ex = _lower_levels(xp, tb, pl, g32, vs, lds, fz & npre & ~d.must[prio] & (rp >= 0),
                                                  need, ex, V, False)
        keep = _prefix_keep(lds, room_w[cols], 0.0, xp)
        v[:, cols] = xp.astype(xp.where(keep, vs, 0), xp.i8)
    run = v > 0
    # tenant quotas
    if np.isfinite(c.quota).any():  # every tenant's prefix at once (no quota: an infinite cap)
        capq = xp.asarray(np.repeat(c.quota[:, None], T, axis=1), xp.f64) if left is None else left[2]
        run = run & _prefix_keep_grouped(g, run, d.tenant[prio], capq, 1e-9, xp)
    # non-preemptible (not forced): a lost slot drops the whole job
    npm = (~d.preempt & ~d.must)[prio] & ~forced[prio]
    lost = xp.any(run0 & ~run, 1) & npm
    run[lost] = False
    v = xp.astype(xp.where(run, v, 0), xp.i8)
    out = xp.zeros(vmat.shape, xp.i8) if left is None else xp.copy(vmat)
    out[prio] = v
    pout = xp.copy(pool)
    pout[prio] = pl
    return out, pout


def _lower_levels(xp: Ops, tb: _Tabs, pl: Any, g32: Any, vs: Any, lds: Any, can: Any, need: Any, ex: Any, V: int,
                  lower_all: bool) -> tuple[Any, Any, Any, Any]:
    """:func:`_repair`'s level lowering in the over-full columns: the rows ``can`` (``(n,)``, in priority order)
    come down one power level at a time, top levels first (least work lost per watt), the last rows first, while
    the column's ``need`` (watts, ``(C,)``) is not met (``lower_all``: every candidate). ``vs``/``lds``: ``(n, C)``
    levels and facility watts of the columns. Returns them lowered, with ``need`` and the excess ``ex`` less what
    was freed (``V``: the level count). No loop over rows or slots (over levels)."""
    for top in range(V - 1, 1, -1):  # power levels, top first
        over = need > 0
        if not bool(xp.any(over)):
            break
        cand = can[:, None] & (vs >= top) & over[None, :]
        vd = xp.lookup(tb.down, pl, vs)
        cand = cand & (vd < vs)
        freed = xp.where(cand, lds - xp.lookup(tb.load, pl, vd) * g32[:, None], 0.0)
        below = xp.flip(xp.cumsum64(xp.flip(freed, 0), 0), 0) - freed  # freed by lower rows
        low = cand if lower_all else cand & (below < need[None, :])
        vs = xp.where(low, vd, vs)
        got = xp.sum(xp.where(low, freed, 0.0), 0)
        ex, need = ex - got, need - got
        lds = xp.where(low, lds - freed, lds)
    return vs, lds, need, ex


def _usage(d: _Dev, tb: _Tabs, vmat: Any, pool: Any, xp: Ops = _NP) -> tuple[Any, Any]:
    """Busy GPUs ``(P, T)`` and facility watts ``(T,)`` of a plan (per-pool sums, no (J, T) index arrays)."""
    P = d.H.shape[0]
    busy = xp.group_rowsum(pool, P, d.gpus, vmat > 0)
    return busy, _fac(d, tb, vmat, pool, xp)


#: :func:`_fac` sums the rows' watts per (level, slot) in one scatter-add up to this many plan cells, per level
#: above (a compare and a weighted row sum each; round 16: 32 x 32 plans ~3x faster in one, and the (n, T)
#: int64 and float64 tables it makes stay small: none on the 50,000-job plans). The same sums: whole GPU counts
#: times float32 watts, which float64 adds exactly in any order (as :class:`_Use`)
FAC_PAIRS_MAX_CELLS = 32_768


def _fac(d: _Dev, tb: _Tabs, vmat: Any, pool: Any, xp: Ops = _NP) -> Any:
    """Facility watts ``(T,)`` of a plan (the second half of :func:`_usage`, for callers that need no GPUs)."""
    fac = xp.copy(d.base_w)
    pc = xp.maximum(pool, 0)
    V = int(tb.load.shape[1])
    n, T = (int(x) for x in vmat.shape)
    if 0 < n * T <= FAC_PAIRS_MAX_CELLS:  # (no rows: the base watts, by the pass below)
        lv = xp.astype(vmat, xp.i64)
        w = xp.take_along(d.gpus[:, None] * xp.astype(tb.load[pc], xp.f64), lv, 1)  # (n, T) each cell's watts
        per = xp.scatter_add(V * T, (lv * T + xp.arange(T)[None, :]).reshape(n * T), w.reshape(n * T), xp.f64)
        for v in range(1, V):  # power levels (added to the base in the order of the pass per level)
            fac = fac + per[v * T:(v + 1) * T]
        return fac
    for v in range(1, V):  # power levels
        fac = fac + xp.rowsum_w(d.gpus * xp.astype(tb.load[pc, v], xp.f64), vmat == v)
    return fac


def _quota_use(c: _Clean, d: _Dev, run: Any, xp: Ops = _NP, rows: Any = None, gpus: Any = None) -> Any:
    """GPUs ``(NQ, T)`` float64 each tenant with a quota runs per slot: the plan's rows (``run``: their
    ``(J, T)`` run mask), or only the rows ``rows`` (``run``: theirs, ``(n, T)``; ``gpus``: their GPU
    counts where the caller holds them). Tenants without a quota count nowhere (their room is infinite)."""
    qten = d.qten if rows is None else d.qten[rows]
    if gpus is None:
        gpus = d.gpus if rows is None else d.gpus[rows]
    return xp.group_rowsum(qten, c.quota.size, gpus, run)


@dataclass(slots=True)
class _Use:
    """What a plan uses, carried through the completion's passes and updated by what each pass changed (no
    (J, T) pass per step): busy GPUs ``(P, T)``, facility watts ``(T,)`` (idle base included) and work per
    row ``(J,)``. The sums are of whole GPU counts and float32 watts / work times GPU counts, which float64
    adds exactly, so an updated ``_Use`` equals the one recomputed from the plan (:func:`_use_of`)."""

    busy: Any
    fac: Any
    done: Any


def _use_of(d: _Dev, tb: _Tabs, vmat: Any, pool: Any, xp: Ops = _NP) -> _Use:
    """:class:`_Use` of a plan, from the whole plan."""
    busy, fac = _usage(d, tb, vmat, pool, xp)
    return _Use(busy, fac, _job_work(tb, pool, vmat, xp))


def _rows_use(d: _Dev, tb: _Tabs, rows: Any, sub: Any, pl: Any, xp: Ops = _NP) -> tuple[Any, Any]:
    """Busy GPUs ``(P, T)`` and facility watts above the base ``(T,)`` of the plan rows ``sub`` (jobs
    ``rows`` in pools ``pl``): :func:`_usage`'s sums over those rows only."""
    g = d.gpus[rows]
    busy = xp.group_rowsum(pl, d.H.shape[0], g, sub > 0)
    fac = xp.zeros(sub.shape[1], xp.f64)
    pc = xp.maximum(pl, 0)
    for v in range(1, tb.load.shape[1]):  # power levels
        fac = fac + xp.rowsum_w(g * xp.astype(tb.load[pc, v], xp.f64), sub == v)
    return busy, fac


def _use_swap(use: _Use | None, d: _Dev, tb: _Tabs, rows: Any, old: Any, old_pl: Any, new: Any, new_pl: Any,
              xp: Ops = _NP) -> None:
    """``use`` updated in place for the plan rows ``rows`` that changed from ``old`` (pools ``old_pl``) to
    ``new`` (pools ``new_pl``); nothing when ``use`` is None."""
    if use is None or rows.shape[0] == 0:
        return
    b0, f0 = _rows_use(d, tb, rows, old, old_pl, xp)
    b1, f1 = _rows_use(d, tb, rows, new, new_pl, xp)
    use.busy = use.busy - b0 + b1
    use.fac = use.fac - f0 + f1
    use.done[rows] = _job_work(tb, new_pl, new, xp)


def _unfinished(d: _Dev, tb: _Tabs, vmat: Any, pool: Any, also: Any, xp: Ops, use: _Use | None = None
                ) -> tuple[Any, Any]:
    """Preemptible, not must-run jobs with a pool (and ``also``, when given) whose plan does less work than
    they need: their rows and the work their plan does (``use.done`` where the caller carries it)."""
    ok = d.preempt & ~d.must & (pool >= 0)
    rows = xp.nonzero(ok if also is None else ok & also)
    if rows.shape[0] == 0:
        return rows, xp.zeros(0, xp.f64)
    done = _job_work(tb, pool[rows], vmat[rows], xp) if use is None else use.done[rows]
    short = done < (d.R + d.loss)[rows] - 1e-3
    return rows[short], done[short]


def _fill(c: _Clean, d: _Dev, tb: _Tabs, vmat: Any, pool: Any, prio: Any, lam: Any, mu: Any, *,
          lowest: bool = False, xp: Ops = _NP, use: _Use | None = None, among: Any = None) -> tuple[Any, Any]:
    """Hand the headroom left to unfinished preemptible work: each job asks for the slots it still needs,
    its most valuable ones first (at full power, or at its pool's lowest level with ``lowest``); slots
    accept in priority order by prefix sums (pool GPUs, facility watts, tenant quotas). Returns the plan and,
    where a cell was placed, the ``(J,)`` mask of the rows that had a candidate slot (None where none was
    placed: ``vmat`` is as it was, and the same round again would place nothing). A fill only adds cells, so
    the room, the free slots and the rows still unfinished only shrink while the prices stay: a row without
    a candidate slot has none in a later round at the same level either, and ``among`` (that mask, from the
    round before) spares the later round those rows. ``use``: the plan's :class:`_Use`, read instead of
    recomputed and updated in place by what is placed."""
    T, J = c.T, c.J
    cand_j, done = _unfinished(d, tb, vmat, pool, d.rel < T if among is None else among & (d.rel < T), xp, use)
    if cand_j.shape[0] == 0:
        return vmat, None
    sub = vmat[cand_j]
    busy, fac = _usage(d, tb, vmat, pool, xp) if use is None else (use.busy, use.fac)
    tt = xp.arange(T)[None, :]
    pl = pool[cand_j]
    vf = (tb.vmin if lowest else tb.vfull)[pl]
    g0 = xp.astype(d.gpus[cand_j], xp.f32)
    ldlev = tb.load[pl, xp.index(vf)]
    # only free slots after release with room for the job (GPUs of its pool, facility watts) can take it
    room_w = xp.astype(d.room_cap - fac, xp.f32)
    # the room test depends on the row's pool and GPU count only: a (pool, distinct count, T) table, gathered
    g_u, g_inv = np.unique(xp.to_numpy(g0), return_inverse=True)
    gu = xp.asarray(g_u, xp.f32)
    ld_p = tb.load[xp.arange(c.P), xp.index(tb.vmin if lowest else tb.vfull)]  # (P,) a GPU's watts at the level
    fit = ((xp.astype(d.H - busy, xp.f32)[:, None, :] >= gu[None, :, None])
           & (room_w[None, None, :] >= (ld_p[:, None] * gu[None, :])[:, :, None]))
    key = xp.astype(pl, xp.i64) * g_u.size + xp.asarray(g_inv.reshape(-1), xp.i64)
    cand = (sub == 0) & (tt >= d.rel[cand_j][:, None]) & fit.reshape(-1, T)[key]
    rows_any = xp.nonzero(xp.any(cand, 1))
    if rows_any.shape[0] == 0:
        return vmat, None
    cand_j, done, pl, vf, cand, ldlev = (cand_j[rows_any], done[rows_any], pl[rows_any], vf[rows_any],
                                         cand[rows_any], ldlev[rows_any])
    wlev = tb.work[pl, xp.index(vf)]
    rho_on = xp.astype(d.rho_on[cand_j], xp.f32)
    rho_t = xp.where(tt < d.dl[cand_j][:, None], rho_on[:, None],
                     (rho_on - xp.astype(d.ldrop[cand_j], xp.f32))[:, None])
    # a slot's price depends on the row's pool only (its level is the pool's): a (P, T) table, gathered
    price = xp.astype(xp.minimum(lam, d.kappa)[None, :] * xp.astype(ld_p, xp.f64)[:, None] + mu, xp.f32)[pl]
    gain = rho_t * wlev[:, None] - price
    cand = cand & (gain > 0)
    had = xp.zeros(J, xp.bool_)  # the rows with a candidate slot (the next round's ``among``)
    had[cand_j[xp.any(cand, 1)]] = True
    need = xp.ceil((d.R[cand_j] + d.loss[cand_j] - done) / wlev - 1e-9)
    # rows with more candidate slots than they need keep their most valuable ones (a sort only for those)
    over = xp.nonzero(xp.astype(xp.count_nonzero(cand, 1), xp.f64) > need)
    if over.shape[0]:
        cand[over] = cand[over] & _smallest_k(xp, xp.where(cand[over], -gain[over], np.inf), need[over])
    keep_rows = xp.any(cand, 1)
    if not bool(xp.any(keep_rows)):
        return vmat, None
    rank = xp.empty(J, xp.i64)
    rank[prio] = xp.arange(J)
    o = xp.nonzero(keep_rows)
    o = o[xp.argsort(rank[cand_j[o]])]
    cj, ok, vf_o, pl_o = cand_j[o], cand[o], vf[o], pl[o]
    g = xp.astype(d.gpus[cj], xp.f32)
    # tenant quotas first, then pool GPUs, then watts: each prefix counts only what the earlier ones let
    # through (a cell a later check rejects still holds room in the earlier prefixes: ``rounds`` repeat)
    if np.isfinite(c.quota).any():  # every tenant's prefix at once (no quota: an infinite cap)
        used = _quota_use(c, d, vmat > 0, xp)  # tenants without a quota: 0 (inf left)
        capq = xp.asarray(c.quota, xp.f64)[:, None] - used
        ok = ok & _prefix_keep_grouped(g, ok, d.tenant[cj], capq, 1e-9, xp)
    ok = ok & _prefix_keep_grouped(g, ok, pl_o, d.H - busy, 1e-3, xp)
    ok = ok & _prefix_keep_w(tb.load[pl_o, xp.index(vf_o)] * g, ok, d.room_cap - fac, 0.0, xp)
    if not bool(xp.any(ok)):
        return vmat, None
    vmat[cj] = xp.astype(xp.where(ok, vf_o[:, None], vmat[cj]), xp.i8)
    if use is not None:  # the cells placed (free before, one level per row)
        gd = xp.astype(d.gpus[cj], xp.f64)
        use.busy = use.busy + xp.group_rowsum(pl_o, c.P, gd, ok)
        use.fac = use.fac + xp.rowsum_w(gd * xp.astype(tb.load[pl_o, xp.index(vf_o)], xp.f64), ok)
        use.done[cj] = use.done[cj] + xp.astype(xp.count_nonzero(ok, 1), xp.f64) * xp.astype(
            tb.work[pl_o, xp.index(vf_o)], xp.f64)
    return vmat, had


def _smallest_k(xp: Ops, key: Any, k: Any) -> Any:
    """``(n, T)`` bool: the ``k[i]`` smallest keys of each row of ``key``, ties by column (the cells a stable
    argsort puts first; ``k`` whole numbers as float). The k-th smallest value from a value sort, then the
    ties at it by a running count: no argsort and no inverse permutation."""
    T = key.shape[1]
    kth = xp.astype(xp.minimum(xp.maximum(k - 1, 0), T - 1), xp.i64)
    thr = xp.take_along(xp.sort(key, 1), kth[:, None], 1)  # (n, 1) the k-th smallest key
    below = key < thr
    eq = key == thr
    return below | (eq & xp.count_upto(eq, k - xp.astype(xp.count_nonzero(below, 1), xp.f64)))


def _raise(c: _Clean, d: _Dev, tb: _Tabs, vmat: Any, pool: Any, prio: Any, xp: Ops = _NP, *,
           force: bool = False, use: _Use | None = None) -> Any:
    """Watts left in a slot go to unfinished preemptible jobs running there below full power: one level up,
    priority order, while the slot's facility prefix sum stays within its cap. ``force``: also where the
    work gained does not beat the carbon (the completion: finish a job rather than save its carbon)."""
    return _raise_any(c, d, tb, vmat, pool, prio, xp, force=force, use=use)[0]


def _raise_any(c: _Clean, d: _Dev, tb: _Tabs, vmat: Any, pool: Any, prio: Any, xp: Ops = _NP, *,
               force: bool = False, use: _Use | None = None, among: Any = None) -> tuple[Any, bool, Any]:
    """:func:`_raise`, whether it raised any cell (a pass that raised none leaves ``vmat`` as it was, so the
    same pass again would raise none either), and the ``(J,)`` mask of the unfinished rows with a cell below
    their pool's top level (None: no such row). A raise only moves cells up and adds work, so a row outside
    that mask has no cell to raise in a later pass either: ``among`` (the mask of the pass before) spares
    the later pass those rows. ``use``: as in :func:`_fill`."""
    rows, done = _unfinished(d, tb, vmat, pool, among, xp, use)
    if rows.shape[0] == 0:
        return vmat, False, None
    sub = vmat[rows]
    # only rows that run can be raised (a row without a candidate cell counts in no sum below: dropped)
    r = xp.nonzero(xp.any(sub > 0, 1))
    rows, done, sub = rows[r], done[r], sub[r]
    pl = pool[rows]
    up = xp.lookup(tb.up, pl, sub)
    cand = (sub > 0) & (up > sub)
    r = xp.nonzero(xp.any(cand, 1))
    if r.shape[0] == 0:
        return vmat, False, None
    rows, done, sub, pl, up, cand = rows[r], done[r], sub[r], pl[r], up[r], cand[r]
    left = xp.zeros(c.J, xp.bool_)
    left[rows] = True
    dw = xp.lookup(tb.dwork, pl, sub)  # the work and watts a step up adds
    dl = xp.lookup(tb.dload, pl, sub)
    if not force:  # worth it: the work gained beats the carbon of the extra watts (above the wind)
        cand = cand & ((d.rho_on[rows] - d.ldrop[rows])[:, None] * dw > d.kappa[None, :] * dl)
        if not bool(xp.any(cand)):
            return vmat, False, left
    # only as many steps as the job still needs, cleanest slots first
    deficit = (d.R + d.loss)[rows] - done
    oc = xp.argsort(d.kappa)
    gain = xp.where(cand, dw, 0.0)[:, oc]
    before = xp.cumsum64(gain, 1) - gain
    need = xp.empty(cand.shape, xp.bool_)
    need[:, oc] = before < deficit[:, None] - 1e-3
    cand = cand & need
    room = d.room_cap - (_fac(d, tb, vmat, pool, xp) if use is None else use.fac)
    rank = xp.empty(c.J, xp.i64)
    rank[prio] = xp.arange(c.J)
    o = xp.argsort(rank[rows])
    rows, sub, up, cand, pl, dl = rows[o], sub[o], up[o], cand[o], pl[o], dl[o]
    g = xp.astype(d.gpus[rows], xp.f32)
    dd = xp.where(cand, dl * g[:, None], 0.0)
    ok = cand & _prefix_keep(dd, room, 0.0, xp)
    if not bool(xp.any(ok)):
        return vmat, False, left
    new = xp.astype(xp.where(ok, up, sub), xp.i8)
    vmat[rows] = new
    ch = xp.nonzero(xp.any(ok, 1))
    _use_swap(use, d, tb, rows[ch], sub[ch], pl[ch], new[ch], pl[ch], xp)
    return vmat, True, left


# ---------------------------------------------------------------------------------------------- plan
def _infeasible(c_or_pb: Any, reason: str, J: int, T: int, P: int) -> PlanResult:
    return PlanResult(
        status="infeasible", reason=reason, run=np.zeros((J, T), bool), power_fraction=np.zeros((J, T), np.float32),
        pool=np.full(J, -1, np.int32), work_done_s=np.zeros(J), finished=np.zeros(J, bool), facility_w=np.zeros(T),
        grid_import_w=np.zeros(T), carbon_g=np.zeros(T), busy_gpus=np.zeros((P, T), np.int64),
        dual_price_g_per_gpu_h=np.zeros(T), carbon_g_total=0.0, unfinished_gpu_s=0.0, objective=math.inf,
        lower_bound=-math.inf, gap=math.inf, iterations=0, diagnostics={},
    )


def _shift(a: NDArray[np.float64], k: int, T: int) -> NDArray[np.float64]:
    """Previous tick's per-slot array moved ``k`` slots earlier, the last value held."""
    a = np.asarray(a, dtype=np.float64)
    idx = np.minimum(np.arange(T) + k, a.shape[-1] - 1)
    return a[..., idx]


def _patience(cells: int, warm: bool, warm_patience: int | None) -> int | None:
    """The ascent's patience (:func:`_ascend`) on an instance of ``cells`` job-slot cells: warm, ``warm_patience``
    (-1: ``WARM_PATIENCE``, ``WARM_PATIENCE_LARGE`` past ``SEARCH_MAX_CELLS``); cold, ``COLD_PATIENCE`` past
    ``SEARCH_MAX_CELLS``, ``COLD_PATIENCE_SMALL`` up to ``COLD_PATIENCE_SMALL_MAX_CELLS``, none between."""
    if warm:
        if warm_patience != -1:
            return warm_patience
        return WARM_PATIENCE_LARGE if cells > SEARCH_MAX_CELLS else WARM_PATIENCE
    if cells > SEARCH_MAX_CELLS:
        return COLD_PATIENCE
    return COLD_PATIENCE_SMALL if cells <= COLD_PATIENCE_SMALL_MAX_CELLS else None


def _ascend(xp: Ops, c: _Clean, pr: _Prep, jb: _Jobs, lam: NDArray[np.float64], mu: NDArray[np.float64],
            nu: NDArray[np.float64], max_iters: int, *, warm: bool, patience: int | None = None
            ) -> tuple[tuple[float, Any, Any, Any, Any], int, list[float]]:
    """Sign-adaptive projected subgradient ascent on the coarse dual from ``(lam, mu, nu)``; returns the
    best iterate ``(value, lam, mu, nu, _DualOut | None)``, the iterations run and the value history.
    ``patience``: stop after that many iterations in a row without a better coarse value (None: never)."""
    T, P, NQ = c.T, c.P, c.quota.size
    has_q = np.isfinite(c.quota)[:, None]
    kbar = max(float(c.kappa.mean()), 1e-12)
    lscale = float(np.abs(pr.line_load).max()) if pr.line_load.size else 1.0
    d_lam = np.full(T, (_STEP0 if not warm else _STEP0_WARM) * kbar)
    d_mu = np.full((P, T), (_STEP0 if not warm else _STEP0_WARM) * kbar * lscale)
    d_nu = np.full((NQ, T), (_STEP0_NU if not warm else _STEP0_WARM) * kbar * lscale)
    s_lam = np.zeros(T)
    s_mu = np.zeros((P, T))
    s_nu = np.zeros((NQ, T))
    best: tuple[float, Any, Any, Any, Any] = (-math.inf, lam, mu, nu, None)
    it = best_it = 0
    hist: list[float] = []
    for it in range(1, max_iters + 1):  # dual iterations
        out, _ = _dual_coarse(xp, c, pr, jb, lam, mu, nu=nu)
        hist.append(out.value)
        if out.value > best[0]:
            best = (out.value, lam.copy(), mu.copy(), nu.copy(), out)
            best_it = it
        elif patience is not None and it - best_it >= patience:
            break
        sg_l = np.sign(out.g_lam)
        sg_m = np.sign(np.where((mu <= 0) & (out.g_mu < 0), 0.0, out.g_mu))
        d_lam = np.where(sg_l * s_lam > 0, d_lam * 1.4, np.where(sg_l * s_lam < 0, d_lam * 0.5, d_lam))
        d_mu = np.where(sg_m * s_mu > 0, d_mu * 1.4, np.where(sg_m * s_mu < 0, d_mu * 0.5, d_mu))
        sg_n = np.sign(np.where(((nu <= 0) & (out.g_nu < 0)) | ~has_q, 0.0, out.g_nu))
        d_nu = np.where(sg_n * s_nu > 0, d_nu * 1.4, np.where(sg_n * s_nu < 0, d_nu * 0.5, d_nu))
        s_lam, s_mu, s_nu = sg_l, sg_m, sg_n
        lam = np.maximum(lam + d_lam * sg_l, 0.0)
        mu = np.maximum(mu + d_mu * sg_m, 0.0)
        nu = np.maximum(nu + d_nu * sg_n, 0.0)
        if it >= 5 and (np.abs(sg_l).sum() + np.abs(sg_m).sum() + np.abs(sg_n).sum() == 0):
            break
    return best, it, hist


#: the per-job fields of a PlanProblem (axis 0 is the job)
JOB_FIELDS = ("gpus", "remaining_s", "release", "deadline", "weight", "eligible", "must_run", "preemptible",
              "running_pool", "preempt_loss_s", "tenant")
#: the per-job fields of _Clean (each row derived from its own job's fields only, but ``mrank``: its place in
#: the shed order of kernels.check.inference_shed, and ``mpack``: its pool in kernels.check.pack_inference, both
#: taken over the caller's rows and kept with its row)
_CLEAN_JOB_FIELDS = ("gpus", "R", "rel", "dl", "has_dl", "after_s", "weight", "eligible", "must", "preempt", "rpool",
                     "loss", "tenant", "ms", "me", "mrank", "mpack", "mpool", "left_out", "displaced", "npend")
#: the keys of the canonical job order, most significant first
_ORDER_KEYS = ("deadline", "release", "remaining_s", "gpus", "weight", "must_run", "preemptible", "running_pool",
               "preempt_loss_s", "tenant", "eligible")
_JOB_REF = re.compile(r"\bjob (\d+)")


def canonical_job_order(problem: PlanProblem) -> NDArray[np.int64] | None:
    """The order in which :func:`plan` takes the jobs: by deadline, release, work, width, weight and the rest
    of what defines a job (a stable lexicographic sort), so that the plan is the same however the caller
    lists them (tie-breaks in the list schedules follow the row order). None when the jobs are already in it."""
    cols = [np.asarray(getattr(problem, f)) for f in _ORDER_KEYS]
    keys: list[NDArray[Any]] = []
    for a in reversed(cols):  # np.lexsort: the last key is the primary one
        if a.ndim == 2:
            keys.extend(a[:, p] for p in range(a.shape[1] - 1, -1, -1))
        else:
            keys.append(a)
    if not keys or cols[0].shape[0] < 2:
        return None
    perm = np.lexsort(keys)
    return None if bool((perm == np.arange(perm.size)).all()) else perm


def permute_jobs(problem: PlanProblem, perm: NDArray[np.int64]) -> PlanProblem:
    """``problem`` with its jobs in the order ``perm`` (row k is the caller's job ``perm[k]``)."""
    fields: dict[str, Any] = {f: np.asarray(getattr(problem, f))[perm] for f in JOB_FIELDS}
    return replace(problem, **fields)


def _rows(r: PlanResult, take: NDArray[np.int64], names: NDArray[np.int64] | None = None) -> PlanResult:
    """``r`` with its per-job rows taken in the order ``take``; ``names`` maps the job numbers its reason
    names (``job k``) back to the caller's (row k of the planned problem is the caller's job ``names[k]``)."""
    reason = r.reason
    if names is not None and reason:
        reason = _JOB_REF.sub(lambda m: f"job {int(names[int(m.group(1))])}"
                              if int(m.group(1)) < names.size else m.group(0), reason)  # fmt: skip

    def rows(a: Any) -> Any:  # np.take: the same rows, 4x faster than a[take] on a (J, T) float32 table
        a = np.asarray(a)
        return np.take(a, take, axis=0) if a.ndim >= 1 and a.shape[0] == take.size else a

    diag = r.diagnostics
    if names is not None and diag.get("slot_shed_jobs"):  # the rows shed per marked slot, by the caller's numbers
        diag = dict(diag, slot_shed_jobs=[sorted(int(names[j]) for j in js) for js in diag["slot_shed_jobs"]])
    return replace(r, reason=reason, diagnostics=diag, run=rows(r.run), power_fraction=rows(r.power_fraction),
                   pool=rows(r.pool), work_done_s=rows(r.work_done_s), finished=rows(r.finished))


def _displaced_diag(r: PlanResult, dis: NDArray[np.bool_]) -> PlanResult:
    """``r`` with ``diagnostics["displaced_jobs"]``: the rows :func:`kernels.check.displaced` stopped in slot 0."""
    if r.status == "infeasible":
        return r
    return replace(r, diagnostics={**r.diagnostics, "displaced_jobs": [int(j) for j in np.flatnonzero(dis)]})


def _without(problem: PlanProblem, out: NDArray[np.bool_], planner: Callable[[PlanProblem, PlanResult | None], PlanResult],
             warm_start: PlanResult | None = None) -> PlanResult:
    """``problem`` planned without the jobs ``out`` (:func:`kernels.check.unplaceable`: no pool holds them in any
    slot) by ``planner`` (``kernels.plan`` or the greedy witness on the other jobs, with ``warm_start``'s rows of
    them), and those jobs handed back not running: every plan of ``problem`` leaves them wholly undone and pays
    the same penalty for them (their weight x GPUs x work, and a running one's lost work; late as well where
    they have a deadline), so the objective and the lower bound both gain it and the rest is the other jobs'
    plan as it is. ``diagnostics["left_out_jobs"]`` lists them (the plan JSON's unfinished reason reads
    ``capacity``: kernels.check.explain_unfinished)."""
    keep = np.flatnonzero(~out)
    ws = warm_start
    if ws is not None and ws.status != "infeasible" and np.shape(ws.pool) == (out.size,):
        ws = _rows(ws, keep)
    r = planner(permute_jobs(problem, keep), ws)
    J, T = out.size, problem.n_slots
    if r.status == "infeasible":
        return replace(_infeasible(problem, "", J, T, problem.n_pools), reason=_rows(r, np.arange(0), keep).reason)
    rows = np.flatnonzero(out)
    must = np.asarray(problem.must_run, dtype=bool)[rows]
    g = np.asarray(problem.gpus, np.float64)[rows]
    need = np.asarray(problem.remaining_s, np.float64)[rows] + np.where(
        np.asarray(problem.running_pool, np.int64)[rows] >= 0, np.asarray(problem.preempt_loss_s, np.float64)[rows], 0.0)
    dl = np.asarray(problem.deadline, np.int64)[rows]
    w = np.asarray(problem.weight, np.float64)[rows]
    undone = need > 1e-6 * np.maximum(need, 1.0)
    unf_pen = float(np.where(must, 0.0, w * g * need).sum())
    late = (dl < T) & ~must & undone
    late_pen = float(np.where(late, w * g * need, 0.0).sum())

    def back(a: Any, fill: Any, dtype: Any) -> Any:  # the other jobs' rows in place, the left-out ones ``fill``
        a = np.asarray(a)
        full = np.full((J,) + a.shape[1:], fill, dtype=dtype)
        full[keep] = a
        return full

    d = dict(r.diagnostics)
    parts = dict(d.get("objective_parts", {}))
    if parts:
        parts["unfinished_penalty_g"] = parts.get("unfinished_penalty_g", 0.0) + unf_pen
        parts["tardiness_penalty_g"] = parts.get("tardiness_penalty_g", 0.0) + late_pen
    if d.get("slot_shed_jobs"):
        d["slot_shed_jobs"] = [sorted(int(keep[j]) for j in js) for js in d["slot_shed_jobs"]]
    d.update(objective_parts=parts, left_out_jobs=[int(j) for j in rows],
             unfinished_jobs=int(d.get("unfinished_jobs", 0)) + int((undone & ~must).sum()),
             late_jobs=int(d.get("late_jobs", 0)) + int(late.sum()))
    finished = back(r.finished, False, bool)
    finished[rows] = ~undone
    obj = r.objective + unf_pen + late_pen
    lb = r.lower_bound + unf_pen + late_pen
    return replace(r, run=back(r.run, False, bool), power_fraction=back(r.power_fraction, 0.0, np.float32),
                   pool=back(r.pool, -1, np.asarray(r.pool).dtype), work_done_s=back(r.work_done_s, 0.0, np.float64),
                   finished=finished, unfinished_gpu_s=r.unfinished_gpu_s + float((g * need).sum()), objective=obj,
                   lower_bound=lb, gap=(obj - lb) / max(abs(obj), 1e-9) if math.isfinite(lb) else r.gap,
                   diagnostics=d)


def _restarted(problem: PlanProblem, dis: NDArray[np.bool_]) -> PlanProblem:
    """``problem`` with the running non-preemptible jobs ``dis`` (:func:`kernels.check.displaced`: the inference
    takes their pool in slot 0, or slot 0's cap cannot hold them) stopped: not
    running, their work since the checkpoint lost (``remaining_s`` plus ``preempt_loss_s``, no loss left to
    count) and released at slot 1 at the earliest (they stop in slot 0; the
    checker refuses them there). Where the inference was packed beside the running jobs
    (:attr:`kernels.check.InferenceShed.repacked`) its rows are pinned to those pools (as running there, no loss):
    the packing of the problem without the stopped jobs is then the same. A plan of either is a plan of the other
    with the same objective."""
    rp = np.asarray(problem.running_pool, dtype=np.int64)
    loss = np.asarray(problem.preempt_loss_s, dtype=np.float64)
    rel = np.asarray(problem.release, dtype=np.int64)
    sh = inference_shed(problem)
    if sh.repacked:
        pin = np.asarray(problem.must_run, dtype=bool) & ~unplaceable(problem)
        rp, loss = np.where(pin, sh.pack, rp), np.where(pin & (sh.pack != rp), 0.0, loss)
    return replace(problem, running_pool=np.where(dis, -1, rp), preempt_loss_s=np.where(dis, 0.0, loss),
                   remaining_s=np.where(dis, np.asarray(problem.remaining_s, np.float64) + loss, problem.remaining_s),
                   release=np.where(dis, np.maximum(rel, 1), rel))


def _set_aside(problem: PlanProblem, c: _Clean, solve: Callable[[PlanProblem, PlanResult | None], PlanResult],
               warm_start: PlanResult | None = None) -> PlanResult | None:
    """The plan of ``problem`` where ``c`` (its checked inputs) sets jobs aside, by ``solve`` (``kernels.plan`` or
    the greedy witness) on what is left, else None: the jobs no pool holds in any slot are left out
    (:func:`_without`), then the running non-preemptible jobs that slot 0 cannot hold (the inference takes their
    pool, or slot 0's cap: kernels.check.running_blocks) are stopped and planned again (:func:`_restarted`). The
    one place both planners take them out."""
    if c.left_out.any():
        return _without(problem, c.left_out, solve, warm_start)
    if c.displaced.any():
        return _displaced_diag(solve(_restarted(problem, c.displaced), warm_start), c.displaced)
    return None


def plan(
    problem: PlanProblem,
    *,
    warm_start: PlanResult | None = None,
    max_iters: int | None = None,
    tol: float = 0.01,
    backend: str = "numpy",
    device: str = "cpu",
    warm_shift: int = 1,
    primal_tries: int | None = None,
    warm_patience: int | None = -1,
    witness: str = "auto",
) -> PlanResult:
    """Plan ``problem``; see the module docstring for the objective and the method.

    ``warm_start``: the previous tick's result; its prices are shifted by ``warm_shift`` slots, or by its
    ``diagnostics["shifted_by_slots"]`` when the caller moved the plan to the new slot origin itself.
    ``max_iters``: dual iterations (default ``COLD_ITERS`` = 60 cold, ``WARM_ITERS`` = 10 warm-started). A
    warm-started ascent stops early after ``WARM_PATIENCE`` iterations in a row without a better dual value
    (from the previous tick's prices the first iterate is nearly always the best: measured, see
    benchmarks/README.md at T = 192; at T = 96 the ascent still gains after 8-11 warm iterations, so a
    caller that prefers the gap there passes ``warm_patience=None``: no early stop); a cold one runs until the
    steps vanish or ``max_iters``, or after ``COLD_PATIENCE`` iterations without a better dual value on an
    instance of more than ``SEARCH_MAX_CELLS`` job-slot cells (``COLD_PATIENCE_SMALL`` on one of at most
    ``COLD_PATIENCE_SMALL_MAX_CELLS``). ``warm_patience``: -1 (default)
    means ``WARM_PATIENCE`` (``WARM_PATIENCE_LARGE`` above ``SEARCH_MAX_CELLS`` job-slot cells).
    ``backend``/``device``: ``"numpy"``/``"cpu"`` or ``"torch"``/``"cpu"|"cuda"`` (same algorithm).
    ``primal_tries``: the plan is sensitive to the prices where the dual is flat, so it is built at the
    best dual prices, with 2 also without their tenant-quota part, with 3 also at the starting prices
    (kappa, or the previous tick's), and the best plan is kept; 1: only at the best prices. Default: 2 for
    a cold solve, 1 for a warm-started re-plan (the hot path of the rolling horizon). Past
    ``SEARCH_MAX_CELLS`` job-slot cells, on a cold solve that checks the witness, the try without the quota
    prices is not built where the try at the best prices
    does not dominate the witness job by job while that try carried past the witness
    (:func:`kernels.complete.carry`) or, failing it, the price-order list schedule does (that plan is then
    returned unless the skipped try would have dominated with a lower objective);
    ``diagnostics["primal_skipped"]`` names the tries not built, ``primal_candidates`` counts those built.
    ``witness``: when the EDF greedy witness (:func:`kernels.listsched.greedy_vmat`) is built and the plan
    checked against it (the plan returned dominates it: the optimiser's own, its price-order list schedule,
    or the greedy's). ``"always"``: every call. ``"never"``: no check (the plan is the optimiser's own).
    ``"auto"`` (default): every cold solve (``windward plan``, the first tick); a warm-started re-plan runs
    it only where its own plan leaves work undone or late (a plan that finishes every job on time can lose
    to the greedy on carbon only: not checked on the hot path) AND either the instance has at most
    ``WITNESS_EVERY_TICK_MAX_CELLS`` job-slot cells (2,000,000 by default; every such tick: the plan, after the warm
    carry below, is compared with the greedy and, where it loses a job to it (a job the greedy finishes left
    unfinished, or more late jobs), carried past it (:func:`kernels.complete.carry`, ``+carry``) or, failing
    that, past its jobs (``TICK_CARRY_ROUNDS``: carried again keeping the jobs taken, returned where it loses
    none; its total of unfinished work waits for the full check) or, failing that, kept until the age rule's full check (with ``WITNESS_TICK_FULL``: checked in full at once, as a cold
    solve is); where it is behind on the total of unfinished work only, it is carried past it where that
    dominates it job by job (``TICK_CARRY_WORK``; with ``TICK_CARRY_MORE``, off by default, taking the witness's
    rows of the jobs both leave unfinished too), otherwise returned as it is, and the full check waits for the
    age rule (with ``TICK_FALLBACK``, off by default: a plan still behind the witness on the totals returns the
    witness's plan, ``used``); after those, a plan that leaves more must-do work undone than the witness (the
    work the horizon must hold: per job, what it cannot do after the horizon's end and still meet its deadline,
    :func:`_must_undone_s`; the rest of its unfinished work can follow the horizon and is not judged on a warm
    tick) is carried past it on that work (``TICK_HOLD_MUST``, ``+carry_must``) or, where that fails or leaves
    its objective above the witness's, checked in full at once (``TICK_MUST_FULL``); and a plan still behind the
    witness on the totals at an objective above the witness's (deferring work no deadline holds for nothing the
    objective counts) is carried past its totals (``TICK_HOLD_TOTAL``, ``+carry_total``) or checked in full;
    ``diagnostics["witness"]["reason"]`` says which) or the last full check is at least ``WITNESS_EVERY_TICKS`` ticks old (the age is carried in the warm
    start's diagnostics; only a full check resets it). So past that size, between
    checks a warm re-plan that leaves work undone is NOT guaranteed to dominate the greedy (the greedy
    costs 1.4 s CPU at 50,000 x 192, its candidates and carry as much again; benchmarks/README.md, issue
    11); it is instead carried past the previous tick's plan (the warm start's rows: moved to this tick
    unless ``diagnostics["shifted_by_slots"]`` says the caller moved it, a preemptible job's cells of the
    slots passed put in the last slots), with any witness mode (``WARM_CARRY``;
    :func:`kernels.complete.carry_rows`): the plan's unfinished non-preemptible jobs are raised towards full
    power where the watts allow (the greedy runs every block at full power), so are its late jobs in their
    cells before the deadline (kept where the job then runs on time, its later cells dropped), the rows of the jobs the plan
    leaves unfinished or late are read, the jobs that plan finishes (runs on time) and the own plan does not take its rows where they fit beside
    every other row (jobs both leave unfinished give way), and the rest is carried as past a witness
    (:func:`kernels.complete.carry`; two rounds and the power raises up to ``WARM_FULL_MAX_CELLS`` job-slot
    cells; past them ``WARM_ROUNDS_PAST`` rounds, 2 by default (the second only where the first loses a job
    the own plan finishes), without the raises, kept where fewer jobs are behind).
    The plan returned never loses a job the own plan finishes or runs on time; ``diagnostics["warm_carry"]``:
    ``ran``, ``np_raised`` (non-preemptible jobs given more work), ``late_raised`` (late jobs now on time),
    ``rows_read``, ``jobs_behind`` (before),
    ``jobs_taken`` (by the rows' pass),
    ``jobs_behind_after``, ``carried``, ``full_carry`` (and ``full_carry_from``: the jobs behind before the
    whole carry) (``primal_variant`` ends in ``+carry_prev`` where it changed the plan).
    Where the witness runs, the plan returned is the lowest-objective one of those that dominate it job by
    job (every job the greedy finishes finished, never more late jobs or unfinished work, no more carbon
    where both finish every job): the optimiser's own plan (and it after the price-order local search
    :func:`kernels.listsched.improve`), and the EDF plan completed at the dual prices (:func:`_finish`) and
    improved by the same search, from the greedy's plan as it is and with the rows of the jobs it leaves
    unfinished placed again; failing those the own plan carried past the witness
    (:func:`kernels.complete.carry`: the rows of the jobs the witness finishes, or runs on time, and the own
    plan does not, taken from the witness, the rest repaired around them and completed; ``+carry``), then the
    price-order list schedule, then the own plan where it is no worse on the totals; the greedy's plan
    itself only where none is no worse.
    ``diagnostics["witness"]``: ``ran`` (bool), ``used`` (the greedy's plan is returned), ``same_plan``
    (the plan returned equals the greedy's, whichever construction made it), ``reason`` and
    ``age_ticks`` (ticks since a full check ran; 0 when it ran now), plus the greedy's objective, carbon_g,
    unfinished_jobs, late_jobs, unfinished_gpu_s and unfinished_must_gpu_s (its must-do part,
    :func:`_must_gpu_s`) when it ran; ``diagnostics["own_plan"]`` the same of the optimiser's plan, and
    ``diagnostics["unfinished_must_gpu_s"]`` that of the plan returned. ``primal_variant`` names the construction
    returned (``best``, ``no_quota``, ``start``, ``+search``, ``+carry``, ``edf_price_search``, ``price_list``,
    ``greedy_witness``).
    """
    T = int(np.shape(problem.wind_w)[0]) if np.ndim(problem.wind_w) == 1 else 0
    J = int(np.shape(problem.gpus)[0]) if np.ndim(problem.gpus) == 1 else 0
    P = int(np.shape(problem.tdp_w)[0]) if np.ndim(problem.tdp_w) == 1 else 0
    if witness not in WITNESS_MODES:
        raise ValueError(f"witness={witness!r}: allowed {', '.join(WITNESS_MODES)}")
    c = _clean_inputs(problem)
    if isinstance(c, str):
        return _infeasible(problem, c, J, T, P)
    def again(q: PlanProblem, w: PlanResult | None) -> PlanResult:
        return plan(q, warm_start=w, max_iters=max_iters, tol=tol, backend=backend, device=device,
                    warm_shift=warm_shift, primal_tries=primal_tries, warm_patience=warm_patience, witness=witness)

    aside = _set_aside(problem, c, again, warm_start)
    if aside is not None:
        return aside
    c = replace(c, cold=warm_start is None)
    opts: dict[str, Any] = {"max_iters": max_iters, "tol": tol, "backend": backend, "device": device,
                            "warm_shift": warm_shift, "primal_tries": primal_tries, "warm_patience": warm_patience,
                            "witness": witness}
    perm = canonical_job_order(problem)
    opts["reference"] = _WarmReference.of(warm_start, perm, J, T, warm_shift) if WARM_CARRY else None
    if perm is None:
        return _plan_in_order(problem, c, warm_start, **opts)
    # plan the jobs in their canonical order (the result cannot depend on how they are listed) and hand the
    # rows back in the caller's; the inputs were checked above, the permuted ones are the same values
    q = permute_jobs(problem, perm)
    w = warm_start  # only its diagnostics are read (prices, variant, witness age): no job rows to permute
    # the checked values with their job rows permuted (every job field of _Clean is the job's own)
    cq = replace(c, **{f: getattr(c, f)[perm] for f in _CLEAN_JOB_FIELDS})
    return _rows(_plan_in_order(q, cq, w, **opts), np.argsort(perm), perm)


def _plan_in_order(problem: PlanProblem, c: _Clean, warm_start: PlanResult | None, *, max_iters: int | None,
                   tol: float, backend: str, device: str, warm_shift: int, primal_tries: int | None,
                   warm_patience: int | None, witness: str,
                   reference: _WarmReference | None = None) -> PlanResult:
    """:func:`plan` of checked inputs (``c``) whose jobs are in their canonical order; ``reference``: the
    previous tick's plan (:class:`_WarmReference`)."""
    T, P = c.T, c.P
    xp = get_ops(backend, device)
    pr = _prepare(c)
    jb = _Jobs(xp, c, pr)
    NQ = c.quota.size
    lam = c.kappa.copy()
    mu = np.zeros((P, T))
    nu = np.zeros((NQ, T))  # tenant-quota prices (stay 0 for tenants without a quota)
    if warm_start is not None and "lam" in warm_start.diagnostics:
        # a result already moved to the new slot origin (scheduler's shift_result) says by how much
        k = int(warm_start.diagnostics.get("shifted_by_slots", warm_shift))
        lam = _shift(warm_start.diagnostics["lam"], k, T)
        mu = _shift(warm_start.diagnostics["mu"], k, T)
        if mu.shape != (P, T) or lam.shape != (T,):
            lam, mu = c.kappa.copy(), np.zeros((P, T))
        if "nu" in warm_start.diagnostics:
            nu = _shift(warm_start.diagnostics["nu"], k, T)
            if nu.shape != (NQ, T):
                nu = np.zeros((NQ, T))
    start = (lam.copy(), mu.copy(), nu.copy())
    d = _to_dev(xp, c, pr, problem.deadline)
    tb = _tabs(c, pr, xp)
    # the witness, where it will (a cold solve, witness='always') or likely will be checked, built now beside
    # the ascent: a warm re-plan whose check is due by age and whose warm start's own plan left work undone or
    # late (_witness_due decides once the own plan is built; where it finishes every job on time after all,
    # the witness thread's work is wasted)
    likely = witness == "always" or warm_start is None or (
        witness == "auto" and (_witness_age(warm_start) + 1 >= WITNESS_EVERY_TICKS
                               or c.J * c.T <= WITNESS_EVERY_TICK_MAX_CELLS)
        and _left_undone(warm_start.diagnostics.get("own_plan")))
    wit_plan = _Later(lambda: _witness_plan(problem, xp, c, pr, d, tb),
                      thread=CONCURRENT and likely and witness != "never" and xp.name == "numpy")
    if primal_tries is None:
        primal_tries = 1 if warm_start is not None else 2
    warm = warm_start is not None
    if max_iters is None:
        max_iters = WARM_ITERS if warm else COLD_ITERS
    best, it, hist = _ascend(xp, c, pr, jb, lam, mu, nu, max_iters, warm=warm,
                             patience=_patience(c.J * c.T, warm, warm_patience))
    _, lam_b, mu_b, nu_b, out_b = best
    if out_b is None:
        out_b, _ = _dual_coarse(xp, c, pr, jb, lam_b, mu_b, nu=nu_b)
    threads = CONCURRENT and xp.name == "numpy"
    # (the bound stays in turn: on its own thread, ~60 ms at 50,000 x 192, it made the warm re-plan's wall
    # worse on a loaded machine, 1.5-1.7 vs 1.2-1.3 s: its many small array operations contend for the GIL)
    lb, _, env = _bound_exact(xp, c, pr, jb, lam_b, mu_b, out_b.tau, out_b.tau_w, nu=nu_b)
    search = c.J * c.T <= SEARCH_MAX_CELLS
    # the price-order list schedule, the fallback where no plan dominates the witness: on an instance past
    # the search limit a cold solve's own plans rarely do (50,000 x 192: none), so it is built beside them
    # (wasted where one of them dominates the witness)
    price_plan = _Later(lambda: _price_list_plan(problem, xp, c, pr, d, tb, lam_b, mu_b),
                        thread=threads and warm_start is None and witness != "never" and not search
                        and not CARRY)
    # the plan is sensitive to the prices where the dual is flat: build it at the best prices and, with
    # primal_tries=2, also at the starting ones (kappa, or the previous tick's), and keep the better one
    # a warm re-plan with one try builds at the variant (with / without quota prices) that won last time
    prev_variant = warm_start.diagnostics.get("primal_variant", "best") if warm_start is not None else "best"
    if primal_tries == 1 and prev_variant == "no_quota" and nu_b.any():
        cands = [(lam_b, mu_b, np.zeros_like(nu_b), _envelope(c, pr, lam_b, mu_b), "no_quota")]
    else:
        cands = [(lam_b, mu_b, nu_b, env, "best")]
    if primal_tries > 1 and nu_b.any():  # the same prices without the tenant-quota prices
        cands.append((lam_b, mu_b, np.zeros_like(nu_b), _envelope(c, pr, lam_b, mu_b), "no_quota"))
    if primal_tries > 2 and not all(np.array_equal(a, b) for a, b in zip(start, (lam_b, mu_b, nu_b))):
        cands.append((*start, _envelope(c, pr, *start), "start"))

    from kernels import complete, listsched, powersearch  # import this module: bound at call time

    uses: dict[int, _Use] = {}  # id of a try's plan -> its _Use (the warm carry's sums)

    def build(lam_c: Any, mu_c: Any, env_c: _Env) -> tuple[Any, Any, dict[str, Any]]:
        got: dict[str, Any] = {}
        vm, pl = _primal(xp, c, pr, jb, env_c, lam_c, mu_c, d=d, tb=tb, out=got)
        uses[id(vm)] = got["use"]
        pl = xp.astype(xp.where(xp.any(vm > 0, 1), pl, -1), xp.i32)
        return vm, pl, _evaluate_plan(problem, c, pr, vm, pl, xp=xp, d=d)

    # every try but the first on its own thread (each reads the shared arrays and writes its own). Past the
    # search limit, on a cold solve (the witness is checked for certain), the first try is built beside the
    # price-order list schedule and raced: where it does not dominate the witness job by job and the list
    # schedule does, the try without the quota prices is not built (at 50,000 x 192 neither try dominates and the
    # list schedule is returned: that try cost 0.9 s CPU for nothing). The plan changes only where that
    # try would have had the lower objective and dominated the witness job by job, the first try not.
    race = RACE_TRIES and not search and len(cands) > 1 and witness != "never" and warm_start is None
    rest = cands[1:]
    first = build(cands[0][0], cands[0][1], cands[0][3]) if race else None
    carried: dict[str, Any] = {}  # variant -> the try carried past the witness (complete.carry), None: failed
    if first is not None:
        gv_r, gp_r, gev_r = wit_plan.result()
        if not _dominates_jobs(c, first[2], gev_r):
            if CARRY:
                carried[cands[0][4]] = complete.carry(problem, xp, c, pr, d, tb, *first, gv_r, gp_r, gev_r, lam_b, mu_b)
            wins_r = carried.get(cands[0][4]) is not None
            if not wins_r:
                lv_r, _, lev_r = price_plan.result()
                wins_r = _serves_forced_dev(c, d, lv_r, xp) and _dominates_jobs(c, lev_r, gev_r)
            if wins_r:
                rest = [k for k in rest if k[4] != "no_quota"]
    later = [_Later(lambda k=k: build(k[0], k[1], k[3]), thread=threads) for k in rest]
    built = [first if first is not None else build(cands[0][0], cands[0][1], cands[0][3])] + [
        x.result() for x in later]
    skipped = [k[4] for k in cands[1:] if not any(k is r for r in rest)]
    cands = [cands[0], *rest]
    best_plan: tuple[float, Any, Any, Any, str] | None = None
    for (vm, pl, ev), (*_, variant) in zip(built, cands):  # one to three price vectors
        if best_plan is None or ev["objective"] < best_plan[0]:
            best_plan = (ev["objective"], vm, pl, ev, variant)
    assert best_plan is not None
    _, vmat, pool, ev, variant = best_plan
    own = _summary(c, ev)
    run_wit, why = _witness_due(witness, warm_start, own)
    wc: dict[str, Any] = {"ran": False}
    must_full = False  # the tick is checked in full by TICK_MUST_FULL or TICK_HOLD_TOTAL: its plan holds must-do work
    if not run_wit:
        age = _witness_age(warm_start) + 1 if warm_start is not None else 1
        if reference is not None and _left_undone(own):
            small = c.J * c.T <= WARM_FULL_MAX_CELLS
            vmat, pool, ev, wc = complete.carry_rows(problem, xp, c, pr, d, tb, vmat, pool, ev,
                                                     lambda rows: reference.rows(rows, c, pr, xp), lam_b, mu_b,
                                                     rounds=complete.CARRY_ROUNDS if small else WARM_ROUNDS_PAST,
                                                     raises=small, use=uses.get(id(vmat)))
            if wc["carried"] or wc["np_raised"] or wc["late_raised"]:  # (the plan changed)
                variant, own = variant + "+carry_prev", _summary(c, ev)
        wd: dict[str, Any] = {"ran": False, "used": False, "reason": why, "age_ticks": age}
        full = False  # the plan loses to the greedy and is checked in full below
        if _tick_check(witness, warm_start, own, c.J * c.T):  # the plan (carried) against the greedy
            gv, gp, gev = wit_plan.result()
            why = f"warm re-plan leaves work undone or late; every tick up to {WITNESS_EVERY_TICK_MAX_CELLS:,} cells"
            if _dominates_jobs(c, ev, gev):
                why += ": dominates it"
            elif not _loses_jobs(c, ev, gev):  # behind on the work of jobs neither finishes only
                got = _tick_work_carry(problem, xp, c, pr, d, tb, vmat, pool, ev, gv, gp, gev, lam_b, mu_b)
                why += ": loses to it on unfinished work only (no job it finishes or runs on time lost), "
                if got is not None:  # (TICK_CARRY_WORK)
                    vmat, pool, ev = got
                    variant, own, why = variant + "+carry", _summary(c, ev), why + "carried past it"
                else:
                    why += f"checked in full every {WITNESS_EVERY_TICKS} ticks"
            else:  # carried past the witness (kernels.complete.carry), as a full check would first
                got, how = complete.carry(problem, xp, c, pr, d, tb, vmat, pool, ev, gv, gp, gev, lam_b, mu_b), "it"
                if got is None and TICK_CARRY_ROUNDS and not WITNESS_TICK_FULL:  # again, keeping the jobs taken
                    got, how = complete.carry(problem, xp, c, pr, d, tb, vmat, pool, ev, gv, gp, gev, lam_b, mu_b,
                                              rounds=TICK_CARRY_ROUNDS, keep_taken=True, raises=False,
                                              judge=lambda e: _keeps_jobs_and_work(c, e, ev, gev)), "its jobs"
                if got is not None:
                    vmat, pool, ev = got
                    variant, own, why = variant + "+carry", _summary(c, ev), f"{why}: loses to it, carried past {how}"
                    if TICK_CARRY_MORE and not _loses_jobs(c, ev, gev) and not _dominates_jobs(c, ev, gev):
                        got = _tick_work_carry(problem, xp, c, pr, d, tb, vmat, pool, ev, gv, gp, gev, lam_b, mu_b)
                        if got is not None:  # (then behind on the work of jobs neither finishes only)
                            vmat, pool, ev = got
                            own, why = _summary(c, ev), why + ", then past its work"
                elif WITNESS_TICK_FULL:
                    full, why = True, why + ": loses to it, checked in full"  # (the candidates, the list schedules)
                else:
                    why += f": loses to it, not carried past it, checked in full every {WITNESS_EVERY_TICKS} ticks"
            used = False
            if not full and TICK_HOLD_MUST and not _holds_must(c, ev, gev):
                # behind it on the work the horizon must hold: carried past that work
                got = _tick_work_carry(problem, xp, c, pr, d, tb, vmat, pool, ev, gv, gp, gev, lam_b, mu_b, must=True)
                why += "; behind it on must-do work, "
                if got is not None and not (TICK_MUST_FULL and gev["objective"] < got[2]["objective"]):
                    vmat, pool, ev = got
                    variant, own, why = variant + "+carry_must", _summary(c, ev), why + "carried past it"
                elif TICK_MUST_FULL:  # (the candidates, the list schedules, the carry; the witness's plan if none)
                    full = must_full = True
                    why += ("carried past it above the witness's objective" if got is not None
                            else "not carried past it") + ", checked in full"
                else:
                    why += "not carried past it"
            if not full and TICK_HOLD_TOTAL and _behind_above(c, ev, gev):
                # behind it on the totals at a higher objective than its own: the deferral buys nothing the
                # objective counts; carried past its totals or checked in full
                got = _tick_work_carry(problem, xp, c, pr, d, tb, vmat, pool, ev, gv, gp, gev, lam_b, mu_b, total=True)
                why += "; behind it in total above its objective, "
                if got is not None and not gev["objective"] < got[2]["objective"]:
                    vmat, pool, ev = got
                    variant, own, why = variant + "+carry_total", _summary(c, ev), why + "carried past it"
                else:  # (as TICK_MUST_FULL)
                    full = must_full = True
                    why += ("carried past it above the witness's objective" if got is not None
                            else "not carried past it") + ", checked in full"
            if not full and TICK_FALLBACK and not _dominates(_summary(c, ev), _summary(c, gev)):
                # still behind it on the totals: the better plan, the witness's, returned (as a full check would
                # where no candidate is no worse on the totals)
                vmat, pool, ev, used = gv, gp, gev, True
                variant, why = "greedy_witness", why + "; still behind it on the totals: the witness's plan returned"
            if not full:
                wd = {"ran": True, "used": used, "age_ticks": age, "reason": why, "same_plan": bool(
                    xp.all(vmat == gv)) and bool(xp.all(pool == gp)), **_summary(c, gev)}
        if not full:
            pf = xp.to_numpy(xp.take(d.fv32, xp.index(vmat)))  # (np.take: 2x the fancy index)
            return _result(problem, c, xp.to_numpy(vmat > 0), pf, xp.to_numpy(pool), lb, lam_b, mu_b, it, tol,
                           {"dual_history": hist, "backend": xp.name, "device": xp.device, "nu": nu_b,
                            "primal_variant": variant, "witness": wd, "warm_carry": wc, "own_plan": own,
                            "primal_candidates": len(cands), "primal_skipped": skipped}, ev=ev)
    # the EDF greedy witness (kernels.listsched): the plan returned must dominate it; where the optimiser's
    # own plan would lose, the greedy's is returned and diagnostics["witness"]["used"] says so

    gv, gp, gev = wit_plan.result()
    wit = _summary(c, gev)
    # the candidates that dominate the greedy job by job (every job it finishes finished, never more late
    # jobs or unfinished work, no more carbon where both finish all); the lowest objective is returned
    cand: list[tuple[float, Any, Any, dict[str, Any], str]] = []
    if _dominates_jobs(c, ev, gev):
        cand.append((ev["objective"], vmat, pool, ev, variant))
    # the price-order local search from a valid plan: each job's slots moved to cheaper ones (its work
    # and on-time work kept: it keeps every job finished / on time), from the greedy's plan and from the
    # optimiser's own
    fv, fp = gv, gp
    if search and (wit["unfinished_jobs"] or wit["late_jobs"]):  # what the greedy leaves undone, completed
        fv, fp = _finish(xp, c, pr, d, tb, xp.copy(gv), xp.copy(gp), xp.argsort(listsched.edf_rank(xp, c, d)),
                         lam_b, mu_b)
        fp = xp.astype(xp.where(xp.any(fv > 0, 1), fp, -1), xp.i32)
    if search:  # (past the search limit fv is the greedy's plan itself, unmoved: no candidate, no evaluation)
        iv, iev, moved = listsched.improve(problem, xp, c, pr, d, tb, fv, fp, rounds=IMPROVE_ROUNDS)
        if (moved or not (bool(xp.all(fv == gv)) and bool(xp.all(fp == gp)))) and _dominates_jobs(c, iev, gev):
            cand.append((iev["objective"], iv, fp, iev, "edf_price_search"))
    if search and wit["unfinished_jobs"]:
        # the greedy's finished jobs kept, its partial rows dropped and those jobs placed again in price order
        done_g = xp.asarray(np.asarray(gev["finished"], bool) | c.must)
        hv = xp.where(done_g[:, None], gv, 0)
        hv, hp = _finish(xp, c, pr, d, tb, xp.astype(hv, xp.i8), xp.copy(gp), xp.argsort(listsched.edf_rank(xp, c, d)),
                         lam_b, mu_b)
        hp = xp.astype(xp.where(xp.any(hv > 0, 1), hp, -1), xp.i32)
        hv, hev, _ = listsched.improve(problem, xp, c, pr, d, tb, hv, hp)
        if _dominates_jobs(c, hev, gev):
            cand.append((hev["objective"], hv, hp, hev, "edf_price_search"))
    if search and (wit["unfinished_jobs"] or wit["late_jobs"]):
        # least slack first (long and wide gangs before the room they need is cut up), slots in price order
        pcost = _level_cost(xp, c, tb, lam_b, mu_b)
        # and the same with the jobs the greedy finishes first (so that it keeps them)
        for first in (None, xp.asarray(np.asarray(gev["finished"], bool))):  # two job orders
            srank = listsched.slack_rank(xp, c, d, tb, first)
            sv, sp = listsched.greedy_vmat(xp, c, pr, d, tb, cost=pcost, rank=srank)
            sv, sp = _finish(xp, c, pr, d, tb, sv, sp, xp.argsort(srank), lam_b, mu_b)
            sp = xp.astype(xp.where(xp.any(sv > 0, 1), sp, -1), xp.i32)
            sv, sev, _ = listsched.improve(problem, xp, c, pr, d, tb, sv, sp)
            if _dominates_jobs(c, sev, gev):
                cand.append((sev["objective"], sv, sp, sev, "slack_price_list"))
                break
    if search:  # (also where the own plan does not dominate yet: the search can lower its carbon below the greedy's)
        ov, oev, omoved = listsched.improve(problem, xp, c, pr, d, tb, vmat, pool)
        if omoved and _dominates_jobs(c, oev, gev):
            cand.append((oev["objective"], ov, pool, oev, variant + "+search"))
    if not cand and CARRY:  # the own plan, carried past the witness (kernels.complete.carry)
        if variant not in carried:
            carried[variant] = complete.carry(problem, xp, c, pr, d, tb, vmat, pool, ev, gv, gp, gev, lam_b, mu_b)
        got = carried[variant]
        if got is not None:
            cand.append((got[2]["objective"], got[0], got[1], got[2], variant + "+carry"))
    if not cand:
        lv, lp, lev = price_plan.result()
        if _serves_forced_dev(c, d, lv, xp) and _dominates_jobs(c, lev, gev):
            cand.append((lev["objective"], lv, lp, lev, "price_list"))
        elif search and _serves_forced_dev(c, d, lv, xp):
            # the list schedule finishes what the greedy does at a little more carbon (full power): its power
            # levels searched (kernels.powersearch) before it is judged (corpus s1100129: 15,494 g -> 405 g
            # against the greedy's 15,484 g, where the greedy's plan had carried the instance)
            lv, lp, lev, k = powersearch.power_search(problem, xp, c, pr, d, tb, lv, lp, ev=lev, floor=gev,
                                                      budget=powersearch.search_budget(c.J, c.T))
            if k and _serves_forced_dev(c, d, lv, xp) and _dominates_jobs(c, lev, gev):
                cand.append((lev["objective"], lv, lp, lev, "price_list+power"))
    # the own plan stays a candidate where it leaves a forced row out only while the witness does too (a plan
    # that refuses where the witness serves every forced row is no plan: family seed 100141)
    own_ok = not _serves_forced_dev(c, d, gv, xp) or _serves_forced_dev(c, d, vmat, xp)
    cand = [x for x in cand if (x[4] == variant and own_ok) or _serves_forced_dev(c, d, x[1], xp)]
    if not cand and own_ok and _dominates(own, wit):  # no worse on the totals (a job the greedy finishes is not)
        cand.append((ev["objective"], vmat, pool, ev, variant))
    used = not cand and _serves_forced_dev(c, d, gv, xp)
    starts: dict[str, Any] = {}  # (what refine_starts spent: diagnostics["search_cells"])
    if cand:
        _, vmat, pool, ev, variant = min(cand, key=lambda x: x[0])
        if search:  # the power-level local search from a few candidates, each plan before and after it completed
            # (kernels.complete), the lowest (kernels.powersearch.refine_starts, H2)
            vmat, pool, ev, variant = powersearch.refine_starts(
                problem, xp, c, pr, d, tb, cand, gev,
                finish=lambda v, p, e, first, m: complete.complete(problem, xp, c, pr, d, tb, v, p, e, gev, lam_b,
                                                                  mu_b, again=first, meter=m),
                bound=max(lb, floor_bound(problem)), report=starts)[0]
        own = _summary(c, ev)
    elif used:
        vmat, pool, ev = gv, gp, gev
        if search:  # the witness carries the plan: its power levels searched all the same (it stays dominant)
            vmat, pool, ev, wvar = powersearch.refine(problem, xp, c, pr, d, tb, vmat, pool, ev, gev, "greedy_witness")
    if search and not cand:  # work the plan leaves undone that it can still finish, placed (kernels.complete, H6;
        # a candidate's plans are completed above)
        vmat, pool, ev, done_by = complete.complete(problem, xp, c, pr, d, tb, vmat, pool, ev, gev, lam_b, mu_b)
        variant, wvar, own = variant + done_by, (wvar if used else "") + done_by, own if used else _summary(c, ev)
    if must_full and not _holds_must(c, ev, gev):  # the full check's plan (it dominates the witness in totals)
        # still behind it on must-do work: the witness's own plan
        vmat, pool, ev, used, wvar = gv, gp, gev, True, "greedy_witness"
        why += "; its plan behind it on must-do work: the witness's plan returned"
    # the plan leaves the device once, as the contract's host arrays
    pf = xp.to_numpy(xp.take(d.fv32, xp.index(vmat)))  # (np.take: 2x the fancy index)
    run = xp.to_numpy(vmat > 0)
    return _result(problem, c, run, pf, xp.to_numpy(pool), lb, lam_b, mu_b, it, tol,
                   {"dual_history": hist, "backend": xp.name, "device": xp.device, "nu": nu_b,
                    "primal_variant": variant if not used else wvar if search else "greedy_witness",
                    "witness": {"ran": True, "used": bool(used), "reason": why, "age_ticks": 0,
                                "same_plan": bool(xp.all(vmat == gv)) and bool(xp.all(pool == gp)), **wit},
                    **({"warm_carry": wc} if wc["ran"] else {}), "own_plan": own,
                    "primal_candidates": len(cands), "primal_skipped": skipped,
                    **({"search_cells": starts["cells"], "search_stopped_close": starts["stopped"],
                        "polish_cells": starts.get("polish_cells", 0.0)} if starts else {})}, ev=ev)


class _Later:
    """``fn()`` on a second thread started now (``thread``), else run in turn when :meth:`result` is first
    asked for; :meth:`result` returns its value or raises its exception."""

    def __init__(self, fn: Any, *, thread: bool) -> None:
        self._fn: Any = fn
        self._out: Any = None
        self._err: BaseException | None = None
        self._thread: threading.Thread | None = None
        if thread:
            self._thread = threading.Thread(target=self._run, name="windward-plan-part", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        fn, self._fn = self._fn, None
        try:
            self._out = fn()
        except BaseException as e:  # handed to the caller of result()
            self._err = e

    def result(self) -> Any:
        if self._thread is not None:
            self._thread.join()
        elif self._fn is not None:
            self._run()
        if self._err is not None:
            raise self._err
        return self._out


def _witness_plan(problem: PlanProblem, xp: Ops, c: _Clean, pr: _Prep, d: _Dev, tb: _Tabs
                  ) -> tuple[Any, Any, dict[str, Any]]:
    """The EDF greedy witness (:func:`kernels.listsched.greedy_vmat`): ``(vmat, pool, evaluation)``."""
    from kernels import listsched  # imports this module: bound at call time

    gv, gp = listsched.greedy_vmat(xp, c, pr, d, tb)
    gp = xp.astype(xp.where(xp.any(gv > 0, 1), gp, -1), xp.i32)
    return gv, gp, _evaluate_plan(problem, c, pr, gv, gp, xp=xp, d=d)


def _price_list_plan(problem: PlanProblem, xp: Ops, c: _Clean, pr: _Prep, d: _Dev, tb: _Tabs,
                     lam: NDArray[np.float64], mu: NDArray[np.float64]) -> tuple[Any, Any, dict[str, Any]]:
    """The optimiser's own list schedule: the greedy's mechanism and job order, slots in price order at
    ``(lam, mu)``, power then raised where the work beats the carbon: ``(vmat, pool, evaluation)``."""
    from kernels import listsched  # imports this module: bound at call time

    lv, lp = listsched.greedy_vmat(xp, c, pr, d, tb, cost=_level_cost(xp, c, tb, lam, mu))
    lv = _raise(c, d, tb, lv, lp, xp.argsort(listsched.edf_rank(xp, c, d)), xp)
    lp = xp.astype(xp.where(xp.any(lv > 0, 1), lp, -1), xp.i32)
    return lv, lp, _evaluate_plan(problem, c, pr, lv, lp, xp=xp, d=d)


@dataclass(frozen=True, slots=True)
class _WarmReference:
    """The previous tick's plan (a warm start's rows), read in this tick's slots and canonical job rows only
    for the rows a warm re-plan asks about (:meth:`rows`): nothing of size (J, T) is copied."""

    pf: NDArray[np.float32]  # (J, T) the warm start's power fractions, in the caller's job rows
    pool: NDArray[np.int32]  # (J,)
    perm: NDArray[np.int64] | None  # canonical row k is the caller's row perm[k] (None: the same)
    shift: int  # slots elapsed since the warm start's plan (0: the caller moved it: shift_result)

    @staticmethod
    def of(warm_start: PlanResult | None, perm: NDArray[np.int64] | None, J: int, T: int, shift: int
           ) -> _WarmReference | None:
        """The warm start's plan where it has this problem's shape (None otherwise). A result already moved
        to the new slot origin (``diagnostics["shifted_by_slots"]``: the scheduler's ``shift_result``, with
        the work done since deducted from the jobs) is read as it is; otherwise its columns move left by
        ``shift`` slots."""
        if warm_start is None or warm_start.status == "infeasible" or J == 0:
            return None
        pf, pl = np.asarray(warm_start.power_fraction), np.asarray(warm_start.pool)
        if pf.shape != (J, T) or pl.shape != (J,):
            return None
        k = 0 if "shifted_by_slots" in warm_start.diagnostics else min(max(int(shift), 0), T)
        return _WarmReference(pf, pl.astype(np.int32), perm, k)

    def rows(self, rows: NDArray[np.int64], c: _Clean, pr: _Prep, xp: Ops) -> tuple[Any, Any]:
        """The plan rows of the canonical jobs ``rows``: levels ``(n, T)`` int8 and pools ``(n,)`` int32 on the
        backend. Moved left by :attr:`shift` slots; a preemptible job's cells of the slots that have passed
        go to the last slots (the same work again: a warm start the caller did not move is a chain whose jobs
        kept their remaining work, as ``benchmarks.instances.shift_problem`` makes it); a non-preemptible
        job's block that ran in them runs as many slots longer at its end (it stays one unbroken block). A row the problem
        cannot hold as it is (its pool not eligible, a level its pool lacks, a cell before its release) is
        empty."""
        src = self.pf[rows if self.perm is None else self.perm[rows]]
        k, T = self.shift, c.T
        if k:
            roll = c.preempt[rows] & ~c.must[rows]
            moved = np.concatenate([src[:, k:], np.where(roll[:, None], src[:, :k], 0.0)], axis=1)
            # a non-preemptible block that ran in the slots passed goes on for as many slots after its end, at
            # the levels it ran them: the same unbroken block doing the same work (50,000 x 192: running jobs
            # the previous plan finished were not, their rows moved as they were)
            go = np.flatnonzero(~c.preempt[rows] & ~c.must[rows] & (src[:, :k] > 0).all(1))
            if go.size:
                end = T - 1 - np.argmax(src[go, ::-1] > 0, axis=1)  # (old slots: the block's last)
                at = end[:, None] - k + 1 + np.arange(k)[None, :]
                moved[go[:, None], at] = src[go, :k]
            src = moved
        fv = pr.fv.astype(np.float32)
        lev = np.searchsorted((fv[1:] + fv[:-1]) / 2, src).astype(np.int8)  # the nearest level
        pl = self.pool[rows if self.perm is None else self.perm[rows]]
        plc = np.clip(pl, 0, c.P - 1)
        ok = (pl >= 0) & (pl < c.P) & c.eligible[rows, plc]
        ok &= (pr.map_pv[plc[:, None], lev] == lev).all(1)  # (map_pv: a level the pool has maps to itself)
        ok &= ~((lev > 0) & (np.arange(T)[None, :] < c.rel[rows][:, None])).any(1)
        lev[~ok] = 0
        pl = np.where(ok & (lev > 0).any(1), pl, -1).astype(np.int32)
        return xp.asarray(lev, xp.i8), xp.asarray(pl, xp.i32)


def _summary(c: _Clean, ev: dict[str, Any]) -> dict[str, Any]:
    """What the domination test compares: objective, carbon, unfinished jobs and work, late jobs; and the
    must-do part of the unfinished work (:func:`_must_gpu_s`: what a warm tick is held to, ``TICK_HOLD_MUST``)."""
    return {"objective": float(ev["objective"]), "carbon_g": float(ev["carbon_g"]),
            "unfinished_jobs": _n_unfinished(c, ev), "late_jobs": _n_late(c, ev),
            "unfinished_gpu_s": float(ev["unfinished_gpu_s"]), "unfinished_must_gpu_s": _must_gpu_s(c, ev)}


def _witness_age(warm_start: PlanResult) -> int:
    """Ticks since the warm start's chain last ran the witness (a large number when it never did)."""
    w = warm_start.diagnostics.get("witness")
    if not isinstance(w, dict) or "age_ticks" not in w:
        return 1 << 30
    return int(w["age_ticks"])


def _left_undone(own: dict[str, Any] | None) -> bool:
    """A plan's summary (``diagnostics["own_plan"]``) says it leaves work undone or late (True when unknown)."""
    return own is None or bool(own.get("unfinished_jobs", 1) or own.get("late_jobs", 1))


def _witness_due(mode: str, warm_start: PlanResult | None, own: dict[str, Any]) -> tuple[bool, str]:
    """Whether ``plan(witness=mode)`` builds the greedy witness now, and why (``plan``'s docstring)."""
    if mode == "always":
        return True, "witness='always'"
    if mode == "never":
        return False, "witness='never'"
    if warm_start is None:
        return True, "cold solve"
    if not _left_undone(own):
        return False, "warm re-plan finishes every job on time (the greedy could win on carbon only)"
    age = _witness_age(warm_start) + 1
    if age >= WITNESS_EVERY_TICKS:
        return True, f"warm re-plan leaves work undone or late; last check {min(age, WITNESS_EVERY_TICKS)}+ ticks ago"
    return False, f"warm re-plan leaves work undone or late; last check {age} ticks ago (every {WITNESS_EVERY_TICKS})"


def _tick_check(mode: str, warm_start: PlanResult | None, own: dict[str, Any], cells: int) -> bool:
    """A warm re-plan whose full check is not due (:func:`_witness_due`) compares its plan with the greedy
    witness all the same (after the warm carry), carried past it (or, with ``WITNESS_TICK_FULL``, checked in
    full) only where it loses a job to it (:func:`_loses_jobs`): ``witness="auto"``, its own plan leaves work undone or late, at most
    ``WITNESS_EVERY_TICK_MAX_CELLS`` job-slot cells."""
    return mode == "auto" and warm_start is not None and _left_undone(own) and cells <= WITNESS_EVERY_TICK_MAX_CELLS


def _tick_work_carry(problem: PlanProblem, xp: Ops, c: _Clean, pr: _Prep, d: _Dev, tb: _Tabs, vmat: Any, pool: Any,
                     ev: dict[str, Any], gv: Any, gp: Any, gev: dict[str, Any], lam: Any, mu: Any,
                     must: bool = False, total: bool = False) -> tuple[Any, Any, dict[str, Any]] | None:
    """A tick's plan behind the witness on the total of unfinished work only (no job lost) carried past it
    (:func:`kernels.complete.carry`, kept where it then dominates it job by job; ``TICK_CARRY_WORK``), with
    ``TICK_CARRY_MORE`` taking its rows of the jobs both leave unfinished that cover the deficit too, and,
    where that fails, for up to ``TICK_CARRY_ROUNDS`` rounds keeping the jobs taken. ``must`` (a plan behind the
    witness on must-do work, ``TICK_HOLD_MUST``): the rows taken are those of the jobs behind on their must-do
    work that cover that deficit, kept where the plan then loses no job to it and leaves no more must-do work
    undone (:func:`_holds_must`). ``total`` (a plan behind the witness in total above its objective,
    ``TICK_HOLD_TOTAL``): the rows taken are those of the jobs behind on their work in all that cover that
    deficit, kept where the plan then dominates it job by job and leaves no more must-do work undone. None: not
    carried."""
    if not (TICK_CARRY_WORK or must or total):
        return None
    from kernels import complete  # (imports this module)

    more = TICK_CARRY_MORE or must or total
    judge = ((lambda e: not _loses_jobs(c, e, gev) and _holds_must(c, e, gev)) if must
             else (lambda e: _dominates_jobs(c, e, gev) and _holds_must(c, e, gev)) if total else None)
    got = complete.carry(problem, xp, c, pr, d, tb, vmat, pool, ev, gv, gp, gev, lam, mu, more=more, must=must,
                         judge=judge)
    if got is None and more and TICK_CARRY_ROUNDS:
        got = complete.carry(problem, xp, c, pr, d, tb, vmat, pool, ev, gv, gp, gev, lam, mu,
                             rounds=TICK_CARRY_ROUNDS, keep_taken=True, more=True, must=must, judge=judge)
    return got


def _behind_above(c: _Clean, a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Evaluation ``a`` is behind ``b`` on the totals (not :func:`_dominates`: more unfinished work or late jobs)
    at a higher objective: what ``TICK_HOLD_TOTAL`` does not let a warm tick return."""
    return not _dominates(_summary(c, a), _summary(c, b)) and float(a["objective"]) > float(b["objective"])


def _witness_wins(own: dict[str, Any], wit: dict[str, Any]) -> bool:
    """The witness is no worse on unfinished work and late jobs and strictly better on one of them, or
    on carbon where both finish every job (work compared to a relative 1e-6)."""
    tol = 1e-6 * max(own["unfinished_gpu_s"], wit["unfinished_gpu_s"], 1.0)
    no_worse = wit["unfinished_gpu_s"] <= own["unfinished_gpu_s"] + tol and wit["late_jobs"] <= own["late_jobs"]
    all_done = own["unfinished_jobs"] == 0 and wit["unfinished_jobs"] == 0
    better = (wit["unfinished_gpu_s"] < own["unfinished_gpu_s"] - tol or wit["late_jobs"] < own["late_jobs"]
              or (all_done and wit["carbon_g"] < own["carbon_g"] * (1 - 1e-9)))
    return bool(no_worse and better)


def _dominates(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """``a`` is no worse than ``b`` on unfinished work and late jobs, and on carbon where both finish every
    job (what ``kernels.plan`` promises against the greedy witness)."""
    tol = 1e-6 * max(a["unfinished_gpu_s"], b["unfinished_gpu_s"], 1.0)
    all_done = a["unfinished_jobs"] == 0 and b["unfinished_jobs"] == 0
    return bool(a["unfinished_gpu_s"] <= b["unfinished_gpu_s"] + tol and a["late_jobs"] <= b["late_jobs"]
                and (not all_done or a["carbon_g"] <= b["carbon_g"] * (1 + 1e-9)))


def _dominates_jobs(c: _Clean, a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Evaluation ``a`` dominates ``b`` job by job: :func:`_dominates` on the totals, and every job ``b``
    finishes is finished in ``a`` (issue 11's rule, as tests/kernels/_family.py judges it)."""
    return not _drops_finished(c, a, b) and _dominates(_summary(c, a), _summary(c, b))


def _drops_finished(c: _Clean, a: dict[str, Any], b: dict[str, Any]) -> bool:
    """A job evaluation ``b`` finishes is unfinished in ``a`` (must-run and workless jobs count as finished)."""
    fa = np.asarray(a["finished"], bool) | c.must | (c.R <= 0)
    fb = np.asarray(b["finished"], bool) | c.must | (c.R <= 0)
    return bool((fb & ~fa).any())


def _short_of(c: _Clean, a: dict[str, Any], b: dict[str, Any], must: bool = False) -> NDArray[np.bool_]:
    """``(J,)`` host bool: the jobs (not must-run) evaluation ``b`` leaves unfinished with less of their work
    undone than ``a`` (relative 1e-6): where ``b`` is ahead of ``a`` in the total of unfinished work (a job ``b``
    finishes and ``a`` does not is :func:`_drops_finished`'s). ``must``: of their must-do work
    (:func:`_must_undone_s`)."""
    ua, ub = _undone_of(c, a, must), _undone_of(c, b, must)
    return ~c.must & (ub > 0) & (ua > ub + 1e-6 * np.maximum(ub, 1.0))


def _undone_s(e: dict[str, Any]) -> NDArray[np.float64]:
    """``(J,)`` host float64: each job's work (seconds per GPU) evaluation ``e`` leaves undone."""
    return np.maximum(np.asarray(e["need_s"], np.float64) - np.asarray(e["work_done_s"], np.float64), 0.0)


def _must_undone_s(c: _Clean, e: dict[str, Any]) -> NDArray[np.float64]:
    """``(J,)`` host float64: each job's must-do work (seconds per GPU) evaluation ``e`` leaves undone: what it
    leaves undone beyond what the job can still do after the horizon's end and meet its deadline
    (``_Clean.after_s``). All of it for a deadline inside the horizon or at its end, none for no deadline (or a
    must-run row); a deadline past the horizon's end holds the part its slots after the horizon cannot do at
    full speed. A warm tick of the rolling horizon is held to the witness on this work (``TICK_HOLD_MUST``)."""
    return np.maximum(_undone_s(e) - c.after_s, 0.0)


def _undone_of(c: _Clean, e: dict[str, Any], must: bool) -> NDArray[np.float64]:
    """``(J,)`` each job's work evaluation ``e`` leaves undone: its must-do part (:func:`_must_undone_s`) where
    ``must``, all of it (:func:`_undone_s`) otherwise."""
    return _must_undone_s(c, e) if must else _undone_s(e)


def _must_gpu_s(c: _Clean, e: dict[str, Any]) -> float:
    """The must-do work (GPU-seconds, :func:`_must_undone_s`) evaluation ``e`` leaves undone in all."""
    return float((c.gpus * _must_undone_s(c, e)).sum())


def _holds_must(c: _Clean, a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Evaluation ``a`` leaves no more must-do work undone (:func:`_must_gpu_s`) than ``b`` (relative 1e-6, as
    :func:`_dominates` compares the totals)."""
    ma, mb = _must_gpu_s(c, a), _must_gpu_s(c, b)
    return ma <= mb + 1e-6 * max(ma, mb, 1.0)


def _loses_jobs(c: _Clean, a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Evaluation ``a`` loses a job to ``b``: a job ``b`` finishes is unfinished in ``a``, or ``a`` has more late
    jobs (the part of :func:`_dominates_jobs` that counts jobs; what is left is the totals of unfinished work
    and, where both finish every job, carbon)."""
    return _drops_finished(c, a, b) or _n_late(c, a) > _n_late(c, b)


def _keeps_jobs_and_work(c: _Clean, a: dict[str, Any], own: dict[str, Any], b: dict[str, Any]) -> bool:
    """Evaluation ``a`` (a plan carried past the witness ``b``) loses no job to ``b`` (:func:`_loses_jobs`) and
    leaves no more work unfinished than the larger of what ``own`` (the plan it replaces) and ``b`` leave
    (relative 1e-6)."""
    unf = max(float(own["unfinished_gpu_s"]), float(b["unfinished_gpu_s"]))
    return not _loses_jobs(c, a, b) and float(a["unfinished_gpu_s"]) <= unf + 1e-6 * max(unf, 1.0)


def _shed_cells(c: _Clean, rows: NDArray[np.int64]) -> NDArray[np.bool_]:
    """``(n, T)`` bool: the cells of the must-run ``rows`` shed in a marked slot (their window, not served)."""
    tt = np.arange(c.T)[None, :]
    win = (tt >= c.ms[rows][:, None]) & (tt < c.me[rows][:, None])
    k = c.mrank[rows][:, None]
    return win & c.marked[None, :] & ((k >= c.mcut[c.mpack[rows]]) | (k >= c.mqcut[c.tenant[rows]]))


def _shed_diag(c: _Clean) -> dict[str, list[Any]]:
    """The marked slots (the cap or the pools' GPUs cannot hold the must-run inference:
    kernels.check.inference_shed) and what each sheds: ``shed_slots``, ``slot_shed_w`` (facility watts above the
    idle floor of the inference shed), ``slot_shed_gpus``, ``slot_shed_jobs`` (the rows shed there, ascending) and
    ``slot_shed_cause`` (what cannot hold it: kernels.check.shed_cause_names)."""
    slots = np.flatnonzero(c.marked)
    rows = np.flatnonzero(c.mrank < c.J)
    shed = _shed_cells(c, rows)
    return {"shed_slots": [int(t) for t in slots], "slot_shed_w": [float(c.shed_w[t]) for t in slots],
            "slot_shed_gpus": [float(c.shed_gpus[t]) for t in slots],
            "slot_shed_jobs": [[int(j) for j in rows[shed[:, t]]] for t in slots],
            "slot_shed_cause": shed_cause_names(c.shed_cause[slots])}


def _serves_forced_dev(c: _Clean, d: _Dev, vmat: Any, xp: Ops) -> bool:
    """Inference runs in every feasible slot of its window and running non-preemptible jobs in slot 0
    (only the forced rows are looked at, on the backend: nothing of size (J, T) leaves the device)."""
    mrows = xp.nonzero(d.must)
    if mrows.shape[0]:
        win = _must_win(xp, d, mrows, c.T)
        if bool(xp.any(win & (vmat[mrows] == 0))):
            return False
    keep = xp.nonzero((d.rpool >= 0) & ~d.preempt & ~d.must & (d.R > 0))
    return bool(c.infeas[0] or keep.shape[0] == 0 or bool(xp.all(vmat[keep, 0] > 0)))


def carbon_bound(problem: PlanProblem, result: PlanResult, *, max_iters: int = 5, backend: str = "numpy",
                 device: str = "cpu") -> dict[str, Any]:
    """A certified lower bound on the grid carbon of ANY feasible plan that does at least the work
    ``result`` does, job by job (``result.work_done_s``; must-run jobs as in ``problem``).

    It is the Lagrangian dual value of the carbon-only problem ``problem'``: remaining_s = the plan's work,
    no deadlines, no switching loss, no energy-cost term, and a weight per GPU-second of unfinished work
    above every breakpoint of the prices (so the dual asks each job for all of its work). Every plan that does
    the work has no penalty in ``problem'``, so its objective there is its carbon, and every dual value of
    ``problem'`` is at most that. The dual ascent starts from the plan's own prices (``result.diagnostics``)
    and runs ``max_iters`` coarse iterations; the certified value is the exact one at the better of the
    start and the best iterate. Returns ``lower_bound_carbon_g`` (clamped to the plan's carbon, which is
    attained), ``lower_bound_carbon_raw_g``, ``carbon_gap`` and ``iterations``."""
    carbon = float(result.carbon_g_total)
    out: dict[str, Any] = {"lower_bound_carbon_g": None, "lower_bound_carbon_raw_g": None, "carbon_gap": None,
                           "iterations": 0}
    if result.status == "infeasible":
        return out
    must = np.asarray(problem.must_run, dtype=bool)
    J = must.size
    dis = displaced(problem)
    if dis.any():  # (stopped in slot 0: as kernels.plan plans them)
        problem = _restarted(problem, dis)
    out_ = unplaceable(problem)  # (left out of every plan: no work of theirs to bound)
    rem = np.where(must & ~out_, np.asarray(problem.remaining_s, np.float64),
                   np.maximum(np.asarray(result.work_done_s, np.float64), 0.0) * ~out_)
    q = replace(problem, remaining_s=rem, must_run=must & ~out_, deadline=np.full(J, NO_DEADLINE, np.int64),
                preempt_loss_s=np.zeros(J), energy_cost_weight_g_per_eur=0.0, weight=np.zeros(J))
    c = _clean_inputs(q)
    if isinstance(c, str):
        return out
    pr = _prepare(c)
    T, P, NQ = c.T, c.P, c.quota.size
    d = result.diagnostics
    lam = np.asarray(d.get("lam", c.kappa), np.float64).reshape(-1)
    mu = np.asarray(d.get("mu", np.zeros((P, T))), np.float64)
    nu = np.asarray(d.get("nu", np.zeros((NQ, T))), np.float64)
    if lam.shape != (T,) or mu.shape != (P, T):
        lam, mu = c.kappa.copy(), np.zeros((P, T))
    if nu.shape != (NQ, T):
        nu = np.zeros((NQ, T))
    # a value of work above every breakpoint at these prices (x10 headroom for the ascent's moves)
    b = _envelope(c, pr, lam, mu, nu).b
    fin = b[b < _BIG / 2]
    top = float(np.abs(fin).max()) if fin.size else 0.0
    top = max(top, float(c.kappa.max()) * c.pue * float(c.tdp.max()) / max(c.slot_s, 1e-9), 1e-9)
    wbig = 10.0 * top
    c = replace(c, weight=np.full(c.J, wbig))
    pr = replace(pr, rho_on=np.full(c.J, wbig), ldrop=np.zeros(c.J))
    xp = get_ops(backend, device)
    jb = _Jobs(xp, c, pr)
    start = (lam.copy(), mu.copy(), nu.copy())
    best, it, _ = _ascend(xp, c, pr, jb, lam, mu, nu, max_iters, warm=True, patience=2)
    o0, _ = _dual_coarse(xp, c, pr, jb, *start[:2], nu=start[2])
    lb, _, _ = _bound_exact(xp, c, pr, jb, start[0], start[1], o0.tau, o0.tau_w, nu=start[2])
    if best[4] is not None and not all(np.array_equal(a, b_) for a, b_ in zip(start, best[1:4])):
        lb2, _, _ = _bound_exact(xp, c, pr, jb, best[1], best[2], best[4].tau, best[4].tau_w, nu=best[3])
        lb = max(lb, lb2)
    # carbon is never negative where no intensity is (the raw dual value can be: a weak bound, not a
    # gap above 100%)
    lbc = min(max(lb, 0.0) if bool((np.asarray(problem.carbon_g_per_kwh) >= 0).all()) else lb, carbon)
    out.update(lower_bound_carbon_g=lbc, lower_bound_carbon_raw_g=float(lb),
               carbon_gap=(carbon - lbc) / max(abs(carbon), 1e-9), iterations=it,
               work_value_g_per_gpu_s=wbig)
    return out


def _row_work(pb: PlanProblem, c: _Clean, pr: _Prep, d: _Dev, vmat: Any, pool: Any, xp: Ops = _NP,
              rows: NDArray[np.int64] | None = None, cnt: Any = None) -> tuple[NDArray[np.float64],
                                                                               NDArray[np.float64],
                                                                               NDArray[np.float64]]:
    """Per plan row, ``kernels.evaluate``'s work done, work done before the deadline and work needed (the
    remaining work plus the switching loss where a running job does not keep its pool in slot 0): host
    float64 ``(n,)``. ``vmat``/``pool``: the plan's rows ``rows`` (host indices; every row when None). ``cnt``:
    their level counts (:func:`_level_counts`) where the caller holds them."""
    T, P = c.T, c.P
    V = pr.fv.size
    cf = np.asarray(pb.curve_f, dtype=np.float64)
    cs = np.asarray(pb.curve_s, dtype=np.float64)
    pc = xp.astype(xp.minimum(xp.maximum(pool, 0), P - 1), xp.i64)
    rd = None if rows is None else xp.asarray(rows, xp.i64)
    dl_raw, rpool = (d.dl_raw, d.rpool) if rd is None else (d.dl_raw[rd], d.rpool[rd])
    wtab = xp.asarray(_work_table(cf.tobytes(), cs.tobytes(), cf.shape, pr.fv.tobytes(), float(c.slot_s)), xp.f64)
    work_d = xp.sum((_level_counts(vmat, V, xp) if cnt is None else cnt) * wtab[pc], 1)
    work_on_d = xp.copy(work_d)
    dr = xp.nonzero(dl_raw < T)
    if dr.shape[0]:
        on_time = xp.arange(T)[None, :] < dl_raw[dr][:, None]
        # only the rows that run at or after their deadline: the others' on-time work is their work (the same
        # level counts, so the same sum)
        past = xp.nonzero(xp.any(~on_time & (vmat[dr] > 0), 1))
        if past.shape[0]:
            dr = dr[past]
            sub = xp.astype(xp.where(on_time[past], vmat[dr], 0), xp.i8)
            work_on_d[dr] = xp.sum(_level_counts(sub, V, xp) * wtab[pc[dr]], 1)
    stay_d = (xp.astype(pool, xp.i64) == rpool) & (vmat[:, 0] > 0)
    work, work_on, stay = xp.to_numpy(work_d), xp.to_numpy(work_on_d), xp.to_numpy(stay_d)
    sel = slice(None) if rows is None else rows
    lost = np.where((c.rpool[sel] >= 0) & ~stay, np.asarray(pb.preempt_loss_s, np.float64)[sel], 0.0)
    return work, work_on, np.asarray(pb.remaining_s, dtype=np.float64)[sel] + lost


@functools.lru_cache(maxsize=64)
def _work_table(cf_b: bytes, cs_b: bytes, shape: tuple[int, ...], fv_b: bytes, slot_s: float) -> NDArray[np.float64]:
    """:func:`_row_work`'s ``(P, V)`` work seconds per GPU and slot of each pool at each power fraction (the
    problem's curves ``curve_f``, ``curve_s`` at the float32 fractions ``fv``; 0 when off), from the inputs'
    bytes: the same table for the same curves, made once instead of once per evaluation (its interpolations
    were ~40% of :func:`_row_work` on the corpus). Shared between calls: never written to."""
    from kernels import power

    cf = np.frombuffer(cf_b, np.float64).reshape(shape)
    cs = np.frombuffer(cs_b, np.float64).reshape(shape)
    fv32 = np.frombuffer(fv_b, np.float64).astype(np.float32).astype(np.float64)
    spd = np.stack([power.speed(cf[p], cs[p], fv32) for p in range(shape[0])])  # (P, V) pools
    spd[:, 0] = 0.0
    return spd * slot_s


def _evaluate_plan(pb: PlanProblem, c: _Clean, pr: _Prep, vmat: Any, pool: Any, *, xp: Ops = _NP,
                   d: _Dev | None = None) -> dict[str, Any]:
    """The objective parts and aggregates of ``kernels.evaluate`` computed from the plan's level counts and
    per-level sums on the backend (no (J, T) float arrays; the same formulas via :mod:`kernels.power`, on
    the host, for the (P, T) and (J,) results). The checker re-verifies them independently with
    ``kernels.evaluate``."""
    d = d if d is not None else _to_dev(xp, c, pr, pb.deadline)
    cnt = _level_counts(vmat, pr.fv.size, xp)  # (the rows' level counts: the pools' levels and the work)
    busy, active = _pool_sums(xp, c, pr, d, vmat, pool, cnt=cnt)
    return _evaluation(pb, c, busy, active, *_row_work(pb, c, pr, d, vmat, pool, xp, cnt=cnt))


def _evaluate_change(pb: PlanProblem, c: _Clean, pr: _Prep, d: _Dev, ev: dict[str, Any], rows: NDArray[np.int64],
                     old: Any, old_pool: Any, new: Any, new_pool: Any, xp: Ops = _NP) -> dict[str, Any]:
    """:func:`_evaluate_plan` of a plan whose evaluation ``ev`` (of that function) is known but for the rows of
    the jobs ``rows`` (host indices), which change from ``old`` (pools ``old_pool``) to ``new`` (``new_pool``):
    those rows' sums taken out and put in, their work judged again (:func:`_row_work`), no (J, T) pass. The
    busy GPUs and the work are the same numbers; the active watts may differ from a whole evaluation's in
    the last bits (another order of the float64 sums)."""
    if rows.size == 0:
        return ev
    rd = xp.asarray(rows)
    b0, a0 = _pool_sums(xp, c, pr, d, old, old_pool, rd)
    b1, a1 = _pool_sums(xp, c, pr, d, new, new_pool, rd)
    w, o, n = (np.array(ev[k], np.float64) for k in ("work_done_s", "work_on_time_s", "need_s"))
    w[rows], o[rows], n[rows] = _row_work(pb, c, pr, d, new, new_pool, xp, rows)
    return _evaluation(pb, c, ev["busy_gpus"] - b0 + b1, ev["active_w"] - a0 + a1, w, o, n)


#: :func:`_pool_sums` sums the rows' active watts per (pool, level, slot) in one scatter-add (and the busy GPUs,
#: whole numbers, in one :meth:`Ops.group_rowsum`) up to this many plan cells, per pool and level above (a compare
#: and a weighted row sum each). Each (pool, level, slot) sum adds the same rows' watts in the same order (row
#: order: :meth:`Ops.rowsum_w`'s einsum is one running sum down the rows wherever a plan has 2 slots or more; with
#: one it is a dot product in its own order, so that plan takes the pass) and the levels are added in the same
#: order: the same sums bit for bit (round 20, H3: 1,388 calls captured from seed-0 corpus-11, -82, -7, -189 and
#: -105 replayed both ways, all equal; the 567 of corpus-11 and -82: 145-170 -> 35-50 us a call, 3 alternations)
POOL_SUMS_PAIRS_MAX_CELLS = 32_768


def _pool_sums(xp: Ops, c: _Clean, pr: _Prep, d: _Dev, vmat: Any, pool: Any, rows: Any = None, cnt: Any = None
               ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Busy GPUs and active GPU watts (the GPUs' own, TDP x power fraction) ``(P, T)`` on the host of the plan
    rows ``vmat`` in pools ``pool`` (the jobs ``rows``, backend indices; every job when None). ``cnt``: the rows'
    level counts (:func:`_level_counts`) where the caller holds them (the per-level pass reads them)."""
    T, P = c.T, c.P
    V = pr.fv.size
    gpus = d.gpus if rows is None else d.gpus[rows]
    pc = xp.astype(xp.minimum(xp.maximum(pool, 0), P - 1), xp.i64)
    gtdp = gpus * d.tdp[pc]
    n = int(vmat.shape[0])
    if T > 1 and 0 < n * T <= POOL_SUMS_PAIRS_MAX_CELLS:
        # each cell's (pool, level, slot) and watts (level 0: none); the busy GPUs, whole numbers, in one sum
        lv = xp.astype(vmat, xp.i64)
        at = (((pc * V)[:, None] + lv) * T + xp.arange(T)[None, :]).reshape(n * T)
        watts = xp.take_along(gtdp[:, None] * d.fv64[None, :], lv, 1).reshape(n * T)
        per = xp.to_numpy(xp.scatter_add(P * V * T, at, watts, xp.f64)).reshape(P, V, T)
        active = np.zeros((P, T))
        for v in range(1, V):  # power levels (added in the order of the pass per level)
            active = active + per[:, v]
        return xp.to_numpy(xp.group_rowsum(pc, P, gpus, vmat > 0)), active
    fv32 = pr.fv.astype(np.float32).astype(np.float64)
    busy_d = xp.zeros((P, T), xp.f64)
    active_d = xp.zeros((P, T), xp.f64)
    # the (pool, level) pairs the plan runs at, from the rows' level counts summed per pool (host): a level that
    # no cell of a pool runs at adds nothing, so only the others are summed (a test per pool and level cost more
    # than its sum saved); (n, V) tables, no (n, T) ones
    cnt = _level_counts(vmat, V, xp) if cnt is None else cnt
    n_at = int(cnt.shape[0]) * V
    at = (pc[:, None] * V + xp.arange(V)[None, :]).reshape(n_at)  # each row's (pool, level)
    runs_at = xp.to_numpy(xp.scatter_add(P * V, at, xp.astype(cnt, xp.f64).reshape(n_at), xp.f64)).reshape(P, V) > 0
    for k in range(P):  # pools: each pool's rows taken once (not once per level), summed per level
        rk = xp.nonzero(pc == k)
        if rk.shape[0] == 0:
            continue
        sub = vmat[rk]
        busy_d[k] = xp.rowsum_w(gpus[rk], sub > 0)
        gk = gtdp[rk]
        for v in (np.flatnonzero(runs_at[k, 1:]) + 1).tolist():  # the power levels the pool runs at
            active_d[k] = active_d[k] + xp.rowsum_w(gk * float(fv32[v]), sub == v)
    return xp.to_numpy(busy_d), xp.to_numpy(active_d)


def _evaluation(pb: PlanProblem, c: _Clean, busy: NDArray[np.float64], active: NDArray[np.float64],
                work: NDArray[np.float64], work_on: NDArray[np.float64], need: NDArray[np.float64]
                ) -> dict[str, Any]:
    """:func:`_evaluate_plan`'s result from the plan's sums (:func:`_pool_sums`) and per-job work
    (:func:`_row_work`)."""
    from kernels import power

    T = c.T
    tl = power.facility_timeline(pb.pue, pb.slot_s, active, busy, c.H, pb.idle_w, pb.host_w_per_gpu, pb.wind_w,
                                 pb.carbon_g_per_kwh)
    slot_h = c.slot_s / 3600.0
    cost_eur = 0.0
    if pb.price_eur_per_mwh is not None:
        price = np.maximum(np.asarray(pb.price_eur_per_mwh, dtype=np.float64), 0.0)
        cost_eur = float((tl["grid_import_w"] * price).sum() * slot_h / 1e6)
    dl_raw = np.asarray(pb.deadline, dtype=np.int64)
    unfinished_s = np.maximum(need - work, 0.0)
    has_dl = (dl_raw < T) & ~c.must
    late_s = np.where(has_dl, np.maximum(need - work_on, 0.0), 0.0)
    unf_pen = float(np.where(c.must, 0.0, c.weight * c.gpus * unfinished_s).sum())
    late_pen = float((c.weight * c.gpus * late_s).sum())
    carbon = float(tl["carbon_g"].sum())
    objective = carbon + float(pb.energy_cost_weight_g_per_eur) * cost_eur + unf_pen + late_pen
    return {
        "objective": objective, "carbon_g": carbon, "energy_cost_eur": cost_eur,
        "unfinished_penalty_g": unf_pen, "tardiness_penalty_g": late_pen,
        "unfinished_gpu_s": _unfinished_gpu_s(c, work, need), "facility_w": tl["facility_w"],
        "grid_import_w": tl["grid_import_w"], "carbon_g_slot": tl["carbon_g"], "busy_gpus": busy,
        "active_w": active, "work_done_s": work, "work_on_time_s": work_on, "need_s": need,
        "finished": _done(work, need),
    }


def _unfinished_gpu_s(c: _Clean, work: NDArray[np.float64], need: NDArray[np.float64]) -> float:
    """GPU-seconds of work the plan leaves undone (``kernels.evaluate``'s ``unfinished_gpu_s``)."""
    return float((c.gpus * np.maximum(need - work, 0.0)).sum())


def _done(work: NDArray[np.float64], need: NDArray[np.float64]) -> NDArray[np.bool_]:
    """Work ``work`` meets ``need`` (``kernels.evaluate``'s tolerance: 1e-6 of the need, at least 1e-6 s)."""
    return work >= need - 1e-6 * np.maximum(need, 1.0)


def _n_unfinished(c: _Clean, ev: dict[str, Any]) -> int:
    """Jobs (not must-run) with work left that the plan does not finish by the horizon end."""
    return int((~np.asarray(ev["finished"], bool) & ~c.must & (c.R > 0)).sum())


def _late(c: _Clean, ev: dict[str, Any]) -> NDArray[np.bool_]:
    """``(J,)`` the jobs with a deadline inside the horizon whose work is not all done before it
    (``OBJECTIVE``'s late_s > 0; the same tolerance as ``finished``)."""
    return c.has_dl & (c.R > 0) & ~_done(np.asarray(ev["work_on_time_s"], np.float64),
                                         np.asarray(ev["need_s"], np.float64))


def _n_late(c: _Clean, ev: dict[str, Any]) -> int:
    """How many jobs are late (:func:`_late`)."""
    return int(_late(c, ev).sum())


def _result(pb: PlanProblem, c: _Clean, run: NDArray[np.bool_], pf: NDArray[np.float32], pool: NDArray[np.int32],
            lb: float, lam: NDArray[np.float64], mu: NDArray[np.float64], iters: int, tol: float,
            diag: dict[str, Any], ev: dict[str, Any]) -> PlanResult:
    obj = ev["objective"]
    lb = min(max(lb, floor_bound(pb)), obj)
    gap = (obj - lb) / max(abs(obj), 1e-9)
    mrows = np.flatnonzero(c.must)
    if mrows.size:  # only the must-run rows: no (J, T) temporaries
        win = _must_win(_NP, c, mrows, c.T)
        jj, ts = np.nonzero(win & ~run[mrows])
        if jj.size:
            return _infeasible(pb, f"must-run job {mrows[jj[0]]} cannot be served in slot {ts[0]} within the pool "
                                   f"GPUs and power caps", c.J, c.T, c.P)
    keep = np.flatnonzero((c.rpool >= 0) & ~c.preempt & ~c.must & (c.R > 0))
    bad = keep[~run[keep, 0]] if keep.size and not c.infeas[0] else keep[:0]
    if bad.size:
        return _infeasible(pb, f"running non-preemptible job {bad[0]} cannot keep running in slot 0 within the "
                               f"pool GPUs and power caps", c.J, c.T, c.P)
    w = c.H.sum(axis=1)
    wt = w / max(w.sum(), 1.0)
    per_gpu_w = (c.pue * (c.tdp - c.idle) * wt).sum()
    price = (lam * per_gpu_w + (mu * wt[:, None]).sum(axis=0)) * 3600.0 / c.slot_s
    inf_slots = np.flatnonzero(c.floor_bad)
    diag = dict(diag, lam=lam, mu=mu, objective_parts={k: ev[k] for k in (
        "carbon_g", "energy_cost_eur", "unfinished_penalty_g", "tardiness_penalty_g")},
        unfinished_jobs=_n_unfinished(c, ev), late_jobs=_n_late(c, ev), unfinished_must_gpu_s=_must_gpu_s(c, ev),
        infeasible_slots=[int(t) for t in inf_slots],
        slot_deficit_w=[float(c.deficit_w[t]) for t in inf_slots], **_shed_diag(c))
    return PlanResult(
        status="optimal" if gap <= tol else "feasible", reason="", run=run, power_fraction=pf, pool=pool,
        work_done_s=ev["work_done_s"], finished=ev["finished"], facility_w=ev["facility_w"],
        grid_import_w=ev["grid_import_w"], carbon_g=ev["carbon_g_slot"],
        busy_gpus=np.rint(ev["busy_gpus"]).astype(np.int64), dual_price_g_per_gpu_h=price,
        carbon_g_total=ev["carbon_g"], unfinished_gpu_s=ev["unfinished_gpu_s"], objective=obj, lower_bound=lb,
        gap=gap, iterations=iters, diagnostics=diag,
    )
