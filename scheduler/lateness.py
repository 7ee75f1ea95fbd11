"""Late work against the deadline the user stated (issue 11 item 4): the one rule by which ``windward plan`` (its
table and the plan JSON's ``late`` / ``late_s`` / ``deadline_unreachable`` per job and ``unfinished.late_jobs``)
and the simulation report (``deadline_misses``) count late jobs.

The planner plans against *planning* deadlines (``scheduler.planner``): one that can no longer be met is moved
to the earliest possible finish (so the job runs as soon as it can), the others are brought a slot forward
(a margin against slippage), owed work is due at once. The kernels' ``late_jobs`` counts against those, so a
job whose stated deadline no plan can meet, run as soon as it can, reads on time there. A user reads the
stated ``deadline_s``:

- **late**: a job with a deadline (not must-run: inference has a window, not a deadline) that finishes after
  its deadline, or is unfinished at the end of the span (the plan's horizon, the simulated run) with its
  deadline at or before that end. An unfinished job whose deadline lies past the end is not late (yet).
- ``late_s``: how long after its deadline a late job finishes (NaN where it is unfinished: past the end).
- **unreachable**: its earliest possible finish (from its release, at full speed, nothing else in the way)
  already lies past its deadline: no plan could have met it. Said apart from the late jobs the plan chose.

Pure numpy over arrays of one time frame (seconds from the plan's start, or from the run's epoch).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike, NDArray

if TYPE_CHECKING:
    from kernels.problem import PlanProblem, PlanResult

#: seconds a finish may lie past a deadline and still count as on time (float rounding of slot arithmetic)
ON_TIME_TOL_S = 1e-6


@dataclass(frozen=True, slots=True)
class Lateness:
    """Per job: ``late``, ``late_s`` (NaN: on time, unfinished, or no deadline), ``unreachable`` (late or not:
    a job whose unreachable deadline lies past the span end is not late yet) and ``has_deadline``."""

    late: NDArray[np.bool_]
    late_s: NDArray[np.float64]
    unreachable: NDArray[np.bool_]
    has_deadline: NDArray[np.bool_]

    @property
    def late_jobs(self) -> int:
        return int(self.late.sum())

    @property
    def late_unreachable_jobs(self) -> int:
        """Late jobs whose deadline no plan could have met."""
        return int((self.late & self.unreachable).sum())


def lateness(deadline_s: ArrayLike, end_s: ArrayLike, earliest_end_s: ArrayLike, span_end_s: float,
             must_run: ArrayLike | None = None) -> Lateness:
    """The rule (module docstring) over jobs: ``deadline_s`` (NaN: none), ``end_s`` (when the job finishes; NaN:
    unfinished at ``span_end_s``), ``earliest_end_s`` (its earliest possible finish; NaN: not known, never
    unreachable), ``must_run`` (rows that have no deadline whatever ``deadline_s`` says)."""
    dl = np.asarray(deadline_s, dtype=np.float64)
    end = np.asarray(end_s, dtype=np.float64)
    first = np.asarray(earliest_end_s, dtype=np.float64)
    has = ~np.isnan(dl)
    if must_run is not None:
        has &= ~np.asarray(must_run, dtype=bool)
    done = ~np.isnan(end)
    with np.errstate(invalid="ignore"):
        over = np.where(has & done, end - dl, np.nan)
        late = has & np.where(done, over > ON_TIME_TOL_S, dl <= float(span_end_s) + ON_TIME_TOL_S)
        unreachable = has & (first > dl + ON_TIME_TOL_S)
    return Lateness(late=late, late_s=np.where(late & done, over, np.nan), unreachable=unreachable,
                    has_deadline=has)


def plan_lateness(problem: PlanProblem, result: PlanResult, deadline_s: ArrayLike) -> Lateness:
    """:func:`lateness` of a plan (``kernels.problem.PlanProblem`` / ``PlanResult``; rows in ``deadline_s``'s
    order, seconds from the plan's start): each job's finish inside the slot its work completes in (the
    plan's speed there, ``kernels.check.evaluate``), the earliest possible finish its release slot's start plus
    its remaining work at full speed, the span the horizon."""
    from kernels.check import evaluate

    T, slot_s = int(problem.n_slots), float(problem.slot_s)
    dl = np.asarray(deadline_s, dtype=np.float64)
    J = dl.size
    rel = np.clip(np.asarray(problem.release, dtype=np.float64)[:J], 0, T)
    rem = np.asarray(problem.remaining_s, dtype=np.float64)[:J]
    must = np.asarray(problem.must_run, dtype=bool)[:J]
    run = np.asarray(result.run, dtype=bool)
    end = np.full(J, np.nan)
    if run.shape == (int(problem.n_jobs), T) and J:
        ev = evaluate(problem, run, result.power_fraction, result.pool)
        end = _finish_s(ev["work_slot_s"][:J], rem + ev["lost_work_s"][:J], ev["finished"][:J], slot_s)
    return lateness(dl, end, rel * slot_s + rem, T * slot_s, must)


def _finish_s(work_slot_s: NDArray[np.float64], need_s: NDArray[np.float64], finished: NDArray[np.bool_],
              slot_s: float) -> NDArray[np.float64]:
    """When each finished row's work ``need_s`` is done, at its pace inside the slot it completes in (NaN
    where unfinished); a row with nothing to do is done at 0."""
    J, T = work_slot_s.shape
    cum = np.cumsum(work_slot_s, axis=1)
    tol = 1e-6 * np.maximum(need_s, 1.0)
    t = np.argmax(cum >= (need_s - tol)[:, None], axis=1) if T else np.zeros(J, dtype=np.int64)
    rows = np.arange(J)
    before = cum[rows, t] - work_slot_s[rows, t] if T else np.zeros(J)
    frac = np.clip((need_s - before) / np.maximum(work_slot_s[rows, t] if T else 1.0, 1e-12), 0.0, 1.0)
    end = (t + frac) * slot_s
    return np.where(np.asarray(finished, bool), np.where(need_s > 0, end, 0.0), np.nan)
