"""`windward server --executor ray` smoke test: the server starts its own local Ray cluster (the demo site's
simulated GPU nodes), places a job on it within a few ticks, and a clean shutdown (SIGTERM) leaves no raylet
behind. Runs the server as a subprocess: it shares nothing with the Ray session of the test_ray_* modules."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx
import pytest
from procs import descendants, raylets
from server_process import auth, start_server

pytestmark = pytest.mark.integration


def test_ray_server_places_a_job_and_shuts_down_clean(tmp_path: Path) -> None:
    state = tmp_path / "state.sqlite"
    srv = start_server(state, tmp_path / "server.log", "--tick-seconds", "2", executor="ray", timeout_s=300)
    try:
        mine = descendants(srv.proc.pid) & raylets()
        assert mine, "the server should run its own local Ray cluster (raylets under its process tree)"
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            assert c.get("/readyz").json()["checks"]["executor_ready"]
            spec = {"name": "ray-smoke", "kind": "training", "gpus": 2, "duration_s": 900,
                    "checkpoint_interval_s": 300}  # fmt: skip
            r = c.post("/v1/jobs", json=spec, headers=auth("science"))
            assert r.status_code == 201, r.text
            jid = r.json()["id"]
            deadline = time.monotonic() + 120
            job = r.json()["job"]
            while time.monotonic() < deadline and not job["pool"]:
                time.sleep(0.5)
                job = c.get(f"/v1/jobs/{jid}", headers=auth("science")).json()
            assert job["pool"] == "h100-eu-public" and len(job["nodes"]) == 1, job  # science: public pool only
            audit = [a for a in c.get("/v1/audit", headers=auth("ops")).json()["placements"] if a["job_id"] == jid]
            assert len(audit) == 1 and audit[0]["labels"]["clearance"] == "public" and audit[0]["tenant"] == "science"
            # a few more ticks: it runs on Ray and its progress or completion reaches the API
            while time.monotonic() < deadline and job["state"] != "finished" and job["work_done_s"] <= 0:
                time.sleep(1.0)
                job = c.get(f"/v1/jobs/{jid}", headers=auth("science")).json()
            assert job["state"] == "finished" or job["work_done_s"] > 0, job
            assert job["starts"] == 1
    finally:
        srv.kill(signal.SIGTERM)  # clean shutdown: uvicorn stops, the service closes the executor and Ray
    assert srv.proc.returncode == 0 and "windward server: stopped" in srv.log(), srv.log()[-3000:]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and mine & raylets():
        time.sleep(0.5)
    assert not (mine & raylets()), f"raylets left behind: {sorted(mine & raylets())}\n{srv.log()[-3000:]}"


def test_ray_server_refuses_nvml_power_control_where_nvml_cannot_act(tmp_path: Path) -> None:
    """`--power-control nvml` on nodes without NVML (here: no nvidia-ml-py, no driver): the server does not
    start and names every node and the reason. Its local cluster's nodes would all run on this host, so it
    refuses before it starts one (no Ray session is created: nothing in its Ray temporary folder); the node
    agents' own check, behind the same refusal on a cluster given by --address, runs on real Ray in
    tests/integration/test_ray_power.py."""
    import os
    import shutil
    import subprocess
    import sys
    import tempfile

    ray_tmp = Path(tempfile.mkdtemp(prefix="wr-"))  # short: Ray's socket paths must fit 107 characters
    try:
        p = subprocess.run(
            [str(Path(sys.executable).parent / "windward"), "server", "--demo", "--executor", "ray", "--power-control",
             "nvml", "--port", "0", "--state", str(tmp_path / "s.sqlite")],
            capture_output=True, text=True, timeout=600,
            env={**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "RAY_TMPDIR": str(ray_tmp)},
        )  # fmt: skip
        started = sorted(str(x.relative_to(ray_tmp)) for x in ray_tmp.rglob("*"))
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert p.returncode == 2, p.stdout + p.stderr
    (err,) = [ln for ln in p.stderr.splitlines() if ln.startswith("error:")]
    assert "power control 'nvml' is not usable on every node" in err
    for node in ("h100-eu-public/0", "h100-eu-public/1", "h100-nl-secret/0", "h100-nl-secret/1"):
        assert node in err
    assert "ExecutorError: NVML power control requested but unavailable: nvidia-ml-py is not installed" in err
    assert "listening on" not in p.stdout
    assert started == [], f"a Ray cluster was started before the refusal: {started[:5]}"
