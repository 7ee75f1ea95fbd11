"""Recovery to ready (issue 16): ``windward server`` pauses the cyclic garbage collector from building the
service (the ledger of every active job) to the end of the first tick, then freezes what the start built out
of the collector's scans and turns it on again. These tests hold the seams of that: the service calls the
start's hook once, after the first tick, whether the tick succeeded or failed; the collector is on again
after a start that fails before serving; and resuming it is idempotent."""

from __future__ import annotations

import gc
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from scheduler.cli import app
from scheduler.cli.server import _resume_gc
from scheduler.models import JobSpec, load_site, load_tenants
from scheduler.policies.base import Decisions, Snapshot
from scheduler.service import Service, ServiceConfig


@pytest.fixture
def collector_restored() -> Iterator[None]:
    """Whatever a test does to the collector, the test process gets it back on and unfrozen."""
    was = gc.isenabled()
    try:
        yield
    finally:
        gc.unfreeze()
        if was:
            gc.enable()


class _FailsFirst:
    """A policy whose first decision raises (the loop survives it and says why), then queues everything."""

    name = "fails-first"

    def __init__(self) -> None:
        self.calls = 0

    def decide(self, snapshot: Snapshot) -> Decisions:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("first decision fails")
        return Decisions(run={})


@pytest.mark.parametrize(("fails", "jobs"), [(False, 0), (False, 7), (True, 0), (True, 5)])
def test_the_hook_runs_once_after_the_first_tick(tmp_path: Path, fails: bool, jobs: int) -> None:
    cfg = ServiceConfig(site=load_site("demo"), tenants=load_tenants(), state_path=str(tmp_path / "s.sqlite"),
                        policy="backfill", tick_seconds=0.05, min_event_tick_interval_s=0.0)  # fmt: skip
    svc = Service(cfg, policy=_FailsFirst() if fails else None)
    seen: list[tuple[int, str | None, str]] = []
    called = threading.Event()

    def hook() -> None:
        seen.append((svc._ticks, svc._last_error, threading.current_thread().name))
        called.set()

    try:
        science = svc.tenants["science"]
        for i in range(jobs):
            svc.submit(science, JobSpec(name=f"j{i}", gpus=1, duration_s=600), None)
        svc.start(after_first_tick=hook)
        assert called.wait(60), "the hook was not called"
        # later ticks (a slot every 0.05 s, and events) do not call it again
        deadline = threading.Event()
        for _ in range(200):
            if svc._ticks >= 4:
                break
            deadline.wait(0.05)
        assert svc._ticks >= 4
    finally:
        svc.stop()
    assert len(seen) == 1, seen
    ticks, error, thread = seen[0]
    assert thread == "windward-loop"
    if fails:  # the first tick failed: the hook still ran, after it, with the failure recorded
        assert ticks == 0 and error is not None and "first decision fails" in error
    else:
        assert ticks == 1 and error is None


def test_resume_gc_is_idempotent(collector_restored: Any) -> None:
    gc.unfreeze()
    gc.disable()
    kept = [[i] for i in range(1000)]  # objects the start built
    _resume_gc()
    assert gc.isenabled()
    frozen = gc.get_freeze_count()
    assert frozen >= len(kept)  # frozen out of the collector's scans
    _resume_gc()  # again (the first tick's hook, then the server's exit): no second freeze
    assert gc.isenabled() and gc.get_freeze_count() == frozen


@pytest.mark.parametrize("case", ["port in use", "bad state file"])
def test_a_start_that_fails_leaves_the_collector_on(tmp_path: Path, case: str, collector_restored: Any) -> None:
    """In-process (as a test or a tool may run the CLI): a server that fails after it paused the collector
    (the port taken once the service is built; a state file that is not a database) turns it on again."""
    gc.enable()
    state = tmp_path / "s.sqlite"
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1] if case == "port in use" else 0
    if case == "bad state file":
        state.write_bytes(b"not a database" * 100)
    try:
        res = CliRunner().invoke(app, ["server", "--demo", "--policy", "backfill", "--port", str(port),
                                       "--state", str(state), "--log-level", "warning"])  # fmt: skip
    finally:
        busy.close()
    assert res.exit_code != 0
    assert gc.isenabled(), res.output
