"""Issue 16, file readers through the real command line: bytes that are not UTF-8 in a jobs CSV (``windward
plan --jobs``, ``windward simulate --trace``), an energy CSV or a tenants file exit 2 naming the file (no
traceback); a filled gap is said on stderr with its count and exit 0; ``--strict`` refuses it with exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

WINDWARD = str(Path(sys.executable).parent / "windward")
HEADER = "job_id,tenant,kind,submit_s,gpus,duration_s,deadline_s,preemptible,pool,priority"
START = datetime(2023, 3, 1, tzinfo=UTC)


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "WINDWARD_LOG": "WARNING"}
    return subprocess.run([WINDWARD, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _energy(path: Path, missing: tuple[int, ...] = ()) -> Path:
    rows = ["timestamp_utc,wind_mw,carbon_g_per_kwh"]
    for i in range(72):
        if i not in missing:
            t = (START + timedelta(hours=i)).strftime("%Y-%m-%dT%H:%M:%SZ")
            rows.append(f"{t},{0.01 * (i % 7):.2f},{150 + i}")
    path.write_text("\n".join(rows) + "\n")
    return path


def _jobs(path: Path, bad: bytes = b"") -> Path:
    path.write_bytes(f"{HEADER}\nj1,science,training,0,8,3600,,1,,0\n".encode() + (b"j2," + bad + b",training,0,8,"
                     b"3600,,1,,0\n" if bad else b""))  # fmt: skip
    return path


@pytest.mark.parametrize("bad", [b"\xff", b"caf\xe9", b"\xed\xa0\x80"])
def test_plan_and_simulate_refuse_non_utf8_jobs_with_exit_2(tmp_path: Path, bad: bytes) -> None:
    jobs = _jobs(tmp_path / "jobs.csv", bad)
    energy = _energy(tmp_path / "energy.csv")
    r = _run(["plan", "--jobs", str(jobs), "--energy", str(energy), "--start", "2023-03-01T00:00:00Z",
              "--horizon-hours", "4", "--out", str(tmp_path / "p.json")], tmp_path)  # fmt: skip
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert "jobs.csv: not UTF-8" in r.stderr and "Traceback" not in r.stderr, r.stderr[-2000:]
    r = _run(["simulate", "--trace", str(jobs), "--days", "0.1", "--out", str(tmp_path / "r.json"), "--no-plot",
              "--compare", "", "--policy", "backfill"], tmp_path)  # fmt: skip
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert "jobs.csv: not UTF-8" in r.stderr and "Traceback" not in r.stderr, r.stderr[-2000:]


def test_non_utf8_energy_and_tenants_files_exit_2(tmp_path: Path) -> None:
    jobs = _jobs(tmp_path / "jobs.csv")
    energy = _energy(tmp_path / "energy.csv")
    energy.write_bytes(energy.read_bytes().replace(b"150", b"1\xff0", 1))
    r = _run(["plan", "--jobs", str(jobs), "--energy", str(energy), "--start", "2023-03-01T00:00:00Z",
              "--horizon-hours", "4", "--out", str(tmp_path / "p.json")], tmp_path)  # fmt: skip
    assert r.returncode == 2 and "energy.csv: not UTF-8 text: byte" in r.stderr, r.stderr[-2000:]
    tenants = tmp_path / "tenants.yaml"
    tenants.write_bytes(b"tenants:\n  - name: caf\xe9\n")
    r = _run(["server", "--tenants", str(tenants), "--state", str(tmp_path / "s.sqlite"), "--port", "0"], tmp_path)
    assert r.returncode == 2 and "tenants.yaml: not UTF-8 text" in r.stderr, r.stderr[-2000:]
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("missing", [(5,), (5, 6, 7), (3, 30)])
def test_energy_gap_is_said_on_stderr_and_strict_refuses_it(tmp_path: Path, missing: tuple[int, ...]) -> None:
    jobs = _jobs(tmp_path / "jobs.csv")
    energy = _energy(tmp_path / "energy.csv", missing)
    args = ["plan", "--jobs", str(jobs), "--energy", str(energy), "--start", "2023-03-01T00:00:00Z",
            "--horizon-hours", "40", "--out", str(tmp_path / "p.json")]  # fmt: skip
    n_gaps = 2 * len([i for i in missing if i - 1 not in missing])  # wind and carbon of each missing run
    r = _run(args, tmp_path)
    assert r.returncode in (0, 3), r.stderr[-2000:]
    assert f"{n_gaps} gap(s) filled" in r.stderr, r.stderr[-2000:]
    r = _run([*args, "--strict"], tmp_path)
    assert r.returncode == 2 and f"{n_gaps} gap(s) in the data (strict" in r.stderr, r.stderr[-2000:]


def test_jobs_csv_empty_cells_said_and_strict_refuses(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs.csv"
    jobs.write_text(f"{HEADER}\nj1,,training,0,8,3600,,1,,0\nj2,science,,0,8,3600,,,,\n")
    energy = _energy(tmp_path / "energy.csv")
    args = ["plan", "--jobs", str(jobs), "--energy", str(energy), "--start", "2023-03-01T00:00:00Z",
            "--horizon-hours", "4", "--out", str(tmp_path / "p.json")]  # fmt: skip
    r = _run(args, tmp_path)
    assert r.returncode in (0, 3) and "4 empty cell(s) filled with defaults" in r.stderr, r.stderr[-2000:]
    r = _run([*args, "--strict"], tmp_path)
    assert r.returncode == 2 and "row 2, field tenant: empty (strict" in r.stderr, r.stderr[-2000:]
