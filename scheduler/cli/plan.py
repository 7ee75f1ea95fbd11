"""``windward plan``: plan one horizon once and write the DESIGN section-7 plan JSON.

Reads the site (a built-in name or a YAML file), the energy (a CSV, or the embedded seeded model when
``--energy`` is omitted), the canonical jobs CSV (``submit_s`` relative to ``--start``), flattens them into
one :class:`~kernels.problem.PlanProblem` (``scheduler.planner``), solves it with ``kernels.plan`` on the
array backend ``--backend``/``--device`` chooses (numpy on cpu by default; torch on cpu or cuda runs the same
optimiser, ``kernels.backend``), re-verifies the plan with ``kernels.check_result``, and writes every field of DESIGN section 7 plus extras
(per-slot dual prices, iterations, the checker's verdict, data provenance). Bad input exits with code 2 and
a message naming the file, the field and the value.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from scheduler.cli.options import parse_utc, planner_backend, seed_option

if TYPE_CHECKING:
    from scheduler.lateness import Lateness

_FORECASTS = ("perfect", "persistence", "noisy")


#: the plan JSON's ``unfinished.note`` (kernels.check.explain_unfinished has the details)
UNFINISHED_NOTE = (
    "reasons (kernels.check.explain_unfinished), from the room each unfinished job could have used (free GPUs "
    "of its eligible pools, facility watts under min(site max, wind + grid cap), its tenant's quota, after its "
    "release; a non-preemptible job only in one unbroken block) against its remaining work: deadline = its "
    "release leaves too few slots even alone at full speed (kept at 0 since round 24: horizon and after_horizon say "
    "it); after_horizon = submitted at or after the horizon end; horizon = released inside, but its work runs "
    "past the horizon end even alone at full speed; capacity / cap / quota = what stopped it in the "
    "most slots (its pools' GPUs, the watts or an infeasible slot, its tenant's quota); optimiser = the room "
    "this plan left, every other job as planned, holds all its work: the plan could have finished it (a "
    "quality defect; each job is tested on its own, not all of them together); other = no longer given. A "
    "must-run (inference) job is served in every slot of its window that is not infeasible: horizon = its "
    "window runs past the horizon end, cap = it was shed in infeasible slots or in shed_slots, capacity = only "
    "in shed_slots whose pools' GPUs alone could not hold it (slot_shed_cause GPUs) or it was left out "
    "(left_out_jobs), quota = only where its tenant's GPU quota could not (slot_shed_cause quota) (all proven). "
    "undone_jobs / undone_gpu_h (and by reason): the work this plan leaves undone, what exit 3 counts "
    "(undone_rule); past_horizon_gpu_h: the work of horizon and after_horizon jobs past the horizon end. "
    "unfinished_proven / proven_*_by_reason: even alone on the site "
    "the room is too small, so no plan finishes it; not proven = the room went to other work in this plan and "
    "another plan might finish it. site_shortfall_gpu_h (kernels.check.site_shortfall): GPU-hours of work no "
    "plan can do, whichever jobs it falls on: deadline (past the horizon end, inference windows included), "
    "capacity (the healthy GPU-slots of a set of pools from some slot on, against the work only they can run), "
    "cap (the energy above the idle floor under the caps, against that work at its most frugal level), "
    "infeasible (inference in slots whose idle floor alone breaks a cap); every plan leaves at least deadline "
    "+ infeasible + max(capacity, cap) unfinished. least_undone_gpu_h: infeasible + max(capacity, cap), the "
    "GPU-hours of work inside the horizon every plan leaves undone (what exit 3's line states). infeasible_slots: slots whose idle floor alone breaks a cap "
    "(deficit in watts): nothing runs there. late_jobs (scheduler.lateness): jobs that finish after their "
    "stated deadline_s, or are unfinished with it inside the horizon (the planner's own deadlines, moved to "
    "the earliest finish where the stated one cannot be met, are not what is counted); late_unreachable_jobs: "
    "those of them whose earliest possible finish (release, full speed) is already past the deadline: no plan "
    "could meet it. A job with a deadline adds late, late_s (seconds after the deadline it finishes; null "
    "when on time or unfinished) and deadline_unreachable. shed_slots: slots whose idle floor fits under the cap "
    "but the must-run inference does not (kernels.check.inference_shed), its watts on top of the floor "
    "(slot_shed_cause cap) or its GPUs in its pools' healthy GPUs (GPUs: a node failure, a maintenance window, "
    "inference the pools cannot pack) or a tenant's GPU quota (quota; causes that hold together joined by +, e.g. "
    "cap+GPUs): the inference that fits is served there (scheduler.planner.serving_keys: higher tenant priority "
    "class first, then higher job priority, then a tenant owed a commitment, then the earlier submission; then "
    "fewer GPUs; for GPUs or quota alone, per pool and per tenant), the rest is shed in that slot only "
    "(slot_shed_w: its facility watts above the floor, slot_shed_gpus, slot_shed_jobs: the job ids shed); "
    "where the cap cannot hold it nothing else runs there, where only the GPUs or a quota cannot the rest of the "
    "site runs on. "
    "left_out_jobs (kernels.check.unplaceable): jobs no pool can hold in any slot (no eligible pool, none with a "
    "full-power level for inference, or wider than each eligible pool's healthy GPUs in every slot): they run "
    "nowhere, are unfinished for capacity (proven), and every other job is planned as usual"
)


#: the unfinished reasons of work outside the plan's horizon, which the plan JSON and ``windward plan`` give in place
#: of the kernels' ``deadline`` (kernels.check.explain_unfinished: "its release leaves too few slots even alone at
#: full speed", the horizon end being the only deadline the kernels see); ``deadline`` stays in the reason set at 0
HORIZON_REASONS = {
    "after_horizon": "submitted at or after the horizon end: none of its work can be in this plan",
    "horizon": "released inside the horizon, but its work (an inference window) runs past the horizon end even "
               "alone at full speed from its release",
}

#: THE exit rule on work outside the horizon (the plan JSON's ``unfinished.undone_rule``, ``windward plan --help``)
UNDONE_RULE = (
    "work a plan leaves undone is the work its horizon could hold: a job submitted at or after the horizon end "
    "(after_horizon) and the part of a job's work past the horizon end (horizon) are not undone (a plan of 48 h "
    "over a week of jobs does not fail the week's later jobs); the part of a horizon job's work that its slots "
    "from release to the horizon end hold at full speed and the plan does not do is undone, as is all the "
    "unfinished work of the other reasons"
)


def horizon_split(problem: Any, result: Any, unf: dict[str, Any]) -> dict[str, Any]:
    """``unf`` (:func:`kernels.check.explain_unfinished`) with its ``deadline`` jobs given a reason of
    :data:`HORIZON_REASONS` (the kernels' ``deadline`` counts stay as keys, at 0), and the work the plan leaves
    undone by :data:`UNDONE_RULE`: ``undone`` (per job, seconds of work, ``(J,)``), ``undone_jobs`` /
    ``undone_gpu_h`` and their split by reason, and ``past_horizon_gpu_h`` (the work outside the horizon). Rows
    are the problem's jobs, all queued (``windward plan``: no work lost to a preemption)."""
    import numpy as np

    why = list(unf["reason"])
    J = len(why)
    T, slot_s = int(problem.n_slots), float(problem.slot_s)
    rel = np.asarray(problem.release, dtype=np.int64)[:J]
    rem = np.asarray(problem.remaining_s, dtype=np.float64)[:J]
    gpus = np.asarray(problem.gpus, dtype=np.float64)[:J]
    done = np.asarray(result.work_done_s, dtype=np.float64)[:J] if np.size(result.work_done_s) >= J else np.zeros(J)
    left = np.where(np.array([bool(w) for w in why], dtype=bool), np.maximum(rem - done, 0.0), 0.0)
    held = np.minimum(rem, np.maximum(T - rel, 0) * slot_s)  # what its slots from release to the end hold
    undone = np.where(np.maximum(held - done, 0.0) > 1e-6 * np.maximum(rem, 1.0), np.maximum(held - done, 0.0), 0.0)
    out: dict[str, Any] = {k: dict(v) if isinstance(v, dict) else v for k, v in unf.items()}
    for k in HORIZON_REASONS:
        for part in ("jobs", "proven_jobs"):
            out[part][k] = 0
        for part in ("gpu_h", "proven_gpu_h"):
            out[part][k] = 0.0
    for j in [j for j, w in enumerate(why) if w == "deadline"]:
        r = "after_horizon" if rel[j] >= T else "horizon"
        why[j] = r
        h = float(gpus[j] * left[j] / 3600.0)
        for part, v in (("jobs", 1), ("gpu_h", h)):
            out[part][r] += v
            out[part]["deadline"] -= v
            if unf["proven"][j]:
                out["proven_" + part][r] += v
                out["proven_" + part]["deadline"] -= v
    for part in ("gpu_h", "proven_gpu_h"):  # (the moved GPU-hours leave float dust behind)
        out[part]["deadline"] = 0.0 if out[part]["deadline"] < 1e-9 else out[part]["deadline"]
    out["reason"] = why
    counted = np.array([w not in HORIZON_REASONS for w in why], dtype=bool)
    out["undone"] = np.where(counted, left, undone)
    out["undone_jobs_by_reason"] = {r: 0 for r in out["jobs"]}
    out["undone_gpu_h_by_reason"] = {r: 0.0 for r in out["jobs"]}
    for j in np.flatnonzero(out["undone"] > 0).tolist():
        out["undone_jobs_by_reason"][why[j]] += 1
        out["undone_gpu_h_by_reason"][why[j]] += float(gpus[j] * out["undone"][j] / 3600.0)
    out["undone_jobs"] = int(sum(out["undone_jobs_by_reason"].values()))
    out["undone_gpu_h"] = float(sum(out["undone_gpu_h_by_reason"].values()))
    out["past_horizon_gpu_h"] = float((gpus * np.where(counted, 0.0, left - undone)).sum() / 3600.0)
    return out


#: what is short, per part of ``site_shortfall_gpu_h`` (kernels.check.SHORTFALL_PARTS), as the exit-3 line says
#: it ({} the part's GPU-hours of work at full speed); ``deadline`` (work past the horizon end) is not undone
#: (UNDONE_RULE), so the line leaves it out
SHORTFALL_TEXT = {
    "deadline": "{} GPU-h of work lies past the horizon end (deadline)",
    "capacity": "its pools' GPUs hold {} GPU-h less than the work only they can run (capacity)",
    "cap": "the energy under the caps holds {} GPU-h less than that work needs at its most frugal level (cap)",
    "infeasible": "{} GPU-h of inference falls in slots whose idle floor alone breaks a cap (infeasible)",
}


def least_undone_gpu_h(shortfall: dict[str, float]) -> float:
    """The plan JSON's ``unfinished.least_undone_gpu_h``: the GPU-hours of work (at full speed) inside the horizon
    that every plan leaves undone, :func:`kernels.check.least_undone_gpu_h` of ``site_shortfall_gpu_h`` without
    its ``deadline`` part (work past the horizon end is not undone: UNDONE_RULE). What exit 3's line states."""
    import kernels

    return float(kernels.check.least_undone_gpu_h({**shortfall, "deadline": 0.0}))


def shortfall_line(ub: dict[str, Any]) -> str:
    """Exit 3's line on the undone work no plan can do, from the plan JSON's ``unfinished`` block: the number is
    ``least_undone_gpu_h``, each part says what is short and by how many GPU-hours (``site_shortfall_gpu_h``)."""
    least, sf = ub["least_undone_gpu_h"], ub["site_shortfall_gpu_h"]
    if least <= 0.05:
        return "no site-level bound proves any of it undoable"
    parts = [SHORTFALL_TEXT[k].format(f"{sf[k]:,.1f}") for k in ("capacity", "cap", "infeasible") if sf[k] > 0.05]
    same = "; capacity and cap bound the same work: the larger counts" if min(sf["capacity"], sf["cap"]) > 0.05 else ""
    return (f"every plan leaves at least {least:,.1f} GPU-h of it undone (GPU-hours of work at full speed; the plan "
            f"JSON's unfinished.least_undone_gpu_h): " + "; ".join(parts) + same)


def plan_status(result: Any, violations: list[str]) -> str:
    """The plan JSON's ``status``: the optimiser's, except that a plan its checker rejects reads
    ``"invalid"`` (never "optimal" or "feasible" over a violation)."""
    return "invalid" if violations and result.status != "infeasible" else str(result.status)


def finite_or_none(value: Any) -> float | None:
    """A number for the plan JSON: None (null) where it is not finite (a refused plan's objective is inf and its
    bound -inf: JSON has no such numbers, and writing them raised, exit 1 with a traceback)."""
    v = float(value)
    return v if math.isfinite(v) else None


def _witness_value(key: str, value: Any) -> Any:
    """One ``diagnostics["witness"]`` entry as JSON: flags bool, the reason a string, counts int, the rest
    float (kernels.plan's docstring lists the keys)."""
    if key in ("ran", "used"):
        return bool(value)
    if key == "reason":
        return str(value)
    if key.endswith("_jobs") or key == "age_ticks":
        return int(value)
    return float(value)


#: slots that shed inference printed one per line by ``windward plan``; the rest are counted (all are in the JSON)
SHED_LINES = 10


def build_plan_json(problem: Any, index: Any, result: Any, site: Any, forecast: Any, jobs: Any, *,
                    solve_s: float, violations: list[str], provenance: dict[str, str],
                    carbon_bound: dict[str, Any] | None = None,
                    unfinished: dict[str, Any] | None = None, late: Lateness | None = None) -> dict[str, Any]:
    """The DESIGN section-7 plan dict (through ``scheduler.planjson.plan_dict``) plus extras: per-slot dual
    prices and energy price, the objective's parts, iterations, the checker's verdict and data provenance.

    ``objective.lower_bound_carbon_g`` / ``gap`` are the certified bound on grid carbon of any plan doing at
    least this plan's work (``kernels.carbon_bound``; computed here when ``carbon_bound`` is not given);
    ``objective.objective_g`` / ``lower_bound_objective_g`` / ``objective_gap`` the penalised objective's.
    ``status`` is :func:`plan_status`; ``unfinished`` (``kernels.check.explain_unfinished``, computed here
    when not given) gives the top-level ``unfinished`` block (jobs, GPU-hours and jobs / GPU-hours per
    reason, late jobs, infeasible slots and their deficit) and each unfinished job's ``unfinished_reason``;
    ``late`` (``scheduler.lateness.plan_lateness``, computed here when not given) each job with a deadline's
    ``late`` / ``late_s`` / ``deadline_unreachable`` and the block's ``late_jobs`` / ``late_unreachable_jobs``."""
    import numpy as np

    import kernels
    from scheduler.lateness import plan_lateness
    from scheduler.planjson import job_entry, plan_dict

    names = index.pool_names
    T = problem.n_slots
    run = np.asarray(result.run, dtype=bool)
    have = run.shape == (len(jobs), T)
    unf = horizon_split(problem, result, unfinished if unfinished is not None
                        else kernels.check.explain_unfinished(problem, result))
    why = unf["reason"]
    lt = late if late is not None else plan_lateness(problem, result, _deadlines(jobs))
    entries = []
    for j, job in enumerate(jobs):
        slots = np.flatnonzero(run[j]).tolist() if have else []
        p = int(result.pool[j]) if have else -1
        entries.append(
            job_entry(
                job.job_id,
                names[p] if p >= 0 and slots else None,
                job.gpus,
                slots,
                [float(result.power_fraction[j, t]) for t in slots],
                float(result.work_done_s[j]) if have else 0.0,
                job.duration_s,
                bool(result.finished[j]) if have else False,
                tenant=job.tenant,
                kind=job.kind,
                submit_s=float(job.submit_s),
                deadline_s=job.deadline_s,
                **({"unfinished_reason": why[j], "unfinished_proven": bool(unf["proven"][j])}
                   if j < len(why) and why[j] else {}),
                **_late_fields(lt, j),
            )
        )
    busy = np.asarray(result.busy_gpus)
    busy_ok = busy.shape == (len(names), T)
    zeros = np.zeros(T)
    fac = np.asarray(result.facility_w) if have else zeros
    cb = carbon_bound if carbon_bound is not None else kernels.carbon_bound(problem, result)
    diag = result.diagnostics
    unfinished_block = {
        "jobs": int(sum(unf["jobs"].values())),
        "gpu_h": float(sum(unf["gpu_h"].values())),
        "jobs_by_reason": dict(unf["jobs"]),
        "gpu_h_by_reason": dict(unf["gpu_h"]),
        "proven_jobs_by_reason": dict(unf["proven_jobs"]),
        "proven_gpu_h_by_reason": dict(unf["proven_gpu_h"]),
        "site_shortfall_gpu_h": dict(unf.get("site_shortfall_gpu_h", {})),
        "least_undone_gpu_h": least_undone_gpu_h(unf.get("site_shortfall_gpu_h", {})),
        "undone_jobs": unf["undone_jobs"],
        "undone_gpu_h": unf["undone_gpu_h"],
        "undone_jobs_by_reason": unf["undone_jobs_by_reason"],
        "undone_gpu_h_by_reason": unf["undone_gpu_h_by_reason"],
        "past_horizon_gpu_h": unf["past_horizon_gpu_h"],
        "undone_rule": UNDONE_RULE,
        "late_jobs": lt.late_jobs,
        "late_unreachable_jobs": lt.late_unreachable_jobs,
        "infeasible_slots": [int(t) for t in diag.get("infeasible_slots", [])],
        "slot_deficit_w": [float(w) for w in diag.get("slot_deficit_w", [])],
        "shed_slots": [int(t) for t in diag.get("shed_slots", [])],
        "slot_shed_w": [float(w) for w in diag.get("slot_shed_w", [])],
        "slot_shed_gpus": [float(g) for g in diag.get("slot_shed_gpus", [])],
        "slot_shed_jobs": [[str(jobs[j].job_id) for j in js] for js in diag.get("slot_shed_jobs", [])],
        "slot_shed_cause": [str(c) for c in diag.get("slot_shed_cause", [])],
        "left_out_jobs": [str(jobs[j].job_id) for j in diag.get("left_out_jobs", [])],
        "note": UNFINISHED_NOTE,
    }
    wit = diag.get("witness")
    return plan_dict(
        status=plan_status(result, violations),
        start_utc=forecast.start_utc,
        slot_s=problem.slot_s,
        pue=problem.pue,
        solve_s=solve_s,
        pools=list(site.pools),
        facility_w=fac,
        wind_w=problem.wind_w,
        grid_import_w=np.asarray(result.grid_import_w) if have else zeros,
        grid_cap_w=problem.grid_cap_w,
        site_max_w=problem.site_max_w,
        carbon_g_per_kwh=problem.carbon_g_per_kwh,
        carbon_g=np.asarray(result.carbon_g) if have else zeros,
        busy_gpus={n: busy[i] if busy_ok else zeros for i, n in enumerate(names)},
        healthy_gpus={n: np.asarray(problem.pool_gpus[i], dtype=np.float64) for i, n in enumerate(names)},
        jobs=entries,
        lower_bound_carbon_g=cb["lower_bound_carbon_g"],
        gap=cb["carbon_gap"],
        unfinished_gpu_s=float(result.unfinished_gpu_s),
        objective_extra={
            "objective_g": finite_or_none(result.objective),
            "lower_bound_objective_g": finite_or_none(result.lower_bound),
            "objective_gap": finite_or_none(result.gap),
        },
        extra_timeline={
            "dual_price_g_per_gpu_h": np.asarray(result.dual_price_g_per_gpu_h) if have else zeros,
            "price_eur_per_mwh": forecast.price_eur_per_mwh[:T],
        },
        extra={
            "reason": result.reason,
            "objective_parts": {
                "objective_g": finite_or_none(result.objective),
                "penalty_g": finite_or_none(float(result.objective) - float(result.carbon_g_total)),
                "lower_bound_g": finite_or_none(result.lower_bound),
                "note": "objective.lower_bound_carbon_g is a certified lower bound on the grid carbon of any "
                "feasible plan that does at least this plan's work per job (kernels.carbon_bound: the "
                "Lagrangian dual of the carbon-only problem with that work required); lower_bound_g = "
                "objective.lower_bound_objective_g is the certified lower bound on objective_g = carbon_g + "
                "penalty_g (priority-weighted unfinished and late work in g CO2-eq, kernels.planner)",
            },
            "iterations": int(result.iterations),
            "unfinished": unfinished_block,
            **({"witness": {k: _witness_value(k, v) for k, v in wit.items()}} if wit else {}),
            "check": {"ok": not violations, "violations": violations},
            "provenance": provenance,
        },
    )


def _deadlines(jobs: Any) -> Any:
    """The jobs' stated ``deadline_s`` (NaN where none), in their order."""
    import numpy as np

    return np.array([np.nan if j.deadline_s is None else float(j.deadline_s) for j in jobs], dtype=np.float64)


def _late_fields(lt: Lateness, j: int) -> dict[str, Any]:
    """A job entry's ``late``, ``late_s`` (null: on time or unfinished) and ``deadline_unreachable``, for a job
    with a deadline (:class:`scheduler.lateness.Lateness`); nothing for the others."""
    if not lt.has_deadline[j]:
        return {}
    s = float(lt.late_s[j])
    return {"late": bool(lt.late[j]), "late_s": None if math.isnan(s) else s, "deadline_unreachable": bool(lt.unreachable[j])}


def _slot_utc(start_utc: str, slot: int, slot_s: float) -> str:
    """The start of plan slot ``slot`` in ISO 8601 UTC (the summary names slots by their time too)."""
    from datetime import datetime, timedelta

    t = datetime.fromisoformat(start_utc.replace("Z", "+00:00")) + timedelta(seconds=slot * slot_s)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _jobs(n: int) -> str:
    return f"{n:,} job{'' if n == 1 else 's'}"


def _late_line(doc: dict[str, Any]) -> str | None:
    """The summary's line on late jobs (None: every stated deadline met): how many finish after their stated
    deadline (by how much) or are unfinished with it inside the horizon, and how many no plan could meet."""
    ub = doc["unfinished"]
    n, k = ub["late_jobs"], ub["late_unreachable_jobs"]
    if not n:
        return None
    after = [j["late_s"] for j in doc["jobs"] if j.get("late") and j.get("late_s") is not None]
    m, u = len(after), n - len(after)
    parts = ([f"{m:,} finish{'es' if m == 1 else ''} after it, by up to {max(after) / 3600:,.2f} h"] if m else []) + (
        [f"{u:,} {'is' if u == 1 else 'are'} unfinished at the horizon end"] if u else [])
    if k == n:
        why = (f"no plan could meet {'it' if n == 1 else 'any of them'}: the earliest possible finish at full "
               "speed is already past the deadline (run as soon as possible)")
    elif k:
        o = n - k
        why = (f"{k:,} of them no plan could meet (the earliest possible finish at full speed is already past "
               f"the deadline); the other {o:,} {'was' if o == 1 else 'were'} reachable (another plan might meet "
               f"{'it' if o == 1 else 'them'})")
    else:
        why = f"{'it was' if n == 1 else 'each was'} reachable (another plan might meet {'it' if n == 1 else 'them'})"
    return f"{_jobs(n)} late against the stated deadline ({'; '.join(parts)}): {why}"


def _outside_line(ub: dict[str, Any]) -> str | None:
    """The summary's line on jobs outside the horizon (None: none), which leave the exit code as it is
    (:data:`UNDONE_RULE`)."""
    jr = ub["jobs_by_reason"]
    a, h = jr.get("after_horizon", 0), jr.get("horizon", 0)
    if not a and not h:
        return None
    parts = ([f"{_jobs(a)} submitted at or after the horizon end (after_horizon: not in this plan)"] if a else []) + (
        [f"{_jobs(h)} whose work runs past the horizon end even at full speed from release (horizon)"] if h else [])
    return (f"outside the horizon, not work this plan leaves undone: {' and '.join(parts)}; "
            f"{ub['past_horizon_gpu_h']:,.1f} GPU-h past the horizon end")


def _reason_part(why: str, n: int, ub: dict[str, Any]) -> str:
    """One reason of the exit-3 message: jobs and GPU-hours undone, and how many of them no plan could finish."""
    k, h = ub["proven_jobs_by_reason"].get(why, 0), ub["proven_gpu_h_by_reason"].get(why, 0.0)
    if why == "horizon":
        return (f"{n:,} horizon ({ub['undone_gpu_h_by_reason'][why]:,.1f} GPU-h of the work their slots before the "
                "horizon end hold: the rest of their work lies past it)")
    if why == "optimiser":
        proof = ": the room this plan left holds their work (a quality defect of the plan)"
    elif k == n:
        proof = f": no plan can finish {'it' if n == 1 else 'them'}"
    elif k:
        proof = f"; {k:,} of them ({h:,.1f} GPU-h) no plan can finish, the rest lost the room to other work"
    else:
        proof = "; in this plan: the room went to other work, another plan might finish them"
    return f"{n:,} {why} ({ub['undone_gpu_h_by_reason'][why]:,.1f} GPU-h{proof})"


def register(app: typer.Typer) -> None:
    @app.command("plan")
    def plan(
        site: str = typer.Option("demo", "--site", help="Site: a built-in name (demo, rotterdam-100k) or a YAML file."),
        energy: str | None = typer.Option(
            None, "--energy", help="Energy CSV (DESIGN section 7). Omitted: the embedded seeded NL model."
        ),
        jobs: Path = typer.Option(..., "--jobs", help="Canonical jobs CSV; submit_s/deadline_s relative to --start."),
        start: str = typer.Option("2023-06-01T00:00:00Z", "--start", help="Plan start, ISO 8601 UTC."),
        horizon_hours: float = typer.Option(48.0, "--horizon-hours", help="Planning horizon in hours."),
        slot_minutes: int | None = typer.Option(
            None, "--slot-minutes", help="Slot length in minutes (overrides the site's slot_minutes)."
        ),
        forecast: str = typer.Option("perfect", "--forecast", help=f"Forecast kind: {', '.join(_FORECASTS)}."),
        seed: int = seed_option("Seed for the embedded energy model and noisy forecasts."),
        out: Path = typer.Option(Path("plan.json"), "--out", help="Where to write the plan JSON."),
        backend: str = typer.Option(
            "numpy", "--backend", help="Optimiser array backend: numpy or torch (same optimiser, kernels.backend)."
        ),
        device: str = typer.Option(
            "cpu", "--device", help="Device for --backend: cpu, cuda or cuda:N (cuda needs torch with CUDA)."
        ),
        strict: bool = typer.Option(False, "--strict", help="Refuse gaps in the energy CSV and empty cells in the "
                                    "jobs CSV instead of filling them (each fill is said on stderr)."),
    ) -> None:
        """Plan the horizon once (carbon- and power-cap optimiser) and write the plan JSON.

        Every slot of the output carries facility power, wind, grid import, both caps, carbon intensity,
        carbon and busy GPUs per pool; every job its pool, slots and power fractions, so the plan can be
        re-checked from the file alone. --backend torch --device cuda solves on a GPU (provenance.planner_backend
        in the file records which backend solved).

        Exit codes: 0 a complete valid plan (every job finishes, every slot meets its caps); 3 a valid plan that
        leaves work undone (printed: how many jobs and GPU-hours, and why: horizon, capacity, cap, quota,
        optimiser, and how much of it no plan could finish) or
        has slots whose idle floor alone breaks a cap (nothing runs there; their deficit is printed) or slots
        whose cap holds the idle floor but not the must-run inference on top of it (the inference that fits is
        served, the rest shed there: each such slot is printed with the GPUs, watts and job ids shed); 1 an
        internal error (the plan's own checker found a violation; status "invalid" in the file); 2 bad input,
        or input that admits no plan at all (the reason names the job or slot). The file is written for 0,
        1 and 3 and for a refused plan. Jobs late against their stated deadline (and how many of them no plan
        could meet) are said on stderr; late is not work undone and leaves the exit code as it is. Work outside
        the horizon is not undone either: jobs submitted at or after the horizon end (after_horizon) and the
        part of a job's work past the end (horizon) are said on stderr and leave the exit code as it is; the
        part of a horizon job's work its slots before the end hold at full speed, and the plan leaves undone,
        counts (the plan JSON's unfinished.undone_rule).
        """
        from scheduler.errors import WindwardError

        try:
            code = _run_plan(site, energy, jobs, start, horizon_hours, slot_minutes, forecast, seed, out,
                             backend, device, strict=strict)
        except WindwardError as e:
            typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
            raise typer.Exit(2) from None
        if code:
            raise typer.Exit(code)


def _run_plan(site_arg: str, energy: str | None, jobs_path: Path, start_s: str, horizon_hours: float,
              slot_minutes: int | None, forecast_kind: str, seed: int, out: Path, backend: str = "numpy",
              device: str = "cpu", *, strict: bool = False) -> int:
    import time

    from rich.console import Console
    from rich.table import Table

    import kernels
    from scheduler import signals, traces
    from scheduler.errors import InputError
    from scheduler.jobs import check_jobs_fit, fit_error
    from scheduler.lateness import plan_lateness
    from scheduler.models import Site, load_site, parse_model
    from scheduler.planner import build_problem
    from scheduler.policies.base import JobState, Snapshot

    console = Console()
    site = load_site(site_arg)
    if slot_minutes is not None:
        site = parse_model(Site, {**site.model_dump(), "slot_minutes": slot_minutes}, "--slot-minutes")
    if not (0 < horizon_hours <= 24 * 14):
        raise InputError(f"--horizon-hours: {horizon_hours} is outside (0, 336]")
    if forecast_kind not in _FORECASTS:
        raise InputError(f"--forecast: {forecast_kind!r} is not one of {list(_FORECASTS)}")
    t0 = parse_utc(start_s, "--start")
    planner_backend(backend, device, "--backend")  # checked: a clear error before any work
    if out.is_dir():  # (a clear error before the solve, not after it)
        raise InputError(f"--out {out}: is a directory; allowed: a file path for the plan JSON")
    T = max(1, int(math.ceil(horizon_hours * 3600.0 / site.slot_s - 1e-9)))
    days = T * site.slot_s / 86400.0
    actual = signals.load_energy(energy, site, t0, days, seed=seed, strict=strict)
    fc = signals.make_forecaster(forecast_kind, actual, seed=seed).forecast(0, T)
    job_list = traces.read_jobs_csv(jobs_path, strict=strict)
    check_jobs_fit(site, job_list, str(jobs_path))

    snapshot = Snapshot(
        now_s=0.0,
        slot=0,
        site=site,
        jobs=tuple(JobState(job=j, state="queued") for j in job_list),
        healthy_gpus={p.name: p.gpus for p in site.pools},
        forecast=fc,
    )
    problem, index = build_problem(snapshot, T)
    t1 = time.perf_counter()
    result = kernels.plan(problem, backend=backend, device=device)
    solve_s = time.perf_counter() - t1
    cbound = kernels.carbon_bound(problem, result, backend=backend, device=device)
    violations = list(kernels.check_result(problem, result)) if result.status != "infeasible" else []
    provenance = {
        "site": site_arg,
        "energy": actual.source,
        "energy_gaps_filled": "; ".join(actual.gaps),
        "forecast": forecast_kind,
        "jobs": str(jobs_path),
        "weights": "scheduler.planner.job_weights (see its docstring)",
        "planner_backend": f"{backend}/{device}",
    }
    unf = kernels.check.explain_unfinished(problem, result)
    doc = build_plan_json(problem, index, result, site, fc, job_list, solve_s=solve_s, violations=violations,
                          provenance=provenance, carbon_bound=cbound, unfinished=unf,
                          late=plan_lateness(problem, result, _deadlines(job_list)))
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(doc, indent=1, allow_nan=False))
    except OSError as e:
        raise InputError(f"--out {out}: cannot write: {e.strerror}") from e

    table = Table(title=f"windward plan: {site.name}, {T} slots of {site.slot_s // 60} min from {doc['start_utc']}")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    table.add_row("status", doc["status"])
    table.add_row("grid carbon", f"{result.carbon_g_total / 1000:,.1f} kg")
    lbc, cgap = cbound["lower_bound_carbon_g"], cbound["carbon_gap"]
    if lbc is not None and cgap is not None:
        table.add_row("carbon lower bound / gap", f"{lbc / 1000:,.1f} kg / {cgap * 100:.2f}%")
    table.add_row("objective / bound / gap", f"{result.objective / 1000:,.1f} kg / {result.lower_bound / 1000:,.1f} kg"
                  f" / {result.gap * 100:.2f}%")
    ub = doc["unfinished"]
    table.add_row("unfinished work", f"{result.unfinished_gpu_s / 3600:,.1f} GPU-h ({_jobs(ub['jobs'])})")
    n_late, n_unr = ub["late_jobs"], ub["late_unreachable_jobs"]
    table.add_row("late jobs (stated deadlines)", f"{n_late:,}" + (f" ({n_unr:,} unreachable)" if n_unr else ""))
    wit = result.diagnostics.get("witness")
    if wit and wit.get("ran", True):  # (its counts and the plan's own are against the planner's deadlines)
        table.add_row("EDF greedy witness", f"{wit['carbon_g'] / 1000:,.1f} kg, {wit['unfinished_jobs']:,} unfinished, "
                      f"{wit['late_jobs']:,} late by the planner's deadlines"
                      + (" (its plan is returned)" if wit["used"] else ""))
    elif wit:
        table.add_row("EDF greedy witness", f"not run ({wit.get('reason', '')})")
    table.add_row("jobs planned", f"{int(result.run.any(axis=1).sum()) if result.run.size else 0:,} / {len(job_list):,}")
    table.add_row("solve time", f"{solve_s:.3f} s ({result.iterations} iterations, "
                  f"{backend}/{device})")
    table.add_row("checker", "ok" if not violations else f"{len(violations)} violations")
    console.print(table)
    console.print(f"wrote {out}")
    if result.status == "infeasible":
        typer.secho(f"no feasible plan: {result.reason}", fg=typer.colors.RED, err=True)
        return 2
    if violations:
        typer.secho("internal error: the plan's checker found violations:\n  " + "\n  ".join(violations[:10]),
                    fg=typer.colors.RED, err=True)
        return 1
    undone = []
    if ub["undone_jobs"]:
        parts = ", ".join(_reason_part(why, n, ub) for why, n in ub["undone_jobs_by_reason"].items() if n)
        undone.append(f"{_jobs(ub['undone_jobs'])} unfinished at the horizon end, "
                      f"{ub['undone_gpu_h']:,.1f} GPU-h of work left undone; by reason: {parts}")
        undone.append(shortfall_line(ub))
    out_why = kernels.check.unplaceable_why(problem) if ub["left_out_jobs"] else []
    for j in result.diagnostics.get("left_out_jobs", [])[:SHED_LINES]:
        # the site's reason first (scheduler.jobs.fit_error: a job wider than every pool its selector matches
        # names that pool and its GPUs; the problem's eligibility has already dropped the pools too small)
        why = fit_error(site, job_list[j]) or out_why[j]
        undone.append(f"job {job_list[j].job_id}: no pool can hold it in any slot ({why}): left out of the "
                      f"plan, unfinished (capacity); every other job is planned")
    if len(ub["left_out_jobs"]) > SHED_LINES:
        undone.append(f"... and {len(ub['left_out_jobs']) - SHED_LINES:,} more jobs left out (the plan JSON's "
                      f"unfinished.left_out_jobs)")
    if ub["infeasible_slots"]:
        worst = max(ub["slot_deficit_w"])
        n_bad, first = len(ub["infeasible_slots"]), ub["infeasible_slots"][0]
        undone.append(f"{n_bad:,} slot{'s' if n_bad != 1 else ''} (first: slot {first}, "
                      f"{_slot_utc(doc['start_utc'], first, doc['slot_s'])}) cannot meet "
                      f"{'their' if n_bad != 1 else 'its'} cap even with every GPU idle (deficit up to "
                      f"{worst / 1e6:.3f} MW): nothing runs there")
    shed = list(zip(ub["shed_slots"], ub["slot_shed_w"], ub["slot_shed_gpus"], ub["slot_shed_jobs"],
                    ub["slot_shed_cause"], strict=True))
    for t, w, g, ids, why in shed[:SHED_LINES]:
        what = " and ".join(kernels.check.SHED_CAUSES[c] for c in why.split("+"))
        undone.append(f"slot {t} ({_slot_utc(doc['start_utc'], t, doc['slot_s'])}): {what} cannot hold the "
                      f"must-run inference ({why}): {g:,.0f} GPUs of it shed ({w / 1e6:.3f} MW; "
                      f"job{'s' if len(ids) != 1 else ''} {', '.join(ids)}); "
                      + ("only the inference that fits runs there" if "cap" in why.split("+")
                         else "the rest of the site runs on"))
    if len(shed) > SHED_LINES:
        undone.append(f"... and {len(shed) - SHED_LINES:,} more slots that shed inference (the plan JSON's "
                      f"unfinished.shed_slots)")
    outside = _outside_line(ub)  # outside the horizon is not undone: said, with exit 0 where nothing else is
    if outside:
        typer.secho(outside, fg=typer.colors.YELLOW, err=True)
    late_line = _late_line(doc)  # late is not undone: said, with exit 0 where nothing else is
    if undone:
        typer.secho("valid plan that leaves work undone:\n  " + "\n  ".join(undone + ([late_line] if late_line else [])),
                    fg=typer.colors.YELLOW, err=True)
        return 3
    if late_line:
        typer.secho(f"valid plan that does all the work; {late_line}", fg=typer.colors.YELLOW, err=True)
    return 0
