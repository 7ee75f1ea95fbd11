"""`windward server --executor ray` against a Ray cluster started the way deploy/compose starts it, then
killed with SIGKILL while gangs run.

The cluster is real and outside the server: a head (`ray start --head --block`) and worker nodes started
with exactly the `ray start` arguments of deploy/compose/docker-compose.yml's worker services (GPUs, the
pool resource and the labels, parsed from the file, not restated), the public pool's worker twice, as
`docker compose up --scale` would. Nodes carry no index label: their identity comes from Ray.

1. A 16-GPU gang runs through the server over both public nodes (one rank per node), a sovereign job on the
   secret node, and a job that cannot start yet stays queued.
2. The server is SIGKILLed and restarted against the same cluster: every running job is re-adopted (the
   same workers keep running: no new start, no second worker, progress keeps growing past the kill) and
   the queued job is still queued.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml
from procs import free_port
from server_process import auth, start_server

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "deploy" / "compose" / "docker-compose.yml"
RAY = str(Path(sys.executable).parent / "ray")
ENV = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1",
       "RAY_raylet_start_wait_time_s": "180"}  # a loaded machine registers a raylet slowly
SMALL = ["--num-cpus=1", "--object-store-memory=80000000", "--disable-usage-stats"]


def _compose_worker_args() -> dict[str, list[str]]:
    """Service -> its `ray start` arguments from the compose file, without --address and --block."""
    out = {}
    for name, svc in yaml.safe_load(COMPOSE.read_text())["services"].items():
        cmd = svc.get("entrypoint") or []
        if cmd[:2] == ["ray", "start"]:
            out[name] = [a for a in cmd[2:] if not a.startswith("--address=") and a != "--block"]
    return out


def _ray_nodes(address: str) -> list[dict]:
    code = f"import json, ray; ray.init(address={address!r}, logging_level='ERROR'); print(json.dumps(ray.nodes()))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=120)
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def compose_cluster(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("ray-compose")
    port = free_port()
    address = f"127.0.0.1:{port}"
    procs: list[subprocess.Popen[bytes]] = []

    def start(args: list[str], log: str) -> None:
        procs.append(subprocess.Popen([RAY, "start", *args, *SMALL, "--block"], env=ENV, cwd=tmp,
                                      stdout=(tmp / log).open("wb"), stderr=subprocess.STDOUT))  # fmt: skip

    try:
        start(["--head", f"--port={port}", "--num-gpus=0", "--include-dashboard=false"], "head.log")
        workers = _compose_worker_args()
        assert set(workers) == {"ray-worker-h100-eu-public", "ray-worker-h100-nl-secret"}
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and "Ray runtime started" not in (tmp / "head.log").read_text():
            assert procs[0].poll() is None, (tmp / "head.log").read_text()
            time.sleep(0.5)
        alive: list[dict] = []
        # one node at a time (three raylets registering at once overload a 2-core machine)
        for i, svc in enumerate(["ray-worker-h100-eu-public", "ray-worker-h100-eu-public", "ray-worker-h100-nl-secret"]):
            # all nodes share this host: each gets its own metrics and agent ports (compose gives each
            # container its own address); GPUs, resources and labels are passed exactly as the file has them
            args = [a for a in workers[svc] if not a.startswith("--metrics-export-port=")]
            assert {a.split("=", 1)[0] for a in args} == {"--num-gpus", "--resources", "--labels"}
            start([f"--address={address}", *args, f"--metrics-export-port={free_port()}",
                   f"--dashboard-agent-listen-port={free_port()}"], f"worker-{i}.log")  # fmt: skip
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline:
                assert procs[-1].poll() is None, (tmp / f"worker-{i}.log").read_text()[-3000:]
                alive = [n for n in _ray_nodes(address) if n["Alive"] and n["Resources"].get("GPU")]
                if len(alive) == i + 1:
                    break
                time.sleep(2)
            assert len(alive) == i + 1, alive
        yield {"address": address, "tmp": tmp, "nodes": alive}
    finally:
        mine = set()
        from procs import descendants

        for p in procs:
            mine |= descendants(p.pid)
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        # `ray start --block` takes ~30 s to wind its raylets down on SIGTERM; the test has seen what it needs,
        # so what is still up after a few seconds is killed with everything it started (below)
        t_end = time.monotonic() + 5.0
        for p in procs:
            try:
                p.wait(timeout=max(t_end - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=30)
        for pid in mine:  # anything `ray start --block` left behind
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _job(c: httpx.Client, jid: str, tenant: str) -> dict:
    return c.get(f"/v1/jobs/{jid}", headers=auth(tenant)).json()


def _wait(what: str, pred, timeout_s: float, log) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(1.0)
    raise AssertionError(f"{what} not reached in {timeout_s} s\n{log()[-4000:]}")


def test_sigkilled_server_readopts_running_gangs_and_keeps_the_queue(compose_cluster: dict, tmp_path: Path) -> None:
    addr = compose_cluster["address"]
    # every worker node is exactly what the compose file says: Ray reports its labels and resources
    pools = sorted(n["Labels"]["windward.pool"] for n in compose_cluster["nodes"])
    assert pools == ["h100-eu-public", "h100-eu-public", "h100-nl-secret"]
    assert all("windward.node" not in n["Labels"] for n in compose_cluster["nodes"])
    state = tmp_path / "state.sqlite"
    extra = ("--address", addr, "--tick-seconds", "2")
    srv = start_server(state, tmp_path / "server.log", *extra, executor="ray", timeout_s=300)
    specs = {
        # science may use the public pool only: 16 GPUs = both public nodes, one rank on each
        "gang": ("science", {"name": "gang", "kind": "training", "gpus": 16, "duration_s": 288000,
                             "checkpoint_interval_s": 600}),
        "sovereign": ("defence", {"name": "sovereign", "kind": "training", "gpus": 8, "duration_s": 288000,
                                  "checkpoint_interval_s": 600, "requires": {"jurisdiction": "nl", "clearance": "secret"}}),
        # nothing public is free while the gang runs: it waits
        "waiting": ("companies", {"name": "waiting", "kind": "training", "gpus": 8, "duration_s": 3600}),
    }  # fmt: skip
    ids: dict[str, str] = {}
    try:
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            for key in ("gang", "sovereign"):
                tenant, spec = specs[key]
                r = c.post("/v1/jobs", json=spec, headers=auth(tenant))
                assert r.status_code == 201, r.text
                ids[key] = r.json()["id"]

            def running(key: str) -> bool:
                j = _job(c, ids[key], specs[key][0])
                return j["state"] == "running" and j["work_done_s"] > 0

            _wait("both jobs running with progress", lambda: running("gang") and running("sovereign"), 240, srv.log)
            tenant, spec = specs["waiting"]
            r = c.post("/v1/jobs", json=spec, headers=auth(tenant))
            assert r.status_code == 201, r.text
            ids["waiting"] = r.json()["id"]
            time.sleep(6)  # a few ticks: it stays queued
            gang = _job(c, ids["gang"], "science")
            assert gang["pool"] == "h100-eu-public" and len(gang["nodes"]) == 2, gang
            assert _job(c, ids["sovereign"], "defence")["pool"] == "h100-nl-secret"
            assert _job(c, ids["waiting"], "companies")["state"] == "queued"
            before = {k: _job(c, ids[k], specs[k][0]) for k in ids}
    except BaseException:
        srv.kill(signal.SIGTERM)
        raise
    srv.kill(signal.SIGKILL)  # no shutdown path runs: the driver dies, the detached workers do not
    assert srv.proc.returncode == -signal.SIGKILL
    job_dirs = {k: Path(str(state) + ".ray") / "jobs" / ids[k] for k in ("gang", "sovereign")}
    # the gang's two ranks keep training while no server runs
    w0 = _progress_step(job_dirs["gang"])
    _wait("the orphaned gang makes progress", lambda: _progress_step(job_dirs["gang"]) > w0, 120, srv.log)

    srv2 = start_server(state, tmp_path / "server2.log", *extra, executor="ray", timeout_s=300)
    try:
        log2 = srv2.log()
        m = re.search(r"recovered: (\d+) running job\(s\) re-adopted, (\d+) resumed from checkpoints", log2)
        assert m and m.groups() == ("2", "0"), log2[-3000:]
        with httpx.Client(base_url=srv2.url, timeout=30) as c:
            after = {k: _job(c, ids[k], specs[k][0]) for k in ids}
            for k in ("gang", "sovereign"):
                a, b = after[k], before[k]
                assert a["state"] == "running" and a["starts"] == b["starts"] == 1, (k, a)  # not restarted
                assert a["pool"] == b["pool"] and sorted(a["nodes"]) == sorted(b["nodes"]), (k, a, b)
                assert a["work_done_s"] >= b["work_done_s"], (k, a, b)  # no step back to a checkpoint
            assert after["waiting"]["state"] == "queued" and after["waiting"]["starts"] == 0
            # and they keep running under the new server
            _wait("progress under the new server",
                  lambda: _job(c, ids["gang"], "science")["work_done_s"] > after["gang"]["work_done_s"], 120, srv2.log)
            assert _job(c, ids["gang"], "science")["starts"] == 1
        # one worker per rank, each started once (a duplicate would write a second "starting" line)
        for k, ranks in (("gang", 2), ("sovereign", 1)):
            for rank in range(ranks):
                log = job_dirs[k] / ("job.log" if rank == 0 else f"job.r{rank}.log")
                assert log.read_text().count(": starting ") == 1, (k, rank, log.read_text()[-2000:])
            assert not (job_dirs[k] / f"job.r{ranks}.log").exists()
    finally:
        srv2.kill(signal.SIGTERM)


def _progress_step(job_dir: Path) -> int:
    from scheduler.workloads.runtime import read_progress

    p = read_progress(job_dir)
    return int(p.get("step", 0)) if p else 0
