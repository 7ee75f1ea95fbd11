"""A job's clock starts when its workload is ready, not when its actor is told to run: JobActor.wait_ready
(what RayExecutor.start waits on) holds until the workload's first progress report, so start-up (imports,
data, model; seconds on a loaded machine) is never counted as work. The actor class is used without Ray."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from scheduler.executors.ray_job import JobActor
from scheduler.workloads.runtime import JobConfig, JobContext

_GATES: dict[str, threading.Event] = {}


def _gated_start(ctx: JobContext) -> None:
    """Start-up that lasts until the test opens the gate, then one report and a short run."""
    _GATES[ctx.config.job_id].wait(30)
    ctx.report(0.0, 0)
    ctx.wait_virtual(1.0)
    ctx.finish({"ok": True})


def _fails_in_start_up(ctx: JobContext) -> None:
    _GATES[ctx.config.job_id].wait(30)
    raise RuntimeError("no data")


def _actor(tmp_path: Path, job_id: str, entrypoint: str, **cfg: Any) -> JobActor:
    c = JobConfig(job_id=job_id, kind=cfg.pop("kind", "batch"), duration_s=cfg.pop("duration_s", 10.0),
                  job_dir=str(tmp_path / job_id), time_scale=cfg.pop("time_scale", 1000.0), **cfg)  # fmt: skip
    return JobActor(c.to_json(), entrypoint, {})


@pytest.mark.parametrize("seed", range(4))
def test_not_ready_until_start_up_ends(tmp_path: Path, seed: int) -> None:
    jid = f"slow{seed}"
    _GATES[jid] = threading.Event()
    a = _actor(tmp_path, jid, f"{__name__}:_gated_start")
    assert a.wait_ready(0.05) is False  # not yet told to run
    a.run(1, "", 0, [])
    time.sleep(0.05 * seed)
    assert a.wait_ready(0.05) is False and a.progress()["ready"] is False  # start-up still going
    _GATES[jid].set()
    assert a.wait_ready(30.0) is True
    assert a.progress()["work_done_s"] == 0.0


@pytest.mark.parametrize("seed", range(2))
def test_a_workload_that_dies_in_start_up_does_not_hold_start(tmp_path: Path, seed: int) -> None:
    jid = f"dies{seed}"
    _GATES[jid] = threading.Event()
    a = _actor(tmp_path, jid, f"{__name__}:_fails_in_start_up")
    a.run(1, "", 0, [])
    assert a.wait_ready(0.05) is False
    _GATES[jid].set()
    assert a.wait_ready(30.0) is True  # it ended: start() returns and the executor's poll sees the error
    p = a.progress()
    assert p["finished_thread"] and "no data" in p["error"]


@pytest.mark.parametrize("seed", [0, 7])
def test_inference_service_is_ready_with_its_model_and_nothing_served(tmp_path: Path, seed: int) -> None:
    """The example service trains its model at start-up, then reports before its first tick (real time here:
    a tick is 6 s, so a service whose first report came after a tick would read 6 s of work when ready)."""
    a = _actor(tmp_path, f"inf{seed}", "scheduler.workloads.inference:run", kind="inference", duration_s=600.0,
               time_scale=1.0, seed=seed, params={"rates_per_s": [3.0]})  # fmt: skip
    a.run(1, "", 0, [])
    assert a.wait_ready(60.0) is True
    p = a.progress()
    assert p["ready"] and p["error"] is None
    assert p["work_done_s"] == 0.0 and p["served"] == 0.0  # ready before any request was answered
    a.stop(5.0)


@pytest.mark.parametrize("cmd", ["sleep 30", "sh -c 'echo started; sleep 30'"])
def test_a_command_is_ready_once_its_process_runs(tmp_path: Path, cmd: str) -> None:
    """A command never writes a progress report unless it speaks the protocol: its readiness is its process
    having started, so start() does not wait ready_timeout_s for it (it did: 120 s per command job)."""
    a = _actor(tmp_path, "cmd", cmd)
    assert a.wait_ready(0.05) is False  # not yet told to run
    a.run(1, "", 0, [])
    assert a.wait_ready(20.0) is True
    p = a.progress()
    assert p["ready"] and not p["finished_thread"] and p["work_done_s"] == 0.0  # still running, no work claimed
    a.stop(2.0)
    assert a.progress()["finished_thread"]
