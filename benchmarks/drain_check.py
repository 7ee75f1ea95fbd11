"""Policies compared at equal work: the policy study's cases replayed with a drain long enough to finish.

``benchmarks/policy_study.py`` replays 2 days of submissions and 3 more days, and compares each policy
against the clairvoyant bound of the work it did. A policy that defers work past the replay's end (windward
lowers the power of long jobs in dear slots) does less work there, and a comparison of ratios charges the
missing work at the policy's own ratio. This check removes that assumption: the same cases, with ``--drain``
days after the submissions (9 days finish the 150-hour ITP jobs), and the plain grid carbon and work of each
policy over the same span (the idle site's carbon is the same for all, the span being the same). Where every
policy has finished the same work (within ``--tol-pct``), the grid carbons compare directly.

    .venv/bin/python benchmarks/drain_check.py --drain 9 --policies backfill,windward \\
        --out /tmp/drain9.jsonl                     # all 12 windows of `seasons`, resumable, longest first
    .venv/bin/python benchmarks/drain_check.py --summary /tmp/drain9.jsonl   # the table, from the file alone
    .venv/bin/python benchmarks/drain_check.py --drain 12 --windows 2022-summer --out /tmp/drain9.jsonl
                                                  # a case not finished at 9 days, again with 12 (same file)
    .venv/bin/python benchmarks/drain_check.py --seeds 1,2 --windows 2022-autumn --out /tmp/drain9.jsonl
                                                  # other deadlines and forecast errors, same work
    .venv/bin/python benchmarks/drain_check.py --forecast perfect --windows 2022-autumn --out /tmp/drain9.jsonl
    PYTHONPATH=<older checkout> WINDWARD_DATA_DIR=../shared/data .venv/bin/python benchmarks/drain_check.py ...

Prints (and with ``--out`` appends) one JSON object per (window, drain, policy): grid carbon kg, work GPU-h,
jobs done, deadline misses, the 95th percentile of the finished jobs' completion time (submit to end, hours),
and the per-slot grid carbon / busy GPUs (for tracing where carbon is emitted).
A case already in ``--out`` is skipped, so an interrupted run resumes where it stopped. At the end (or with
``--summary``) a table pairs each policy with ``--baseline`` case by case: carbon saving, work and jobs done,
misses, and whether the row is at equal work; the median saving is taken over the equal-work rows.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

#: the fields that name one replay (a row of the output); a row with the same key is not run again
KEY_FIELDS = ("set", "window", "cluster", "forecast", "seed", "drain_days", "policy")
#: the pseudo-policy whose row is the idle site's grid carbon over the same span (every GPU idle, no job):
#: the same in every schedule, so a saving is also given on the carbon above it
IDLE = "idle"
#: the pseudo-policy whose row is the clairvoyant bound (clairvoyant.bound_of_run) of the baseline's run: the
#: least carbon of any schedule doing the baseline's work and meeting the deadlines it met, so its saving
#: is the most any policy could save at the baseline's work
BOUND = "bound"


def row_key(row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(row[k] for k in KEY_FIELDS)


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a JSON-lines file (none when it does not exist); a torn last line is skipped."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def pair_rows(rows: Iterable[dict[str, Any]], baseline: str = "backfill", tol_pct: float = 1.0) -> list[dict[str, Any]]:
    """One dict per (case, policy other than ``baseline``) that has a baseline row of the same case.

    ``saving_pct`` is the grid carbon against the baseline's (negative: less carbon); ``work_pct`` the work
    done against the baseline's. ``equal_work`` is true when the work differs by at most ``tol_pct`` percent
    and both finished the same number of jobs; only such rows compare carbon at equal work. Where the case
    has an :data:`IDLE` row, ``above_idle_pct`` is the same saving on the carbon above the idle site's (which
    a longer drain adds to every policy alike); else None. Where it also has a :data:`BOUND` row,
    ``work_over_bound`` is ``(carbon - idle) / (bound - idle)`` (the study's work carbon / bound, on the
    baseline's work: meaningful at equal work)."""
    by_case: dict[tuple[Any, ...], dict[str, dict[str, Any]]] = {}
    for r in rows:
        by_case.setdefault(row_key(r)[:-1], {})[r["policy"]] = r
    out = []
    for case, pols in by_case.items():
        base = pols.get(baseline)
        if base is None:
            continue
        idle = pols[IDLE]["grid_carbon_kg"] if IDLE in pols else None
        bound = pols[BOUND]["grid_carbon_kg"] if BOUND in pols else None
        for name, r in pols.items():
            if name in (baseline, IDLE):
                continue
            above = work_ratio = None
            if idle is not None and base["grid_carbon_kg"] > idle:
                above = 100.0 * ((r["grid_carbon_kg"] - idle) / (base["grid_carbon_kg"] - idle) - 1.0)
            if idle is not None and bound is not None and bound > idle:
                work_ratio = (r["grid_carbon_kg"] - idle) / (bound - idle)
            work_pct = 100.0 * (r["work_gpu_h"] / base["work_gpu_h"] - 1.0) if base["work_gpu_h"] else 0.0
            out.append({
                **dict(zip(KEY_FIELDS[:-1], case, strict=True)), "policy": name,
                "base_kg": base["grid_carbon_kg"], "base_gpu_h": base["work_gpu_h"], "base_jobs": base["jobs_done"],
                "base_misses": base["deadline_misses"], "kg": r["grid_carbon_kg"], "gpu_h": r["work_gpu_h"],
                "jobs": r["jobs_done"], "jobs_total": r["jobs_total"], "misses": r["deadline_misses"],
                "saving_pct": 100.0 * (r["grid_carbon_kg"] / base["grid_carbon_kg"] - 1.0),
                "idle_kg": idle, "above_idle_pct": above, "work_over_bound": work_ratio,
                "work_pct": work_pct,
                "equal_work": abs(work_pct) <= tol_pct and r["jobs_done"] == base["jobs_done"]})
    return out


def median_saving(pairs: Sequence[dict[str, Any]], policy: str,
                  field: str = "saving_pct") -> tuple[float | None, int, int]:
    """(median of ``field`` over the policy's equal-work rows that have it, or None; those rows; all rows)."""
    mine = [p for p in pairs if p["policy"] == policy]
    eq = [p[field] for p in mine if p["equal_work"] and p[field] is not None]
    return (statistics.median(eq) if eq else None), len(eq), len(mine)


def settle(pairs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per case and policy, the pair at the shortest drain that is at equal work, or else the one at the
    longest drain (not at equal work): one row per case, however many drains were run for it."""
    by: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for p in pairs:
        by.setdefault((*(p[k] for k in KEY_FIELDS if k != "drain_days"),), []).append(p)
    out = []
    for ps_ in by.values():
        eq = [p for p in ps_ if p["equal_work"]]
        out.append(min(eq, key=lambda p: p["drain_days"]) if eq else max(ps_, key=lambda p: p["drain_days"]))
    return out


#: the rule a candidate default must pass against the current one (round 8, issue 13): in every case at equal
#: work, lower grid carbon, the same deadline misses, and a p95 completion at most this times the current one's
P95_MAX_RATIO = 1.25


def rule_rows(rows: Iterable[dict[str, Any]], candidate: str, reference: str = "windward",
              tol_pct: float = 1.0, p95_max_ratio: float = P95_MAX_RATIO) -> list[dict[str, Any]]:
    """One dict per case (same set, window, cluster, forecast, seed and drain) that has a row of both
    ``candidate`` and ``reference``: carbon against the reference's (``vs_ref_pct``), misses of both, the
    p95 completion ratio, whether the two did equal work (GPU-h within ``tol_pct`` %, the same jobs done) and
    each part of the rule (``lower``, ``misses_equal``, ``p95_ok``: p95 <= ``p95_max_ratio`` x the
    reference's) and ``passes`` (all three, at equal work)."""
    by_case: dict[tuple[Any, ...], dict[str, dict[str, Any]]] = {}
    for r in rows:
        by_case.setdefault(row_key(r)[:-1], {})[r["policy"]] = r
    out = []
    for case, pols in by_case.items():
        c, ref = pols.get(candidate), pols.get(reference)
        if c is None or ref is None:
            continue
        ratio = (c["p95_completion_h"] / ref["p95_completion_h"]
                 if c.get("p95_completion_h") is not None and ref.get("p95_completion_h") else None)
        equal = (abs(c["work_gpu_h"] / ref["work_gpu_h"] - 1.0) * 100.0 <= tol_pct if ref["work_gpu_h"]
                 else c["work_gpu_h"] == 0.0) and c["jobs_done"] == ref["jobs_done"]
        lower = c["grid_carbon_kg"] < ref["grid_carbon_kg"]
        same = c["deadline_misses"] == ref["deadline_misses"]
        p95_ok = ratio is not None and ratio <= p95_max_ratio
        out.append({**dict(zip(KEY_FIELDS[:-1], case, strict=True)), "policy": candidate, "reference": reference,
                    "kg": c["grid_carbon_kg"], "ref_kg": ref["grid_carbon_kg"],
                    "vs_ref_pct": 100.0 * (c["grid_carbon_kg"] / ref["grid_carbon_kg"] - 1.0),
                    "misses": c["deadline_misses"], "ref_misses": ref["deadline_misses"],
                    "p95_h": c.get("p95_completion_h"), "ref_p95_h": ref.get("p95_completion_h"),
                    "p95_ratio": ratio, "equal_work": equal, "lower": lower, "misses_equal": same,
                    "p95_ok": p95_ok, "passes": equal and lower and same and p95_ok})
    return sorted(out, key=lambda r: (r["window"], r["forecast"], r["seed"], r["drain_days"]))


def rule_table(rules: Sequence[dict[str, Any]], p95_max_ratio: float = P95_MAX_RATIO) -> str:
    """A markdown table of :func:`rule_rows` and a verdict line: the rows that pass, and those that fail which part."""
    if not rules:
        return ""
    cand, ref = rules[0]["policy"], rules[0]["reference"]
    lines = [f"| window | forecast, seed | drain d | {ref} kg | {cand} kg (vs {ref}) | misses | p95 h (ratio) "
             f"| equal work | passes |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rules:
        ratio = "" if r["p95_ratio"] is None else f" ({r['p95_ratio']:.2f}x)"
        lines.append(f"| {r['window']} | {r['forecast']}, {r['seed']} | {r['drain_days']:g} | {r['ref_kg']:,.1f} | "
                     f"{r['kg']:,.1f} ({r['vs_ref_pct']:+.2f}%) | {r['ref_misses']} / {r['misses']} | "
                     f"{r['ref_p95_h']} / {r['p95_h']}{ratio} | {'yes' if r['equal_work'] else 'no'} | "
                     f"{'yes' if r['passes'] else 'no'} |")
    fails = {part: [f"{r['window']} {r['forecast']} {r['seed']}" for r in rules if not r[key]]
             for part, key in (("not equal work", "equal_work"), ("not lower", "lower"),
                               ("other misses", "misses_equal"), (f"p95 > {p95_max_ratio:g}x", "p95_ok"))}
    ratios = [r["p95_ratio"] for r in rules if r["p95_ratio"] is not None]
    lines.append(f"\n{cand} against {ref}: passes in {sum(r['passes'] for r in rules)} of {len(rules)} rows; "
                 f"median carbon {statistics.median(r['vs_ref_pct'] for r in rules):+.2f}%, "
                 + (f"p95 ratio median {statistics.median(ratios):.2f}, max {max(ratios):.2f}; " if ratios else "")
                 + "; ".join(f"{k}: {', '.join(v)}" for k, v in fails.items() if v))
    return "\n".join(lines)


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:+.1f}%"


def _above(p: dict[str, Any]) -> str:
    if p["idle_kg"] is None:
        return ""
    ratio = "" if p["work_over_bound"] is None else f"; {p['work_over_bound']:.2f} x bound"
    return (f"{_pct(p['above_idle_pct'])} ({p['base_kg'] - p['idle_kg']:,.0f} -> {p['kg'] - p['idle_kg']:,.0f}"
            f"{ratio})")


def _median_above(sub: Sequence[dict[str, Any]], pol: str) -> str:
    med, n_eq, _ = median_saving(sub, pol, "above_idle_pct")
    ratio, n_r, _ = median_saving(sub, pol, "work_over_bound")
    return ("" if not n_eq else f"**{_pct(med)}** at equal work ({n_eq} rows)") + \
        ("" if ratio is None else f"; {ratio:.2f} x bound (median of {n_r})")


def table(pairs: Sequence[dict[str, Any]], baseline: str = "backfill", tol_pct: float = 1.0) -> str:
    """A markdown table of the pairs, one line per case and policy, and one median line per policy."""
    lines = [f"| window | drain d | {baseline} kg / GPU-h / jobs / misses | policy | kg / GPU-h / jobs / misses "
             f"| carbon vs {baseline} | above the idle site (kg) | work vs {baseline} "
             f"| equal work (<= {tol_pct:g}%, same jobs) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for p in sorted(pairs, key=lambda p: (p["policy"], p["drain_days"], p["window"])):
        lines.append(
            f"| {p['window']} | {p['drain_days']:g} | {p['base_kg']:,.0f} / {p['base_gpu_h']:,.0f} / "
            f"{p['base_jobs']} / {p['base_misses']} | {p['policy']} | {p['kg']:,.0f} / {p['gpu_h']:,.0f} / "
            f"{p['jobs']} of {p['jobs_total']} / {p['misses']} | {p['saving_pct']:+.1f}% | {_above(p)} | "
            f"{p['work_pct']:+.2f}% "
            f"| {'yes' if p['equal_work'] else 'no'} |")
    for pol in sorted({p["policy"] for p in pairs}):
        for drain in sorted({p["drain_days"] for p in pairs if p["policy"] == pol}):
            sub = [p for p in pairs if p["policy"] == pol and p["drain_days"] == drain]
            med, n_eq, n = median_saving(sub, pol)
            all_med = statistics.median(p["saving_pct"] for p in sub)
            more = sum(1 for p in sub if p["misses"] > p["base_misses"])
            lines.append(f"| **median** | {drain:g} | | {pol} | | "
                         f"**{_pct(med)}** at equal work ({n_eq} of {n} rows); {all_med:+.1f}% over all {n} | "
                         f"{_median_above(sub, pol)} | | {more} rows with more misses than {baseline} |")
    if len({p["drain_days"] for p in pairs}) > 1:
        settled = settle(pairs)
        for pol in sorted({p["policy"] for p in settled}):
            sub = [p for p in settled if p["policy"] == pol]
            med, n_eq, n = median_saving(sub, pol)
            drains = ", ".join(f"{p['window']} {p['drain_days']:g}" for p in sorted(sub, key=lambda p: p["window"]))
            lines.append(f"| **median, each case at its shortest equal-work drain** | | | {pol} | | "
                         f"**{_pct(med)}** ({n_eq} of {n} cases at equal work) | {_median_above(sub, pol)} | | "
                         f"drains: {drains} |")
    return "\n".join(lines)


def study_policy(name: str) -> tuple[Any, float]:
    """(policy, forecast horizon hours) for ``NAME`` or ``NAME@HOURS``: NAME as
    :func:`benchmarks.policy_study.make_study_policy` builds it; ``@HOURS`` plans (a windward policy) and
    forecasts over HOURS instead of the study's 48, e.g. ``windward@96``."""
    from benchmarks import policy_study as ps

    base, _, hours = name.partition("@")
    policy = ps.make_study_policy(base)
    if not hours:
        return policy, 48.0
    h = float(hours)
    if hasattr(policy, "horizon_hours"):
        policy.horizon_hours = h
    policy.name = name
    return policy, h


def variants(case: Any, forecast: str | None, seeds: str | None) -> list[Any]:
    """The case once per seed of ``seeds`` (comma-separated; None: the set's own seed) with ``forecast``
    (None: the set's own), e.g. the noisy ``seasons`` windows again with seeds 1 and 2, or with the perfect
    forecast. The seed draws the jobs' tenants, deadlines and preemptibility (not their sizes: the same work)
    and the noisy forecast's errors, as in the policy study."""
    case = case if forecast is None else replace(case, forecast=forecast)
    if seeds is None:
        return [case]
    return [replace(case, seed=int(s)) for s in seeds.split(",")]


def t0_of(case: Any) -> datetime:
    return datetime.fromisoformat(case.start.replace("Z", "+00:00")).astimezone(UTC)


def seed_deferral(policy: Any, site: Any, t0: datetime) -> None:
    """A windward policy that prices deferral from the past (``windward:defer=DAYS``) starts with the
    site's real signals of the DAYS before the run (what a running site has seen), not an empty history
    (:func:`scheduler.deferral.seed_deferral`, as ``windward simulate --defer-history-days`` does)."""
    from scheduler.deferral import seed_deferral as seed
    from scheduler.paths import nl_energy_csv

    seed(policy, str(nl_energy_csv()), site, t0)


def _emit(row: dict[str, Any], out: Path | None) -> None:
    """Print the row (without its per-slot series) and append it whole to ``out``."""
    print(json.dumps({k: v for k, v in row.items() if not k.startswith("slot_")}), flush=True)
    if out is not None:
        with out.open("a") as f:
            f.write(json.dumps(row) + "\n")


def _run(a: argparse.Namespace, out: Path | None) -> None:
    import numpy as np

    from benchmarks import policy_study as ps
    from benchmarks.policies import load_case
    from scheduler import clairvoyant
    from scheduler.control import run_simulation, slots_for_days
    from scheduler.signals import make_forecaster

    done = {row_key(r) for r in read_rows(out)} if out is not None else set()
    wins = None if a.windows == "all" else set(a.windows.split(","))
    todo = []
    for drain in (float(x) for x in a.drain.split(",")):
        for case in ps.cases(a.set):
            if wins is None or case.window in wins:
                todo.extend(variants(replace(case, drain_days=drain), a.forecast, a.seeds))
    loaded = []
    # energy for the longest forecast horizon asked for past the run's end (the same series, longer)
    horizon_h = max([48.0, *(study_policy(x)[1] for x in a.policies.split(",") if x not in (IDLE, BOUND))])
    for case in todo:
        t0 = t0_of(case)
        site, jobs, actual, _ = load_case(case.days, case.drain_days, t0, case.cluster, horizon_h, case.seed,
                                          case.trace_day, 0.05, case.slot_minutes)
        gpu_h = sum(j.gpus * j.duration_s for j in jobs if not j.must_run) / 3600
        loaded.append((gpu_h, case, site, jobs, actual))
    if a.longest_first:  # the most work first: a run stopped at the deadline has the big cases done
        loaded.sort(key=lambda x: -x[0])
    for _gpu_h, case, site, jobs, actual in loaded:
        n = slots_for_days(site, case.days + case.drain_days)
        for name in a.policies.split(","):
            head = {"set": case.set, "window": case.window, "cluster": case.cluster, "forecast": case.forecast,
                    "seed": case.seed, "drain_days": case.drain_days, "policy": name}
            if row_key(head) in done:
                continue
            if name == IDLE:
                row = {**head, "grid_carbon_kg": round(clairvoyant.idle_carbon_g(site, actual, n) / 1000, 1),
                       "work_gpu_h": 0.0, "jobs_done": 0, "jobs_total": 0, "deadline_misses": 0}
                _emit(row, out)
                continue
            fc = make_forecaster(case.forecast, actual, case.seed, wind_capacity_w=site.wind.contract_mw * 1e6)
            w0 = time.time()
            c0 = time.process_time()
            policy, horizon_h = study_policy(a.baseline if name == BOUND else name)
            seed_deferral(policy, site, t0_of(case))
            sim = run_simulation(site, jobs, actual, policy, n_slots=n, forecaster=fc,
                                 forecast_name=case.forecast, horizon_slots=int(horizon_h * 3600 / site.slot_s))
            train = [r for r in sim.loop.records.values() if not r.job.must_run and r.state != "pending"]
            end_s = n * site.slot_s
            misses = sum(1 for r in train if r.job.deadline_s is not None and r.job.deadline_s <= end_s
                         and not (r.state == "finished" and r.end_s is not None
                                  and r.end_s <= r.job.deadline_s + 1e-6))
            unfinished = sorted(((r.job.job_id, r.job.gpus, round(r.job.duration_s / 3600, 1),
                                  round(min(r.work_done_s, r.job.duration_s) / 3600, 1))
                                 for r in train if r.state != "finished"), key=lambda x: -x[1] * x[2])
            carbon_g = clairvoyant.run_carbon_g(sim)
            spans_h = sorted((r.end_s - r.job.submit_s) / 3600 for r in train
                             if r.state == "finished" and r.end_s is not None)
            extra: dict[str, Any] = {}
            if name == BOUND:
                b = clairvoyant.bound_of_run(sim, time_limit_s=a.bound_time_limit_s)
                carbon_g = b.bound_carbon_g
                extra = {"bound": b.as_dict(), "slot_busy_gpus": None,  # the LP's own carbon by slot, not the run's
                         "slot_carbon_kg": None if b.carbon_g_by_slot is None
                         else [round(g / 1000, 2) for g in b.carbon_g_by_slot]}
            row = {**head,
                   "grid_carbon_kg": round(carbon_g / 1000, 1),
                   "work_gpu_h": round(sum(r.job.gpus * min(r.work_done_s, r.job.duration_s) for r in train) / 3600, 1),
                   "jobs_done": sum(1 for r in train if r.state == "finished"), "jobs_total": len(train),
                   "deadline_misses": misses, "unfinished": unfinished[:20],
                   "p95_completion_h": round(float(np.percentile(spans_h, 95)), 1) if spans_h else None,
                   "wall_s": round(time.time() - w0, 1), "cpu_s": round(time.process_time() - c0, 1),
                   "slot_carbon_kg": [round(r.carbon_g / 1000, 2) for r in sim.reports],
                   "slot_busy_gpus": [round(sum(r.busy_gpus.values()), 1) for r in sim.reports], **extra}
            _emit(row, out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--drain", help="comma-separated drain days after the submissions (default 9); with "
                                    "--summary, the drains the table keeps (default all)")
    ap.add_argument("--policies", default="backfill,windward,idle",
                    help=f"comma-separated; {IDLE!r} is the idle site's carbon over the same span (no run), "
                         f"{BOUND!r} the clairvoyant bound of the baseline's run (its saving is the most possible)")
    ap.add_argument("--bound-time-limit-s", type=float, default=300.0)
    ap.add_argument("--windows", default="all", help="comma-separated windows of the set, or 'all'")
    ap.add_argument("--set", default="seasons")
    ap.add_argument("--forecast", choices=("perfect", "noisy"),
                    help="the forecast of every case (default: the set's own, noisy for seasons)")
    ap.add_argument("--seeds", help="comma-separated seeds, each case once per seed (default: the set's own, 0 for "
                                    "seasons); the seed draws the jobs' deadlines, tenants and preemptibility and "
                                    "the noisy forecast's errors")
    ap.add_argument("--out", help="JSON-lines file the rows are appended to; rows already in it are not rerun")
    ap.add_argument("--summary", help="print the table of this JSON-lines file and run nothing")
    ap.add_argument("--baseline", default="backfill", help="the policy the others are paired with")
    ap.add_argument("--rule", metavar="CANDIDATE[,REFERENCE]",
                    help="also check the default rule (issue 13, round 8): CANDIDATE against REFERENCE (default "
                         f"windward) in every case: lower carbon, the same misses, p95 completion <= {P95_MAX_RATIO:g}x, "
                         "at equal work")
    ap.add_argument("--tol-pct", type=float, default=1.0, help="work difference (%%) still called equal work")
    ap.add_argument("--no-longest-first", dest="longest_first", action="store_false",
                    help="run the cases in the set's order rather than the most work first")
    a = ap.parse_args(argv)
    if a.summary:
        rows = read_rows(Path(a.summary))
        if a.drain:
            keep = {float(x) for x in a.drain.split(",")}
            rows = [r for r in rows if r["drain_days"] in keep]
    else:
        a.drain = a.drain or "9"
        out = Path(a.out) if a.out else None
        _run(a, out)
        rows = read_rows(out) if out is not None else []
    if rows:
        print(table(pair_rows(rows, a.baseline, a.tol_pct), a.baseline, a.tol_pct))
    if rows and a.rule:
        cand, _, ref = a.rule.partition(",")
        print(rule_table(rule_rows(rows, cand, ref or "windward", a.tol_pct)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
