"""`windward server` start-up refusals and warnings (real subprocesses, simulated executor, no Ray):

- no public credentials by accident: without --tenants it refuses to start unless --demo is given; with
  --demo it prints the demo tokens and logs a warning at every start; with a real tenants file it prints
  no token;
- --power-control: nvml is refused where it cannot act (the simulated executor), unknown values are refused
  naming the option. (NVML refused on a Ray cluster without it: tests/integration/test_server_ray.py.)
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
WINDWARD = str(Path(sys.executable).parent / "windward")
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


def _refused(tmp_path: Path, *args: str) -> str:
    state = tmp_path / "s.sqlite"
    p = subprocess.run([WINDWARD, "server", "--port", "0", "--state", str(state), *args], capture_output=True,
                       text=True, timeout=120, env=ENV, cwd=tmp_path)  # fmt: skip
    assert p.returncode == 2, p.stdout + p.stderr
    assert not state.exists(), "refused before the state file is created"
    return p.stderr


def _serve_once(tmp_path: Path, *args: str) -> tuple[str, int, str]:
    """Start the server, wait for a tick's metrics, stop it with SIGTERM; returns (its output, the /readyz
    status, the /metrics text)."""
    log = tmp_path / "server.log"
    log.write_text("")
    with log.open("a") as fh:
        proc = subprocess.Popen([WINDWARD, "server", "--port", "0", "--state", str(tmp_path / "s.sqlite"),
                                 "--tick-seconds", "2", "--log-level", "warning", *args],
                                stdout=fh, stderr=subprocess.STDOUT, text=True, env=ENV, cwd=tmp_path)  # fmt: skip
        status, metrics = 0, ""
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and proc.poll() is None:
                m = re.search(r"listening on (http://[0-9.]+:\d+)", log.read_text())
                if m:
                    try:
                        status = httpx.get(m.group(1) + "/readyz", timeout=5).status_code
                        text = httpx.get(m.group(1) + "/metrics", timeout=5).text
                        if 'windward_power_control_mode{mode="simulated"} 4.0' in text:  # after the first tick
                            metrics = text
                            break
                    except httpx.HTTPError:
                        pass
                time.sleep(0.2)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    return log.read_text(), status, metrics


@pytest.mark.parametrize("args", [(), ("--site", "demo"), ("--executor", "simulated", "--site", "demo")])
def test_without_tenants_the_server_refuses_to_start(tmp_path: Path, args: tuple[str, ...]) -> None:
    err = _refused(tmp_path, *args)
    assert "--tenants is required" in err and "--demo" in err


def test_demo_and_tenants_together_are_refused(tmp_path: Path) -> None:
    err = _refused(tmp_path, "--demo", "--tenants", str(REPO / "scheduler" / "sites" / "demo-tenants.yaml"))
    assert "--demo" in err and "--tenants" in err


@pytest.mark.parametrize("args,needle", [
    (("--demo", "--power-control", "nvml"), "--power-control nvml needs --executor ray"),
    (("--demo", "--power-control", "nvml", "--executor", "simulated"), "--power-control nvml needs --executor ray"),
    (("--demo", "--power-control", "gpu"), "--power-control 'gpu': allowed are auto|nvml|simulated"),
])  # fmt: skip
def test_power_control_that_cannot_act_is_refused(tmp_path: Path, args: tuple[str, ...], needle: str) -> None:
    assert needle in _refused(tmp_path, *args)


@pytest.mark.parametrize("share", ["0", "-0.5", "1.5", "nan"])
def test_event_tick_cpu_share_outside_its_range_is_refused(tmp_path: Path, share: str) -> None:
    assert f"--event-tick-cpu-share must lie in (0, 1], got {float(share)}" in _refused(
        tmp_path, "--demo", "--event-tick-cpu-share", share)


@pytest.mark.parametrize("args,needle", [
    (("--demo", "--policy", "fifo"), "--policy: unknown policy 'fifo'; allowed: windward, backfill, greedy-green, "),
    (("--demo", "--policy", "backfill", "--horizon-hours", "0"), "--horizon-hours"),
])  # fmt: skip
def test_unknown_policy_or_no_horizon_is_refused(tmp_path: Path, args: tuple[str, ...], needle: str) -> None:
    """Exit 2 naming the option, before the state file (``--horizon-hours 0`` was a ValueError traceback under
    backfill and a server with a one-slot forecast under cics)."""
    err = _refused(tmp_path, *args)
    assert needle in err and "Traceback" not in err


def test_demo_prints_the_public_tokens_and_warns_at_every_start(tmp_path: Path) -> None:
    for _ in range(2):  # a restart on the same state warns again
        out, status, metrics = _serve_once(tmp_path, "--demo")
        assert status in (200, 503), out
        # the simulated executor's 4 nodes: limits are modelled, never real
        assert 'windward_power_control_mode{mode="simulated"} 4.0' in metrics, out
        assert 'windward_power_control_mode{mode="nvml"} 0.0' in metrics
        assert "windward-dev-ops" in out and "windward-dev-science" in out
        assert re.search(r"WARNING .*--demo: serving the demo tenants, whose tokens are public", out), out


def test_a_real_tenants_file_prints_no_token_and_refuses_the_demo_tokens(tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO / "deploy" / "compose"))
    try:
        import make_tenants
    finally:
        sys.path.pop(0)
    tokens = make_tenants.make(tmp_path / "secrets")
    env_lines = (tmp_path / "secrets" / "tokens.env").read_text()
    assert oct((tmp_path / "secrets" / "tokens.env").stat().st_mode & 0o777) == "0o600"
    tenants_text = (tmp_path / "secrets" / "tenants.yaml").read_text()
    assert all(t not in tenants_text and t in env_lines for t in tokens.values())
    log = tmp_path / "server.log"
    with log.open("w") as fh:
        proc = subprocess.Popen([WINDWARD, "server", "--port", "0", "--state", str(tmp_path / "s.sqlite"),
                                 "--tenants", str(tmp_path / "secrets" / "tenants.yaml"), "--log-level", "warning"],
                                stdout=fh, stderr=subprocess.STDOUT, text=True, env=ENV, cwd=tmp_path)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        url = None
        while time.monotonic() < deadline and proc.poll() is None and url is None:
            m = re.search(r"listening on (http://[0-9.]+:\d+)", log.read_text())
            url = m.group(1) if m else None
            time.sleep(0.2)
        assert url, log.read_text()
        with httpx.Client(base_url=url, timeout=10) as c:
            assert c.get("/v1/audit", headers={"Authorization": "Bearer windward-dev-ops"}).status_code == 401
            assert c.get("/v1/audit", headers={"Authorization": f"Bearer {tokens['ops']}"}).status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    out = log.read_text()
    assert "windward-dev-" not in out and "demo tenants" not in out
    assert not any(t in out for t in tokens.values())
