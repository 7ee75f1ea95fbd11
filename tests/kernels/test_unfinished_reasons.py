"""Why a plan leaves a job unfinished (``kernels.check.explain_unfinished``), on seeded families built so that
one reason binds: a window too short (deadline), healthy GPUs too few in the slots it needs (capacity), watts
under the caps too few (cap), its tenant's quota (quota), and room the plan left unused (optimiser).

The old rule ("other" wherever some slot had room) fails the capacity, cap and quota families: a
non-preemptible job needs an unbroken block, and scattered room is not one."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import kernels
from kernels.check import explain_unfinished
from kernels.problem import NO_DEADLINE, PlanProblem

SLOT_S = 900.0
T = 24
G = 16  # GPUs in the one pool
TARGET = 0  # the job each family is built around
NEED = 10  # slots of work of the target at full speed


def _family(seed: int, kind: str) -> PlanProblem:
    """One pool of ``G`` GPUs, ``T`` slots, a few small preemptible background jobs and a non-preemptible
    target (job 0: 8 GPUs, ``NEED`` slots of work) that ``kind`` keeps from finishing."""
    rng = np.random.default_rng(seed)
    J = int(rng.integers(3, 7))
    gpus = rng.integers(1, 3, J)
    rem = rng.uniform(1, 4, J) * SLOT_S
    release = rng.integers(0, T // 2, J)
    gpus[TARGET], rem[TARGET], release[TARGET] = 8, NEED * SLOT_S, 0
    preemptible = np.ones(J, bool)
    preemptible[TARGET] = False
    idle_w, host_w, tdp = 75.0, 450.0, 700.0
    floor = 1.15 * G * (idle_w + host_w)
    full = floor + 1.15 * G * (tdp - idle_w)
    pool_gpus = np.full((1, T), G)
    cap = np.full(T, full * 1.01)
    quota = np.array([np.inf, np.inf])
    # slots, scattered so that no NEED-slot block is free of them, where kind binds
    gaps = rng.integers(3, NEED - 1, T)
    dips = np.cumsum(gaps)
    dips = dips[dips < T]
    if kind == "deadline":
        release[TARGET] = T - NEED + int(rng.integers(1, 4))
    elif kind == "capacity":
        pool_gpus[0, dips] = int(rng.integers(4, 8))  # healthy GPUs drop below the target's 8
    elif kind == "cap":
        # above the idle floor, room for 1-2.5 GPUs at full power: not for the target's 8 at 40%
        cap[dips] = floor + 1.15 * float(rng.uniform(1.0, 2.5)) * (tdp - idle_w)
    elif kind == "quota":
        quota = np.array([float(rng.integers(2, 8)), np.inf])
    return PlanProblem(
        slot_s=SLOT_S, pue=1.15, wind_w=np.zeros(T), carbon_g_per_kwh=rng.uniform(100, 400, T),
        grid_cap_w=cap, site_max_w=np.full(T, full * 1.01), pool_gpus=pool_gpus, tdp_w=np.array([tdp]),
        idle_w=np.array([idle_w]), host_w_per_gpu=np.array([host_w]), min_power_fraction=np.array([0.4]),
        curve_f=np.array([[0.4, 0.6, 0.8, 1.0]]), curve_s=np.array([[0.62, 0.82, 0.95, 1.0]]),
        gpus=gpus, remaining_s=rem, release=release, deadline=np.full(J, NO_DEADLINE),
        weight=np.full(J, 5.0), eligible=np.ones((J, 1), bool), must_run=np.zeros(J, bool),
        preemptible=preemptible, running_pool=np.full(J, -1), preempt_loss_s=np.zeros(J),
        tenant=np.where(np.arange(J) == TARGET, 0, 1), tenant_quota_gpus=quota,
    )


SEEDS = range(8)


@pytest.mark.parametrize("kind", ["deadline", "capacity", "cap", "quota"])
@pytest.mark.parametrize("seed", SEEDS)
def test_the_reason_that_binds_is_named_and_proven(seed: int, kind: str) -> None:
    problem = _family(seed, kind)
    result = kernels.plan(problem)
    assert kernels.check_result(problem, result) == []
    assert not result.finished[TARGET]
    why = explain_unfinished(problem, result)
    assert why["reason"][TARGET] == kind
    assert why["proven"][TARGET]  # no plan at all can finish it: the site itself stops it
    left_h = 8 * (problem.remaining_s[TARGET] - result.work_done_s[TARGET]) / 3600.0
    assert why["proven_gpu_h"][kind] >= left_h - 1e-6
    assert why["gpu_h"][kind] >= left_h - 1e-6 and why["jobs"]["other"] == 0
    assert sum(why["jobs"].values()) == int((~result.finished).sum())


@pytest.mark.parametrize("seed", SEEDS)
def test_room_the_plan_left_unused_is_an_optimiser_defect(seed: int) -> None:
    """Take a plan that finishes the target and drop the target's slots: the room it ran in is still there,
    so the plan provably could have finished it ("optimiser", not proven unfinishable); and drop instead a
    background job whose slots another job fills: that is not the plan's room any more."""
    problem = _family(seed, "none")
    result = kernels.plan(problem)
    assert result.finished[TARGET] and kernels.check_result(problem, result) == []
    run = np.asarray(result.run).copy()
    run[TARGET] = False
    worse = dataclasses.replace(result, run=run, power_fraction=np.where(run, result.power_fraction, 0.0))
    why = explain_unfinished(problem, worse)
    assert why["reason"][TARGET] == "optimiser" and not why["proven"][TARGET]
    assert why["jobs"]["optimiser"] == 1 and why["proven_jobs"]["optimiser"] == 0


@pytest.mark.parametrize("seed", SEEDS)
def test_a_preemptible_job_cut_short_counts_its_own_slots_as_room(seed: int) -> None:
    """A preemptible target released 12 slots before the end needs 10: the plan runs it, then two of its slots
    are dropped. The room the plan left is its 8 remaining slots plus the 4 others; without its own slots
    only 4 are left, which could not hold its work."""
    problem = _family(seed, "none")
    problem = dataclasses.replace(problem, preemptible=np.ones(problem.n_jobs, bool),
                                  release=np.r_[T - 12, problem.release[1:]])
    result = kernels.plan(problem)
    assert result.finished[TARGET] and kernels.check_result(problem, result) == []
    run = np.asarray(result.run).copy()
    run[TARGET, np.flatnonzero(run[TARGET])[:2]] = False
    worse = dataclasses.replace(result, run=run, power_fraction=np.where(run, result.power_fraction, 0.0))
    why = explain_unfinished(problem, worse)
    assert why["reason"][TARGET] == "optimiser" and not why["proven"][TARGET]


def test_capacity_taken_by_other_work_is_not_proven() -> None:
    """The target's pool is full of other (must-run) work in scattered slots: capacity in this plan, but not
    proven (alone on the site it would finish)."""
    problem = _family(3, "none")
    J = problem.n_jobs
    must = np.zeros(J + 2, bool)
    must[J:] = True
    extra = {  # two 12-GPU must-run jobs, at slots 6 and 14 (no free 10-slot block for 8 GPUs is left)
        "gpus": np.r_[problem.gpus, 12, 12], "remaining_s": np.r_[problem.remaining_s, SLOT_S, SLOT_S],
        "release": np.r_[problem.release, 6, 14], "deadline": np.r_[problem.deadline, NO_DEADLINE, NO_DEADLINE],
        "weight": np.r_[problem.weight, 5.0, 5.0], "eligible": np.r_[problem.eligible, np.ones((2, 1), bool)],
        "must_run": must, "preemptible": np.r_[problem.preemptible, True, True],
        "running_pool": np.r_[problem.running_pool, -1, -1], "preempt_loss_s": np.r_[problem.preempt_loss_s, 0, 0],
        "tenant": np.r_[problem.tenant, 1, 1],
    }
    problem = dataclasses.replace(problem, **extra)
    result = kernels.plan(problem)
    assert kernels.check_result(problem, result) == [] and not result.finished[TARGET]
    why = explain_unfinished(problem, result)
    assert why["reason"][TARGET] == "capacity" and not why["proven"][TARGET]
    assert why["proven_jobs"]["capacity"] == 0 and why["jobs"]["capacity"] >= 1
