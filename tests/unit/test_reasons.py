"""scheduler.reasons: the dependency/begin gate, the reason precedence of explain, the plan's schedule."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from scheduler.jobs import Job
from scheduler.models import load_site
from scheduler.policies.capacity import EligibilityCache, SitePower
from scheduler.reasons import (
    Explainer,
    GateItem,
    HoldReason,
    LazySchedule,
    PlannedRun,
    Why,
    WhyBoard,
    explain,
    gate,
    gate_item,
    planned_runs,
)

SITE = load_site("demo")
POWER = SitePower(SITE)
ELIG = EligibilityCache(SITE)

# kind -> state of the dependency -> "ok" | "wait" | "fail"
EXPECTED = {
    "afterok": {"queued": "wait", "running": "wait", "finished": "ok", "failed": "fail", "cancelled": "fail"},
    "afternotok": {"queued": "wait", "running": "wait", "finished": "fail", "failed": "ok", "cancelled": "ok"},
    "afterany": {"queued": "wait", "running": "wait", "finished": "ok", "failed": "ok", "cancelled": "ok"},
    "after": {"queued": "wait", "running": "ok", "finished": "ok", "failed": "ok", "cancelled": "ok"},
}


@pytest.mark.parametrize("seed", range(8))
def test_gate_holds_and_fails_as_each_dependency_kind_says(seed: int) -> None:
    rng = random.Random(seed)
    states = {f"d{i}": rng.choice(["queued", "running", "finished", "failed", "cancelled"]) for i in range(6)}
    items, expect = [], {}
    for k in range(30):
        deps = tuple((rng.choice(list(EXPECTED)), rng.choice(list(states))) for _ in range(rng.randint(1, 3)))
        items.append(GateItem(f"j{k}", deps))
        verdicts = [EXPECTED[kind][states[d]] for kind, d in deps]
        # the first dependency that can never be met fails the job; else any wait holds it
        first_fail = next((i for i, v in enumerate(verdicts) if v == "fail"), None)
        expect[f"j{k}"] = "fail" if first_fail is not None else ("wait" if "wait" in verdicts else "ok")
    held, failed = gate(items, 1e9, lambda dep, tenant: states.get(dep))
    for jid, v in expect.items():
        assert (jid in failed) == (v == "fail"), (jid, v)
        assert (jid in held) == (v == "wait"), (jid, v)
        if v == "wait":
            assert held[jid].reason is HoldReason.WAITING_ON_DEPENDENCY
    for msg in failed.values():
        assert "can never be met" in msg


def test_gate_begin_and_unknown_dependency() -> None:
    held, failed = gate([GateItem("a", (), 2000.0), GateItem("b", (), 1000.0), GateItem("c", (("afterok", "nope"),))],
                        1500.0, lambda dep, tenant: None)  # fmt: skip
    assert held["a"].reason is HoldReason.NOT_BEFORE and "b" not in held and "b" not in failed
    assert failed["c"] == "dependency afterok:nope: no such job"
    assert gate_item(_job(1), 0.0) is None


def test_a_stored_spec_reaches_the_gate_through_the_job() -> None:
    """JobSpec (API) -> canonical JSON (store) -> Job (jobs.job_extras) -> GateItem: dependencies and begin."""
    from scheduler.jobs import job_extras
    from scheduler.models import JobSpec

    plain = JobSpec.model_validate({"name": "n", "gpus": 1, "duration_s": 60})
    assert job_extras(json.dumps(plain.model_dump(mode="json"), sort_keys=True, separators=(",", ":")), 0.0) == {}
    spec = JobSpec.model_validate({"name": "n", "gpus": 1, "duration_s": 60, "begin": "2026-12-04T00:00:00Z",
                                   "dependencies": [{"kind": "afterok", "job_id": "j-1"}], "env": {"A": "1"},
                                   "args": ["--x"], "workdir": "/srv", "entrypoint": "python run.py"})  # fmt: skip
    extras = job_extras(json.dumps(spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":")), 1796342000.0)
    assert extras == {"env": (("A", "1"),), "args": ("--x",), "workdir": "/srv", "dependencies": (("afterok", "j-1"),),
                      "begin_s": 400.0}  # fmt: skip
    job = Job("x", "t", "training", 0.0, 1, 60.0, **extras)
    assert gate_item(job, 1796342000.0) == GateItem("x", (("afterok", "j-1"),), 1796342400.0, "t")


@dataclass
class Report:  # the fields of scheduler.control.TickReport that explain reads (a unit test of the logic)
    busy_gpus: dict[str, float]
    healthy_gpus: dict[str, int]
    starts: tuple[str, ...] = ()
    dropped: tuple[str, ...] = ()
    start_failed: tuple[str, ...] = ()
    refused: tuple[str, ...] = ()
    held: tuple[str, ...] = ()
    over_quota: tuple[str, ...] = ()
    displaced: tuple[str, ...] = ()
    wind_w: float = 1e9
    grid_cap_w: float = 1e9
    site_max_w: float = 1e9
    facility_peak_w: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def _job(i: int, gpus: int = 1) -> Job:
    return Job(f"j{i}", "t", "training", 0.0, gpus, 3600.0)


LISTS = ["refused", "held", "over_quota", "displaced", "dropped", "start_failed"]
REASON_OF = {"refused": HoldReason.NO_ELIGIBLE_POOL, "held": HoldReason.INFERENCE_RESERVE, "over_quota": HoldReason.QUOTA,
             "displaced": HoldReason.FAIR_SHARE, "dropped": HoldReason.GRID_CAP, "start_failed": HoldReason.POOL_FULL}  # fmt: skip


@pytest.mark.parametrize("seed", range(6))
def test_explain_takes_the_first_list_of_the_tick_that_names_the_job(seed: int) -> None:
    rng = random.Random(seed)
    pools = [p.name for p in SITE.pools]
    jobs = [_job(i) for i in range(40)]
    lists: dict[str, list[str]] = {k: [] for k in LISTS}
    for j in jobs:
        for k in LISTS:
            if rng.random() < 0.25:
                lists[k].append(j.job_id)
    gated = {j.job_id: Why(HoldReason.WAITING_ON_DEPENDENCY, "w") for j in jobs if rng.random() < 0.2}
    rep = Report(busy_gpus={p: 0.0 for p in pools}, healthy_gpus={p.name: p.nodes * p.gpus_per_node for p in SITE.pools},
                 **{k: tuple(v) for k, v in lists.items()})  # fmt: skip
    why = explain(rep, jobs, POWER, ELIG, gated=gated)
    for j in jobs:
        first = next((REASON_OF[k] for k in LISTS if j.job_id in lists[k]), None)
        want = HoldReason.WAITING_ON_DEPENDENCY if j.job_id in gated else first or HoldReason.DEFERRED_FOR_WIND
        assert why[j.job_id].reason is want


def test_explain_without_a_list_tells_pool_full_grid_cap_and_deferred_apart() -> None:
    pools = [p.name for p in SITE.pools]
    healthy = {p.name: p.nodes * p.gpus_per_node for p in SITE.pools}
    big = max(healthy.values())
    full = Report(busy_gpus={p: float(healthy[p]) for p in pools}, healthy_gpus=healthy)
    assert explain(full, [_job(1)], POWER, ELIG)["j1"].reason is HoldReason.POOL_FULL
    too_wide = Report(busy_gpus={p: 0.0 for p in pools}, healthy_gpus=healthy)
    assert explain(too_wide, [_job(2, big + 1)], POWER, ELIG)["j2"].reason is HoldReason.POOL_FULL
    no_power = Report(busy_gpus={p: 0.0 for p in pools}, healthy_gpus=healthy, grid_cap_w=1000.0, wind_w=0.0,
                      facility_peak_w=900.0)  # fmt: skip
    assert explain(no_power, [_job(3)], POWER, ELIG)["j3"].reason is HoldReason.GRID_CAP
    room = Report(busy_gpus={p: 0.0 for p in pools}, healthy_gpus=healthy)
    # left out by a policy that knows its tenant's quota: quota, whatever is free
    assert explain(room, [_job(7, 4)], POWER, ELIG, quota_room={"t": 3.0})["j7"].reason is HoldReason.QUOTA
    assert explain(room, [_job(8, 3)], POWER, ELIG, quota_room={"t": 3.0})["j8"].reason is HoldReason.DEFERRED_FOR_WIND
    w = explain(room, [_job(4)], POWER, ELIG, schedule={"j4": PlannedRun(3, 5, pools[0], 1.0)})["j4"]
    assert w.reason is HoldReason.DEFERRED_FOR_WIND and w.planned == PlannedRun(3, 5, pools[0], 1.0)
    # the plan ran it in slot 0 but the tick held it: the next planned run, or none
    held = explain(room, [_job(5), _job(6)], POWER, ELIG, schedule={
        "j5": PlannedRun(0, 4, pools[0], 1.0, next_start_slot=2), "j6": PlannedRun(0, 1, pools[0], 1.0)})
    assert held["j5"].planned is not None and held["j5"].planned.start_slot == 2 and held["j6"].planned is None


@pytest.mark.parametrize("seed", range(5))
def test_planned_runs_and_the_lazy_schedule_agree_with_the_plan_arrays(seed: int) -> None:
    rng = np.random.default_rng(seed)
    J, T = 25, 12
    run = rng.random((J + 2, T)) < 0.3
    run[0] = False  # never runs
    pool = rng.integers(-1, 2, J + 2).astype(np.int32)
    frac = np.where(run, rng.uniform(0.4, 1.0, (J + 2, T)), 0.0).astype(np.float32)
    res = SimpleNamespace(run=run, pool=pool, power_fraction=frac)
    idx = SimpleNamespace(job_ids=tuple(f"j{i}" for i in range(J + 2)), pool_names=("a", "b"), n_real=J)
    eager = planned_runs(res, idx)
    lazy = LazySchedule(res, idx)
    for i in range(J):
        jid = f"j{i}"
        on = np.flatnonzero(run[i])
        if on.size == 0 or pool[i] < 0:
            assert jid not in eager and lazy.get(jid) is None
            continue
        pr = eager[jid]
        assert (pr.start_slot, pr.end_slot, pr.pool) == (on[0], on[-1] + 1, "ab"[pool[i]])
        assert pr.next_start_slot == (int(on[on >= 1][0]) if (on >= 1).any() else None)
        assert pr.mean_power_fraction == pytest.approx(float(frac[i, on].mean()), rel=1e-6)
        assert lazy[jid] == pytest.approx(pr) or lazy[jid].start_slot == pr.start_slot
    assert f"j{J}" not in eager and lazy.get(f"j{J}") is None  # synthetic rows are not jobs


def test_board_fields_for_queued_new_and_other_states() -> None:
    pools = [p.name for p in SITE.pools]
    healthy = {p.name: p.gpus for p in SITE.pools}
    rep = Report(busy_gpus={p: 0.0 for p in pools}, healthy_gpus=healthy, over_quota=("j1",))
    sched = {"j1": PlannedRun(2, 4, "p", 1.0), "r": PlannedRun(0, 3, "p", 0.5)}
    b = WhyBoard()
    assert b.fields("j1", "queued")["reason"] == "new"
    b.publish(Explainer(rep, POWER, ELIG, schedule=sched), {"j1": _job(1)}, slot=10, epoch_unix_s=1796342400.0,
              slot_s=900.0)  # fmt: skip
    assert b.fields("j1", "queued") == {
        "reason": "quota", "reason_detail": "its tenant is at its GPU quota", "planned_start": "2026-12-04T03:00:00Z",
        "planned_end": "2026-12-04T03:30:00Z", "planned_pool": "p", "planned_power_fraction": 1.0}  # fmt: skip
    assert b.fields("j1", "running")["reason"] is None and b.fields("j1", "finished")["planned_start"] is None
    assert b.fields("r", "running")["planned_end"] == "2026-12-04T03:15:00Z"
    assert b.fields("zz", "queued")["reason"] == "new"  # queued after the tick: no tick has seen it
