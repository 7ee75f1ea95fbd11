"""Parity (issue 12): one workload through the simulation (``run_simulation``) and through the server
(``Service``: real SQLite journal, the simulated executor, a fake wall clock that ticks once per slot) gives
the same starts, preemptions, finishes, expiries, power, energy and carbon, slot by slot.

Both run the same ``ControlLoop.tick``; they differ only in its seams: the server journals every action in
SQLite, drains its inbox of API submissions, and (``drive_time=False``) accounts the time since its previous
tick at the start of a tick (so its report at slot s+1 carries the energy of slot s), while the simulation
accounts slot s at its end. Tenants with a quota, a commitment and fair-share weights, inference
every slot and a node failure make every rule of the loop act."""

from __future__ import annotations

import hashlib
import random
from datetime import UTC, datetime
from pathlib import Path

import pytest

from scheduler import signals
from scheduler.accounting import LoopTenantInfo
from scheduler.auth import admit_job
from scheduler.control import NodeEvent, run_simulation
from scheduler.executors.base import ExecutorEvent
from scheduler.executors.simulated import SimulatedExecutor, VirtualClock
from scheduler.jobs import Job
from scheduler.models import JobSpec, Tenant, TenantsFile, load_site
from scheduler.policies import available_policies, make_policy
from scheduler.service import Service, ServiceConfig

SITE = load_site("demo")
SLOT_S = float(SITE.slot_s)
START = datetime(2023, 1, 9, tzinfo=UTC)  # a Monday: both sides see the same commitment periods
N_SLOTS = 24
HORIZON_H = 6.0


class FailsAt(SimulatedExecutor):
    """The server's simulated executor, with a node that fails at ``fail_s`` (the end of the step that
    reaches it), as the simulation's node event does between two slots."""

    def __init__(self, ev: NodeEvent) -> None:
        super().__init__(SITE, VirtualClock(0.0))
        self.ev = ev

    def step(self, dt_s: float) -> list[ExecutorEvent]:
        events = super().step(dt_s)
        if self.ev is not None and self.clock.now_s() >= self.ev.slot * SLOT_S - 1e-9:
            self.fail_node(self.ev.pool, self.ev.node)
            self.ev = None  # type: ignore[assignment]
            events += super().step(0.0)
        return events


class Wall:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def tenants() -> list[Tenant]:
    def tok(n: str) -> str:
        return hashlib.sha256(n.encode()).hexdigest()

    return [
        Tenant(name="sov", token_sha256=tok("sov"), priority=3, quota_gpus=12, clearance="secret",
               jurisdictions=("nl",)),
        Tenant(name="sci", token_sha256=tok("sci"), priority=2, commitment_gpu_hours_per_day=60.0,
               fair_share_weight=2.0, clearance="public", jurisdictions=("eu", "nl")),
        Tenant(name="biz", token_sha256=tok("biz"), priority=0, quota_gpus=16, clearance="public",
               jurisdictions=("eu",)),
        Tenant(name="web", token_sha256=tok("web"), priority=4, clearance="internal", jurisdictions=("eu", "nl")),
    ]  # fmt: skip


#: submit times are multiples of this (900/1024 s): the server's fake wall clock (one wall second per slot)
#: and its clock's arithmetic then carry them exactly, so both sides see bit-identical jobs
SUBMIT_Q_S = SLOT_S / 1024


def workload(seed: int) -> list[tuple[float, str, JobSpec]]:
    """(submit_s, tenant, spec), distinct submit times (no tie is left to id order), sorted."""
    rng = random.Random(seed)
    out: list[tuple[float, str, JobSpec]] = []
    for i in range(36):
        t = rng.choice(["sov", "sci", "biz", "sci", "biz"])
        submit = round(rng.uniform(0.0, 14 * SLOT_S) / SUBMIT_Q_S) * SUBMIT_Q_S
        spec = JobSpec(name=f"{t}-{i}", gpus=rng.choice([1, 2, 4, 8]), duration_s=rng.uniform(0.5, 4.0) * 3600.0,
                       preemptible=rng.random() < 0.8, checkpoint_interval_s=900.0,
                       priority=rng.randint(0, 2))  # fmt: skip
        out.append((submit, t, spec))
    for s in range(N_SLOTS):  # the inference service: one job per slot, submitted just before the slot
        g = rng.choice([2, 4, 4, 6])
        out.append((s * SLOT_S - SUBMIT_Q_S if s else 0.0, "web",
                    JobSpec(name=f"web-inf-{s}", kind="inference", gpus=g, duration_s=SLOT_S)))  # fmt: skip
    out.sort(key=lambda x: x[0])
    assert len({x[0] for x in out}) == len(out)
    return out


def as_job(site_tenants: dict[str, Tenant], submit_s: float, tenant: str, spec: JobSpec) -> Job:
    job = Job(job_id=spec.name, tenant=tenant, kind=spec.kind, submit_s=submit_s, gpus=spec.gpus,
              duration_s=spec.duration_s, preemptible=spec.preemptible, pool=spec.pool, priority=spec.priority,
              checkpoint_interval_s=spec.checkpoint_interval_s, jurisdiction=spec.requires.jurisdiction,
              clearance=spec.requires.clearance)  # fmt: skip
    return admit_job(SITE, site_tenants[tenant], job)


@pytest.mark.parametrize("policy", available_policies())
@pytest.mark.parametrize("seed", [0, 1])
def test_simulation_and_server_make_the_same_run(tmp_path: Path, policy: str, seed: int) -> None:
    ts = tenants()
    by_name = {t.name: t for t in ts}
    work = workload(seed)
    fail = NodeEvent(9, SITE.pools[1].name, 0)

    # --- the simulation
    energy = signals.load_energy(None, SITE, START, 2.0, seed=0)
    sim_jobs = [as_job(by_name, s, t, spec) for s, t, spec in work]
    res = run_simulation(
        SITE, sim_jobs, energy, make_policy(policy, HORIZON_H), n_slots=N_SLOTS + 1,
        forecaster=signals.make_forecaster("perfect", energy), horizon_slots=round(HORIZON_H * 3600 / SLOT_S),
        node_events=[fail], tenant_info_fn=LoopTenantInfo(SITE, ts, START.timestamp()),
    )  # fmt: skip
    sim = res.reports

    # --- the server, one tick per slot on a fake wall clock (tick_seconds=1: one wall second per slot)
    wall = Wall(START.timestamp())
    cfg = ServiceConfig(site=SITE, tenants=TenantsFile(tenants=tuple(ts)), state_path=str(tmp_path / "s.db"),
                        policy=policy, tick_seconds=1.0, progress_flush_s=0.0, energy_start=START, energy_days=2.0,
                        horizon_hours=HORIZON_H)  # fmt: skip
    svc = Service(cfg, wall=wall, executor=FailsAt(fail))
    names: dict[str, str] = {}
    srv = []
    try:
        pending = list(work)
        for s in range(N_SLOTS + 1):
            while pending and pending[0][0] <= s * SLOT_S:
                submit_s, t, spec = pending.pop(0)
                wall.t = START.timestamp() + submit_s / SLOT_S
                names[svc.submit(svc.tenants[t], spec, None).record.id] = spec.name
            wall.t = START.timestamp() + s
            srv.append(svc.tick())
        metrics = svc._metrics_obj()
    finally:
        svc.stop()

    def nm(ids: object) -> list[str]:
        return sorted(names[j] for j in ids)  # type: ignore[attr-defined]

    names_of = names

    for s in range(N_SLOTS):
        a, b = sim[s], srv[s].report
        assert b is not None
        where = (policy, seed, s)
        assert sorted(a.starts) == nm(b.starts), where
        assert sorted(a.preemptions) == nm(b.preemptions), where
        assert sorted(a.expired) == nm(b.expired), where
        assert sorted(a.failures) == nm(b.failures), where
        assert sorted(a.over_quota) == nm(b.over_quota) and sorted(a.displaced) == nm(b.displaced), where
        assert sorted(a.owed_started) == nm(b.owed_started) and sorted(a.fair_started) == nm(b.fair_started), where
        assert sorted(a.made_room) == nm(b.made_room) and sorted(a.held) == nm(b.held), where
        assert sorted(a.dropped) == nm(b.dropped) and sorted(a.start_failed) == nm(b.start_failed), where
        assert sorted((names_of[j], lo, hi) for j, lo, hi in b.lowered) == sorted(a.lowered), where
        assert a.violations == b.violations and a.refused == b.refused, where
        assert (a.inference_demand_gpus, a.inference_served_gpus) == (b.inference_demand_gpus,
                                                                      b.inference_served_gpus), where  # fmt: skip
        assert a.facility_peak_w == pytest.approx(b.facility_w, rel=1e-9), where
        assert a.grid_import_peak_w == pytest.approx(b.grid_import_w, rel=1e-9, abs=1e-6), where
        # the server accounts slot s at its next tick
        nxt = srv[s + 1].report
        assert nxt is not None
        assert sorted(a.finishes) == nm(nxt.finishes), where
        assert a.energy_grid_j == pytest.approx(nxt.energy_grid_j, rel=1e-9, abs=1e-6), where
        assert a.energy_wind_j == pytest.approx(nxt.energy_wind_j, rel=1e-9, abs=1e-6), where
        assert a.carbon_g == pytest.approx(nxt.carbon_g, rel=1e-9, abs=1e-9), where
    # the run did something worth comparing
    assert sum(len(r.starts) for r in sim[:N_SLOTS]) > 20 and any(r.preemptions for r in sim[:N_SLOTS])
    # and the server's metrics are those reports: counters equal the sums of the server's own reports
    reports = [o.report for o in srv]
    assert metrics.registry.get_sample_value("windward_job_starts_total") == sum(len(r.starts) for r in reports)
    assert metrics.registry.get_sample_value("windward_inference_served_gpus") == reports[-1].inference_served_gpus
    assert sum(r.inference_served_gpus for r in reports) > 0  # inference ran, and the gauge saw it
    assert metrics.registry.get_sample_value("windward_job_finishes_total") == sum(len(r.finishes) for r in reports)
    grid = metrics.registry.get_sample_value("windward_energy_joules_total", {"source": "grid"})
    assert grid == pytest.approx(sum(r.energy_grid_j for r in sim[:N_SLOTS]), rel=1e-9)
