"""Backend parity of ``kernels.plan``: the same problems planned on numpy and on torch (CPU or CUDA), the plans
compared field by field (issue 11: "the torch backend gives the same plans").

    python benchmarks/backend_parity.py --device cpu --corpus 200 --chains 40 --shared --big 50000 --out out/parity
    python benchmarks/backend_parity.py --device cuda --corpus 20 --chains 1 --big 50000 --big-ticks 1 --time --out $OUT

Cases: the first ``--corpus`` instances of the seed-0 corpus (``corpus(200, seed=0, n_jobs=(8, 32),
n_slots=(12, 32))``, the corpus the measurements use), cold; the first ``--chains`` warm chains of
``corpus(40, seed=5, n_jobs=(20, 40))`` (cold then ``--chain-ticks`` warm ticks, each backend warm-started from
its own previous result: the suite's warm chains); with ``--shared`` the two published instances, cold; with
``--big J`` ``make_problem(J, 192)`` cold then ``--big-ticks`` warm ticks (the hot path of 50,000 x 192). Every
tick of every case is one JSON line: ``same`` (every plan array, every scalar and every diagnostic but the
backend's name equal, bit for bit), the cells of ``run``, ``pool`` and ``power_fraction`` that differ, the
objective's relative difference, and which diagnostics differ (their numpy and torch values where short).
``--time`` also times each plan (process CPU and wall, the device synchronised). Writes ``parity.jsonl`` (one
line per tick) and ``parity.json`` (a summary, the lines included) to ``--out``; exit 0 where every tick is the
same plan (CPU: bit for bit; CUDA: :func:`close_enough`), 1 otherwise.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

import kernels  # noqa: E402
from kernels.backend import Ops  # noqa: E402

#: the PlanResult fields compared (every one but ``diagnostics``, compared key by key below)
ARRAYS = ("run", "power_fraction", "pool", "work_done_s", "finished", "facility_w", "grid_import_w", "carbon_g",
          "busy_gpus", "dual_price_g_per_gpu_h")
SCALARS = ("status", "reason", "carbon_g_total", "unfinished_gpu_s", "objective", "lower_bound", "gap", "iterations")
#: diagnostics that name the backend, not the plan
NOT_COMPARED = ("backend", "device")
#: on CUDA the reductions add in another order, so a tie can break the other way: a plan counts as the same with
#: its objective within this relative difference and at least this share of its run cells equal, the same variant
#: (the tolerances of the suite's CUDA parity tests, tests/kernels/test_backend.py)
CUDA_REL_TOL = 1e-6
CUDA_RUN_SHARE = 0.999


def _canon(v: Any) -> Any:
    """A diagnostic value in a form that compares exactly (arrays as lists, numpy scalars as Python ones)."""
    if isinstance(v, dict):
        return {k: _canon(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_canon(x) for x in v]
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    return v


def _short(v: Any, n: int = 200) -> Any:
    s = json.dumps(v, default=str)
    return v if len(s) <= n else s[:n] + "..."


def diff(a: Any, b: Any) -> dict[str, Any]:
    """How the plan ``b`` (torch) differs from ``a`` (numpy): per array field the cells that differ, per scalar
    field both values, per diagnostic (key by key, one level into dicts) both values; empty where they are the
    same bit for bit."""
    out: dict[str, Any] = {}
    for f in ARRAYS:
        x, y = np.asarray(getattr(a, f)), np.asarray(getattr(b, f))
        if x.shape != y.shape:
            out[f] = {"shape": [list(x.shape), list(y.shape)]}
        elif not np.array_equal(x, y, equal_nan=x.dtype.kind == "f"):
            out[f] = {"cells": int((x != y).sum()), "of": int(x.size)}
    for f in SCALARS:
        x, y = getattr(a, f), getattr(b, f)
        if not (x == y or (isinstance(x, float) and np.isnan(x) and np.isnan(y))):
            out[f] = [x, y]
    da, db = a.diagnostics, b.diagnostics
    for k in sorted(set(da) | set(db)):
        if k in NOT_COMPARED:
            continue
        x, y = _canon(da.get(k, "<missing>")), _canon(db.get(k, "<missing>"))
        if x == y:
            continue
        if isinstance(x, dict) and isinstance(y, dict):
            for k2 in sorted(set(x) | set(y)):
                if x.get(k2, "<missing>") != y.get(k2, "<missing>"):
                    out[f"diagnostics.{k}.{k2}"] = [_short(x.get(k2, "<missing>")), _short(y.get(k2, "<missing>"))]
        else:
            out[f"diagnostics.{k}"] = [_short(x), _short(y)]
    return out


def sha(r: Any) -> str:
    """The plan's fingerprint (run, power fractions and pools; the measurement scripts' sha)."""
    return hashlib.sha256(np.asarray(r.run).tobytes() + np.asarray(r.power_fraction).tobytes()
                          + np.asarray(r.pool).tobytes()).hexdigest()[:12]


def summary_of(a: Any, b: Any) -> dict[str, Any]:
    """The plans' distance in numbers (the backends' plans of one problem)."""
    return {"objective_rel_diff": abs(a.objective - b.objective) / max(abs(a.objective), 1e-9),
            "run_cells_differ": int((np.asarray(a.run) != np.asarray(b.run)).sum()), "cells": int(np.size(a.run)),
            "pool_differ": int((np.asarray(a.pool) != np.asarray(b.pool)).sum()),
            "power_cells_differ": int((np.asarray(a.power_fraction) != np.asarray(b.power_fraction)).sum()),
            "variant": [a.diagnostics.get("primal_variant"), b.diagnostics.get("primal_variant")],
            "sha": [sha(a), sha(b)]}


def close_enough(s: dict[str, Any]) -> bool:
    """CUDA's parity (:func:`summary_of`): the same variant, the objective within ``CUDA_REL_TOL``, at least
    ``CUDA_RUN_SHARE`` of the run cells equal."""
    return (s["variant"][0] == s["variant"][1] and s["objective_rel_diff"] <= CUDA_REL_TOL
            and s["run_cells_differ"] <= (1.0 - CUDA_RUN_SHARE) * s["cells"])


def _timed(sync: Any, *args: Any, **kw: Any) -> tuple[Any, float, float]:
    """``kernels.plan(*args, **kw)``, its process CPU and wall seconds (the device synchronised around it)."""
    sync()
    c0, w0 = time.process_time(), time.perf_counter()
    r = kernels.plan(*args, **kw)
    sync()
    return r, time.process_time() - c0, time.perf_counter() - w0


def cases(a: argparse.Namespace) -> Iterator[tuple[str, Any, int]]:
    """(name, problem, warm ticks after the cold plan) of every case asked for."""
    from benchmarks.instances import SHARED_INSTANCES, corpus, load_shared, make, make_problem

    for i, (seed, k) in enumerate(corpus(200, seed=0, n_jobs=(8, 32), n_slots=(12, 32))[:a.corpus]):
        if i >= a.corpus_from:
            yield f"corpus-{i}", make(seed, k), 0
    for i, (seed, k) in enumerate(corpus(40, seed=5, n_jobs=(20, 40))[:a.chains]):
        yield f"chain-{i}", make(seed, k), a.chain_ticks
    if a.shared:
        from scheduler.errors import DataNotFoundError

        for name in SHARED_INSTANCES:
            try:
                pb = load_shared(name)
            except (DataNotFoundError, ValueError, OSError) as e:  # (no shared data here: WINDWARD_DATA_DIR)
                print(f"--shared: {name} skipped: {e}", file=sys.stderr)
                continue
            yield name, pb, 0
    for J in (int(x) for x in a.big.split(",") if x):
        yield f"make_problem-{J}x{a.big_slots}", make_problem(J, a.big_slots, seed=0), a.big_ticks


def run(a: argparse.Namespace) -> int:
    from benchmarks.instances import problem_source, shift_problem

    xp = kernels.backend.get_ops("torch", a.device)
    sync = xp.synchronize
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    lines: list[dict[str, Any]] = []
    cuda = a.device != "cpu"
    with open(out / "parity.jsonl", "w") as f:
        for name, pb, ticks in cases(a):
            pa = pt = None
            q = pb
            for tick in range(ticks + 1):  # the cold plan, then the warm ticks
                ra, ca, wa = _timed(Ops().synchronize, q, warm_start=pa)
                rt, ct, wt = _timed(sync, q, warm_start=pt, backend="torch", device=a.device)
                d, s = diff(ra, rt), summary_of(ra, rt)
                line = {"case": name, "tick": tick, "J": q.n_jobs, "T": q.n_slots, "source": problem_source(pb),
                        "same": not d,
                        "close": close_enough(s), **s, "diff": d}
                if a.time:
                    line.update({"numpy_cpu_s": ca, "numpy_wall_s": wa, "torch_cpu_s": ct, "torch_wall_s": wt})
                lines.append(line)
                f.write(json.dumps(line, default=str) + "\n")
                f.flush()
                print(json.dumps({k: v for k, v in line.items() if k != "diff"} | {"differ": sorted(d)},
                                 default=str), flush=True)
                pa, pt = ra, rt
                if tick < ticks:
                    q = shift_problem(q, 1)
    ok = [ln["close"] if cuda else ln["same"] for ln in lines]
    import torch

    summ = {"device": a.device, "torch": torch.__version__, "numpy": np.__version__,
            "gpu": torch.cuda.get_device_name(a.device) if cuda else None,
            "machine": f"{platform.machine()} {os.cpu_count()} CPUs, {platform.python_version()}",
            "argv": sys.argv[1:], "ticks": len(lines), "same": sum(ln["same"] for ln in lines),
            "close": sum(ln["close"] for ln in lines), "ok": all(ok),
            "differ": [{"case": ln["case"], "tick": ln["tick"], "fields": sorted(ln["diff"])}
                       for ln in lines if not ln["same"]]}
    if a.time:
        for be in ("numpy", "torch"):
            summ[f"{be}_cpu_s"] = sum(ln[f"{be}_cpu_s"] for ln in lines)
            summ[f"{be}_wall_s"] = sum(ln[f"{be}_wall_s"] for ln in lines)
    (out / "parity.json").write_text(json.dumps({"summary": summ, "lines": lines}, indent=1, default=str))
    print(json.dumps(summ, default=str))
    return 0 if summ["ok"] else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", help="torch's device: cpu, cuda or cuda:N")
    ap.add_argument("--corpus", type=int, default=200, help="first N of the seed-0 corpus (0-200)")
    ap.add_argument("--corpus-from", type=int, default=0, help="skip the corpus instances before this one")
    ap.add_argument("--chains", type=int, default=40, help="first N warm chains of corpus(40, seed=5) (0-40)")
    ap.add_argument("--chain-ticks", type=int, default=3, help="warm ticks after each chain's cold plan")
    ap.add_argument("--shared", action="store_true", help="the two published instances too")
    ap.add_argument("--big", default="", help="make_problem sizes J (comma-separated), cold then --big-ticks warm")
    ap.add_argument("--big-slots", type=int, default=192)
    ap.add_argument("--big-ticks", type=int, default=3)
    ap.add_argument("--time", action="store_true", help="time each plan (process CPU and wall)")
    ap.add_argument("--out", default="out/parity")
    a = ap.parse_args(argv)
    try:
        kernels.backend.get_ops("torch", a.device)
    except ValueError as e:
        print(f"--device {a.device}: {e}", file=sys.stderr)
        return 2
    return run(a)


if __name__ == "__main__":
    raise SystemExit(main())
