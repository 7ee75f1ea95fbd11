"""The power and carbon model of DESIGN section 2, as pure array functions.

Shared by the planner, the simulator and every report, so that all of them compute facility power and
carbon the same way. Shapes use P pools, T slots, J jobs, K speed-curve points.

Sign and unit conventions: powers are watts, energies joules, carbon grams of CO2-eq; a running GPU at
power fraction f draws ``f * tdp_w``; ``grid_import_w = max(0, facility_w - wind_w)`` (no export).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray


def speed(curve_f: ArrayLike, curve_s: ArrayLike, f: ArrayLike) -> NDArray[np.float64]:
    """Throughput relative to full power at power fraction ``f`` for one pool's piecewise-linear curve.

    ``curve_f, curve_s : (K,)``; ``f`` any shape. Below the first point the speed falls linearly to 0
    at f = 0 (a capped GPU never runs at a fraction below the pool's minimum anyway).
    """
    xf = np.concatenate([[0.0], np.asarray(curve_f, dtype=np.float64)])
    xs = np.concatenate([[0.0], np.asarray(curve_s, dtype=np.float64)])
    return np.interp(np.asarray(f, dtype=np.float64), xf, xs)


def pool_speed(curve_f: NDArray, curve_s: NDArray, pool_idx: NDArray, f: NDArray) -> NDArray[np.float64]:
    """Speed for many jobs at once: ``curve_f, curve_s : (P, K)``, ``pool_idx`` and ``f`` broadcastable."""
    pool_idx = np.asarray(pool_idx)
    f = np.asarray(f, dtype=np.float64)
    out = np.zeros(np.broadcast(pool_idx, f).shape, dtype=np.float64)
    pb = np.broadcast_to(pool_idx, out.shape)
    fb = np.broadcast_to(f, out.shape)
    for p in range(curve_f.shape[0]):  # P is a handful of pools: a loop over pools, never over jobs
        m = pb == p
        if m.any():
            out[m] = speed(curve_f[p], curve_s[p], fb[m])
    return out


def it_power_w(
    active_gpu_w: NDArray,
    busy_gpus: NDArray,
    healthy_gpus: NDArray,
    idle_w: NDArray,
    host_w_per_gpu: NDArray,
) -> NDArray[np.float64]:
    """IT power per slot.

    ``active_gpu_w : (P, T)`` sum over running jobs of ``gpus * f * tdp_w``; ``busy_gpus, healthy_gpus :
    (P, T)`` (or (P,) for constant health); ``idle_w, host_w_per_gpu : (P,)``. GPUs of a node that is down
    draw nothing (neither idle nor host power); healthy idle GPUs draw ``idle_w``; every healthy GPU's host
    share draws ``host_w_per_gpu``. Returns ``(T,)``.
    """
    healthy = np.asarray(healthy_gpus, dtype=np.float64)
    if healthy.ndim == 1:
        healthy = healthy[:, None]
    busy = np.asarray(busy_gpus, dtype=np.float64)
    idle = np.maximum(healthy - busy, 0.0)
    per_pool = (
        np.asarray(active_gpu_w, dtype=np.float64)
        + idle * np.asarray(idle_w, dtype=np.float64)[:, None]
        + healthy * np.asarray(host_w_per_gpu, dtype=np.float64)[:, None]
    )
    return per_pool.sum(axis=0)


def grid_import_w(facility_w: ArrayLike, wind_w: ArrayLike) -> NDArray[np.float64]:
    return np.maximum(np.asarray(facility_w, dtype=np.float64) - np.asarray(wind_w, dtype=np.float64), 0.0)


def carbon_g(grid_import_w_: ArrayLike, carbon_g_per_kwh: ArrayLike, slot_s: float) -> NDArray[np.float64]:
    """Grams of CO2-eq per slot: ``grid_import_w * slot_hours / 1000 * carbon_g_per_kwh``."""
    slot_h = slot_s / 3600.0
    return np.asarray(grid_import_w_, dtype=np.float64) * slot_h / 1000.0 * np.asarray(carbon_g_per_kwh, dtype=np.float64)


def facility_timeline(
    pue: float,
    slot_s: float,
    active_gpu_w: NDArray,
    busy_gpus: NDArray,
    healthy_gpus: NDArray,
    idle_w: NDArray,
    host_w_per_gpu: NDArray,
    wind_w: NDArray,
    carbon_g_per_kwh: NDArray,
) -> dict[str, NDArray[np.float64]]:
    """facility_w, grid_import_w and carbon_g per slot from per-pool loads (one call for every report)."""
    fac = pue * it_power_w(active_gpu_w, busy_gpus, healthy_gpus, idle_w, host_w_per_gpu)
    imp = grid_import_w(fac, wind_w)
    return {"facility_w": fac, "grid_import_w": imp, "carbon_g": carbon_g(imp, carbon_g_per_kwh, slot_s)}
