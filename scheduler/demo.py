"""The ``windward demo`` driver: real workloads on an executor (Ray, in the CLI) through the control loop and
the planner, over a replayed day of energy, compared with a carbon-agnostic run of the same slice.

No ray import here: the CLI hands in a factory that builds the Ray executor (``scheduler/cli/demo.py``).
Anything with the :class:`~scheduler.executors.base.Executor` interface plus ``now_s`` and ``event_log``
works, which is how the unit tests drive it with the simulated executor.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from scheduler import signals, traces
from scheduler.control import ControlLoop, SimulationResult, TickReport, run_simulation
from scheduler.energy import EnergySeries
from scheduler.errors import InputError
from scheduler.jobs import Job, pool_matches
from scheduler.models import Site, load_site
from scheduler.policies import DEFAULT_POLICY, make_policy

log = logging.getLogger(__name__)

DEFAULT_START_UTC = datetime(2024, 3, 4, tzinfo=UTC)
SERVICE_ID = "inference-service"
MAX_TRAINING_JOBS = 16  # keeps live Ray job actors around ten on a 2-core machine
#: a demo job must be able to finish by this share of the run at full power (submit + duration), so the
#: workload drains within the window with room to shift and both runs do the same work (issue 13)
DRAIN_SHARE = 0.7
#: wall seconds the demo waits after its last slot for the jobs' last reports (the executor's clock stands at the
#: run's end; the inference service's serving of the last slot is reported at the slot's very end)
FINAL_REPORTS_S = 1.0


@dataclass(frozen=True, slots=True)
class DemoConfig:
    n_slots: int = 96
    #: wall seconds per 15-minute slot: 96 slots replay in 96 s (the live view redraws 4 times a slot)
    seconds_per_slot: float = 1.0
    energy: str | None = None  # None: the embedded calibrated model; else an energy CSV path
    trace: str | None = None  # None: the embedded workload model; else a trace spec (see traces.load_workload)
    seed: int = 0
    start_utc: datetime = DEFAULT_START_UTC
    policy: str = DEFAULT_POLICY
    horizon_slots: int = 96
    out_dir: Path = Path("demo-out")


@dataclass
class DemoResult:
    report: dict[str, Any]
    report_path: Path
    plot_path: Path
    baseline_summary: dict[str, Any]
    ray_summary: dict[str, Any]
    policy_used: str
    extra: dict[str, Any] = field(default_factory=dict)


def demo_workload(site: Site, cfg: DemoConfig) -> tuple[list[Job], str, list[float], str]:
    """Training jobs from the workload model that can finish by ``DRAIN_SHARE`` of the run (at most
    MAX_TRAINING_JOBS, earliest first) plus one inference service for the whole run: the workload drains, so
    the demo compares equal work. Returns (jobs, description, request rates per second per slot, rate
    source)."""
    days = cfg.n_slots * site.slot_s / 86400.0
    jobs, desc = traces.load_workload(cfg.trace, site, days, seed=cfg.seed, start_utc=cfg.start_utc)
    run_s = cfg.n_slots * site.slot_s
    fits = [j for j in jobs if j.kind != "inference" and j.submit_s + j.duration_s <= DRAIN_SHARE * run_s]
    training = fits[:MAX_TRAINING_JOBS]
    chain = [j for j in jobs if j.kind == "inference"]
    service_gpus = max((j.gpus for j in chain), default=2)
    service = Job(SERVICE_ID, "inference", "inference", 0.0, service_gpus, cfg.n_slots * site.slot_s,
                  preemptible=False, priority=10)
    rates, rate_src = _service_rates(site, cfg, chain)
    desc += (f"; first {len(training)} training jobs that can finish by {DRAIN_SHARE:.0%} of the run + one "
             f"{service_gpus}-GPU inference service ({rate_src})")
    return [*training, service], desc, rates, rate_src


def _service_rates(site: Site, cfg: DemoConfig, chain: list[Job]) -> tuple[list[float], str]:
    from scheduler.paths import azure_llm_csv, shared_data_available
    from scheduler.workloads.inference import azure_request_rates_per_s

    if shared_data_available() and azure_llm_csv().is_file():
        per_min = azure_request_rates_per_s(azure_llm_csv(), bin_s=60.0)
        # one trace minute per slot, cycled: the trace's minute-to-minute variability at slot resolution
        return [float(per_min[i % per_min.size]) for i in range(cfg.n_slots)], "Azure LLM trace, req/min per slot"
    gpus = np.zeros(cfg.n_slots)
    for j in chain:
        s = int(j.submit_s // site.slot_s)
        if 0 <= s < cfg.n_slots:
            gpus[s] += j.gpus
    return [float(x) * 2.0 for x in gpus], "embedded inference model (2 req/s per demanded GPU)"


class _ExecClock:
    def __init__(self, executor: Any) -> None:
        self._ex = executor

    def now_s(self) -> float:
        return float(self._ex.now_s)


def _sovereign_pools(site: Site) -> set[str]:
    return {p.name for p in site.pools if p.labels.get("clearance") == "secret"}


def execution_summary(site: Site, loop: ControlLoop, event_log: list[Any]) -> dict[str, Any]:
    """Preemptions, resumes, failures and work lost (from the executor's events), and sovereign placements."""
    sov = _sovereign_pools(site)
    sov_jobs = [r for r in loop.records.values() if all(not pool_matches(p, r.job) for p in site.pools if p.name not in sov)]
    placed = [r for r in sov_jobs if r.pools_by_slot]
    outside = [r.job.job_id for r in placed if any(p not in sov for p in r.pools_by_slot)]
    return {
        "preemptions": sum(1 for e in event_log if e.kind == "preempted"),
        "resumes": sum(1 for e in event_log if e.kind == "resumed"),
        "failures": sum(1 for e in event_log if e.kind == "failed"),
        "work_lost_s": float(sum(e.lost_s for e in event_log if e.kind in ("preempted", "failed"))),
        "sovereign_jobs": len(sov_jobs),
        "sovereign_jobs_placed": len(placed),
        "sovereign_slots_in_pool": sum(len(r.pools_by_slot) for r in placed),
        "sovereign_placements_outside": outside,
        "jobs_done": sum(1 for r in loop.records.values() if r.state == "finished"),
        "jobs_submitted": len(loop.records),
        "cap_violations": len(loop.violations),
    }


def run_demo(
    make_executor: Callable[..., Any],
    cfg: DemoConfig,
    on_tick: Callable[[TickReport, ControlLoop, EnergySeries], None] | None = None,
    on_start: Callable[[Mapping[str, Any]], None] | None = None,
    timer: Callable[[], float] = time.perf_counter,
    should_stop: Callable[[], bool] | None = None,
) -> DemoResult:
    """Run the demo. ``make_executor(site, time_scale=..., workload_params=...)`` builds the executor; it is
    closed here, in a ``finally``, whatever happens (Ctrl-C included). ``should_stop``: asked before every
    slot; when it says yes the run ends there with KeyboardInterrupt, at a point where no Ray call is in
    flight (the CLI's Ctrl-C sets it, so the interrupt never lands inside Ray's client code)."""
    from scheduler.report import build_report, write_plot

    t_all = timer()
    if cfg.n_slots < 1 or cfg.n_slots > 96 * 7:
        raise InputError(f"--slots {cfg.n_slots}: must be in 1..672")
    if not cfg.seconds_per_slot > 0:
        raise InputError(f"--seconds-per-slot {cfg.seconds_per_slot}: must be > 0")
    site = load_site("demo")
    days = (cfg.n_slots + cfg.horizon_slots) * site.slot_s / 86400.0
    actual = signals.load_energy(cfg.energy, site, cfg.start_utc, days, seed=cfg.seed)
    jobs, desc, rates, rate_src = demo_workload(site, cfg)
    horizon_h = cfg.horizon_slots * site.slot_s / 3600.0
    policy = make_policy(cfg.policy, horizon_h, run_end_s=cfg.n_slots * site.slot_s, fallback=True)
    time_scale = site.slot_s / cfg.seconds_per_slot
    # the service reports its progress ten times a slot (its default, a hundredth of its duration, is most of a
    # slot here: the last slot's serving would not be seen before the run ends)
    params = {"inference": {"rates_per_s": rates, "rate_period_s": float(site.slot_s), "capacity_rps": 100.0,
                            "tick_s": site.slot_s / 10.0}}
    phases: dict[str, float] = {}  # wall seconds of each step (report "phases_s"; the CLI prints them)
    # The carbon-agnostic comparison (simulated executor, no Ray) and its clairvoyant bound do not depend on
    # the Ray run: they are computed in a thread while Ray starts (a start mostly waits on Ray's processes).
    side = ThreadPoolExecutor(max_workers=1, thread_name_prefix="demo-baseline")
    base_future = side.submit(_baseline, site, jobs, actual, horizon_h, cfg, timer)
    t0 = timer()
    try:
        ex = make_executor(site, time_scale=time_scale, workload_params=params)
    except BaseException:
        side.shutdown(wait=False, cancel_futures=True)
        raise
    t_ready = timer()
    phases["ray_start_s"] = t_ready - t0
    try:
        if on_start is not None:
            on_start({"site": site, "energy": actual.source, "workload": desc, "jobs": len(jobs),
                      "policy": getattr(policy, "name", cfg.policy), "time_scale": time_scale})
        loop = ControlLoop(site, ex, policy, _ExecClock(ex), jobs=jobs)
        fc = signals.PerfectForecaster(actual)
        t_replay = timer()
        for s in range(cfg.n_slots):
            if should_stop is not None and should_stop():
                raise KeyboardInterrupt("stop requested")
            rep = loop.tick(actual.window(s, 1), fc.forecast(s, cfg.horizon_slots))
            if on_tick is not None:
                on_tick(rep, loop, actual)
        if getattr(ex, "slot_clock", False):  # a real-time executor on the slot clock
            time.sleep(FINAL_REPORTS_S)
        loop.collect_last_slot()
        phases["replay_s"] = timer() - t_replay
        wall = timer() - t0
        ray_exec = execution_summary(site, loop, list(ex.event_log))
    finally:
        t_close = timer()
        try:
            ex.close()
        finally:
            phases["ray_shutdown_s"] = timer() - t_close
            side.shutdown(wait=False, cancel_futures=True)
    policy_used = getattr(policy, "name", cfg.policy)
    res = SimulationResult(site, policy_used, loop, actual, cfg.n_slots, cfg.horizon_slots, "perfect", wall, loop.reports)
    t_wait = timer()
    base_summary, base_exec, phases["baseline_s"] = base_future.result()
    phases["baseline_wait_s"] = timer() - t_wait  # what the baseline added after the replay (0 when it overlapped)
    t_report = timer()
    report = build_report(
        res, workload_description=desc, assignment_rule=traces.ASSIGNMENT_RULE,
        extra={"kind": "demo", "executor": type(ex).__name__, "seconds_per_slot": cfg.seconds_per_slot,
               "inference_rates": rate_src, "execution": ray_exec,
               # slots that ended after the slot grid said, the tick before them having taken more than
               # MIN_SLOT_SHARE of the slot (the Ray executor's jobs' clock stands still through a tick: the
               # replay took longer, no work went uncharged)
               "stretched_slots": int(getattr(ex, "stretched_slots", 0)),
               "carbon_agnostic_baseline": {"policy": "backfill", "executor": "simulated", "summary": base_summary,
                                            "execution": base_exec}},
    )
    phases["report_s"] = timer() - t_report  # includes the Ray run's clairvoyant bound
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    import json

    t_plot = timer()
    plot_path = write_plot(report, cfg.out_dir / "demo-report.png")
    phases["plot_s"] = timer() - t_plot
    phases["total_s"] = timer() - t_all
    report["phases_s"] = {k: round(v, 3) for k, v in phases.items()}
    report_path = cfg.out_dir / "demo-report.json"
    report_path.write_text(json.dumps(report, allow_nan=False, default=str))
    log.info("demo phases (s): %s", report["phases_s"])
    return DemoResult(report, report_path, plot_path, base_summary, ray_exec, policy_used)


def _baseline(site: Site, jobs: list[Job], actual: EnergySeries, horizon_h: float, cfg: DemoConfig,
              timer: Callable[[], float]) -> tuple[dict[str, Any], dict[str, Any], float]:
    """The carbon-agnostic run of the same jobs and energy (``backfill`` on the simulated executor), its
    summary (with its clairvoyant bound) and execution figures, and the wall seconds it took."""
    from scheduler.report import summary

    t = timer()
    base = run_simulation(site, jobs, actual, make_policy("backfill", horizon_h), n_slots=cfg.n_slots,
                          horizon_slots=cfg.horizon_slots)
    base_summary = summary(base)
    base_exec = execution_summary(site, base.loop, list(base.loop.executor.event_log))  # type: ignore[attr-defined]
    return base_summary, base_exec, timer() - t
