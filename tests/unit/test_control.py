"""The control loop: each step alone, the fast path against actual caps, accounting, failures."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pytest

from scheduler.control import ControlLoop, NodeEvent, TickReport, enforce_caps, run_simulation
from scheduler.energy import EnergySeries
from scheduler.errors import InputError
from scheduler.executors.simulated import SimulatedExecutor, VirtualClock
from scheduler.jobs import Job
from scheduler.models import load_site
from scheduler.planjson import check_plan, recompute_timeline
from scheduler.policies import get_policy
from scheduler.policies.base import Assignment, Decisions, Snapshot
from scheduler.policies.capacity import SitePower
from scheduler.report import build_report

SITE = load_site("demo")
PUB, SEC = "h100-eu-public", "h100-nl-secret"


def energy(n: int, wind_w: float = 60_000.0, cap_w: float = 25_000.0, carbon: float = 300.0) -> EnergySeries:
    return EnergySeries(
        start_utc=datetime(2023, 1, 1, tzinfo=timezone.utc),
        slot_s=900,
        wind_w=np.full(n, wind_w),
        carbon_g_per_kwh=np.full(n, carbon),
        price_eur_per_mwh=np.full(n, 50.0),
        grid_cap_w=np.full(n, cap_w),
        site_max_w=np.full(n, 50_000.0),
        source="hand-made test series",
    )


def tj(jid: str, gpus: int, dur: float = 3600.0, prio: int = 0, kind: str = "training", **kw) -> Job:
    return Job(jid, "t", kind, kw.pop("submit_s", 0.0), gpus, dur, priority=prio, **kw)


class Fixed:
    """A policy that returns what the test tells it to."""

    name = "fixed"

    def __init__(self, run: dict[str, Assignment]) -> None:
        self.run = run
        self.seen: list[Snapshot] = []

    def decide(self, snapshot: Snapshot) -> Decisions:
        self.seen.append(snapshot)
        return Decisions(run=dict(self.run))


def loop_with(jobs: list[Job], run: dict[str, Assignment]) -> ControlLoop:
    clock = VirtualClock()
    return ControlLoop(SITE, SimulatedExecutor(SITE, clock), Fixed(run), clock, jobs=jobs)


# ------------------------------------------------------------------------------------ fast path


def full_w(power: SitePower, gpus: int, f: float = 1.0) -> float:
    return power.base_w(np.array([16.0, 16.0])) + gpus * power.gpu_w(0, f)


def test_fast_path_lowers_power_before_preempting() -> None:
    power = SitePower(SITE)
    jobs = {"lo": tj("lo", 8, prio=0), "hi": tj("hi", 8, prio=5)}
    run = {"lo": Assignment(PUB, 1.0), "hi": Assignment(PUB, 1.0)}
    need = full_w(power, 16)
    budget = need - 8 * power.gpu_w(0, 1.0) * 0.3  # room for lowering only the low-priority job
    fp = enforce_caps(power, run, jobs, {}, {PUB: 16, SEC: 16}, wind_w=budget - 25_000, grid_cap_w=25_000, site_max_w=1e9)
    assert fp.dropped == ()
    assert [j for j, _, _ in fp.lowered] == ["lo"]
    assert fp.run["hi"].power_fraction == 1.0
    assert 0.4 <= fp.run["lo"].power_fraction < 1.0
    assert fp.facility_w == pytest.approx(budget)
    assert fp.violation_w == 0.0


def test_fast_path_preempts_lowest_priority_and_never_inference() -> None:
    power = SitePower(SITE)
    jobs = {
        "inf": tj("inf", 8, kind="inference", preemptible=False),
        "lo": tj("lo", 8, prio=0),
        "hi": tj("hi", 8, prio=3),
    }
    run = {k: Assignment(PUB if k != "hi" else SEC, 1.0) for k in jobs}
    # room for inference at full power plus 3 kW: lowering both others to 0.4 is not enough
    budget = full_w(power, 8) + 3000.0
    fp = enforce_caps(power, run, jobs, {"lo": PUB, "hi": SEC, "inf": PUB}, {PUB: 16, SEC: 16},
                      wind_w=0.0, grid_cap_w=budget, site_max_w=1e9)
    assert fp.dropped == ("lo",)
    assert set(fp.run) == {"inf", "hi"}
    assert fp.run["inf"].power_fraction == 1.0
    # headroom freed by the preemption is given back to the remaining job
    assert 0.4 < fp.run["hi"].power_fraction < 1.0 and fp.facility_w == pytest.approx(budget)
    assert fp.facility_w <= budget + 1e-6 and fp.violation_w == 0.0
    # inference alone above the cap: kept, and the excess is a recorded violation
    fp2 = enforce_caps(power, {"inf": run["inf"]}, jobs, {}, {PUB: 16, SEC: 16},
                       wind_w=0.0, grid_cap_w=power.base_w(np.array([16.0, 16.0])), site_max_w=1e9)
    assert set(fp2.run) == {"inf"} and fp2.violation_w > 0


def test_fast_path_never_preempts_running_non_preemptible() -> None:
    power = SitePower(SITE)
    jobs = {"np": tj("np", 8, preemptible=False), "new": tj("new", 8, preemptible=False)}
    run = {"np": Assignment(PUB, 1.0), "new": Assignment(PUB, 1.0)}
    fp = enforce_caps(power, run, jobs, {"np": PUB}, {PUB: 16, SEC: 16}, 0.0, full_w(power, 8, 0.4), 1e9)
    assert "np" in fp.run and "new" not in fp.run  # the new start is dropped, the running one stays


# ------------------------------------------------------------------------------------ the loop


def test_tick_steps_alone_and_apply_preempts_and_starts() -> None:
    jobs = [tj("a", 8, dur=7200.0, checkpoint_interval_s=600.0), tj("b", 4)]
    loop = loop_with(jobs, {"a": Assignment(PUB, 1.0)})
    e = energy(8)
    loop.release()
    snap = loop.snapshot(e)
    assert {js.job.job_id for js in snap.jobs} == {"a", "b"} and snap.healthy_gpus[PUB] == 16
    res = loop.apply({"a": Assignment(PUB, 1.0)})
    assert res.starts == ("a",) and loop.records["a"].state == "running"
    loop.advance(e.window(0, 1))
    loop.slot += 1
    assert loop.records["a"].work_done_s == pytest.approx(900.0)
    # a running job absent from the decisions is preempted and loses the work since its checkpoint
    res = loop.apply({"b": Assignment(PUB, 0.8)})
    assert res.preempted == (("a", pytest.approx(300.0)),)
    rec = loop.records["a"]
    assert rec.state == "queued" and rec.work_done_s == pytest.approx(600.0) and rec.preemptions == 1
    assert loop.records["b"].state == "running" and loop.records["b"].power_fraction == 0.8


def test_start_that_does_not_fit_stays_queued_and_ineligible_pool_is_refused() -> None:
    jobs = [tj("big", 16), tj("small", 1), tj("secret", 1, pool="jurisdiction=nl")]
    loop = loop_with(jobs, {"small": Assignment(PUB, 1.0), "big": Assignment(PUB, 1.0), "secret": Assignment(PUB, 1.0)})
    rep = loop.tick(energy(4).window(0, 1), energy(4))
    assert rep.start_failed == ("big",) and loop.records["big"].state == "queued"
    assert rep.refused == ("secret",) and loop.records["secret"].state == "queued"
    assert rep.starts == ("small",)


def test_fast_path_in_tick_uses_actual_not_forecast() -> None:
    jobs = [tj(f"j{i}", 8, prio=i) for i in range(4)]
    run = {f"j{i}": Assignment(PUB if i < 2 else SEC, 1.0) for i in range(4)}
    loop = loop_with(jobs, run)
    forecast = energy(4, wind_w=60_000.0)  # the policy would think everything fits
    actual = energy(4, wind_w=0.0, cap_w=25_000.0)  # the wind did not come
    rep = loop.tick(actual.window(0, 1), forecast)
    assert rep.violations == ()
    assert rep.facility_peak_w <= 25_000.0 + 1e-6
    assert rep.lowered and rep.dropped
    # the lowest priority goes first
    assert "j3" not in rep.dropped and rep.dropped[0] == "j0"


def test_accounting_matches_the_power_model_and_every_job_is_accounted() -> None:
    jobs = [tj("a", 4, dur=1350.0), tj("b", 8, dur=900.0 * 3, submit_s=900.0), tj("late", 2, submit_s=1e9)]
    seen: list[TickReport] = []
    res = run_simulation(SITE, jobs, energy(6), get_policy("backfill"), observers=[seen.append])
    assert len(seen) == 6 and seen[0].starts == ("a",)
    loop = res.loop
    assert loop.records["a"].state == "done" and loop.records["a"].end_s == pytest.approx(1350.0)
    assert loop.records["a"].run_fractions == [1.0, 0.5]
    assert loop.counts() == {"done": 2, "pending": 1}
    report = build_report(res)
    assert check_plan(report) == []
    rc = recompute_timeline(report)
    assert np.allclose(rc["facility_w"], report["timeline"]["facility_w"])
    assert report["objective"]["carbon_g"] == pytest.approx(sum(report["timeline"]["carbon_g"]))
    # per-job carbon is a share of the total
    assert sum(j["carbon_g"] for j in report["jobs"]) <= report["objective"]["carbon_g"] + 1e-9


def test_node_failure_requeues_and_the_job_finishes_later() -> None:
    jobs = [tj("a", 8, dur=4 * 900.0, checkpoint_interval_s=1000.0)]
    res = run_simulation(SITE, jobs, energy(12), get_policy("backfill"), node_events=[NodeEvent(2, PUB, 0)])
    rec = res.loop.records["a"]
    assert rec.failures == 1 and rec.lost_work_s == pytest.approx(800.0)  # 1800 done, checkpoint at 1000
    assert rec.state == "done"
    assert res.reports[2].failures == ("a",) and res.reports[2].healthy_gpus[PUB] == 8
    # restarted on the healthy node at 1800 s from the checkpoint: 2600 s of work left
    assert rec.end_s == pytest.approx(1800.0 + 2600.0)


def test_bad_input_is_refused_before_anything_runs() -> None:
    with pytest.raises(InputError, match="twice"):
        run_simulation(SITE, [tj("a", 1), tj("a", 2)], energy(4), get_policy("backfill"))
    with pytest.raises(InputError, match="largest eligible pool"):
        run_simulation(SITE, [tj("huge", 64)], energy(4), get_policy("backfill"))
    with pytest.raises(InputError, match="unknown pool"):
        run_simulation(SITE, [tj("x", 1, pool="nope")], energy(4), get_policy("backfill"))
    with pytest.raises(InputError, match="n_slots"):
        run_simulation(SITE, [tj("x", 1)], energy(4), get_policy("backfill"), n_slots=10)
    with pytest.raises(InputError, match="node event"):
        run_simulation(SITE, [tj("x", 1)], energy(4), get_policy("backfill"), node_events=[NodeEvent(0, PUB, 7)])
