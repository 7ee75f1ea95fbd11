"""The windward policy's tick at scale (issue 13): the array / cached forms of build_problem's per-job fields and
of the policy's slot-0 passes answer exactly what the per-job definitions answer, on seeded families."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pytest

from kernels.power import speed
from kernels.problem import NO_DEADLINE
from scheduler.energy import EnergySeries
from scheduler.jobs import Job, pool_matches
from scheduler.models import CLEARANCE_LEVELS, load_site
from scheduler.planner import SERVING_WEIGHT_STEP, WeightSettings, build_problem, serving_keys
from scheduler.policies.base import Assignment, Decisions, JobState, Snapshot, TenantInfo
from scheduler.policies.windward import WindwardPolicy
from scheduler.reasons import LazySchedule, schedule_of

SLOT_S = 900.0
T = 16


def _forecast(rng: np.random.Generator) -> EnergySeries:
    return EnergySeries(
        start_utc=datetime(2023, 6, 1, tzinfo=UTC), slot_s=SLOT_S,
        wind_w=rng.uniform(0.0, 3e7, T), carbon_g_per_kwh=rng.uniform(50.0, 400.0, T),
        price_eur_per_mwh=np.full(T, 80.0), grid_cap_w=np.full(T, 5e7), site_max_w=np.full(T, 9e7),
        source="hand-made",
    )  # fmt: skip


def _snapshot(seed: int) -> Snapshot:
    """A snapshot whose jobs repeat a few eligibility needs with variations (selector, jurisdiction, clearance,
    the tenant's pools, GPUs), with and without deadlines, queued and running, across tenants of every kind."""
    rng = np.random.default_rng(seed)
    site = load_site("rotterdam-100k" if seed % 2 else "demo")
    names = [p.name for p in site.pools]
    selectors = [None, "gpu=h100", "jurisdiction=nl,clearance=secret", "gpu=h200", "jurisdiction=eu", *names]
    allowed = [(), (names[0],), tuple(names[1:]), tuple(names)]
    tenants = ["acme", "science", "gov", "public", "unknown"]
    now = 36_000.0
    jobs = []
    for i in range(int(rng.integers(150, 400))):
        kind = str(rng.choice(["training", "batch", "inference"], p=[0.6, 0.3, 0.1]))
        deadline = None if rng.random() < 0.4 else now + float(rng.uniform(-3, 30)) * SLOT_S
        job = Job(
            f"j{i}", str(rng.choice(tenants)), kind, now + float(rng.uniform(-40_000, 4 * SLOT_S)),
            int(rng.choice([1, 2, 4, 8, 16, 32])), float(rng.uniform(600, 40_000)), deadline_s=deadline,
            preemptible=bool(rng.random() < 0.8), pool=selectors[int(rng.integers(len(selectors)))],
            priority=int(rng.integers(-3, 10)), jurisdiction=[None, None, "nl", "eu"][int(rng.integers(4))],
            clearance=[None, *CLEARANCE_LEVELS][int(rng.integers(len(CLEARANCE_LEVELS) + 1))],
            pools_allowed=allowed[int(rng.integers(len(allowed)))],
        )  # fmt: skip
        done = float(rng.uniform(0, job.duration_s * 1.2))
        if rng.random() < 0.4 and job.submit_s <= now:
            jobs.append(JobState(job, "running", work_done_s=done, checkpoint_work_s=done * float(rng.random()),
                                 pool=str(rng.choice(names)), power_fraction=float(rng.choice([0.5, 0.8, 1.0]))))
        else:
            jobs.append(JobState(job, "queued", work_done_s=done if rng.random() < 0.3 else 0.0))
    tenant_info = {
        "acme": TenantInfo(priority=2, quota_gpus=64),
        "science": {"priority": 1, "commitment_owed_gpu_h": 12.0},
        "gov": TenantInfo(commitment_owed_gpu_h=float(seed % 2)),
        "public": {"owed_gpu_h": 0.0},
    }  # "unknown" has no entry
    return Snapshot(now_s=now, slot=40, site=site, jobs=tuple(jobs), healthy_gpus={},
                    forecast=_forecast(rng), tenant_info=tenant_info)  # fmt: skip


@pytest.mark.parametrize("seed", range(10))
def test_build_problem_per_job_fields_are_the_per_job_definitions(seed: int) -> None:
    snap = _snapshot(seed)
    restart = 300.0 * (seed % 3)
    settings = WeightSettings(deadline_margin_slots=0, restart_overhead_s=restart)
    problem, index = build_problem(snap, T, weights=settings)
    pools = snap.site.pools
    J = len(snap.jobs)
    assert index.job_ids == tuple(js.job.job_id for js in snap.jobs)
    base = settings.weight_margin * max(snap.site.pue * (p.tdp_w - p.idle_w) for p in pools) / 3.6e6 * max(
        float(problem.carbon_g_per_kwh.max()), 1.0)
    must_w: list[float] = []
    for i, js in enumerate(snap.jobs):
        job = js.job
        assert problem.eligible[i].tolist() == [p.gpus >= job.gpus and pool_matches(p, job) for p in pools], i
        assert problem.gpus[i] == job.gpus and problem.remaining_s[i] == js.remaining_s
        assert problem.release[i] == max(math.ceil((job.submit_s - snap.now_s) / SLOT_S - 1e-9), 0)
        assert problem.must_run[i] == job.must_run
        assert problem.preemptible[i] == (job.preemptible and not job.must_run)
        running = js.state == "running"
        assert problem.running_pool[i] == ([p.name for p in pools].index(js.pool) if running else -1)
        assert problem.preempt_loss_s[i] == (max(js.work_done_s - js.checkpoint_work_s, 0.0) + restart
                                             if running else 0.0)  # fmt: skip
        info = snap.tenant_info.get(job.tenant)
        get = (info.get if isinstance(info, dict) else lambda k, i=info: getattr(i, k, None)) if info else None
        cls = (get("priority") or 0) if get else 0
        owed = bool(get and ((get("commitment_owed_gpu_h") or 0.0) > 0 or (get("owed_gpu_h") or 0.0) > 0))
        exp = min(max(job.priority + cls, -settings.max_priority_exponent), settings.max_priority_exponent)
        w = base * 2.0**exp * (1.0 + max(snap.now_s - job.submit_s, 0.0) / 3600.0 / settings.age_h)
        w *= 10.0 if owed else 1.0
        if job.must_run:  # ordered by the serving key on the must-run rows' scale (checked below)
            must_w.append(w)
        else:
            assert problem.weight[i] == pytest.approx(w, rel=1e-12), i
        earliest = int(problem.release[i]) + math.ceil(js.remaining_s / SLOT_S - 1e-9)
        if job.deadline_s is None:
            want = NO_DEADLINE
        else:
            want = max(min(max(math.floor((job.deadline_s - snap.now_s) / SLOT_S + 1e-9), 0), NO_DEADLINE - 1),
                       earliest)  # fmt: skip
        assert problem.deadline[i] == (min(want, earliest) if owed else want), i
    assert problem.n_jobs == J
    # must-run rows: the largest of their weights, less SERVING_WEIGHT_STEP per step of the serving key below the
    # highest (round 24: one serving order for plan and loop)
    m = np.flatnonzero(problem.must_run)
    key = serving_keys([snap.jobs[i].job for i in m.tolist()], snap.tenant_info)
    assert m.size > 1 and len(set(key.tolist())) > 1
    assert problem.weight[m] == pytest.approx(max(must_w) * (1.0 - SERVING_WEIGHT_STEP * (key.max() - key)), rel=1e-12)
    # the family exercises what it should: shared needs with different answers, deadlines, owed work
    assert 0 < problem.eligible.sum() < problem.eligible.size
    assert (problem.deadline != NO_DEADLINE).any() and (problem.weight > base * 9).any()


@pytest.mark.parametrize("seed", range(8))
def test_meet_deadlines_within_slot_picks_the_lowest_level_that_ends_in_time(seed: int) -> None:
    snap = _snapshot(seed)
    rng = np.random.default_rng(100 + seed)
    pools = {p.name: p for p in snap.site.pools}
    run = {}
    for js in snap.jobs:
        if rng.random() < 0.7:
            pool = pools[str(rng.choice(list(pools)))]
            run[js.job.job_id] = Assignment(pool.name, float(rng.choice([f for f, _ in pool.speed_curve])))
    out = WindwardPolicy._meet_deadlines_within_slot(snap, Decisions(run=run))
    by_id = {js.job.job_id: js for js in snap.jobs}
    raised = 0
    for jid, a in run.items():
        js, pool = by_id[jid], pools[a.pool]
        got = out.run[jid]
        assert got.pool == a.pool
        if js.job.deadline_s is None or a.power_fraction >= 1.0:
            assert got == a
            continue
        pts = np.asarray(pool.speed_curve, dtype=np.float64)
        left = js.job.deadline_s - snap.now_s
        levels = sorted(float(f) for f in pts[:, 0] if f >= a.power_fraction - 1e-9 and f >= pool.min_power_fraction - 1e-9)
        ok = [f for f in levels if js.remaining_s / max(float(speed(pts[:, 0], pts[:, 1], f)), 1e-9) <= left + 1e-6]
        want = max(ok[0] if ok else 1.0, a.power_fraction)
        assert got.power_fraction == want, jid
        raised += got.power_fraction > a.power_fraction
    assert raised > 0


class _CountingSchedule(LazySchedule):
    """A LazySchedule that counts how often its full length (the whole schedule) is computed."""

    computed = 0

    def __len__(self) -> int:
        _CountingSchedule.computed += 1
        return super().__len__()


@pytest.mark.parametrize("seed", range(3))
def test_decisions_and_the_lazy_schedule_are_passed_on_without_computing_the_schedule(seed: int) -> None:
    from types import SimpleNamespace

    from scheduler.planner import decisions_from_result

    snap = _snapshot(seed)
    problem, index = build_problem(snap, T)
    rng = np.random.default_rng(seed)
    run = rng.random((problem.n_jobs, T)) < 0.3
    plan = SimpleNamespace(run=run, power_fraction=np.where(run, rng.uniform(0.3, 1.0, run.shape), 0.0).astype(np.float32),
                           pool=rng.integers(-1, len(index.pool_names), problem.n_jobs).astype(np.int32))
    dec = decisions_from_result(plan, index)  # type: ignore[arg-type]
    assert set(dec.run) == {index.job_ids[j] for j in np.flatnonzero(run[:, 0] & (plan.pool >= 0))}
    for jid, a in dec.run.items():
        j = index.job_row(jid)
        assert a == Assignment(index.pool_names[plan.pool[j]], float(plan.power_fraction[j, 0]))
        assert type(a.power_fraction) is float
    lazy = _CountingSchedule(plan, index)
    _CountingSchedule.computed = 0
    assert schedule_of(Decisions(run=dec.run, schedule=lazy)) is lazy
    assert _CountingSchedule.computed == 0
    assert schedule_of(Decisions(run={})) == {}


@pytest.mark.parametrize("seed", range(8))
def test_shift_result_moves_each_job_row_by_its_id(seed: int) -> None:
    """The warm start: row of job ``j`` = the previous plan's row of ``j`` moved left by the slots elapsed (past
    the previous horizon nothing runs), new jobs empty; per-slot arrays shifted with their last slot held."""
    from dataclasses import replace
    from types import SimpleNamespace

    from kernels.problem import PlanResult
    from scheduler.policies.windward import shift_result

    rng = np.random.default_rng(seed)
    J0, T0, P = int(rng.integers(1, 60)), int(rng.integers(1, 20)), 3
    run = rng.random((J0, T0)) < 0.4
    prev = PlanResult(
        status="feasible", reason="", run=run, power_fraction=np.where(run, rng.uniform(0.3, 1, run.shape), 0).astype(np.float32),
        pool=rng.integers(-1, P, J0).astype(np.int32), work_done_s=rng.random(J0), finished=rng.random(J0) < 0.5,
        facility_w=rng.random(T0), grid_import_w=rng.random(T0), carbon_g=rng.random(T0),
        busy_gpus=rng.integers(0, 9, (P, T0)), dual_price_g_per_gpu_h=rng.random(T0), carbon_g_total=1.0,
        unfinished_gpu_s=0.0, objective=1.0, lower_bound=1.0, gap=0.0, iterations=1,
    )  # fmt: skip
    old_ids = [f"j{i}" for i in range(J0)]
    kept = [j for j in old_ids if rng.random() < 0.7]
    ids = [*kept, *(f"new{i}" for i in range(int(rng.integers(0, 10))))]
    rng.shuffle(ids)
    d, T = int(rng.integers(0, 4)), int(rng.integers(1, 24))
    pidx = SimpleNamespace(job_ids=tuple(old_ids), slot=10)
    idx = SimpleNamespace(job_ids=tuple(ids), slot=10 + d)
    got = shift_result(prev, pidx, idx, T)  # type: ignore[arg-type]
    for r, jid in enumerate(ids):
        if jid not in old_ids:
            assert not got.run[r].any() and not got.power_fraction[r].any() and got.pool[r] == -1
            continue
        i = old_ids.index(jid)
        for t in range(T):
            on = bool(run[i, min(t + d, T0 - 1)]) and t + d < T0
            assert got.run[r, t] == on
            assert got.power_fraction[r, t] == (prev.power_fraction[i, min(t + d, T0 - 1)] if on else 0.0)
        assert got.pool[r] == prev.pool[i]
    assert got.power_fraction.dtype == np.float32 and got.run.dtype == bool
    np.testing.assert_array_equal(got.facility_w, prev.facility_w[np.minimum(np.arange(T) + d, T0 - 1)])
    assert not got.work_done_s.any() and not got.finished.any() and got.diagnostics["shifted_by_slots"] == d
    assert replace(got, diagnostics={}).run.shape == (len(ids), T)


# ------------------------------------------------------------------ at scale: the queue window, no witness


def _window_reference(problem, index, fraction: float, min_fraction: float) -> list[str]:  # noqa: ANN001
    """Job ids queue_window keeps, by its per-job definition: running, must-run, synthetic and due rows, then
    the other queued jobs, tenants taking turns (each tenant's by weight, then deadline, release, row; a job
    placed by its tenant's work before it), while their doable work adds up to at most ``fraction`` of the
    horizon's GPU capacity."""
    n, slot_s = index.n_real, float(problem.slot_s)
    cap = float(np.asarray(problem.pool_gpus)[:, 0].sum()) * problem.n_slots * slot_s
    keep, rest = set(range(n, len(index.job_ids))), []

    def work(i: int) -> float:
        return float(problem.gpus[i]) * min(float(problem.remaining_s[i]), max(problem.n_slots - int(problem.release[i]), 0) * slot_s)

    for i in range(n):
        need = math.ceil(float(problem.remaining_s[i]) / slot_s - 1e-9)
        due = problem.deadline[i] != NO_DEADLINE and problem.deadline[i] - need < problem.n_slots
        if problem.running_pool[i] >= 0 or problem.must_run[i] or due:
            keep.add(i)
        else:
            rest.append(i)
    rest.sort(key=lambda i: (-float(problem.weight[i]), int(problem.deadline[i]), int(problem.release[i]), i))
    budget = max(fraction * cap - sum(work(i) for i in keep), min_fraction * cap)

    ahead, seen = {}, {}  # the work of the job's tenant before it in that order
    for k, i in enumerate(rest):
        t = int(problem.tenant[i])
        ahead[i] = (seen.get(t, 0.0), k)
        seen[t] = seen.get(t, 0.0) + work(i)
    total = 0.0
    for i in sorted(rest, key=lambda i: ahead[i]):
        total += work(i)
        if total > budget:
            break
        keep.add(i)
    return [index.job_ids[i] for i in sorted(keep)]


def _half_the_free_work(problem) -> float:  # noqa: ANN001
    """A window fraction that cuts: the doable work of the rows always kept and half that of the queued jobs that
    are not due, over the capacity."""
    cap = float(np.asarray(problem.pool_gpus)[:, 0].sum()) * T * SLOT_S
    work = problem.gpus * np.minimum(problem.remaining_s, np.maximum(T - problem.release, 0) * SLOT_S)
    needed = np.ceil(problem.remaining_s / SLOT_S - 1e-9)
    free = (problem.running_pool < 0) & ~problem.must_run & ((problem.deadline == NO_DEADLINE) | (problem.deadline - needed >= T))
    return (float(work[~free].sum()) + 0.5 * float(work[free].sum())) / cap


@pytest.mark.parametrize("seed", range(8))
def test_queue_window_keeps_running_due_and_the_most_valuable_queued_work(seed: int) -> None:
    from kernels.planner import JOB_FIELDS
    from scheduler.planner import queue_window

    snap = _snapshot(seed)
    problem, index = build_problem(snap, T, weights=WeightSettings(terminal_value="clearing"))
    fraction = _half_the_free_work(problem)
    sub, sidx = queue_window(problem, index, fraction, 0.0)
    want = _window_reference(problem, index, fraction, 0.0)
    # the floor: the queued jobs get at least min_fraction of the capacity whatever the rows always kept hold
    assert list(queue_window(problem, index, 0.0, 0.05)[1].job_ids) == _window_reference(problem, index, 0.0, 0.05)
    assert list(sidx.job_ids) == want
    assert 0 < len(want) < len(index.job_ids)
    rows = [index.job_row(j) for j in want]
    for f in JOB_FIELDS:
        np.testing.assert_array_equal(np.asarray(getattr(sub, f)), np.asarray(getattr(problem, f))[rows], err_msg=f)
    assert sub.n_slots == problem.n_slots and sidx.n_synthetic == index.n_synthetic and sidx.terminal == index.terminal
    # nothing to cut: the same problem back
    assert queue_window(problem, index, 1e9) == (problem, index)


@pytest.mark.parametrize("seed", [1, 7, 9, 11])  # feasible ones: on the demo site, or with seed 3, 5, ... the family is not
def test_at_scale_the_policy_plans_the_window_without_the_witness(seed: int) -> None:
    """A problem above ``scale_cells`` job-slot cells is planned as its queue window with ``witness="never"``:
    nothing outside the window starts; below it the tick is the one without the scale path."""
    from dataclasses import replace

    import kernels
    from scheduler.planner import queue_window

    snap = _snapshot(seed)
    problem, _ = build_problem(snap, T)  # the jobs some pool can hold (the family has some no pool can)
    snap = replace(snap, jobs=tuple(js for js, ok in zip(snap.jobs, problem.eligible.any(1), strict=True) if ok))
    seen: list = []
    real = kernels.plan

    def keep(problem, warm_start=None, **kw):  # noqa: ANN001, ANN202
        seen.append((problem, kw))
        return real(problem, warm_start=warm_start, **kw)

    kernels.plan = keep  # type: ignore[assignment]
    try:
        weights = WindwardPolicy(4.0).weights
        full, index = build_problem(snap, T, weights=weights,
                                    expected_arrival_gpu_s_per_s=WindwardPolicy(4.0).arrival_rate_gpu_s_per_s(snap))
        fraction = _half_the_free_work(full)
        at_scale = WindwardPolicy(4.0, scale_cells=0, queue_window_fraction=fraction, queue_window_min=0.0).decide(snap)
        (problem, kw), = seen
        sub, sidx = queue_window(full, index, fraction, 0.0)
        assert problem.n_jobs == sub.n_jobs < full.n_jobs and kw == {"witness": "never"}
        assert set(at_scale.run) <= set(sidx.job_ids)
        assert at_scale.plan.diagnostics["witness"]["ran"] is False
        seen.clear()
        below = WindwardPolicy(4.0).decide(snap)
        without = WindwardPolicy(4.0, queue_window_fraction=None, witness_at_scale="auto").decide(snap)
        assert [p.n_jobs for p, _ in seen] == [full.n_jobs, full.n_jobs] and [k for _, k in seen] == [{}, {}]
        assert below.run == without.run
    finally:
        kernels.plan = real  # type: ignore[assignment]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_at_scale_the_window_leaves_every_tenant_work_to_claim_its_share(seed: int) -> None:
    """test_rules' weighted fair share (3:1, tenant b backlogged first) with the scale path forced on the demo site
    and queued work of 0.3 of the horizon's capacity in the window: tenants take turns into the window, so a still gets its share
    in every slot (weight order alone put b's older jobs first and left a 5 GPUs short of its share)."""
    import random

    from test_rules import SITE, START, backlog, energy, gpus_per_slot, tenant

    from scheduler.accounting import LoopTenantInfo
    from scheduler.control import run_simulation

    rng = random.Random(100 + seed)
    tenants = [tenant("a", fair_share_weight=3.0), tenant("b", fair_share_weight=1.0)]
    jobs = backlog(rng, "b", 40, (1, 2), (3.0, 6.0)) + backlog(rng, "a", 60, (1, 2), (3.0, 6.0), submit_s=60.0)
    n = 16
    pol = WindwardPolicy(6.0, scale_cells=0, queue_window_fraction=0.0, queue_window_min=0.3)
    res = run_simulation(SITE, jobs, energy(n + 32), pol, n_slots=n, horizon_slots=24,
                         tenant_info_fn=LoopTenantInfo(SITE, tenants, START.timestamp()))
    a, b = gpus_per_slot(res, "a", n)[2:], gpus_per_slot(res, "b", n)[2:]
    assert a.sum() / (a.sum() + b.sum()) == pytest.approx(0.75, abs=2 / 32 + 1e-9), (a.tolist(), b.tolist())
    assert np.all(np.abs(a - 0.75 * (a + b)) <= 2 + 1e-9), (a.tolist(), b.tolist())
    assert not res.loop.violations


# ------------------------------------------------------------------ slot-0 passes as arrays, jobs in turn


def _slot0_case(seed: int):  # noqa: ANN202
    """A snapshot, its problem, a plan result whose slot-0 facility watts sit ``seed``-dependently above, at or
    below the wind (so a job's grid watts do and do not depend on the jobs settled before it), and decisions
    at curve levels and off them for most running jobs and some queued ones."""
    from types import SimpleNamespace

    snap = _snapshot(seed)
    problem, index = build_problem(snap, T, weights=WeightSettings(restart_overhead_s=300.0 * (seed % 3)))
    rng = np.random.default_rng(200 + seed)
    pools = snap.site.pools
    run = {}
    for js in snap.jobs:
        if rng.random() < (0.9 if js.state == "running" else 0.3):
            pool = pools[int(rng.integers(len(pools)))]
            levels = [f for f, _ in pool.speed_curve]
            f = float(rng.choice(levels)) if rng.random() < 0.8 else float(np.float32(rng.uniform(0.3, 1.0)))
            run[js.job.job_id] = Assignment(pool.name, f)
    load = sum(problem.pue * problem.gpus[index.job_row(j)] * (a.power_fraction * 700.0 - 75.0) for j, a in run.items())
    wind = float(problem.wind_w[0])
    # facility watts: far above the wind, at it plus a fraction of the load, or below it
    fac = wind + load * [3.0, 0.5, 0.05, -0.2][seed % 4]
    result = SimpleNamespace(facility_w=np.array([fac]))
    return snap, problem, index, result, Decisions(run=run)


def _settle_reference(snapshot, problem, index, result, decisions):  # noqa: ANN001, ANN202
    """_settle_running_slot0 by its per-job definition: least valuable first (then by id), each job in turn at the
    best level at or below its planned one given the facility watts the jobs before it left, or stopped."""
    pools = snapshot.site.pools
    p_index = {p.name: i for i, p in enumerate(pools)}
    fac_w = float(result.facility_w[0])
    wind_w, ci = float(problem.wind_w[0]), float(problem.carbon_g_per_kwh[0])
    pue, slot_s = float(problem.pue), float(problem.slot_s)
    cands = []
    for jid, a in decisions.run.items():
        i = index.job_ids[: index.n_real].index(jid)
        if not problem.must_run[i] and problem.running_pool[i] >= 0 and problem.deadline[i] >= problem.n_slots:
            cands.append((float(problem.weight[i]), jid, i, a))
    run = dict(decisions.run)
    for w, jid, i, a in sorted(cands, key=lambda c: c[:2]):
        pool = pools[p_index[a.pool]]
        pts = np.asarray(pool.speed_curve, dtype=np.float64)
        g = float(problem.gpus[i])
        load_now = pue * g * (a.power_fraction * pool.tdp_w - pool.idle_w)
        best_f, best_net, best_load = a.power_fraction, -math.inf, load_now
        levels = sorted((float(f) for f in pts[:, 0] if f <= a.power_fraction + 1e-9 and f >= pool.min_power_fraction - 1e-9),
                        reverse=True)  # fmt: skip
        for f in levels:
            load_w = pue * g * (f * pool.tdp_w - pool.idle_w)
            grid_w = min(load_w, max(fac_w - load_now + load_w - wind_w, 0.0))
            net = slot_s * (w * g * float(speed(pts[:, 0], pts[:, 1], f)) - ci * grid_w / 3.6e6)
            if net > best_net + 1e-9:
                best_f, best_net, best_load = f, net, load_w
        if problem.preemptible[i] and -w * g * float(problem.preempt_loss_s[i]) > best_net:
            best_f, best_load = 0.0, 0.0
        if best_f == a.power_fraction:
            continue
        fac_w += best_load - load_now
        if best_f == 0.0:
            del run[jid]
        else:
            run[jid] = Assignment(pool=a.pool, power_fraction=best_f)
    return run


def _admit_reference(snapshot, problem, index, result, decisions):  # noqa: ANN001, ANN202
    """_admit_slot0 by its per-job definition: new starts of queued preemptible work, least valuable first (then
    by id), each held back in turn while its marginal grid carbon per GPU-second of work exceeds its weight."""
    pools = snapshot.site.pools
    p_index = {p.name: i for i, p in enumerate(pools)}
    fac_w = float(result.facility_w[0])
    wind_w, ci, pue = float(problem.wind_w[0]), float(problem.carbon_g_per_kwh[0]), float(problem.pue)
    cands = []
    for i in range(index.n_real):
        a = decisions.run.get(index.job_ids[i])
        if a is None or problem.must_run[i] or problem.running_pool[i] >= 0 or not problem.preemptible[i]:
            continue
        pool = pools[p_index[a.pool]]
        pts = np.asarray(pool.speed_curve, dtype=np.float64)
        g = int(problem.gpus[i])
        cands.append((float(problem.weight[i]), index.job_ids[i], pue * g * (a.power_fraction * pool.tdp_w - pool.idle_w),
                      g * float(speed(pts[:, 0], pts[:, 1], a.power_fraction))))  # fmt: skip
    drop = set()
    for w, jid, load_w, work in sorted(cands):
        grid_w = min(load_w, max(fac_w - wind_w, 0.0))
        if ci * grid_w / 3.6e6 / max(work, 1e-9) <= w:
            continue
        drop.add(jid)
        fac_w -= load_w
    return {j: a for j, a in decisions.run.items() if j not in drop}


@pytest.mark.parametrize("seed", range(12))
def test_slot0_passes_as_arrays_answer_what_the_jobs_in_turn_answer(seed: int) -> None:
    """_settle_running_slot0 and _admit_slot0 (arrays, :func:`_in_turn`) give the decisions of their per-job loops,
    where the facility is far above the wind (answers independent of the order), near it and below it."""
    snap, problem, index, result, dec = _slot0_case(seed)
    # the weights in ranges where the slot's carbon sometimes outweighs them (else nothing is lowered or held)
    problem = replace_weights(problem, np.random.default_rng(seed).uniform(0.0, 4e-5, problem.n_jobs))
    got = WindwardPolicy._settle_running_slot0(snap, problem, index, result, dec)  # type: ignore[arg-type]
    want = _settle_reference(snap, problem, index, result, dec)
    assert got.run == want and list(got.run) == list(want)
    got = WindwardPolicy._admit_slot0(snap, problem, index, result, dec)  # type: ignore[arg-type]
    want = _admit_reference(snap, problem, index, result, dec)
    assert got.run == want and list(got.run) == list(want)


def test_the_slot0_family_lowers_stops_holds_back_and_keeps() -> None:
    """The family above exercises what it should: levels lowered, jobs stopped, starts held back and kept."""
    lowered = stopped = held = kept = 0
    for seed in range(12):
        snap, problem, index, result, dec = _slot0_case(seed)
        problem = replace_weights(problem, np.random.default_rng(seed).uniform(0.0, 4e-5, problem.n_jobs))
        settled = _settle_reference(snap, problem, index, result, dec)
        lowered += sum(1 for j, a in settled.items() if a.power_fraction < dec.run[j].power_fraction)
        stopped += len(dec.run) - len(settled)
        admitted = _admit_reference(snap, problem, index, result, dec)
        held += len(dec.run) - len(admitted)
        kept += len(admitted)
    assert lowered and stopped and held and kept


def replace_weights(problem, weight):  # noqa: ANN001, ANN201
    from dataclasses import replace

    return replace(problem, weight=weight)


@pytest.mark.parametrize("rounds", [0, 1, 2, 3, 8])
def test_in_turn_gives_the_loop_answers_past_its_rounds(rounds: int) -> None:
    """:func:`_in_turn` against the loop it stands for, on a step whose answers depend on the running total
    everywhere (so the fixed point needs many rounds and the rest goes one at a time)."""
    from scheduler.policies.windward import _in_turn

    rng = np.random.default_rng(rounds)
    x = rng.normal(size=40)

    def step(tot: np.ndarray, s: slice) -> tuple[np.ndarray, np.ndarray]:
        on = tot + x[s] > 0.0
        return on, np.where(on, -np.abs(x[s]) - 0.1, 0.3)

    tot, want = 0.0, []
    for c in range(x.size):
        on = tot + x[c] > 0.0
        want.append(bool(on))
        tot += -abs(x[c]) - 0.1 if on else 0.3
    assert _in_turn(step, 0.0, x.size, rounds=rounds).tolist() == want


@pytest.mark.parametrize("paused_before", [False, True])
def test_the_tick_runs_without_the_cyclic_collector_and_leaves_it_as_found(paused_before: bool) -> None:
    """decide() pauses the cyclic garbage collector while it plans (no full collection of the process inside a
    tick) and leaves it as it found it: on after a tick that found it on, still paused where the caller paused it
    (``windward server``'s start)."""
    import gc

    import kernels

    snap = _snapshot(1)
    seen: list[bool] = []
    real = kernels.plan

    def keep(problem, warm_start=None, **kw):  # noqa: ANN001, ANN202
        seen.append(gc.isenabled())
        return real(problem, warm_start=warm_start, **kw)

    was = gc.isenabled()
    kernels.plan = keep  # type: ignore[assignment]
    try:
        if paused_before:
            gc.disable()
        else:
            gc.enable()
        WindwardPolicy(4.0).decide(snap)
        assert seen and not any(seen)
        assert gc.isenabled() is not paused_before
    finally:
        kernels.plan = real  # type: ignore[assignment]
        if was:
            gc.enable()
        else:
            gc.disable()


def _problems_equal(a, b) -> None:  # noqa: ANN001
    from dataclasses import fields

    for f in fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=f.name)
            assert np.asarray(x).dtype == np.asarray(y).dtype, f.name
        else:
            assert x == y, f.name


@pytest.mark.parametrize("seed", range(6))
def test_a_job_table_kept_across_ticks_gives_the_arrays_of_a_fresh_one(seed: int) -> None:
    """build_problem with one JobTable across a run of snapshots (jobs leaving, new ones, a job whose record is
    replaced under the same id with other GPUs / deadline / tenant / eligibility, the site's pools changing, the
    table compacted) gives the arrays and index it gives without one, tick after tick."""
    from dataclasses import replace

    from scheduler.planner import JobTable

    rng = np.random.default_rng(300 + seed)
    table = JobTable(slack=0)
    snap = _snapshot(seed)
    other_site = _snapshot(seed + 1).site  # the other site of the family (demo / rotterdam-100k)
    settings = WeightSettings(terminal_value="clearing")
    for tick in range(6):
        jobs = [js for js in snap.jobs if rng.random() < 0.85]
        for k in rng.choice(len(jobs), size=min(5, len(jobs)), replace=False).tolist():  # records replaced
            j = jobs[k].job
            jobs[k] = replace(jobs[k], job=replace(j, gpus=int(rng.choice([1, 2, 4])), tenant="science",
                                                   deadline_s=None if j.deadline_s else snap.now_s + 4 * SLOT_S,
                                                   pool=None))  # fmt: skip
        fresh = _snapshot(seed + 100 * (tick + 1))
        jobs += [replace(js, job=replace(js.job, job_id=f"t{tick}-{js.job.job_id}")) for js in fresh.jobs[:20]]
        site = other_site if tick == 3 else snap.site
        snap = replace(snap, jobs=tuple(js for js in jobs if js.state == "queued" or js.pool in
                                        {p.name for p in site.pools}), site=site)  # fmt: skip
        got = build_problem(snap, T, weights=settings, table=table)
        want = build_problem(snap, T, weights=settings)
        _problems_equal(got[0], want[0])
        assert got[1] == want[1]
        assert len(table) <= 2 * len(snap.jobs) + 20
    # most jobs gone: the table keeps at most twice the tick's jobs (plus its slack)
    small = replace(snap, jobs=snap.jobs[:10])
    _problems_equal(build_problem(small, T, weights=settings, table=table)[0], build_problem(small, T, weights=settings)[0])
    assert len(table) == 10
