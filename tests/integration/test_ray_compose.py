"""deploy/compose end to end, where a Docker engine runs (skipped otherwise; this project's development
machines have the docker CLI but no engine): build the image, bring up the Ray head with `windward server`,
one Ray worker per pool (fake GPUs), Prometheus and Grafana, with a tenants file of fresh random tokens;
run one job to completion through the API, and see Prometheus scrape the server and every Ray node.

What runs here without Docker: tests/unit/test_deploy.py (the compose file is the render of the one
definition of a pool node) and tests/integration/test_server_ray_restart.py (Ray nodes started with the
compose file's own `ray start` arguments, a gang through `windward server --executor ray`)."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "deploy" / "compose" / "docker-compose.yml"


def _engine() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        ok = subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0
        return ok and subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.skipif(not _engine(), reason="no Docker engine (docker info fails)")
def test_compose_brings_up_the_demo_and_runs_a_job(tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO / "deploy" / "compose"))
    try:
        import make_tenants
    finally:
        sys.path.pop(0)
    tokens = make_tenants.make(tmp_path / "secrets")
    project = f"windward-test-{secrets.token_hex(3)}"
    env = {
        "PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"),
        "WINDWARD_TENANTS_FILE": str(tmp_path / "secrets" / "tenants.yaml"),
        "GRAFANA_ADMIN_PASSWORD": secrets.token_urlsafe(12), "WINDWARD_TICK_SECONDS": "2",
    }  # fmt: skip
    dc = ["docker", "compose", "-f", str(COMPOSE), "-p", project]
    up = subprocess.run([*dc, "up", "-d", "--build"], capture_output=True, text=True, env=env, timeout=3600)
    try:
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        science = {"Authorization": f"Bearer {tokens['science']}"}
        with httpx.Client(base_url="http://127.0.0.1:8470", timeout=10) as c:
            deadline = time.monotonic() + 600
            ready = False
            while time.monotonic() < deadline and not ready:
                try:
                    ready = c.get("/readyz").status_code == 200
                except httpx.HTTPError:
                    pass
                time.sleep(2)
            assert ready, subprocess.run([*dc, "logs", "windward"], capture_output=True, text=True, env=env).stdout[-4000:]
            assert c.get("/v1/jobs", headers={"Authorization": "Bearer windward-dev-science"}).status_code == 401
            r = c.post("/v1/jobs", json={"name": "compose", "kind": "training", "gpus": 8, "duration_s": 3600,
                                         "checkpoint_interval_s": 600}, headers=science)  # fmt: skip
            assert r.status_code == 201, r.text
            jid = r.json()["id"]
            job = r.json()["job"]
            while time.monotonic() < deadline and job["state"] != "finished":
                time.sleep(2)
                job = c.get(f"/v1/jobs/{jid}", headers=science).json()
            assert job["state"] == "finished" and job["pool"] == "h100-eu-public", job
        with httpx.Client(base_url="http://127.0.0.1:9090", timeout=10) as p:
            deadline = time.monotonic() + 120
            up_ray: list = []
            while time.monotonic() < deadline:
                up_ray = p.get("/api/v1/query", params={"query": 'up{job="ray"} == 1'}).json()["data"]["result"]
                up_ww = p.get("/api/v1/query", params={"query": 'up{job="windward"} == 1'}).json()["data"]["result"]
                if len(up_ray) == 3 and len(up_ww) == 1:
                    break
                time.sleep(3)
            assert len(up_ray) == 3, up_ray  # the head and both workers
    finally:
        subprocess.run([*dc, "down", "-v"], capture_output=True, env=env, timeout=600)
