"""Small random planning problems for the kernels tests (numpy only: no torch import here)."""

from __future__ import annotations

import numpy as np

from kernels.problem import NO_DEADLINE, PlanProblem

SLOT_S = 900.0


def small_problem(seed: int, J: int = 8, T: int = 12, P_: int = 2, *, quota: bool = False, weight_scale: float = 1.0,
                  cap_frac: float = 0.5) -> PlanProblem:
    """A small random instance with every job kind: must-run, non-preemptible, running, deadlines."""
    rng = np.random.default_rng(seed)
    gpp = 8
    idle_all = 1.15 * gpp * P_ * (75 + 450)
    full = 1.15 * gpp * P_ * (700 + 450)
    gpus = rng.integers(1, 5, J)
    rem = rng.uniform(0.5, 4, J) * SLOT_S
    release = rng.integers(0, T // 3, J)
    eligible = rng.random((J, P_)) < 0.6
    eligible[np.arange(J), rng.integers(0, P_, J)] = True
    must = np.zeros(J, bool)
    must[0] = True
    gpus[0], rem[0] = 2, 2 * SLOT_S
    preemptible = np.ones(J, bool)
    preemptible[1] = False
    running = np.full(J, -1)
    loss = np.zeros(J)
    running[2] = int(np.flatnonzero(eligible[2])[0])
    release[2] = 0
    loss[2] = 300.0
    return PlanProblem(
        slot_s=SLOT_S, pue=1.15,
        wind_w=rng.uniform(0, full, T), carbon_g_per_kwh=rng.uniform(100, 500, T),
        grid_cap_w=np.full(T, idle_all + cap_frac * (full - idle_all)), site_max_w=np.full(T, full * 1.01),
        pool_gpus=np.full((P_, T), gpp), tdp_w=np.full(P_, 700.0), idle_w=np.full(P_, 75.0),
        host_w_per_gpu=np.full(P_, 450.0), min_power_fraction=np.full(P_, 0.4),
        curve_f=np.tile([0.4, 0.6, 0.8, 1.0], (P_, 1)), curve_s=np.tile([0.62, 0.82, 0.95, 1.0], (P_, 1)),
        gpus=gpus, remaining_s=rem, release=release,
        deadline=np.where(rng.random(J) < 0.4, rng.integers(2, T, J), NO_DEADLINE),
        weight=rng.uniform(0.1, 0.5, J) * weight_scale, eligible=eligible, must_run=must,
        preemptible=preemptible, running_pool=running, preempt_loss_s=loss,
        tenant=rng.integers(0, 2, J),
        tenant_quota_gpus=np.array([6.0, np.inf]) if quota else np.array([np.inf, np.inf]),
        price_eur_per_mwh=rng.uniform(-10, 150, T), energy_cost_weight_g_per_eur=float(rng.uniform(0, 2)),
    )


def beside_problem(seed: int) -> PlanProblem:
    """A small random instance of must-run inference beside running non-preemptible jobs: 2-3 pools of 8 GPUs
    (frugal and not), 1-3 must-run rows from slot 0 (2-6 GPUs, 1-3 slots) and 2-4 running non-preemptible jobs
    (2-4 GPUs, 1-4 slots, 600 s since their checkpoint) in eligible pools, generous caps: where
    kernels.check.inference_shed packs the inference beside the running jobs and still displaces some."""
    rng = np.random.default_rng(seed)
    P_, T = int(rng.integers(2, 4)), 6
    nm, nn = int(rng.integers(1, 4)), int(rng.integers(2, 5))
    J = nm + nn
    elig = rng.random((J, P_)) < 0.6
    elig[np.arange(J), rng.integers(0, P_, J)] = True
    rp = np.r_[np.full(nm, -1), [int(rng.choice(np.flatnonzero(elig[nm + i]))) for i in range(nn)]]
    full = 1.15 * 8 * P_ * (700 + 450)
    return PlanProblem(
        slot_s=SLOT_S, pue=1.15, wind_w=np.zeros(T), carbon_g_per_kwh=np.linspace(100, 400, T),
        grid_cap_w=np.full(T, full), site_max_w=np.full(T, full * 1.01), pool_gpus=np.full((P_, T), 8),
        tdp_w=rng.choice([700.0, 400.0], P_), idle_w=np.full(P_, 75.0), host_w_per_gpu=np.full(P_, 450.0),
        min_power_fraction=np.full(P_, 0.4), curve_f=np.tile([0.4, 0.6, 0.8, 1.0], (P_, 1)),
        curve_s=np.tile([0.62, 0.82, 0.95, 1.0], (P_, 1)), gpus=np.r_[rng.choice([2, 4, 6], nm), rng.choice([2, 4], nn)],
        remaining_s=np.r_[rng.integers(1, 4, nm), rng.integers(1, 5, nn)] * SLOT_S, release=np.zeros(J, np.int64),
        deadline=np.full(J, NO_DEADLINE), weight=rng.choice([0.1, 0.2, 0.5, 1.0], J), eligible=elig,
        must_run=np.arange(J) < nm, preemptible=np.arange(J) < nm, running_pool=rp.astype(np.int64),
        preempt_loss_s=np.where(rp >= 0, 600.0, 0.0), tenant=np.zeros(J, np.int64),
        tenant_quota_gpus=np.array([np.inf]), price_eur_per_mwh=None, energy_cost_weight_g_per_eur=0.0,
    )
