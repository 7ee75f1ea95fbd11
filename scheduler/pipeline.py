"""The steps between a policy's decision and the executor, written once for the simulation, the demo and
the server: :func:`constrain` (sanitize -> hold for inference -> tenants' rights -> fast path), then
:func:`order_actions` (stop, then power, then start) and :func:`start_candidates`. Pure."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from scheduler.energy import EnergySeries
from scheduler.fastpath import FastPathResult, enforce_caps
from scheduler.jobs import Job, eligible_pools
from scheduler.models import Site
from scheduler.policies.base import Assignment, JobState, Snapshot
from scheduler.policies.capacity import EligibilityCache, SitePower, inference_pool_order
from scheduler.power_devices import it_power_with_measured_w
from scheduler.reserve import hold_for_reserve, reserve_peaks
from scheduler.rules import RulesResult, enforce_rules

log = logging.getLogger(__name__)


def sanitize_run(
    site: Site,
    run: Mapping[str, Assignment],
    active: Mapping[str, JobState],
    home_pool: Callable[[Job], str | None] | None = None,
    *,
    elig: Callable[[Job], Sequence[int]] | None = None,
    running: Iterable[JobState] | None = None,
    queued_must_run: Iterable[JobState] | None = None,
    shed: Collection[str] = (),
) -> tuple[dict[str, Assignment], list[str]]:
    """The decisions a tick may act on. Drops decisions for unknown / inactive jobs, unknown pools and pools
    the job may not use (:func:`scheduler.jobs.eligible_pools`: labels, sovereignty, size): sovereignty is
    never left to the policy. Running non-preemptible work cannot move (it stays in its pool at the decided
    fraction), and running must-run or non-preemptible work the policy left out keeps running as it is:
    stopping it is the fast path's rule alone, where the actual cap cannot hold it (non-preemptible work,
    then inference last, in the kernels' serving order: :mod:`scheduler.fastpath`), the same under every
    policy. Returns (run, refused ids).

    ``active``: the queued and running jobs by id. With ``home_pool`` (:meth:`ControlLoop.home_pool`),
    inference is served whatever the policy said: queued must-run work it left out starts in its home pool
    at full power. ``elig`` (an :class:`EligibilityCache`), ``running`` (the running jobs) and
    ``queued_must_run`` (queued inference) spare a scan of ``active`` where the caller keeps them. ``shed``:
    inference the plan sheds in this slot (``Decisions.shed``: the cap cannot hold all of it) is neither kept
    running nor started. Pure.
    """
    elig = elig if elig is not None else EligibilityCache(site)
    index = {p.name: i for i, p in enumerate(site.pools)}
    out: dict[str, Assignment] = {}
    refused: list[str] = []
    for jid, a in run.items():
        js = active.get(jid)
        p = index.get(a.pool)
        if js is None or p is None:
            refused.append(jid)
            continue
        if p not in elig(js.job):
            log.warning("policy placed job %s in ineligible pool %s: refused", jid, a.pool)
            refused.append(jid)
            continue
        if js.state == "running" and a.pool != js.pool and not js.job.preemptible:
            out[jid] = Assignment(js.pool or a.pool, a.power_fraction)  # cannot move: stays
            continue
        out[jid] = a
    for js in running if running is not None else (s for s in active.values() if s.state == "running"):
        jid = js.job.job_id
        if jid not in out and (js.job.must_run or not js.job.preemptible) and jid not in shed:
            out[jid] = Assignment(js.pool or site.pools[0].name, js.power_fraction)
    if home_pool is not None:
        waiting = (
            queued_must_run
            if queued_must_run is not None
            else (s for s in active.values() if s.job.must_run and s.state == "queued")
        )
        for js in waiting:
            jid = js.job.job_id
            if jid not in out and jid not in shed:
                home = home_pool(js.job)
                if home is not None:
                    out[jid] = Assignment(home, 1.0)
    return out, refused


@dataclass(frozen=True, slots=True)
class MeasuredPower:
    """Facility power with measured GPU draw where the executor measures it (:func:`measured_power`)."""

    facility_w: float  # pue * (measured GPUs + hosts in measured pools, the model in the others)
    model_facility_w: float  # pue * the model's IT power of what runs now
    unmodelled_w: float  # facility W the fast path adds to its model: sum over pools of max(0, measured - model)
    source: Mapping[str, str]  # pool -> "measured" or "model"


def measured_power(
    power: SitePower,
    running_states: Iterable[JobState],
    healthy_gpus: Mapping[str, int],
    measured_gpu_w: Mapping[str, float],
) -> MeasuredPower:
    """Measured power beside the model, for the fast path and the cap alerts (DESIGN section 2).

    Per pool, the IT power of what runs now is taken from the model (``SitePower``) and, where the pool is
    measured, from :func:`scheduler.power_devices.it_power_with_measured_w` (measured GPU draw + hosts).
    The fast path counts ``max(model, measured)`` per pool: a measured draw above the model (an unmodelled
    load, a GPU that ignores its limit, a wrong site file) is real and must be shed; a measured draw below
    the model is not credited, because a GPU below its power limit may rise to it within the slot (the model
    is the limit the scheduler set, the bound the caps rely on). The excess stays fixed while the fast path
    sheds modelled load, so what it sheds is at least what the excess needs. Pure."""
    n_p = len(power.names)
    active = np.zeros(n_p)
    busy = np.zeros(n_p)
    for js in running_states:
        p = power.index.get(js.pool or "")
        if p is not None:
            active[p] += js.job.gpus * js.power_fraction * power.tdp_w[p]
            busy[p] += js.job.gpus
    healthy = power.healthy_array(healthy_gpus)
    model_it: dict[str, float] = {}
    for p, name in enumerate(power.names):
        one = np.zeros(n_p)
        one[p] = 1.0
        model_it[name] = power.facility_w(active * one, busy * one, healthy * one) / power.pue
    host = {name: float(power.host_w_per_gpu[p]) for p, name in enumerate(power.names)}
    watts, source = it_power_with_measured_w(model_it, measured_gpu_w, host, healthy_gpus)
    excess = sum(max(watts[n] - model_it[n], 0.0) for n in power.names)
    return MeasuredPower(
        facility_w=power.pue * sum(watts.values()),
        model_facility_w=power.pue * sum(model_it.values()),
        unmodelled_w=power.pue * excess,
        source=source,
    )


@dataclass(frozen=True, slots=True)
class Constrained:
    """A policy's decisions after every step that makes them safe and fair (:func:`constrain`)."""

    run: dict[str, Assignment]  # what apply carries out
    refused: tuple[str, ...]  # unknown / inactive jobs, unknown or ineligible pools
    held: tuple[str, ...]  # non-preemptible starts held back to keep the inference reserve free
    rules: RulesResult  # quotas, owed commitments, weighted fair share
    fast_path: FastPathResult  # the actual caps of this slot
    measured: MeasuredPower | None = None  # None: the executor measures nothing; the model alone


def constrain(
    power: SitePower,
    elig: Callable[[Job], Sequence[int]],
    decided: Mapping[str, Assignment],
    snapshot: Snapshot,
    *,
    active: Mapping[str, JobState],
    running: Mapping[str, object],
    running_states: Iterable[JobState],
    queued_must_run: Iterable[JobState],
    queued: Iterable[Job],
    jobs: Mapping[str, Job],
    healthy_gpus: Mapping[str, int],
    actual: EnergySeries,
    home_pool: Callable[[Job], str | None],
    measured_gpu_w: Mapping[str, float] | None = None,
    shed: Collection[str] = (),
) -> Constrained:
    """THE steps between a policy's decision and the executor, for the simulation, the demo and the server
    alike: sanitize (sovereignty; inference served) -> hold for the inference reserve -> tenants' rights
    (:func:`scheduler.rules.enforce_rules`) -> the fast path against this slot's ACTUAL caps
    (:func:`enforce_caps`). ``active``: queued and running jobs; ``running``: the ids of the running ones
    (membership only: a plain dict is fastest); ``running_states``: their JobStates;
    ``queued_must_run``: queued inference; ``queued``: the queued jobs; ``jobs``: every active job by id;
    ``measured_gpu_w``: GPU draw per measured pool (:func:`scheduler.executors.base.measured_gpu_power_w`;
    None or empty: nothing measured): the fast path then checks the caps against ``max(model, measured)``
    per pool (:func:`measured_power`); ``shed``: ``Decisions.shed`` (:func:`sanitize_run`)."""
    measured = None
    if measured_gpu_w:
        running_states = list(running_states)
        measured = measured_power(power, running_states, healthy_gpus, measured_gpu_w)
    run, refused = sanitize_run(power.site, decided, active, home_pool, elig=elig, running=running_states,
                                queued_must_run=queued_must_run, shed=shed)  # fmt: skip
    run, held = hold_for_reserve(power, run, jobs, running, healthy_gpus, snapshot.inference_reserve_gpus)
    rules = enforce_rules(
        run, jobs, running, queued, healthy_gpus, snapshot.tenant_info, elig, power.names,
        float(snapshot.forecast.slot_s), exclude=(*refused, *held),
        reserve_gpus=reserve_peaks(snapshot.inference_reserve_gpus),
    )  # fmt: skip
    fp = enforce_caps(power, rules.run, jobs, running, healthy_gpus, float(actual.wind_w[0]),
                      float(actual.grid_cap_w[0]), float(actual.site_max_w[0]),
                      measured.unmodelled_w if measured is not None else 0.0, states=active,
                      tenants=snapshot.tenant_info)  # fmt: skip
    return Constrained(dict(fp.run), tuple(refused), held, rules, fp, measured)


@dataclass(frozen=True, slots=True)
class ActionPlan:
    """What a tick does to the executor, in the order it must be done: stop first (frees GPUs and power),
    then change power limits, then start."""

    preempt: tuple[str, ...]  # running jobs absent from the run set, or moved to another pool
    set_power: tuple[tuple[str, float], ...]  # (job_id, new fraction) of jobs that keep running
    start: tuple[tuple[str, Assignment], ...]  # queued (or moved) jobs to start


def order_actions(run: Mapping[str, Assignment], running: Mapping[str, tuple[str, float]]) -> ActionPlan:
    """The :class:`ActionPlan` that turns ``running`` (job id -> (pool, fraction)) into ``run``. Pure."""
    preempt = tuple(jid for jid, (pool, _) in running.items() if jid not in run or run[jid].pool != pool)
    moved = set(preempt)
    set_power: list[tuple[str, float]] = []
    start: list[tuple[str, Assignment]] = []
    for jid, a in run.items():
        cur = running.get(jid)
        if cur is None or jid in moved:
            start.append((jid, a))
        elif abs(a.power_fraction - cur[1]) > 1e-12:
            set_power.append((jid, a.power_fraction))
    return ActionPlan(preempt, tuple(set_power), tuple(start))


def start_candidates(site: Site, job: Job, a: Assignment) -> list[Assignment]:
    """Where to try to start ``job``: the decided pool, then (inference only: it is served where it fits,
    because the policy plans at pool level and nodes may be fragmented) every other eligible pool at full
    power, in :func:`inference_pool_order`. The loop and the server try the same places in the same order."""
    out = [a]
    if job.must_run:
        order = inference_pool_order(site, eligible_pools(site, job))
        out += [Assignment(site.pools[p].name, 1.0) for p in order if site.pools[p].name != a.pool]
    return out
