"""benchmarks/simulator.py's backlog load point and per-tick bands, and benchmarks/replan.py's record / time:
a recorded re-plan, planned again in a fresh process, gives what the policy got in the replay."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import replan, simulator
from scheduler.models import load_site


def test_backlog_compresses_arrivals_and_keeps_each_jobs_slack() -> None:
    site = load_site("rotterdam-100k")
    jobs, desc = simulator.backlog(site, 3000, burst_s=3600.0)
    train = [j for j in jobs if j.kind != "inference"]
    assert len(train) == 3000 and "3,000 training jobs" in desc
    assert max(j.submit_s for j in train) == pytest.approx(3600.0)
    assert min(j.submit_s for j in train) >= 0.0
    # the same jobs as the amplified trace's first 3,000, deadline slack kept
    from scheduler import traces

    src, _ = traces.load_workload("itp:cluster04", site, 4.0, start_utc=simulator.START)
    amp = sorted(traces.amplify([j for j in src if j.kind != "inference"], site.total_gpus / 1024.0, seed=0),
                 key=lambda j: (j.submit_s, j.job_id))[:3000]
    by_id = {j.job_id: j for j in amp}
    assert {j.job_id for j in train} == set(by_id)
    for j in train:
        o = by_id[j.job_id]
        assert (j.gpus, j.duration_s, j.preemptible) == (o.gpus, o.duration_s, o.preemptible)
        if o.deadline_s is None:
            assert j.deadline_s is None
        else:
            assert j.deadline_s - j.submit_s == pytest.approx(o.deadline_s - o.submit_s)


class _R:
    def __init__(self, decide_s: float, queued: int, running: int) -> None:
        self.decide_s, self.queued, self.running = decide_s, queued, running


def test_per_tick_bands_split_ticks_by_jobs_in_the_system() -> None:
    reps = [_R(0.1, 10, 5), _R(0.3, 9_000, 900), _R(2.0, 40_000, 5_000), _R(4.0, 45_000, 6_000), _R(1.0, 60_000, 1)]
    pt = simulator.per_tick(reps)
    assert pt["all"]["ticks"] == 5 and pt["jobs_in_system_max"] == 60_001
    assert pt["0-10000"]["ticks"] == 2 and pt["0-10000"]["policy_ms_max"] == pytest.approx(300.0)
    assert pt["10000-30000"] == {"ticks": 0}
    assert pt["30000-50000"]["ticks"] == 1 and pt["30000-50000"]["policy_ms_median"] == pytest.approx(2000.0)
    assert pt["50000+"]["ticks"] == 2 and pt["50000+"]["policy_ms_max"] == pytest.approx(4000.0)
    assert pt["50000+"]["jobs_in_system_median"] == 55_500


def test_a_recorded_replan_gives_what_the_policy_got(tmp_path: Path) -> None:
    meta = replan.record(tmp_path, ticks=4, from_tick=2, jobs=600, policy="windward")
    assert [t["tick"] for t in meta["ticks"]] == [2, 3]
    assert json.loads((tmp_path / "meta.json").read_text()) == meta
    out = replan.time_trees(tmp_path, None, repeats=1)
    got = out["trees"]["new"]["ticks"]
    assert [t["file"] for t in got] == [t["file"] for t in meta["ticks"]]
    for g, m in zip(got, meta["ticks"], strict=True):
        assert g["gap"] == pytest.approx(m["gap"], abs=1e-5)
        assert g["unfinished_gpu_h"] == pytest.approx(m["unfinished_gpu_s"] / 3600, abs=0.06)
        assert g["cpu_s"] > 0


def test_per_tick_splits_the_cpu_into_the_plan_and_the_policy_own() -> None:
    reps = [_R(2.0, 40_000, 5_000), _R(3.0, 41_000, 5_000), _R(9.0, 42_000, 5_000), _R(0.1, 10, 1)]
    cpu, plan = [1.5, 2.0, 8.0, 0.05], [1.0, 1.2, 7.9, 0.0]
    band = simulator.per_tick(reps, cpu, plan)["30000-50000"]
    assert band["policy_cpu_ms_median"] == pytest.approx(2000.0)
    assert band["plan_cpu_ms_median"] == pytest.approx(1200.0)
    assert band["own_cpu_ms_median"] == pytest.approx(500.0)  # of 500, 800, 100
    assert "plan_cpu_ms_median" not in simulator.per_tick(reps, cpu)["30000-50000"]


def test_the_simulator_times_the_plan_inside_each_decide() -> None:
    import kernels

    class _Pol:
        def decide(self, snapshot: object) -> object:
            sum(range(20_000))
            return kernels.plan(snapshot)

    real = kernels.plan
    timed = simulator._CpuTimed(_Pol())
    kernels.plan = lambda problem, **kw: sum(range(200_000))  # type: ignore[assignment,misc]
    try:
        with timed.plans_timed():
            timed.decide(None)
            timed.decide(None)
        assert kernels.plan is not real
    finally:
        kernels.plan = real  # type: ignore[assignment]
    assert len(timed.plan_cpu_s) == len(timed.cpu_s) == 2
    assert all(0 < p <= c for p, c in zip(timed.plan_cpu_s, timed.cpu_s, strict=True))
