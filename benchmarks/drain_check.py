"""Policies compared at (nearly) equal work: the policy study's cases replayed with a longer drain.

``benchmarks/policy_study.py`` replays 2 days of submissions and 3 more days, and compares each policy
against the clairvoyant bound of the work it did. A policy that defers work past the replay's end (windward
lowers the power of long jobs in dear slots) does less work there, and a comparison of ratios charges the
missing work at the policy's own ratio. This check removes that assumption where it can: the same cases,
with ``--drain`` days after the submissions, and the plain grid carbon and work of each policy over the
same span (the idle site's carbon is the same for all, the span being the same). Where every policy has
finished the same work, the grid carbons compare directly.

    .venv/bin/python benchmarks/drain_check.py --drain 3,7 --policies backfill,windward \\
        --windows 2022-spring,2023-summer,2022-autumn
    PYTHONPATH=<older checkout> WINDWARD_DATA_DIR=../shared/data .venv/bin/python benchmarks/drain_check.py ...

Prints one JSON object per (window, drain, policy): grid carbon kg, work GPU-h, jobs done, deadline misses.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--drain", default="3,7", help="comma-separated drain days after the submissions")
    ap.add_argument("--policies", default="backfill,windward")
    ap.add_argument("--windows", default="2022-spring,2023-summer,2022-autumn",
                    help="windows of the study's `seasons` set")
    ap.add_argument("--set", default="seasons")
    a = ap.parse_args(argv)
    from benchmarks import policy_study as ps
    from benchmarks.policies import load_case
    from scheduler import clairvoyant
    from scheduler.control import run_simulation, slots_for_days
    from scheduler.signals import make_forecaster

    wins = set(a.windows.split(","))
    for drain in (float(x) for x in a.drain.split(",")):
        for case in ps.cases(a.set):
            if case.window not in wins:
                continue
            case = replace(case, drain_days=drain)
            t0 = datetime.fromisoformat(case.start.replace("Z", "+00:00")).astimezone(UTC)
            site, jobs, actual, _ = load_case(case.days, case.drain_days, t0, case.cluster, 48.0, case.seed,
                                              case.trace_day, 0.05, case.slot_minutes)
            n = slots_for_days(site, case.days + case.drain_days)
            for name in a.policies.split(","):
                fc = make_forecaster(case.forecast, actual, case.seed, wind_capacity_w=site.wind.contract_mw * 1e6)
                w0 = time.time()
                sim = run_simulation(site, jobs, actual, ps.make_study_policy(name), n_slots=n, forecaster=fc,
                                     forecast_name=case.forecast, horizon_slots=int(48 * 3600 / site.slot_s))
                train = [r for r in sim.loop.records.values() if not r.job.must_run and r.state != "pending"]
                end_s = n * site.slot_s
                misses = sum(1 for r in train if r.job.deadline_s is not None and r.job.deadline_s <= end_s
                             and not (r.state == "finished" and r.end_s is not None
                                      and r.end_s <= r.job.deadline_s + 1e-6))
                print(json.dumps({
                    "window": case.window, "cluster": case.cluster, "forecast": case.forecast, "seed": case.seed,
                    "drain_days": drain, "policy": name,
                    "grid_carbon_kg": round(clairvoyant.run_carbon_g(sim) / 1000, 1),
                    "work_gpu_h": round(sum(r.job.gpus * min(r.work_done_s, r.job.duration_s) for r in train) / 3600, 1),
                    "jobs_done": sum(1 for r in train if r.state == "finished"), "jobs_total": len(train),
                    "deadline_misses": misses, "wall_s": round(time.time() - w0, 1)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
