"""benchmarks/simulator.py's windows guard (round 16, H5): the itp60 replay on several windows of the real trace and
energy, their medians, and two runs compared window by window."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from benchmarks import simulator
from scheduler import traces
from scheduler.models import load_site

SITE = str(simulator.HERE / "sites" / "itp-1024.yaml")


def test_windows_start_a_stride_apart_and_end_inside_the_trace() -> None:
    assert simulator.window_starts(10, 3.0) == [6.0 * i for i in range(10)]
    assert simulator.window_starts(1, 59.5) == [0.0]
    for n, days in ((11, 3.0), (10, 6.0), (0, 3.0)):
        with pytest.raises(ValueError, match="do not fit"):
            simulator.window_starts(n, days)


def test_a_window_is_the_trace_and_the_energy_from_its_start_day() -> None:
    site = load_site(SITE)
    actual, jobs, _ = simulator.window(site, 1.0, 6.0)
    start = simulator.START + timedelta(days=6)
    assert actual.start_utc == start
    want, _ = traces.load_workload("itp:cluster04", site, 1.0, start_s=6 * 86400.0, start_utc=start)
    assert [(j.job_id, j.submit_s, j.gpus) for j in jobs] == [(j.job_id, j.submit_s, j.gpus) for j in want]
    _, day0, _ = simulator.window(site, 1.0, 0.0)
    assert {j.job_id for j in jobs if j.kind != "inference"}.isdisjoint(j.job_id for j in day0 if j.kind != "inference")


def _case(day: float, done: int, work: float, carbon_kg: float, misses: int = 0, pre: int = 0) -> dict:
    return {"start_day": day, "simulate_cpu_s": 2.0,
            "result": {"jobs_done": done, "training_done": done - 1, "work_done_gpu_h": work,
                       "grid_carbon_kg": carbon_kg, "grid_carbon_g_per_gpu_h": 1000.0 * carbon_kg / work,
                       "deadline_misses": misses, "preemptions": pre}}


def test_the_guard_takes_medians_across_windows_and_pools_the_carbon() -> None:
    g = simulator.guard([_case(0, 10, 100.0, 1.0), _case(6, 30, 300.0, 30.0, 2), _case(12, 20, 100.0, 5.0, 1)])
    assert g["windows"] == [0, 6, 12] and g["cpu_s"] == 6.0
    assert g["median"]["jobs_done"] == 20 and g["median"]["training_done"] == 19
    assert g["median"]["grid_carbon_g_per_gpu_h"] == pytest.approx(50.0)  # 10, 100, 50 g/GPU-h
    assert g["grid_carbon_g_per_gpu_h"] == pytest.approx(1000.0 * 36.0 / 500.0)
    assert (g["jobs_done"], g["training_done"], g["deadline_misses"]) == (60, 57, 3)


def test_two_runs_are_compared_window_by_window() -> None:
    old = [_case(0, 10, 100.0, 1.0), _case(6, 30, 300.0, 30.0), _case(12, 20, 100.0, 5.0)]
    new = [_case(6, 29, 300.0, 30.0), _case(0, 13, 100.0, 1.0), _case(12, 21, 100.0, 5.0, pre=4)]
    cmp = simulator.compare(new, old)
    assert cmp["jobs_done"]["deltas"] == [-1, 3, 1]  # (in the new run's order, matched by start day)
    assert (cmp["jobs_done"]["median_delta"], cmp["jobs_done"]["up"], cmp["jobs_done"]["down"]) == (1.0, 2, 1)
    assert cmp["preemptions"] == {"median_delta": 0.0, "up": 1, "down": 0, "deltas": [0, 0, 4]}
    with pytest.raises(ValueError, match="other windows"):
        simulator.compare(new[:2], old)


def test_the_windows_option_replays_each_window_and_compares(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    argv = ["--case", "itp60", "--days", "0.25", "--windows", "2", "--policy", "backfill", "--no-profile"]
    assert simulator.main(argv) == 0
    first = json.loads(capsys.readouterr().out)
    assert [c["start_day"] for c in first["cases"]] == [0.0, 6.0] == first["guard"]["windows"]
    assert first["cases"][0]["jobs"] != first["cases"][1]["jobs"]  # two windows of the trace, not one twice
    (tmp_path / "old.json").write_text(json.dumps(first))
    assert simulator.main([*argv, "--procs", "2", "--compare", str(tmp_path / "old.json")]) == 0
    again = json.loads(capsys.readouterr().out)
    # the replay is deterministic: the same code gives the same windows
    assert all(v["deltas"] == [0, 0] for v in again["compare"].values())
    with pytest.raises(SystemExit):
        simulator.main(["--case", "r100k", "--windows", "2"])
