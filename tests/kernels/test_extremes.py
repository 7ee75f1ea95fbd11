"""Issue 11 at the edge of the space a user can reach: the optimiser on extreme-but-valid instances
(benchmarks.instances.extreme: T = 1 and 2, no job and one job, every job must-run or non-preemptible,
deadlines at and before the earliest finish, slivers and mountains of work, gangs as wide as their pool, no
wind and wind far above full load, the grid cap at the idle floor and 1 W above it, identical pools, one power
level, two-point speed curves, quotas of 0 and below a job's width, large switching losses, running
non-preemptible work past the horizon, weights equal and spanning 1e-6..1e6, ties in carbon, negative prices,
pool sizes that vary over the slots; each alone, then seeded combinations).

On each: ``kernels.plan`` returns; a plan passes the checker and dominates the EDF greedy witness (the judge of
tests/kernels/_family.py); "infeasible" comes only with a reason naming a slot, job or pool, and only where no
plan of the mandatory rows alone (must-run inference and running non-preemptible jobs, searched here
independently of the planner: :func:`mandatory_plan`) passes the checker; numpy and CPU torch give the same
plan on a sample. A failure names the instance's seed and edges.
"""

from __future__ import annotations

import itertools
import re
from functools import cache
from typing import Any

import numpy as np
import pytest
from _family import judge

import kernels
from benchmarks.instances import EDGES, describe_extreme, extreme, extremes
from kernels.check import closed_slots, levels, must_cells
from kernels.problem import NO_DEADLINE, PlanProblem, PlanResult

#: the whole family: every edge alone, then combinations of 2-5 (920 instances of seeds 0-2 judged in 38 s CPU:
#: ~0.04 s each, plan and greedy)
CASES = extremes(120, seed=0)
#: every PARITY_EVERY-th case is planned with CPU torch too (torch is several times slower on tiny problems)
PARITY_EVERY = 10
#: what an "infeasible" reason must name
NAMES_SOMETHING = re.compile(r"\b(slot|job|pool) \d+")
#: the most combinations :func:`mandatory_plan` tries (pools of the must-run rows x levels of the running blocks)
MAX_TRIES = 4096


def _id(case: tuple[int, tuple[str, ...]]) -> str:
    return f"s{case[0]}-" + "+".join(case[1])


@cache
def _problem(i: int) -> PlanProblem:
    return extreme(*CASES[i])


@cache
def _judged(i: int) -> dict[str, Any]:
    return judge(_problem(i))


def _plan_of(pb: PlanProblem, run: np.ndarray, pf: np.ndarray, pool: np.ndarray) -> PlanResult:
    """A PlanResult of a plan for the checker (aggregates recomputed: only the hard rules are judged)."""
    ev = kernels.evaluate(pb, run, pf, pool)
    return PlanResult(
        status="feasible", reason="", run=run, power_fraction=pf.astype(np.float32), pool=pool.astype(np.int32),
        work_done_s=ev["work_done_s"], finished=ev["finished"], facility_w=ev["facility_w"],
        grid_import_w=ev["grid_import_w"], carbon_g=ev["carbon_g_slot"], busy_gpus=ev["busy_gpus"].astype(np.int64),
        dual_price_g_per_gpu_h=np.zeros(pb.n_slots), carbon_g_total=ev["carbon_g"],
        unfinished_gpu_s=ev["unfinished_gpu_s"], objective=ev["objective"], lower_bound=-np.inf, gap=np.inf,
        iterations=0,
    )


def mandatory_plan(pb: PlanProblem) -> PlanResult | None:
    """A plan that runs only what every valid plan must run, found by brute force: each must-run row served
    in its cells (:func:`kernels.check.must_cells`) at full power in one of its eligible full-level pools (its
    shed pin where it has one), each running non-preemptible row in its pool from slot 0 at one constant level
    until it is finished, the horizon ends or a closed slot comes. The first one the checker passes (hard
    rules only), or None where none of at most :data:`MAX_TRIES` does (small instances: all of them)."""
    from kernels.check import full_level_pools, inference_shed

    J, T = pb.n_jobs, pb.n_slots
    must = np.asarray(pb.must_run, bool)
    rpool = np.asarray(pb.running_pool, np.int64)
    keep = np.flatnonzero((rpool >= 0) & ~np.asarray(pb.preemptible, bool) & ~must)
    cells = must_cells(pb)
    lev_f, lev_ok = levels(pb)
    full = full_level_pools(lev_f, lev_ok)
    pin = inference_shed(pb).pool
    elig = np.asarray(pb.eligible, bool)
    mrows = np.flatnonzero(must & cells.any(axis=1))
    m_choices = [[int(pin[j])] if pin[j] >= 0 else np.flatnonzero(elig[j] & full).tolist() for j in mrows]
    k_choices = [lev_f[rpool[j]][lev_ok[rpool[j]]].tolist() for j in keep]
    closed = closed_slots(pb)
    end = int(np.argmax(closed)) if closed.any() else T  # a block may end unfinished before a closed slot
    need = np.asarray(pb.remaining_s, np.float64)
    for combo in itertools.islice(itertools.product(*m_choices, *k_choices), MAX_TRIES):
        run = np.zeros((J, T), bool)
        pf = np.zeros((J, T))
        pool = np.full(J, -1, np.int64)
        for j, p in zip(mrows, combo[: mrows.size]):
            run[j], pf[j], pool[j] = cells[j], np.where(cells[j], 1.0, 0.0), p
        for j, f in zip(keep, combo[mrows.size:]):
            p = int(rpool[j])
            per = float(pb.slot_s) * float(kernels.speed(pb.curve_f[p], pb.curve_s[p], f))
            n = min(int(np.ceil(need[j] / per - 1e-9)), end) if per > 0 else end
            run[j, :n], pf[j, :n], pool[j] = True, f, p
        res = _plan_of(pb, run, pf, pool)
        if not [v for v in kernels.check_result(pb, res) if not v.startswith("reported")]:
            return res
    return None


def assert_extreme_sound(pb: PlanProblem, j: dict[str, Any]) -> None:
    """Issue 11's rules on one extreme instance (see the module docstring)."""
    res, name = j["result"], describe_extreme(pb)
    if res.status == "infeasible":
        assert NAMES_SOMETHING.search(res.reason), f"{name}: 'infeasible' without a slot, job or pool: {res.reason}"
        assert mandatory_plan(pb) is None, f"{name}: 'infeasible' ({res.reason}) but a plan of the mandatory rows " \
            "passes the checker"
        return
    assert res.status in ("optimal", "feasible"), f"{name}: status {res.status}"
    assert j["violations"] == [], f"{name}: checker violations {j['violations']}"
    assert j["greedy_violations"] == [], f"{name}: the greedy witness breaks a rule: {j['greedy_violations']}"
    assert j["dominance"] == [], f"{name}: the plan does not dominate the greedy: {j['dominance']}"
    assert res.lower_bound <= res.objective * (1 + 1e-9) + 1e-6, f"{name}: bound {res.lower_bound} > {res.objective}"
    assert res.diagnostics.get("unfinished_jobs") == j["plan"]["unfinished_jobs"], name
    assert res.diagnostics.get("late_jobs") == j["plan"]["late_jobs"], name


#: the defects found here, each fixed by its owner (a new one goes here as a strict xfail of the family cases it
#: fails, with its signature, until it is gone). Round 24 found ``_clean_inputs`` refusing inference that
#: ``inference_shed`` sheds (family cases 63, 100, 118; H2's GPU-marked slots removed it:
#: test_inference_shed_in_a_marked_slot_is_not_counted). Round 25 (H1) removed "no plan lowers a running
#: non-preemptible job's power level to make room for must-run inference" (case 109 and 200036 under -m slow; the
#: greedy witness refused 19 of the 800 there: planner.NP_LOWER_FOR_FORCED, listsched.greedy_vmat's second try;
#: test_a_running_block_makes_room_for_inference, tests/kernels/test_np_levels.py) and the own plan kept over a
#: witness that serves the inference (100141: test_the_witness_serves_what_the_own_plan_leaves_unserved)


@pytest.mark.parametrize("i", range(len(CASES)), ids=[_id(c) for c in CASES])
def test_extreme_instance(i: int) -> None:
    assert_extreme_sound(_problem(i), _judged(i))


#: the larger family run under ``-m slow``: two more seeds of 400 (~40 s a seed on the shared 2 cores)
SLOW_SEEDS = (1, 2)
SLOW_N = 400


@pytest.mark.slow
@pytest.mark.parametrize("seed", SLOW_SEEDS)
def test_extreme_family_more_seeds(seed: int) -> None:
    """Every rule on SLOW_N more instances (every failure listed)."""
    bad = []
    for s, edges in extremes(SLOW_N, seed=seed):
        pb = extreme(s, edges)
        try:
            assert_extreme_sound(pb, judge(pb))
        except AssertionError as e:
            bad.append(str(e).splitlines()[0])
    assert bad == [], bad


@pytest.mark.parametrize("i", range(0, len(CASES), PARITY_EVERY), ids=[_id(c) for c in CASES[::PARITY_EVERY]])
def test_extreme_torch_parity(i: int) -> None:
    """CPU torch gives the numpy plan on a sample of the family."""
    pytest.importorskip("torch")
    pb = _problem(i)
    a, b = _judged(i)["result"], kernels.plan(pb, backend="torch", device="cpu")
    name = describe_extreme(pb)
    assert (a.status, a.reason) == (b.status, b.reason), name
    assert np.array_equal(a.run, b.run) and np.array_equal(a.pool, b.pool), name
    np.testing.assert_allclose(a.power_fraction, b.power_fraction, atol=1e-6, err_msg=name)


def test_extremes_span_every_edge() -> None:
    """Every edge alone once, and in at least five combinations; the family is deterministic; a wrong edge
    name is refused naming the allowed ones."""
    seen: dict[str, int] = {x: 0 for x in EDGES}
    for _, edges in CASES:
        for x in edges:
            seen[x] += 1
    assert min(seen.values()) >= 6, seen
    assert [e for _, e in CASES[: len(EDGES)]] == [(x,) for x in EDGES]
    a, b = extreme(*CASES[50]), extreme(*CASES[50])
    assert np.array_equal(a.gpus, b.gpus) and np.array_equal(a.grid_cap_w, b.grid_cap_w)
    with pytest.raises(ValueError, match=r"edges: got \['T3'\]; allowed: T1, T2"):
        extreme(0, ("T3",))
    assert extreme(0, ("T1", "T2")).n_slots == 1  # of two that set one field the first wins


def test_mandatory_plan_can_fail_and_succeed() -> None:
    """The oracle itself: it finds the plan where the mandatory rows fit, and none where a running
    non-preemptible job's tenant has a quota of 0."""
    from dataclasses import replace

    pb = extreme(3, ("J1", "running_np_past", "wind_huge"))
    assert (np.asarray(pb.running_pool) >= 0).all() and not np.asarray(pb.preemptible).any()
    found = mandatory_plan(pb)
    assert found is not None and found.run[0].all()
    assert mandatory_plan(replace(pb, tenant_quota_gpus=np.zeros_like(pb.tenant_quota_gpus))) is None


# --- the defects found, each at its smallest ----------------------------------------------------------------

def _one_pool_inference(extra_w: float) -> PlanProblem:
    """One 8-GPU H100 pool, one slot, no wind, two must-run jobs of 8 GPUs (job 0 of higher weight, served
    first); the cap is the idle floor plus ``extra_w``."""
    floor = 1.15 * 8 * (75 + 450)
    return PlanProblem(
        slot_s=900.0, pue=1.15, wind_w=np.zeros(1), carbon_g_per_kwh=np.full(1, 300.0),
        grid_cap_w=np.full(1, floor + extra_w), site_max_w=np.full(1, 1e9), pool_gpus=np.full((1, 1), 8),
        tdp_w=np.array([700.0]), idle_w=np.array([75.0]), host_w_per_gpu=np.array([450.0]),
        min_power_fraction=np.array([0.4]), curve_f=np.array([[0.4, 0.6, 0.8, 1.0]]),
        curve_s=np.array([[0.62, 0.82, 0.95, 1.0]]), gpus=np.array([8, 8]), remaining_s=np.array([900.0, 900.0]),
        release=np.zeros(2, np.int64), deadline=np.full(2, NO_DEADLINE, np.int64), weight=np.array([0.2, 0.1]),
        eligible=np.ones((2, 1), bool), must_run=np.ones(2, bool), preemptible=np.ones(2, bool),
        running_pool=np.full(2, -1, np.int64), preempt_loss_s=np.zeros(2), tenant=np.zeros(2, np.int64),
        tenant_quota_gpus=np.array([np.inf]),
    )


def test_inference_shed_in_a_marked_slot_is_not_counted() -> None:
    """The cap holds the idle floor and one of the two inference jobs (1 W spare): the slot is marked, job 0
    is served and job 1 shed (kernels.check.inference_shed), and the checker passes the plan that does just
    that. Before round 24's GPU-marked slots kernels.plan refused it: "inference needs 16 GPUs in slot 0 but its
    eligible pools have 8" (its GPU-count check counted the shed job). Found in the family: seeds 63, 100, 118
    (cap_idle or cap_binds or pool_gpus_vary with must-run rows); 23 of the 800 more under -m slow."""
    pb = _one_pool_inference(1.15 * 8 * 625 + 1.0)
    assert mandatory_plan(pb) is not None
    res = kernels.plan(pb)
    assert res.status != "infeasible", res.reason
    assert kernels.check_result(pb, res) == [] and res.run[0, 0] and not res.run[1, 0]


def test_two_inference_jobs_wider_than_their_pool_are_served_as_far_as_the_pool_holds() -> None:
    """The same two jobs under a cap that holds both: 16 GPUs of must-run inference in an 8-GPU pool. Round 24 (H3)
    found this refused ("infeasible", naming the slot); since H2's GPU-marked slots the slot is marked for GPUs,
    job 0 (first in the serving order) is served, job 1 shed there, and the checker passes the plan."""
    pb = _one_pool_inference(1.15 * 16 * 625 + 1.0)
    res = kernels.plan(pb)
    assert res.status != "infeasible", res.reason
    assert kernels.check_result(pb, res) == [] and res.run[0, 0] and not res.run[1, 0]
    assert res.diagnostics["shed_slots"] == [0] and res.diagnostics["slot_shed_cause"] == ["GPUs"]


def _running_block_and_inference(P: int = 3) -> PlanProblem:
    """T = 2: job 0 runs non-preemptibly in pool 0 (8 B200s) with work far past the horizon; job 1, must-run from
    slot 1, 8 GPUs, may run in pool 0 or pool 1 (8 A100s); pool 2 (16 H100s, ``P`` = 3) only adds idle watts.
    Slot 1's cap holds the idle floor, job 0 at its lowest level and job 1 at full power with 1.7 kW to spare
    (job 0 one level higher would not fit): family seed 109 (cap_binds, huge_work, many_pool_wide) cut down."""
    return PlanProblem(
        slot_s=300.0, pue=1.15, wind_w=np.zeros(2), carbon_g_per_kwh=np.full(2, 300.0),
        grid_cap_w=np.array([38848.9, 27016.8]), site_max_w=np.full(2, 1e9),
        pool_gpus=np.array([[8, 8], [8, 8], [16, 16]])[:P], tdp_w=np.array([1000.0, 400.0, 700.0])[:P],
        idle_w=np.array([110.0, 50.0, 75.0])[:P], host_w_per_gpu=np.array([600.0, 300.0, 450.0])[:P],
        min_power_fraction=np.array([0.4, 0.5, 0.4])[:P],
        curve_f=np.array([[0.4, 0.6, 0.8, 1.0], [0.5, 0.75, 1.0, 1.0], [0.4, 0.6, 0.8, 1.0]])[:P],
        curve_s=np.array([[0.6, 0.8, 0.94, 1.0], [0.7, 0.9, 1.0, 1.0], [0.62, 0.82, 0.95, 1.0]])[:P],
        gpus=np.array([8, 8]), remaining_s=np.array([33945.7, 76840.5]), release=np.array([0, 1]),
        deadline=np.full(2, NO_DEADLINE, np.int64), weight=np.array([0.1, 0.1]),
        eligible=np.array([[1, 1, 0], [1, 1, 0]], bool)[:, :P], must_run=np.array([False, True]),
        preemptible=np.array([False, True]), running_pool=np.array([0, -1]), preempt_loss_s=np.zeros(2),
        tenant=np.zeros(2, np.int64), tenant_quota_gpus=np.array([np.inf]),
    )


def test_a_running_block_makes_room_for_inference() -> None:
    """A plan exists (job 0 at 40% in both slots, job 1 at full power in pool 1: 25.3 kW under 27.0 kW); before
    round 25 kernels.plan answered "must-run job 1 cannot be served in slot 1" (planner._repair lowered preemptible
    rows only), and the greedy the same. Now both lower job 0 in slot 1, and job 1 runs at full power there."""
    pb = _running_block_and_inference()
    assert mandatory_plan(pb) is not None
    for res in (kernels.plan(pb), kernels.greedy_plan(pb)):
        assert res.status != "infeasible", res.reason
        assert kernels.check_result(pb, res) == []
        assert res.run[1, 1] and res.power_fraction[1, 1] == 1.0 and res.power_fraction[0, 1] == 0.4


def test_the_greedy_witness_plans_what_the_optimiser_plans() -> None:
    """Without pool 2 the optimiser finds the plan; before round 25 the greedy witness answered "running
    non-preemptible job 0 cannot keep running in slot 0" (it placed the running block after the inference, at full
    power, and found no room; where the witness has no plan the plan is held to nothing): it now tries again with
    the block placed with the inference and repaired together (17 of the 800 family instances under -m slow)."""
    pb = _running_block_and_inference(P=2)
    j = judge(pb)
    assert j["result"].status != "infeasible" and j["violations"] == []
    assert j["greedy"].status != "infeasible", j["greedy"].reason
    assert j["greedy_violations"] == [] and j["dominance"] == [], (j["greedy_violations"], j["dominance"])


def test_the_witness_serves_what_the_own_plan_leaves_unserved() -> None:
    """Family seed 100141 (-m slow): the own plan's repair drops must-run job 6 in slot 1 (its pool move counts the
    GPUs of rows after it in priority as taken) and, before round 25, kernels.plan kept that plan among its
    candidates and answered "must-run job 6 cannot be served in slot 1" while the greedy witness served it. A
    plan that leaves a forced row out where the witness does not is no candidate now: a plan, checker-clean,
    dominating the greedy."""
    pb = extreme(100141, ("T2", "all_np", "cap_binds", "dl_unreachable", "identical_pools"))
    j = judge(pb)
    assert j["result"].status != "infeasible", j["result"].reason
    assert j["violations"] == [] and j["dominance"] == [], (j["violations"], j["dominance"])


#: family instances on which kernels.complete._displace's "+rebuild" returned a plan over a cap (round 24, H3,
#: fixed there: complete._over_caps): the first two plan within every cap now; the next two (running non-preemptible
#: jobs wider than their pool in slot 0, or over its quota) read "infeasible" until round 24's displacement
#: (kernels.check.displaced, H5) and plan now; the last read "infeasible" (running job 2 could not keep running: slot
#: 1's cap cannot hold it even at its lowest level) until round 25's later-cap end (kernels.check.running_blocks, H5):
#: it runs in slot 0 and ends before slot 1, unfinished
REBUILT_OVER_CAPS = (
    (200104, ("all_np", "pool_wide")),  # was 12 busy GPUs in an 8-GPU pool
    (100095, ("equal_weights", "running_np_past", "wind0")),  # was over the grid cap in slot 4
    (100113, ("all_np", "running_np_past", "wind0")),  # was 'optimal' with 9 GPUs in an 8-GPU pool
    (200185, ("cap_binds", "quota_narrow", "running_np_past")),
    (200376, ("dl_unreachable", "wind0")),  # was "infeasible": a later cap below job 2's lowest level
)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("case", REBUILT_OVER_CAPS, ids=[f"s{s}" for s, _ in REBUILT_OVER_CAPS])
def test_a_rebuilt_plan_keeps_every_cap(case: tuple[int, tuple[str, ...]], backend: str) -> None:
    """No plan over a cap, on either backend: a valid plan, or "infeasible" only where no plan of the mandatory
    rows exists."""
    if backend == "torch":
        pytest.importorskip("torch")
    pb = extreme(*case)
    res = kernels.plan(pb, backend=backend)
    if res.status == "infeasible":
        assert NAMES_SOMETHING.search(res.reason) and mandatory_plan(pb) is None, res.reason
    else:
        assert kernels.check_result(pb, res) == []
    assert res.status != "infeasible", res.reason


#: round 25's seeded families (benchmarks.instances.Knobs ``np_window`` and ``inference_beside_np``): small
#: instances with many running non-preemptible jobs (0.1-0.3 s each, plan and greedy)
ROUND25_KNOBS = {"n_jobs": 12, "n_slots": 16, "n_pools": 3, "running_share": 0.4, "np_share": 0.3, "must_share": 0.1}
#: seeds of each family judged here (seeds 0-29 measured: np_window 14 displaced, 16 kept with a window ahead, where
#: round 24 refused 15 of the 30; inference_beside_np 11 displaced by the first packing, 0 by the one kept)
ROUND25_SEEDS = range(16)


def _r25(seed: int, knob: str) -> PlanProblem:
    from benchmarks.instances import Knobs, make

    return make(seed, Knobs(**ROUND25_KNOBS, **{knob: True}))  # type: ignore[arg-type]


def _np_rows(pb: PlanProblem) -> np.ndarray:
    return (np.asarray(pb.running_pool) >= 0) & ~np.asarray(pb.preemptible, bool) & ~np.asarray(pb.must_run, bool)


@pytest.mark.parametrize("seed", ROUND25_SEEDS)
def test_a_maintenance_window_under_a_running_non_preemptible_job_is_planned(seed: int) -> None:
    """Issue 11 item 5 on the ``np_window`` family: a window announced for later in a running non-preemptible
    job's pool never refuses the plan and stops no work now (kernels.check.running_blocks: it is displaced only
    where slot 0 cannot hold it; the family's windows start after slot 0). The plan passes the checker and
    dominates the greedy, which plans it too; both keep every running block from slot 0 and end none past its
    ``end``, a block cut there (the window inside its shortest block) running up to it; explain_unfinished reads
    ``capacity`` (proven) for the work such a block leaves (every 4th seed: CPU torch the same plan)."""
    pb = _r25(seed, "np_window")
    j = judge(pb)
    res = j["result"]
    assert res.status != "infeasible" and j["greedy"].status != "infeasible", (res.reason, j["greedy"].reason)
    assert_extreme_sound(pb, j)
    rb = kernels.check.running_blocks(pb)
    T = pb.n_slots
    assert "displaced_jobs" not in res.diagnostics and not rb.displaced.any(), res.diagnostics.get("displaced_jobs")
    kept = np.flatnonzero(_np_rows(pb))
    cut = kept[rb.cut[kept]]  # the window inside the shortest block: it runs up to the window
    for r in (res, j["greedy"]):
        assert r.run[kept, 0].all() and (np.asarray(r.pool)[kept] == np.asarray(pb.running_pool)[kept]).all()
        assert not (r.run[kept] & (np.arange(T)[None, :] >= rb.end[kept][:, None])).any()
        assert r.run[cut].sum(axis=1).tolist() == rb.end[cut].tolist(), (r.run[cut].astype(int), rb.end[cut])
        ex = kernels.check.explain_unfinished(pb, r)
        H = np.asarray(pb.pool_gpus).reshape(pb.n_pools, -1)
        for row in cut.tolist():  # where its pool's healthy GPUs drop below its own the GPUs cut it, else the watts
            e, p = int(rb.end[row]), int(pb.running_pool[row])
            by = "capacity" if H[p, min(e, H.shape[1] - 1)] < pb.gpus[row] else "cap"
            assert (ex["reason"][row], ex["proven"][row]) == (by, True), (row, ex["reason"][row], by)
    if seed % 4 == 0 and pytest.importorskip("torch"):
        t = kernels.plan(pb, backend="torch")
        assert np.array_equal(t.run, res.run) and np.array_equal(t.pool, res.pool)


def test_the_window_family_has_both_answers() -> None:
    """The ``np_window`` family holds both cases: jobs whose shortest block the window cuts (round 25 displaced
    them now; they run up to it) and jobs whose block can end before a window ahead (``end`` inside the horizon)."""
    n_cut = n_kept = 0
    for seed in ROUND25_SEEDS:
        pb = _r25(seed, "np_window")
        rb = kernels.check.running_blocks(pb)
        npr = _np_rows(pb)
        n_cut += int((npr & rb.cut & (rb.end < pb.n_slots)).sum())
        n_kept += int((npr & ~rb.cut & (rb.end < pb.n_slots)).sum())
    assert n_cut >= 4 and n_kept >= 4, (n_cut, n_kept)


@pytest.mark.parametrize("seed", ROUND25_SEEDS)
def test_inference_packed_beside_running_jobs_never_displaces_more(seed: int) -> None:
    """The ``inference_beside_np`` family: the packing inference_shed keeps serves at least the inference the most
    frugal packing serves and displaces no more (weight x GPUs, and jobs); the plan passes the checker and
    dominates the greedy (every 4th seed: CPU torch the same plan)."""
    from kernels.check import _shed, inference_shed, must_cells, running_blocks

    pb = _r25(seed, "inference_beside_np")
    first, kept = _shed(pb), inference_shed(pb)
    d0, d1 = running_blocks(pb, first).cut, running_blocks(pb, kept).cut
    g = np.asarray(pb.gpus, np.float64)
    wg = np.asarray(pb.weight, np.float64) * g
    assert d1.sum() <= d0.sum() and wg[d1].sum() <= wg[d0].sum()
    assert (must_cells(pb, kept) * g[:, None]).sum() >= (must_cells(pb, first) * g[:, None]).sum()
    j = judge(pb)
    assert j["result"].status != "infeasible", j["result"].reason
    assert_extreme_sound(pb, j)
    if seed % 4 == 0 and pytest.importorskip("torch"):
        t = kernels.plan(pb, backend="torch")
        assert np.array_equal(t.run, j["result"].run) and np.array_equal(t.pool, j["result"].pool)


def test_the_packing_beside_running_jobs_displaces_less_where_it_can() -> None:
    """Across the ``inference_beside_np`` family the first packing displaces running non-preemptible jobs in
    several instances and the packing kept in fewer (none, seeds 0-15)."""
    from kernels.check import _shed, running_blocks

    before = after = less = 0
    for seed in ROUND25_SEEDS:
        pb = _r25(seed, "inference_beside_np")
        d0, d1 = running_blocks(pb, _shed(pb)).cut.sum(), running_blocks(pb).cut.sum()
        before, after, less = before + d0, after + d1, less + int(d1 < d0)
    assert before >= 4 and less >= 4 and after < before, (before, after, less)
