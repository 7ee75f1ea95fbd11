"""The FAST PATH (DESIGN section 4): make a tick's decided set fit this slot's ACTUAL budget
``min(site_max_w, grid_cap_w + wind_w)`` within the same tick: lower power fractions first, then drop new
starts and preempt preemptible work, then stop running non-preemptible work, lowest priority first in each
step. Pure: no executor calls.

DESIGN section 2's objective puts "no hard violation" before a non-preemptible job's unbroken block; the
fast path keeps that order in one place for every policy (the policy's decisions are its input, whatever
the policy). So a running non-preemptible job is stopped when the actual cap cannot be kept with it
running, even at its pool's minimum fraction: in a slot whose idle floor alone breaks the cap (the plan
ends the job's block there, unfinished: kernels' checker ``_np_valid``), and in a slot whose actual cap
turned out lower than inference + running non-preemptible work draw. It goes back to the queue like any
preemption (reason ``power_cap``; the work since its last checkpoint is lost) and starts a new block when
the cap allows. Work is shed only in such a slot: where the cap holds, nothing here stops anything.

Not shed here: must-run inference (``sanitize_run`` serves it whatever the policy said, and the promise
"inference never misses capacity" is kept by the loop) and the idle site itself; what they alone draw above
the budget is ``violation_w``, recorded. Note that the kernels' plan runs nothing at all, inference
included, in a slot whose idle floor alone breaks a cap (``kernels.check.check_result``); the loop still
serves inference there. Whether the loop should shed inference where a cap cannot hold it (issue 11 item 5,
the must-run case) is a change to this rule and to ``sanitize_run`` together, not to a policy."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from scheduler.errors import InputError
from scheduler.jobs import Job
from scheduler.policies.base import Assignment
from scheduler.policies.capacity import SitePower

_TOL_W = 1e-6


@dataclass(frozen=True, slots=True)
class FastPathResult:
    """What the fast path did to the policy's decisions for this slot."""

    run: Mapping[str, Assignment]
    lowered: tuple[tuple[str, float, float], ...]  # (job_id, from, to)
    dropped: tuple[str, ...]  # new starts not made or running jobs preempted / stopped to fit
    facility_w: float  # predicted peak facility power after the fast path
    budget_w: float  # min(site_max_w, grid_cap_w + wind_w) of this slot, actual
    violation_w: float  # > 0 when the idle site and must-run work alone break a cap (nothing else runs)


def enforce_caps(
    power: SitePower,
    run: Mapping[str, Assignment],
    jobs: Mapping[str, Job],
    running: Mapping[str, Any],  # job id -> pool (only membership is used)
    healthy_gpus: Mapping[str, int],
    wind_w: float,
    grid_cap_w: float,
    site_max_w: float,
    unmodelled_w: float = 0.0,
) -> FastPathResult:
    """Make the decided set fit this slot's ACTUAL budget ``min(site_max_w, grid_cap_w + wind_w)``.

    ``run``: the decided jobs (pool, fraction); ``jobs``: job values by id; ``running``: job id -> pool of
    jobs running now. Steps: (1) lower fractions of non-inference jobs, lowest priority first, down to the
    pool minimum; (2) drop new starts and preempt preemptible running work, lowest priority first (at equal
    priority a new start goes before running work, later submissions first), and only then stop running
    non-preemptible work, lowest priority first (the module docstring: the cap comes first); (3) raise
    fractions back, highest priority first, where the freed headroom allows. Must-run (inference) work is
    never shed here; what it and the idle site alone draw above the budget is ``violation_w``. Pure: no
    executor calls.

    ``unmodelled_w``: facility watts measured now beyond what the model gives for what runs now
    (:func:`scheduler.pipeline.measured_power`; 0 without a measurement). It is added to the decided set's
    modelled load and stays there whatever is shed: the fast path cannot know which job draws it.
    """
    budget = float(SitePower.budget_w(wind_w, grid_cap_w, site_max_w))
    healthy = power.healthy_array(healthy_gpus)
    fr: dict[str, float] = {}
    pidx: dict[str, int] = {}
    if not 0.0 <= unmodelled_w < float("inf"):
        raise InputError(f"unmodelled_w is {unmodelled_w!r} W; it must be a finite number >= 0")
    load = power.base_w(healthy) + float(unmodelled_w)
    index = power.index
    w0 = power._gpu_w0.tolist()
    ws = power._gpu_w_slope.tolist()
    fmin_p = power.min_power_fraction.tolist()
    for jid, a in run.items():
        p = index[a.pool]
        f = a.power_fraction
        f = fmin_p[p] if f < fmin_p[p] else (1.0 if f > 1.0 else float(f))
        fr[jid] = f
        pidx[jid] = p
        load += jobs[jid].gpus * (w0[p] + ws[p] * f)
    lowered: list[tuple[str, float, float]] = []
    dropped: list[str] = []
    if load > budget + _TOL_W:
        # (1) lower power fractions, lowest priority first
        order = sorted(
            (jid for jid in fr if not jobs[jid].must_run),
            key=lambda j: (jobs[j].priority, j in running, -jobs[j].submit_s),
        )
        for jid in order:
            if load <= budget + _TOL_W:
                break
            p, g = pidx[jid], jobs[jid].gpus
            fmin = float(power.min_power_fraction[p])
            per_f = g * (power.gpu_w(p, 1.0) - power.gpu_w(p, 0.0))
            can = (fr[jid] - fmin) * per_f
            if can <= 0:
                continue
            cut = min(can, load - budget)
            new_f = fr[jid] - cut / per_f
            load -= cut
            lowered.append((jid, fr[jid], new_f))
            fr[jid] = new_f
        # (2) drop new starts and preempt preemptible work, then stop running non-preemptible work; lowest
        # priority first in each (the cap comes first: DESIGN section 2; module docstring)
        if load > budget + _TOL_W:
            order = sorted(
                (jid for jid in fr if not jobs[jid].must_run),
                key=lambda j: (
                    j in running and not jobs[j].preemptible, jobs[j].priority, j in running, -jobs[j].submit_s
                ),
            )
            for jid in order:
                if load <= budget + _TOL_W:
                    break
                load -= jobs[jid].gpus * power.gpu_w(pidx[jid], fr[jid])
                dropped.append(jid)
                del fr[jid]
            # (3) give headroom back, highest priority first
            if load < budget - _TOL_W:
                low = {j: f0 for j, f0, _ in lowered}
                for jid in sorted((j for j in fr if j in low), key=lambda j: (-jobs[j].priority, jobs[j].submit_s)):
                    p, g = pidx[jid], jobs[jid].gpus
                    per_f = g * (power.gpu_w(p, 1.0) - power.gpu_w(p, 0.0))
                    room = budget - load
                    if room <= _TOL_W:
                        break
                    up = min(low[jid] - fr[jid], room / per_f)
                    fr[jid] += up
                    load += up * per_f
        lowered = [(j, f0, fr[j]) for j, f0, _ in lowered if j in fr and fr[j] < f0 - 1e-12]
    new_run = {
        jid: a if a.power_fraction == fr[jid] else Assignment(a.pool, fr[jid]) for jid, a in run.items() if jid in fr
    }
    violation = max(load - budget, 0.0) if load > budget + _TOL_W else 0.0
    return FastPathResult(
        run=new_run,
        lowered=tuple(lowered),
        dropped=tuple(dropped),
        facility_w=load,
        budget_w=budget,
        violation_w=violation,
    )
