"""Optimiser scaling benchmark: kernels.plan on real-shaped instances, HiGHS LP in the same run as baseline.

    python benchmarks/optimizer.py --sizes 1000,5000,20000,50000 --slots 96,192 --runs 3 --out out/opt
    python benchmarks/optimizer.py --backend torch --device cuda --sizes 5000,20000,50000,100000 --slots 192

For every (J, T): median cold solve time over ``--runs`` runs; median warm re-plan time over a chain of
``--ticks`` ticks as the rolling-horizon policy does it (each tick the instance one slot later, warm-started
from the previous tick's result, ``--warm-iters`` dual iterations), wall clock AND process CPU time (the
machine is shared: CPU time is what the solve costs, wall time what it took under the load); carbon,
objective, certified gap to its own lower bound (cold and the warm ticks' median); peak traced memory of one
solve; one dual iteration's time against the bytes it must stream and this machine's memory bandwidth
(a large numpy copy measured in the same run); and where J <= ``--highs-max-j`` the HiGHS LP relaxation
(``benchmarks.reference.solve_lp``, time-limited) timed in the same run: gap to the LP optimum, carbon
against the LP's carbon, and the speed-up. With ``--baseline-numpy`` (torch runs) the numpy backend is timed
on the same instance in the same run. Writes ``optimizer.json`` and ``optimizer.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
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


def _timed_cpu(fn: Any, sync: Any = None) -> tuple[Any, float, float]:
    """(result, wall s, process CPU s)."""
    c0 = time.process_time()
    r, wall = _timed(fn, sync)
    return r, wall, time.process_time() - c0


def memory_bandwidth_gb_s(n_bytes: int = 400 * 2**20, reps: int = 5) -> float:
    """Copy bandwidth of this machine now (read + write bytes per second, median of ``reps``): the
    streaming ceiling one numpy pass can reach, measured in the same run as the solves."""
    a = np.ones(n_bytes // 8)
    b = np.empty_like(a)
    ts = []
    for _ in range(reps):  # repeated copies for the median
        t0 = time.perf_counter()
        np.copyto(b, a)
        ts.append(time.perf_counter() - t0)
    return 2 * a.nbytes / statistics.median(ts) / 1e9


def dual_iteration_stream(pb: Any, reps: int = 5, backend: str = "numpy", device: str = "cpu",
                          sync: Any = None) -> dict[str, float]:
    """One coarse dual iteration on ``backend``/``device`` timed alone (median of ``reps``, the device
    synchronised), and the bytes it must stream at least: the per-job arrays it reads (class, release,
    deadline, work, value, late drop, GPUs: 7 x 8 B per job, each read once per bisection step: 10 steps)
    and its prefix tables (E x (T + 1) x 257 x 8 B, written and read twice)."""
    from kernels import planner as P

    sync = sync or (lambda: None)
    c = P._clean_inputs(pb)
    assert not isinstance(c, str)
    pr = P._prepare(c)
    xp = P.get_ops(backend, device)
    jb = P._Jobs(xp, c, pr)
    lam, mu = c.kappa.copy(), np.zeros((c.P, c.T))
    P._dual_coarse(xp, c, pr, jb, lam, mu)  # warm-up
    ts = []
    for _ in range(reps):  # repeated iterations for the median
        sync()
        t0 = time.perf_counter()
        P._dual_coarse(xp, c, pr, jb, lam, mu)
        sync()
        ts.append(time.perf_counter() - t0)
    it_s = statistics.median(ts)
    job_bytes = 7 * 8 * jb.n * 10
    table_bytes = 2 * 4 * pr.E * (c.T + 1) * 257 * 8
    return {"dual_iteration_s": it_s, "dual_iteration_bytes": float(job_bytes + table_bytes),
            "dual_iteration_gb_s": (job_bytes + table_bytes) / it_s / 1e9}


STAGES = ("_ascend", "_bound_exact", "_primal", "_evaluate_plan")
STAGE_NAMES = {"_ascend": "dual ascent", "_bound_exact": "certified bound", "_primal": "plan construction",
               "_evaluate_plan": "plan evaluation"}


def stage_times(q: Any, warm_start: Any, *, backend: str, device: str, sync: Any = None, reps: int = 3,
                **kw: Any) -> dict[str, float]:
    """Where one warm re-plan spends its time: ``kernels.plan`` run ``reps`` times with its four stages
    (dual ascent, certified bound, plan construction, plan evaluation) wrapped in timers that synchronise
    the device; ``other`` is the rest (input checks, problem structure, the copy of the plan to the host).
    Medians in seconds. Timed in a separate pass so the wrappers do not touch the main timings."""
    from kernels import planner as P

    sync = sync or (lambda: None)
    orig = {k: getattr(P, k) for k in STAGES}
    acc: dict[str, float] = {}

    def wrap(name: str, fn: Any) -> Any:
        def timed(*a: Any, **k: Any) -> Any:
            sync()
            t0 = time.perf_counter()
            r = fn(*a, **k)
            sync()
            acc[name] = acc.get(name, 0.0) + time.perf_counter() - t0
            return r
        return timed

    per: dict[str, list[float]] = {k: [] for k in (*STAGES, "other", "total")}
    try:
        for k in STAGES:  # the four stages
            setattr(P, k, wrap(k, orig[k]))
        for _ in range(reps):  # repeated re-plans for the median
            acc.clear()
            sync()
            t0 = time.perf_counter()
            kernels.plan(q, warm_start=warm_start, backend=backend, device=device, **kw)
            sync()
            tot = time.perf_counter() - t0
            for k in STAGES:  # the four stages
                per[k].append(acc.get(k, 0.0))
            per["other"].append(tot - sum(acc.values()))
            per["total"].append(tot)
    finally:
        for k in STAGES:  # restore
            setattr(P, k, orig[k])
    return {k: statistics.median(v) for k, v in per.items()}


_VIEWS = {"aten::reshape", "aten::select", "aten::unsqueeze", "aten::lift_fresh", "aten::view", "aten::slice",
          "aten::detach", "aten::alias", "aten::expand", "aten::t", "aten::transpose", "aten::as_strided",
          "aten::numpy_T", "aten::permute", "aten::squeeze", "aten::_reshape_alias", "aten::empty_like",
          "aten::empty", "aten::empty_strided", "aten::resolve_conj", "aten::resolve_neg"}
_SYNCS = {"aten::nonzero", "aten::_local_scalar_dense", "aten::item", "aten::repeat_interleave"}


def torch_op_count(q: Any, warm_start: Any, *, device: str, **kw: Any) -> dict[str, int]:
    """What one warm re-plan on torch asks of the device, counted by torch's profiler: the top-level operators
    that run a kernel (views and allocations left out: on a GPU each of the rest is one launch or more, so
    their number times the launch cost is the floor of a re-plan's time), the points where the host waits
    for the device (nonzero, item / bool: data-dependent shapes and branches), and on CUDA the kernel
    launches themselves."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.startswith("cuda") else [])
    with profile(activities=acts) as prof:
        kernels.plan(q, warm_start=warm_start, backend="torch", device=device, **kw)
    evs = prof.events()
    top = [e for e in evs if e.cpu_parent is None and e.name.startswith("aten::")]
    out = {"torch_ops": sum(1 for e in top if e.name not in _VIEWS),
           "torch_sync_points": sum(1 for e in evs if e.name in _SYNCS)}
    if device.startswith("cuda"):
        out["cuda_kernel_launches"] = sum(1 for e in evs if e.name in ("cudaLaunchKernel", "cuLaunchKernel",
                                                                       "cudaLaunchKernelExC", "cuLaunchKernelEx"))
    return out


def device_bandwidth_gb_s(device: str, n_bytes: int = 2 * 2**30, reps: int = 5) -> float:
    """Copy bandwidth of a torch device (read + write bytes per second, median of ``reps``), measured in the
    same run as the solves: the ceiling one dual iteration's streaming is compared with."""
    import torch

    a = torch.ones(n_bytes // 8, dtype=torch.float64, device=device)
    b = torch.empty_like(a)
    ts = []
    for _ in range(reps + 1):  # first copy warms up
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        b.copy_(a)
        torch.cuda.synchronize()
        ts.append(time.perf_counter() - t0)
    del a, b
    return 2 * (n_bytes // 8) * 8 / statistics.median(ts[1:]) / 1e9


def highs_only(J: int, T: int, *, seed: int, time_limit_s: float, method: str = "ipm") -> dict[str, Any]:
    """The LP relaxation (``benchmarks.reference``'s model, objective unchanged) solved by highspy with
    ``method`` (``ipm``: interior point WITHOUT crossover, so the value is the IPM's to its tolerances),
    against ``kernels.plan`` (cold, default iterations) on the same instance in the same process."""
    import highspy

    from benchmarks.reference import _build

    pb = make_problem(J, T, seed=seed)
    res, plan_s = _timed(lambda: kernels.plan(pb))
    cb = kernels.carbon_bound(pb, res)
    t0 = time.perf_counter()
    m = _build(pb, integer=False)
    build_s = time.perf_counter() - t0
    a = m.a.tocsc()
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = int(a.shape[1]), int(a.shape[0])
    inf = highspy.kHighsInf
    lp.col_cost_ = np.asarray(m.c, np.float64)
    lp.col_lower_ = np.where(np.isfinite(m.lb), m.lb, -inf)
    lp.col_upper_ = np.where(np.isfinite(m.ub), m.ub, inf)
    lp.row_lower_ = np.where(np.isfinite(m.lo), m.lo, -inf)
    lp.row_upper_ = np.where(np.isfinite(m.hi), m.hi, inf)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = a.indptr.astype(np.int32)
    lp.a_matrix_.index_ = a.indices.astype(np.int32)
    lp.a_matrix_.value_ = a.data.astype(np.float64)
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("time_limit", float(time_limit_s))
    h.setOptionValue("solver", method)
    if method == "ipm":
        h.setOptionValue("run_crossover", "off")
    h.passModel(lp)
    t1 = time.perf_counter()
    h.run()
    highs_s = time.perf_counter() - t1
    status = h.modelStatusToString(h.getModelStatus())
    row: dict[str, Any] = {
        "J": J, "T": T, "gpus": int(np.asarray(pb.pool_gpus)[:, 0].sum()), "highs_method": method,
        "highs_crossover": method != "ipm", "highs_time_limit_s": time_limit_s, "highs_status": status,
        "highs_s": highs_s, "highs_build_s": build_s, "lp_cols": lp.num_col_, "lp_rows": lp.num_row_,
        "plan_s": plan_s, "plan_objective": res.objective, "plan_lower_bound": res.lower_bound,
        "plan_gap": res.gap, "plan_carbon_g": res.carbon_g_total,
        "plan_lower_bound_carbon_g": cb["lower_bound_carbon_g"], "plan_carbon_gap": cb["carbon_gap"],
        "load_average": os.getloadavg(),
    }
    if status == "Optimal":
        sol = np.asarray(h.getSolution().col_value)
        lp_obj = float(m.c @ sol)
        lp_carbon = float(m.carbon_coef @ sol[m.iy : m.iy + T])
        row.update({"highs_objective": lp_obj, "highs_carbon_g": lp_carbon,
                    "plan_above_lp": (res.objective - lp_obj) / abs(lp_obj),
                    "bound_below_lp": (lp_obj - res.lower_bound) / abs(lp_obj),
                    "carbon_vs_lp_carbon": res.carbon_g_total / lp_carbon - 1.0,
                    "speedup_vs_highs": highs_s / plan_s})
    return row


def _chain(pb: Any, *, runs: int, ticks: int, backend: str, device: str, sync: Any, max_iters: int | None,
           warm_iters: int | None, warm_patience: int | None) -> dict[str, Any]:
    """Cold solves (``runs``, after a warm-up) and a rolling-horizon chain of ``ticks`` warm re-plans, each
    tick the instance one slot later, warm-started from the previous tick's result."""
    def solve(q: Any, **kw: Any) -> Any:
        kw.setdefault("max_iters", max_iters)
        return kernels.plan(q, backend=backend, device=device, **kw)

    solve(pb)  # warm-up (imports, CUDA context, allocator)
    cold, cold_cpu = [], []
    res = None
    for _ in range(runs):  # repeated runs for the median
        res, dt, cpu = _timed_cpu(lambda: solve(pb), sync)
        cold.append(dt)
        cold_cpu.append(cpu)
    assert res is not None
    viol = kernels.check_result(pb, res)
    warm, warm_cpu, warm_gap, warm_res = [], [], [], []
    prev, q = res, pb
    for _ in range(ticks):  # policy ticks
        q = shift_problem(q, 1)
        r2, dt2, cpu2 = _timed_cpu(
            lambda: solve(q, warm_start=prev, max_iters=warm_iters, warm_patience=warm_patience), sync)
        viol += kernels.check_result(q, r2)
        warm.append(dt2)
        warm_cpu.append(cpu2)
        warm_gap.append(r2.gap)
        warm_res.append(r2)
        prev = r2
    return {"cold": cold, "cold_cpu": cold_cpu, "res": res, "warm": warm, "warm_cpu": warm_cpu,
            "warm_gap": warm_gap, "warm_res": warm_res, "viol": viol, "last_q": q}


def _parity(a: Any, b: Any) -> dict[str, float]:
    """How far two backends' plans of the same instance are apart."""
    return {"objective_rel_diff": abs(a.objective - b.objective) / max(abs(a.objective), 1e-9),
            "run_cells_equal": float((a.run == b.run).mean()), "pool_equal": float((a.pool == b.pool).mean()),
            "power_equal": float((a.power_fraction == b.power_fraction).mean())}


def run_case(J: int, T: int, *, runs: int, backend: str, device: str, highs_max_j: int, highs_limit_s: float,
             baseline_numpy: bool, seed: int, max_iters: int | None, warm_iters: int | None = None, ticks: int = 5,
             warm_patience: int | None = -1, bandwidth_gb_s: float | None = None,
             stages: bool = True) -> dict[str, Any]:
    pb = make_problem(J, T, seed=seed)
    sync = None
    if backend == "torch" and device.startswith("cuda"):
        import torch

        sync = torch.cuda.synchronize
    kw = dict(runs=runs, ticks=ticks, max_iters=max_iters, warm_iters=warm_iters, warm_patience=warm_patience)
    ch = _chain(pb, backend=backend, device=device, sync=sync, **kw)
    res, cold, warm, warm_gap = ch["res"], ch["cold"], ch["warm"], ch["warm_gap"]
    row: dict[str, Any] = {
        "J": J, "T": T, "gpus": int(np.asarray(pb.pool_gpus)[:, 0].sum()), "backend": backend, "device": device,
        "energy": problem_source(pb), "solve_s_median": statistics.median(cold), "solve_s_all": cold,
        "solve_cpu_s_median": statistics.median(ch["cold_cpu"]),
        "replan_warm_s_median": statistics.median(warm), "replan_warm_s_all": warm,
        "replan_warm_cpu_s_median": statistics.median(ch["warm_cpu"]),
        "warm_iters": warm_iters if warm_iters is not None else kernels.planner.WARM_ITERS,
        "warm_patience": warm_patience,
        "iterations": res.iterations, "status": res.status,
        "objective": res.objective, "lower_bound": res.lower_bound, "gap": res.gap,
        "carbon_g": res.carbon_g_total, "unfinished_gpu_s": res.unfinished_gpu_s,
        "replan_warm_gap": statistics.median(warm_gap), "replan_warm_gap_max": max(warm_gap),
        "violations": ch["viol"],
    }
    if stages and ticks:
        q, prev = ch["last_q"], ch["warm_res"][-2] if ticks > 1 else res
        row["stages_s"] = stage_times(q, prev, backend=backend, device=device, sync=sync, max_iters=warm_iters,
                                      warm_patience=warm_patience)
        if backend == "torch":
            row.update(torch_op_count(q, prev, device=device, max_iters=warm_iters, warm_patience=warm_patience))
    if backend == "numpy":
        tracemalloc.start()
        kernels.plan(pb, max_iters=max_iters)
        row["peak_mem_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    row.update(dual_iteration_stream(pb, backend=backend, device=device, sync=sync))
    if bandwidth_gb_s:
        row["bandwidth_gb_s"] = bandwidth_gb_s
        row["dual_iteration_share_of_bandwidth"] = row["dual_iteration_gb_s"] / bandwidth_gb_s
        # the plan as int8 (J, T) streamed once at the measured bandwidth vs the primal's time
        row["plan_stream_once_s"] = J * T / (bandwidth_gb_s * 1e9)
    if baseline_numpy and backend != "numpy":
        base = _chain(pb, backend="numpy", device="cpu", sync=None, **kw)
        row["numpy_solve_s_median"] = statistics.median(base["cold"])
        row["numpy_replan_warm_s_median"] = statistics.median(base["warm"])
        row["speedup_vs_numpy"] = row["numpy_solve_s_median"] / row["solve_s_median"]
        row["replan_speedup_vs_numpy"] = row["numpy_replan_warm_s_median"] / row["replan_warm_s_median"]
        row["parity_cold"] = _parity(base["res"], res)
        row["parity_warm_last"] = _parity(base["warm_res"][-1], ch["warm_res"][-1]) if ticks else None
        if stages and ticks:
            q, prev = base["last_q"], base["warm_res"][-2] if ticks > 1 else base["res"]
            row["numpy_stages_s"] = stage_times(q, prev, backend="numpy", device="cpu", max_iters=warm_iters,
                                                warm_patience=warm_patience)
    if J <= highs_max_j:
        from benchmarks.reference import solve_lp

        lp, lp_s = _timed(lambda: solve_lp(pb, time_limit_s=highs_limit_s))
        row.update({"highs_status": lp.status, "highs_s": lp_s, "highs_objective": lp.objective,
                    "highs_carbon_g": lp.carbon_g, "highs_time_limit_s": highs_limit_s})
        if lp.status == "optimal":
            row["gap_to_highs_lp"] = (res.objective - lp.objective) / abs(lp.objective)
            row["carbon_vs_highs_lp"] = res.carbon_g_total / lp.carbon_g - 1.0
            row["speedup_vs_highs"] = lp_s / row["solve_s_median"]
    return row


def f(x: Any, fmt: str) -> str:
    return format(x, fmt) if isinstance(x, (int, float)) and not (isinstance(x, float) and math.isnan(x)) else "–"


def to_markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    head = ("| J | T | GPUs | backend | cold s wall / CPU | warm re-plan s wall / CPU | gap cold | gap warm (max) | "
            "carbon t | HiGHS LP s | gap to LP | carbon vs LP | speed-up vs HiGHS | peak MB |")
    out = [f"Machine: {meta['machine']}; runs per size: {meta['runs']}; warm ticks: {meta.get('ticks')}; "
           f"copy bandwidth {f(meta.get('bandwidth_gb_s'), '.1f')} GB/s; energy: {rows[0]['energy'] if rows else ''}",
           "", head, "|" + "---|" * 14]

    for r in rows:
        out.append(
            f"| {r['J']} | {r['T']} | {r['gpus']} | {r['backend']}/{r['device']} | "
            f"{f(r['solve_s_median'], '.3f')} / {f(r.get('solve_cpu_s_median'), '.3f')} | "
            f"{f(r['replan_warm_s_median'], '.3f')} / {f(r.get('replan_warm_cpu_s_median'), '.3f')} | "
            f"{f(100 * r['gap'], '.2f')}% | {f(100 * r['replan_warm_gap'], '.2f')}% ({f(100 * r.get('replan_warm_gap_max', math.nan), '.2f')}%) | "
            f"{f(r['carbon_g'] / 1e6, '.2f')} | "
            f"{f(r.get('highs_s'), '.1f')}{'' if r.get('highs_status', 'optimal') == 'optimal' else ' (' + r['highs_status'] + ')'} | "
            f"{f(100 * r['gap_to_highs_lp'], '.2f') + '%' if 'gap_to_highs_lp' in r else '–'} | "
            f"{f(100 * r['carbon_vs_highs_lp'], '+.2f') + '%' if 'carbon_vs_highs_lp' in r else '–'} | "
            f"{f(r.get('speedup_vs_highs'), '.0f')} | {f(r.get('peak_mem_mb'), '.0f')} |"
        )
    if any("dual_iteration_s" in r for r in rows):
        out += ["", "| J | T | one dual iteration ms | MB it must stream | GB/s | share of copy bandwidth | "
                "plan (J x T int8) streamed once ms |", "|---|---|---|---|---|---|---|"]
        for r in rows:
            if "dual_iteration_s" in r:
                out.append(f"| {r['J']} | {r['T']} | {1e3 * r['dual_iteration_s']:.1f} | "
                           f"{r['dual_iteration_bytes'] / 1e6:.1f} | {r['dual_iteration_gb_s']:.2f} | "
                           f"{f(100 * r.get('dual_iteration_share_of_bandwidth', math.nan), '.1f')}% | "
                           f"{f(1e3 * r.get('plan_stream_once_s', math.nan), '.2f')} |")
    if any("speedup_vs_numpy" in r for r in rows):
        out += ["", "Same instances, same run: the numpy backend on this machine's CPU against the backend above.", "",
                "| J | T | numpy cold s | backend cold s | cold speed-up | numpy warm re-plan s | backend warm re-plan s | "
                "re-plan speed-up | objective rel. diff | run cells equal |", "|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            if "speedup_vs_numpy" in r:
                par = r.get("parity_cold") or {}
                out.append(f"| {r['J']} | {r['T']} | {r['numpy_solve_s_median']:.3f} | {r['solve_s_median']:.4f} | "
                           f"{r['speedup_vs_numpy']:.1f}x | {r['numpy_replan_warm_s_median']:.3f} | "
                           f"{r['replan_warm_s_median']:.4f} | {r['replan_speedup_vs_numpy']:.1f}x | "
                           f"{f(par.get('objective_rel_diff'), '.1e')} | {f(100 * par.get('run_cells_equal', math.nan), '.3f')}% |")
    if any("torch_ops" in r for r in rows):
        out += ["", "What one warm re-plan asks of the device (torch profiler): operators that run a kernel, points "
                "where the host waits for the device, CUDA kernel launches.", "",
                "| J | T | backend | operators | sync points | kernel launches | warm re-plan ms | µs per operator |",
                "|---|---|---|---|---|---|---|---|"]
        for r in rows:
            if "torch_ops" in r:
                out.append(f"| {r['J']} | {r['T']} | {r['backend']}/{r['device']} | {r['torch_ops']} | "
                           f"{r['torch_sync_points']} | {r.get('cuda_kernel_launches', '–')} | "
                           f"{1e3 * r['replan_warm_s_median']:.1f} | {1e6 * r['replan_warm_s_median'] / r['torch_ops']:.1f} |")
    if any("stages_s" in r for r in rows):
        out += ["", "Where one warm re-plan spends its time (median of 3, ms; the device synchronised around each stage):",
                "", "| J | T | backend | " + " | ".join(STAGE_NAMES[k] for k in STAGES) + " | other | total |",
                "|---|---|---|" + "---|" * (len(STAGES) + 2)]
        for r in rows:
            for key, be in (("stages_s", f"{r['backend']}/{r['device']}"), ("numpy_stages_s", "numpy/cpu")):
                st = r.get(key)
                if st:
                    out.append(f"| {r['J']} | {r['T']} | {be} | " + " | ".join(f"{1e3 * st[k]:.1f}" for k in STAGES)
                               + f" | {1e3 * st['other']:.1f} | {1e3 * st['total']:.1f} |")
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
    ap.add_argument("--highs-time-limit", type=float, default=150.0)
    ap.add_argument("--max-iters", type=int, default=None, help="dual iterations of a cold solve "
                    "(default: kernels.planner.COLD_ITERS)")
    ap.add_argument("--warm-iters", type=int, default=None, help="most dual iterations of a warm-started re-plan "
                    "(default: kernels.planner.WARM_ITERS; it stops after WARM_PATIENCE without progress)")
    ap.add_argument("--warm-patience", type=int, default=-1, help="warm re-plans stop after this many dual "
                    "iterations without progress (-1: kernels.planner.WARM_PATIENCE, 0: never stop early)")
    ap.add_argument("--highs-only", type=int, default=None, metavar="J",
                    help="only the HiGHS LP at J jobs (first of --slots) against kernels.plan on the same instance; "
                    "--highs-method, --highs-time-limit (default 300 s here); writes highs_J_T.json to --out")
    ap.add_argument("--highs-method", default="ipm", choices=["ipm", "simplex", "choose", "pdlp"],
                    help="HiGHS solver for --highs-only (ipm runs without crossover)")
    ap.add_argument("--ticks", type=int, default=5, help="warm-started re-plans (policy ticks) per size")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-stages", action="store_true", help="skip the per-stage timing of a warm re-plan")
    ap.add_argument("--out", default="out/optimizer")
    a = ap.parse_args(argv)
    if a.highs_only is not None:
        T0 = int(a.slots.split(",")[0])
        limit = a.highs_time_limit if "--highs-time-limit" in (argv if argv is not None else sys.argv) else 300.0
        row = highs_only(a.highs_only, T0, seed=a.seed, time_limit_s=limit, method=a.highs_method)
        out = Path(a.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"highs_{a.highs_only}_{T0}.json").write_text(json.dumps(row, indent=1, default=str))
        print(json.dumps(row, default=str))
        return 0
    try:
        kernels.backend.get_ops(a.backend, a.device)
    except ValueError as e:
        print(f"--backend {a.backend} --device {a.device}: {e}", file=sys.stderr)
        return 2
    bw = memory_bandwidth_gb_s()
    if a.backend == "torch" and a.device.startswith("cuda"):
        bw = device_bandwidth_gb_s(a.device)  # a dual iteration runs on the GPU: compare with its bandwidth
    rows = []
    for T in (int(x) for x in a.slots.split(",")):
        for J in (int(x) for x in a.sizes.split(",")):
            row = run_case(J, T, runs=a.runs, backend=a.backend, device=a.device, highs_max_j=a.highs_max_j,
                           highs_limit_s=a.highs_time_limit, baseline_numpy=a.baseline_numpy, seed=a.seed,
                           max_iters=a.max_iters, warm_iters=a.warm_iters, ticks=a.ticks, bandwidth_gb_s=bw,
                           warm_patience=None if a.warm_patience == 0 else a.warm_patience,
                           stages=not a.no_stages)
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "solve_s_all"}), flush=True)
    meta = {"machine": f"{platform.machine()} {os.cpu_count()} CPUs, {platform.python_version()}", "runs": a.runs,
            "ticks": a.ticks, "bandwidth_gb_s": bw, "load_average": os.getloadavg(), "argv": sys.argv[1:]}
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
