"""Issue 15 end to end: a real ``windward server`` (simulated executor, demo site and tenants) with a live
congestion feed served over real HTTP on loopback, driven by the real ``windward`` CLI as subprocesses.

Why and when (``reason`` from what held each job in the last tick), dependencies and ``--begin`` held by the
loop (``afterok`` released when the dependency finished, ``afternotok`` failed with the reason), Slurm
scripts with arrays, ``--wait`` and its exit codes, ``pools``, ``logs``, ``schedule``, ``usage --since``,
paging in ``status``, the live signal's cap in the plan and its staleness, counters, build info and process
metrics on ``/metrics``."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from procs import StaticHTTP
from server_process import ServerProcess, start_server
from test_cli_client import run, tenant_env, write_spec

pytestmark = pytest.mark.integration

CAP_MW = 0.024  # the feed's cap: below the demo's firm 25 kW contract


class Feed(StaticHTTP):
    """A grid operator's congestion feed (docs/contracts.md) on loopback: one event around now."""

    def __init__(self) -> None:
        now = datetime.now(UTC)
        body = json.dumps({
            "format": "windward.congestion/v1", "operator": "test grid", "connection": "test",
            "published_utc": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "events": [{"id": "t-1", "start_utc": (now - timedelta(hours=2)).strftime("%Y-%m-%dT%H:00:00Z"),
                        "end_utc": (now + timedelta(days=3)).strftime("%Y-%m-%dT%H:00:00Z"), "cap_mw": CAP_MW,
                        "reason": "test congestion"}],
        }).encode()  # fmt: skip
        super().__init__(body, path="/feed.json")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    d = tmp_path_factory.mktemp("ops-srv")
    feed = Feed()
    live = d / "live.yaml"
    live.write_text(f"refresh_s: 900\nlookback_s: 3600\nhorizon_s: 86400\ncache_dir: {d / 'cache'}\n"
                    f"sources:\n  - kind: congestion\n    url: \"{feed.url}\"\n")  # fmt: skip
    s = start_server(d / "state.sqlite", d / "server.log", "--tick-seconds", "2", "--live-signals", str(live))
    yield s
    s.kill()
    feed.close()


def cli_json(args: list[str], env: dict[str, str]) -> Any:
    r = run([*args, "--json"], env)
    assert r.returncode == 0, (args, r.returncode, r.stderr)
    return json.loads(r.stdout)


def job(server: ServerProcess, env: dict[str, str], jid: str) -> dict[str, Any]:
    return cli_json(["status", jid], env)  # type: ignore[no-any-return]


def wait_for(what: str, cond: Any, timeout_s: float = 120.0) -> Any:
    t_end = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < t_end:
        last = cond()
        if last:
            return last
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def submit(env: dict[str, str], path: Path) -> list[str]:
    r = run(["submit", str(path)], env)
    assert r.returncode == 0, r.stderr
    return [line.split()[0] for line in r.stdout.splitlines() if line.strip()]


def test_a_queued_job_says_why_it_waits_quota(server: ServerProcess, tmp_path: Path) -> None:
    env = tenant_env(server, "education")  # quota 8 GPUs
    (a,) = submit(env, write_spec(tmp_path / "a.yaml", "name: big\ngpus: 8\nduration_s: 360000\n"))
    wait_for("the first job running", lambda: job(server, env, a)["state"] == "running")
    (b,) = submit(env, write_spec(tmp_path / "b.yaml", "name: second\ngpus: 8\nduration_s: 3600\n"))
    v = wait_for("a reason from a tick", lambda: (j := job(server, env, b))["reason"] not in (None, "new") and j)
    assert v["state"] == "queued" and v["reason"] == "quota", v
    assert "quota" in v["reason_detail"] and v["planned_start"] is None  # backfill has no plan beyond now
    q = cli_json(["queue"], env)
    assert {j["id"]: j["reason"] for j in q["queued"]}[b] == "quota"
    assert {j["id"]: j["reason"] for j in q["running"]}[a] is None
    table = run(["status", b], env).stdout
    assert "quota" in table and "waiting: quota" in table
    assert run(["cancel", a], env).returncode == 0 and run(["cancel", b], env).returncode == 0


def test_dependencies_begin_wait_and_exit_codes(server: ServerProcess, tmp_path: Path) -> None:
    env = tenant_env(server, "science")
    (c,) = submit(env, write_spec(tmp_path / "c.yaml", "name: first\ngpus: 2\nduration_s: 5400\n"))  # 6 slots
    d_spec = write_spec(tmp_path / "d.yaml", f"name: after-ok\ngpus: 2\nduration_s: 1800\n"
                                             f"dependencies: [{{kind: afterok, job_id: {c}}}]\n")  # fmt: skip
    # the dependent job waits for its dependency; --wait returns 0 when it finished
    r = run(["submit", str(d_spec), "--wait", "--poll-seconds", "0.3"], env)
    assert r.returncode == 0, (r.returncode, r.stderr)
    d = r.stdout.split()[0]
    assert "queued (waiting_on_dependency" in r.stderr  # --wait printed why it waited
    e_spec = write_spec(tmp_path / "e.yaml", f"name: after-not-ok\ngpus: 2\nduration_s: 1800\n"
                                             f"dependencies: [{{kind: afternotok, job_id: {c}}}]\n")  # fmt: skip
    begin = (datetime.now(UTC) + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    (f,) = submit(env, write_spec(tmp_path / "f.yaml", f"name: later\ngpus: 1\nduration_s: 60\nbegin: \"{begin}\"\n"))
    (e,) = submit(env, e_spec)
    assert job(server, env, c)["state"] == "finished" and job(server, env, d)["state"] == "finished"
    assert job(server, env, d)["started_utc"] >= job(server, env, c)["ended_utc"]
    # afternotok on a job that finished OK can never be met: failed, naming why; --wait exits 4
    ev = wait_for("the afternotok job failed", lambda: (j := job(server, env, e))["state"] == "failed" and j)
    assert f"afternotok:{c}" in ev["detail"] and "finished OK" in ev["detail"]
    r = run(["submit", str(e_spec), "--wait", "--poll-seconds", "0.5"], env)
    assert r.returncode == 4 and "failed" in r.stderr, (r.returncode, r.stderr)
    # begin: held by the loop, not before its time
    fv = wait_for("a tick saw the later job", lambda: (j := job(server, env, f))["reason"] != "new" and j)
    assert fv["state"] == "queued" and fv["reason"] == "not_before" and begin[:16] in fv["reason_detail"]
    # a dependency on another tenant's job is no dependency: failed, "no such job"
    other = tenant_env(server, "companies")
    spy = write_spec(tmp_path / "spy.yaml", f"name: spy\ngpus: 1\nduration_s: 60\n"
                                           f"dependencies: [{{kind: afterany, job_id: {c}}}]\n")  # fmt: skip
    (s,) = submit(other, spy)
    sv = wait_for("the cross-tenant dependency failed", lambda: (j := job(server, other, s))["state"] == "failed" and j)
    assert "no such job" in sv["detail"]
    # usage like sacct: c and d ran in the window; nothing ran before the server started
    since = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    u = cli_json(["usage", "--since", since], env)
    ids = {j["id"] for j in u["jobs"]}
    assert {c, d} <= ids and e not in ids and f not in ids
    assert cli_json(["usage", "--since", "2020-01-01", "--until", "2020-01-02"], env)["jobs"] == []
    bad = run(["usage", "--since", "yesterday"], env)
    assert bad.returncode == 2 and "--since" in bad.stderr
    assert run(["cancel", f], env).returncode == 0


def test_a_slurm_script_with_an_array_becomes_one_job_per_index(server: ServerProcess, tmp_path: Path) -> None:
    env = tenant_env(server, "companies")
    script = tmp_path / "sweep.sh"
    script.write_text("#!/bin/bash\n#SBATCH --job-name=sweep\n#SBATCH --gpus=1\n#SBATCH --time=10:00\n"
                      "#SBATCH --array=0-2\n#SBATCH --mem=4G\n\npython train.py --i $SLURM_ARRAY_TASK_ID\n")  # fmt: skip
    r = run(["submit", str(script), "--json"], env)
    assert r.returncode == 0, r.stderr
    subs = json.loads(r.stdout)
    assert [s["job"]["name"] for s in subs] == ["sweep_0", "sweep_1", "sweep_2"]
    assert "ignored" in r.stderr and "--mem" in r.stderr
    for i, s in enumerate(subs):
        spec = s["job"]["spec"]
        assert spec["env"]["SLURM_ARRAY_TASK_ID"] == str(i) and spec["entrypoint"] == f"bash {script.resolve()}"
        assert spec["workdir"] == str(Path.cwd().resolve()) or spec["workdir"].startswith("/")
    bad = tmp_path / "bad.sh"
    bad.write_text("#!/bin/bash\n#SBATCH --gpus=1\n#SBATCH --time=10:00\n#SBATCH --frobnicate=3\n")
    r = run(["submit", str(bad)], env)
    assert r.returncode == 2 and "bad.sh:4" in r.stderr and "--frobnicate" in r.stderr
    for s in subs:
        run(["cancel", s["id"]], env)


def test_pools_logs_schedule_and_paging(server: ServerProcess, tmp_path: Path) -> None:
    env = tenant_env(server, "public-services")
    # 10 days of work (32 min of wall time at the server's 450x): they run or wait through every call below,
    # however slow a loaded machine makes the CLI's start-up (10 h, 80 s of wall time, was under 2x the test's)
    ids = [submit(env, write_spec(tmp_path / f"p{i}.yaml", f"name: p{i}\ngpus: 1\nduration_s: 864000\n"))[0]
           for i in range(3)]  # fmt: skip
    wait_for("a job running", lambda: any(job(server, env, j)["state"] == "running" for j in ids))
    p = cli_json(["pools"], env)
    assert [x["name"] for x in p["pools"]] == ["h100-eu-public", "h100-nl-secret"]
    ops = tenant_env(server, "ops")
    q = cli_json(["queue"], ops)
    for x in p["pools"]:
        g = x["gpus"]
        assert g["running"] + g["free"] + g["down"] == g["total"] == 16 and g["down"] == 0
        assert g["running"] <= sum(j["gpus"] for j in q["running"] if j["pool"] == x["name"])
    assert "pools of rotterdam-demo" in run(["pools"], env).stdout
    lg = run(["logs", ids[0]], env)
    assert lg.returncode == 0 and "simulated" in lg.stderr and lg.stdout == ""
    assert run(["logs", "j-nope"], env).returncode == 3
    sc = run(["schedule"], env)
    assert sc.returncode == 0, sc.stderr
    assert "slots (UTC)" in sc.stdout and "grid cap |" in sc.stdout and ids[0][-10:] in sc.stdout
    # paging: every page of the tenant's jobs, one job per request
    all_jobs = cli_json(["status"], env)["jobs"]
    assert [j["id"] for j in cli_json(["status", "--page-size", "1"], env)["jobs"]] == [j["id"] for j in all_jobs]
    assert set(ids) <= {j["id"] for j in all_jobs}
    for j in ids:
        run(["cancel", j], env)
    # a follower stops when the job has ended (here: cancelled), after saying there is no output
    fl = run(["logs", "-f", "--poll-seconds", "0.2", ids[0]], env)
    assert fl.returncode == 0 and "simulated" in fl.stderr


def test_live_signal_cap_in_the_plan_and_the_metrics(server: ServerProcess) -> None:
    env = tenant_env(server, "ops")

    def plan_capped() -> Any:
        plan = cli_json(["schedule"], env)["plan"]
        return plan if plan.get("slots") and plan["slots"][0]["grid_cap_w"] == pytest.approx(CAP_MW * 1e6) else None

    plan = wait_for("the feed's cap in the plan", plan_capped)
    assert "congestion" in plan["energy_source"]
    # the feed's event is a congestion event like an operator's (API, metrics, annotations), recorded once
    events = [e for e in cli_json(["congestion"], env)["events"] if e["created_by"] == "feed:congestion"]
    assert len(events) == 1 and events[0]["cap_mw"] == CAP_MW
    text = httpx.get(server.url + "/metrics", timeout=10).text
    lines = {ln.split(" ")[0]: ln.split(" ")[-1] for ln in text.splitlines() if ln and not ln.startswith("#")}
    assert float(lines['windward_signal_staleness_seconds{source="congestion"}']) < 3 * 3600
    assert any(k.startswith("windward_build_info{") and v == "1.0" for k, v in lines.items())
    assert "process_cpu_seconds_total" in lines and "process_resident_memory_bytes" in lines
    assert any(k.startswith("windward_tenant_gpu_seconds_total{") for k in lines)
