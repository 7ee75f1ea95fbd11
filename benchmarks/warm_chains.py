"""Issue 11 on the warm path: warm re-plans (what the control loop runs every tick) against the EDF greedy.

    python benchmarks/warm_chains.py --family 40 --ticks 3 --out out/warm            # small family chains
    python benchmarks/warm_chains.py --sizes 50000 --seeds 0,1,2 --ticks 3 --out out/warm50k
    python benchmarks/warm_chains.py --family 40 --out out/warm_new --compare out/warm_old/warm_chains.json

A chain is a cold ``kernels.plan`` followed by ``--ticks`` re-plans, each of the instance one slot later
(``benchmarks.instances.shift_problem``) warm-started from the result returned before, as the rolling-horizon
policy does. ``--family N``: the chains of ``corpus(N, seed=5, n_jobs=(20, 40))`` (tests/kernels/test_warm_witness.py's
family; ``--family-seed`` another one). ``--sizes J,...``: real-shaped instances at scale
(``make_problem(J, --slots, seed)`` for each of ``--seeds``). Every solve (cold and warm) is checked
(``kernels.check_result``) and judged against ``kernels.greedy_plan`` of the same instance
(tests/kernels/_family.py's ``outcome``): jobs the greedy finishes and the plan does not ("lost"), more late
jobs than the greedy's, more unfinished work (GPU-h), and where the plan is behind on unfinished work, whether
its objective is above the greedy's (a plan that defers work for less carbon is below it). Reports counts over
the warm ticks, the process CPU of the solves, and per solve the objective and a plan hash, so that
``--compare`` says how many solves gave the same plan as an earlier run. Writes ``warm_chains.json`` and
``warm_chains.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

import kernels  # noqa: E402
from benchmarks.instances import corpus, make, make_problem, shift_problem  # noqa: E402
from benchmarks.optimizer import plan_sha  # noqa: E402
from tests.kernels._family import REL_TOL as REL  # noqa: E402  (the relative tolerance of the dominance judgement)
from tests.kernels._family import outcome  # noqa: E402


def judge_tick(q: Any, res: Any, cpu_s: float) -> dict[str, Any]:
    """One solve against the greedy of the same instance."""
    gr = kernels.greedy_plan(q)
    po, go = outcome(q, res), outcome(q, gr)
    behind = po["unfinished_gpu_s"] > go["unfinished_gpu_s"] * (1 + REL) + 1e-6
    return {
        "violations": len(kernels.check_result(q, res)), "cpu_s": cpu_s, "objective": float(res.objective),
        "greedy_objective": go["objective"], "plan_sha": plan_sha(res),
        "lost_jobs": int((go["finished"] & ~po["finished"]).sum()),
        "more_late": po["late_jobs"] > go["late_jobs"], "late": po["late_jobs"], "greedy_late": go["late_jobs"],
        "behind_on_work": bool(behind), "unfinished_gpu_h": po["unfinished_gpu_s"] / 3600,
        "greedy_unfinished_gpu_h": go["unfinished_gpu_s"] / 3600,
        "behind_above_greedy_objective": bool(behind and po["objective"] > go["objective"] * (1 + REL)),
    }


def chain(pb: Any, name: str, ticks: int) -> list[dict[str, Any]]:
    out = []
    c0 = time.process_time()
    res = kernels.plan(pb)
    out.append({"chain": name, "tick": 0, "warm": False, **judge_tick(pb, res, time.process_time() - c0)})
    q = pb
    for k in range(1, ticks + 1):  # the policy's ticks
        q = shift_problem(q, 1)
        c0 = time.process_time()
        res = kernels.plan(q, warm_start=res)
        out.append({"chain": name, "tick": k, "warm": True, **judge_tick(q, res, time.process_time() - c0)})
    return out


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    warm = [r for r in rows if r["warm"]]
    return {
        "chains": len({r["chain"] for r in rows}), "warm_ticks": len(warm), "violations": sum(r["violations"] for r in rows),
        "jobs_lost": sum(r["lost_jobs"] for r in warm), "ticks_losing_jobs": sum(r["lost_jobs"] > 0 for r in warm),
        "ticks_more_late": sum(r["more_late"] for r in warm),
        "ticks_behind_on_work": sum(r["behind_on_work"] for r in warm),
        "ticks_behind_above_greedy_objective": sum(r["behind_above_greedy_objective"] for r in warm),
        "cold_cpu_s": sum(r["cpu_s"] for r in rows if not r["warm"]), "warm_cpu_s": sum(r["cpu_s"] for r in warm),
        "warm_cpu_median": float(np.median([r["cpu_s"] for r in warm])) if warm else float("nan"),
    }


def compare(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> dict[str, Any]:
    by = {(r["chain"], r["tick"]): r for r in old}
    both = [(by[k], r) for r in new if (k := (r["chain"], r["tick"])) in by]
    return {"matched": len(both), "same_plan": sum(o["plan_sha"] == n["plan_sha"] for o, n in both),
            "lower": [f"{n['chain']} tick {n['tick']}" for o, n in both if n["objective"] < o["objective"] * (1 - 1e-9)],
            "higher": [f"{n['chain']} tick {n['tick']}" for o, n in both if n["objective"] > o["objective"] * (1 + 1e-9)]}


def markdown(sm: dict[str, Any], rows: list[dict[str, Any]], meta: dict[str, Any], cmp: dict[str, Any] | None) -> str:
    out = [f"Machine: {meta['machine']}; load average {meta['load_average']}; command: "
           f"`python benchmarks/warm_chains.py {' '.join(meta['argv'])}`", "",
           "| chains | warm ticks | violations | jobs lost (ticks) | ticks more late | ticks behind on unfinished work "
           "(of them above the greedy's objective) | CPU s cold / warm (warm median) |", "|" + "---|" * 7,
           f"| {sm['chains']} | {sm['warm_ticks']} | {sm['violations']} | {sm['jobs_lost']} ({sm['ticks_losing_jobs']}) | "
           f"{sm['ticks_more_late']} | {sm['ticks_behind_on_work']} ({sm['ticks_behind_above_greedy_objective']}) | "
           f"{sm['cold_cpu_s']:.1f} / {sm['warm_cpu_s']:.1f} ({sm['warm_cpu_median']:.3f}) |", ""]
    behind = [r for r in rows if r["warm"] and (r["behind_on_work"] or r["lost_jobs"] or r["more_late"])]
    if behind:
        out += ["Warm ticks behind the greedy:", "", "| chain | tick | jobs lost | late plan / greedy | unfinished GPU-h "
                "plan / greedy | objective plan / greedy |", "|" + "---|" * 6]
        out += [f"| {r['chain']} | {r['tick']} | {r['lost_jobs']} | {r['late']} / {r['greedy_late']} | "
                f"{r['unfinished_gpu_h']:.2f} / {r['greedy_unfinished_gpu_h']:.2f} | "
                f"{r['objective']:.6g} / {r['greedy_objective']:.6g} |" for r in behind]
        out.append("")
    if cmp is not None:
        out.append(f"Against {meta['compare']}: {cmp['matched']} solves matched, the same plan on {cmp['same_plan']}; "
                   f"objective lower on {len(cmp['lower'])} ({', '.join(cmp['lower'][:10]) or 'none'}), higher on "
                   f"{len(cmp['higher'])} ({', '.join(cmp['higher'][:10]) or 'none'}).")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--family", type=int, default=0, metavar="N", help="chains of the small family's first N members")
    ap.add_argument("--family-seed", type=int, default=5)
    ap.add_argument("--sizes", default="", help="chains of real-shaped instances with these job counts")
    ap.add_argument("--slots", type=int, default=192)
    ap.add_argument("--seeds", default="0", help="--sizes: instance seeds, comma-separated")
    ap.add_argument("--ticks", type=int, default=3, help="warm re-plans per chain")
    ap.add_argument("--compare", default=None, metavar="WARM_CHAINS_JSON", help="an earlier run's warm_chains.json")
    ap.add_argument("--out", default="out/warm_chains")
    a = ap.parse_args(argv)
    try:
        sizes = [int(x) for x in a.sizes.split(",") if x.strip()]
        seeds = [int(x) for x in a.seeds.split(",") if x.strip()]
    except ValueError:
        print(f"--sizes/--seeds: got {a.sizes!r} / {a.seeds!r}; allowed: comma-separated integers", file=sys.stderr)
        return 2
    if a.family < 0 or a.ticks < 1 or (not a.family and not sizes) or any(J < 1 for J in sizes):
        print("give --family N (N >= 1) and/or --sizes J,... (J >= 1), and --ticks >= 1", file=sys.stderr)
        return 2
    old = None
    if a.compare:  # read before the run: a wrong file fails at once, not after it
        try:
            old = json.loads(Path(a.compare).read_text())["rows"]
            assert isinstance(old, list) and all("plan_sha" in r for r in old)
        except (OSError, ValueError, KeyError, TypeError, AssertionError) as e:
            print(f"--compare {a.compare}: not a warm_chains.json ({type(e).__name__}: {e})", file=sys.stderr)
            return 2
    rows: list[dict[str, Any]] = []
    if a.family:
        for i, case in enumerate(corpus(a.family, seed=a.family_seed, n_jobs=(20, 40))):
            rows += chain(make(*case), f"family-{i}", a.ticks)
    for J in sizes:
        for s in seeds:
            rows += chain(make_problem(J, a.slots, seed=s), f"J{J}-T{a.slots}-s{s}", a.ticks)
            print(json.dumps(rows[-1]), flush=True)
    meta = {"machine": f"{platform.machine()} {os.cpu_count()} CPUs, {platform.python_version()}",
            "load_average": tuple(round(x, 2) for x in os.getloadavg()), "argv": sys.argv[1:] if argv is None else argv,
            "compare": a.compare}
    cmp = compare(old, rows) if old is not None else None
    sm = summary(rows)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "warm_chains.json").write_text(json.dumps({"meta": meta, "summary": sm, "compare": cmp, "rows": rows},
                                                     indent=1, default=str))
    md = markdown(sm, rows, meta, cmp)
    (out / "warm_chains.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
