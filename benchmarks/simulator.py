"""Simulator speed: how long a replay takes, and what dominates it (cProfile).

Cases (issue 2):

1. ``itp60``: 60 days of the real ITP cluster04 trace plus the Azure-derived inference service on the
   1,024-GPU site ``benchmarks/sites/itp-1024.yaml``, real NL energy from 2023-01-02, policy backfill.
   Aim: under 60 s on the 2-core development machines.
2. ``r100k``: 7 days on ``rotterdam-100k`` with cluster04 amplified by ``site GPUs / 1024`` (traces.amplify:
   each training job replicated that many times with a seeded +-1 h submit jitter); the inference service
   is sized to 10 % of the site by traces.load_workload already, so offered load per GPU matches case 1.
3. ``r100k-backlog`` (issue 13: the policy's time a tick "on rotterdam-100k with 50,000 jobs in the
   system"): the first ``--backlog-jobs`` amplified cluster04 training jobs arriving over the first 2 h,
   replayed ``--days`` (default 0.5) with ``--policy``. Not part of ``all``.

Every case reports ``per_tick``: the policy's milliseconds a tick (median, p95, max) in bands of jobs in the
system (queued + running) at that tick, wall (``policy_ms_*``) and the process CPU of its ``decide``
(``policy_cpu_ms_*``: on a loaded machine wall counts the other processes' turns too), split into the part inside
``kernels.plan`` (``plan_cpu_ms_*``) and the policy's own Python around it (``own_cpu_ms_*``), and the policy's CPU per
simulated day. ``--queue-window F|none``, ``--witness-at-scale`` and ``--scale-cells`` set the windward
policy's scale path (scheduler.policies.windward: the queue window and the witness above SCALE_CELLS
job-slot cells), to measure one setting against another in the same run.

``--windows N`` (itp60; the guard of a plan change): the replay on N windows of ``--days`` of the real trace and
energy, ``WINDOW_STRIDE_DAYS`` apart (``--procs`` at once), with each figure's median across the windows
(``guard``); ``--compare OLD.json`` (an earlier such run, other code) adds the windows' paired differences
(``compare``). ``--start-day D``: one replay from day D of the trace and the energy.

Prints one JSON object: per case the wall time, slots per second, jobs, and the top functions by
cumulative time. Run: ``.venv/bin/python benchmarks/simulator.py [--case itp60|r100k|all] [--days N]``;
``--case r100k-backlog --policy windward --no-profile`` for the policy's time a tick at 50,000 jobs.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import cProfile
import io
import json
import pstats
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from scheduler import signals, traces
from scheduler.control import run_simulation, slots_for_days
from scheduler.models import load_site
from scheduler.paths import nl_energy_csv
from scheduler.policies import get_policy
from scheduler.report import summary

HERE = Path(__file__).resolve().parent
START = datetime(2023, 1, 2, tzinfo=UTC)


def _top(prof: cProfile.Profile, n: int = 12) -> list[dict[str, object]]:
    st = pstats.Stats(prof, stream=io.StringIO())
    rows = []
    for (file, line, fn), (_cc, _nc, tt, ct, _callers) in st.stats.items():  # type: ignore[attr-defined]
        rows.append({"function": f"{Path(file).name}:{line}({fn})", "tottime_s": round(tt, 3), "cumtime_s": round(ct, 3)})
    rows.sort(key=lambda r: -float(r["tottime_s"]))  # type: ignore[arg-type]
    return rows[:n]


class _CpuTimed:
    """The policy, with the process CPU time of each ``decide`` kept (``cpu_s``): on a loaded machine the wall
    time a tick reports counts the other processes' turns too. ``plan_cpu_s``: the part of each in
    ``kernels.plan`` (the optimiser; the rest is the policy's own Python), while :meth:`plans_timed` is entered."""

    def __init__(self, policy: Any) -> None:
        self.policy, self.cpu_s, self.plan_cpu_s = policy, [], []
        self._in_plan = 0.0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.policy, name)

    def decide(self, snapshot: Any) -> Any:
        self._in_plan = 0.0
        c0 = time.process_time()
        try:
            return self.policy.decide(snapshot)
        finally:
            self.cpu_s.append(time.process_time() - c0)
            self.plan_cpu_s.append(self._in_plan)

    @contextlib.contextmanager
    def plans_timed(self) -> Iterator[None]:
        """``kernels.plan`` timed while inside (the policies call it through the module attribute)."""
        import kernels

        real = kernels.plan

        def timed(*args: Any, **kwargs: Any) -> Any:
            c0 = time.process_time()
            try:
                return real(*args, **kwargs)
            finally:
                self._in_plan += time.process_time() - c0

        kernels.plan = timed  # type: ignore[assignment]
        try:
            yield
        finally:
            kernels.plan = real  # type: ignore[assignment]


def per_tick(reports: list, cpu_s: list[float] | None = None, plan_cpu_s: list[float] | None = None) -> dict:
    """The policy's time per tick against the jobs in the system (queued + running) at that tick.

    Issue 13's target is a per-tick figure at a given load (at most 1 s a tick on ``rotterdam-100k`` with
    50,000 jobs in the system), so the ticks are also reported in bands of jobs in the system. With
    ``plan_cpu_s`` (the CPU of each tick inside ``kernels.plan``), the CPU splits into ``plan_cpu_ms_*`` and the
    policy's own Python around it, ``own_cpu_ms_*`` (the CPU of ``decide`` less the plan's).
    """
    ms = np.array([1e3 * r.decide_s for r in reports], dtype=np.float64)
    jobs = np.array([r.queued + r.running for r in reports], dtype=np.int64)
    cpu = None if cpu_s is None or len(cpu_s) != ms.size else 1e3 * np.asarray(cpu_s, dtype=np.float64)
    plan = None if cpu is None or plan_cpu_s is None or len(plan_cpu_s) != ms.size else (
        1e3 * np.asarray(plan_cpu_s, dtype=np.float64))
    if ms.size == 0:
        return {}

    def stats(sel: np.ndarray) -> dict:
        if not sel.any():
            return {"ticks": 0}
        out = {"ticks": int(sel.sum()), "policy_ms_median": round(float(np.median(ms[sel])), 1),
               "policy_ms_p95": round(float(np.percentile(ms[sel], 95)), 1),
               "policy_ms_max": round(float(ms[sel].max()), 1),
               "jobs_in_system_median": int(np.median(jobs[sel]))}
        if cpu is not None:  # the process CPU of each decide (wall above)
            out |= {"policy_cpu_ms_median": round(float(np.median(cpu[sel])), 1),
                    "policy_cpu_ms_p95": round(float(np.percentile(cpu[sel], 95)), 1),
                    "policy_cpu_ms_max": round(float(cpu[sel].max()), 1)}
        if plan is not None and cpu is not None:  # the optimiser's part and the policy's own
            own = cpu - plan
            out |= {"plan_cpu_ms_median": round(float(np.median(plan[sel])), 1),
                    "plan_cpu_ms_p95": round(float(np.percentile(plan[sel], 95)), 1),
                    "own_cpu_ms_median": round(float(np.median(own[sel])), 1),
                    "own_cpu_ms_p95": round(float(np.percentile(own[sel], 95)), 1)}
        return out

    bands = {"all": stats(np.ones(ms.size, dtype=bool))}
    for lo, hi in ((0, 10_000), (10_000, 30_000), (30_000, 50_000), (50_000, None)):
        key = f"{lo}+" if hi is None else f"{lo}-{hi}"
        bands[key] = stats((jobs >= lo) & ((jobs < hi) if hi is not None else True))
    bands["jobs_in_system_max"] = int(jobs.max())
    return bands


def backlog(site: Any, n_jobs: int, burst_s: float) -> tuple[list, str]:
    """``n_jobs`` training jobs in the system at once (issue 13's load point for the policy's time a tick).

    The first ``n_jobs`` of ITP cluster04's training jobs amplified to the site (``traces.amplify``), their
    submissions compressed in order into the first ``burst_s`` seconds (each job keeps its own deadline slack
    and run time), plus the inference service of the replay's span. Nothing is invented beyond the timing:
    it is the trace's own jobs, arriving as a backlog.
    """
    src_days = 4.0
    while True:
        jobs, desc = traces.load_workload("itp:cluster04", site, src_days, start_utc=START)
        train = traces.amplify([j for j in jobs if j.kind != "inference"], site.total_gpus / 1024.0, seed=0)
        if len(train) >= n_jobs or src_days >= 64:
            break
        src_days *= 2
    train = sorted(train, key=lambda j: (j.submit_s, j.job_id))[:n_jobs]
    last = max(j.submit_s for j in train) or 1.0
    out = []
    for j in train:
        sub = j.submit_s * burst_s / last
        dl = None if j.deadline_s is None else sub + (j.deadline_s - j.submit_s)
        out.append(replace(j, submit_s=sub, deadline_s=dl))
    inf = [j for j in jobs if j.kind == "inference"]
    desc = (f"backlog: the first {len(out):,} training jobs of ITP cluster04 ({src_days:g} days, amplified "
            f"x{site.total_gpus / 1024.0:.2f} by traces.amplify) submitted over the first {burst_s / 3600:g} h, "
            f"deadline slack kept; + the Azure-derived inference service")
    return sorted([*out, *inf], key=lambda j: (j.submit_s, j.job_id)), desc


#: ``--windows N``: the itp60 replay on N windows of ``--days`` each, starting this many days apart in the ITP trace
#: and the energy data (0, 6, 12, ... days after ``START``; 6, not 7, so that the windows start on different weekdays).
#: One window is a poor guard of a plan change: the control loop amplifies small plan changes. Round 16 (H5), 95fdb13,
#: 10 windows of 3 days (0-54), windward: STARTS_MAX_SPENT -10% / +10%, a budget and no rule, moved 5 / 6 of the
#: windows, by -122..+113 jobs done (of 326-1,501 a window), -1.6..+3.4% g/GPU-h and -188..+53 preemptions (each
#: figure's median across the windows' differences: 0; over all windows jobs done -52 / -39 of 7,598, g/GPU-h -0.06% /
#: +0.04%, preemptions -209 / +78 of 2,833); +1% moved one window by one job. Day 0, the one window judged until now,
#: moved 0 / -31 jobs. So a change is judged on the windows' paired differences (:func:`compare`): their medians, and
#: how many windows move each way, against that spread. 10 windows: ~250 s CPU in all.
WINDOW_STRIDE_DAYS = 6.0
#: the span of the ITP cluster04 trace in days (its last submission at 59.5 d): every window ends inside it
TRACE_DAYS = 59.5
#: the figures of a replay that the windows' guard reports (their medians across windows, :func:`guard`) and
#: compares window by window (:func:`compare`)
GUARD_KEYS = ("jobs_done", "training_done", "work_done_gpu_h", "grid_carbon_g_per_gpu_h", "deadline_misses",
              "preemptions")


def window_starts(n: int, days: float) -> list[float]:
    """The start days of ``n`` windows of ``days`` (``WINDOW_STRIDE_DAYS`` apart, the first at day 0)."""
    starts = [i * WINDOW_STRIDE_DAYS for i in range(n)]
    if n < 1 or starts[-1] + days > TRACE_DAYS:
        raise ValueError(f"{n} windows of {days:g} days {WINDOW_STRIDE_DAYS:g} days apart do not fit the "
                         f"{TRACE_DAYS:g}-day trace")
    return starts


def guard(cases: list[dict]) -> dict:
    """The windows' replays summed up: per :data:`GUARD_KEYS` figure its median across the windows, the carbon
    per GPU-h pooled (all windows' carbon over all their work), the jobs done and the misses in all, and the
    replays' CPU in all (``cpu_s``)."""
    res = [c["result"] for c in cases]
    work = sum(r["work_done_gpu_h"] for r in res)
    return {"windows": [c["start_day"] for c in cases],
            "median": {k: float(np.median([r[k] for r in res])) for k in GUARD_KEYS},
            "jobs_done": sum(r["jobs_done"] for r in res), "training_done": sum(r["training_done"] for r in res),
            "deadline_misses": sum(r["deadline_misses"] for r in res),
            "grid_carbon_g_per_gpu_h": 1000.0 * sum(r["grid_carbon_kg"] for r in res) / work if work > 0 else None,
            "cpu_s": round(sum(c["simulate_cpu_s"] for c in cases), 1)}


def compare(new: list[dict], old: list[dict]) -> dict:
    """Two runs of the same windows (``--compare``: ``old`` from an earlier run's JSON), window by window: per
    :data:`GUARD_KEYS` figure the median of new - old across the windows and the windows where it went up and
    down. A change is judged on these paired differences (the windows differ from each other far more than a
    change moves any one of them)."""
    by_day = {c["start_day"]: c["result"] for c in old}
    if sorted(by_day) != sorted(c["start_day"] for c in new):
        raise ValueError(f"the runs cover other windows: {sorted(by_day)} vs {sorted(c['start_day'] for c in new)}")
    out: dict[str, Any] = {}
    for k in GUARD_KEYS:
        dk = [c["result"][k] - by_day[c["start_day"]][k] for c in new]
        out[k] = {"median_delta": float(np.median(dk)), "up": sum(x > 0 for x in dk), "down": sum(x < 0 for x in dk),
                  "deltas": dk}
    return out


def window(site: Any, days: float, start_day: float = 0.0) -> tuple[Any, list, str]:
    """The real energy (``days`` + 1 from ``START`` + ``start_day``) and the ITP cluster04 jobs submitted in
    ``[start_day, start_day + days)`` days of the trace (``submit_s`` from the window's start), with the
    inference service placed on the same clock: one replay window."""
    start = START + timedelta(days=start_day)
    actual = signals.load_energy(str(nl_energy_csv()), site, start, days + 1)
    jobs, desc = traces.load_workload("itp:cluster04", site, days, start_s=start_day * 86400.0, start_utc=start)
    return actual, jobs, desc


def run_case(name: str, site_spec: str, days: float, amplify: float | None, policy: str, profile: bool,
             backlog_jobs: int = 0, policy_kw: dict[str, Any] | None = None, start_day: float = 0.0) -> dict:
    """One replay. ``start_day``: the window starts that many days into the ITP trace and the energy data
    (``START`` + that many days; the backlog case ignores it)."""
    site = load_site(site_spec)
    t_load = time.perf_counter()
    factor = amplify if amplify is not None else 1.0
    if backlog_jobs:
        actual = signals.load_energy(str(nl_energy_csv()), site, START, days + 1)
        jobs, desc = backlog(site, backlog_jobs, burst_s=2 * 3600.0)
    else:
        actual, jobs, desc = window(site, days, start_day)
    if factor != 1.0 and not backlog_jobs:
        # the inference service is already sized to the site (10 % of its GPUs); only training is amplified
        jobs = traces.amplify(jobs, factor, seed=0, scale_inference=False)
        desc += f"; training amplified x{factor:.2f} (traces.amplify)"
    load_s = time.perf_counter() - t_load
    n_slots = slots_for_days(site, days)
    prof = cProfile.Profile() if profile else None
    if prof:
        prof.enable()
    t0 = time.perf_counter()
    c0 = time.process_time()
    pol = _CpuTimed(get_policy(policy, **(policy_kw or {})))
    with pol.plans_timed():
        res = run_simulation(site, jobs, actual, pol, n_slots=n_slots)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0
    if prof:
        prof.disable()
    s = summary(res, clairvoyant=False)  # the LP bound is not the simulator (tens of s of CPU at 60 days)
    return {
        "case": name,
        "site": site.name,
        "gpus": site.total_gpus,
        "days": days,
        "start_day": start_day,
        "slots": n_slots,
        "policy": policy,
        "policy_kw": policy_kw or {},
        "amplify": factor,
        "jobs": len(jobs),
        "workload": desc,
        "load_s": round(load_s, 3),
        "simulate_s": round(wall, 3),
        "slots_per_s": round(n_slots / wall, 1),
        "policy_s": round(s["policy_s"], 3),
        "policy_s_per_day": round(s["policy_s"] / days, 1),
        "simulate_cpu_s": round(cpu, 3),
        "policy_cpu_s": round(sum(pol.cpu_s), 3),
        "policy_cpu_s_per_day": round(sum(pol.cpu_s) / days, 1),
        "per_tick": per_tick(res.reports, pol.cpu_s, pol.plan_cpu_s),
        "profiled": profile,
        "result": {k: s[k] for k in ("grid_carbon_kg", "cap_violations", "jobs_done", "training_done", "jobs_submitted",
                                     "gpu_utilisation", "inference_served_pct", "work_done_gpu_h",
                                     "grid_carbon_g_per_gpu_h", "deadline_misses", "preemptions", "work_lost_h")},
        "top_tottime": _top(prof) if prof else None,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", choices=["itp60", "r100k", "r100k-backlog", "all"], default="all")
    ap.add_argument("--backlog-jobs", type=int, default=50_000,
                    help="r100k-backlog: training jobs arriving over the first 2 h (default 50,000)")
    ap.add_argument("--days", type=float, default=None, help="override the case's days")
    ap.add_argument("--policy", default="backfill")
    ap.add_argument("--no-profile", action="store_true", help="time without cProfile overhead")
    ap.add_argument("--queue-window", default=None,
                    help="windward: queue_window_fraction at scale (a number, or 'none' for no window)")
    ap.add_argument("--witness-at-scale", default=None, choices=["auto", "always", "never"],
                    help="windward: the optimiser's witness mode at scale")
    ap.add_argument("--scale-cells", type=int, default=None, help="windward: job-slot cells above which it is at scale")
    ap.add_argument("--start-day", type=float, default=0.0,
                    help="itp60 / r100k: start the replay this many days into the trace and the energy data")
    ap.add_argument("--windows", type=int, default=None,
                    help=f"itp60: replay N windows {WINDOW_STRIDE_DAYS:g} days apart (the guard of a plan change)")
    ap.add_argument("--procs", type=int, default=1, help="--windows: replays run at once (processes)")
    ap.add_argument("--compare", default=None,
                    help="--windows: an earlier run's JSON (other code, the same windows): paired differences")
    a = ap.parse_args(argv)
    if a.windows is not None and a.case != "itp60":
        ap.error("--windows is an option of --case itp60")
    if (a.compare or a.procs != 1) and a.windows is None:
        ap.error("--compare and --procs go with --windows")
    if a.windows is not None and a.start_day:
        ap.error("--windows starts its windows at day 0, 6, 12, ...: no --start-day")
    kw: dict[str, Any] = {}
    if a.queue_window is not None:
        kw["queue_window_fraction"] = None if a.queue_window == "none" else float(a.queue_window)
    if a.witness_at_scale is not None:
        kw["witness_at_scale"] = a.witness_at_scale
    if a.scale_cells is not None:
        kw["scale_cells"] = a.scale_cells
    if kw and a.policy != "windward":
        ap.error("--queue-window, --witness-at-scale and --scale-cells are options of the windward policy")
    out = []
    extra: dict[str, Any] = {}
    itp = ("itp60", str(HERE / "sites" / "itp-1024.yaml"), a.days or 60.0, None, a.policy, not a.no_profile)
    if a.windows is not None:
        try:
            starts = window_starts(a.windows, itp[2])
        except ValueError as e:
            ap.error(str(e))
        with concurrent.futures.ProcessPoolExecutor(max(1, a.procs)) as ex:
            out = [f.result() for f in [ex.submit(run_case, *itp, policy_kw=kw, start_day=d) for d in starts]]
        extra["guard"] = guard(out)
        if a.compare:
            extra["compare"] = compare(out, json.loads(Path(a.compare).read_text())["cases"])
    elif a.case in ("itp60", "all"):
        out.append(run_case(*itp, policy_kw=kw, start_day=a.start_day))
    if a.case in ("r100k", "all"):
        site = load_site("rotterdam-100k")
        out.append(run_case("r100k", "rotterdam-100k", a.days or 7.0, site.total_gpus / 1024.0, a.policy,
                            not a.no_profile, policy_kw=kw, start_day=a.start_day))
    if a.case == "r100k-backlog":  # not part of "all": a load point for the policy's time a tick
        out.append(run_case("r100k-backlog", "rotterdam-100k", a.days or 0.5, None, a.policy, not a.no_profile,
                            backlog_jobs=a.backlog_jobs, policy_kw=kw))
    json.dump({"machine_cores": __import__("os").cpu_count(), "cases": out, **extra}, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
