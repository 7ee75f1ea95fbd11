"""A running non-preemptible block lowered to make room for must-run inference (round 25, H1).

A non-preemptible job runs one unbroken block once started, but its power level may change from slot to slot
(DESIGN section 2; ``kernels.check.check_result`` checks levels per cell). Where must-run inference and the
running blocks do not fit under a slot's cap at the blocks' levels, ``kernels.planner._repair`` lowers the
running blocks (top levels first) before it drops a forced row, and the greedy witness
(``kernels.listsched.greedy_vmat``) places the running blocks with the inference and repairs them together
where it cannot serve both otherwise. The family here: seeded instances of running blocks (work past the
horizon), must-run inference and a little preemptible work, under caps between "the idle floor, the inference
at full power and the blocks at their lowest level" and "everything at full power": the plan and the greedy
both plan every one checker-clean, and the plan dominates the greedy.
"""

from __future__ import annotations

from typing import Any

import _plans
import numpy as np
import pytest
from _family import judge

import kernels
from kernels import planner
from kernels.problem import NO_DEADLINE, PlanProblem

#: pool types (tdp W, idle W, host W per GPU, min power fraction, speed curve f, speed curve s): B200-, A100-,
#: H100-like (benchmarks.instances' shapes)
POOLS = (
    (1000.0, 110.0, 600.0, 0.4, (0.4, 0.6, 0.8, 1.0), (0.6, 0.8, 0.94, 1.0)),
    (400.0, 50.0, 300.0, 0.5, (0.5, 0.75, 1.0, 1.0), (0.7, 0.9, 1.0, 1.0)),
    (700.0, 75.0, 450.0, 0.4, (0.4, 0.6, 0.8, 1.0), (0.62, 0.82, 0.95, 1.0)),
)
#: instances in the family (each plans in ~0.05 s, plan and greedy)
N_FAMILY = 40
PUE = 1.15


def np_inference(seed: int) -> PlanProblem:
    """One instance: P = 2..3 pools of 8 or 16 GPUs, 1..2 running non-preemptible jobs (4 or 8 GPUs, in pools
    0 and P - 1 where there are two, work far past the horizon), 1..2 must-run inference jobs (2..8 GPUs,
    released in slots 0..T-1, eligible everywhere; their most frugal pool holds them all beside its block),
    0..2 preemptible jobs; T = 2..6. Each slot's cap lies at a seeded share between the idle floor plus the
    inference at full power in its frugal pool plus the blocks at their lowest level, and everything at full
    power; in the first inference job's first slot, in three instances of four, below "the blocks at full
    power" (a block must come down there)."""
    rng = np.random.default_rng(seed)
    T, P = int(rng.integers(2, 7)), int(rng.integers(2, 4))
    pk = [POOLS[k] for k in rng.permutation(3)[:P]]
    tdp, idle, host = (np.array([p[i] for p in pk]) for i in range(3))
    fmin = np.array([p[3] for p in pk])
    H = rng.choice([8, 16], size=P)
    n_np, n_inf, n_pre = int(rng.integers(1, 3)), int(rng.integers(1, 3)), int(rng.integers(0, 3))
    np_pool = np.array([0, P - 1][:n_np])
    np_g = np.minimum(rng.choice([4, 8], size=n_np), H[np_pool] // np.bincount(np_pool, minlength=P)[np_pool])
    ip = int(np.argmin(tdp - idle))  # the inference's frugal pool: room for all of it beside any block
    inf_g = rng.choice([2, 4, 8], size=n_inf)
    H[ip] = int(inf_g.sum()) + int(np_g[np_pool == ip].sum())
    J = n_np + n_inf + n_pre
    inf_rel = rng.integers(0, T, n_inf)
    inf_n = rng.integers(1, T + 1, n_inf)
    tt = np.arange(T)
    on = (tt[None, :] >= inf_rel[:, None]) & (tt[None, :] < (inf_rel + inf_n)[:, None])
    floor = PUE * float((H * (idle + host)).sum())
    low_np = PUE * float((np_g * (fmin[np_pool] * tdp[np_pool] - idle[np_pool])).sum())
    full_np = PUE * float((np_g * (tdp[np_pool] - idle[np_pool])).sum())
    inf_w = PUE * (inf_g[:, None] * on).sum(0) * (tdp[ip] - idle[ip])
    full_all = floor + PUE * float((H * (tdp - idle)).sum())
    lo = floor + low_np + inf_w
    cap = lo + rng.uniform(0.02, 0.98, size=T) * (full_all - lo)
    if rng.uniform() < 0.75:
        t = int(inf_rel[0])
        cap[t] = lo[t] + rng.uniform(0.05, 0.9) * (full_np - low_np)
    pre_g = rng.choice([2, 4], size=n_pre)
    role = np.repeat([0, 1, 2], [n_np, n_inf, n_pre])  # running block, inference, preemptible
    return PlanProblem(
        slot_s=900.0, pue=PUE, wind_w=np.zeros(T), carbon_g_per_kwh=rng.uniform(50.0, 400.0, T),
        grid_cap_w=cap, site_max_w=np.full(T, 1e9), pool_gpus=np.repeat(H[:, None], T, axis=1),
        tdp_w=tdp, idle_w=idle, host_w_per_gpu=host, min_power_fraction=fmin,
        curve_f=np.array([p[4] for p in pk]), curve_s=np.array([p[5] for p in pk]),
        gpus=np.concatenate([np_g, inf_g, pre_g]),
        remaining_s=np.concatenate([rng.uniform(40, 90, n_np) * 900.0 * T, 900.0 * inf_n,
                                    900.0 * rng.uniform(0.5, 2.0, n_pre)]),
        release=np.concatenate([np.zeros(n_np, np.int64), inf_rel, np.zeros(n_pre, np.int64)]),
        deadline=np.full(J, NO_DEADLINE, np.int64), weight=rng.uniform(0.05, 0.5, J),
        eligible=np.concatenate([np.eye(P, dtype=bool)[np_pool], np.ones((n_inf + n_pre, P), bool)]),
        must_run=role == 1, preemptible=role > 0, running_pool=np.concatenate([np_pool, np.full(n_inf + n_pre, -1)]),
        preempt_loss_s=np.zeros(J), tenant=np.zeros(J, np.int64), tenant_quota_gpus=np.array([np.inf]),
    )


def _blocks_must_come_down(pb: PlanProblem) -> bool:
    """Some slot's cap is below the idle floor, the inference served at full power in its cheapest pool and the
    running blocks at full power: only a lower block level serves the inference there."""
    must = np.asarray(pb.must_run)
    npr = np.asarray(pb.running_pool) >= 0
    tdp, idle = np.asarray(pb.tdp_w), np.asarray(pb.idle_w)
    rp = np.asarray(pb.running_pool)[npr]
    floor = pb.pue * (np.asarray(pb.pool_gpus)[:, 0] * (idle + np.asarray(pb.host_w_per_gpu))).sum()
    ms, me = kernels.check.must_window(pb)
    tt = np.arange(pb.n_slots)
    served = (tt[None, :] >= ms[must][:, None]) & (tt[None, :] < me[must][:, None])
    inf = pb.pue * (np.asarray(pb.gpus)[must][:, None] * served).sum(0) * (tdp - idle).min()
    full = floor + pb.pue * (np.asarray(pb.gpus)[npr] * (tdp[rp] - idle[rp])).sum() + inf
    return bool((np.asarray(pb.grid_cap_w) < full).any())


def _planned_and_dominating(pb: PlanProblem, seed: int) -> dict[str, Any]:
    """:func:`judge` of ``pb``, held to: plan and greedy both plan it (neither refuses), checker-clean, the plan
    dominating the greedy."""
    j: dict[str, Any] = judge(pb)
    res, gr = j["result"], j["greedy"]
    assert res.status != "infeasible", f"seed {seed}: {res.reason}"
    assert gr.status != "infeasible", f"seed {seed}: the greedy: {gr.reason}"
    assert j["violations"] == [] and j["greedy_violations"] == [], (seed, j["violations"], j["greedy_violations"])
    assert j["dominance"] == [], (seed, j["dominance"])
    return j


@pytest.mark.parametrize("seed", range(N_FAMILY))
def test_running_blocks_make_room_for_inference(seed: int) -> None:
    """Plan and greedy both plan the instance checker-clean; the plan dominates the greedy."""
    _planned_and_dominating(np_inference(seed), seed)


def test_the_family_needs_the_blocks_lowered() -> None:
    """Most of the family has a slot where the blocks at full power leave no room for the inference (the cases
    the change is for), and the others are kept as controls."""
    down = [_blocks_must_come_down(np_inference(s)) for s in range(N_FAMILY)]
    assert sum(down) >= N_FAMILY // 2, sum(down)
    assert not all(down)


def _torch_gives_the_numpy_plans(pb: PlanProblem, seed: int) -> None:
    """CPU torch gives ``pb``'s numpy plan and numpy greedy witness (each made once per process, the numpy ones
    shared with the family tests that judged them: tests/kernels/_plans.py)."""
    pytest.importorskip("torch")
    for fn in (_plans.plan, _plans.greedy_plan):
        a, b = fn(pb), fn(pb, backend="torch", device="cpu")
        assert (a.status, a.reason) == (b.status, b.reason), seed
        assert np.array_equal(a.run, b.run) and np.array_equal(a.pool, b.pool), seed
        np.testing.assert_allclose(a.power_fraction, b.power_fraction, atol=1e-6, err_msg=str(seed))


@pytest.mark.parametrize("seed", range(0, N_FAMILY, 8))
def test_running_blocks_torch_parity(seed: int) -> None:
    """CPU torch gives the numpy plan and the numpy greedy witness on a sample of the family."""
    pb = np_inference(seed)
    _torch_gives_the_numpy_plans(pb, seed)


def test_the_lowering_is_what_plans_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without planner.NP_LOWER_FOR_FORCED the plan refuses (today's "must-run job ... cannot be served") an
    instance of the family it plans with it: the flag is what does it."""
    pb = np_inference(4)  # 17 of the family's 40 are refused without it
    assert _blocks_must_come_down(pb)
    assert _plans.plan(pb).status != "infeasible"
    monkeypatch.setattr(planner, "NP_LOWER_FOR_FORCED", False)
    res = kernels.plan(pb)
    assert res.status == "infeasible" and "cannot be served" in res.reason, res.reason


#: how the later slot of :func:`later_cap` cuts the running blocks: "half" (its grid cap at the idle floor plus half
#: the running blocks' lowest watts, no room for the inference: round 25's case, H5), "first" (its cap at the floor,
#: the inference served and the heaviest block at its lowest level, 1% over: it is kept, the rest end) or "window"
#: (its cap as it was, a maintenance window in the heaviest block's pool leaving it one GPU fewer than that block and
#: the inference served there need: the GPUs cut it, and the rule is the same) or "window1" (that window in slot 1,
#: the earliest a later slot can cut a block: it keeps running in slot 0 only)
LATER_CAPS = ("half", "first", "window", "window1")


def _low_w(pb: PlanProblem) -> tuple[np.ndarray, np.ndarray]:
    """The running non-preemptible rows in weight order (higher first, then the lower row) and their facility
    watts above the idle floor at their pool's lowest level (the family's first curve point)."""
    rows = np.flatnonzero(np.asarray(pb.running_pool) >= 0)
    rows = rows[np.lexsort((rows, -np.asarray(pb.weight)[rows]))]
    rp = np.asarray(pb.running_pool)[rows]
    tdp, idle, fmin = np.asarray(pb.tdp_w), np.asarray(pb.idle_w), np.asarray(pb.min_power_fraction)
    return rows, pb.pue * np.asarray(pb.gpus)[rows] * (fmin[rp] * tdp[rp] - idle[rp])


def later_cap(seed: int, how: str) -> PlanProblem:
    """:func:`np_inference` with its last slot (slot 1 for "window1") cut (:data:`LATER_CAPS`): a congestion event
    or a maintenance window announced for later that the running blocks cannot all pass, even at their lowest
    level."""
    from dataclasses import replace

    from kernels.check import idle_floor_w, inference_shed, must_cells

    pb = np_inference(seed)
    t = 1 if how == "window1" else pb.n_slots - 1
    rows, low = _low_w(pb)
    sh = inference_shed(pb)
    if how.startswith("window"):
        p = int(np.asarray(pb.running_pool)[rows[0]])
        served = must_cells(pb, sh)[:, t] & (sh.pack == p)
        H = np.array(pb.pool_gpus)
        H[p, t] = int(np.asarray(pb.gpus)[served].sum()) + int(np.asarray(pb.gpus)[rows[0]]) - 1
        return replace(pb, pool_gpus=H)
    cap = np.array(pb.grid_cap_w, dtype=np.float64)
    inf_w = float((must_cells(pb, sh)[:, t] * sh.load_w).sum())
    cap[t] = idle_floor_w(pb)[t] + (0.5 * low.sum() if how == "half" else inf_w + 1.01 * low[0])
    return replace(pb, grid_cap_w=cap)


def _ends_where_the_rule_ends_it(pb: PlanProblem, j: dict[str, Any], seed: int, why: str) -> np.ndarray:
    """Plan and greedy keep every running block from slot 0 (no work now is stopped for a later slot: nothing
    displaced) up to kernels.check.running_blocks' ``end`` and end it there (or run to the horizon end where there
    is none), and kernels.check.explain_unfinished reports the work an ended block leaves for what cut it, proven:
    ``why`` (``capacity`` for the window's GPUs, ``cap`` for the watts or a closed slot). Returns the rows' ends (in
    :func:`_low_w`'s order)."""
    from kernels.check import explain_unfinished, running_blocks

    T = pb.n_slots
    rows, _ = _low_w(pb)
    rb = running_blocks(pb)
    end = rb.end[rows]
    assert not rb.displaced.any(), (seed, rb.displaced)
    for r in (j["result"], j["greedy"]):
        assert "displaced_jobs" not in r.diagnostics, seed
        want = np.arange(T)[None, :] < np.minimum(end, T)[:, None]
        assert np.array_equal(r.run[rows], want), (seed, r.run[rows].astype(int), end)
        ex = explain_unfinished(pb, r)
        for row, e in zip(rows.tolist(), end.tolist(), strict=True):
            if e < T:
                assert (ex["reason"][row], ex["proven"][row]) == (why, True), (seed, row, ex["reason"])
    return end


@pytest.mark.parametrize("how", LATER_CAPS)
@pytest.mark.parametrize("seed", [s for s in range(N_FAMILY) if np_inference(s).n_slots >= 3])
def test_a_later_cap_ends_running_blocks_before_it(seed: int, how: str) -> None:
    """Nothing refused (issue 11 item 5: a congestion event announced for later must not stop work now): plan
    and greedy checker-clean, the plan dominating; every running block runs from slot 0 up to the slot the rule
    ends it (:func:`_ends_where_the_rule_ends_it`). Under a cap, the blocks kept through the capped slot are the
    longest prefix in weight order whose lowest watts fit beside the idle floor and the inference the plan serves
    there (none where the inference alone breaks the cap: a closed slot); under a window, the heaviest block's pool
    cannot hold it there beside the inference served (unless the inference is packed elsewhere)."""
    from kernels.check import closed_slots, idle_floor_w, inference_shed, must_cells

    pb = later_cap(seed, how)
    T = pb.n_slots
    j = _planned_and_dominating(pb, seed)
    res = j["result"]
    rows, low = _low_w(pb)
    end = _ends_where_the_rule_ends_it(pb, j, seed, "capacity" if how.startswith("window") else "cap")
    if how.startswith("window"):
        t = 1 if how == "window1" else T - 1
        p = int(np.asarray(pb.running_pool)[rows[0]])
        sh = inference_shed(pb)
        beside = int(np.asarray(pb.gpus)[must_cells(pb, sh)[:, t] & (sh.pack == p)].sum())
        room = int(np.asarray(pb.pool_gpus)[p, t]) - beside
        assert (end[0] == t) == (room < int(np.asarray(pb.gpus)[rows[0]])), (seed, end, room)
        return
    if closed_slots(pb)[T - 1]:
        kept = np.zeros(rows.size, dtype=bool)
    else:
        must = np.flatnonzero(np.asarray(pb.must_run) & res.run[:, T - 1])
        p_ = np.asarray(res.pool)[must]
        inf_w = pb.pue * float((np.asarray(pb.gpus)[must] * (np.asarray(pb.tdp_w)[p_] - np.asarray(pb.idle_w)[p_])).sum())
        room_w = float(np.asarray(pb.grid_cap_w)[T - 1]) * (1 + 1e-9) - idle_floor_w(pb)[T - 1] - inf_w
        kept = np.cumsum(low) <= room_w
    assert np.array_equal(end, np.where(kept, T, T - 1)), (seed, how, end, kept)


def test_the_later_caps_split_the_blocks() -> None:
    """The family holds the cases the rule is for: slots the inference fits under where every block ends, where
    one is kept and another ends, and windows that end the heaviest block."""
    from kernels.check import closed_slots, running_blocks

    ended, split, window = 0, 0, 0
    for s in range(N_FAMILY):
        for how in LATER_CAPS:
            pb = later_cap(s, how)
            T = pb.n_slots
            if T < 3 or closed_slots(pb)[T - 1]:
                continue
            end = running_blocks(pb).end[_low_w(pb)[0]]
            if how.startswith("window"):
                window += int(end[0] == (1 if how == "window1" else T - 1))
                continue
            ended += int((end == T - 1).all())
            split += int((end == T - 1).any() and (end == T).any())
    assert ended >= 5 and split >= 1 and window >= 20, (ended, split, window)


def slot0_cap(seed: int) -> PlanProblem:
    """:func:`np_inference` with slot 0's grid cap at the idle floor, the inference served there and half the
    lightest running block's lowest watts: no running block fits slot 0, so each is displaced (stopped now, planned
    again from slot 1 as a queued non-preemptible block, kernels.planner._restarted), with the inference of the
    later slots still to serve."""
    from dataclasses import replace

    from kernels.check import idle_floor_w, inference_shed, must_cells

    pb = np_inference(seed)
    _, low = _low_w(pb)
    sh = inference_shed(pb)
    cap = np.array(pb.grid_cap_w, dtype=np.float64)
    cap[0] = idle_floor_w(pb)[0] + float((must_cells(pb, sh)[:, 0] * sh.load_w).sum()) + 0.5 * low.min()
    return replace(pb, grid_cap_w=cap)


@pytest.mark.parametrize("seed", range(N_FAMILY))
def test_a_cap_in_slot_0_displaces_the_running_blocks_and_both_plan_the_rest(seed: int) -> None:
    """Slot 0's cap holds no running block (:func:`slot0_cap`): each is displaced (kernels.check.running_blocks;
    plan and greedy report them and do not run them in slot 0), and both plan what is left checker-clean, the plan
    dominating. The greedy witness refused 10 of the 40 before its second try ran without running blocks
    (listsched.GREEDY_RETRY_WITHOUT_BLOCKS: the inference in its packing pool)."""
    from kernels.check import running_blocks

    pb = slot0_cap(seed)
    rows, _ = _low_w(pb)
    rb = running_blocks(pb)
    assert rb.displaced[rows].all(), (seed, rb.displaced)
    j = _planned_and_dominating(pb, seed)
    for r in (j["result"], j["greedy"]):
        assert r.diagnostics["displaced_jobs"] == sorted(rows.tolist()) and not r.run[rows, 0].any(), seed


def test_the_greedy_retry_is_what_plans_a_displaced_family(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without listsched.GREEDY_RETRY_WITHOUT_BLOCKS the witness refuses an instance of :func:`slot0_cap`'s family
    ("must-run job ... cannot be served") that it plans with it: the flag is what does it."""
    from kernels import listsched

    pb = slot0_cap(0)
    assert _plans.greedy_plan(pb).status != "infeasible"
    monkeypatch.setattr(listsched, "GREEDY_RETRY_WITHOUT_BLOCKS", False)
    r = kernels.greedy_plan(pb)
    assert r.status == "infeasible" and "cannot be served" in r.reason, r.reason


@pytest.mark.parametrize("seed", [25, 29, 31, 36])
def test_a_later_cap_torch_parity(seed: int) -> None:
    """CPU torch gives the numpy plan and greedy witness under a later cap (the four seeds refused before)."""
    pb = later_cap(seed, "half")
    _torch_gives_the_numpy_plans(pb, seed)


def short_block(seed: int) -> tuple[PlanProblem, int]:
    """:func:`later_cap`'s "window" instance (a maintenance window in the heaviest running block's pool in the last
    slot ``t``, one GPU short of that block and the inference served there: kernels.check.running_blocks ends the
    block at ``t``) with that block's work left done in ``n`` (1..t-1) slots at full power and a switching loss of 1
    to 3 slots: the block finishes before the window cuts it, where it stays in its pool (no loss owed), and would
    run into the window were the loss asked for. Returns the instance and the block's row."""
    from dataclasses import replace

    pb = later_cap(seed, "window")
    rng = np.random.default_rng(1000 + seed)
    row = int(_low_w(pb)[0][0])
    n = int(rng.integers(1, pb.n_slots - 1))
    rem, loss = np.array(pb.remaining_s, np.float64), np.array(pb.preempt_loss_s, np.float64)
    rem[row] = pb.slot_s * (n - rng.uniform(0.0, 0.9))  # the family's pools' fastest level does 1 slot of work a slot
    loss[row] = pb.slot_s * rng.uniform(1.0, 3.0)
    return replace(pb, remaining_s=rem, preempt_loss_s=loss), row


@pytest.mark.parametrize("seed", [s for s in range(N_FAMILY) if np_inference(s).n_slots >= 3])
def test_a_running_block_a_later_window_cuts_asks_for_no_switching_loss(seed: int) -> None:
    """:func:`short_block`: plan and greedy checker-clean, the plan dominating; the block runs from slot 0 in its pool,
    ends before the window and finishes the job, its work past the job's work left under one slot at the pool's
    fastest level (the planner's trim, planner._trim, drops a tail that holds a whole such slot): a running
    non-preemptible job that stays in its pool owes no switching loss, so the greedy's list schedule asks it for its
    work left alone (listsched.list_schedule's ``need`` for a row whose block a later slot cuts; asked for the loss
    as well, the greedy ran the block on into the loss's slots, up to the window, on 7 of these 32 seeds)."""
    from kernels.check import running_blocks

    pb, row = short_block(seed)
    t = pb.n_slots - 1
    assert running_blocks(pb).end[row] == t, seed  # the window cuts the block (it owes the loss were it moved)
    j = _planned_and_dominating(pb, seed)
    for name, r in (("plan", j["result"]), ("greedy", j["greedy"])):
        run = np.asarray(r.run[row], dtype=bool)
        last = int(np.flatnonzero(run)[-1])
        assert run[: last + 1].all() and last < t and r.pool[row] == pb.running_pool[row], (seed, name, run.astype(int))
        ev = kernels.evaluate(pb, r.run, r.power_fraction, r.pool)
        assert ev["finished"][row] and ev["lost_work_s"][row] == 0.0, (seed, name)
        spare = float(ev["work_done_s"][row] - pb.remaining_s[row])
        assert spare < pb.slot_s, (seed, name, run.astype(int), np.round(r.power_fraction[row], 3), spare / pb.slot_s)



@pytest.mark.parametrize("seed", [7, 10, 13, 19])
def test_a_running_block_a_later_window_cuts_torch_parity(seed: int) -> None:
    """CPU torch gives the numpy plan and greedy witness on :func:`short_block` (seeds where the greedy's ``need``
    for the cut block decides its length)."""
    pb, _ = short_block(seed)
    _torch_gives_the_numpy_plans(pb, seed)


def slow_block() -> PlanProblem:
    """The smallest running non-preemptible block that must run slower than its fastest level and so runs into a
    later cap: one H100-like pool of 8 GPUs, the job on all 8 with one slot of work left at full power (its shortest
    block: slot 0) and a switching loss, T = 2; slot 0's cap holds the block at level 0.6 (0.82 of a slot's work),
    slot 1's cap the idle floor and half the block's lowest watts (it cannot run there at any level; nothing else
    wants the slot)."""
    tdp, idle, host, g = 700.0, 75.0, 450.0, 8
    floor = PUE * g * (idle + host)
    blk = PUE * g * (np.array([0.6, 0.4]) * tdp - idle)  # the block's watts above the floor at 0.6 and at 0.4
    return PlanProblem(
        slot_s=900.0, pue=PUE, wind_w=np.zeros(2), carbon_g_per_kwh=np.array([100.0, 200.0]),
        grid_cap_w=floor + np.array([1.001, 0.5]) * blk, site_max_w=np.full(2, 1e9), pool_gpus=np.full((1, 2), g),
        tdp_w=np.array([tdp]), idle_w=np.array([idle]), host_w_per_gpu=np.array([host]),
        min_power_fraction=np.array([0.4]), curve_f=np.array([POOLS[2][4]]), curve_s=np.array([POOLS[2][5]]),
        gpus=np.array([g]), remaining_s=np.array([900.0]), release=np.zeros(1, np.int64),
        deadline=np.full(1, NO_DEADLINE, np.int64), weight=np.array([0.3]), eligible=np.ones((1, 1), bool),
        must_run=np.zeros(1, bool), preemptible=np.zeros(1, bool), running_pool=np.array([0]),
        preempt_loss_s=np.array([300.0]), tenant=np.zeros(1, np.int64), tenant_quota_gpus=np.array([np.inf]),
    )


def test_a_slower_block_past_its_shortest_span_ends_at_the_cap_it_runs_into() -> None:
    """Plan and greedy keep the block in slot 0 and end it before slot 1 (its work left unfinished, for the cap,
    proven), checker-clean, the plan dominating (kernels.check._cap_end counts a block's own lowest watts past its
    shortest span: before, it checked that span only, running_blocks ended the block nowhere and plan and greedy both
    refused, 'cannot keep running in slot 0'). Round 26 H5's probe of the same case on :func:`np_inference`'s
    instances (the heaviest block's work cut to n slots at full power, the caps of slots 0..n-1 holding it below full
    power, slot n's cap not at its lowest level): 31 of 32 refused by both, the last refused by the greedy."""
    from kernels.check import explain_unfinished, running_blocks

    pb = slow_block()
    assert running_blocks(pb).end[0] == 1
    j = _planned_and_dominating(pb, 0)
    for r in (j["result"], j["greedy"]):
        assert r.run[0].tolist() == [True, False] and not r.finished[0]
        ex = explain_unfinished(pb, r)
        assert (ex["reason"][0], ex["proven"][0]) == ("cap", True), ex
