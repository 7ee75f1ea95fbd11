"""Issue 11: the optimiser is complete and dominates the EDF greedy on a corpus of seeded instances that
span the family's knobs (benchmarks.instances), not only on its own old generator.

For every instance: the plan passes the checker; it finishes every job the greedy finishes, never leaves
more work unfinished or more jobs late, and emits no more carbon where both finish everything; the greedy
fallback did not carry it (``diagnostics["witness"]["used"]`` is False: the optimiser's own plan won); its
lower bound lies below its objective; what it reports about unfinished and late jobs is what the plan
does. Plus the worst cases we can construct, and instances with a congestion event below the idle floor
announced for later (infeasible future slots). Judging lives in tests/kernels/_family.py (shared with
benchmarks/optimizer.py --corpus).
"""

from __future__ import annotations

import math
from dataclasses import replace
from functools import cache
from typing import Any

import numpy as np
import pytest
from _family import dominance_failures, judge, outcome, require, witness_diag

import kernels
from benchmarks.instances import Knobs, corpus, describe, make
from kernels import check_result
from kernels.check import must_window
from kernels.problem import NO_DEADLINE, PlanProblem

N_CORPUS = 200
#: small instances: each plans well under a second on one core
CORPUS = corpus(N_CORPUS, seed=11, n_jobs=(8, 32), n_slots=(12, 32))
#: real-shaped members (NL hourly wind and carbon, ITP jobs), when the shared data is there
REAL = corpus(12, seed=12, n_jobs=(8, 32), n_slots=(16, 32), energy="nl", trace="itp")


def _id(case: tuple[int, Knobs]) -> str:
    s, k = case
    return f"s{s}-J{k.n_jobs}-T{k.n_slots}-P{k.n_pools}"


@cache
def _problem(i: int) -> PlanProblem:
    return make(*CORPUS[i])


def relax_slots(problem: PlanProblem, slots: tuple[int, ...]) -> PlanProblem:
    """``problem`` with the grid cap of ``slots`` raised to what the idle site needs there (and no more):
    a plan that runs nothing in those slots passes the checker on it, one that runs anything does not."""
    H = np.asarray(problem.pool_gpus, dtype=np.float64)
    idle_w = problem.pue * (H * (np.asarray(problem.idle_w) + np.asarray(problem.host_w_per_gpu))[:, None]).sum(axis=0)
    cap = np.asarray(problem.grid_cap_w, dtype=np.float64).copy()
    s = list(slots)
    cap[s] = np.maximum(cap[s], np.maximum(idle_w[s] - np.asarray(problem.wind_w)[s], 0.0) * (1 + 1e-9) + 1.0)
    return replace(problem, grid_cap_w=cap)


def assert_valid(problem: PlanProblem, j: dict[str, Any], *, infeasible_slots: tuple[int, ...] = ()) -> None:
    """The hard part of issue 11 for one plan: a valid plan (checker), a valid greedy, a lower bound below
    the objective, and honest reporting of unfinished and late jobs. ``infeasible_slots``: slots no plan
    can hold; plan and greedy are checked with their caps at the idle site's need (``relax_slots``)."""
    res = j["result"]
    assert res.status in ("optimal", "feasible"), f"status {res.status}: {res.reason}"
    viol, gviol = j["violations"], j["greedy_violations"]
    if infeasible_slots:
        relaxed = relax_slots(problem, infeasible_slots)
        viol = list(check_result(relaxed, res))
        gviol = list(check_result(relaxed, j["greedy"]))
    assert viol == [], f"checker violations: {viol}"
    assert gviol == [], f"the greedy witness itself breaks a rule: {gviol}"
    assert np.isfinite(res.lower_bound) and res.lower_bound <= res.objective * (1 + 1e-9) + 1e-6, \
        f"lower bound {res.lower_bound} above objective {res.objective}"
    plan, greedy, w = j["plan"], j["greedy_outcome"], j["witness"]
    assert res.diagnostics.get("unfinished_jobs") == plan["unfinished_jobs"], \
        f"reports {res.diagnostics.get('unfinished_jobs')} unfinished jobs, the plan leaves {plan['unfinished_jobs']}"
    assert res.diagnostics.get("late_jobs") == plan["late_jobs"], \
        f"reports {res.diagnostics.get('late_jobs')} late jobs, the plan has {plan['late_jobs']}"
    assert (w["unfinished_jobs"], w["late_jobs"]) == (greedy["unfinished_jobs"], greedy["late_jobs"]), \
        f"witness reports {w['unfinished_jobs']} unfinished / {w['late_jobs']} late, greedy_plan gives " \
        f"{greedy['unfinished_jobs']} / {greedy['late_jobs']}"


def losses(j: dict[str, Any]) -> list[str]:
    """Where the optimiser's own plan loses to the greedy: the dominance failures of the returned plan, and
    the fallback (the greedy's plan returned because the optimiser's own lost)."""
    out = [f"plan does not dominate the greedy: {d}" for d in j["dominance"]]
    if j["witness"]["used"] is not False:
        out.append("the greedy fallback carried this instance (the optimiser's own plan lost)")
    return out


def assert_sound(problem: PlanProblem, j: dict[str, Any], *, infeasible_slots: tuple[int, ...] = ()) -> None:
    """Everything issue 11 asks of one plan: valid (:func:`assert_valid`, always enforced) and dominating
    the greedy without the fallback. Issue 11 is open on dominance: an instance the optimiser loses is
    reported as an expected failure naming why, and :func:`test_corpus_losses_do_not_grow` holds the count
    (a ratchet), so a regression fails the suite and the day every instance dominates is seen (XPASS)."""
    assert_valid(problem, j, infeasible_slots=infeasible_slots)
    xfail_if_lost(j)


def xfail_if_lost(j: dict[str, Any]) -> None:
    """Call last in a test: the instance's dominance verdict (an expected failure while issue 11 is open)."""
    lost = losses(j)
    if lost:
        pytest.xfail("issue 11 open (dominance): " + "; ".join(lost))


@cache
def _judged(i: int) -> dict[str, Any]:
    return judge(_problem(i))


@pytest.mark.parametrize("i", range(N_CORPUS), ids=[_id(c) for c in CORPUS])
def test_corpus_instance(i: int) -> None:
    assert_sound(_problem(i), _judged(i))


@pytest.mark.parametrize("i", range(len(REAL)), ids=[_id(c) for c in REAL])
def test_real_shaped_instance(i: int, shared_data: None) -> None:
    pb = make(*REAL[i])
    assert "NL 2021-2023" in describe(pb)["source"]
    assert_sound(pb, judge(pb))


def test_corpus_spans_the_knobs() -> None:
    """The corpus really spans the family (measured from the instances, not only the knobs)."""
    d = [describe(_problem(i)) for i in range(N_CORPUS)]
    assert {x["n_pools"] for x in d} == set(range(1, 7))
    assert min(x["demand_share"] for x in d) < 0.3 and max(x["demand_share"] for x in d) > 0.8
    short = [x["share_slots_grid_plus_wind_below_full_load"] for x in d]
    assert min(short) < 0.1 and sum(s >= 0.5 for s in short) >= 40
    assert sum(x["widest_job_share_of_pool"] >= 0.2 for x in d) >= 40
    assert sum(x["jobs_eligible_for_a_subset"] > 0 for x in d) >= 100
    assert sum(x["non_preemptible"] / x["n_jobs"] >= 0.2 for x in d) >= 30 and min(x["non_preemptible"] for x in d) == 0
    assert sum(x["deadlines_inside_horizon"] > 0 for x in d) >= 100
    assert sum(x["must_run"] > 0 for x in d) >= 60
    assert sum(x["running_non_preemptible"] > 0 for x in d) >= 30
    assert sum(x["running"] - x["running_non_preemptible"] > 0 for x in d) >= 60
    assert sum(x["tenants_with_quota"] > 0 for x in d) >= 60


def test_family_is_deterministic_and_knobs_are_checked() -> None:
    a, b = make(*CORPUS[3]), make(*CORPUS[3])
    assert np.array_equal(a.gpus, b.gpus) and np.array_equal(a.grid_cap_w, b.grid_cap_w)
    with pytest.raises(ValueError, match=r"Knobs.np_share: got 0.5; allowed"):
        Knobs(np_share=0.5)
    with pytest.raises(ValueError, match=r"Knobs.n_pools: got 7"):
        Knobs(n_pools=7)
    with pytest.raises(ValueError, match=r"Knobs.max_width_share"):
        Knobs(max_width_share=0.3)


# --- the worst cases we can construct -------------------------------------------------------------------

def _one_pool(T: int, jobs: int, *, supply_w: np.ndarray | float, gpus: np.ndarray, rem_s: np.ndarray,
              preemptible: np.ndarray, must: np.ndarray | None = None, deadline: np.ndarray | None = None,
              running_pool: np.ndarray | None = None, n_gpus: int = 64) -> PlanProblem:
    """One ``n_gpus``-GPU H100 pool, no wind: the grid cap is ``supply_w``; site max at full load."""
    slot_s = 900.0
    full = 1.15 * n_gpus * (700 + 450)
    carbon = 200 + 150 * np.sin(np.arange(T) / 3.0)
    must = np.zeros(jobs, bool) if must is None else must
    return PlanProblem(
        slot_s=slot_s, pue=1.15, wind_w=np.zeros(T), carbon_g_per_kwh=carbon,
        grid_cap_w=np.broadcast_to(np.asarray(supply_w, dtype=np.float64), (T,)).copy(),
        site_max_w=np.full(T, full + 1.0), pool_gpus=np.full((1, T), n_gpus), tdp_w=np.array([700.0]),
        idle_w=np.array([75.0]), host_w_per_gpu=np.array([450.0]), min_power_fraction=np.array([0.4]),
        curve_f=np.array([[0.4, 0.6, 0.8, 1.0]]), curve_s=np.array([[0.62, 0.82, 0.95, 1.0]]),
        gpus=gpus.astype(np.int64), remaining_s=rem_s.astype(np.float64), release=np.zeros(jobs, np.int64),
        deadline=np.full(jobs, NO_DEADLINE, np.int64) if deadline is None else deadline.astype(np.int64),
        weight=np.full(jobs, 0.5), eligible=np.ones((jobs, 1), bool), must_run=must,
        preemptible=preemptible | must,
        running_pool=np.full(jobs, -1, np.int64) if running_pool is None else running_pool,
        preempt_loss_s=np.zeros(jobs), tenant=np.zeros(jobs, np.int64), tenant_quota_gpus=np.array([np.inf]),
    )


def idle_w(n_gpus: int = 64) -> float:
    """The idle floor of :func:`_one_pool`'s site."""
    return 1.15 * n_gpus * (75 + 450)


def full_w(gpus: int) -> float:
    """Facility watts above idle of ``gpus`` GPUs of :func:`_one_pool` at full power."""
    return 1.15 * gpus * (700 - 75)


IDLE_W = idle_w()
JOB64_FULL_W = full_w(64)
#: the slack over the exact need the worst cases are built with (watts): 1 W, a milliwatt, none at all
SLACKS_W = (1.0, 1e-3, 0.0)


def whole_pool(T: int, *, n_gpus: int = 64, slack_w: float = 1.0, small: tuple[int, ...] = (8, 8, 1),
               small_np: tuple[bool, ...] = (False, False, True)) -> PlanProblem:
    """Job 0, non-preemptible, needs the whole pool for the whole horizon at full power and the cap holds
    exactly that (plus ``slack_w``); the small jobs (``small`` GPUs, one or two slots each, non-preemptible
    where ``small_np``) compete for the same GPUs."""
    k = len(small)
    return _one_pool(T, 1 + k, supply_w=idle_w(n_gpus) + full_w(n_gpus) + slack_w, gpus=np.array([n_gpus, *small]),
                     rem_s=np.array([T * 900.0, *[900.0 * (1 + i % 2) for i in range(k)]]),
                     preemptible=np.array([False, *[not x for x in small_np]]), n_gpus=n_gpus)


@pytest.mark.parametrize("T", [8, 24])
def test_worst_case_whole_pool_non_preemptible_whole_horizon(T: int) -> None:
    """One non-preemptible job needs the whole pool for the whole horizon at full power, and the cap holds
    exactly that (plus 1 W): only a plan that starts it now at full power and keeps it there finishes it
    (it carries most of the penalty; an EDF greedy that starts the small jobs first cannot). The small
    jobs that then cannot fit stay unfinished without breaking a rule.

    The optimiser's own plan (``witness="never"``) is that plan (it fell to the plan construction's 1 W + 1e-6
    margin under the cap and, among non-preemptible blocks, to the 1-GPU job taking a slot of it first). The
    plan returned where the witness is checked must keep every job the greedy finishes (the corpus's
    job-by-job rule), and the greedy finishes the three small ones: there it stays a plan that dominates the
    greedy without the fallback, job 0 unfinished (a plan that finishes job 0 cannot keep those jobs)."""
    pb = whole_pool(T)
    own = kernels.plan(pb, witness="never")
    assert list(check_result(pb, own)) == []
    assert outcome(pb, own)["finished"][0], "the whole-pool job can be finished (now, at full power) but is not"
    assert own.run[0].all() and (own.power_fraction[0] == 1.0).all()
    j = judge(pb)
    assert own.objective < j["greedy_outcome"]["objective"]
    assert_sound(pb, j)


@pytest.mark.parametrize("seed", range(12))
def test_worst_case_whole_pool_family(seed: int) -> None:
    """The whole-pool job across a family: pool size, horizon, slack over the need (1 W, 1 mW, none), and the
    number, width and kind of the small jobs competing for its GPUs. The optimiser's own plan finishes it
    now at full power; the witnessed plan is valid and dominates the greedy without the fallback."""
    rng = np.random.default_rng(9100 + seed)
    n = int(rng.choice([8, 16, 64, 256]))
    T = int(rng.integers(4, 33))
    k = int(rng.integers(1, 5))
    small = tuple(int(x) for x in rng.integers(1, n // 2 + 1, k))
    pb = whole_pool(T, n_gpus=n, slack_w=SLACKS_W[seed % 3], small=small,
                    small_np=tuple(bool(x) for x in rng.random(k) < 0.5))
    own = kernels.plan(pb, witness="never")
    assert list(check_result(pb, own)) == []
    assert own.run[0].all() and (own.power_fraction[0] == 1.0).all(), \
        f"the whole-pool job ({n} GPUs, {T} slots) is not run now at full power: {own.power_fraction[0]}"
    assert_sound(pb, judge(pb))


@pytest.mark.parametrize("T", [8, 24])
def test_worst_case_caps_at_the_idle_floor(T: int) -> None:
    """The grid cap holds the idle site and nothing more (no wind): no job can run; the plan is valid, runs
    nothing, and says every job is unfinished."""
    J = 5
    pb = _one_pool(T, J, supply_w=IDLE_W + 1.0, gpus=np.array([64, 16, 8, 1, 1]),
                   rem_s=np.full(J, 1800.0), preemptible=np.array([False, True, True, False, True]),
                   deadline=np.array([NO_DEADLINE, 3, NO_DEADLINE, 2, 4]))
    j = judge(pb)
    assert_sound(pb, j)
    assert not j["result"].run.any()
    assert j["plan"]["unfinished_jobs"] == J and j["plan"]["late_jobs"] == 3


def test_worst_case_idle_floor_plus_inference() -> None:
    """The cap holds the idle site plus must-run inference at full power and nothing more: inference is
    served, nothing else runs."""
    T, J = 12, 4
    must = np.array([True, False, False, False])
    supply = np.full(T, IDLE_W + 1.0)
    supply[2:6] += 1.15 * 8 * (700 - 75)
    pb = _one_pool(T, J, supply_w=supply, gpus=np.array([8, 8, 1, 64]),
                   rem_s=np.array([4 * 900.0, 900.0, 900.0, 3600.0]), preemptible=np.array([True, True, False, False]),
                   must=must)
    pb = replace(pb, release=np.array([2, 0, 0, 0]))
    j = judge(pb)
    # (it was refused as infeasible: the repair kept the inference under the plan construction's 1 W + 1e-6
    # margin below the cap, more than the slack the pre-check admits it with)
    assert j["result"].status != "infeasible", j["result"].reason
    assert_sound(pb, j)
    assert j["result"].run[0, 2:6].all() and not j["result"].run[1:].any()


@pytest.mark.parametrize("seed", range(12))
def test_worst_case_idle_floor_plus_inference_family(seed: int) -> None:
    """Inference on the idle floor across a family: pool size, horizon, one to three must-run jobs with their
    own windows, and the slack over their need (1 W, 1 mW, none): the cap holds the idle site plus the
    inference at full power; every inference slot is served and the plan is valid."""
    rng = np.random.default_rng(9200 + seed)
    n = int(rng.choice([8, 16, 64, 256]))
    T = int(rng.integers(6, 33))
    m = int(rng.integers(1, 4))
    J = m + 3
    g = np.concatenate([rng.integers(1, n // 4 + 1, m), rng.integers(1, n + 1, 3)])
    rel = np.concatenate([rng.integers(0, T - 1, m), np.zeros(3, np.int64)])
    slots = rng.integers(1, T + 1, m)
    rem = np.concatenate([slots * 900.0, rng.integers(1, T + 1, 3) * 900.0])
    must = np.arange(J) < m
    supply = np.full(T, idle_w(n) + SLACKS_W[seed % 3])
    for i in range(m):  # each inference job's full-power watts in its window
        supply[rel[i]: rel[i] + slots[i]] += full_w(int(g[i]))
    if (supply - idle_w(n) > full_w(n)).any():  # more inference than the pool holds: fewer GPUs
        pytest.skip("drawn inference wider than the pool")
    pb = replace(_one_pool(T, J, supply_w=supply, gpus=g, rem_s=rem, preemptible=rng.random(J) < 0.5, must=must,
                           n_gpus=n), release=rel)
    j = judge(pb)
    assert j["result"].status != "infeasible", j["result"].reason
    assert_sound(pb, j)
    ms, me = must_window(pb)
    for i in range(m):
        assert j["result"].run[i, ms[i]: me[i]].all(), f"inference job {i} not served in [{ms[i]}, {me[i]})"


EXTREME = Knobs(n_jobs=32, n_slots=32, n_pools=3, pool_nodes=(2, 6), max_width_share=0.25, sub_node_share=0.0,
                np_share=0.3, tight_share=0.6, demand_share=0.9, short_share=0.9, congestion_events=4,
                must_share=0.15, running_share=0.4, quota_share=1.0, n_tenants=3)


@pytest.mark.parametrize("seed", range(8))
def test_worst_case_family_extremes(seed: int) -> None:
    """Every knob at its hardest: quarter-pool gangs, 30% non-preemptible, tight deadlines, 90% demand,
    grid + wind short of full load in 90% of the slots, four congestion events, quotas on every tenant."""
    pb = make(1000 + seed, EXTREME)
    assert_sound(pb, judge(pb))


@pytest.mark.parametrize("seed", range(8))
def test_congestion_below_the_idle_floor_announced_for_later(seed: int) -> None:
    """A 1 kW cap announced for later: those slots cannot hold even the idle site. The optimiser plans
    every other slot (and still dominates the greedy there), marks the infeasible slots, runs nothing in
    them, and breaks no other rule."""
    k = replace(CORPUS[seed * 17 % N_CORPUS][1], below_idle_event=True)
    pb = make(5000 + seed, k)
    bad = tuple(describe(pb)["infeasible_slots"])
    assert bad and min(bad) > 0
    j = judge(pb)
    assert_valid(pb, j, infeasible_slots=bad)
    res = j["result"]
    marked = res.diagnostics.get("infeasible_slots")
    assert marked is not None, "diagnostics['infeasible_slots'] is missing (issue 11, item 5)"
    assert set(np.asarray(marked).tolist()) == set(bad)
    assert not res.run[:, list(bad)].any(), "jobs run in slots that cannot hold the idle site"
    deficit = np.asarray(res.diagnostics.get("slot_deficit_w"), dtype=np.float64)
    # per slot of the horizon, or per marked slot in the order of infeasible_slots
    per_bad = deficit[list(bad)] if deficit.shape == (pb.n_slots,) else deficit
    assert per_bad.shape == (len(bad),) and (per_bad > 0).all(), f"slot_deficit_w {deficit} for slots {bad}"
    assert res.run[:, : min(bad)].any() or not j["greedy"].run[:, : min(bad)].any(), "work before the event stopped"
    xfail_if_lost(j)


def _with_shed_slots(seed: int) -> PlanProblem:
    """The first family instance of a few draws with ``inference_over_cap`` (more must-run inference than the
    corpus member) that has marked slots (an instance may have no inference after slot 0)."""
    k = replace(CORPUS[seed * 17 % N_CORPUS][1], inference_over_cap=True, must_share=0.15)
    return next(p for p in (make(7000 + seed + 100 * i, k) for i in range(8)) if describe(p)["shed_slots"])


@pytest.mark.parametrize("seed", range(12))
def test_congestion_between_the_idle_floor_and_the_inference_announced_for_later(seed: int) -> None:
    """A cap announced for later above the idle floor but below the floor plus the must-run inference at full
    power (issue 11 item 5; round 22: the whole plan was "infeasible"). The plan is valid on the problem as it is
    (the marked slots' caps are checked: the inference served holds them), marks exactly those slots, serves
    in each the longest prefix of the shed order that fits (kernels.check.inference_shed: the next job would
    break the cap), runs nothing else there, publishes what it sheds, plans the slots before the event, and the
    greedy witness (which sheds the same) is valid and dominated."""
    from kernels.check import idle_floor_w, inference_shed, must_cells

    pb = _with_shed_slots(seed)
    marked = describe(pb)["shed_slots"]
    j = judge(pb)
    res = j["result"]
    assert res.status in ("optimal", "feasible"), f"status {res.status}: {res.reason}"
    assert j["violations"] == [] and j["greedy_violations"] == [], (j["violations"], j["greedy_violations"])
    assert j["greedy"].status != "infeasible", j["greedy"].reason
    d = res.diagnostics
    assert d["shed_slots"] == marked and d["infeasible_slots"] == []
    sh = inference_shed(pb)
    cells = must_cells(pb)
    assert np.array_equal(res.run[:, marked], cells[:, marked]), "a marked slot runs other than the inference served"
    assert np.array_equal(j["greedy"].run[:, marked], cells[:, marked])
    # as much as fits: the first job shed in each marked slot would break its cap on top of what is served
    ms, me = must_window(pb)
    cap = np.minimum(np.asarray(pb.site_max_w), np.asarray(pb.wind_w) + np.asarray(pb.grid_cap_w))
    per = pb.pue * (np.asarray(pb.tdp_w) - np.asarray(pb.idle_w))
    load = np.where(np.asarray(pb.eligible), per[None, :], np.inf).min(axis=1) * np.asarray(pb.gpus)
    floor = idle_floor_w(pb)
    for i, t in enumerate(marked):
        active = np.asarray(pb.must_run) & (ms <= t) & (t < me)
        shed = active & ~cells[:, t]
        assert shed.any() and d["slot_shed_jobs"][i] == np.flatnonzero(shed).tolist()
        first = np.flatnonzero(shed)[np.argmin(sh.rank[shed])]
        assert floor[t] + load[cells[:, t]].sum() + load[first] > cap[t] * (1 + 1e-9), f"job {first} fits in {t}"
        assert d["slot_shed_gpus"][i] == pytest.approx(float(np.asarray(pb.gpus)[shed].sum()))
        assert d["slot_shed_w"][i] == pytest.approx(float(load[shed].sum()))
        assert res.facility_w[t] <= cap[t] * (1 + 1e-6)
    assert res.run[:, : min(marked)].any() or not j["greedy"].run[:, : min(marked)].any(), "work before it stopped"
    xfail_if_lost(j)


def _with_gpu_shed_slots(seed: int) -> PlanProblem:
    """The first family instance of a few draws with ``inference_over_gpus`` (a node failure or maintenance
    window announced for later slots leaves a pool fewer healthy GPUs than its must-run inference) that has
    marked slots (an instance may have no inference after slot 0)."""
    k = replace(CORPUS[seed * 17 % N_CORPUS][1], inference_over_gpus=True, must_share=0.15)
    return next(p for p in (make(8000 + seed + 100 * i, k) for i in range(8)) if describe(p)["shed_slots"])


@pytest.mark.parametrize("seed", range(12))
def test_a_pool_short_of_gpus_for_its_inference_announced_for_later(seed: int) -> None:
    """A later slot where a pool has fewer healthy GPUs than the must-run inference pinned to it (issue 11 item 5,
    GPUs; round 23: the whole plan was "inference needs N GPUs in slot t but its eligible pools have M"). The
    plan is valid, marks exactly those slots ("GPUs"), serves in each pool the longest prefix of the serving
    order that its GPUs hold (kernels.check.inference_shed: the next job of that pool would not fit), publishes
    what it sheds, plans the slots before, and the greedy witness (which sheds the same) is valid and dominated.
    The rest of the site stays open there (other work may run; only the inference's cells are fixed)."""
    from kernels.check import inference_shed, must_cells, pool_gpus_pt

    pb = _with_gpu_shed_slots(seed)
    marked = describe(pb)["shed_slots"]
    j = judge(pb)
    res = j["result"]
    assert res.status in ("optimal", "feasible"), f"status {res.status}: {res.reason}"
    assert j["violations"] == [] and j["greedy_violations"] == [], (j["violations"], j["greedy_violations"])
    assert j["greedy"].status != "infeasible", j["greedy"].reason
    d = res.diagnostics
    assert d["shed_slots"] == marked and d["infeasible_slots"] == []
    assert d["slot_shed_cause"] == ["GPUs"] * len(marked), d["slot_shed_cause"]
    sh = inference_shed(pb)
    cells = must_cells(pb)
    must = np.asarray(pb.must_run, dtype=bool)
    for r in (res, j["greedy"]):
        assert np.array_equal(r.run[must][:, marked], cells[must][:, marked]), "the inference served differs"
    # as much as fits: in each pool, the first job shed in a marked slot would break its healthy GPUs on top of
    # what is served there (the family pins each must-run job to one pool)
    ms, me = must_window(pb)
    H = pool_gpus_pt(pb)
    gpus = np.asarray(pb.gpus, dtype=np.float64)
    home = np.argmax(np.asarray(pb.eligible), axis=1)
    for i, t in enumerate(marked):
        active = must & (ms <= t) & (t < me)
        shed = active & ~cells[:, t]
        assert shed.any() and d["slot_shed_jobs"][i] == np.flatnonzero(shed).tolist()
        for p in np.unique(home[shed]):
            first = np.flatnonzero(shed & (home == p))[np.argmin(sh.rank[shed & (home == p)])]
            assert gpus[cells[:, t] & (home == p)].sum() + gpus[first] > H[p, t], f"job {first} fits pool {p} in {t}"
        assert d["slot_shed_gpus"][i] == pytest.approx(float(gpus[shed].sum()))
        assert d["slot_shed_w"][i] == pytest.approx(float(sh.load_w[shed].sum()))
    assert res.run[:, : min(marked)].any() or not j["greedy"].run[:, : min(marked)].any(), "work before it stopped"
    xfail_if_lost(j)


def _with_node_failure(seed: int) -> PlanProblem:
    """The first family instance of a few draws with ``node_failure`` (every eligible pool of a queued job loses
    nodes for the whole horizon until none holds it) that has such a job."""
    from kernels.check import unplaceable

    k = CORPUS[seed * 13 % N_CORPUS][1]
    k = replace(k, node_failure=True, running_share=min(k.running_share, 0.1))  # (pools free of running jobs)
    return next(p for p in (make(9000 + seed + 100 * i, k) for i in range(40)) if unplaceable(p).any())


@pytest.mark.parametrize("seed", range(10))
def test_a_node_failure_leaving_a_job_no_pool_leaves_it_out_and_plans_the_rest(seed: int) -> None:
    """A job whose every eligible pool a node failure leaves too small for it (issue 11 item 5, one job; round 23:
    "job N needs G GPUs but its largest eligible pool has M", no plan for any slot). The plan and the greedy
    witness are valid, leave exactly the jobs no pool holds out (kernels.check.unplaceable: they run nowhere,
    ``left_out_jobs``), each unfinished for capacity and proven, the plan dominates the witness, and the other
    jobs are planned as in the problem without them."""
    from kernels.check import explain_unfinished, unplaceable

    pb = _with_node_failure(seed)
    out = unplaceable(pb)
    j = judge(pb)
    res = j["result"]
    assert res.status in ("optimal", "feasible"), f"status {res.status}: {res.reason}"
    assert j["violations"] == [] and j["greedy_violations"] == [], (j["violations"], j["greedy_violations"])
    for r in (res, j["greedy"]):
        assert r.diagnostics["left_out_jobs"] == np.flatnonzero(out).tolist()
        assert not r.run[out].any() and (np.asarray(r.pool)[out] == -1).all()
    e = explain_unfinished(pb, res)
    assert all(e["reason"][i] == "capacity" and e["proven"][i] for i in np.flatnonzero(out & (np.asarray(pb.remaining_s) > 0)))
    rest = kernels.plan(kernels.planner.permute_jobs(pb, np.flatnonzero(~out)))
    assert np.array_equal(res.run[~out], rest.run) and np.array_equal(res.pool[~out], rest.pool)
    xfail_if_lost(j)


@pytest.mark.parametrize("seed", range(8))
def test_congestion_below_the_idle_floor_across_a_running_non_preemptible_job(seed: int) -> None:
    """The same 1 kW cap, beginning before a running non-preemptible job could end even at full power: no block
    of it from slot 0 fits before the event. The plan is not "infeasible" (round 22: it was, on every tick from
    the announcement on, and the fallback preempted the other work); every running non-preemptible job runs in
    slot 0 and its block ends at the latest where the event begins; the rest as above."""
    k = replace(CORPUS[seed * 17 % N_CORPUS][1], below_idle_event=True, below_idle_across_running=True,
                running_share=0.5, np_share=0.3)
    def running_np(pb: PlanProblem) -> np.ndarray:
        return np.flatnonzero((np.asarray(pb.running_pool) >= 0) & ~np.asarray(pb.preemptible)
                              & ~np.asarray(pb.must_run) & (np.asarray(pb.remaining_s) > 0))

    # the first instance of a few seeds with a running non-preemptible job (a small pool may hold none)
    pb = next(p for p in (make(6000 + seed + 100 * i, k) for i in range(8)) if running_np(p).size)
    keep = running_np(pb)
    bad = tuple(describe(pb)["infeasible_slots"])
    assert bad and min(bad) > 0
    full = float(pb.slot_s) * np.asarray(pb.curve_s)[np.asarray(pb.running_pool)[keep], -1]
    across = np.ceil(np.asarray(pb.remaining_s)[keep] / full) > min(bad)
    assert across.any(), "no running non-preemptible job's work goes on past the event: the case is not made"
    j = judge(pb)
    res = j["result"]
    assert res.status in ("optimal", "feasible"), f"status {res.status}: {res.reason}"
    # the checker on the problem as it is (a block may end unfinished before an infeasible slot; relax_slots
    # would make the event's slots feasible and the job's end a violation)
    assert j["violations"] == [] and j["greedy_violations"] == [], (j["violations"], j["greedy_violations"])
    assert res.run[keep, 0].all(), "a running non-preemptible job stopped now"
    assert not res.run[:, list(bad)].any(), "jobs run in slots that cannot hold the idle site"
    xfail_if_lost(j)


def test_dominance_judge_catches_a_losing_plan() -> None:
    """The judge itself can fail: a plan that drops a job the greedy finishes, or emits more carbon where
    both finish, is reported."""
    require("greedy_plan")
    pb = _problem(0)
    j = judge(pb)
    g = j["greedy_outcome"]
    worse = dict(g, finished=g["finished"].copy(), unfinished_gpu_s=g["unfinished_gpu_s"] + 10.0,
                 unfinished_jobs=g["unfinished_jobs"] + 1)
    done = np.flatnonzero(g["finished"])
    worse["finished"][done[0]] = False
    assert len(dominance_failures(worse, g)) == 2
    both = dict(g, unfinished_jobs=0, carbon_g=10.0)
    assert dominance_failures(dict(both, carbon_g=11.0), both) and not dominance_failures(both, both)
    assert dominance_failures(dict(g, late_jobs=g["late_jobs"] + 1), g)
    # and the plan's outcome is recomputed from the plan: an empty plan leaves everything unfinished
    empty = replace(j["result"], run=np.zeros_like(j["result"].run), power_fraction=np.zeros_like(
        j["result"].power_fraction))
    assert outcome(pb, empty)["unfinished_jobs"] == int((~np.asarray(pb.must_run)).sum())
    assert witness_diag(j["result"])["used"] in (True, False)


#: corpus instances (of N_CORPUS) where the optimiser's own plan loses to the greedy witness (issue 11 is
#: open on dominance). The verdicts once moved between 59 and 67 from one pytest process to the next: the
#: family's eligibility followed PYTHONHASHSEED (fixed: tests/kernels/test_determinism.py). With the price-order
#: local search from the EDF plan (kernels.listsched.improve) 2 are lost (2026-12-03, every process the same).
#: Raised once to 3 when kernels.plan and the greedy began to take the jobs in a canonical order (the plan no
#: longer depends on how the caller lists the jobs; which ties break which way moved, and with it the set of
#: lost instances: s1100129 and s1100212 before, and s1100229 too after). Lowered to 2 with kernels.powersearch
#: (2026-12-04): s1100212's own plan dominated the greedy by the planner's evaluation but not by the judge's
#: (one job finished within float tolerance); the search re-chooses that row and it now finishes clearly.
#: Lost at round 9's start: s1100129, s1100229 (the greedy fallback carried both). 0 since (H3, round 9): the
#: optimiser's own plan is moved by the price search also where it does not dominate the greedy yet (s1100229:
#: every job finished at 0 g, the own plan had stacked its work above the wind at 29,875 g against the
#: greedy's 19,195 g), and the price-order list schedule gets the power search before it is judged
#: (s1100129: 405.5 g against the greedy's 15,484 g; the greedy's plan after the power search, returned
#: before, had 398.9 g; with kernels.complete.carry, H1, round 9, the own plan is carried past the witness
#: there at 358.8). Every instance is now carried by the optimiser's own plans.
KNOWN_LOSSES = 0


def test_corpus_losses_do_not_grow() -> None:
    """The ratchet on dominance over the whole corpus: no more instances lost to the greedy than measured."""
    lost = [i for i in range(N_CORPUS) if losses(_judged(i))]
    assert len(lost) <= KNOWN_LOSSES, f"{len(lost)} corpus instances lost to the greedy (was {KNOWN_LOSSES}): {lost}"


def test_every_corpus_instance_dominates_the_greedy() -> None:
    """Issue 11 item 2 on the whole corpus: the optimiser's own plan dominates the greedy on every instance,
    and the fallback carries none."""
    lost = [i for i in range(N_CORPUS) if losses(_judged(i))]
    assert lost == []


#: The search's cost, counted (round 13, H2): corpus instances whose power searches (kernels.plan's starts,
#: their completions' searches included: ``diagnostics["search_cells"]``, fixed costs counted) spend more than
#: ``SEARCH_CELLS_BIG`` cells (~30 ms CPU at ~1.5 us a cell), at most ``SEARCH_CELLS_BIG_MAX`` of them (a count,
#: not a clock). The starts stop once the plan is certified within ``kernels.powersearch.STOP_GAP`` of
#: kernels.plan's bound: measured 149 of 200 at STOP_GAP = 1% (136 at 2%); round start 587f207: 197 (counted
#: with a spy on the meter), which this fails. The merged round (STOP_GAP = 0: only a plan proven optimal stops
#: the search; the carbon phase's pool moves, H4): 190. Round 14 (H1's gated later starts and skipped last
#: search, H4's swap phase and cold-plan moves of running jobs): 161 (158 without the cold-plan moves). Round 15
#: (H1's stall rule, displacement share and 1M budget; H3's slot exchanges on): 160 (159 without the exchanges).
SEARCH_CELLS_BIG = 20_000
SEARCH_CELLS_BIG_MAX = 160


def test_corpus_search_cells_do_not_grow() -> None:
    """The ratchet on the search's cells over the whole corpus: no more instances past ``SEARCH_CELLS_BIG``
    than measured (and the count is of searches that ran: most corpus plans report their cells)."""
    cells = [_judged(i)["result"].diagnostics.get("search_cells") for i in range(N_CORPUS)]
    assert sum(x is not None and x > 0 for x in cells) >= N_CORPUS // 2, cells
    big = [i for i, x in enumerate(cells) if x is not None and x > SEARCH_CELLS_BIG]
    assert len(big) <= SEARCH_CELLS_BIG_MAX, f"{len(big)} corpus searches past {SEARCH_CELLS_BIG} cells: {big}"


# --- plan quality against the HiGHS LP (issue 11's targets: median penalised gap <= 3%, carbon <= 1.02 x the
# carbon LP wherever every job finishes), on a sample of the corpus (each LP ~0.1 s) --------------------

#: every QUALITY_EVERY-th corpus instance gets its LP references (50 of 200)
QUALITY_EVERY = 4
#: ratchets on what kernels.plan reaches on that sample: measured 2026-12-04 12:10 UTC with the power
#: search's pair phase and the witness's plan searched too (H2, round 5): median gap 0.0392, median carbon
#: ratio 1.0138, 20 of 34 (0.588) all-finish instances within 1.02; at the round's start (722de54) 0.0492,
#: 1.0170 and 0.559 (each ratchet below fails there); before the round-4 exchanges (da3baea) 0.0601, 1.0181
#: and 0.53; before the power search (72a27fd) 0.158, 1.0325 and 0.41 (benchmarks/README.md, issue 11).
#: Round 8 (H2): the search drops cells an on-time job runs past its deadline and moves non-preemptible
#: blocks through preemptible work (kernels.powersearch._displace): median gap 0.0388 (round start ee1b321:
#: 0.0392, which the gap ratchet below fails), carbon ratio median 1.0138 and 20 of 34 within 1.02 unchanged.
#: Round 9 (H2): the gcongest phase (kernels.powersearch: GPU-slots of a pool or a tenant's quota priced at
#: the most valuable work they hold back): median gap 0.0311 (round start 824af33: 0.0388, which the gap
#: ratchet below fails). Instance 40 now finishes every job (2 unfinished before) at 1.105 x its carbon LP
#: and so joins the all-finish set: 20 of 35 within 1.02 (was 20 of 34) and the median ratio 1.0156 (was
#: 1.0138; on the 34 instances all-finish in both the ratios are unchanged, median 1.0138). A share or a
#: median over that set falls when one more instance finishes everything, so the within-1.02 ratchet is a
#: count of instances now, and the median ratio's ratchet is what the larger set measures.
#: Round 10 (H2): the power search from up to four candidate plans, each plan completed before and after it
#: (kernels.powersearch.refine_starts): median gap 0.0285 (round start d2d916c: 0.0311, which the gap ratchet
#: below fails); carbon ratio median 1.0156 and 20 of 35 within 1.02 unchanged. Not the default (its CPU:
#: REFINE_STARTS = 1), so the sample is at 0.0311 again.
#: Round 11 (H2): four starts again by default, the later ones on a budget of search cells (STARTS_SHARE x what the
#: first spent, STARTS_MAX_SPENT in all): median gap 0.0285 (round start 865e032: 0.0311, which the gap ratchet
#: below fails); carbon ratio median 1.0156 and 20 of 35 within 1.02 unchanged.
#: Round 13 (H4): the carbon phase may move running jobs to other pools (paying their switching loss) and no
#: longer charges a moved row its own quota twice: with the moves, carbon ratio median 1.0115 (round start
#: 587f207: 1.0156); the moves are opt-in (``powersearch.MOVE_RUNNING``: they cost the itp60 policy run jobs),
#: and without them the sample is at 1.0156 again (median gap 0.0285, 20 of 35 within 1.02).
#: Round 17: the polish's block refill and one-for-two pool exchanges (kernels.powersearch.polish): median gap
#: 0.02573, carbon ratio median 1.0077, 22 of 35 within 1.02 (round start 60f8ddb: 0.02578, 1.0114 and 21, which
#: the last two ratchets below fail; round 16 had left them at 0.029, 1.016 and 20).
#: Lower them as the optimiser improves; the issue's targets are 0.03 and 1.02 on every all-finish instance
#: (on the seed-0 corpus the MILP proves 1.02 unattainable on 29 instances: benchmarks.reference --attainable).
MEDIAN_GAP_MAX = 0.026
CARBON_RATIO_MEDIAN_MAX = 1.009
CARBON_WITHIN_1_02_MIN = 22  # of the sample's all-finish instances, how many are within 1.02 x the carbon LP


@cache
def _quality(i: int) -> dict[str, Any]:
    """The penalised-objective gap to the HiGHS LP, and where the plan finishes every job its carbon over
    the carbon LP that finishes every job (the plan's on-time jobs on time), as benchmarks/optimizer.py
    --corpus computes them."""
    from benchmarks.reference import solve_lp

    pb, j = _problem(i), _judged(i)
    res, po = j["result"], j["plan"]
    lp = solve_lp(pb, time_limit_s=60.0)
    assert lp.status == "optimal", f"HiGHS LP {lp.status}"
    out: dict[str, Any] = {"gap": (res.objective - lp.objective) / max(abs(res.objective), 1e-9), "carbon_ratio": None}
    if po["unfinished_jobs"] == 0:
        cl = solve_lp(pb, time_limit_s=60.0, carbon_only=True, require_finished=np.ones(pb.n_jobs, bool),
                      require_on_time=~po["late"])
        assert cl.status == "optimal", f"carbon LP {cl.status}"
        out["carbon_ratio"] = (po["carbon_g"] / cl.carbon_g if cl.carbon_g > 1e-6
                               else 1.0 if po["carbon_g"] <= 1e-6 else math.inf)
    return out


def quality_summary() -> dict[str, Any]:
    """Median gap, median carbon ratio, count and share within 1.02 on the sample (what the ratchets hold)."""
    q = [_quality(i) for i in range(0, N_CORPUS, QUALITY_EVERY)]
    ratios = [x["carbon_ratio"] for x in q if x["carbon_ratio"] is not None]
    return {"n": len(q), "median_gap": float(np.median([x["gap"] for x in q])), "n_all_finish": len(ratios),
            "carbon_ratio_median": float(np.median(ratios)) if ratios else math.nan,
            "n_within_1_02": sum(r <= 1.02 for r in ratios),
            "within_1_02": sum(r <= 1.02 for r in ratios) / max(len(ratios), 1)}


def test_corpus_plan_quality_does_not_fall() -> None:
    """The ratchet on quality: the median penalised gap to the LP and the carbon over the carbon LP where
    every job finishes, computed on the sample now, stay within what was measured."""
    sm = quality_summary()
    assert sm["n_all_finish"] >= 10, sm
    assert sm["median_gap"] <= MEDIAN_GAP_MAX, f"median gap {sm['median_gap']:.4f} > {MEDIAN_GAP_MAX} ({sm})"
    assert sm["carbon_ratio_median"] <= CARBON_RATIO_MEDIAN_MAX, \
        f"median carbon / LP {sm['carbon_ratio_median']:.4f} > {CARBON_RATIO_MEDIAN_MAX} ({sm})"
    assert sm["n_within_1_02"] >= CARBON_WITHIN_1_02_MIN, \
        f"{sm['n_within_1_02']} all-finish instances within 1.02 x the carbon LP < {CARBON_WITHIN_1_02_MIN} ({sm})"


def test_corpus_median_gap_meets_issue_11() -> None:
    """Issue 11's median target: the penalised gap to the LP at most 3% in the median (round 10: 0.0311 with one
    start; round 11: 0.0285, four starts on a budget of cells)."""
    sm = quality_summary()
    assert sm["median_gap"] <= 0.03, sm


@pytest.mark.xfail(strict=True, reason="issue 11 open: carbon <= 1.02 x the LP on every all-finish instance is "
                   "not reached (an XPASS means it is: drop this mark); the MILP proves it unattainable on some")
def test_corpus_plan_quality_meets_issue_11() -> None:
    sm = quality_summary()
    assert sm["within_1_02"] == 1.0, sm
