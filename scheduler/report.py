"""The simulation report: DESIGN section-7 plan fields, a summary, data provenance and per-job results.

Every number in the summary is recomputable from the report's timeline and jobs (``scheduler.planjson``):
``carbon_g[t] = grid_import_w[t] * slot_h / 1000 * carbon_g_per_kwh[t]`` and ``facility_w`` from the busy
GPUs and power fractions per slot through ``kernels.power``.

Definitions used in the summary:

- ``grid_carbon_kg``: the sum of the timeline's ``carbon_g`` / 1000.
- ``energy_wind_mwh`` / ``energy_grid_mwh``: per slot ``min(facility_w, wind_w)`` and ``grid_import_w``
  times the slot length.
- ``cap_violations``: slots whose start-of-slot (peak) facility power broke the site maximum or whose grid
  import broke the grid cap, against *actual* wind and caps.
- ``completion time``: end minus submit of finished non-inference jobs.
- ``deadline_misses``: jobs with a deadline that finished after it, or were unfinished at the end of the
  run with the deadline at or before it (:func:`scheduler.lateness.lateness`, the rule ``windward plan``
  counts late jobs by); ``deadline_misses_unreachable``: those of them whose earliest possible finish (the
  first slot after submission, full speed) already lay past the deadline.
- ``gpu_utilisation``: busy GPU-slots over healthy GPU-slots.
- ``inference_served_pct``: inference GPU-seconds served over inference GPU-seconds demanded (jobs
  submitted inside the run); demand that could not start within its own window expires unserved.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from scheduler.control import LoopJob, SimulationResult
from scheduler.lateness import Lateness, lateness
from scheduler.planjson import job_entry, plan_dict


def _pct(a: np.ndarray, q: float) -> float | None:
    return float(np.percentile(a, q)) if a.size else None


def job_results(res: SimulationResult) -> list[dict[str, Any]]:
    out = []
    for rec in res.loop.records.values():
        out.append(_job_entry(rec))
    return out


def _job_entry(rec: LoopJob) -> dict[str, Any]:
    j = rec.job
    done = rec.state == "finished"
    return job_entry(
        j.job_id,
        rec.pools_by_slot[-1] if rec.pools_by_slot else rec.pool,
        j.gpus,
        rec.slots,
        rec.fractions,
        rec.work_done_s,
        j.duration_s,
        done,
        run_fraction=rec.run_fractions,
        **({"slot_pools": list(rec.pools_by_slot)} if len(set(rec.pools_by_slot)) > 1 else {}),
        tenant=j.tenant,
        kind=j.kind,
        priority=j.priority,
        preemptible=j.preemptible,
        state=rec.state,
        submit_s=j.submit_s,
        start_s=rec.first_start_s,
        end_s=rec.end_s if rec.state in ("finished", "expired", "cancelled") else None,
        deadline_s=j.deadline_s,
        completion_s=(rec.end_s - j.submit_s) if done and rec.end_s is not None else None,
        preemptions=rec.preemptions,
        failures=rec.failures,
        lost_work_s=rec.lost_work_s,
        energy_kwh=rec.energy_j / 3.6e6,
        carbon_g=rec.carbon_g,
    )


def _misses(recs: Sequence[LoopJob], slot_s: float, end_s: float) -> Lateness:
    """The run's late jobs by :func:`scheduler.lateness.lateness`: finished jobs at their end, queued and
    running ones unfinished at the run's end ``end_s``; the others (pending, failed, cancelled) not counted."""
    counted = [r for r in recs if r.state in ("finished", "queued", "running") and r.job.deadline_s is not None]
    return lateness(
        [np.nan if r.job.deadline_s is None else r.job.deadline_s for r in counted],
        [r.end_s if r.state == "finished" and r.end_s is not None else np.nan for r in counted],
        [math.ceil(r.job.submit_s / slot_s - 1e-9) * slot_s + r.job.duration_s for r in counted],
        end_s,
        [r.job.must_run for r in counted],
    )


def summary(res: SimulationResult, *, clairvoyant: bool = True) -> dict[str, Any]:
    """The run's figures. ``clairvoyant=False`` leaves out ``carbon_over_bound``, ``work_carbon_over_bound``
    and ``clairvoyant`` (the HiGHS LP bound of the run's own work: seconds to a minute of CPU on a long
    replay; benchmarks/simulator.py times the simulator, not the bound)."""
    rs = res.reports
    dt = res.site.slot_s
    end_s = len(rs) * dt
    recs = list(res.loop.records.values())
    submitted = [r for r in recs if r.state != "pending"]
    done = [r for r in recs if r.state == "finished"]
    training_done = [r for r in done if not r.job.must_run]
    comp = np.array([r.end_s - r.job.submit_s for r in training_done if r.end_s is not None])
    misses = _misses(recs, dt, end_s)
    inf = [r for r in submitted if r.job.must_run]
    inf_demand = sum(r.job.gpus * r.job.duration_s for r in inf)
    inf_served = sum(r.job.gpus * r.work_done_s for r in inf)
    busy = sum(sum(x.busy_gpus.values()) for x in rs)
    healthy = sum(sum(x.healthy_gpus.values()) for x in rs)
    counts = res.loop.counts()
    carbon_kg = sum(x.carbon_g for x in rs) / 1000.0
    work_gpu_h = sum(r.job.gpus * r.work_done_s for r in submitted) / 3600.0
    return {
        "policy": res.policy,
        "forecast": res.forecast,
        "slots": len(rs),
        "days": len(rs) * dt / 86400,
        "grid_carbon_kg": carbon_kg,
        # useful work done (full-speed GPU-hours, training and inference): policies that defer work are
        # compared per unit of work, not only in total
        "work_done_gpu_h": work_gpu_h,
        "grid_carbon_g_per_gpu_h": 1000.0 * carbon_kg / work_gpu_h if work_gpu_h > 0 else None,
        "energy_wind_mwh": sum(x.energy_wind_j for x in rs) / 3.6e9,
        "energy_grid_mwh": sum(x.energy_grid_j for x in rs) / 3.6e9,
        "energy_total_mwh": sum(x.facility_w * dt for x in rs) / 3.6e9,
        "cap_violations": sum(len(x.violations) for x in rs),
        "jobs_total": len(recs),
        "jobs_submitted": len(submitted),
        "jobs_done": len(done),
        "jobs_by_state": counts,
        "training_done": len(training_done),
        "training_total": sum(1 for r in submitted if not r.job.must_run),
        "mean_completion_h": float(comp.mean() / 3600) if comp.size else None,
        "p95_completion_h": (_pct(comp, 95) or 0.0) / 3600 if comp.size else None,
        "deadline_misses": misses.late_jobs,
        "deadline_misses_unreachable": misses.late_unreachable_jobs,
        "gpu_utilisation": busy / healthy if healthy else 0.0,
        "inference_served_pct": 100.0 * inf_served / inf_demand if inf_demand else None,
        "preemptions": sum(r.preemptions for r in recs),
        "failures": sum(r.failures for r in recs),
        "work_lost_h": sum(r.lost_work_s for r in recs) / 3600,
        "unfinished_gpu_h": sum(
            r.job.gpus * max(r.job.duration_s - r.work_done_s, 0.0)
            for r in submitted
            if r.state in ("queued", "running")
        )
        / 3600,
        "fast_path_lowered": sum(len(x.lowered) for x in rs),
        "fast_path_dropped": sum(len(x.dropped) for x in rs),
        "policy_s": sum(x.decide_s for x in rs),
        "wall_s": res.wall_s,
        **(_clairvoyant(res, carbon_kg) if clairvoyant else {}),
    }


def _clairvoyant(res: SimulationResult, carbon_kg: float) -> dict[str, Any]:
    """``carbon_over_bound`` and the clairvoyant reference of the run (scheduler.clairvoyant: a lower bound
    on the carbon of the same work with everything known), computed once per result."""
    from scheduler.clairvoyant import bound_of_run

    got = res.__dict__.get("_clairvoyant")
    if got is None:
        got = bound_of_run(res, max_lp_vars=200_000, time_limit_s=60.0)
        res.__dict__["_clairvoyant"] = got
    return {"carbon_over_bound": got.ratio(carbon_kg * 1000.0),
            "work_carbon_over_bound": got.work_ratio(carbon_kg * 1000.0), "clairvoyant": got.as_dict()}


def build_report(
    res: SimulationResult,
    *,
    workload_description: str = "",
    assignment_rule: str | None = None,
    extra: Mapping[str, Any] | None = None,
    clairvoyant: bool = True,
) -> dict[str, Any]:
    """The full report dict (JSON-serialisable). ``clairvoyant=False``: its summary without the clairvoyant
    bound (:func:`summary`), for a caller that reads none of it."""
    rs = res.reports
    pools = [p.name for p in res.site.pools]
    summ = summary(res, clairvoyant=clairvoyant)
    jobs = job_results(res)
    plan = plan_dict(
        status="feasible" if summ["cap_violations"] == 0 else "infeasible",
        start_utc=res.energy.start_utc,
        slot_s=res.site.slot_s,
        pue=res.site.pue,
        solve_s=summ["policy_s"],
        pools=list(res.site.pools),
        facility_w=[x.facility_w for x in rs],
        wind_w=[x.wind_w for x in rs],
        grid_import_w=[x.grid_import_w for x in rs],
        grid_cap_w=[x.grid_cap_w for x in rs],
        site_max_w=[x.site_max_w for x in rs],
        carbon_g_per_kwh=[x.carbon_g_per_kwh for x in rs],
        carbon_g=[x.carbon_g for x in rs],
        busy_gpus={p: [x.busy_gpus[p] for x in rs] for p in pools},
        healthy_gpus={p: [x.healthy_gpus[p] for x in rs] for p in pools},
        extra_timeline={"facility_peak_w": [x.facility_peak_w for x in rs]},
        jobs=jobs,
        unfinished_gpu_s=summ["unfinished_gpu_h"] * 3600,
        extra={
            "kind": "simulation",
            "site": res.site.name,
            "policy": res.policy,
            "summary": summ,
            "data": {
                "energy_source": res.energy.source,
                "energy_gaps": list(res.energy.gaps),
                "workload": workload_description,
                "trace_assignment_rule": assignment_rule,
                "forecast": res.forecast,
                "horizon_slots": res.horizon_slots,
            },
            "violations": [v for x in rs for v in x.violations],
            **(dict(extra) if extra else {}),
        },
    )
    return plan


def write_plot(report: Mapping[str, Any], path: str | Path, title: str | None = None) -> Path:
    """PNG: facility power against the grid cap + wind, the wind and the site maximum; carbon intensity on a
    second axis. matplotlib with the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tl = report["timeline"]
    n = int(report["n_slots"])
    hours = np.arange(n) * float(report["slot_s"]) / 3600.0
    mw = 1e-6
    fac = np.asarray(tl["facility_w"]) * mw
    wind = np.asarray(tl["wind_w"]) * mw
    cap = np.asarray(tl["grid_cap_w"]) * mw
    smax = np.asarray(tl["site_max_w"]) * mw
    fig, ax = plt.subplots(figsize=(12, 5), dpi=110)
    ax.fill_between(hours, 0, wind, step="post", color="#9ecae1", alpha=0.6, label="wind available")
    ax.step(hours, cap + wind, where="post", color="#d62728", lw=1.2, label="grid cap + wind")
    ax.step(hours, smax, where="post", color="black", lw=1.0, ls="--", label="site max")
    ax.step(hours, fac, where="post", color="#2ca02c", lw=1.5, label="facility power")
    ax.set_ylim(0, max(float(np.max(smax)), float(np.max(fac))) * 1.15)
    ax.set_xlabel(f"hours since {report['start_utc']}")
    ax.set_ylabel("MW")
    ax2 = ax.twinx()
    ax2.step(hours, tl["carbon_g_per_kwh"], where="post", color="#7f7f7f", lw=0.8, alpha=0.8, label="carbon")
    ax2.set_ylabel("grid carbon intensity (gCO2/kWh)")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, loc="upper left", fontsize=8, ncol=5)
    s = report.get("summary", {})
    ax.set_title(
        title
        or f"{report.get('site', '')} — {report.get('policy', '')}: grid carbon {s.get('grid_carbon_kg', 0):.1f} kg, "
        f"{s.get('cap_violations', 0)} cap violations\nenergy: {report.get('data', {}).get('energy_source', 'unknown')}",
        fontsize=10,
    )
    fig.tight_layout()
    p = Path(path)
    fig.savefig(p)
    plt.close(fig)
    return p


def summary_rows(summaries: Sequence[Mapping[str, Any]]) -> list[tuple[str, list[str]]]:
    """Rows for a table with one column per policy: (label, values)."""

    def f(v: Any, fmt: str) -> str:
        return "—" if v is None else format(v, fmt)

    rows: list[tuple[str, Any, str]] = [
        ("grid carbon (kg CO2)", "grid_carbon_kg", ",.1f"),
        ("work done (GPU-h)", "work_done_gpu_h", ",.1f"),
        ("grid carbon per GPU-h of work (g)", "grid_carbon_g_per_gpu_h", ",.1f"),
        ("carbon / clairvoyant bound (same work)", "carbon_over_bound", ".3f"),
        ("  the same, idle site's carbon left out", "work_carbon_over_bound", ".3f"),
        ("energy from wind (MWh)", "energy_wind_mwh", ",.3f"),
        ("energy from grid (MWh)", "energy_grid_mwh", ",.3f"),
        ("cap violations", "cap_violations", "d"),
        ("jobs done / submitted", None, ""),
        ("mean completion (h)", "mean_completion_h", ".2f"),
        ("p95 completion (h)", "p95_completion_h", ".2f"),
        ("deadline misses (unreachable)", None, ""),
        ("GPU utilisation", "gpu_utilisation", ".1%"),
        ("inference served (%)", "inference_served_pct", ".2f"),
        ("preemptions / work lost (h)", None, ""),
        ("unfinished work (GPU-h)", "unfinished_gpu_h", ",.1f"),
        ("policy time (s)", "policy_s", ".2f"),
    ]
    out = []
    for label, key, fmt in rows:
        if label.startswith("jobs done"):
            vals = [f"{s['jobs_done']:,} / {s['jobs_submitted']:,}" for s in summaries]
        elif label.startswith("deadline misses"):
            vals = [f"{s['deadline_misses']:,} ({s.get('deadline_misses_unreachable', 0):,})" for s in summaries]
        elif label.startswith("preemptions"):
            vals = [f"{s['preemptions']:,} / {s['work_lost_h']:.1f}" for s in summaries]
        else:
            vals = [f(s.get(key), fmt) for s in summaries]
        out.append((label, vals))
    return out
