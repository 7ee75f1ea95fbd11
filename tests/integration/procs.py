"""Process-tree helpers for the tests that check no Ray process is left behind."""

from __future__ import annotations

import subprocess


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
