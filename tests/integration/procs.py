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
