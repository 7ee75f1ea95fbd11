"""Start and stop a real ``windward server`` subprocess on loopback (shared by the test_server_* tests)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]


@dataclass
class ServerProcess:
    proc: subprocess.Popen[str]
    url: str
    log_path: Path

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        self.proc.wait(timeout=30)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_server(
    state: Path, log_path: Path, *extra: str, timeout_s: float = 60.0, executor: str = "simulated",
    policy: str | None = "backfill",
) -> ServerProcess:  # fmt: skip
    """``windward server --demo --executor EXECUTOR --port 0`` (demo site and tenants); waits for /readyz.
    ``policy`` None: the server's default policy."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "WINDWARD_LOG": "WARNING", "RAY_AUTH_MODE": "disabled",
           "RAY_USAGE_STATS_ENABLED": "0"}  # fmt: skip
    cmd = [str(Path(sys.executable).parent / "windward"), "server", "--demo", "--executor", executor, "--port", "0",
           "--state", str(state), *(["--policy", policy] if policy else []), "--log-level", "warning", *extra]
    fh = log_path.open("a")
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + timeout_s
    url = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log_path.read_text()}")
        m = re.findall(r"listening on (http://[0-9.]+:\d+)", log_path.read_text())
        if m:
            url = m[-1]
            try:
                if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                    return ServerProcess(proc, url, log_path)
            except httpx.HTTPError:
                pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"server not ready in {timeout_s} s (url {url}):\n{log_path.read_text()}")


def wait_first_tick(url: str, timeout_s: float = 120.0) -> None:
    """Until the server's first tick has ended (``/readyz``'s ``first_tick_done``). /readyz answers 200 as
    soon as the loop runs, before its first tick has made a plan: a test that reads the plan (or anything
    else a tick makes) right after start_server must wait for this first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/readyz", timeout=10).json().get("first_tick_done"):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"the server's first tick had not ended after {timeout_s} s")


def auth(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer windward-dev-{name}"}
