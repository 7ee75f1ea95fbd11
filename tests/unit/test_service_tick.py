"""The service's tick in-process (simulated executor, real SQLite): the ledger, the batched journal, the
shared decision steps of scheduler.control, cancellations, and the usage written."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from scheduler.control import order_actions, sanitize_run, start_candidates
from scheduler.jobs import Job
from scheduler.models import JobSpec, load_site, load_tenants
from scheduler.policies.base import Assignment, JobState
from scheduler.service import Service, ServiceConfig


class Wall:
    """A wall clock the test moves."""

    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _backfill_config(tmp_path: Path) -> ServiceConfig:
    """The demo site and tenants, backfill, one tick a second, state in ``tmp_path``."""
    return ServiceConfig(site=load_site("demo"), tenants=load_tenants(), state_path=str(tmp_path / "s.sqlite"),
                         policy="backfill", tick_seconds=1.0, progress_flush_s=0.0)


def test_order_actions_and_sanitize() -> None:
    site = load_site("demo")
    pub, sec = (p.name for p in site.pools)
    jobs = {
        "run-move": JobState(Job("run-move", "t", "training", 0, 2, 3600), "running", 10, 0, pub, 1.0),
        "run-np": JobState(Job("run-np", "t", "training", 0, 2, 3600, preemptible=False), "running", 10, 0, pub, 1.0),
        "run-keep": JobState(Job("run-keep", "t", "training", 0, 2, 3600), "running", 10, 0, pub, 1.0),
        "q-secret": JobState(Job("q-secret", "t", "training", 0, 2, 3600, clearance="secret"), "queued", 0, 0),
        "q": JobState(Job("q", "t", "training", 0, 2, 3600), "queued", 0, 0),
    }
    decided = {"run-move": Assignment(sec, 1.0), "run-keep": Assignment(pub, 0.6), "q-secret": Assignment(pub, 1.0),
               "q": Assignment(pub, 1.0), "ghost": Assignment(pub, 1.0)}  # fmt: skip
    run, refused = sanitize_run(site, decided, jobs)
    assert set(refused) == {"q-secret", "ghost"}  # ineligible pool (sovereignty), unknown job
    assert run["run-np"] == Assignment(pub, 1.0)  # non-preemptible running work keeps running
    plan = order_actions(run, {j: (s.pool or "", s.power_fraction) for j, s in jobs.items() if s.state == "running"})
    assert plan.preempt == ("run-move",) and plan.set_power == (("run-keep", 0.6),)
    assert [j for j, _ in plan.start] == ["run-move", "q"]
    inf = Job("inf", "t", "inference", 0, 2, 3600)
    # inference the policy left out is served in its home pool, at full power
    with_inf = {**jobs, "inf": JobState(inf, "queued", 0, 0)}
    run2, _ = sanitize_run(site, decided, with_inf, home_pool=lambda j: sec)
    assert run2["inf"] == Assignment(sec, 1.0) and "inf" not in sanitize_run(site, decided, with_inf)[0]
    # ... except inference the plan sheds in this slot (Decisions.shed: its cap cannot hold it), queued or running
    run_inf = JobState(Job("run-inf", "t", "inference", 0, 2, 3600), "running", 10, 0, pub, 1.0)
    both = {**with_inf, "run-inf": run_inf}
    kept, _ = sanitize_run(site, decided, both, home_pool=lambda j: sec)
    assert {"inf", "run-inf"} <= set(kept)
    shed, _ = sanitize_run(site, decided, both, home_pool=lambda j: sec, shed={"inf", "run-inf"})
    assert not {"inf", "run-inf"} & set(shed) and set(kept) - set(shed) == {"inf", "run-inf"}
    assert [a.pool for a in start_candidates(site, inf, Assignment(pub, 0.7))] == [pub, sec]
    assert [a.pool for a in start_candidates(site, jobs["q"].job, Assignment(pub, 0.7))] == [pub]


def test_tick_journals_in_batches_and_keeps_the_ledger(tmp_path: Path) -> None:
    wall = Wall(1_900_000_000.0)
    cfg = _backfill_config(tmp_path)
    svc = Service(cfg, wall=wall)
    try:
        science = svc.tenants["science"]
        ids = [svc.submit(science, JobSpec(name=f"j{i}", gpus=4, duration_s=1800), None).record.id for i in range(6)]
        out = svc.tick()
        assert len(out.started) == 4  # the public pool holds 16 GPUs: four 4-GPU jobs
        db = sqlite3.connect(tmp_path / "s.sqlite")
        intents = db.execute("SELECT DISTINCT intent_unix_s FROM actions WHERE kind='start'").fetchall()
        assert len(intents) == 1  # one transaction of intents for the whole tick
        assert db.execute("SELECT COUNT(*) FROM actions WHERE outcome IS NULL").fetchone()[0] == 0
        assert db.execute("SELECT COUNT(*) FROM audit").fetchone()[0] == 4
        # cancel one running and one queued job: the queued one leaves at once, the running one next tick
        running = out.started[0]
        queued = next(j for j in ids if j not in out.started)
        svc.cancel(queued)
        svc.cancel(running)
        wall.t += 0.5  # half a slot
        out2 = svc.tick()
        assert sorted(out2.cancelled) == sorted([running, queued])  # the tick took both out of its ledger
        stops = db.execute("SELECT job_id, outcome FROM actions WHERE kind='preempt'").fetchall()
        assert stops == [(running, "cancelled")]  # only the running one needed the executor (journalled)
        assert svc.store.get(running).state == "cancelled" and svc.store.get(queued).state == "cancelled"
        assert running not in svc.loop.records and queued not in svc.loop.records
        # usage accrued for the half slot is written per tenant and per job
        usage = svc.store.usage_by_tenant()["science"]
        assert usage["gpu_s"] > 0 and usage["energy_j"] > 0
        per_job = db.execute("SELECT SUM(gpu_s) FROM jobs").fetchone()[0]
        assert abs(per_job - usage["gpu_s"]) < 1e-6
        # counts kept by the store match the table
        sql = {(st, t): n for st, t, n in db.execute("SELECT state, tenant, COUNT(*) FROM jobs GROUP BY 1, 2")}
        assert svc.store.counts() == sql
        # the jobs finish (1800 s = 2 slots): the ledger empties of them and the store agrees
        for _ in range(6):
            wall.t += 1.0
            svc.tick()
        states = {svc.store.get(j).state for j in ids if j not in (running, queued)}
        assert states == {"finished"}
        assert not svc.loop.records
        db.close()
    finally:
        svc.stop()


def test_mid_slot_ticks_account_the_same_energy_as_one_tick_per_slot(tmp_path: Path) -> None:
    """Partial slots (scheduler/control.py, "Time"): a server that also ticks mid-slot splits each slot into
    intervals, each settled through the one integrator with its slot's wind and carbon; with the same work
    running (everything fits at once, jobs finishing inside slots) the energy, carbon and per-job GPU-seconds
    are those of a server that ticks once per slot. A family of tick splits (1, 2, 3 and 4 ticks a slot)."""
    totals = {}
    for split in (1, 2, 3, 4):
        wall = Wall(1_900_000_000.0 - 1_900_000_000.0 % 900.0)
        cfg = ServiceConfig(site=load_site("demo"), tenants=load_tenants(),
                            state_path=str(tmp_path / f"s{split}.sqlite"), policy="backfill", tick_seconds=1.0,
                            progress_flush_s=0.0)  # fmt: skip
        svc = Service(cfg, wall=wall)
        try:
            science = svc.tenants["science"]
            for i, dur in enumerate((700.0, 1500.0, 2000.0, 2600.0)):  # 4 x 4 GPUs: all start at once
                svc.submit(science, JobSpec(name=f"j{i}", gpus=4, duration_s=dur), None)
            reports = []
            for k in range(4 * split + 1):
                wall.t = tick_wall_s(k, split)
                reports.append(svc.tick().report)
            assert len(reports[0].starts) == 4
            db = sqlite3.connect(tmp_path / f"s{split}.sqlite")
            gpu_s = db.execute("SELECT SUM(gpu_s) FROM jobs").fetchone()[0]
            db.close()
            totals[split] = (sum(r.energy_grid_j + r.energy_wind_j for r in reports), sum(r.carbon_g for r in reports),
                             gpu_s, sum(len(r.finishes) for r in reports))  # fmt: skip
        finally:
            svc.stop()
    e1, c1, g1, f1 = totals[1]
    assert f1 == 4 and g1 == pytest.approx(4 * (700.0 + 1500.0 + 2000.0 + 2600.0), rel=1e-9)
    for split, (e, c, g, f) in totals.items():
        assert (e, c, g, f) == (pytest.approx(e1, rel=1e-9), pytest.approx(c1, rel=1e-9),
                                pytest.approx(g1, rel=1e-9), f1), split  # fmt: skip


def tick_wall_s(k: int, split: int) -> float:
    """The wall time of the k-th tick when a slot (one wall second) is split into ``split`` ticks."""
    base = 1_900_000_000.0 - 1_900_000_000.0 % 900.0
    return base + k / split


def test_restart_keeps_served_inference_from_expiring(tmp_path: Path) -> None:
    """Inference that was served before a restart, and is queued again (preempted), is not expired by the
    restarted server as if it had never run: the restart carries when it first started into the loop."""
    from scheduler.state import StateStore, StopOutcome

    wall = Wall(1_900_000_000.0)
    cfg = _backfill_config(tmp_path)
    svc = Service(cfg, wall=wall)
    try:
        science = svc.tenants["science"]
        served = svc.submit(science, JobSpec(name="serve", kind="inference", gpus=2, duration_s=1800), None).record.id
        out = svc.tick()
        assert served in out.started
    finally:
        svc.stop()
    store = StateStore(tmp_path / "s.sqlite")
    store.record_outcomes(stopped=[StopOutcome(None, served, "queued", 60.0, "preempted", 0.0)], now_unix_s=wall.t + 60)
    store.close()
    wall.t += 3600.0  # past the job's demand window: a job that never ran would expire now
    svc2 = Service(cfg, wall=wall)
    try:
        out2 = svc2.tick()
        assert served not in out2.report.expired
        assert svc2.store.get(served).state != "failed", svc2.store.get(served).detail
    finally:
        svc2.stop()


def test_congestion_events_announced_at_once_after_a_start_are_all_counted(tmp_path: Path) -> None:
    """The metrics registry is made on first use; threads reaching it at once (the API announcing congestion, the
    scrape, the tick) each made one, and the one kept lost the others' counts (test_prometheus read 0 events on a
    loaded machine). 8 threads announce an event at the same moment on a fresh service: the exposition counts 8."""
    import threading

    wall = Wall(1_900_000_000.0)
    svc = Service(_backfill_config(tmp_path), wall=wall)
    try:
        n = 8
        go = threading.Barrier(n)

        def announce(i: int) -> None:
            go.wait()
            svc.add_congestion(1.0, wall() + 3600.0 * (i + 1), wall() + 3600.0 * (i + 2), "ops", f"event {i}")

        threads = [threading.Thread(target=announce, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        body, _ = svc.metrics_exposition()
        line = next(ln for ln in body.decode().splitlines() if ln.startswith("windward_congestion_events_total "))
        assert float(line.split()[1]) == n
    finally:
        svc.stop()
