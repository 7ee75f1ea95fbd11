"""The optimiser on the online policy's own re-plans: ``kernels.plan`` timed on the problems and warm starts
that the windward policy hands it in a replay, not on ``benchmarks/instances.py``'s generator.

    # record: replay r100k-backlog (50,000 ITP jobs arriving over 2 h on rotterdam-100k) for 17 ticks with
    # the windward policy and keep each tick's (problem, warm start, options)
    .venv/bin/python benchmarks/replan.py record --out /tmp/replan --ticks 17 --from-tick 8
    # time: every recorded tick re-planned in a fresh process per tree, trees alternating, --repeats each
    .venv/bin/python benchmarks/replan.py time --dir /tmp/replan --baseline /tmp/base --repeats 2

Why: ``benchmarks/optimizer.py``'s warm chain shifts one generated instance a slot per tick and credits no
work done, and almost every job in it can finish; the policy's re-plans on an overloaded site differ (tens
of thousands of jobs queued behind full pools, most of them unfinished within the horizon, new arrivals
every tick, the greedy witness every ``WITNESS_EVERY_TICKS``), and issue 13's "at most 1 s a tick at 50,000
jobs" is about these. The recorded problems are pickles of ``kernels.PlanProblem`` / ``PlanResult``: a
baseline tree must have the same classes (it is meant for the code a round started from).

``time`` prints one JSON object: per tick and tree the CPU and wall seconds of ``kernels.plan`` (median over
``--repeats``), the gap, unfinished GPU-s and whether the witness ran; and per tree the median over ticks,
with the new / baseline ratio of the medians. ``os.getloadavg()`` before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def record(out: Path, ticks: int, from_tick: int, jobs: int, policy: str) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT))
    import kernels
    from benchmarks import simulator
    from scheduler import signals
    from scheduler.control import run_simulation
    from scheduler.models import load_site
    from scheduler.paths import nl_energy_csv
    from scheduler.policies import get_policy

    out.mkdir(parents=True, exist_ok=True)
    site = load_site("rotterdam-100k")
    actual = signals.load_energy(str(nl_energy_csv()), site, simulator.START, 2)
    workload, desc = simulator.backlog(site, jobs, burst_s=2 * 3600.0)
    real_plan = kernels.plan
    kept: list[dict[str, Any]] = []
    n = [0]

    def keep(problem: Any, warm_start: Any = None, **kw: Any) -> Any:
        # the policy calls kernels.plan through the module attribute; this wrapper passes every call through
        # unchanged and keeps the arguments of the ticks asked for
        tick = n[0]
        n[0] += 1
        if tick >= from_tick:
            path = out / f"tick{tick:03d}.pkl"
            with open(path, "wb") as f:
                pickle.dump({"problem": problem, "warm_start": warm_start, "kwargs": kw}, f,
                            protocol=pickle.HIGHEST_PROTOCOL)
        result = real_plan(problem, warm_start=warm_start, **kw)
        if tick >= from_tick:  # what the policy got: a re-plan of the record must give the same
            kept.append({"tick": tick, "file": path.name, "jobs": int(problem.n_jobs), "slots": int(problem.n_slots),
                         "gap": float(result.gap), "unfinished_gpu_s": float(result.unfinished_gpu_s)})
        return result

    kernels.plan = keep  # type: ignore[assignment]
    try:
        run_simulation(site, workload, actual, get_policy(policy), n_slots=ticks)
    finally:
        kernels.plan = real_plan  # type: ignore[assignment]
    meta = {"workload": desc, "site": site.name, "policy": policy, "ticks": kept}
    (out / "meta.json").write_text(json.dumps(meta, indent=1))
    return meta


_CHILD = r"""
import json, pickle, sys, time
sys.path.insert(0, sys.argv[1])
import kernels
assert kernels.__file__.startswith(sys.argv[1]), kernels.__file__
out = []
for path in sys.argv[2:]:
    with open(path, "rb") as f:
        rec = pickle.load(f)
    t0, c0 = time.perf_counter(), time.process_time()
    r = kernels.plan(rec["problem"], warm_start=rec["warm_start"], **rec["kwargs"])
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    wit = r.diagnostics.get("witness") or {}
    out.append({"file": path.rsplit("/", 1)[-1], "cpu_s": cpu, "wall_s": wall, "gap": float(r.gap),
                "unfinished_gpu_s": float(r.unfinished_gpu_s), "witness_ran": bool(wit.get("ran", False)),
                "status": r.status})
print(json.dumps(out))
"""


def _run_tree(tree: Path, files: list[Path]) -> list[dict[str, Any]]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    p = subprocess.run([sys.executable, "-c", _CHILD, str(tree), *map(str, files)], env=env, capture_output=True,
                       text=True, check=False)
    if p.returncode != 0:
        raise SystemExit(f"re-planning in {tree} failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def time_trees(d: Path, baseline: Path | None, repeats: int) -> dict[str, Any]:
    files = sorted(d.glob("tick*.pkl"))
    if not files:
        raise SystemExit(f"{d}: no tick*.pkl (run `record` first)")
    trees = {"new": ROOT} if baseline is None else {"baseline": baseline, "new": ROOT}
    runs: dict[str, list[list[dict[str, Any]]]] = {k: [] for k in trees}
    load0 = os.getloadavg()
    t0 = time.time()
    for _ in range(repeats):
        for name, tree in trees.items():  # alternating
            runs[name].append(_run_tree(tree, files))
    out: dict[str, Any] = {"dir": str(d), "repeats": repeats, "loadavg_before": load0,
                           "loadavg_after": os.getloadavg(), "seconds": round(time.time() - t0, 1), "trees": {}}
    for name, rs in runs.items():
        ticks = []
        for i, f in enumerate(files):
            rows = [r[i] for r in rs]
            ticks.append({"file": f.name, "cpu_s": round(statistics.median(x["cpu_s"] for x in rows), 3),
                          "wall_s": round(statistics.median(x["wall_s"] for x in rows), 3),
                          "gap": round(rows[0]["gap"], 5), "unfinished_gpu_h": round(rows[0]["unfinished_gpu_s"] / 3600, 1),
                          "witness_ran": rows[0]["witness_ran"], "status": rows[0]["status"]})
        out["trees"][name] = {"path": str(trees[name]), "ticks": ticks,
                              "cpu_s_median": round(statistics.median(t["cpu_s"] for t in ticks), 3),
                              "cpu_s_max": round(max(t["cpu_s"] for t in ticks), 3),
                              "wall_s_median": round(statistics.median(t["wall_s"] for t in ticks), 3)}
    if baseline is not None:
        b, n = out["trees"]["baseline"], out["trees"]["new"]
        out["new_over_baseline_cpu_median"] = round(n["cpu_s_median"] / b["cpu_s_median"], 3)
        out["new_over_baseline_cpu_max"] = round(n["cpu_s_max"] / b["cpu_s_max"], 3)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("record", help="replay r100k-backlog and keep the policy's kernels.plan calls")
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--ticks", type=int, default=17, help="ticks replayed (15-minute slots)")
    r.add_argument("--from-tick", type=int, default=8, help="first tick kept (the backlog has arrived by ~8)")
    r.add_argument("--jobs", type=int, default=50_000, help="training jobs in the backlog")
    r.add_argument("--policy", default="windward")
    t = sub.add_parser("time", help="re-plan every recorded tick in this tree (and --baseline's)")
    t.add_argument("--dir", type=Path, required=True)
    t.add_argument("--baseline", type=Path, default=None, help="an older checkout (e.g. git archive <rev>)")
    t.add_argument("--repeats", type=int, default=2)
    a = ap.parse_args(argv)
    if a.cmd == "record":
        if a.ticks <= a.from_tick:
            ap.error(f"--ticks {a.ticks} must be more than --from-tick {a.from_tick}")
        res = record(a.out, a.ticks, a.from_tick, a.jobs, a.policy)
    else:
        if a.repeats < 1:
            ap.error("--repeats must be >= 1")
        res = time_trees(a.dir, a.baseline, a.repeats)
    json.dump(res, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
