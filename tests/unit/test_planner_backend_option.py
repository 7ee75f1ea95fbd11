"""The optimiser's array backend chosen from the CLI (``plan --backend/--device``, ``simulate`` and ``server``
``--planner-backend/--planner-device``) and from ``ServiceConfig``: torch on CPU gives the numpy plan, and a
backend or device this machine cannot run exits 2 naming the option before anything is written."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from scheduler.cli import app
from scheduler.cli.options import planner_backend
from scheduler.errors import InputError

HAVE_TORCH = importlib.util.find_spec("torch") is not None
needs_torch = pytest.mark.skipif(not HAVE_TORCH, reason="torch is not installed")

HEADER = "job_id,tenant,kind,submit_s,gpus,duration_s,deadline_s,preemptible,pool,priority\n"
JOBS = [
    "t1,science,training,0,8,14400,,true,,0",
    "t2,science,training,0,4,7200,43200,true,h100-eu-public,1",
    "t3,acme,batch,1800,2,3600,,false,,0",
    "i1,public,inference,0,2,900,,false,,5",
]


def _cuda_visible() -> bool:
    if not HAVE_TORCH:
        return False
    import torch

    return bool(torch.cuda.is_available())


def _jobs_csv(tmp_path: Path) -> Path:
    p = tmp_path / "jobs.csv"
    p.write_text(HEADER + "\n".join(JOBS) + "\n")
    return p


def _plan(tmp_path: Path, name: str, *extra: str) -> tuple[int, str, Path]:
    out = tmp_path / f"{name}.json"
    args = ["plan", "--site", "demo", "--jobs", str(_jobs_csv(tmp_path)), "--start", "2023-03-06T00:00:00Z",
            "--horizon-hours", "12", "--out", str(out), *extra]
    res = CliRunner().invoke(app, args)
    return res.exit_code, res.output, out


def _windward(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The installed entry point (``scheduler.cli.main``: a WindwardError exits 2 with ``error: ...``)."""
    return subprocess.run([sys.executable, "-c", "from scheduler.cli import main; main()", *args],
                          capture_output=True, text=True, timeout=timeout, check=False)


def test_planner_backend_returns_plan_kwargs_and_names_the_options_on_bad_values() -> None:
    assert planner_backend("numpy", "cpu") == {"backend": "numpy", "device": "cpu"}
    with pytest.raises(InputError) as e:
        planner_backend("jax", "cpu", "--backend")
    msg = str(e.value)
    assert "--backend 'jax'" in msg and "got 'jax'" in msg and "numpy|torch" in msg and "cpu|cuda|cuda:N" in msg
    with pytest.raises(InputError) as e:
        planner_backend("numpy", "cuda")
    assert "--planner-device 'cuda'" in str(e.value) and "cpu only" in str(e.value)
    with pytest.raises(InputError) as e:
        planner_backend("torch", "tpu:0")
    assert "--planner-device 'tpu:0'" in str(e.value)


@needs_torch
def test_plan_on_torch_cpu_equals_numpy_and_records_the_backend(tmp_path: Path) -> None:
    code_np, out_np, path_np = _plan(tmp_path, "numpy")
    code_t, out_t, path_t = _plan(tmp_path, "torch", "--backend", "torch", "--device", "cpu")
    assert code_np == 0, out_np
    assert code_t == 0, out_t
    a, b = json.loads(path_np.read_text()), json.loads(path_t.read_text())
    assert a["provenance"]["planner_backend"] == "numpy/cpu"
    assert b["provenance"]["planner_backend"] == "torch/cpu"
    assert a["status"] == b["status"] == "optimal"
    jobs_a = [(j["job_id"], j["pool"], j["slots"]) for j in a["jobs"]]
    jobs_b = [(j["job_id"], j["pool"], j["slots"]) for j in b["jobs"]]
    assert jobs_a == jobs_b
    assert any(slots for _, _, slots in jobs_a)  # the comparison is not between two empty plans
    assert b["objective"]["carbon_g"] == pytest.approx(a["objective"]["carbon_g"], rel=1e-9)
    assert b["objective"]["lower_bound_carbon_g"] == pytest.approx(a["objective"]["lower_bound_carbon_g"], rel=1e-6)
    assert b["check"]["ok"] is True
    assert "torch/cpu" in out_t


@pytest.mark.skipif(_cuda_visible(), reason="torch sees a CUDA device here")
def test_plan_on_cuda_without_a_cuda_device_exits_2_naming_the_option(tmp_path: Path) -> None:
    code, output, out = _plan(tmp_path, "cuda", "--backend", "torch", "--device", "cuda")
    assert code == 2, output
    assert "--device 'cuda'" in output
    assert ("CUDA device" in output) or ("not installed" in output)
    assert not out.exists()  # refused before any work


def test_plan_with_an_unknown_backend_exits_2_naming_the_option(tmp_path: Path) -> None:
    code, output, out = _plan(tmp_path, "jax", "--backend", "jax")
    assert code == 2, output
    assert "--backend 'jax'" in output and "numpy|torch" in output
    assert not out.exists()


@needs_torch
def test_simulate_on_torch_cpu_reports_the_numpy_carbon(tmp_path: Path) -> None:
    common = ["simulate", "--days", "0.25", "--horizon-hours", "6", "--compare", "", "--no-plot"]
    reports = {}
    for backend in ("numpy", "torch"):
        out = tmp_path / f"{backend}.json"
        res = CliRunner().invoke(app, [*common, "--out", str(out), "--planner-backend", backend,
                                       "--planner-device", "cpu"])
        assert res.exit_code == 0, res.output
        assert ("planner=torch/cpu" in res.output) == (backend == "torch")  # header names a non-default backend
        reports[backend] = json.loads(out.read_text())
    a, b = reports["numpy"], reports["torch"]
    assert a["policy"] == b["policy"] == "windward"
    assert (a["planner_backend"], b["planner_backend"]) == ("numpy/cpu", "torch/cpu")
    assert a["summary"]["grid_carbon_kg"] > 0
    assert b["summary"]["grid_carbon_kg"] == pytest.approx(a["summary"]["grid_carbon_kg"], rel=1e-9)
    assert b["summary"]["work_done_gpu_h"] == pytest.approx(a["summary"]["work_done_gpu_h"], rel=1e-9)


def test_simulate_and_server_refuse_a_bad_planner_backend_before_starting(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    p = _windward("simulate", "--days", "0.1", "--out", str(out), "--planner-backend", "jax")
    assert p.returncode == 2, p.stderr
    assert "--planner-backend 'jax'" in p.stderr and "numpy|torch" in p.stderr
    assert not out.exists()
    state = tmp_path / "s.sqlite"
    p = _windward("server", "--demo", "--port", "0", "--state", str(state), "--planner-backend", "numpy",
                  "--planner-device", "cuda:0")
    assert p.returncode == 2, p.stderr
    assert "--planner-device 'cuda:0'" in p.stderr
    assert not state.exists()  # checked before the service (and its state file) or the port


@needs_torch
def test_service_config_gives_the_windward_policy_its_planner_backend(tmp_path: Path) -> None:
    from scheduler.models import JobSpec, load_site, load_tenants
    from scheduler.policies import make_policy
    from scheduler.policies.windward import WindwardPolicy
    from scheduler.service import Service, ServiceConfig

    # the baselines take no plan arguments; make_policy gives them none
    plan_kw = {"backend": "torch", "device": "cpu"}
    assert type(make_policy("backfill", 24.0, plan_kwargs=plan_kw)).__name__ == "BackfillPolicy"
    cfg = ServiceConfig(site=load_site("demo"), tenants=load_tenants(), state_path=str(tmp_path / "s.sqlite"),
                        policy="windward", horizon_hours=2.0, tick_seconds=1.0, planner_backend="torch")
    assert cfg.planner_device == "cpu"
    svc = Service(cfg, wall=lambda: 1_900_000_000.0)
    try:
        assert isinstance(svc.policy, WindwardPolicy)
        assert svc.policy.plan_kwargs == {"backend": "torch", "device": "cpu"}
        svc.submit(svc.tenants["science"], JobSpec(name="j", gpus=4, duration_s=1800), None)
        out = svc.tick()
        assert out.started  # the torch-planned tick starts the job
        last = svc.policy._last  # the plan the tick solved (kept for the next tick's warm start)
        assert last is not None and last[0].diagnostics["backend"] == "torch"
    finally:
        svc.stop()
    default = ServiceConfig(site=load_site("demo"), tenants=load_tenants(), state_path=":memory:")
    assert (default.planner_backend, default.planner_device) == ("numpy", "cpu")


def test_a_service_built_in_code_refuses_a_backend_that_cannot_run_before_creating_its_state(tmp_path: Path) -> None:
    """Library use (no CLI in front): the Service checks the backend itself and creates no state file."""
    from scheduler.errors import InputError
    from scheduler.models import load_site, load_tenants
    from scheduler.service import Service, ServiceConfig

    state = tmp_path / "s.sqlite"
    cfg = ServiceConfig(site=load_site("demo"), tenants=load_tenants(), state_path=str(state), policy="windward",
                        planner_backend="torch", planner_device="cuda:7")
    with pytest.raises(InputError, match="ServiceConfig.planner_device 'cuda:7'"):
        Service(cfg)
    assert not state.exists()
