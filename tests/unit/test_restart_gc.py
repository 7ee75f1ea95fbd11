"""Recovery to ready (issue 16): ``windward server`` pauses the cyclic garbage collector from building the
service (the ledger of every active job) to the end of the first tick, then freezes what the start built out
of the collector's scans and turns it on again. These tests hold the seams of that: the service calls the
start's hook once, after the first tick, whether the tick succeeded or failed; the collector is on again
after a start that fails before serving; and resuming it is idempotent."""

from __future__ import annotations

import gc
import random
import socket
import threading
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from scheduler.cli import app
from scheduler.cli.server import OldGeneration, _resume_gc
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


# ------------------------------------------------------------------------- once serving (round 5)


@pytest.fixture
def no_automatic_collections(collector_restored: Any) -> Iterator[None]:
    """The collector on, nothing frozen, and no automatic collection during the test (a threshold no test
    reaches): only the collections a test makes happen."""
    old = gc.get_threshold()
    gc.unfreeze()
    gc.enable()
    gc.set_threshold(10**9, 10**9, 10**9)
    try:
        yield
    finally:
        gc.set_threshold(*old)


class _Node:
    """A gc-tracked object that can be part of a cycle and be watched through a weak reference."""

    def __init__(self) -> None:
        self.other: _Node | None = None


def _cycles(rng: random.Random) -> tuple[list[_Node], list[weakref.ref[_Node]]]:
    """Cycles of 2-5 nodes, one node of each in the list returned (drop it: they are cyclic garbage), and
    weak references to all their nodes."""
    heads: list[_Node] = []
    refs: list[weakref.ref[_Node]] = []
    for _ in range(rng.randint(1, 6)):
        ring = [_Node() for _ in range(rng.randint(2, 5))]
        for a, b in zip(ring, ring[1:] + ring[:1], strict=True):
            a.other = b
        heads.append(ring[0])
        refs += [weakref.ref(n) for n in ring]
    return heads, refs


@pytest.mark.parametrize("seed", range(5))
def test_what_survives_a_full_collection_is_frozen(no_automatic_collections: Any, seed: int) -> None:
    rng = random.Random(seed)
    now = [0.0]
    sched = OldGeneration(collect_every_s=3600.0, clock=lambda: now[0])
    kept = [[i] for i in range(rng.randint(100, 3000))]
    for _ in range(rng.randint(1, 4)):  # ticks without a full collection: nothing frozen
        gc.collect(rng.choice([0, 1]))
        now[0] += rng.uniform(0.01, 10.0)
        sched.after_tick()
        assert gc.get_freeze_count() == 0
    gc.collect()  # a full collection (the automatic ones count the same)
    sched.after_tick()
    assert gc.get_freeze_count() >= len(kept)  # its survivors: out of later full collections' scans
    frozen = gc.get_freeze_count()
    sched.after_tick()  # no full collection since: no second freeze
    assert gc.get_freeze_count() == frozen


@pytest.mark.parametrize("seed", range(5))
def test_the_old_generation_is_collected_on_schedule(no_automatic_collections: Any, seed: int) -> None:
    """Cycles that die after they were frozen are not leaked: the schedule's collection reclaims them (and
    not before it), and what survives is frozen again."""
    rng = random.Random(seed)
    now = [0.0]
    every = rng.uniform(60.0, 7200.0)
    sched = OldGeneration(collect_every_s=every, clock=lambda: now[0])
    heads, refs = _cycles(rng)  # alive through a full collection: frozen with its survivors
    gc.collect()
    sched.after_tick()
    assert gc.get_freeze_count() > 0
    del heads  # now cyclic garbage, frozen
    now[0] += every * rng.uniform(0.1, 0.9)
    gc.collect()
    sched.after_tick()
    assert all(r() is not None for r in refs), "frozen cycles are not scanned by the automatic collections"
    now[0] += every  # the schedule's collection is due
    sched.after_tick()
    assert all(r() is None for r in refs), "the old generation's collection reclaimed the cycles"
    assert gc.get_freeze_count() > 0  # and froze what survived


def test_the_schedule_waits_while_the_start_pauses_the_collector(no_automatic_collections: Any) -> None:
    now = [0.0]
    sched = OldGeneration(collect_every_s=1.0, clock=lambda: now[0])
    gc.disable()
    gc.collect()
    now[0] = 10.0
    sched.after_tick()
    assert gc.get_freeze_count() == 0 and not gc.isenabled()  # _resume_gc's part, not the schedule's


def test_the_after_tick_hook_runs_after_every_tick(tmp_path: Path) -> None:
    cfg = ServiceConfig(site=load_site("demo"), tenants=load_tenants(), state_path=str(tmp_path / "s.sqlite"),
                        policy="backfill", tick_seconds=0.05, min_event_tick_interval_s=0.0)  # fmt: skip
    svc = Service(cfg)
    seen: list[tuple[int, str]] = []

    def hook() -> None:
        seen.append((svc._ticks, threading.current_thread().name))
        if len(seen) == 2:
            raise RuntimeError("a failing hook does not stop the loop")

    try:
        svc.start(after_tick=hook)
        for _ in range(400):
            if len(seen) >= 5:
                break
            threading.Event().wait(0.05)
    finally:
        svc.stop()
    assert len(seen) >= 5
    assert [t for t, _ in seen] == list(range(1, len(seen) + 1))  # once after each tick, in order
    assert {name for _, name in seen} == {"windward-loop"}
