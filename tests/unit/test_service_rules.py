"""The server's control plane keeps the same rules as the simulation's loop (issue 12): quotas under a
baseline policy, inference preempts work to find GPUs, unserved inference expires, and the metrics it
exports come from the one TickReport (starts, finishes, inference demand and served are not 0 while work
runs). Real SQLite, the simulated executor, a wall clock the test moves one slot per tick."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from scheduler.models import JobSpec, Tenant, TenantsFile, load_site
from scheduler.policies import available_policies
from scheduler.policies.base import Assignment, Decisions, Snapshot
from scheduler.service import Service, ServiceConfig

SITE = load_site("demo")
SLOT_S = SITE.slot_s


class Wall:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def tenant(name: str, **kw: object) -> Tenant:
    return Tenant(name=name, token_sha256=hashlib.sha256(name.encode()).hexdigest(), clearance="public",
                  jurisdictions=("eu",), **kw)  # type: ignore[arg-type]  # fmt: skip


class KeepRunning:
    """A policy that starts what fits in the eu pool FIFO and never preempts, blind to inference: the loop
    must make room for inference itself."""

    name = "keep-running"

    def decide(self, snapshot: Snapshot) -> Decisions:
        pool = SITE.pools[0].name
        run = {js.job.job_id: Assignment(js.pool or pool, 1.0) for js in snapshot.jobs if js.state == "running"}
        used = sum(js.job.gpus for js in snapshot.jobs if js.state == "running")
        for js in snapshot.jobs:
            if js.state == "queued" and not js.job.must_run and used + js.job.gpus <= 16:
                run[js.job.job_id] = Assignment(pool, 1.0)
                used += js.job.gpus
        return Decisions(run=run)


def service(tmp_path: Path, policy: str, tenants: list[Tenant]) -> tuple[Service, Wall]:
    wall = Wall(1_900_000_000.0 - 1_900_000_000.0 % SLOT_S)
    cfg = ServiceConfig(site=SITE, tenants=TenantsFile(tenants=tuple(tenants)), state_path=str(tmp_path / "s.db"),
                        policy="backfill" if policy == "keep-running" else policy, tick_seconds=1.0,
                        progress_flush_s=0.0)  # fmt: skip
    return Service(cfg, wall=wall, policy=KeepRunning() if policy == "keep-running" else None), wall


def metric(svc: Service, name: str, **labels: str) -> float:
    m = svc._metrics_obj()
    v = m.registry.get_sample_value(name, labels)
    return 0.0 if v is None else float(v)


@pytest.mark.parametrize("policy", available_policies())
def test_server_keeps_a_quota_under_any_policy(tmp_path: Path, policy: str) -> None:
    """Every registered policy, built by the service as ``windward server --policy`` builds it (make_policy)."""
    svc, wall = service(tmp_path, policy, [tenant("capped", quota_gpus=8)])
    try:
        assert svc.policy.name == policy
        t = svc.tenants["capped"]
        for i in range(4):
            svc.submit(t, JobSpec(name=f"j{i}", gpus=4, duration_s=4 * 3600.0), None)
        for _ in range(4):
            out = svc.tick()
            running = sum(s.job.gpus for s in svc.loop.records.values() if s.state == "running")
            assert running <= 8, (policy, out.started, out.report.over_quota if out.report else None)
            wall.t += 1.0  # one slot (tick_seconds=1)
        if policy == "backfill":
            assert running == 8  # FIFO runs up to the quota (a green policy may wait for wind)
    finally:
        svc.stop()


@pytest.mark.parametrize("policy", ["keep-running", "backfill"])
def test_server_inference_preempts_training_and_metrics_see_it(tmp_path: Path, policy: str) -> None:
    """The eu pool (16 GPUs) is full of preemptible training; 8 GPUs of inference arrive: the server preempts
    training to serve them, and /metrics shows the starts, the inference demanded and served, and later the
    finishes (all read from the TickReport). ``keep-running`` never preempts: the loop makes the room."""
    svc, wall = service(tmp_path, policy, [tenant("train"), tenant("serve", priority=4)])
    try:
        for i in range(4):
            svc.submit(svc.tenants["train"], JobSpec(name=f"t{i}", gpus=4, duration_s=2 * SLOT_S), None)
        out = svc.tick()
        assert len(out.started) == 4
        wall.t += 1.0
        svc.submit(svc.tenants["serve"], JobSpec(name="inf", kind="inference", gpus=8, duration_s=SLOT_S), None)
        out = svc.tick()
        assert out.report is not None
        assert len(out.preempted) >= 2 and out.report.inference_served_gpus == 8, out
        if policy == "keep-running":
            assert len(out.made_room) >= 2 and set(out.report.made_room) == set(out.made_room)
        assert metric(svc, "windward_inference_demand_gpus") == 8
        assert metric(svc, "windward_inference_served_gpus") == 8
        assert metric(svc, "windward_job_starts_total") >= 5
        assert metric(svc, "windward_preemptions_total", reason="plan") >= 2
        for _ in range(8):
            wall.t += 1.0
            svc.tick()
        assert metric(svc, "windward_job_finishes_total") >= 4
        assert metric(svc, "windward_energy_joules_total", source="grid") + metric(
            svc, "windward_energy_joules_total", source="wind") > 0
    finally:
        svc.stop()


def test_server_expires_inference_it_could_not_serve(tmp_path: Path) -> None:
    """Non-preemptible training holds every eu GPU; inference that finds no room is expired once its
    demand window has passed, as in the simulation (it does not stay queued forever)."""
    svc, wall = service(tmp_path, "backfill", [tenant("train"), tenant("serve", priority=4)])
    try:
        for i in range(4):
            svc.submit(svc.tenants["train"],
                       JobSpec(name=f"t{i}", gpus=4, duration_s=8 * SLOT_S, preemptible=False), None)  # fmt: skip
        svc.tick()
        wall.t += 1.0
        jid = svc.submit(svc.tenants["serve"], JobSpec(name="inf", kind="inference", gpus=8, duration_s=SLOT_S),
                         None).record.id  # fmt: skip
        out = svc.tick()
        assert out.report is not None and out.report.inference_demand_gpus == 8
        assert out.report.inference_served_gpus == 0
        expired: list[str] = []
        for _ in range(3):
            wall.t += 1.0
            expired += svc.tick().expired
        assert expired == [jid]
        assert {r.id: r.state for r in svc.store.list_jobs()}[jid] == "failed"
    finally:
        svc.stop()


@pytest.mark.parametrize("cap_mw", [0.0, 0.004, 50.0])
def test_server_stops_non_preemptible_work_a_congestion_event_cannot_hold(tmp_path: Path, cap_mw: float) -> None:
    """Non-preemptible training runs; a congestion event then caps the grid below what that work draws even
    at its minimum power. The cap comes first (DESIGN section 2; scheduler.fastpath): the fast path stops it
    (reason power_cap). A violation is recorded, in the report and the metrics, only where the idle site alone
    breaks the cap (0 MW); at 4 kW the idle site fits; a cap above the draw (50 MW) stops nothing."""
    svc, wall = service(tmp_path, "backfill", [tenant("train")])
    try:
        for i in range(2):
            svc.submit(svc.tenants["train"],
                       JobSpec(name=f"t{i}", gpus=8, duration_s=8 * SLOT_S, preemptible=False), None)  # fmt: skip
        out = svc.tick()
        assert len(out.started) == 2 and not out.report.violations
        now = svc.clock.now_unix_s()
        svc.add_congestion(cap_mw, now - 1.0, now + 4 * SLOT_S, "test", "congestion below the training's load")
        wall.t += 1.0
        out = svc.tick()
        rep = out.report
        assert len(rep.starts) == 0
        stopped = cap_mw < 1.0  # 16 GPUs draw some 15 kW
        assert len(rep.preemptions) == (2 if stopped else 0) and set(rep.dropped) == set(rep.preemptions)
        assert metric(svc, "windward_preemptions_total", reason="power_cap") == len(rep.preemptions)
        pw = svc.loop.power
        idle_import_w = max(pw.base_w(pw.healthy_array(svc.loop.executor.healthy_gpus())) - rep.wind_w, 0.0)
        broken = idle_import_w > rep.grid_cap_w
        assert broken == (cap_mw == 0.0), (idle_import_w, rep.grid_cap_w)
        assert bool(rep.violations) == broken
        assert (metric(svc, "windward_cap_violations_total", reason="grid_cap") > 0) == broken
        if broken:
            assert "grid import" in rep.violations[0] and rep.grid_cap_w == pytest.approx(cap_mw * 1e6)
    finally:
        svc.stop()


def test_server_sheds_the_inference_a_cap_cannot_hold_and_serves_it_after(tmp_path: Path) -> None:
    """Inference runs; a congestion event caps the grid above the idle site's import but below what the
    inference adds: the fast path sheds it as the plan's rule does (kernels.check.inference_shed; the last
    resort, reason power_cap), so the cap holds and no violation is recorded (until round 23 the fast path
    never stopped must-run work and the server recorded the violation); after the event it is served again
    (started inference never expires)."""
    svc, wall = service(tmp_path, "backfill", [tenant("serve", priority=4)])
    try:
        svc.submit(svc.tenants["serve"], JobSpec(name="inf", kind="inference", gpus=8, duration_s=40 * SLOT_S),
                   None)  # fmt: skip
        out = svc.tick()
        assert len(out.started) == 1 and not out.report.violations
        now = svc.clock.now_unix_s()
        svc.add_congestion(0.004, now - 1.0, now + 2 * SLOT_S, "test", "congestion below the inference's load")
        wall.t += 1.0
        rep = svc.tick().report
        pw = svc.loop.power
        idle_import_w = max(pw.base_w(pw.healthy_array(svc.loop.executor.healthy_gpus())) - rep.wind_w, 0.0)
        assert idle_import_w < rep.grid_cap_w, (idle_import_w, rep.grid_cap_w)
        assert rep.inference_served_gpus == 0 and len(rep.preemptions) == 1 and rep.preemptions == rep.dropped
        assert not rep.violations and rep.grid_import_peak_w <= rep.grid_cap_w + 1e-6
        assert metric(svc, "windward_preemptions_total", reason="power_cap") == 1.0
        assert metric(svc, "windward_cap_violations_total", reason="grid_cap") == 0.0
        for _ in range(3):
            wall.t += 1.0
            rep = svc.tick().report
        assert rep.inference_served_gpus == 8 and not rep.violations, rep
    finally:
        svc.stop()
