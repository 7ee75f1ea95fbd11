"""The DESIGN section-7 plan JSON (``windward plan --out``) and the same fields in a simulation report.

:func:`plan_dict` builds it from plain arrays; :func:`recompute_timeline` and :func:`check_plan` read it
back with nothing but the file (and ``kernels.power``), the way an auditor would: facility power per slot
from the pools' power parameters and the jobs' slots / power fractions / GPUs, grid import and carbon from
that, and every cap.

Extensions beyond section 7 (all optional on input): ``timeline.healthy_gpus{pool: [...]}`` (GPUs on
nodes that are up; default: the pool's size), ``timeline.facility_peak_w`` (power at slot start, what caps
are checked against), ``jobs[].run_fraction`` (share of each listed slot the job ran; default 1: a job that
finishes inside a slot runs only part of it), ``jobs[].slot_pools`` (DESIGN section 7: only for a job that ran in more
than one pool) and ``pools[].min_power_fraction`` / ``gpus_per_node`` /
``labels``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from kernels.power import facility_timeline
from scheduler.models import Pool

_TIMELINE_KEYS = (
    "facility_w",
    "wind_w",
    "grid_import_w",
    "grid_cap_w",
    "site_max_w",
    "carbon_g_per_kwh",
    "carbon_g",
)


def _floats(a: ArrayLike) -> list[float]:
    return [float(x) for x in np.asarray(a, dtype=np.float64).ravel()]


def pool_dict(pool: Pool) -> dict[str, Any]:
    return {
        "name": pool.name,
        "gpus": pool.gpus,
        "gpus_per_node": pool.gpus_per_node,
        "tdp_w": pool.tdp_w,
        "idle_w": pool.idle_w,
        "host_w_per_gpu": pool.host_w_per_gpu,
        "min_power_fraction": pool.min_power_fraction,
        "speed_curve": [list(p) for p in pool.speed_curve],
        "labels": dict(pool.labels),
    }


def job_entry(
    job_id: str,
    pool: str | None,
    gpus: int,
    slots: Sequence[int],
    power_fraction: Sequence[float],
    work_done_s: float,
    duration_s: float,
    finished: bool,
    run_fraction: Sequence[float] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One ``jobs[]`` entry; ``extra`` keys are added as they are (per-job results of a simulation)."""
    if len(slots) != len(power_fraction) or (run_fraction is not None and len(run_fraction) != len(slots)):
        raise ValueError(f"job {job_id!r}: slots, power_fraction and run_fraction must have the same length")
    e: dict[str, Any] = {
        "job_id": job_id,
        "pool": pool,
        "gpus": int(gpus),
        "slots": [int(s) for s in slots],
        "power_fraction": [round(float(f), 6) for f in power_fraction],
        "work_done_s": float(work_done_s),
        "duration_s": float(duration_s),
        "finished": bool(finished),
    }
    if run_fraction is not None and any(abs(r - 1.0) > 1e-12 for r in run_fraction):
        e["run_fraction"] = [round(float(r), 9) for r in run_fraction]
    e.update(extra)
    return e


def plan_dict(
    *,
    status: str,
    start_utc: datetime | str,
    slot_s: float,
    pue: float,
    solve_s: float,
    pools: Sequence[Pool | Mapping[str, Any]],
    facility_w: ArrayLike,
    wind_w: ArrayLike,
    grid_import_w: ArrayLike,
    grid_cap_w: ArrayLike,
    site_max_w: ArrayLike,
    carbon_g_per_kwh: ArrayLike,
    carbon_g: ArrayLike,
    busy_gpus: Mapping[str, ArrayLike],
    jobs: Sequence[Mapping[str, Any]],
    lower_bound_carbon_g: float | None = None,
    gap: float | None = None,
    unfinished_gpu_s: float = 0.0,
    healthy_gpus: Mapping[str, ArrayLike] | None = None,
    extra_timeline: Mapping[str, ArrayLike] | None = None,
    extra: Mapping[str, Any] | None = None,
    objective_extra: Mapping[str, float | None] | None = None,
) -> dict[str, Any]:
    """The section-7 dict from plain arrays (one value per slot). ``carbon_g`` total is the timeline sum.

    ``lower_bound_carbon_g`` must bound the grid carbon itself (of any plan doing at least this plan's
    work; ``kernels.carbon_bound``) and ``gap = (carbon_g - lower_bound_carbon_g) / carbon_g``.
    ``objective_extra``: further ``objective`` fields (e.g. ``objective_g``, ``lower_bound_objective_g``,
    ``objective_gap``: the penalised objective, its certified bound and gap)."""
    n = int(np.asarray(facility_w).shape[0])
    tl_in = {
        "facility_w": facility_w,
        "wind_w": wind_w,
        "grid_import_w": grid_import_w,
        "grid_cap_w": grid_cap_w,
        "site_max_w": site_max_w,
        "carbon_g_per_kwh": carbon_g_per_kwh,
        "carbon_g": carbon_g,
    }
    timeline: dict[str, Any] = {}
    for k, v in tl_in.items():
        vals = _floats(v)
        if len(vals) != n:
            raise ValueError(f"timeline.{k} has {len(vals)} values, expected {n} (one per slot)")
        timeline[k] = vals
    timeline["busy_gpus"] = {str(p): _floats(v) for p, v in busy_gpus.items()}
    if healthy_gpus is not None:
        timeline["healthy_gpus"] = {str(p): _floats(v) for p, v in healthy_gpus.items()}
    for k, v in (extra_timeline or {}).items():
        timeline[k] = _floats(v)
    total = float(np.sum(timeline["carbon_g"]))
    start = start_utc.isoformat().replace("+00:00", "Z") if isinstance(start_utc, datetime) else str(start_utc)
    out: dict[str, Any] = {
        "status": status,
        "start_utc": start,
        "slot_s": float(slot_s),
        "n_slots": n,
        "pue": float(pue),
        "solve_s": float(solve_s),
        "objective": {
            "carbon_g": total,
            "lower_bound_carbon_g": None if lower_bound_carbon_g is None else float(lower_bound_carbon_g),
            "gap": None if gap is None else float(gap),
            "unfinished_gpu_s": float(unfinished_gpu_s),
            **{k: None if v is None else float(v) for k, v in (objective_extra or {}).items()},
        },
        "pools": [pool_dict(p) if isinstance(p, Pool) else dict(p) for p in pools],
        "timeline": timeline,
        "jobs": [dict(j) for j in jobs],
    }
    out.update(extra or {})
    return out


def recompute_timeline(plan: Mapping[str, Any]) -> dict[str, NDArray[np.float64]]:
    """From the plan dict alone: per-slot facility power, grid import and carbon, and busy GPUs per pool.

    Uses the pools' power parameters, ``timeline.healthy_gpus`` (or the pool size), ``timeline.wind_w`` and
    ``carbon_g_per_kwh``, and the jobs' ``slots`` / ``power_fraction`` / ``gpus`` (/ ``run_fraction``).
    """
    n = int(plan["n_slots"])
    pools = plan["pools"]
    idx = {p["name"]: i for i, p in enumerate(pools)}
    n_p = len(pools)
    tdp = np.array([p["tdp_w"] for p in pools], dtype=np.float64)
    active = np.zeros((n_p, n))
    busy = np.zeros((n_p, n))
    for j in plan["jobs"]:
        slots = np.asarray(j["slots"], dtype=np.int64)
        if slots.size == 0:
            continue
        f = np.asarray(j["power_fraction"], dtype=np.float64)
        r = np.asarray(j.get("run_fraction", np.ones(slots.size)), dtype=np.float64)
        by_slot = j.get("slot_pools")
        p = np.array([idx[x] for x in by_slot]) if by_slot else np.full(slots.size, idx[j["pool"]])
        np.add.at(active, (p, slots), j["gpus"] * f * tdp[p] * r)
        np.add.at(busy, (p, slots), j["gpus"] * r)
    tl = plan["timeline"]
    hg = tl.get("healthy_gpus", {})
    healthy = np.array(
        [np.asarray(hg[p["name"]], dtype=np.float64) if p["name"] in hg else np.full(n, float(p["gpus"])) for p in pools]
    )
    out = facility_timeline(
        float(plan["pue"]),
        float(plan["slot_s"]),
        active,
        busy,
        healthy,
        np.array([p["idle_w"] for p in pools], dtype=np.float64),
        np.array([p["host_w_per_gpu"] for p in pools], dtype=np.float64),
        np.asarray(tl["wind_w"], dtype=np.float64),
        np.asarray(tl["carbon_g_per_kwh"], dtype=np.float64),
    )
    out["busy_gpus"] = busy
    return out


def check_plan(plan: Mapping[str, Any], rel_tol: float = 1e-6) -> list[str]:
    """Every cap, and the consistency of the stored timeline with the jobs, from the plan dict alone.

    Caps are checked on ``facility_peak_w`` when present (simulation reports), else on ``facility_w``. A slot
    the plan lists in ``unfinished.infeasible_slots`` (its idle floor alone breaks a cap: no plan meets it) is
    exempt from the cap checks only while no GPU is busy there and its facility power is that floor. A slot it
    lists in ``unfinished.shed_slots`` (its cap holds the floor but not the must-run inference) keeps its cap
    checks, and no job of ``unfinished.slot_shed_jobs`` may run in it, nor, where its ``slot_shed_cause``
    names the cap (absent: the cap, as before the cause was published), any job whose ``kind`` is not inference
    (a slot marked for GPUs or a quota alone stays open to other work); a job of ``unfinished.left_out_jobs``
    (no pool can hold it in any slot) runs in no slot. Returns human-readable problems (empty: all good)."""
    problems: list[str] = []
    tl = plan["timeline"]
    for k in _TIMELINE_KEYS:
        if len(tl[k]) != plan["n_slots"]:
            problems.append(f"timeline.{k} has {len(tl[k])} values, n_slots is {plan['n_slots']}")
    if problems:
        return problems
    rc = recompute_timeline(plan)
    fac = np.asarray(tl["facility_w"], dtype=np.float64)
    for name, mine in (("facility_w", rc["facility_w"]), ("grid_import_w", rc["grid_import_w"]), ("carbon_g", rc["carbon_g"])):
        theirs = np.asarray(tl[name], dtype=np.float64)
        bad = np.flatnonzero(np.abs(mine - theirs) > rel_tol * np.maximum(np.abs(theirs), 1.0) + 1e-6)
        if bad.size:
            t = int(bad[0])
            problems.append(f"slot {t}: timeline.{name}={theirs[t]:.3f} but the jobs give {mine[t]:.3f}")
    peak = np.asarray(tl.get("facility_peak_w", fac), dtype=np.float64)
    wind = np.asarray(tl["wind_w"], dtype=np.float64)
    cap = np.asarray(tl["grid_cap_w"], dtype=np.float64)
    smax = np.asarray(tl["site_max_w"], dtype=np.float64)
    exempt = np.zeros(peak.shape, dtype=bool)
    listed = [int(t) for t in (plan.get("unfinished") or {}).get("infeasible_slots", []) if 0 <= int(t) < peak.size]
    if listed:
        floor_plan = {**plan, "jobs": []}
        floor = recompute_timeline(floor_plan)["facility_w"]
        busy_any = sum(np.asarray(b, dtype=np.float64) for b in rc["busy_gpus"]) if len(rc["busy_gpus"]) else 0.0
        ok = (np.asarray(busy_any) == 0) & (np.abs(fac - floor) <= rel_tol * np.maximum(floor, 1.0) + 1e-6)
        for t in listed:
            if ok[t]:
                exempt[t] = True
            else:
                problems.append(f"slot {t}: listed as infeasible (idle floor over a cap) but jobs run there")
    unf = plan.get("unfinished") or {}
    marked = unf.get("shed_slots", [])
    causes = unf.get("slot_shed_cause", ["cap"] * len(marked))
    for t, ids, why in zip(marked, unf.get("slot_shed_jobs", []), causes, strict=True):
        closed = "cap" in str(why).split("+")
        for j in plan["jobs"]:  # (the few marked slots, against the job entries)
            if int(t) in j["slots"] and (j["job_id"] in ids or (closed and j.get("kind", "inference") != "inference")):
                problems.append(f"slot {int(t)}: the {why} cannot hold the inference there (shed_slots) but job "
                                f"{j['job_id']} runs there")
    left_out = set(unf.get("left_out_jobs", []))
    for j in plan["jobs"]:  # (no pool holds them in any slot: kernels.check.unplaceable)
        if j["job_id"] in left_out and j["slots"]:
            problems.append(f"job {j['job_id']} is listed in left_out_jobs (no pool can hold it) but runs in slot "
                            f"{int(j['slots'][0])}")
    for s in np.flatnonzero((peak > smax * (1 + rel_tol) + 1e-6) & ~exempt):
        problems.append(f"slot {int(s)}: facility {peak[s]:.0f} W > site max {smax[s]:.0f} W")
    imp = np.maximum(peak - wind, 0.0)
    for s in np.flatnonzero((imp > cap * (1 + rel_tol) + 1e-6) & ~exempt):
        problems.append(f"slot {int(s)}: grid import {imp[s]:.0f} W > grid cap {cap[s]:.0f} W")
    for pool in plan["pools"]:
        b = rc["busy_gpus"][[p["name"] for p in plan["pools"]].index(pool["name"])]
        hg = tl.get("healthy_gpus", {}).get(pool["name"])
        limit = np.asarray(hg, dtype=np.float64) if hg is not None else np.full(b.shape, float(pool["gpus"]))
        for s in np.flatnonzero(b > limit + 1e-6):
            problems.append(f"slot {int(s)}: pool {pool['name']} busy {b[s]:.1f} GPUs > healthy {limit[s]:.0f}")
    return problems
