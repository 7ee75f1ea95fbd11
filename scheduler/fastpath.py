"""The FAST PATH (DESIGN section 4): make a tick's decided set fit this slot's ACTUAL budget
``min(site_max_w, grid_cap_w + wind_w)`` within the same tick: lower power fractions first, then drop new
starts and preempt preemptible work, then stop running non-preemptible work, lowest priority first in each
step, and as the last resort shed must-run inference, from the end of the kernels' serving order. Pure: no
executor calls.

DESIGN section 2's objective puts "no hard violation" before "inference served" and before a non-preemptible
job's unbroken block; the fast path keeps that order in one place for every policy (the policy's decisions
are its input, whatever the policy). So a running non-preemptible job is stopped when the actual cap cannot
be kept with it running, even at its pool's minimum fraction: in a slot whose idle floor alone breaks the
cap (the plan ends the job's block there, unfinished: kernels' checker ``_np_valid``), and in a slot whose
actual cap turned out lower than inference + running non-preemptible work draw. It goes back to the queue
like any preemption (reason ``power_cap``; the work since its last checkpoint is lost) and starts a new block
when the cap allows. Work is shed only in such a slot: where the cap holds, nothing here stops anything.

Must-run inference follows the plan's rule (``kernels.check.inference_shed``) under every policy: where the
cap still cannot hold it with nothing else running, the longest prefix of the one serving order
(:func:`kernels.check.serving_order`, :func:`inference_order`) whose watts fit is served and the rest is
shed, from the end of the order: in a slot whose idle floor alone breaks the cap, all of it, as the plan. The
order's key is the plan's too (:func:`scheduler.planner.serving_keys`: tenant class, job priority, owed
commitment, earlier submission), so where the actual cap equals the forecast one the loop keeps exactly the jobs the plan serves.
A shed inference job is stopped (reason ``power_cap``) or not started; it stays queued and
``sanitize_run`` starts it again at the next tick the cap allows (inference that has started never expires;
one never started expires only when its demand window passes unserved). The windward policy's plan sheds
first where the forecast saw the cap (``Decisions.shed``); the fast path sheds what the actual cap adds. What
the idle site (and any unmodelled draw) alone draws above the budget is ``violation_w``, recorded."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from kernels.check import serving_order
from scheduler.errors import InputError
from scheduler.jobs import Job
from scheduler.planner import serving_keys
from scheduler.policies.base import Assignment, JobState
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
    violation_w: float  # > 0 when the idle site alone (and any unmodelled draw) breaks a cap (nothing runs)


def inference_order(ids: Sequence[str], jobs: Mapping[str, Job], states: Mapping[str, JobState] | None = None,
                    tenants: Mapping[str, Any] | None = None) -> list[str]:
    """``ids`` (must-run jobs) in the order a cap that cannot hold them all serves them: the kernels' one order
    (:func:`kernels.check.serving_order`, which the plan's :func:`~kernels.check.inference_shed` calls), fed
    what the plan feeds it for the same snapshot: ``weight`` the serving key
    (:func:`scheduler.planner.serving_keys`: the tenant's priority class from ``tenants``, the snapshot's
    ``tenant_info``, then the job's priority, an owed commitment, the earlier submission; the plan gives the
    must-run rows the same order under every policy); the GPUs; the remaining work (``states``, else the job's duration); the release
    slot, 0 for every job the loop holds (submitted by now, as in the plan); and the row, the snapshot's order
    (``states``' order: the loop's active jobs, of which the snapshot is made; without ``states``, by
    submission time and then the job id). Pure."""
    st = states if states is not None else {}
    if states is not None:
        pos = {j: k for k, j in enumerate(states)}
        ids = sorted(ids, key=lambda j: (pos.get(j, len(pos)), jobs[j].submit_s, j))
    else:
        ids = sorted(ids, key=lambda j: (jobs[j].submit_s, j))
    rem = [st[j].remaining_s if j in st else jobs[j].duration_s for j in ids]
    o = serving_order(serving_keys([jobs[j] for j in ids], tenants), np.array([jobs[j].gpus for j in ids]),
                      np.array(rem, dtype=np.float64), np.zeros(len(ids)), np.arange(len(ids)))
    return [ids[k] for k in o.tolist()]


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
    states: Mapping[str, JobState] | None = None,
    tenants: Mapping[str, Any] | None = None,
) -> FastPathResult:
    """Make the decided set fit this slot's ACTUAL budget ``min(site_max_w, grid_cap_w + wind_w)``.

    ``run``: the decided jobs (pool, fraction); ``jobs``: job values by id; ``running``: job id -> pool of
    jobs running now. Steps: (1) lower fractions of non-inference jobs, lowest priority first, down to the
    pool minimum; (2) drop new starts and preempt preemptible running work, lowest priority first (at equal
    priority a new start goes before running work, later submissions first), and only then stop running
    non-preemptible work, lowest priority first (the module docstring: the cap comes first); (3) the last
    resort: shed must-run (inference) work from the end of :func:`inference_order` until the cap holds or
    none is left; (4) raise fractions back, highest priority first, where the freed headroom allows. What
    the idle site alone (and ``unmodelled_w``) draws above the budget is ``violation_w``. ``states``: the
    active jobs' states in the snapshot's order (their remaining work and their rows, for the serving order;
    None: each job's duration, by submission); ``tenants``: the snapshot's ``tenant_info`` (the tenants'
    priority classes and owed commitments, for the serving key; None: class 0, nothing owed). Pure: no
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
            # (3) the last resort: shed must-run inference from the end of the kernels' serving order
            if load > budget + _TOL_W:
                for jid in reversed(inference_order([j for j in fr if jobs[j].must_run], jobs, states, tenants)):
                    if load <= budget + _TOL_W:
                        break
                    load -= jobs[jid].gpus * power.gpu_w(pidx[jid], fr[jid])
                    dropped.append(jid)
                    del fr[jid]
            # (4) give headroom back, highest priority first
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
