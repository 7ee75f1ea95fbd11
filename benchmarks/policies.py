"""Policy comparison on real data: ``windward`` vs ``backfill`` vs ``greedy-green``, over several windows.

The same slice of the real NL energy data (../shared/data, read in place) and the same real ITP trace
(jobs submitted during ``--days``; tenants, deadlines and preemptibility by
``scheduler.traces.ASSIGNMENT_RULE``) plus the Azure LLM inference service, replayed by the simulated
executor and the shared control loop (``scheduler.control.run_simulation``) once per policy, with a perfect
forecast by default (``--forecast noisy|persistence``: the same seeded forecast for every policy).
Submissions stop after ``--days``; the replay goes on for ``--drain-days`` more so that deferred work has a
chance to run and every policy is charged for the work it does. Energy is loaded beyond the replay so the
planner never looks past the data.

By default (``--windows all``) it runs the four 2023 windows of :data:`WINDOWS` (January, March, June,
October, each with its own slice of the trace), windward at 24 h and 48 h horizons, 30-minute slots, and
prints one table: grid carbon (kg) with windward's cut against each baseline, work done (GPU-hours),
deadline misses (a job with a deadline that is not finished by it; deadlines after the replay's end do not
count), preemptions and the work they lost, cap violations (ticks whose actual facility power broke the
grid cap or the site maximum), inference served and the policy's mean compute time per tick; then how many
window x horizon cases windward wins cleanly (:func:`verdicts`). ``--windows one`` runs the single case
given by ``--start``, ``--trace-start-day``, ``--horizon-hours``.

Run: ``python -m benchmarks.policies [--windows all|one] [--horizons 24,48] [--slot-minutes 30]
[--forecast perfect] [--days 3] [--drain-days 2] [--cluster cluster04] [--out DIR]`` (``--out`` writes
policies.json and policies.md). tests/integration/test_policy_comparison.py runs two of the windows at 24 h.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

#: A 1,024-GPU site shaped like rotterdam-100k (same per-GPU power figures, see that file's sources),
#: sized for one ITP cluster (cluster04 offers ~300-500 busy GPUs on average). The grid contract lies
#: below full load (1.35 MW facility): by day the site needs wind to run flat out.
ITP_1024_SITE: dict[str, Any] = {
    "name": "itp-1024",
    "slot_minutes": 15,
    "pue": 1.15,
    "site_max_mw": 1.5,
    "grid": {"firm_mw": 0.95, "time_blocks": [{"hours": "22-06", "extra_mw": 0.25}]},
    "wind": {"contract_mw": 2.0},
    "pools": [
        {"name": "h100-eu-public", "gpus": 768, "gpus_per_node": 8, "tdp_w": 700, "idle_w": 75,
         "host_w_per_gpu": 450, "min_power_fraction": 0.4,
         "speed_curve": [[0.4, 0.62], [0.6, 0.82], [0.8, 0.95], [1.0, 1.0]],
         "labels": {"gpu": "h100", "jurisdiction": "eu", "clearance": "public"}},
        {"name": "h100-nl-secret", "gpus": 256, "gpus_per_node": 8, "tdp_w": 700, "idle_w": 75,
         "host_w_per_gpu": 450, "min_power_fraction": 0.4,
         "speed_curve": [[0.4, 0.62], [0.6, 0.82], [0.8, 0.95], [1.0, 1.0]],
         "labels": {"gpu": "h100", "jurisdiction": "nl", "clearance": "secret"}},
    ],
}

#: the policies compared by default: a subset of the registry (``available_policies()``) on purpose
POLICY_NAMES = ("backfill", "greedy-green", "windward")


@dataclass(frozen=True, slots=True)
class PolicyRow:
    policy: str
    grid_carbon_kg: float
    grid_mwh: float
    wind_mwh: float
    work_gpu_h: float
    carbon_g_per_gpu_h: float
    jobs_done: int
    jobs_total: int
    deadline_jobs: int
    deadline_misses: int
    cap_violations: int
    preemptions: int
    lost_work_gpu_h: float
    inference_served_pct: float
    decide_ms_mean: float
    wall_s: float
    # the run's carbon over the clairvoyant lower bound of the same work (scheduler.clairvoyant), and the
    # same ratio on the carbon the work adds over the idle site
    carbon_over_bound: float | None = None
    work_carbon_over_bound: float | None = None
    bound_kg: float | None = None


def itp_site(slot_minutes: int = 15) -> Any:
    from scheduler.models import Site, parse_model

    return parse_model(Site, {**ITP_1024_SITE, "slot_minutes": slot_minutes}, "benchmarks.policies.ITP_1024_SITE")


def load_case(days: float, drain_days: float, start: datetime, cluster: str, horizon_h: float,
              seed: int = 0, trace_start_day: float = 0.0,
              inference_share: float = 0.05, slot_minutes: int = 15) -> tuple[Any, list[Any], Any, str]:
    """(site, jobs, actual energy, description) for one comparison."""
    from scheduler import signals, traces
    from scheduler.paths import azure_llm_csv, itp_trace_csv, nl_energy_csv

    site = itp_site(slot_minutes)
    jobs = traces.itp_jobs(itp_trace_csv(cluster), site, start_s=trace_start_day * 86400.0, days=days, seed=seed,
                           clip=True)
    n_train = len(jobs)
    if inference_share > 0:
        jobs = jobs + traces.azure_inference_jobs(azure_llm_csv(), site, site.slot_s, days + drain_days, seed=seed,
                                                  share_of_site=inference_share, start_utc=start)
    energy_days = days + drain_days + horizon_h / 24.0 + 1.0 / 24.0
    actual = signals.load_energy(str(nl_energy_csv()), site, start, energy_days, seed=seed)
    desc = (f"ITP {cluster} day {trace_start_day:g}+{days:g} ({n_train} jobs) + Azure LLM inference "
            f"({len(jobs) - n_train} slot jobs, {100 * inference_share:g}% of the site) on {site.name} "
            f"({site.slot_minutes}-min slots, horizon {horizon_h:g} h); "
            f"energy {actual.source} from {start.isoformat()}")
    return site, jobs, actual, desc


def summarise(name: str, sim: Any, jobs: list[Any], bound: bool = True) -> PolicyRow:
    """Numbers for one replay, from the loop's reports and job records alone (and its clairvoyant bound).

    ``bound=False`` skips the clairvoyant bound (an LP solve, about 40 % of a replay's CPU on the 3-day cases):
    ``carbon_over_bound``, ``work_carbon_over_bound`` and ``bound_kg`` are then None."""
    from scheduler.clairvoyant import bound_of_run

    reps = sim.reports
    b = bound_of_run(sim, time_limit_s=120.0) if bound else None
    end_s = sim.n_slots * sim.site.slot_s
    carbon_g = sum(r.carbon_g for r in reps)
    grid_j = sum(r.energy_grid_j for r in reps)
    wind_j = sum(r.energy_wind_j for r in reps)
    records = sim.loop.records
    jobs = [j for j in jobs if not j.must_run]  # training / batch work; inference is reported as served %
    work_s = 0.0
    lost_gpu_s = 0.0
    preemptions = 0
    done = 0
    dl_jobs = 0
    misses = 0
    for j in jobs:
        rec = records[j.job_id]
        work_s += j.gpus * (j.duration_s if rec.state == "finished" else rec.work_done_s)
        done += rec.state == "finished"
        preemptions += rec.preemptions
        lost_gpu_s += j.gpus * rec.lost_work_s
        if j.deadline_s is not None and j.deadline_s <= end_s and not j.must_run:
            dl_jobs += 1
            if rec.state != "finished" or rec.end_s is None or rec.end_s > j.deadline_s + 1e-6:
                misses += 1
    demand = sum(r.inference_demand_gpus for r in reps)
    served = sum(r.inference_served_gpus for r in reps)
    work_gpu_h = work_s / 3600.0
    return PolicyRow(
        policy=name,
        grid_carbon_kg=carbon_g / 1000.0,
        grid_mwh=grid_j / 3.6e9,
        wind_mwh=wind_j / 3.6e9,
        work_gpu_h=work_gpu_h,
        carbon_g_per_gpu_h=carbon_g / max(work_gpu_h, 1e-9),
        jobs_done=int(done),
        jobs_total=len(jobs),
        deadline_jobs=dl_jobs,
        deadline_misses=misses,
        cap_violations=sum(1 for r in reps if r.violations),
        preemptions=preemptions,
        lost_work_gpu_h=lost_gpu_s / 3600.0,
        inference_served_pct=100.0 * served / demand if demand else 100.0,
        decide_ms_mean=1000.0 * sum(r.decide_s for r in reps) / max(len(reps), 1),
        wall_s=float(sim.wall_s),
        carbon_over_bound=b.ratio(carbon_g) if b is not None else None,
        work_carbon_over_bound=b.work_ratio(carbon_g) if b is not None else None,
        bound_kg=b.bound_carbon_g / 1000.0 if b is not None and math.isfinite(b.bound_carbon_g) else None,
    )


#: Four windows of 2023 in different seasons (Monday starts), each with its own day of the ITP trace so that
#: the workload differs too: (name, energy start, first trace day).
WINDOWS: tuple[tuple[str, str, float], ...] = (
    ("jan", "2023-01-09T00:00:00Z", 7.0),
    ("mar", "2023-03-06T00:00:00Z", 0.0),
    ("jun", "2023-06-05T00:00:00Z", 14.0),
    ("oct", "2023-10-02T00:00:00Z", 21.0),
)


@dataclass(frozen=True, slots=True)
class CaseRow:
    """One policy in one window at one windward horizon (baselines repeat across horizons)."""

    window: str
    start: str
    horizon_h: float
    slot_minutes: int
    row: PolicyRow


def compare(days: float = 3.0, drain_days: float = 2.0, start: str = "2023-03-06T00:00:00Z",
            cluster: str = "cluster04", horizon_h: float = 48.0, policies: tuple[str, ...] = POLICY_NAMES,
            seed: int = 0, trace_start_day: float = 0.0,
            inference_share: float = 0.05, slot_minutes: int = 15,
            windward_horizons_h: tuple[float, ...] | None = None,
            windward_kw: dict[str, Any] | None = None, forecast: str = "perfect",
            bound: bool = True) -> tuple[list[PolicyRow], str]:
    """Replay the same case once per policy; returns the rows and the case description.

    ``horizon_h`` is windward's horizon; with ``windward_horizons_h`` windward runs once per horizon (rows
    named ``windward-<H>h``) while the baselines, which keep their own horizons, run once. Every policy gets
    a forecast as long as the longest horizon asked for, of kind ``forecast`` (``perfect``, ``persistence``
    or ``noisy``, scheduler.signals; the same seeded forecast for every policy). ``bound=False``: no
    clairvoyant bound per row (:func:`summarise`), for a caller that reads none of its three fields.
    """
    from scheduler.control import run_simulation, slots_for_days
    from scheduler.policies import get_policy
    from scheduler.signals import make_forecaster

    horizons = tuple(windward_horizons_h) if windward_horizons_h else (horizon_h,)
    longest_h = max(max(horizons), 48.0)  # backfill looks 48 h ahead
    t0 = datetime.fromisoformat(start.replace("Z", "+00:00")).astimezone(UTC)
    site, jobs, actual, desc = load_case(days, drain_days, t0, cluster, longest_h, seed, trace_start_day,
                                         inference_share, slot_minutes)
    n = slots_for_days(site, days + drain_days)
    rows = []
    for name in policies:
        runs: list[tuple[str, dict[str, Any], float]] = [(name, {}, longest_h)]
        if name == "windward":
            runs = [(name if windward_horizons_h is None else f"windward-{h:g}h",
                     {"horizon_hours": h, **(windward_kw or {})}, h) for h in horizons]
        for label, kw, h in runs:
            policy = get_policy(name, **kw)
            sim = run_simulation(site, jobs, actual, policy, n_slots=n,
                                 forecaster=make_forecaster(forecast, actual, seed,
                                                            wind_capacity_w=site.wind.contract_mw * 1e6),
                                 horizon_slots=int(math.ceil(h * 3600 / site.slot_s)))
            rows.append(summarise(label, sim, jobs, bound=bound))
    return rows, desc


def compare_windows(windows: tuple[tuple[str, str, float], ...] = WINDOWS, horizons_h: tuple[float, ...] = (24.0, 48.0),
                    slot_minutes: int = 30, days: float = 3.0, drain_days: float = 2.0, cluster: str = "cluster04",
                    seed: int = 0, inference_share: float = 0.05, forecast: str = "perfect",
                    progress: Any = None) -> tuple[list[CaseRow], list[str]]:
    """:func:`compare` over several windows and windward horizons; returns the rows and case descriptions."""
    out: list[CaseRow] = []
    descs: list[str] = []
    for name, start, trace_day in windows:
        rows, desc = compare(days, drain_days, start, cluster, seed=seed, trace_start_day=trace_day,
                             inference_share=inference_share, slot_minutes=slot_minutes,
                             windward_horizons_h=horizons_h, forecast=forecast)
        descs.append(f"{name}: {desc}")
        for r in rows:
            h = float(r.policy.split("-")[1][:-1]) if r.policy.startswith("windward-") else 0.0
            out.append(CaseRow(name, start, h, slot_minutes, r))
        if progress is not None:
            progress(name, rows)
    return out, descs


def decompose(days: float = 2.0, drain_days: float = 3.0, start: str = "2023-04-12T00:00:00Z",
              cluster: str = "cluster04", trace_start_day: float = 7.0, horizon_h: float = 48.0, seed: int = 0,
              slot_minutes: int = 60, policy: str = "windward") -> list[dict[str, Any]]:
    """The gap between ``policy`` and the clairvoyant bound, step by step (issue 13), on one case:

    - ``offline plan``: perfect forecast and known arrivals -- the optimiser (``kernels.plan``) handed the
      whole run at once (every job with its release slot, the actual energy), its planned carbon;
    - ``online, perfect forecast``: arrivals revealed as they come, energy known;
    - ``online, noisy forecast``: what a site would see.

    Each row's ``carbon_over_bound`` is against the clairvoyant LP bound of that row's own work (deadlines
    relaxed for the offline plan), so rows that do different work stay comparable."""
    import kernels
    from scheduler import clairvoyant
    from scheduler.control import run_simulation, slots_for_days
    from scheduler.policies import get_policy
    from scheduler.signals import make_forecaster

    t0 = datetime.fromisoformat(start.replace("Z", "+00:00")).astimezone(UTC)
    site, jobs, actual, desc = load_case(days, drain_days, t0, cluster, horizon_h, seed, trace_start_day, 0.05,
                                         slot_minutes)
    n = slots_for_days(site, days + drain_days)
    end_s = n * site.slot_s
    out: list[dict[str, Any]] = []
    # offline: everything known, planned in one solve
    items = [clairvoyant.WorkItem(j, j.duration_s, j.deadline_s is not None and j.deadline_s <= end_s
                                  and not j.must_run) for j in jobs if j.submit_s < end_s]
    pb, _ = clairvoyant.build_problem(site, items, actual, n, merge=False)
    top = float(np.max(pb.carbon_g_per_kwh)) * float(np.max(pb.tdp_w)) * pb.pue / 3.6e6  # g per GPU-s, roughly
    pb = replace(pb, weight=np.full(pb.n_jobs, 10.0 * top + 1e-3))
    t = time.perf_counter()
    res = kernels.plan(pb)
    plan_s = time.perf_counter() - t
    work = np.minimum(np.asarray(res.work_done_s, dtype=np.float64), np.asarray(pb.remaining_s))
    done_items = [clairvoyant.WorkItem(it.job, float(w), False) for it, w in zip(items, work) if w > 0]
    b = clairvoyant.bound(site, done_items, actual, n)
    out.append({"step": "offline plan (perfect forecast, known arrivals)", "carbon_kg": res.carbon_g_total / 1000,
                "bound_kg": b.bound_carbon_g / 1000, "carbon_over_bound": b.ratio(res.carbon_g_total),
                "work_carbon_over_bound": b.work_ratio(res.carbon_g_total),
                "work_gpu_h": float(np.asarray(pb.gpus) @ work) / 3600, "jobs_done": int(np.sum(np.asarray(res.finished) & ~np.asarray(pb.must_run))),
                "plan_status": res.status, "solve_s": plan_s})
    for fc_name in ("perfect", "noisy"):
        fc = make_forecaster(fc_name, actual, seed, wind_capacity_w=site.wind.contract_mw * 1e6)
        kw = {"horizon_hours": horizon_h} if policy in ("windward", "greedy-green", "backfill", "threshold") else {}
        sim = run_simulation(site, jobs, actual, get_policy(policy, **kw), n_slots=n, forecaster=fc,
                             horizon_slots=int(math.ceil(horizon_h * 3600 / site.slot_s)))
        row = summarise(policy, sim, jobs)
        out.append({"step": f"{policy} online, {fc_name} forecast", "carbon_kg": row.grid_carbon_kg,
                    "bound_kg": row.bound_kg, "carbon_over_bound": row.carbon_over_bound,
                    "work_carbon_over_bound": row.work_carbon_over_bound, "work_gpu_h": row.work_gpu_h,
                    "jobs_done": row.jobs_done, "deadline_misses": row.deadline_misses})
    for r in out:
        r["case"] = desc
    return out


def gap_by_day(days: float = 2.0, drain_days: float = 3.0, start: str = "2023-10-11T00:00:00Z",
               cluster: str = "cluster04", trace_start_day: float = 0.0, horizon_h: float = 48.0, seed: int = 0,
               slot_minutes: int = 60, forecast: str = "noisy",
               policies: tuple[str, ...] = ("backfill", "threshold", "windward")) -> list[dict[str, Any]]:
    """Where each policy's grid carbon goes against its clairvoyant bound, day by day (issue 13).

    Per policy and day of the run: its grid carbon, the bound's carbon in the same slots (the LP optimum of
    the policy's own work, ``ClairvoyantBound.carbon_g_by_slot``), the excess, the mean busy GPUs, the GPUs
    busy in slots where the bound imports, and preemptions (the run's work lost to them in GPU-hours is on
    every row of the policy). A policy's excess
    on a day is what it left on the table there against perfect knowledge of the same work."""
    from scheduler import clairvoyant
    from scheduler.control import run_simulation, slots_for_days
    from scheduler.policies import get_policy
    from scheduler.signals import make_forecaster

    t0 = datetime.fromisoformat(start.replace("Z", "+00:00")).astimezone(UTC)
    site, jobs, actual, desc = load_case(days, drain_days, t0, cluster, horizon_h, seed, trace_start_day, 0.05,
                                         slot_minutes)
    n = slots_for_days(site, days + drain_days)
    per_day = max(1, int(round(86400.0 / site.slot_s)))
    out: list[dict[str, Any]] = []
    for name in policies:
        fc = make_forecaster(forecast, actual, seed, wind_capacity_w=site.wind.contract_mw * 1e6)
        sim = run_simulation(site, jobs, actual, get_policy(name), n_slots=n, forecaster=fc,
                             horizon_slots=int(math.ceil(horizon_h * 3600 / site.slot_s)))
        b = clairvoyant.bound_of_run(sim, solver="highs-lp", time_limit_s=120.0)
        reps = sim.reports
        carbon = np.array([r.carbon_g for r in reps])
        bound_slot = np.asarray(b.carbon_g_by_slot if b.carbon_g_by_slot is not None else np.full(n, np.nan))
        busy = np.array([sum(r.busy_gpus.values()) for r in reps], dtype=np.float64)
        for d in range(int(math.ceil(n / per_day))):
            sl = slice(d * per_day, min((d + 1) * per_day, n))
            clean = bound_slot[sl] <= 1e-6
            out.append({"policy": name, "day": d + 1, "carbon_kg": float(carbon[sl].sum()) / 1000,
                        "bound_kg": float(bound_slot[sl].sum()) / 1000,
                        "excess_kg": float(carbon[sl].sum() - bound_slot[sl].sum()) / 1000,
                        "busy_gpus_mean": float(busy[sl].mean()),
                        "busy_gpus_where_bound_imports": float(busy[sl][~clean].mean()) if (~clean).any() else None,
                        "preemptions": sum(len(r.preemptions) for r in reps[sl]),
                        "run_lost_work_gpu_h": sum(rec.job.gpus * rec.lost_work_s
                                                   for rec in sim.loop.records.values()) / 3600.0,
                        "case": desc, "ratio": b.ratio(float(carbon.sum()))})
    return out


def verdicts(cases: list[CaseRow]) -> list[dict[str, Any]]:
    """Per window and windward horizon: carbon cut against each baseline and whether windward wins cleanly
    (less carbon than both, no more deadline misses, no cap violations, at least 97% of their work)."""
    out = []
    for w in dict.fromkeys(c.window for c in cases):
        rows = [c for c in cases if c.window == w]
        base = {c.row.policy: c.row for c in rows if not c.row.policy.startswith("windward")}
        for c in rows:
            if not c.row.policy.startswith("windward"):
                continue
            r = c.row
            cuts = {b: 1 - r.grid_carbon_kg / max(x.grid_carbon_kg, 1e-9) for b, x in base.items()}
            ok = (all(r.grid_carbon_kg < x.grid_carbon_kg for x in base.values())
                  and all(r.deadline_misses <= x.deadline_misses for x in base.values())
                  and r.cap_violations == 0
                  and all(r.work_gpu_h >= 0.97 * x.work_gpu_h for x in base.values()))
            out.append({"window": w, "horizon_h": c.horizon_h, "cut_vs": cuts, "clean_win": ok})
    return out


def _ratio(v: float | None) -> str:
    return "—" if v is None else f"{v:.3f}"


def markdown(rows: list[PolicyRow]) -> str:
    head = ("| policy | grid carbon kg | carbon / bound | g/GPU-h | work GPU-h | grid MWh | wind MWh | jobs done "
            "| deadline misses | preemptions | work lost GPU-h | cap violations | inference served | decide ms/tick |")
    out = [head, "|" + "---|" * 14]
    for r in rows:
        out.append(
            f"| {r.policy} | {r.grid_carbon_kg:,.1f} | {_ratio(r.carbon_over_bound)} | {r.carbon_g_per_gpu_h:,.1f} | "
            f"{r.work_gpu_h:,.0f} | "
            f"{r.grid_mwh:,.2f} | {r.wind_mwh:,.2f} | {r.jobs_done}/{r.jobs_total} | "
            f"{r.deadline_misses}/{r.deadline_jobs} | {r.preemptions} | {r.lost_work_gpu_h:,.1f} | "
            f"{r.cap_violations} | {r.inference_served_pct:.1f}% | {r.decide_ms_mean:.1f} |"
        )
    return "\n".join(out)


def markdown_windows(cases: list[CaseRow]) -> str:
    """One table over every window: carbon, work done, misses, preemptions, work lost, cap violations,
    inference served, mean tick time; windward rows carry their carbon cut against both baselines."""
    head = ("| window | policy | grid carbon kg | carbon / bound | vs backfill | vs greedy-green | work GPU-h "
            "| deadline misses | preemptions | work lost GPU-h | cap violations | inference served | decide ms/tick |")
    out = [head, "|" + "---|" * 13]
    for w in dict.fromkeys(c.window for c in cases):
        rows = [c.row for c in cases if c.window == w]
        base = {r.policy: r for r in rows}
        for r in rows:
            cut = ["", ""]
            if r.policy.startswith("windward"):
                for i, b in enumerate(("backfill", "greedy-green")):
                    if b in base:
                        cut[i] = f"{-100 * (1 - r.grid_carbon_kg / max(base[b].grid_carbon_kg, 1e-9)):+.1f}%"
            out.append(
                f"| {w} | {r.policy} | {r.grid_carbon_kg:,.0f} | {_ratio(r.carbon_over_bound)} | {cut[0]} | {cut[1]} | "
                f"{r.work_gpu_h:,.0f} | "
                f"{r.deadline_misses}/{r.deadline_jobs} | {r.preemptions} | {r.lost_work_gpu_h:,.1f} | "
                f"{r.cap_violations} | {r.inference_served_pct:.1f}% | {r.decide_ms_mean:.0f} |"
            )
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--windows", default="all",
                    help="'all' (the four 2023 windows of WINDOWS, both horizons), 'one' (the single case below), "
                         "'decompose' (the gap to the clairvoyant bound step by step for that case, decompose()) "
                         "or 'gap' (each policy's carbon against its bound day by day for that case, gap_by_day())")
    ap.add_argument("--horizons", default="24,48", help="windward horizons in hours for --windows all")
    ap.add_argument("--days", type=float, default=3.0)
    ap.add_argument("--drain-days", type=float, default=2.0)
    ap.add_argument("--start", default="2023-03-06T00:00:00Z")
    ap.add_argument("--trace-start-day", type=float, default=0.0)
    ap.add_argument("--cluster", default="cluster04")
    ap.add_argument("--horizon-hours", type=float, default=24.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--slot-minutes", type=int, default=30)
    ap.add_argument("--inference-share", type=float, default=0.05)
    ap.add_argument("--forecast", default="perfect", help="perfect | persistence | noisy (what every policy sees)")
    ap.add_argument("--out", type=Path, default=None)
    from scheduler.policies import available_policies

    others = [n for n in available_policies() if n not in POLICY_NAMES]  # the registry's names, not a second list
    ap.add_argument("--policies", default=",".join(POLICY_NAMES),
                    help=f"policies for --windows one (default {','.join(POLICY_NAMES)}; also {', '.join(others)})")
    a = ap.parse_args()
    t = time.perf_counter()
    if a.windows == "gap":
        rows = gap_by_day(a.days, a.drain_days, a.start, a.cluster, a.trace_start_day, a.horizon_hours, a.seed,
                          a.slot_minutes, a.forecast, tuple(p.strip() for p in a.policies.split(",") if p.strip()))
        print(rows[0]["case"])
        print("| policy | day | grid carbon kg | bound kg | excess kg | busy GPUs (mean) "
              "| busy GPUs where the bound imports | preemptions |")
        print("|---|---|---|---|---|---|---|---|")
        for r in rows:
            bi = r["busy_gpus_where_bound_imports"]
            print(f"| {r['policy']} (ratio {_ratio(r['ratio'])}, work lost {r['run_lost_work_gpu_h']:,.0f} GPU-h) | "
                  f"{r['day']} | {r['carbon_kg']:,.0f} | "
                  f"{r['bound_kg']:,.0f} | {r['excess_kg']:,.0f} | {r['busy_gpus_mean']:,.0f} | "
                  f"{'—' if bi is None else format(bi, ',.0f')} | {r['preemptions']} |")
        print(f"total wall {time.perf_counter() - t:.1f} s")
        return
    if a.windows == "decompose":
        steps = decompose(a.days, a.drain_days, a.start, a.cluster, a.trace_start_day, a.horizon_hours, a.seed,
                          a.slot_minutes)
        print(steps[0]["case"])
        print("| step | grid carbon kg | bound kg | carbon / bound | work carbon / bound | work GPU-h | jobs done |")
        print("|---|---|---|---|---|---|---|")
        for r in steps:
            print(f"| {r['step']} | {r['carbon_kg']:,.0f} | {r['bound_kg']:,.0f} | {_ratio(r['carbon_over_bound'])} | "
                  f"{_ratio(r['work_carbon_over_bound'])} | {r['work_gpu_h']:,.0f} | {r['jobs_done']} |")
        print(f"total wall {time.perf_counter() - t:.1f} s")
        return
    if a.windows == "all":
        horizons = tuple(float(x) for x in a.horizons.split(","))
        cases, descs = compare_windows(horizons_h=horizons, slot_minutes=a.slot_minutes, days=a.days,
                                       drain_days=a.drain_days, cluster=a.cluster, seed=a.seed,
                                       inference_share=a.inference_share, forecast=a.forecast,
                                       progress=lambda w, rows: print(f"window {w} done ({time.perf_counter() - t:.0f} s)",
                                                                      flush=True))
        md = markdown_windows(cases)
        print("\n".join(descs))
        print(md)
        ver = verdicts(cases)
        print(f"windward wins cleanly in {sum(v['clean_win'] for v in ver)}/{len(ver)} window x horizon cases")
        print(f"total wall {time.perf_counter() - t:.1f} s")
        if a.out:
            a.out.mkdir(parents=True, exist_ok=True)
            (a.out / "policies.json").write_text(json.dumps(
                {"cases": descs, "rows": [{**asdict(c.row), "window": c.window, "start": c.start,
                                           "windward_horizon_h": c.horizon_h, "slot_minutes": c.slot_minutes}
                                          for c in cases], "verdicts": ver}, indent=1))
            (a.out / "policies.md").write_text("\n".join(descs) + "\n\n" + md + "\n")
        return
    rows, desc = compare(a.days, a.drain_days, a.start, a.cluster, a.horizon_hours, seed=a.seed,
                         trace_start_day=a.trace_start_day, inference_share=a.inference_share,
                         slot_minutes=a.slot_minutes, forecast=a.forecast,
                         policies=tuple(p.strip() for p in a.policies.split(",") if p.strip()))
    md = markdown(rows)
    print(desc)
    print(md)
    base = {r.policy: r for r in rows}
    if "windward" in base:
        for other in ("backfill", "greedy-green"):
            if other in base:
                cut = 1 - base["windward"].grid_carbon_kg / max(base[other].grid_carbon_kg, 1e-9)
                print(f"windward vs {other}: {100 * cut:.1f}% less grid carbon")
    print(f"total wall {time.perf_counter() - t:.1f} s")
    if a.out:
        a.out.mkdir(parents=True, exist_ok=True)
        (a.out / "policies.json").write_text(json.dumps({"case": desc, "rows": [asdict(r) for r in rows]}, indent=1))
        (a.out / "policies.md").write_text(desc + "\n\n" + md + "\n")


if __name__ == "__main__":
    main()
