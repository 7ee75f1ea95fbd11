"""benchmarks/gpu_check.sh, the prepared GPU run of issue 7, run here as CI runs it: without CUDA it does
every part with torch on the CPU (small sizes), so the script is known to work before a GPU machine is lent."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"

pytestmark = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch not installed")


def _run(env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT)], cwd=ROOT, env={**os.environ, **env}, capture_output=True,
                          text=True, timeout=timeout)


def test_the_gpu_check_runs_its_cpu_parts_and_writes_json_and_markdown(tmp_path: Path) -> None:
    out = tmp_path / "gpu"
    p = _run({"PYTHON": sys.executable, "OUT": str(out), "SIZES": "48", "SLOTS": "12", "RUNS": "1", "TICKS": "2",
              "PARITY": "smoke"})  # the parity tests themselves run in tests/kernels
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    for name in ("device.txt", "parity.txt", "parity.xml", "scaling.txt", "optimizer.json", "optimizer.md"):
        assert (out / name).is_file(), name
    assert "passed" in (out / "parity.txt").read_text()
    data = json.loads((out / "optimizer.json").read_text())
    (row,) = data["rows"]
    cuda = "cuda True" in (out / "device.txt").read_text()
    assert (row["J"], row["T"], row["backend"], row["device"]) == (48, 12, "torch", "cuda" if cuda else "cpu")
    assert row["violations"] == []
    # the numpy baseline on the same instances in the same run, and how far the plans are apart
    assert row["numpy_replan_warm_s_median"] > 0 and row["replan_speedup_vs_numpy"] > 0
    assert row["parity_cold"]["run_cells_equal"] >= (0.999 if cuda else 1.0)
    assert set(row["stages_s"]) == {"_ascend", "_bound_exact", "_primal", "_evaluate_plan", "other", "total"}
    md = (out / "optimizer.md").read_text()
    assert "re-plan speed-up" in md and "plan construction" in md and "| 48 | 12 |" in md


def test_the_gpu_check_names_what_is_missing_when_there_are_no_wheels(tmp_path: Path) -> None:
    """A bare Python (no numpy, no torch) and no wheel folder: exit 2 and a message naming the packages."""
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True, timeout=120)
    p = _run({"PYTHON": str(bare / "bin" / "python"), "OUT": str(tmp_path / "o"), "WHEELS": str(tmp_path / "none")},
             timeout=120)
    assert p.returncode == 2
    assert "numpy" in p.stdout and "torch" in p.stdout and "fetch_gpu_wheels.sh" in p.stdout


def test_the_gpu_checks_parity_mode_compares_numpy_and_torch_plans(tmp_path: Path) -> None:
    """CHECK=parity (issue 11's short GPU call): benchmarks/backend_parity.py over a corpus instance, a warm
    chain and a make_problem chain, on torch (CUDA where there is one) against numpy, timed, in parity.json."""
    out = tmp_path / "gpu"
    p = _run({"PYTHON": sys.executable, "OUT": str(out), "CHECK": "parity", "CORPUS": "1", "CHAINS": "1",
              "CHAIN_TICKS": "1", "BIG": "48", "BIG_SLOTS": "12", "BIG_TICKS": "1"})
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert (out / "device.txt").is_file() and not (out / "optimizer.json").exists()
    data = json.loads((out / "parity" / "parity.json").read_text())
    summ, lines = data["summary"], data["lines"]
    assert summ["ok"] and summ["ticks"] == len(lines) == 1 + 2 + 2
    assert [(ln["case"], ln["tick"]) for ln in lines] == [("corpus-0", 0), ("chain-0", 0), ("chain-0", 1),
                                                          ("make_problem-48x12", 0), ("make_problem-48x12", 1)]
    cuda = "cuda True" in (out / "device.txt").read_text()
    assert summ["device"] == ("cuda" if cuda else "cpu")
    assert all(ln["same"] for ln in lines) or cuda  # bit for bit on the CPU
    assert all(ln["numpy_cpu_s"] > 0 and ln["torch_wall_s"] > 0 for ln in lines)
