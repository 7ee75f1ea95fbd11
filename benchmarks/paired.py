"""Paired CPU timing of ``kernels.plan`` in two source trees on the same corpus instances.

    python benchmarks/paired.py --old /tmp/base --new . --seed 0 --instances 11,178,107 --reps 3
    python benchmarks/paired.py --old /tmp/base --new . --seed 2 --slowest 8 --from out/old_s2/corpus.json

A shared machine's load moves CPU times by 10-20% between runs minutes apart, so a corpus run of one tree
(``optimizer.py --corpus``) cannot tell a 3% change in speed. This times old and new alternately, instance by
instance (old, new, old, new, ...; ``--reps`` each), every solve in a fresh process (``PYTHONPATH`` = the tree,
so its ``kernels`` is the one imported, and an old tree need not have this script; the instance is ``benchmarks.instances.corpus(N, seed=S, n_jobs=(8, 32),
n_slots=(12, 32))[i]`` built in that process, the process CPU of ``kernels.plan(pb)`` alone is measured, after
one untimed solve of the same instance that pays for the imports' first calls). Reports per instance the median
of each tree, new / old, whether the plans agree (a hash of run, power_fraction and pool), and the maximum of the
medians. ``--slowest K --from CORPUS_JSON`` takes the K instances with the largest ``plan_cpu_s`` of a corpus run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

#: what one timing process runs (argv: corpus size, seed, index)
_CHILD = r"""
import hashlib, json, sys, time
import numpy as np
from benchmarks.instances import corpus, make
import kernels
n, seed, i = (int(x) for x in sys.argv[1:4])
pb = make(*corpus(n, seed=seed, n_jobs=(8, 32), n_slots=(12, 32))[i])
kernels.plan(pb)
c0 = time.process_time()
res = kernels.plan(pb)
cpu = time.process_time() - c0
h = hashlib.sha256()
for a in (res.run, res.power_fraction, res.pool):
    h.update(np.ascontiguousarray(np.asarray(a)).tobytes())
print(json.dumps({"cpu_s": cpu, "objective": float(res.objective), "plan_sha": h.hexdigest()[:16],
                  "kernels": kernels.__file__}))
"""


def time_once(tree: Path, n: int, seed: int, i: int) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(tree), OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    p = subprocess.run([sys.executable, "-c", _CHILD, str(n), str(seed), str(i)], cwd=tree, env=env,
                       capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{tree}: instance {i} failed (exit {p.returncode}): {p.stderr[-1500:]}")
    return dict(json.loads(p.stdout.strip().splitlines()[-1]))


def slowest(path: str, k: int, n: int, seed: int) -> list[int]:
    """Indices of the ``k`` rows of a corpus.json with the largest ``plan_cpu_s``."""
    rows = json.loads(Path(path).read_text())["groups"]["corpus"]
    base = seed * 100_003
    timed = [(float(r["plan_cpu_s"]), int(r["name"].split("-")[-1]) - base) for r in rows if "plan_cpu_s" in r]
    if not timed:
        raise SystemExit(f"--from {path}: no row records plan_cpu_s (written before it was recorded?)")
    idx = [i for _, i in sorted(timed, reverse=True)[:k]]
    bad = [i for i in idx if not 0 <= i < n]
    if bad:
        raise SystemExit(f"--from {path}: indices {bad} are outside the corpus of {n} at seed {seed}")
    return idx


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--old", required=True, help="the old source tree (a checkout)")
    ap.add_argument("--new", required=True, help="the new source tree")
    ap.add_argument("--seed", type=int, default=0, help="the corpus seed")
    ap.add_argument("--corpus", type=int, default=200, help="the corpus size (its members depend on it)")
    ap.add_argument("--instances", default="", help="corpus indices, comma-separated")
    ap.add_argument("--slowest", type=int, default=0, metavar="K", help="the K slowest of --from")
    ap.add_argument("--from", dest="from_json", default=None, metavar="CORPUS_JSON")
    ap.add_argument("--reps", type=int, default=3, help="solves per tree and instance (the median is reported)")
    ap.add_argument("--out", default=None, help="write the rows as JSON here")
    a = ap.parse_args(argv)
    trees = [Path(a.old).resolve(), Path(a.new).resolve()]
    for t in trees:
        if not (t / "kernels" / "__init__.py").is_file():
            print(f"--old/--new: {t} is not a Windward source tree (no kernels/__init__.py)", file=sys.stderr)
            return 2
    if a.reps < 1:
        print(f"--reps: got {a.reps}; allowed: an integer >= 1", file=sys.stderr)
        return 2
    try:
        idx = [int(x) for x in a.instances.split(",") if x.strip()]
    except ValueError:
        print(f"--instances: got {a.instances!r}; allowed: comma-separated corpus indices", file=sys.stderr)
        return 2
    if a.slowest:
        if not a.from_json:
            print("--slowest needs --from CORPUS_JSON (a corpus run whose rows record plan_cpu_s)", file=sys.stderr)
            return 2
        idx += [i for i in slowest(a.from_json, a.slowest, a.corpus, a.seed) if i not in idx]
    bad = [i for i in idx if not 0 <= i < a.corpus]
    if not idx or bad:
        print(f"--instances: got {idx}; allowed: indices 0..{a.corpus - 1} (or --slowest K --from ...)",
              file=sys.stderr)
        return 2
    rows = []
    print(f"old {trees[0]}, new {trees[1]}; seed {a.seed}; {a.reps} alternations; load {os.getloadavg()}")
    print("| instance | old CPU s (median) | new CPU s (median) | new / old | same plan |")
    print("|---|---|---|---|---|")
    for i in idx:
        runs: list[list[dict[str, Any]]] = [[], []]
        for _ in range(a.reps):
            for k, t in enumerate(trees):
                runs[k].append(time_once(t, a.corpus, a.seed, i))
        med = [statistics.median(r["cpu_s"] for r in rk) for rk in runs]
        same = runs[0][0]["plan_sha"] == runs[1][0]["plan_sha"]
        rows.append({"index": i, "name": f"corpus-{a.seed * 100_003 + i}", "old_cpu_s": [r["cpu_s"] for r in runs[0]],
                     "new_cpu_s": [r["cpu_s"] for r in runs[1]], "old_median": med[0], "new_median": med[1],
                     "old_objective": runs[0][0]["objective"], "new_objective": runs[1][0]["objective"],
                     "same_plan": same, "old_kernels": runs[0][0]["kernels"], "new_kernels": runs[1][0]["kernels"]})
        print(f"| {i} | {med[0]:.3f} | {med[1]:.3f} | {med[1] / med[0]:.3f} | {'yes' if same else 'no'} |", flush=True)
    mo, mn = max(r["old_median"] for r in rows), max(r["new_median"] for r in rows)
    print(f"\nslowest median: old {mo:.3f} s, new {mn:.3f} s; load {os.getloadavg()}")
    if a.out:
        Path(a.out).write_text(json.dumps({"old": str(trees[0]), "new": str(trees[1]), "seed": a.seed, "rows": rows},
                                          indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
