"""Optimiser scaling benchmark: kernels.plan on real-shaped instances, HiGHS LP in the same run as baseline.

    python benchmarks/optimizer.py --sizes 1000,5000,20000,50000 --slots 96,192 --runs 3 --out out/opt
    python benchmarks/optimizer.py --backend torch --device cuda --sizes 5000,20000,50000,100000 --slots 192

For every (J, T): median cold solve time over ``--runs`` runs, median warm re-plan time (the next tick:
the same instance one slot later, warm-started from the previous result), carbon, objective, certified gap
to its own lower bound, peak traced memory of one solve, and where J <= ``--highs-max-j`` the HiGHS LP
relaxation (``benchmarks.reference.solve_lp``, time-limited) timed in the same run: gap to the LP optimum,
carbon against the LP's carbon, and the speed-up. With ``--baseline-numpy`` (torch runs) the numpy backend
is timed on the same instance in the same run. Writes ``optimizer.json`` and ``optimizer.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

import kernels  # noqa: E402
from benchmarks.instances import make_problem, problem_source, shift_problem  # noqa: E402


def _timed(fn: Any, sync: Any = None) -> tuple[Any, float]:
    t0 = time.perf_counter()
    r = fn()
    if sync is not None:
        sync()
    return r, time.perf_counter() - t0


def run_case(J: int, T: int, *, runs: int, backend: str, device: str, highs_max_j: int, highs_limit_s: float,
             baseline_numpy: bool, seed: int, max_iters: int) -> dict[str, Any]:
    pb = make_problem(J, T, seed=seed)
    nxt = shift_problem(pb, 1)
    sync = None
    if backend == "torch" and device.startswith("cuda"):
        import torch

        sync = torch.cuda.synchronize
    def solve(q: Any, **kw: Any) -> Any:
        kw.setdefault("max_iters", max_iters)
        return kernels.plan(q, backend=backend, device=device, **kw)

    solve(pb)  # warm-up (imports, CUDA context, allocator)
    cold, warm = [], []
    res = None
    for _ in range(runs):  # repeated runs for the median
        res, dt = _timed(lambda: solve(pb), sync)
        cold.append(dt)
        r2, dt2 = _timed(lambda: solve(nxt, warm_start=res, max_iters=max(5, max_iters // 4)), sync)
        warm.append(dt2)
    assert res is not None
    viol = kernels.check_result(pb, res)
    row: dict[str, Any] = {
        "J": J, "T": T, "gpus": int(np.asarray(pb.pool_gpus)[:, 0].sum()), "backend": backend, "device": device,
        "energy": problem_source(pb), "solve_s_median": statistics.median(cold), "solve_s_all": cold,
        "replan_warm_s_median": statistics.median(warm), "iterations": res.iterations, "status": res.status,
        "objective": res.objective, "lower_bound": res.lower_bound, "gap": res.gap,
        "carbon_g": res.carbon_g_total, "unfinished_gpu_s": res.unfinished_gpu_s,
        "replan_warm_gap": r2.gap, "violations": viol,
    }
    if backend == "numpy":
        tracemalloc.start()
        kernels.plan(pb, max_iters=max_iters)
        row["peak_mem_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    if baseline_numpy and backend != "numpy":
        base = [_timed(lambda: kernels.plan(pb, max_iters=max_iters))[1] for _ in range(max(1, runs // 2))]
        row["numpy_solve_s_median"] = statistics.median(base)
        row["speedup_vs_numpy"] = row["numpy_solve_s_median"] / row["solve_s_median"]
    if J <= highs_max_j:
        from benchmarks.reference import solve_lp

        lp, lp_s = _timed(lambda: solve_lp(pb, time_limit_s=highs_limit_s))
        row.update({"highs_status": lp.status, "highs_s": lp_s, "highs_objective": lp.objective,
                    "highs_carbon_g": lp.carbon_g})
        if lp.status == "optimal":
            row["gap_to_highs_lp"] = (res.objective - lp.objective) / abs(lp.objective)
            row["carbon_vs_highs_lp"] = res.carbon_g_total / lp.carbon_g - 1.0
            row["speedup_vs_highs"] = lp_s / row["solve_s_median"]
    return row


def to_markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    head = ("| J | T | GPUs | backend | solve s (median) | warm re-plan s | gap to own bound | carbon t | "
            "HiGHS LP s | gap to LP | carbon vs LP | speed-up vs HiGHS | peak MB |")
    out = [f"Machine: {meta['machine']}; runs per size: {meta['runs']}; energy: {rows[0]['energy'] if rows else ''}",
           "", head, "|" + "---|" * 13]

    def f(x: Any, fmt: str) -> str:
        return format(x, fmt) if isinstance(x, (int, float)) else "–"

    for r in rows:
        out.append(
            f"| {r['J']} | {r['T']} | {r['gpus']} | {r['backend']}/{r['device']} | {f(r['solve_s_median'], '.3f')} | "
            f"{f(r['replan_warm_s_median'], '.3f')} | {f(100 * r['gap'], '.2f')}% | {f(r['carbon_g'] / 1e6, '.2f')} | "
            f"{f(r.get('highs_s'), '.1f')}{'' if r.get('highs_status', 'optimal') == 'optimal' else ' (' + r['highs_status'] + ')'} | "
            f"{f(100 * r['gap_to_highs_lp'], '.2f') + '%' if 'gap_to_highs_lp' in r else '–'} | "
            f"{f(100 * r['carbon_vs_highs_lp'], '+.2f') + '%' if 'carbon_vs_highs_lp' in r else '–'} | "
            f"{f(r.get('speedup_vs_highs'), '.0f')} | {f(r.get('peak_mem_mb'), '.0f')} |"
        )
    if any("speedup_vs_numpy" in r for r in rows):
        out += ["", "| J | numpy s (same run) | torch s | GPU/CPU speed-up |", "|---|---|---|---|"]
        for r in rows:
            if "speedup_vs_numpy" in r:
                out.append(f"| {r['J']} | {r['numpy_solve_s_median']:.3f} | {r['solve_s_median']:.4f} | {r['speedup_vs_numpy']:.1f}x |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000,5000,20000,50000")
    ap.add_argument("--slots", default="96,192")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--backend", default="numpy", choices=["numpy", "torch"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--baseline-numpy", action="store_true", help="time numpy on the same instance too")
    ap.add_argument("--highs-max-j", type=int, default=5000)
    ap.add_argument("--highs-time-limit", type=float, default=120.0)
    ap.add_argument("--max-iters", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="out/optimizer")
    a = ap.parse_args(argv)
    rows = []
    for T in (int(x) for x in a.slots.split(",")):
        for J in (int(x) for x in a.sizes.split(",")):
            row = run_case(J, T, runs=a.runs, backend=a.backend, device=a.device, highs_max_j=a.highs_max_j,
                           highs_limit_s=a.highs_time_limit, baseline_numpy=a.baseline_numpy, seed=a.seed,
                           max_iters=a.max_iters)
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "solve_s_all"}), flush=True)
    meta = {"machine": f"{platform.machine()} {os.cpu_count()} CPUs, {platform.python_version()}", "runs": a.runs,
            "argv": sys.argv[1:]}
    if a.backend == "torch" and a.device.startswith("cuda"):
        import torch

        meta["machine"] += f", {torch.cuda.get_device_name(0)}"
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "optimizer.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1, default=str))
    (out / "optimizer.md").write_text(to_markdown(rows, meta))
    print(to_markdown(rows, meta))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
