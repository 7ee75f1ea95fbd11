"""Preemption with checkpoints, real workloads, progress reporting and re-adoption, on real Ray."""

from __future__ import annotations

import pytest
from procs import step_until

from scheduler.executors.ray_executor import _seed
from scheduler.jobs import Job
from scheduler.workloads import training
from scheduler.workloads.runtime import checkpoint_work_s

pytestmark = pytest.mark.integration

POOL = "h100-eu-public"


def _run_until(ex, pred, max_steps: int = 60, dt_s: float = 300.0) -> list:
    return step_until(ex, pred, max_steps, dt_s)


def test_preempted_training_resumes_from_checkpoint_and_finishes_right(ray_ex) -> None:
    job = Job("train-pre", "acme", "training", 0.0, 2, 3600.0, checkpoint_interval_s=360.0)
    assert ray_ex.start(job, POOL, 1.0, 0.0) is not None
    _run_until(ray_ex, lambda ev: ray_ex.running()["train-pre"].work_done_s >= 1000.0)
    before = ray_ex.running()["train-pre"]
    assert 0 < before.checkpoint_work_s <= before.work_done_s < 3600.0
    lost = ray_ex.preempt("train-pre", "test")
    ck = checkpoint_work_s(ray_ex.job_dir("train-pre"))
    assert ck >= before.checkpoint_work_s  # the job checkpointed when asked
    assert 0.0 <= lost <= 360.0 + 1e-6  # at most the work since the last periodic checkpoint
    assert "train-pre" not in ray_ex.running()
    ev = ray_ex.step(0.0)
    assert [e.kind for e in ev if e.job_id == "train-pre"] == ["preempted"]
    # resume (at reduced power): progress starts from the checkpoint, not from zero
    assert ray_ex.start(job, POOL, 0.6, ck) is not None
    assert ray_ex.running()["train-pre"].work_done_s == pytest.approx(ck)
    assert any(e.kind == "resumed" and e.job_id == "train-pre" for e in ray_ex.event_log)
    seen = []

    def done(events: list) -> bool:
        if "train-pre" in ray_ex.running():
            seen.append(ray_ex.running()["train-pre"].work_done_s)
        return any(e.kind == "finished" and e.job_id == "train-pre" for e in events)

    _run_until(ray_ex, done)
    assert seen == sorted(seen) and seen[0] >= ck  # reported progress only moves forward from the checkpoint
    # the same weights, bit for bit, as an uninterrupted run
    assert ray_ex.result("train-pre") == training.reference_result(seed=_seed("train-pre"))
    assert ray_ex.result("train-pre")["accuracy"] > 0.8


def test_inference_service_answers_at_the_trace_rate(ray_ex) -> None:
    rates = [2.0, 6.0, 4.0]
    ray_ex.set_workload_params("inf-1", {"rates_per_s": rates, "rate_period_s": 600.0})
    job = Job("inf-1", "ops", "inference", 0.0, 1, 1800.0, preemptible=False)
    assert ray_ex.start(job, POOL, 1.0, 0.0) is not None
    _run_until(ray_ex, lambda ev: any(e.kind == "finished" and e.job_id == "inf-1" for e in ev))
    res = ray_ex.result("inf-1")
    expected = sum(r * 600.0 for r in rates)  # 7200 requests over the 1800 s service
    assert res["served"] + res["dropped"] == pytest.approx(expected, abs=3)
    assert res["dropped"] == 0 and res["accuracy"] > 0.8


def test_scheduler_restart_readopts_running_jobs(ray_ex) -> None:
    job = Job("adopt-me", "acme", "training", 0.0, 8, 36000.0)
    p = ray_ex.start(job, "h100-nl-secret", 0.8, 0.0)
    assert p is not None
    _run_until(ray_ex, lambda ev: ray_ex.running()["adopt-me"].work_done_s > 0)
    before_s = ray_ex.running()["adopt-me"].work_done_s
    # forget in-memory state as a crashed scheduler would, then rebuild it from the cluster
    ray_ex._runs.pop("adopt-me")
    assert "adopt-me" not in ray_ex.running()
    assert ray_ex.adopt() == ["adopt-me"]
    info = ray_ex.running()["adopt-me"]
    assert info.nodes == p.nodes and info.power_fraction == 0.8 and info.work_done_s >= before_s
    assert ray_ex.free_gpus_by_node("h100-nl-secret")[p.nodes[0]] == 0
