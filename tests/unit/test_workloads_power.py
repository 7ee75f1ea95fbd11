"""The job-side runtime, the example workloads and the power devices, without Ray."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from scheduler.errors import InputError
from scheduler.power_devices import open_node_gpus
from scheduler.workloads import inference, training
from scheduler.workloads.runtime import JobConfig, JobContext, checkpoint_work_s, read_progress


def _cfg(tmp_path: Path, **kw: object) -> JobConfig:
    base = dict(job_id="j", kind="training", duration_s=2000.0, job_dir=str(tmp_path / "j"),
                checkpoint_interval_s=200.0, time_scale=1e9, params={"steps": 40})
    base.update(kw)
    return JobConfig(**base)  # type: ignore[arg-type]


def test_training_stopped_and_resumed_equals_uninterrupted(tmp_path: Path) -> None:
    ctx = JobContext(_cfg(tmp_path))
    stopper = threading.Timer(0.0, ctx.request_stop)
    calls = {"n": 0}
    orig = ctx.report

    def report(work: float, step: int, **kw: object) -> None:  # stop after step 13
        orig(work, step, **kw)
        calls["n"] += 1
        if step == 13:
            stopper.run()

    ctx.report = report  # type: ignore[method-assign]
    assert training.run(ctx) is None
    assert checkpoint_work_s(tmp_path / "j") == pytest.approx(13 * 50.0)
    result = training.run(JobContext(_cfg(tmp_path)))
    assert result == training.reference_result(seed=0, params={"steps": 40})
    assert read_progress(tmp_path / "j")["done"] is True


def test_inference_serves_the_replayed_rate(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, kind="inference", duration_s=300.0, params={"rates_per_s": [1.0, 3.0], "rate_period_s": 100.0})
    res = inference.run(JobContext(cfg))
    assert res is not None and res["served"] == pytest.approx(100 + 300 + 100, abs=1) and res["dropped"] == 0


def test_azure_rates_from_the_real_trace(shared_data: None) -> None:
    from scheduler.paths import azure_llm_csv

    r = inference.azure_request_rates_per_s(azure_llm_csv())
    assert 50 <= r.size <= 70 and 2.0 < float(np.mean(r)) < 10.0


def test_simulated_power_devices_follow_the_design_model() -> None:
    node = open_node_gpus(8, tdp_w=700.0, idle_w=75.0, min_power_fraction=0.4, prefer="simulated")
    assert node.backend == "simulated"
    node.set_fraction([0, 1], 0.5)
    node.set_busy([0, 1], True)
    assert node.limits_w()[:3] == [350.0, 350.0, 700.0]
    assert node.draws_w()[:3] == [350.0, 350.0, 75.0]
    with pytest.raises(InputError, match="outside the allowed"):
        node.set_fraction([2, 3], 0.3)
    assert node.limits_w()[2:4] == [700.0, 700.0]  # nothing half-applied
    with pytest.raises(InputError):
        node.set_fraction([8], 0.5)
