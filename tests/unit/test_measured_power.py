"""Measured power beside the model (issue 14 item 5): where the executor measures GPU draw, the fast path of
the one shared pipeline (the simulation's loop and the server alike) checks the caps against
``max(model, measured)`` per pool, the TickReport carries the measured facility power and its source, and
the metrics export it only while there is a measurement."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from scheduler.control import ControlLoop, TickReport
from scheduler.energy import EnergySeries
from scheduler.errors import InputError
from scheduler.executors.base import measured_gpu_power_w
from scheduler.executors.simulated import SimulatedExecutor, VirtualClock
from scheduler.fastpath import enforce_caps
from scheduler.jobs import Job
from scheduler.metrics import Metrics
from scheduler.models import JobSpec, load_site, load_tenants
from scheduler.pipeline import measured_power
from scheduler.policies.base import Assignment, Decisions, JobState, Snapshot
from scheduler.policies.capacity import SitePower
from scheduler.service import Service, ServiceConfig

SITE = load_site("demo")
POWER = SitePower(SITE)
PUB, SEC = (p.name for p in SITE.pools)
PUE = SITE.pue
POOL = SITE.pool(PUB)


class MeteredExecutor(SimulatedExecutor):
    """The simulated executor with a GPU meter the test sets (a fake NVML readback, per pool)."""

    def __init__(self, clock: VirtualClock, reading: Mapping[str, float] | None) -> None:
        super().__init__(SITE, clock)
        self.reading = reading

    def measured_gpu_power_w(self) -> Mapping[str, float] | None:  # type: ignore[override]
        return self.reading


class Fixed:
    name = "fixed"

    def __init__(self, run: dict[str, Assignment]) -> None:
        self.run = run

    def decide(self, snapshot: Snapshot) -> Decisions:
        return Decisions(run=dict(self.run))


def energy(cap_w: float) -> EnergySeries:
    return EnergySeries(start_utc=datetime(2023, 1, 1, tzinfo=UTC), slot_s=900, wind_w=np.zeros(4),
                        carbon_g_per_kwh=np.full(4, 300.0), price_eur_per_mwh=np.full(4, 50.0),
                        grid_cap_w=np.full(4, cap_w), site_max_w=np.full(4, 50_000.0), source="test")  # fmt: skip


def idle_gpu_w(pool: str) -> float:
    """The model's GPU draw of an idle pool (every healthy GPU at ``idle_w``)."""
    p = SITE.pool(pool)
    return p.gpus * p.idle_w


def one_tick(seed: int, reading_fn: object, over: bool = False) -> tuple[TickReport, float, float]:
    """A seeded case: 1-4 4-GPU training jobs decided in the public pool at full power, under a grid cap
    ``margin_w`` above their modelled facility power (below it with ``over``: the model alone must shed).
    Returns (report, margin_w, excess IT W of the reading)."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 5))
    jobs = [Job(f"j{i}", "t", "training", 0.0, 4, 3600.0, priority=int(rng.integers(0, 3))) for i in range(n)]
    run = {j.job_id: Assignment(PUB, 1.0) for j in jobs}
    model_w = POWER.base_w(POWER.healthy_array({PUB: 16, SEC: 16})) + sum(j.gpus * POWER.gpu_w(0, 1.0) for j in jobs)
    margin_w = float(rng.uniform(50.0, 500.0))
    # the meter reads more than the model by an excess the margin cannot hold but lowering / shedding can
    excess_it_w = float(rng.uniform(margin_w / PUE * 1.5, margin_w / PUE + 0.5 * n * 4 * POOL.tdp_w * 0.6))
    reading = reading_fn(excess_it_w)  # type: ignore[operator]
    clock = VirtualClock()
    loop = ControlLoop(SITE, MeteredExecutor(clock, reading), Fixed(run), clock, jobs=jobs)
    e = energy(model_w - margin_w if over else model_w + margin_w)
    return loop.tick(e, e), margin_w, excess_it_w


@pytest.mark.parametrize("seed", range(12))
def test_a_meter_above_the_model_makes_the_fast_path_shed_in_that_tick(seed: int) -> None:
    # without a meter, the decided set fits the model's budget: the fast path does nothing
    rep0, _, _ = one_tick(seed, lambda x: None)
    assert rep0.lowered == () and rep0.dropped == () and rep0.power_source == "model"
    assert rep0.measured_facility_w is None
    # the public pool's GPUs (idle before the tick's starts) read above the model
    rep, margin_w, excess_it_w = one_tick(seed, lambda x: {PUB: idle_gpu_w(PUB) + x})
    assert rep.lowered or rep.dropped, "the fast path ignored the measured draw"
    assert rep.power_source == "measured"
    # the measured facility power: the model's idle site with the public pool's GPUs as measured
    model_idle_w = POWER.base_w(POWER.healthy_array({PUB: 16, SEC: 16}))
    assert rep.measured_facility_w == pytest.approx(model_idle_w + PUE * excess_it_w)
    # what runs after the fast path, modelled, plus the excess it cannot shed, fits the budget
    assert rep.facility_peak_w + PUE * excess_it_w <= rep.grid_cap_w + 1e-6 * rep.site_max_w


@pytest.mark.parametrize("seed", range(6))
def test_a_meter_below_the_model_is_not_credited(seed: int) -> None:
    # the grid cap is below the decided set's model: the model alone makes the fast path lower power
    rep0, _, _ = one_tick(seed, lambda x: None, over=True)
    rep, _, _ = one_tick(seed, lambda x: {PUB: 0.5 * idle_gpu_w(PUB), SEC: 0.0}, over=True)
    assert rep0.lowered or rep0.dropped
    assert rep.power_source == "measured" and rep.measured_facility_w is not None
    assert rep.measured_facility_w < rep0.facility_peak_w  # the meter reads less ...
    assert (rep.starts, rep.lowered, rep.dropped) == (rep0.starts, rep0.lowered, rep0.dropped)  # ... no credit


@pytest.mark.parametrize("seed", range(10))
def test_measured_power_is_max_of_model_and_meter_per_pool(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    healthy = {PUB: int(rng.choice([8, 16])), SEC: int(rng.choice([0, 8, 16]))}
    running = [JobState(Job(f"r{i}", "t", "training", 0.0, 2, 3600.0), "running", pool=PUB,
                        power_fraction=float(rng.uniform(0.4, 1.0))) for i in range(int(rng.integers(0, 4)))]  # fmt: skip
    meter = {p: float(rng.uniform(0.0, 12_000.0)) for p in (PUB, SEC) if rng.random() < 0.7}
    got = measured_power(POWER, running, healthy, meter)
    # the model of each pool, by hand (DESIGN section 2)
    model_it: dict[str, float] = {}
    for p in SITE.pools:
        busy = sum(j.job.gpus for j in running if j.pool == p.name)
        active = sum(j.job.gpus * j.power_fraction * p.tdp_w for j in running if j.pool == p.name)
        h = healthy[p.name]
        model_it[p.name] = active + (h - busy) * p.idle_w + h * p.host_w_per_gpu
    meas_it = {p.name: meter[p.name] + healthy[p.name] * p.host_w_per_gpu if p.name in meter else model_it[p.name]
               for p in SITE.pools}  # fmt: skip
    assert got.model_facility_w == pytest.approx(PUE * sum(model_it.values()))
    assert got.facility_w == pytest.approx(PUE * sum(meas_it.values()))
    assert got.unmodelled_w == pytest.approx(PUE * sum(max(meas_it[p] - model_it[p], 0.0) for p in model_it))
    assert got.source == {p.name: "measured" if p.name in meter else "model" for p in SITE.pools}


def test_bad_measurements_are_refused_naming_the_value() -> None:
    with pytest.raises(InputError, match="measured power for pool"):
        measured_power(POWER, [], {PUB: 16, SEC: 16}, {"nope": 1.0})
    with pytest.raises(InputError, match="unmodelled_w is -1.0 W"):
        enforce_caps(POWER, {}, {}, {}, {PUB: 16}, 0.0, 1e5, 1e5, -1.0)


def test_executor_without_a_meter_measures_nothing() -> None:
    clock = VirtualClock()
    assert measured_gpu_power_w(SimulatedExecutor(SITE, clock)) is None
    assert measured_gpu_power_w(object()) is None  # an executor without the optional method
    assert measured_gpu_power_w(MeteredExecutor(clock, {})) is None  # an empty readback is no measurement
    assert measured_gpu_power_w(MeteredExecutor(clock, {PUB: 5.0})) == {PUB: 5.0}


def test_metrics_export_the_measured_power_only_while_measured() -> None:
    m = Metrics(SITE)
    rep, _, excess = one_tick(3, lambda x: {PUB: idle_gpu_w(PUB) + x})
    m.observe_tick(rep)
    line = next(ln for ln in m.exposition().decode().splitlines() if ln.startswith("windward_measured_facility_power"))
    assert float(line.split()[-1]) == pytest.approx(rep.measured_facility_w)
    rep0, _, _ = one_tick(3, lambda x: None)
    m.observe_tick(rep0)
    assert "windward_measured_facility_power_watts " not in m.exposition().decode()


def test_the_servers_tick_sheds_on_the_meter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wall = 1_900_000_000.0
    site = load_site("demo")
    outs = {}
    for name, reading in (("model", None), ("meter", {PUB: 1e6})):
        cfg = ServiceConfig(site=site, tenants=load_tenants(), state_path=str(tmp_path / f"{name}.sqlite"),
                            policy="backfill", tick_seconds=1.0, progress_flush_s=0.0)  # fmt: skip
        svc = Service(cfg, wall=lambda: wall)
        try:
            monkeypatch.setattr(svc.executor, "measured_gpu_power_w", lambda r=reading: r, raising=False)
            science = svc.tenants["science"]
            for i in range(4):
                svc.submit(science, JobSpec(name=f"j{i}", gpus=4, duration_s=1800), None)
            outs[name] = svc.tick()
        finally:
            svc.stop()
    assert len(outs["model"].started) == 4 and outs["model"].report.power_source == "model"
    # a meter reading 1 MW in the public pool: no budget holds it; every preemptible start is shed
    out = outs["meter"]
    assert out.started == [] and len(out.fast_path.dropped) == 4
    assert out.report.power_source == "measured" and out.report.measured_facility_w > 1e6
