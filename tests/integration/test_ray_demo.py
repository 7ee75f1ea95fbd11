"""`windward demo` end to end in a subprocess (its own local Ray cluster), and Ctrl-C leaves no raylet behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from procs import descendants, raylets

pytestmark = pytest.mark.integration

WINDWARD = str(Path(sys.executable).parent / "windward")
ENV = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "COLUMNS": "120"}


def _wait_for_line(proc: subprocess.Popen[str], needle: str, timeout_s: float) -> None:
    assert proc.stdout is not None
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        line = proc.stdout.readline()
        if needle in line:
            return
        if not line and proc.poll() is not None:
            break
    raise AssertionError(f"{needle!r} not seen within {timeout_s} s (rc={proc.poll()})")


def _drain(proc: subprocess.Popen[str]) -> list[str]:
    """Keep reading the demo's output in the background: a pipe nobody reads fills up (64 KB), and a demo
    blocked writing its live view or its shutdown messages could never finish its Ctrl-C handling."""
    lines: list[str] = []
    assert proc.stdout is not None
    out = proc.stdout
    threading.Thread(target=lambda: lines.extend(out), daemon=True).start()
    return lines


def test_short_demo_runs_end_to_end(tmp_path: Path) -> None:
    r = subprocess.run(
        [WINDWARD, "demo", "--slots", "4", "--seconds-per-slot", "1", "--out", str(tmp_path)],
        capture_output=True, text=True, env=ENV, timeout=240,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rep = json.loads((tmp_path / "demo-report.json").read_text())
    assert rep["kind"] == "demo" and rep["executor"] == "RayExecutor" and rep["n_slots"] == 4
    assert len(rep["timeline"]["facility_w"]) == 4
    assert rep["execution"]["sovereign_placements_outside"] == []
    # measured from the service's own progress; its start-up (model training, ~1 s = a slot here, more under
    # load) is not counted: the executor starts its clock when the workload reports it is ready
    assert 0.0 < rep["summary"]["inference_served_pct"] <= 100.0
    assert "grid_carbon_kg" in rep["carbon_agnostic_baseline"]["summary"]
    assert (tmp_path / "demo-report.png").stat().st_size > 1000
    assert "grid carbon" in r.stdout
    # where the wall time goes, step by step (issue 13: the demo stays under 3 minutes on 2 cores)
    ph = rep["phases_s"]
    steps = ("ray_start_s", "replay_s", "ray_shutdown_s", "baseline_s", "baseline_wait_s", "report_s", "plot_s")
    assert all(ph[k] >= 0.0 for k in steps), ph
    assert ph["total_s"] >= ph["ray_start_s"] + ph["replay_s"] + ph["report_s"] + ph["plot_s"], ph
    assert "wall time" in r.stdout and "Ray start" in r.stdout
    # a second run in the same directory starts from nothing: the first run's checkpoints (its state directory)
    # are not resumed, so no job's work is counted twice. That second run is `windward demo --policy cics` (the
    # baseline make_policy crashed on; every registered policy runs the demo's command in
    # tests/unit/test_demo_cli.py with the simulated executor; this one runs it on Ray): one demo run proves
    # both, where a third run (its own Ray cluster, ~30 s of CPU) proved the second alone
    assert rep["execution"]["resumes"] == 0
    r2 = subprocess.run(
        [WINDWARD, "demo", "--policy", "cics", "--slots", "4", "--seconds-per-slot", "1", "--out", str(tmp_path)],
        capture_output=True, text=True, env=ENV, timeout=240,
    )
    assert r2.returncode == 0, r2.stdout[-3000:] + r2.stderr[-3000:]
    rep2 = json.loads((tmp_path / "demo-report.json").read_text())
    assert rep2["policy"] == "cics" and rep2["executor"] == "RayExecutor"
    assert rep2["execution"]["sovereign_placements_outside"] == [] and rep2["summary"]["cap_violations"] == 0
    assert "Ray, cics" in r2.stdout
    assert rep2["execution"]["resumes"] == 0, rep2["execution"]
    assert rep2["execution"]["jobs_submitted"] == rep["execution"]["jobs_submitted"]


def test_ctrl_c_leaves_no_ray_processes(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [WINDWARD, "demo", "--slots", "96", "--out", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV,
    )
    try:
        _wait_for_line(proc, "RAY READY", 120)
        lines = _drain(proc)
        time.sleep(3)  # a few slots into the replay, jobs running
        ours = descendants(proc.pid)
        our_raylets = ours & raylets()
        assert len(our_raylets) >= 5  # head + 4 simulated GPU nodes
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, "".join(lines[-40:])

    def alive() -> list[int]:
        return sorted(p for p in ours if Path(f"/proc/{p}").exists())

    # processes that the demo's Ray shutdown signalled may take a moment to exit (seconds on 2 loaded cores):
    # wait for them as test_server_ray does, rather than a fixed 1 s; one left behind is still there after 30 s
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and alive():
        time.sleep(0.5)
    assert not (our_raylets & raylets()), "raylets left behind after Ctrl-C"
    assert not alive(), f"processes left behind: {alive()}"
