"""``windward simulate``: the no-argument run, the report contract, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from scheduler.cli import app
from scheduler.planjson import check_plan
from scheduler.policies import DEFAULT_POLICY, POLICIES, available_policies, policy_help

SECTION7 = ("status", "start_utc", "slot_s", "n_slots", "pue", "solve_s", "objective", "pools", "timeline", "jobs")


def test_simulate_defaults_write_a_recomputable_report(tmp_path: Path) -> None:
    out, png = tmp_path / "r.json", tmp_path / "r.png"
    res = CliRunner().invoke(app, ["simulate", "--days", "0.5", "--out", str(out), "--plot", str(png),
                                   "--policy", "backfill", "--compare", "greedy-green"])
    assert res.exit_code == 0, res.output
    assert "grid carbon" in res.output and "greedy-green" in res.output
    rep = json.loads(out.read_text())
    assert all(k in rep for k in SECTION7)
    assert set(rep["objective"]) >= {"carbon_g", "lower_bound_carbon_g", "gap", "unfinished_gpu_s"}
    tl = rep["timeline"]
    assert len(tl["facility_w"]) == rep["n_slots"] == 48
    assert "synthetic, calibrated to NL 2021-2023" in rep["data"]["energy_source"]
    assert rep["data"]["workload"] and rep["data"]["trace_assignment_rule"]
    # carbon recomputed from the timeline alone
    slot_h = rep["slot_s"] / 3600
    carbon = np.asarray(tl["grid_import_w"]) * slot_h / 1000 * np.asarray(tl["carbon_g_per_kwh"])
    assert carbon.sum() == pytest.approx(rep["summary"]["grid_carbon_kg"] * 1000, rel=1e-3)
    assert check_plan(rep) == []
    assert rep["summary"]["jobs_total"] == len(rep["jobs"])
    assert [c["policy"] for c in rep["comparison"]] == ["backfill", "greedy-green"]
    assert png.stat().st_size > 10_000


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--policy", "fifo"], "--policy: unknown policy 'fifo'; allowed: " + ", ".join(POLICIES)),
        (["--compare", "backfill,fifo"], "--compare: unknown policy 'fifo'"),
        (["--forecast", "psychic"], "--forecast"),
        (["--start", "yesterday"], "--start"),
        (["--site", "/nonexistent/site.yaml"], "/nonexistent/site.yaml"),
    ],
)
def test_bad_input_exits_2_naming_the_problem(tmp_path: Path, args: list[str], needle: str) -> None:
    out = tmp_path / "r.json"
    p = subprocess.run(
        [sys.executable, "-c", "from scheduler.cli import main; main()", "simulate", "--days", "0.1",
         "--out", str(out), *args],
        capture_output=True, text=True, timeout=120,
    )
    assert p.returncode == 2, p.stderr
    assert needle in p.stderr
    assert not out.exists()  # nothing half-done


def test_simulate_with_no_policy_arguments_compares_windward_with_both_baselines(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    res = CliRunner().invoke(app, ["simulate", "--days", "0.25", "--out", str(out)])
    assert res.exit_code == 0, res.output
    rep = json.loads(out.read_text())
    assert rep["policy"] == "windward"
    assert [c["policy"] for c in rep["comparison"]] == ["windward", "backfill", "greedy-green"]
    assert all(c["cap_violations"] == 0 for c in rep["comparison"])
    assert out.with_suffix(".png").stat().st_size > 10_000
    assert check_plan(rep) == []


def test_amplify_replicates_training_and_keeps_the_sized_inference_service(tmp_path: Path) -> None:
    """``--amplify`` (help: "Replicate training jobs by this factor") on the embedded workload: the
    inference service that load_workload sized to the site is kept as it is (scaling it too asked for
    more GPUs than the site has, and the run exited 2)."""
    out1, out3 = tmp_path / "a1.json", tmp_path / "a3.json"
    for out, amp in ((out1, "1"), (out3, "3")):
        res = CliRunner().invoke(app, ["simulate", "--days", "0.25", "--out", str(out), "--plot", str(tmp_path / "p.png"),
                                       "--policy", "backfill", "--amplify", amp])
        assert res.exit_code == 0, res.output
    jobs1, jobs3 = json.loads(out1.read_text())["jobs"], json.loads(out3.read_text())["jobs"]
    inf1 = sorted((j["job_id"], j["gpus"]) for j in jobs1 if j["kind"] == "inference")
    inf3 = sorted((j["job_id"], j["gpus"]) for j in jobs3 if j["kind"] == "inference")
    assert inf1 and inf3 == inf1
    n1 = sum(1 for j in jobs1 if j["kind"] != "inference")
    n3 = sum(1 for j in jobs3 if j["kind"] != "inference")
    assert n3 == 3 * n1 > 0


@pytest.mark.parametrize("policy", available_policies())
def test_simulate_runs_every_registered_policy(tmp_path: Path, policy: str) -> None:
    """``windward simulate --policy P`` for every registered policy, as a user runs it (the real command, the
    embedded data, the smallest run that still schedules jobs: 6 hours): exit 0, the report is P's, jobs ran
    and finished, no cap broken. ``cics`` crashed here (make_policy handed it a horizon it has no parameter
    for)."""
    out = tmp_path / "r.json"
    res = CliRunner().invoke(app, ["simulate", "--policy", policy, "--compare", "", "--days", "0.25",
                                   "--out", str(out), "--no-plot"])
    assert res.exit_code == 0, (res.output, res.exception)
    rep = json.loads(out.read_text())
    assert rep["policy"] == policy
    s = rep["summary"]
    assert s["work_done_gpu_h"] > 0 and s["jobs_by_state"].get("finished", 0) > 0, s
    assert s["cap_violations"] == 0
    assert check_plan(rep) == []


@pytest.mark.parametrize("command", ["simulate", "server"])
def test_the_deferral_options_help_names_the_policies_that_take_them_from_the_registry(
        command: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """--defer-history-days, --beyond-age-h and --max-defer-h say which policies take them, from the registry
    entries that take ``deferral`` (scheduler.policies.takers; until round 24 "Windward policy:" by hand): a
    policy registered later with ``deferral`` is named too."""
    import typer

    from scheduler.cli.options import takers_lead
    from scheduler.policies import PolicySpec, takers

    assert takers_lead("deferral") == f"{', '.join(takers('deferral'))} policy only:" == "windward policy only:"
    cmd = typer.main.get_command(app).commands[command]  # type: ignore[attr-defined]
    for name in ("--defer-history-days", "--beyond-age-h", "--max-defer-h"):
        opt = next(p for p in cmd.params if name in p.opts)
        assert opt.help.startswith(takers_lead("deferral") + " "), (name, opt.help)
    monkeypatch.setitem(POLICIES, "later", PolicySpec("scheduler.policies.backfill:BackfillPolicy", "a later one",
                                                      ("deferral",)))
    assert takers_lead("deferral") == "windward, later policies only:"


@pytest.mark.parametrize("command", ["simulate", "server", "demo"])
def test_policy_help_of_every_command_is_the_registry(command: str) -> None:
    """--policy's help and default in each command that takes it come from the registry: every name, once."""
    import typer

    cmd = typer.main.get_command(app).commands[command]  # type: ignore[attr-defined]
    opt = next(p for p in cmd.params if "--policy" in p.opts)
    assert opt.help.startswith(policy_help())
    assert opt.default == DEFAULT_POLICY and DEFAULT_POLICY in POLICIES
