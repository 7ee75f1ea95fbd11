"""Issue 15 item 5: cumulative per-tenant counters, windward_build_info, process metrics, signal staleness."""

from __future__ import annotations

import math
import random

import pytest
from prometheus_client.parser import text_string_to_metric_families

from scheduler import __version__
from scheduler.metrics import TENANT_COUNTERS, Metrics, TenantUsage, build_info


def _families(m: Metrics) -> dict[str, object]:
    return {f.name: f for f in text_string_to_metric_families(m.exposition().decode())}


@pytest.mark.parametrize("seed", range(5))
def test_tenant_counters_are_counters_with_the_accountings_totals(seed: int) -> None:
    rng = random.Random(seed)
    m = Metrics()
    tenants = [f"t{i}" for i in range(rng.randint(1, 5))]
    totals = {t: [0.0, 0.0, 0.0] for t in tenants}
    for _ in range(4):  # the accounting's totals only grow; the counters read them as they are
        for t in tenants:
            for k in range(3):
                totals[t][k] += rng.uniform(0, 1e6)
        m.observe_usage([TenantUsage(t, *totals[t]) for t in tenants])
        fams = _families(m)
        for k, (name, _, _) in enumerate(TENANT_COUNTERS):
            fam = fams[name]
            assert fam.type == "counter", name  # type: ignore[attr-defined]
            got = {s.labels["tenant"]: s.value for s in fam.samples if s.name == name + "_total"}  # type: ignore[attr-defined]
            assert got == pytest.approx({t: totals[t][k] for t in tenants})
    # the gauges dashboards read stay, with the same values
    gauge = {s.labels["tenant"]: s.value for s in fams["windward_tenant_usage_gpu_seconds"].samples}  # type: ignore[attr-defined]
    assert gauge == pytest.approx({t: totals[t][0] for t in tenants})


def test_build_info_process_metrics_and_signal_staleness() -> None:
    m = Metrics()
    fams = _families(m)
    (b,) = fams["windward_build_info"].samples  # type: ignore[attr-defined]
    assert b.value == 1 and b.labels["version"] == __version__ == build_info()["version"] and b.labels["git_sha"]
    assert "process_cpu_seconds" in fams and "process_resident_memory_bytes" in fams
    assert {"windward_build_info", "process_cpu_seconds_total", "windward_signal_staleness_seconds",
            "windward_tenant_gpu_seconds_total"} <= m.names()  # fmt: skip
    m.observe_signals({"entsoe": 120.0, "ned": math.inf})
    got = {s.labels["source"]: s.value for s in _families(m)["windward_signal_staleness_seconds"].samples}  # type: ignore[attr-defined]
    assert got == {"entsoe": 120.0, "ned": math.inf}
