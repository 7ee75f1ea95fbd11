"""Policy study on the real data (issue 13): every policy against the clairvoyant bound of its own work.

Cases are (energy window, ITP cluster and trace day, submit days, forecast, seed) on the 1,024-GPU
``itp-1024`` site of :mod:`benchmarks.policies` with the Azure LLM inference service (5% of the site),
replayed by the shared control loop once per policy. Submissions stop after ``days``; the replay goes on
for ``drain_days`` more. Every row carries ``carbon / bound``: the run's grid carbon over the clairvoyant
lower bound of the **same work** (:mod:`scheduler.clairvoyant`: everything known, LP relaxation), so
policies that do different amounts of work are still compared fairly; work done and jobs done are shown
beside it.

Sets (``--set``):

- ``seasons``: the four seasons of 2021, 2022 and 2023 (12 windows, ITP cluster04, each window its own
  trace day), 2 days of submissions, noisy forecast, seed 0;
- ``clusters``: the other five ITP clusters on the 2023 spring window;
- ``horizons``: 4 and 7 days of submissions on the 2022 spring and autumn windows; ``horizons-2023`` the
  same on the 2023 summer and autumn windows;
- ``forecast``: the perfect forecast on the 2023 windows of ``seasons`` (the forecast's share of the gap);
- ``seeds``: seeds 1 and 2 on the 2023 spring and autumn windows; ``seeds-more`` the same on 2021 summer,
  2022 autumn and 2023 summer;
- ``small``: one 1-day case (the integration test's).

Rows are appended to ``--out``/study.jsonl as they finish (a partial study is usable); ``--table`` prints
the markdown table of a JSONL file (medians per policy and per set).

Run: ``python -m benchmarks.policy_study --set seasons,horizons,forecast,seeds --out /tmp/study``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from scheduler.policies import available_policies

#: every registered policy, the baselines first and windward last (the tables' and figures' order)
POLICIES = tuple(sorted(available_policies(), key=lambda name: name == "windward"))
SEASONS = (("winter", "01-11"), ("spring", "04-12"), ("summer", "07-12"), ("autumn", "10-11"))
CLUSTERS = ("cluster01", "cluster02", "cluster03", "cluster04", "cluster05", "cluster06")


@dataclass(frozen=True, slots=True)
class Case:
    set: str
    window: str  # e.g. "2022-spring"
    start: str  # ISO UTC
    cluster: str
    trace_day: float
    days: float
    drain_days: float
    forecast: str
    seed: int
    slot_minutes: int = 60


#: ITP slices (cluster, first trace day) with work in 2 days: cluster04 is the one sized for the site
#: (20-45k GPU-hours in 2 days); the others are lighter
SEASON_DAYS = (7.0, 21.0, 28.0, 0.0)
OTHER_CLUSTERS = (("cluster01", 28.0), ("cluster02", 7.0), ("cluster03", 35.0), ("cluster05", 21.0),
                  ("cluster06", 28.0))


def cases(which: str) -> Iterator[Case]:
    k = 0
    for y in (2021, 2022, 2023):
        for s, md in SEASONS:
            day = SEASON_DAYS[k % len(SEASON_DAYS)]
            k += 1
            start = f"{y}-{md}T00:00:00Z"
            w = f"{y}-{s}"
            if which == "seasons":
                yield Case("seasons", w, start, "cluster04", day, 2.0, 3.0, "noisy", 0)
            if which == "horizons" and y == 2022 and s in ("spring", "autumn"):
                for d in (4.0, 7.0):
                    yield Case("horizons", w, start, "cluster04", day, d, 3.0, "noisy", 0)
            if which == "horizons-2023" and y == 2023 and s in ("summer", "autumn"):
                for d in (4.0, 7.0):
                    yield Case("horizons-2023", w, start, "cluster04", day, d, 3.0, "noisy", 0)
            if which == "forecast" and y == 2023:
                yield Case("forecast", w, start, "cluster04", day, 2.0, 3.0, "perfect", 0)
            if which == "seeds" and y == 2023 and s in ("spring", "autumn"):
                for seed in (1, 2):
                    yield Case("seeds", w, start, "cluster04", day, 2.0, 3.0, "noisy", seed)
            if which == "seeds-more" and (y, s) in ((2021, "summer"), (2022, "autumn"), (2023, "summer")):
                for seed in (1, 2):
                    yield Case("seeds-more", w, start, "cluster04", day, 2.0, 3.0, "noisy", seed)
            if which == "clusters" and y == 2023 and s == "spring":
                for c, d in OTHER_CLUSTERS:
                    yield Case("clusters", w, start, c, d, 2.0, 3.0, "noisy", 0)
    if which == "small":
        yield Case("small", "2023-spring", "2023-04-12T00:00:00Z", "cluster04", 0.0, 1.0, 1.0, "noisy", 0)


def make_study_policy(name: str) -> Any:
    """A policy by name, or a windward variant ``windward:FIELD=VALUE+FIELD=VALUE`` (fields of
    :class:`~scheduler.planner.WeightSettings` changed from the policy's defaults, ``slot0=0|1`` for its
    slot-0 admission, ``slot0run=0|1`` for its slot-0 settling of running work, ``defer=DAYS`` to price the span
    past the horizon from the last DAYS of observed signals, :class:`scheduler.deferral.TrailingSignals`): old and
    new defaults in the same run, e.g. ``windward:clearing_margin=1.0``."""
    from dataclasses import replace

    from scheduler.errors import InputError
    from scheduler.policies import get_policy
    from scheduler.policies.windward import DEFAULT_WEIGHTS, WindwardPolicy

    if not name.startswith("windward:"):
        return get_policy(name)
    wkw: dict[str, Any] = {}
    pkw: dict[str, Any] = {}
    for kv in name.split(":", 1)[1].split("+"):
        k, _, v = kv.partition("=")
        if k == "slot0":
            pkw["slot0_admission"] = bool(int(v))
        elif k == "slot0run":
            pkw["slot0_running"] = bool(int(v))
        elif k == "defer":
            from scheduler.deferral import TrailingSignals

            pkw["deferral"] = TrailingSignals(history_days=float(v))
        elif k in DEFAULT_WEIGHTS.__dataclass_fields__:
            default = getattr(DEFAULT_WEIGHTS, k)
            wkw[k] = float(v) if default is None else type(default)(v)
        else:
            raise InputError(f"policy variant {name!r}: unknown field {k!r}; allowed: slot0, slot0run, defer and the fields of "
                             f"WeightSettings")
    p = WindwardPolicy(48.0, weights=replace(DEFAULT_WEIGHTS, **wkw), **pkw)
    p.name = name
    return p


def run_case(case: Case, policies: tuple[str, ...] = POLICIES, bound_solver: str = "auto") -> list[dict[str, Any]]:
    """Replay one case once per policy; one dict per policy (the case's fields and the measures)."""
    from benchmarks.policies import load_case
    from scheduler import clairvoyant
    from scheduler.control import run_simulation, slots_for_days
    from scheduler.signals import make_forecaster

    horizon_h = 48.0
    t0 = datetime.fromisoformat(case.start.replace("Z", "+00:00")).astimezone(UTC)
    site, jobs, actual, desc = load_case(case.days, case.drain_days, t0, case.cluster, horizon_h, case.seed,
                                         case.trace_day, 0.05, case.slot_minutes)
    n = slots_for_days(site, case.days + case.drain_days)
    h_slots = int(horizon_h * 3600 / site.slot_s)
    out = []
    for name in policies:
        fc = make_forecaster(case.forecast, actual, case.seed, wind_capacity_w=site.wind.contract_mw * 1e6)
        sim = run_simulation(site, jobs, actual, make_study_policy(name), n_slots=n, forecaster=fc,
                             forecast_name=case.forecast, horizon_slots=h_slots)
        end_s = n * site.slot_s
        carbon_g = clairvoyant.run_carbon_g(sim)
        b = clairvoyant.bound_of_run(sim, solver=bound_solver, max_lp_vars=150_000, time_limit_s=60.0)
        recs = sim.loop.records
        train = [r for r in recs.values() if not r.job.must_run and r.state != "pending"]
        done = [r for r in train if r.state == "finished"]
        comp_h = np.array([(r.end_s - r.job.submit_s) / 3600 for r in done if r.end_s is not None])
        misses = sum(1 for r in train if r.job.deadline_s is not None and r.job.deadline_s <= end_s
                     and not (r.state == "finished" and r.end_s is not None and r.end_s <= r.job.deadline_s + 1e-6))
        dl_jobs = sum(1 for r in train if r.job.deadline_s is not None and r.job.deadline_s <= end_s)
        out.append({
            **asdict(case), "policy": name, "workload": desc,
            "grid_carbon_kg": carbon_g / 1000.0,
            "bound_kg": b.bound_carbon_g / 1000.0 if np.isfinite(b.bound_carbon_g) else None,
            "carbon_over_bound": b.ratio(carbon_g), "work_carbon_over_bound": b.work_ratio(carbon_g),
            "idle_kg": b.idle_carbon_g / 1000.0, "bound_method": b.method, "bound_status": b.status,
            "bound_bucket_slots": b.release_bucket_slots,
            "work_gpu_h": sum(r.job.gpus * min(r.work_done_s, r.job.duration_s) for r in train) / 3600.0,
            "jobs_done": len(done), "jobs_total": len(train),
            "deadline_misses": misses, "deadline_jobs": dl_jobs,
            "lost_work_gpu_h": sum(r.job.gpus * r.lost_work_s for r in train) / 3600.0,
            "preemptions": sum(r.preemptions for r in train),
            "p95_completion_h": float(np.percentile(comp_h, 95)) if comp_h.size else None,
            "cap_violations": sum(1 for r in sim.reports if r.violations),
            "policy_ms_per_tick": 1000.0 * sum(r.decide_s for r in sim.reports) / max(len(sim.reports), 1),
            "wall_s": sim.wall_s, "bound_s": b.solve_s,
        })
    return out


def _med(xs: list[float | None]) -> float | None:
    v = [x for x in xs if x is not None]
    return statistics.median(v) if v else None


def table(rows: list[dict[str, Any]]) -> str:
    """Medians per set and policy: carbon / bound, the same on the carbon the work adds over the idle site,
    carbon vs backfill at equal work and as run (both paired by case), work done, deadline
    misses (total), work lost, p95 completion, policy ms per tick; plus the number of cases. With more than
    one set, rows of set ``all`` give the same over every case.

    Carbon vs backfill *at equal work* is ``(carbon / bound) / (backfill's carbon / bound) - 1``: each run's
    carbon over the clairvoyant bound of its own work, so a policy that leaves work undone in the window is
    charged for it at its own ratio (the carbon it would emit doing backfill's work at its own efficiency
    against the clairvoyant schedule). *As run* is the plain ratio of grid carbons, at the work each did
    (``work done vs backfill``): it flatters a policy that defers work past the run's end."""
    head = ("| set | policy | cases | carbon / bound (median) | work carbon / bound (median) "
            "| carbon vs backfill, equal work (median) | carbon vs backfill as run (median) | work done vs backfill "
            "| jobs done | deadline misses | work lost GPU-h | p95 completion h | cap violations | policy ms/tick |")
    out = [head, "|" + "---|" * 14]
    key = ("set", "window", "cluster", "days", "forecast", "seed")
    base = {tuple(r[k] for k in key): r for r in rows if r["policy"] == "backfill"}
    sets = list(dict.fromkeys(r["set"] for r in rows))
    pols = [p for p in POLICIES if any(r["policy"] == p for r in rows)]
    for st in sets + (["all"] if len(sets) > 1 else []):
        for p in pols:
            rs = [r for r in rows if (st == "all" or r["set"] == st) and r["policy"] == p]
            if not rs:
                continue
            vs = [r["grid_carbon_kg"] / base[tuple(r[k] for k in key)]["grid_carbon_kg"] - 1
                  for r in rs if base.get(tuple(r[k] for k in key), {}).get("grid_carbon_kg", 0) > 0]
            eq = [r["carbon_over_bound"] / base[tuple(r[k] for k in key)]["carbon_over_bound"] - 1
                  for r in rs if r["carbon_over_bound"] is not None
                  and (base.get(tuple(r[k] for k in key), {}).get("carbon_over_bound") or 0) > 0]
            ws = [r["work_gpu_h"] / max(base[tuple(r[k] for k in key)]["work_gpu_h"], 1e-9) - 1
                  for r in rs if base.get(tuple(r[k] for k in key), {}).get("work_gpu_h", 0) > 0]

            def f(v: float | None, fmt: str) -> str:
                return "—" if v is None else format(v, fmt)

            out.append(
                f"| {st} | {p} | {len(rs)} | {f(_med([r['carbon_over_bound'] for r in rs]), '.3f')} | "
                f"{f(_med([r.get('work_carbon_over_bound') for r in rs]), '.3f')} | "
                f"{f(_med(eq), '+.1%')} | {f(_med(vs), '+.1%')} | {f(_med(ws), '+.1%')} | "
                f"{sum(r['jobs_done'] for r in rs)}/{sum(r['jobs_total'] for r in rs)} | "
                f"{sum(r['deadline_misses'] for r in rs)}/{sum(r['deadline_jobs'] for r in rs)} | "
                f"{sum(r['lost_work_gpu_h'] for r in rs):,.0f} | {f(_med([r['p95_completion_h'] for r in rs]), '.1f')} | "
                f"{sum(r['cap_violations'] for r in rs)} | {f(_med([r['policy_ms_per_tick'] for r in rs]), '.1f')} |"
            )
    return "\n".join(out)


def plot(rows: list[dict[str, Any]], path: Path) -> Path:
    """Carbon / bound per policy (one dot per case, median bar)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pols = [p for p in POLICIES if any(r["policy"] == p for r in rows)]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for i, p in enumerate(pols):
        v = [r["carbon_over_bound"] for r in rows if r["policy"] == p and r["carbon_over_bound"] is not None]
        ax.scatter(np.full(len(v), i) + np.linspace(-0.15, 0.15, len(v)), v, s=12, alpha=0.7)
        if v:
            ax.hlines(statistics.median(v), i - 0.3, i + 0.3, color="k")
    ax.axhline(1.25, ls="--", color="grey", lw=0.8)
    ax.set_xticks(range(len(pols)), pols)
    ax.set_ylabel("grid carbon / clairvoyant bound")
    ax.set_title("Issue 13 policy study (same work; dashed: 1.25x target)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--set", default="seasons", help="comma-separated: seasons, clusters, horizons, horizons-2023, forecast, seeds, seeds-more, small")
    ap.add_argument("--policies", default=",".join(POLICIES))
    ap.add_argument("--index", default="", help="comma-separated case indices within each set (default: all)")
    ap.add_argument("--out", type=Path, default=Path("/tmp/policy-study"))
    ap.add_argument("--table", type=Path, default=None, help="print the table (and write the plot) of a JSONL file")
    ap.add_argument("--plot", type=Path, default=None)
    a = ap.parse_args()
    if a.table is not None:
        rows = [json.loads(x) for x in a.table.read_text().splitlines() if x.strip()]
        print(table(rows))
        if a.plot is not None:
            print(f"plot: {plot(rows, a.plot)}")
        return
    a.out.mkdir(parents=True, exist_ok=True)
    path = a.out / "study.jsonl"
    pols = tuple(p.strip() for p in a.policies.split(",") if p.strip())
    t = time.perf_counter()
    for which in a.set.split(","):
        picked = {int(x) for x in a.index.split(",") if x.strip()}
        for i, case in enumerate(cases(which.strip())):
            if picked and i not in picked:
                continue
            rows = run_case(case, pols)
            with path.open("a") as f:
                for r in rows:
                    f.write(json.dumps(r) + "\n")
            print(f"{case.set} {case.window} {case.cluster} {case.days:g}d {case.forecast} s{case.seed}: "
                  + ", ".join(f"{r['policy']} {r['carbon_over_bound'] or float('nan'):.3f}" for r in rows)
                  + f" ({time.perf_counter() - t:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
