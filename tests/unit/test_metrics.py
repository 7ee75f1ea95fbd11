"""scheduler.metrics: one private registry, naming and label rules, and what the counters and gauges read
after real control-loop ticks (scheduler.control with the simulated executor and a real policy)."""

from __future__ import annotations

import math
import re
from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import prometheus_client
import pytest
from prometheus_client.parser import text_string_to_metric_families

from kernels import planner as kplanner
from kernels import power as kpower
from scheduler.accounting import TenantAccount
from scheduler.control import TickReport, plan_diagnostics, run_simulation
from scheduler.energy import EnergySeries
from scheduler.jobs import Job
from scheduler.metrics import JOB_STATES, METRIC_LABELS, Metrics, TenantUsage
from scheduler.models import load_site
from scheduler.policies import get_policy

#: Windward's own metrics, and the standard process_* metrics of prometheus_client's ProcessCollector
NAME_RE = re.compile(r"^(windward|process)_[a-z0-9_]+$")


def _energy(site_name: str, n: int, wind_w: float, cap_w: float, seed: int = 0) -> EnergySeries:
    site = load_site(site_name)
    rng = np.random.default_rng(seed)
    return EnergySeries(
        start_utc=datetime(2023, 3, 1, tzinfo=UTC),
        slot_s=site.slot_s,
        wind_w=np.full(n, wind_w) * rng.uniform(0.2, 1.0, n),
        carbon_g_per_kwh=rng.uniform(150, 450, n),
        price_eur_per_mwh=np.full(n, 80.0),
        grid_cap_w=np.full(n, cap_w),
        site_max_w=np.full(n, site.site_max_mw * 1e6),
        source="hand-made test series",
    )


def _jobs() -> list[Job]:
    return [
        Job("t1", "science", "training", 0.0, 8, 3 * 3600.0, checkpoint_interval_s=900.0),
        Job("t2", "science", "training", 0.0, 16, 2 * 3600.0, checkpoint_interval_s=900.0),
        Job("b1", "companies", "batch", 1800.0, 4, 1800.0),
        Job("i1", "public", "inference", 0.0, 2, 6 * 3600.0, preemptible=False),
    ]


@pytest.fixture(scope="module")
def simulated() -> tuple[Metrics, list[TickReport]]:
    """A day-long slice on the demo site: every tick goes through Metrics.observe_tick as an observer."""
    site = load_site("demo")
    m = Metrics(site, wall_clock=lambda: 1_700_000_000.0)
    energy = _energy("demo", 24, wind_w=30_000.0, cap_w=25_000.0)
    res = run_simulation(site, _jobs(), energy, get_policy("backfill"), observers=[m.observe_tick], horizon_slots=8)
    return m, res.reports


def _samples(m: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(m.exposition().decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _get(m: Metrics, name: str, **labels: str) -> float:
    v = m.registry.get_sample_value(name, labels or None)
    assert v is not None, f"{name} {labels} not exported"
    return float(v)


def test_no_registry_at_import_and_registries_are_private() -> None:
    default_names = {s.name for fam in prometheus_client.REGISTRY.collect() for s in fam.samples}
    assert not any(n.startswith("windward_") for n in default_names)
    a, b = Metrics(), Metrics()
    a.facility_power.set(5.0)
    assert _get(a, "windward_facility_power_watts") == 5.0
    assert _get(b, "windward_facility_power_watts") == 0.0


def _rule_violations(fams: list, job_ids: set[str]) -> list[str]:
    """Every breach of the naming and label rules in ``fams``: a name outside ``windward_...``, a label
    outside :data:`scheduler.metrics.METRIC_LABELS` (``le`` is the histograms' own), a job id as a value."""
    bad = []
    for fam in fams:
        if not NAME_RE.match(fam.name):
            bad.append(f"name {fam.name}")
        for s in fam.samples:
            if set(s.labels) - {"le"} - METRIC_LABELS:
                bad.append(f"{s.name} has labels {sorted(s.labels)}")
            if job_ids & set(s.labels.values()):
                bad.append(f"{s.name} has a job id in {s.labels}")
    return bad


def test_names_units_and_labels_follow_the_rules(simulated: tuple[Metrics, list[TickReport]]) -> None:
    m, _ = simulated
    m.observe_jobs({("running", "science"): 2})
    fams = list(text_string_to_metric_families(m.exposition().decode()))
    assert len(fams) >= 40
    assert _rule_violations(fams, {"t1", "t2", "b1", "i1"}) == []
    types = {f.name: f.type for f in fams}
    assert types["windward_energy_joules"] == "counter" and types["windward_carbon_grams"] == "counter"
    assert types["windward_tick_duration_seconds"] == "histogram"
    assert types["windward_plan_duration_seconds"] == "histogram"


@pytest.mark.parametrize(
    ("name", "labels", "values", "expect"),
    [
        ("windward_job_progress", ["job_id"], ["t1"], "labels"),  # a label outside METRIC_LABELS
        ("windward_last_job", ["pool"], ["t2"], "job id"),  # an allowed label holding a job id
        ("windward_node_power_watts", ["pool", "node"], ["gpu-a", "n3"], "labels"),
        ("WindwardBad", ["mode"], ["nvml"], "name"),
    ],
)
def test_the_rule_check_catches_a_real_violation(name: str, labels: list[str], values: list[str], expect: str) -> None:
    """The check of the test above fails on a metric that breaks a rule (added to a real registry)."""
    m = Metrics(load_site("demo"))
    prometheus_client.Gauge(name, "a metric that breaks a rule", labels, registry=m.registry).labels(*values).set(1)
    fams = list(text_string_to_metric_families(m.exposition().decode()))
    bad = _rule_violations(fams, {"t1", "t2", "b1", "i1"})
    assert bad and any(expect in b for b in bad), bad


def test_counters_add_up_to_the_ticks(simulated: tuple[Metrics, list[TickReport]]) -> None:
    m, reports = simulated
    assert len(reports) == 24
    assert _get(m, "windward_ticks_total") == 24
    wind_j = sum(r.energy_wind_j for r in reports)
    grid_j = sum(r.energy_grid_j for r in reports)
    assert wind_j > 0 and grid_j > 0  # the slice has both (wind varies 0.2-1.0 of 30 kW)
    assert _get(m, "windward_energy_joules_total", source="wind") == pytest.approx(wind_j, rel=1e-9)
    assert _get(m, "windward_energy_joules_total", source="grid") == pytest.approx(grid_j, rel=1e-9)
    assert _get(m, "windward_carbon_grams_total", source="grid") == pytest.approx(sum(r.carbon_g for r in reports))
    assert _get(m, "windward_carbon_grams_total", source="wind") == 0.0
    # the joules are the slot means times the slot: the same as the timeline
    assert wind_j + grid_j == pytest.approx(sum(r.facility_w * r.slot_s for r in reports), rel=1e-9)
    assert _get(m, "windward_job_starts_total") == sum(len(r.starts) for r in reports) >= 4
    assert _get(m, "windward_job_finishes_total") == sum(len(r.finishes) for r in reports) >= 1
    assert _get(m, "windward_plan_duration_seconds_count") == 24
    assert _get(m, "windward_last_plan_timestamp_seconds") == 1_700_000_000.0
    n_pre = sum(len(r.preemptions) for r in reports)
    got = sum(_get(m, "windward_preemptions_total", reason=x) for x in ("plan", "power_cap"))
    assert got == n_pre


def test_gauges_hold_the_last_tick(simulated: tuple[Metrics, list[TickReport]]) -> None:
    m, reports = simulated
    last = reports[-1]
    site = load_site("demo")
    assert _get(m, "windward_facility_power_watts") == pytest.approx(last.facility_w)
    assert _get(m, "windward_grid_cap_watts") == last.grid_cap_w == 25_000.0
    assert _get(m, "windward_site_max_watts") == site.site_max_mw * 1e6
    assert _get(m, "windward_wind_available_watts") == pytest.approx(last.wind_w)
    assert _get(m, "windward_carbon_intensity_grams_per_kwh") == pytest.approx(last.carbon_g_per_kwh)
    grid_room = last.grid_cap_w - last.grid_import_peak_w
    site_room = last.site_max_w - last.facility_peak_w
    assert _get(m, "windward_cap_headroom_watts") == pytest.approx(min(grid_room, site_room))
    for p in site.pools:
        busy = _get(m, "windward_gpus", pool=p.name, state="busy")
        idle = _get(m, "windward_gpus", pool=p.name, state="idle")
        assert busy == pytest.approx(last.busy_gpus[p.name])
        assert busy + idle + _get(m, "windward_gpus", pool=p.name, state="down") == p.gpus
        assert _get(m, "windward_nodes", pool=p.name, state="up") == p.nodes
    assert _get(m, "windward_inference_demand_gpus") == last.inference_demand_gpus
    assert 0.0 <= _get(m, "windward_gpu_power_fraction") <= 1.0
    assert _get(m, "windward_slot") == last.slot


def test_power_fraction_is_recovered_from_facility_power() -> None:
    """With 8 GPUs busy at 0.6 of TDP in one pool, the site-wide fraction reads 0.6."""
    site = load_site("demo")
    busy = {"h100-eu-public": 8.0, "h100-nl-secret": 0.0}
    healthy = {p.name: p.gpus for p in site.pools}
    it = float(
        kpower.it_power_w(
            np.array([[8 * 0.6 * 700.0], [0.0]]),
            np.array([[8.0], [0.0]]),
            np.array([16.0, 16.0]),
            np.array([75.0, 75.0]),
            np.array([450.0, 450.0]),
        )[0]
    )
    m = Metrics(site)
    m.observe_tick(_service_report(0.0, facility_w=site.pue * it, busy_gpus=busy, healthy_gpus=healthy))
    assert _get(m, "windward_gpu_power_fraction") == pytest.approx(0.6)


def _service_report(now_s: float, facility_w: float = 30_000.0, wind_w: float = 10_000.0, cap_w: float = 25_000.0,
                    ci: float = 300.0, busy_gpus: dict[str, float] | None = None,
                    healthy_gpus: dict[str, int] | None = None, energy_grid_j: float = 0.0,
                    energy_wind_j: float = 0.0, carbon_g: float = 0.0) -> TickReport:  # fmt: skip
    """A TickReport as the service publishes it: the power drawn from now on, and the energy accounted for
    the time since its previous tick."""
    imp = max(facility_w - wind_w, 0.0)
    return TickReport(
        slot=int(now_s // 900), time_s=now_s, slot_s=900.0, facility_w=facility_w, facility_peak_w=facility_w,
        grid_import_w=imp, grid_import_peak_w=imp, wind_w=wind_w, grid_cap_w=cap_w, site_max_w=50_000.0,
        carbon_g_per_kwh=ci, carbon_g=carbon_g, energy_wind_j=energy_wind_j, energy_grid_j=energy_grid_j,
        busy_gpus=busy_gpus or {"h100-eu-public": 8, "h100-nl-secret": 0},
        healthy_gpus=healthy_gpus or {"h100-eu-public": 16, "h100-nl-secret": 8}, queued=0, running=1, starts=(),
        preemptions=(), finishes=(), failures=(), lost_work_s=0.0, lowered=(), dropped=(), start_failed=(),
        refused=(), violations=(), inference_demand_gpus=0, inference_served_gpus=0, decide_s=0.01,
        plan={"gap": 0.05, "iterations": 40}, tick_s=0.02, congestion_active=True,
    )  # fmt: skip


def test_service_reports_add_their_accounted_energy_and_flag_violations() -> None:
    site = load_site("demo")
    m = Metrics(site)
    m.observe_tick(_service_report(0.0, facility_w=30_000.0, wind_w=10_000.0))
    assert _get(m, "windward_energy_joules_total", source="grid") == 0.0
    m.observe_tick(_service_report(600.0, facility_w=20_000.0, wind_w=25_000.0, ci=100.0,
                                   energy_wind_j=10_000.0 * 600, energy_grid_j=20_000.0 * 600,
                                   carbon_g=20.0 * 600 / 3600 * 300))  # fmt: skip
    # the counters add what the report accounted (the one integrator), nothing of their own
    assert _get(m, "windward_energy_joules_total", source="wind") == pytest.approx(10_000.0 * 600)
    assert _get(m, "windward_energy_joules_total", source="grid") == pytest.approx(20_000.0 * 600)
    assert _get(m, "windward_carbon_grams_total", source="grid") == pytest.approx(20.0 * 600 / 3600 * 300)
    # node down: 8 of the secret pool's 16 GPUs unhealthy = one 8-GPU node
    assert _get(m, "windward_nodes", pool="h100-nl-secret", state="down") == 1
    assert _get(m, "windward_gpus", pool="h100-nl-secret", state="down") == 8
    assert _get(m, "windward_plan_gap_ratio") == 0.05 and _get(m, "windward_plan_iterations") == 40
    assert _get(m, "windward_tick_duration_seconds_count") == 2
    assert _get(m, "windward_congestion_active") == 1.0
    assert _get(m, "windward_cap_violation_watts", reason="grid_cap") == 0.0
    # a third tick whose grid import (40 kW - 5 kW) breaks the 25 kW cap
    m.observe_tick(_service_report(1200.0, facility_w=40_000.0, wind_w=5_000.0))
    assert _get(m, "windward_cap_violation_watts", reason="grid_cap") == pytest.approx(10_000.0)
    assert _get(m, "windward_cap_violations_total", reason="grid_cap") == 1
    assert _get(m, "windward_cap_violations_total", reason="site_max") == 0
    assert _get(m, "windward_cap_headroom_watts") == pytest.approx(-10_000.0)


def test_plan_infeasible_gauges_take_a_plan_result_or_its_diagnostics() -> None:
    """windward_plan_infeasible is 1 for an optimiser result of status infeasible (what the windward policy's
    fallback passes on), 0 otherwise; windward_plan_infeasible_slots counts the slots the plan's diagnostics mark
    infeasible, from the PlanResult or from the tick report's scalar diagnostics (control.plan_diagnostics)."""
    m = Metrics()
    infeasible = kplanner._infeasible(None, "inference needs more GPUs than its pools", 2, 4, 1)
    feasible = replace(infeasible, status="optimal", gap=0.0, diagnostics={"infeasible_slots": [2, 3]})
    # slots whose cap cannot hold the must-run inference (kernels: shed_slots) are counted with them
    shed = replace(feasible, diagnostics={"infeasible_slots": [3], "shed_slots": [1, 2]})
    for plan, want in ((infeasible, (1.0, 0.0)), (feasible, (0.0, 2.0)), (plan_diagnostics(infeasible), (1.0, 0.0)),
                       (plan_diagnostics(feasible), (0.0, 2.0)), (shed, (0.0, 3.0)), (plan_diagnostics(shed), (0.0, 3.0)),
                       (None, (0.0, 0.0))):  # fmt: skip
        m.observe_plan(plan)
        assert (_get(m, "windward_plan_infeasible"), _get(m, "windward_plan_infeasible_slots")) == want, plan


def test_observe_jobs_zeroes_states_that_emptied() -> None:
    m = Metrics()
    m.observe_jobs({("queued", "science"): 3, ("running", "defence"): 1})
    assert _get(m, "windward_jobs", state="queued", tenant="science") == 3
    for st in JOB_STATES:  # every tenant carries every state
        assert m.registry.get_sample_value("windward_jobs", {"state": st, "tenant": "defence"}) is not None
    m.observe_jobs([("done", "science", 3)])
    assert _get(m, "windward_jobs", state="queued", tenant="science") == 0
    assert _get(m, "windward_jobs", state="running", tenant="defence") == 0
    assert _get(m, "windward_jobs", state="done", tenant="science") == 3


def test_observe_usage_takes_the_accounting_records() -> None:
    m = Metrics()
    acct = TenantAccount(
        tenant="science", gpu_s=7200.0, energy_j=3.6e9, carbon_g=1200.0, running_gpus=16, demand_gpus=40,
        quota_gpus=64, commitment_period="day", commitment_gpu_s=48 * 3600.0, commitment_delivered_gpu_s=7200.0,
        commitment_owed_gpu_s=48 * 3600.0 - 7200.0, fair_share_weight=1.0, fair_share=0.5,
    )  # fmt: skip
    m.observe_usage([acct, TenantUsage("companies", gpu_s=10.0)])
    assert _get(m, "windward_tenant_usage_gpu_seconds", tenant="science") == 7200.0
    assert _get(m, "windward_commitment_rate_gpus", tenant="science") == pytest.approx(2.0)  # 48 GPU-h / day
    assert _get(m, "windward_commitment_owed_gpu_seconds", tenant="science") == 48 * 3600.0 - 7200.0
    assert _get(m, "windward_tenant_demand_gpus", tenant="science") == 40
    assert _get(m, "windward_tenant_quota_gpus", tenant="science") == 64
    assert m.registry.get_sample_value("windward_tenant_quota_gpus", {"tenant": "companies"}) is None
    assert _get(m, "windward_commitment_rate_gpus", tenant="companies") == 0.0
    assert not math.isnan(_get(m, "windward_tenant_fair_share_ratio", tenant="science"))


def test_inference_gauges_follow_every_tick() -> None:
    """While the 2-GPU inference service runs, windward_inference_served_gpus reads 2 at every tick (a gauge
    that stayed 0, as the server's once did, fails here), and demand and served are the report's own."""
    site = load_site("demo")
    m = Metrics(site)
    seen: list[tuple[int, int, float, float]] = []

    def observe(r: TickReport) -> None:
        m.observe_tick(r)
        seen.append((r.inference_demand_gpus, r.inference_served_gpus, _get(m, "windward_inference_demand_gpus"),
                     _get(m, "windward_inference_served_gpus")))  # fmt: skip

    energy = _energy("demo", 24, wind_w=30_000.0, cap_w=25_000.0)
    run_simulation(site, _jobs(), energy, get_policy("backfill"), observers=[observe], horizon_slots=8)
    assert all(d == gd and s == gs for d, s, gd, gs in seen)
    assert sum(1 for *_, gs in seen if gs == 2) == 24  # the service (6 h = 24 slots) was served at every tick
