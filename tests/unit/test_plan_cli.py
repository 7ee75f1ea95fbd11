"""`windward plan`: the DESIGN section-7 plan JSON, re-checked from the file alone; bad input exits 2."""

from __future__ import annotations

import json
from datetime import UTC
from pathlib import Path

import pytest
from typer.testing import CliRunner

from scheduler.cli import app

HEADER = "job_id,tenant,kind,submit_s,gpus,duration_s,deadline_s,preemptible,pool,priority\n"
JOBS = [
    "t1,science,training,0,8,14400,,true,,0",
    "t2,science,training,0,4,7200,43200,true,h100-eu-public,1",
    "t3,acme,batch,1800,2,3600,,false,,0",
    "s1,gov,training,0,8,10800,,true,jurisdiction=nl,0",
    "i1,public,inference,0,2,900,,false,,5",
    "i2,public,inference,900,3,900,,false,,5",
    "i3,public,inference,1800,2,900,,false,,5",
]

TOP = {"status", "start_utc", "slot_s", "n_slots", "pue", "solve_s", "objective", "pools", "timeline", "jobs"}
OBJ = {"carbon_g", "lower_bound_carbon_g", "gap", "unfinished_gpu_s", "objective_g", "lower_bound_objective_g",
       "objective_gap"}
POOL = {"name", "gpus", "tdp_w", "idle_w", "host_w_per_gpu", "speed_curve"}
TL = {"facility_w", "wind_w", "grid_import_w", "grid_cap_w", "site_max_w", "carbon_g_per_kwh", "carbon_g", "busy_gpus"}
JOB = {"job_id", "pool", "gpus", "slots", "power_fraction", "work_done_s", "duration_s", "finished"}


def _jobs_csv(tmp_path: Path, rows: list[str]) -> Path:
    p = tmp_path / "jobs.csv"
    p.write_text(HEADER + "\n".join(rows) + "\n")
    return p


def _plan(tmp_path: Path, jobs: Path, *extra: str) -> tuple[int, str, Path]:
    pytest.importorskip("scheduler.traces")
    out = tmp_path / "plan.json"
    args = ["plan", "--site", "demo", "--jobs", str(jobs), "--start", "2023-03-06T00:00:00Z",
            "--horizon-hours", "12", "--forecast", "perfect", "--out", str(out), *extra]
    res = CliRunner().invoke(app, args)
    return res.exit_code, res.output, out


def _recheck(doc: dict) -> None:
    """Recompute each slot's facility power and carbon from the JSON alone and check every cap."""
    T, slot_h, pue = doc["n_slots"], doc["slot_s"] / 3600.0, doc["pue"]
    tl = doc["timeline"]
    pools = {p["name"]: p for p in doc["pools"]}
    busy = {n: [0] * T for n in pools}
    active_w = {n: [0.0] * T for n in pools}
    for j in doc["jobs"]:
        assert len(j["slots"]) == len(j["power_fraction"])
        if not j["slots"]:
            continue
        p = pools[j["pool"]]
        for t, f in zip(j["slots"], j["power_fraction"]):
            assert 0 <= t < T
            busy[j["pool"]][t] += j["gpus"]
            active_w[j["pool"]][t] += j["gpus"] * f * p["tdp_w"]
    total_carbon = 0.0
    for t in range(T):
        it_w = 0.0
        for n, p in pools.items():
            healthy = tl.get("healthy_gpus", {}).get(n, [p["gpus"]] * T)[t]
            assert busy[n][t] == tl["busy_gpus"][n][t]
            assert busy[n][t] <= healthy
            it_w += active_w[n][t] + (healthy - busy[n][t]) * p["idle_w"] + healthy * p["host_w_per_gpu"]
        fac = pue * it_w
        assert fac == pytest.approx(tl["facility_w"][t], rel=1e-6)
        imp = max(0.0, fac - tl["wind_w"][t])
        assert imp == pytest.approx(tl["grid_import_w"][t], rel=1e-6, abs=1e-3)
        assert fac <= tl["site_max_w"][t] * (1 + 1e-9)
        assert imp <= tl["grid_cap_w"][t] * (1 + 1e-9) + 1e-6
        c = imp * slot_h / 1000.0 * tl["carbon_g_per_kwh"][t]
        assert c == pytest.approx(tl["carbon_g"][t], rel=1e-6, abs=1e-6)
        total_carbon += c
    assert total_carbon == pytest.approx(doc["objective"]["carbon_g"], rel=1e-6, abs=1e-6)


def test_plan_json_has_every_field_and_rechecks(tmp_path: Path, shared_data: None) -> None:
    from scheduler.paths import nl_energy_csv

    code, output, out = _plan(tmp_path, _jobs_csv(tmp_path, JOBS), "--energy", str(nl_energy_csv()))
    assert code == 0, output
    doc = json.loads(out.read_text())
    assert TOP <= doc.keys() and OBJ <= doc["objective"].keys() and TL <= doc["timeline"].keys()
    assert all(POOL <= p.keys() for p in doc["pools"]) and all(JOB <= j.keys() for j in doc["jobs"])
    assert doc["status"] in ("optimal", "feasible")
    assert doc["start_utc"] == "2023-03-06T00:00:00Z" and doc["slot_s"] == 900 and doc["n_slots"] == 48
    assert all(len(doc["timeline"][k]) == 48 for k in TL - {"busy_gpus"})
    ob = doc["objective"]
    # the auditor's reading: a lower bound on grid carbon, and the gap between them
    assert 0 <= ob["lower_bound_carbon_g"] <= ob["carbon_g"]
    assert ob["gap"] == pytest.approx((ob["carbon_g"] - ob["lower_bound_carbon_g"]) / ob["carbon_g"], rel=1e-9)
    assert 0 <= ob["gap"] < 1
    # the penalised objective keeps its own certified bound and gap
    assert ob["objective_g"] == doc["objective_parts"]["objective_g"] >= ob["carbon_g"]
    assert ob["lower_bound_objective_g"] <= ob["objective_g"] * (1 + 1e-9)
    assert 0 <= ob["objective_gap"] < 1
    assert len(doc["timeline"]["dual_price_g_per_gpu_h"]) == 48
    assert "nl-2021-2023-hourly.csv" in doc["provenance"]["energy"]
    assert doc["check"]["ok"]
    _recheck(doc)
    from scheduler.planjson import check_plan

    assert check_plan(doc) == []  # the auditor's view agrees
    by_id = {j["job_id"]: j for j in doc["jobs"]}
    # inference runs exactly in its demand slot at full power; the sovereign job stays in the nl pool
    assert by_id["i2"]["slots"] == [1] and by_id["i2"]["power_fraction"] == [1.0]
    assert by_id["s1"]["pool"] in (None, "h100-nl-secret")
    t3 = by_id["t3"]["slots"]  # non-preemptible: one unbroken block
    assert t3 == list(range(t3[0], t3[0] + len(t3))) if t3 else True


def test_slot_minutes_override_and_embedded_energy(tmp_path: Path) -> None:
    code, output, out = _plan(tmp_path, _jobs_csv(tmp_path, JOBS[:2]), "--slot-minutes", "30")
    assert code == 0, output
    doc = json.loads(out.read_text())
    assert doc["slot_s"] == 1800 and doc["n_slots"] == 24
    assert "synthetic" in doc["provenance"]["energy"]
    _recheck(doc)


def test_unknown_pool_exits_2(tmp_path: Path) -> None:
    code, output, out = _plan(tmp_path, _jobs_csv(tmp_path, ["x,t,training,0,1,900,,true,no-such-pool,0"]))
    assert code == 2
    assert "no-such-pool" in output and "unknown pool" in output
    assert not out.exists()


def test_job_larger_than_any_pool_exits_2(tmp_path: Path) -> None:
    code, output, out = _plan(tmp_path, _jobs_csv(tmp_path, ["big,t,training,0,64,900,,true,,0"]))
    assert code == 2
    assert "big" in output and "64" in output and "16" in output
    assert not out.exists()


def test_a_job_the_optimiser_finds_no_pool_for_is_left_out_and_exits_3(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The line between a refusal and an unfinished job: a jobs file naming a job no pool of the configured site
    can hold is bad input (exit 2, above: the user must fix it). Past that gate (here opened on purpose, as a
    node failure opens it on a server), the optimiser no longer refuses the whole plan for one job (round 23:
    "job 0 needs 64 GPUs but its largest eligible pool has 16", exit 2): it leaves the job out
    (kernels.check.unplaceable), plans the rest, and ``windward plan`` exits 3 naming the job and why; the plan
    JSON lists it in ``unfinished.left_out_jobs``, unfinished for capacity (proven), and planjson.check_plan
    refuses a file where a listed job runs."""
    import scheduler.jobs
    from scheduler.planjson import check_plan

    monkeypatch.setattr(scheduler.jobs, "check_jobs_fit", lambda *a: None)
    code, output, out = _plan(tmp_path, _jobs_csv(tmp_path, ["big,t,training,0,64,900,,true,,0",
                                                           "small,t,training,0,8,3600,,true,,0"]))
    assert code == 3, output
    # (scheduler.jobs.eligible_pools already drops the pools too small for it: no eligible pool is left)
    # (scheduler.jobs.fit_error names the pool and its GPUs; round 24 said "it has no eligible pool")
    assert ("job big: no pool can hold it in any slot (field gpus: needs 64 GPUs, but the largest pool it may use is "
            "h100-eu-public with 16 GPUs; allowed: gpus <= 16") in " ".join(output.split()), output
    assert ("every plan leaves at least 16.0 GPU-h of it undone (GPU-hours of work at full speed; the plan JSON's "
            "unfinished.least_undone_gpu_h): its pools' GPUs hold 16.0 GPU-h less") in " ".join(output.split())
    doc = json.loads(out.read_text())
    ub = doc["unfinished"]
    assert doc["status"] in ("optimal", "feasible") and doc["check"]["ok"] and ub["left_out_jobs"] == ["big"]
    assert ub["jobs_by_reason"]["capacity"] == ub["proven_jobs_by_reason"]["capacity"] == ub["jobs"] == 1
    jobs = {j["job_id"]: j for j in doc["jobs"]}
    assert not jobs["big"]["slots"] and jobs["big"]["unfinished_reason"] == "capacity" and jobs["small"]["finished"]
    assert check_plan(doc) == []
    doc["unfinished"]["left_out_jobs"] = ["small"]
    assert any("job small is listed in left_out_jobs" in p for p in check_plan(doc)), check_plan(doc)


def test_out_naming_a_directory_is_refused_before_the_solve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import kernels

    def no_solve(*a: object, **k: object) -> None:
        raise AssertionError("planned before --out was checked")

    monkeypatch.setattr(kernels, "plan", no_solve)
    jobs = _jobs_csv(tmp_path, JOBS[:1])
    (tmp_path / "outdir").mkdir()
    res = CliRunner().invoke(app, ["plan", "--site", "demo", "--jobs", str(jobs), "--start", "2023-03-06T00:00:00Z",
                                   "--horizon-hours", "12", "--out", str(tmp_path / "outdir")])
    assert res.exit_code == 2 and "--out" in res.output and "is a directory" in res.output, res.output


def test_bad_start_and_slot_minutes_exit_2(tmp_path: Path) -> None:
    jobs = _jobs_csv(tmp_path, JOBS[:1])
    code, output, _ = _plan(tmp_path, jobs, "--slot-minutes", "7")
    assert code == 2 and "slot_minutes" in output
    out = tmp_path / "p.json"
    res = CliRunner().invoke(app, ["plan", "--jobs", str(jobs), "--start", "yesterday", "--out", str(out)])
    assert res.exit_code == 2 and "--start" in res.output


def _energy_csv(tmp_path: Path, n: int, cap_mw: list[float]) -> Path:
    from datetime import datetime, timedelta

    t0 = datetime(2023, 3, 6, tzinfo=UTC)
    rows = [f"{(t0 + timedelta(minutes=15 * i)).strftime('%Y-%m-%dT%H:%M:%SZ')},0.0,{cap_mw[i]},{300 + i}"
            for i in range(n)]
    p = tmp_path / "energy.csv"
    p.write_text("timestamp_utc,wind_mw,grid_cap_mw,carbon_g_per_kwh\n" + "\n".join(rows) + "\n")
    return p


def test_a_later_cap_below_the_idle_floor_plans_around_it_and_exits_3(tmp_path: Path) -> None:
    """A 1 kW cap announced for +6 h: a valid plan (exit 3, not 1 or 2) that runs work now, runs nothing in
    those slots and names them with their deficit."""
    caps = [10.0] * 48
    caps[24:28] = [0.001] * 4
    code, output, out = _plan(tmp_path, _jobs_csv(tmp_path, JOBS[:4]), "--energy", str(_energy_csv(tmp_path, 48, caps)))
    assert code == 3, output
    assert "cannot meet their cap" in output
    doc = json.loads(out.read_text())
    assert doc["status"] in ("optimal", "feasible") and doc["check"]["ok"]
    assert doc["unfinished"]["infeasible_slots"] == [24, 25, 26, 27]
    assert min(doc["unfinished"]["slot_deficit_w"]) > 0
    assert any(0 in j["slots"] for j in doc["jobs"])
    assert not any(set(j["slots"]) & {24, 25, 26, 27} for j in doc["jobs"])
    from scheduler.planjson import check_plan

    assert check_plan(doc) == []  # the auditor exempts only listed slots where nothing runs
    doc["jobs"][0]["slots"].append(25)
    doc["jobs"][0]["power_fraction"].append(1.0)
    assert any("slot 25" in p for p in check_plan(doc))


def test_work_past_the_horizon_end_is_said_and_is_not_work_the_plan_leaves_undone(tmp_path: Path) -> None:
    """A 24-hour job in a 12-hour plan, run in every slot of it, and a job and a service submitted after the
    horizon end: the plan does all the work its horizon can hold, so exit 0 (until round 24: exit 3 with reason
    "deadline", the kernels' name for the horizon end); each job says why it is unfinished (horizon,
    after_horizon), the block counts them and the GPU-hours past the end, and nothing is undone
    (scheduler.cli.plan.UNDONE_RULE)."""
    from scheduler.cli.plan import UNDONE_RULE

    rows = ["long,science,training,0,8,86400,,true,,0", "next,science,training,43200,8,3600,,true,,0",
            "srv,public,inference,50000,2,900,,false,,5"]
    code, output, out = _plan(tmp_path, _jobs_csv(tmp_path, rows), "--energy", str(_energy_csv(tmp_path, 48, [10.0] * 48)))
    assert code == 0, output
    assert "outside the horizon, not work this plan leaves undone: 2 jobs submitted at or after the horizon end" in output
    assert "1 job whose work runs past the horizon end" in output and "104.5 GPU-h past the horizon end" in output
    doc = json.loads(out.read_text())
    ub = doc["unfinished"]
    why = {j["job_id"]: j.get("unfinished_reason") for j in doc["jobs"]}
    assert why == {"long": "horizon", "next": "after_horizon", "srv": "after_horizon"} and doc["check"]["ok"]
    assert ub["jobs"] == 3 and ub["jobs_by_reason"]["horizon"] == 1 and ub["jobs_by_reason"]["after_horizon"] == 2
    assert ub["jobs_by_reason"]["deadline"] == 0 and ub["gpu_h_by_reason"]["deadline"] == 0.0  # kept, at 0
    assert ub["proven_jobs_by_reason"]["horizon"] == 1 and ub["gpu_h_by_reason"]["horizon"] == pytest.approx(96.0)
    assert ub["undone_jobs"] == 0 and ub["undone_gpu_h"] == 0.0 and ub["undone_rule"] == UNDONE_RULE
    assert ub["past_horizon_gpu_h"] == pytest.approx(8 * 12 + 8 * 1 + 2 * 0.25)


def test_the_part_of_a_horizon_jobs_work_the_horizon_holds_and_the_plan_leaves_is_undone(tmp_path: Path) -> None:
    """Two 16-GPU 24-hour jobs for one 16-GPU pool in a 12-hour plan: both run past the horizon end (horizon),
    and one pool holds one of them at a time, so 192 GPU-h their slots before the end could hold are left
    undone: exit 3 naming them."""
    rows = ["a,science,training,0,16,86400,,true,h100-eu-public,0", "b,science,training,0,16,86400,,true,h100-eu-public,0"]
    code, output, out = _plan(tmp_path, _jobs_csv(tmp_path, rows), "--energy", str(_energy_csv(tmp_path, 48, [10.0] * 48)))
    assert code == 3, output
    ub = json.loads(out.read_text())["unfinished"]
    assert ub["jobs_by_reason"]["horizon"] == 2 and ub["undone_gpu_h"] == pytest.approx(16 * 12)
    assert ub["undone_jobs_by_reason"]["horizon"] >= 1 and ub["past_horizon_gpu_h"] == pytest.approx(2 * 16 * 12)
    assert "GPU-h of work left undone; by reason: " in output and " horizon (" in output


def test_a_cap_that_dips_every_hour_keeps_a_long_non_preemptible_job_from_finishing(tmp_path: Path) -> None:
    """The demo site's idle floor is 19.32 kW; every fourth slot the grid cap (no wind) leaves 1 kW above it,
    less than 8 GPUs draw even at 40%. A 4-hour non-preemptible job on 8 GPUs finds no unbroken block: exit
    3 naming the cap, and no plan at all could finish it (the old rule said "other": room in some slot)."""
    caps = [10.0] * 48
    caps[3::4] = [0.02032] * 12
    code, output, out = _plan(tmp_path, _jobs_csv(tmp_path, ["np,science,training,0,8,14400,,false,,0"]),
                              "--energy", str(_energy_csv(tmp_path, 48, caps)))
    assert code == 3, output
    assert "1 cap (" in output and "no plan can finish it" in output
    assert "no site-level bound proves any of it undoable" in output  # the energy would hold it, not a block
    doc = json.loads(out.read_text())
    assert doc["check"]["ok"] and not doc["unfinished"]["infeasible_slots"]
    assert doc["unfinished"]["jobs_by_reason"]["cap"] == 1 and doc["unfinished"]["proven_jobs_by_reason"]["cap"] == 1
    assert doc["jobs"][0]["unfinished_reason"] == "cap" and doc["jobs"][0]["unfinished_proven"] is True
    assert doc["unfinished"]["gpu_h"] > 0
    assert doc["unfinished"]["gpu_h_by_reason"]["cap"] == pytest.approx(doc["unfinished"]["gpu_h"])


def test_inference_shed_in_infeasible_slots_or_past_the_horizon_is_reported(tmp_path: Path) -> None:
    """A must-run inference row loses the slots whose idle floor alone breaks a cap (cap) and what lies past
    the horizon end (deadline): both are counted in ``unfinished`` with a reason, so its GPU-hours agree with
    ``objective.unfinished_gpu_s`` and the table (before: finished false, no reason, 0 jobs in the block)."""
    caps = [10.0] * 48
    caps[24:28] = [0.001] * 4
    rows = ["web,public,inference,0,4,36000,,false,,5", "srv,public,inference,0,2,86400,,false,,5"]
    code, output, out = _plan(tmp_path, _jobs_csv(tmp_path, rows), "--energy", str(_energy_csv(tmp_path, 48, caps)))
    assert code == 3, output
    doc = json.loads(out.read_text())
    assert doc["check"]["ok"] and doc["unfinished"]["infeasible_slots"] == [24, 25, 26, 27]
    why = {j["job_id"]: (j.get("unfinished_reason"), j.get("unfinished_proven")) for j in doc["jobs"]}
    assert why == {"web": ("cap", True), "srv": ("horizon", True)}
    ub = doc["unfinished"]
    assert ub["jobs"] == 2 and ub["proven_jobs_by_reason"]["cap"] == 1 and ub["proven_jobs_by_reason"]["horizon"] == 1
    assert ub["gpu_h_by_reason"]["cap"] == pytest.approx(4 * 4 * 0.25)  # 4 GPUs x 4 slots of 15 min
    assert ub["gpu_h"] == pytest.approx(doc["objective"]["unfinished_gpu_s"] / 3600.0)
    assert "2 jobs unfinished" in output
    # no plan serves web's 4 GPU-h and srv's 2 (2 GPUs x 4 slots) in the infeasible slots: the undone work, all
    # of it bound; srv's 24 GPU-h past the horizon end (2 GPUs x 12 h) are unfinished but not undone (since
    # round 24; the bound's part "deadline" still counts them)
    assert ub["site_shortfall_gpu_h"]["infeasible"] == pytest.approx(6.0)
    assert ub["site_shortfall_gpu_h"]["deadline"] == pytest.approx(24.0)
    assert ub["gpu_h"] == pytest.approx(30.0) and ub["past_horizon_gpu_h"] == pytest.approx(24.0)
    assert ub["undone_gpu_h"] == pytest.approx(6.0) and ub["undone_jobs"] == 2
    line = " ".join(output.split())
    assert ub["least_undone_gpu_h"] == pytest.approx(6.0)
    assert "every plan leaves at least 6.0 GPU-h of it undone" in line, output
    assert "6.0 GPU-h of inference falls in slots whose idle floor alone breaks a cap (infeasible)" in line


def test_the_shortfall_counts_the_part_of_an_inference_slot_in_an_infeasible_slot(tmp_path: Path) -> None:
    """An inference window ending half-way into an infeasible slot: the bound counts that half slot (the work
    its window holds there), the same GPU-hours explain_unfinished gives the row's ``cap`` reason."""
    caps = [10.0] * 48
    caps[24:28] = [0.001] * 4
    rows = ["half,public,inference,0,4,22050,,false,,5"]  # 24.5 slots of 900 s: slot 24 holds 450 s of it
    code, output, out = _plan(tmp_path, _jobs_csv(tmp_path, rows), "--energy", str(_energy_csv(tmp_path, 48, caps)))
    assert code == 3, output
    ub = json.loads(out.read_text())["unfinished"]
    assert ub["gpu_h_by_reason"]["cap"] == pytest.approx(4 * 450 / 3600)
    assert ub["site_shortfall_gpu_h"] == pytest.approx({"deadline": 0.0, "capacity": 0.0, "cap": 0.0,
                                                        "infeasible": 4 * 450 / 3600})
    assert "every plan leaves at least 0.5 GPU-h of it undone" in " ".join(output.split())


def _late(doc: dict) -> dict[str, tuple]:
    return {j["job_id"]: (j.get("late"), j.get("late_s"), j.get("deadline_unreachable")) for j in doc["jobs"]}


def test_a_stated_deadline_no_plan_can_meet_is_reported_late_and_unreachable(tmp_path: Path) -> None:
    """u1 needs 4 h at full speed and is due in 1 h: the planner moves its deadline to its earliest finish and
    runs it at once, which its own count read as on time (round 22: "late jobs 0", exit 0). Against the
    stated deadline it is late by 3 h, and no plan could meet it; ok's deadline is met, b1 has none."""
    rows = ["u1,science,training,0,8,14400,3600,true,,0", "ok,science,training,0,4,7200,43200,true,,0",
            "b1,acme,training,0,8,7200,,true,,0"]
    code, output, out = _plan(tmp_path, _jobs_csv(tmp_path, rows), "--energy", str(_energy_csv(tmp_path, 48, [10.0] * 48)))
    assert code == 0, output  # every job finishes: late is said, it is not work left undone
    doc = json.loads(out.read_text())
    assert doc["check"]["ok"] and doc["unfinished"]["jobs"] == 0
    assert doc["unfinished"]["late_jobs"] == 1 and doc["unfinished"]["late_unreachable_jobs"] == 1
    late = _late(doc)
    assert late["u1"] == (True, pytest.approx(3 * 3600.0), True)  # run at once: finishes at 4 h, due at 1 h
    assert late["ok"] == (False, None, False) and late["b1"] == (None, None, None)
    assert "1 job late against the stated deadline (1 finishes after it, by up to 3.00 h): no plan could meet it" \
        in output


def test_a_job_the_plan_runs_late_is_late_and_not_unreachable(tmp_path: Path) -> None:
    """a and b each need all 16 GPUs of one pool for 2 h, both due at 2 h: either could meet it, not both, so
    one is late by the plan (reachable); u1 cannot meet its deadline at all. An unfinished job due inside the
    horizon is late too (long), one due past it is not (far)."""
    rows = ["u1,science,training,0,8,14400,3600,true,h100-nl-secret,0",
            "a,science,training,0,16,7200,7200,false,h100-eu-public,0",
            "b,science,training,0,16,7200,7200,false,h100-eu-public,0",
            "long,science,training,0,8,86400,36000,true,h100-nl-secret,0",
            "far,science,training,0,8,86400,172800,true,h100-nl-secret,0"]
    code, output, out = _plan(tmp_path, _jobs_csv(tmp_path, rows), "--energy", str(_energy_csv(tmp_path, 48, [10.0] * 48)))
    assert code == 3, output  # long and far cannot finish in 12 h
    doc = json.loads(out.read_text())
    late = _late(doc)
    assert sorted([late["a"][0], late["b"][0]]) == [False, True]
    slow = "a" if late["a"][0] else "b"
    assert late[slow][1] > 0 and late[slow][2] is False  # late, and its deadline was reachable
    assert late["u1"][0] is True and late["u1"][2] is True
    assert late["long"] == (True, None, True) and late["far"] == (False, None, False)
    ub = doc["unfinished"]
    assert ub["late_jobs"] == 3 and ub["late_unreachable_jobs"] == 2
    assert "3 jobs late against the stated deadline" in output and "2 of them no plan could meet" in output
    assert "the other 1 was reachable" in output


def test_inference_wider_than_its_pool_sheds_the_rest_there_and_exits_3(tmp_path: Path) -> None:
    """Three 8-GPU inference jobs pinned to the demo site's public pool (16 GPUs): round 23 refused the whole plan
    (exit 2, "inference needs 24 GPUs in slot 0 but its eligible pools have 16"). Now the plan is valid (exit 3),
    the slots of the windows that overlap are marked for GPUs, the job last in the serving order (less
    priority) is shed there only, the exit-3 lines name the cause, and the training in the other pool runs in
    those slots too (a slot marked for GPUs alone stays open to other work; the auditor agrees)."""
    eu = "h100-eu-public"
    rows = [f"w1,public,inference,0,8,14400,,false,{eu},5", f"w2,public,inference,0,8,14400,,false,{eu},5",
            f"w3,public,inference,0,8,7200,,false,{eu},1", "t1,science,training,0,8,36000,,true,h100-nl-secret,0"]
    code, output, out = _plan(tmp_path, _jobs_csv(tmp_path, rows))
    assert code == 3, output
    doc = json.loads(out.read_text())
    assert doc["status"] in ("optimal", "feasible") and doc["check"]["ok"]
    ub = doc["unfinished"]
    n = len(ub["shed_slots"])
    assert n >= 1 and ub["slot_shed_cause"] == ["GPUs"] * n and ub["slot_shed_jobs"] == [["w3"]] * n, ub
    assert ub["slot_shed_gpus"] == [8.0] * n and ub["infeasible_slots"] == []
    # (shed in every slot of its window, for GPUs alone: unfinished for capacity, proven; not "cap")
    assert ub["jobs_by_reason"]["capacity"] == ub["proven_jobs_by_reason"]["capacity"] == 1 == ub["jobs"]
    assert "its pools' healthy GPUs cannot hold the must-run inference (GPUs): 8 GPUs of it shed" in output
    assert "the rest of the site runs on" in output
    slots = {j["job_id"]: set(j["slots"]) for j in doc["jobs"]}
    assert not slots["w3"] & set(ub["shed_slots"]) and slots["w1"] >= set(ub["shed_slots"])
    from scheduler.planjson import check_plan

    assert check_plan(doc) == []
    bad = json.loads(out.read_text())
    j = next(e for e in bad["jobs"] if e["job_id"] == "w3")  # (shed in every slot of its window: no pool)
    j["slots"], j["power_fraction"], j["pool"] = [ub["shed_slots"][0]], [1.0], eu
    assert any(f"slot {ub['shed_slots'][0]}: the GPUs cannot hold the inference there (shed_slots) but job w3 runs"
               in p for p in check_plan(bad)), check_plan(bad)


def test_a_later_cap_the_inference_alone_breaks_sheds_it_there_and_exits_3(tmp_path: Path) -> None:
    """A cap announced for +6 h above the demo site's idle floor (19.32 kW) but below the floor plus its
    inference at full power (2 + 4 GPUs, 718.75 W each above idle): the plan is valid (exit 3, not 2 "no
    feasible plan"), runs work now, serves the inference that fits in that slot (the 2-GPU job: fewer GPUs
    first at equal priority), sheds the rest there only and names the slot, the GPUs, the watts and the job."""
    caps = [10.0] * 48
    caps[24] = (19320.0 + 2 * 718.75 + 1000.0) / 1e6
    rows = ["web,public,inference,0,4,36000,,false,,5", "srv,public,inference,0,2,43200,,false,,5",
            "t1,science,training,0,8,14400,,true,,0"]
    code, output, out = _plan(tmp_path, _jobs_csv(tmp_path, rows), "--energy", str(_energy_csv(tmp_path, 48, caps)))
    assert code == 3, output
    assert "no feasible plan" not in output
    assert "slot 24 (" in output  # with its UTC start
    assert "its cap cannot hold the must-run inference (cap): 4 GPUs of it shed (0.003 MW; job web)" in output
    doc = json.loads(out.read_text())
    assert doc["status"] in ("optimal", "feasible") and doc["check"]["ok"]
    ub = doc["unfinished"]
    assert ub["shed_slots"] == [24] and ub["slot_shed_jobs"] == [["web"]] and ub["infeasible_slots"] == []
    assert ub["slot_shed_cause"] == ["cap"]
    assert ub["slot_shed_gpus"] == [4.0] and ub["slot_shed_w"] == pytest.approx([4 * 718.75])
    slots = {j["job_id"]: set(j["slots"]) for j in doc["jobs"]}
    assert 24 not in slots["web"] and slots["web"] == set(range(40)) - {24}
    assert slots["srv"] == set(range(48)) and 0 in slots["t1"] and 24 not in slots["t1"]
    from scheduler.planjson import check_plan

    assert check_plan(doc) == []  # the marked slot's cap holds with the inference served
    # the auditor: a shed job, or other work, running in the marked slot is named
    for jid in ("web", "t1"):
        bad = json.loads(out.read_text())
        j = next(e for e in bad["jobs"] if e["job_id"] == jid)
        j["slots"].append(24)
        j["power_fraction"].append(1.0)
        assert any(f"slot 24: the cap cannot hold the inference there (shed_slots) but job {jid} runs there" in p
                   for p in check_plan(bad)), check_plan(bad)


def test_the_serving_order_is_said_as_the_planner_keys_it() -> None:
    """The plan JSON's note and the docs say the serving key in scheduler.planner.SERVING_KEY_TEXT's words (one
    key for plan and loop since round 24: docs/contracts.md and the note said "higher priority first")."""
    from scheduler.cli.plan import UNFINISHED_NOTE
    from scheduler.planner import SERVING_KEY_TEXT

    root = Path(__file__).resolve().parents[2]
    for name, text in (("note", UNFINISHED_NOTE), ("contracts", (root / "docs" / "contracts.md").read_text()),
                       ("operators-guide", (root / "docs" / "operators-guide.md").read_text())):
        assert SERVING_KEY_TEXT in " ".join(text.split()), name


def test_the_reasons_outside_the_horizon_and_the_exit_rule_are_said_where_users_read() -> None:
    """scheduler.cli.plan.HORIZON_REASONS and UNDONE_RULE: each reason in the plan JSON's note and in
    docs/contracts.md, the rule in `windward plan --help` (which points to unfinished.undone_rule)."""
    from typer.testing import CliRunner

    from scheduler.cli.plan import HORIZON_REASONS, UNFINISHED_NOTE

    contracts = (Path(__file__).resolve().parents[2] / "docs" / "contracts.md").read_text()
    for r in HORIZON_REASONS:
        assert f"{r} = " in UNFINISHED_NOTE and f"`{r}`" in contracts, r
    help_ = " ".join(CliRunner().invoke(app, ["plan", "--help"], terminal_width=200).output.split())
    assert "(after_horizon)" in help_ and "(horizon)" in help_ and "unfinished.undone_rule" in help_


def test_the_shortfall_line_says_what_is_short_in_gpu_hours_with_the_plan_json_s_number(tmp_path: Path) -> None:
    """Twelve 8-GPU 10-hour jobs on the 32-GPU demo site over 12 h: the GPUs, not the plan, leave work undone.
    Round 24's line read "no plan can do at least X GPU-h of it (capacity X, cap Y, ...)", parts that read as a
    sum and a number the plan JSON did not hold (site_shortfall_gpu_h without its deadline part). The line now
    gives unfinished.least_undone_gpu_h, and what is short (the pools' GPUs; the energy under the caps) with
    each part's GPU-hours as site_shortfall_gpu_h holds them."""
    rows = [f"j{k},science,training,0,8,36000,,true,,0" for k in range(12)]
    code, output, out = _plan(tmp_path, _jobs_csv(tmp_path, rows))
    assert code == 3, output
    ub = json.loads(out.read_text())["unfinished"]
    sf = ub["site_shortfall_gpu_h"]
    # 12 jobs x 8 GPUs x 10 h, all inside the horizon; 32 GPUs x 12 h the site has: 576 GPU-h short
    assert sf["capacity"] == pytest.approx(12 * 8 * 10 - 32 * 12) and 0 < sf["cap"] < sf["capacity"]
    assert ub["least_undone_gpu_h"] == pytest.approx(sf["capacity"]) and ub["least_undone_gpu_h"] <= ub["undone_gpu_h"]
    line = " ".join(output.split())
    assert (f"every plan leaves at least {ub['least_undone_gpu_h']:,.1f} GPU-h of it undone (GPU-hours of work at "
            "full speed; the plan JSON's unfinished.least_undone_gpu_h): its pools' GPUs hold "
            f"{sf['capacity']:,.1f} GPU-h less than the work only they can run (capacity); the energy under the "
            f"caps holds {sf['cap']:,.1f} GPU-h less") in line, output
    assert "the larger counts" in line and "no plan can do at least" not in line
