"""The optimiser's infeasible state as metrics, through the server's control plane (real SQLite, the simulated
executor, the embedded energy model, one wall second per slot; test_service_rules): ``windward_plan_infeasible``
reads 1 while the ``windward`` policy's optimiser returns infeasible and its fallback decides, 0 once it plans
again (and always for a heuristic policy); ``windward_plan_infeasible_slots`` is the number of slots ``/v1/plan``
lists in ``infeasible_slots`` (a congestion event below the idle floor, or one the must-run inference alone
breaks: its ``shed_slots``)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from test_service_rules import SLOT_S, metric, service, tenant

from scheduler.models import JobSpec
from scheduler.service import Service


def _gauges(svc: Service) -> tuple[float, float]:
    return metric(svc, "windward_plan_infeasible"), metric(svc, "windward_plan_infeasible_slots")


def test_an_infeasible_optimiser_reads_1_until_it_plans_again(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """What made the optimiser infeasible on a server up to round 24 now plans (a cap the inference alone breaks,
    round 23; inference wider than its pools' healthy GPUs or above its tenant's quota, a job no pool holds after
    a node failure, inference that takes a running non-preemptible job's pool: round 24, shed in marked slots,
    left out, displaced), so the optimiser's answer is made infeasible here for two ticks (kernels.plan
    patched, the rest real): the gauge reads 1 while it is, the fallback decides, and 0 once it plans again."""
    import kernels
    from kernels.planner import _infeasible

    real = kernels.plan
    broken = {"on": False}

    def plan(problem: Any, **kw: Any) -> Any:
        if broken["on"]:
            return _infeasible(problem, "test: no plan", problem.n_jobs, problem.n_slots, problem.n_pools)
        return real(problem, **kw)

    monkeypatch.setattr(kernels, "plan", plan)
    caplog.set_level(logging.WARNING, logger="scheduler.policies.windward")
    svc, wall = service(tmp_path, "windward", [tenant("web"), tenant("train")])
    try:
        svc.submit(svc.tenants["train"], JobSpec(name="t0", gpus=8, duration_s=40 * SLOT_S), None)
        svc.submit(svc.tenants["web"], JobSpec(name="inf", kind="inference", gpus=8, duration_s=40 * SLOT_S), None)
        svc.tick()
        plan_ = svc.plan_summary()
        assert plan_["status"] in ("optimal", "feasible") and _gauges(svc) == (0.0, 0.0)
        broken["on"] = True
        for _ in range(2):
            wall.t += 1.0
            svc.tick()
            plan_ = svc.plan_summary()
            assert plan_["status"] == "infeasible"
            assert _gauges(svc) == (1.0, len(plan_["infeasible_slots"]))
        assert any("optimiser infeasible: test: no plan" in r.getMessage() for r in caplog.records)
        assert {r.name for r in svc.store.list_jobs(states=("running",))} >= {"inf"}  # (the fallback serves it)
        broken["on"] = False
        wall.t += 1.0
        svc.tick()
        plan_ = svc.plan_summary()
        assert plan_["status"] in ("optimal", "feasible") and _gauges(svc) == (0.0, 0.0)
    finally:
        svc.stop()


def test_a_cap_the_inference_alone_breaks_is_counted_not_infeasible(tmp_path: Path) -> None:
    """Two slots ahead, a cap above the idle floor but below the floor plus the inference at full power (the
    world the first test used up to round 22): the optimiser plans (status not infeasible, gauge 0), marks that
    slot and sheds the inference there; the slots gauge counts it, as ``/v1/plan`` lists it."""
    svc, wall = service(tmp_path, "windward", [tenant("web"), tenant("train")])
    try:
        svc.submit(svc.tenants["web"], JobSpec(name="inf", kind="inference", gpus=8, duration_s=40 * SLOT_S), None)
        svc.submit(svc.tenants["train"], JobSpec(name="t0", gpus=8, duration_s=40 * SLOT_S), None)
        svc.tick()
        plan = svc.plan_summary()
        k = 2
        s = plan["slots"][k]
        at = plan["slot"] + k
        pw = svc.loop.power
        floor = pw.base_w(pw.healthy_array(svc.loop.executor.healthy_gpus()))
        inference_w = svc.site.pue * 8 * (svc.site.pools[0].tdp_w - svc.site.pools[0].idle_w)
        cap_w = floor + 0.5 * inference_w - s["wind_w"]
        assert 0.0 < cap_w and floor < s["site_max_w"]
        start = svc.clock.now_unix_s() + k * SLOT_S
        svc.add_congestion(cap_w / 1e6, start, start + SLOT_S, "test", "inference alone breaks it")
        wall.t += 1.0
        svc.tick()
        plan = svc.plan_summary()
        assert plan["status"] in ("optimal", "feasible"), plan["status"]
        assert plan["shed_slots"] == plan["infeasible_slots"] == [at]
        assert _gauges(svc) == (0.0, 1.0)
        marked = plan["slots"][at - plan["slot"]]
        # (the job's 8 GPUs; where its inference reserve would shut a slot the policy plans without it)
        assert marked["infeasible"] and marked["shed_gpus"] >= 8.0 and marked["deficit_w"] == 0.0
        assert marked["shed_w"] >= inference_w * (1 - 1e-9)
        assert all(not x["infeasible"] and x["shed_gpus"] == 0.0 for x in plan["slots"] if x is not marked)
    finally:
        svc.stop()


def test_the_infeasible_slots_gauge_counts_what_the_plan_lists(tmp_path: Path) -> None:
    """A 1 kW cap at +6 h is below the idle floor: the plan (feasible) marks those slots infeasible."""
    svc, wall = service(tmp_path, "windward", [tenant("train")])
    try:
        svc.submit(svc.tenants["train"], JobSpec(name="t0", gpus=8, duration_s=40 * SLOT_S), None)
        svc.tick()
        assert _gauges(svc) == (0.0, 0.0)
        now = svc.clock.now_unix_s()
        svc.add_congestion(0.001, now + 6 * 3600.0, now + 7 * 3600.0, "test", "1 kW at +6 h")
        for _ in range(3):
            wall.t += 1.0
            svc.tick()
            plan = svc.plan_summary()
            assert plan["status"] in ("optimal", "feasible") and plan["infeasible_slots"], plan["status"]
            assert _gauges(svc) == (0.0, len(plan["infeasible_slots"]))
    finally:
        svc.stop()


def test_a_heuristic_policy_reads_0(tmp_path: Path) -> None:
    svc, wall = service(tmp_path, "backfill", [tenant("train")])
    try:
        svc.submit(svc.tenants["train"], JobSpec(name="t0", gpus=8, duration_s=4 * SLOT_S), None)
        now = svc.clock.now_unix_s()
        svc.add_congestion(0.001, now + 6 * 3600.0, now + 7 * 3600.0, "test", "1 kW at +6 h")
        svc.tick()
        assert svc.plan_summary()["infeasible_slots"] == []
        assert _gauges(svc) == (0.0, 0.0)
    finally:
        svc.stop()
