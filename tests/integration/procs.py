"""Helpers of the integration tests: process trees (no Ray process left behind), stepping an executor, a
loopback HTTP server, a free port."""

from __future__ import annotations

import random
import socket
import subprocess
from pathlib import Path

#: the loopback ports :func:`free_port` handed out in this process
_GIVEN: set[int] = set()
#: the first port above Ray's worker ports (``--min-worker-port`` 10002 to ``--max-worker-port`` 19999)
_FIRST = 20000


def free_port() -> int:
    """A loopback TCP port nothing listens on now, for a server the test starts on it.

    Taken below the kernel's ephemeral range (``/proc/sys/net/ipv4/ip_local_port_range``, 32768-60999 here)
    and above Ray's worker ports where there is room: a port bound at 0 and released comes from the ephemeral
    range, and until the server binds it any outgoing connection (Ray's gRPC clients, an HTTP client, another
    test's processes) can be handed it; below that range only an explicit bind can take it. Never the same
    port twice in one process. Falls back to a port bound at 0 where the range leaves no room."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 0
    pick = random.SystemRandom()
    for _ in range(200 if low - _FIRST >= 1000 else 0):
        port = pick.randrange(_FIRST, low)
        if port in _GIVEN:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _GIVEN.add(port)
        return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    _GIVEN.add(port)
    return port


def descendants(pid: int) -> set[int]:
    out = subprocess.run(["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True, check=True).stdout
    children: dict[int, list[int]] = {}
    for line in out.splitlines():
        c, p = (int(x) for x in line.split())
        children.setdefault(p, []).append(c)
    seen, todo = set(), [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            if c not in seen:
                seen.add(c)
                todo.append(c)
    return seen


def raylets() -> set[int]:
    r = subprocess.run(["pgrep", "-f", "raylet"], capture_output=True, text=True)
    return {int(x) for x in r.stdout.split()}


def step_until(ex, pred, max_steps: int = 60, dt_s: float = 300.0) -> list:
    """Step an executor ``dt_s`` at a time until ``pred(events so far)`` holds; fail naming the events."""
    events: list = []
    for _ in range(max_steps):
        events += ex.step(dt_s)
        if pred(events):
            return events
    raise AssertionError(f"condition not reached after {max_steps} steps of {dt_s} s; events: {events}")


class StaticHTTP:
    """A loopback HTTP server that answers every GET with one body (a recorded feed, a /metrics exposition);
    ``hits`` counts the requests, ``url`` is ``path`` on it."""

    def __init__(self, body: bytes, content_type: str = "application/json", path: str = "/") -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.hits = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                outer.hits += 1
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}{path}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
