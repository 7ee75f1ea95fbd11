"""A simulation report's per-job records agree with its own timeline (DESIGN section 7: "from this file
alone anyone can recompute every slot's facility power"), also when preempted work resumes in another pool:
the record then carries ``slot_pools``, the pool of every listed slot (issue 12)."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import numpy as np
import pytest

from scheduler.control import NodeEvent, run_simulation
from scheduler.energy import EnergySeries
from scheduler.jobs import Job
from scheduler.models import load_site
from scheduler.planjson import check_plan, recompute_timeline
from scheduler.policies import get_policy
from scheduler.policies.base import Assignment, Decisions, Snapshot
from scheduler.report import build_report

SITE = load_site("demo")
PUB, SEC = (p.name for p in SITE.pools)


def energy(n: int) -> EnergySeries:
    return EnergySeries(start_utc=datetime(2023, 1, 1, tzinfo=UTC), slot_s=900, wind_w=np.full(n, 20_000.0),
                        carbon_g_per_kwh=np.linspace(100.0, 400.0, n), price_eur_per_mwh=np.full(n, 50.0),
                        grid_cap_w=np.full(n, 60_000.0), site_max_w=np.full(n, 80_000.0), source="test")  # fmt: skip


class Mover:
    """Runs job ``a`` in the public pool for three slots, then (preempted) in the secret pool."""

    name = "mover"

    def decide(self, snapshot: Snapshot) -> Decisions:
        return Decisions(run={"a": Assignment(PUB if snapshot.slot < 3 else SEC, 1.0 if snapshot.slot < 5 else 0.6)})


def check_against_timeline(report: dict) -> None:
    assert check_plan(report) == []
    rc = recompute_timeline(report)
    tl = report["timeline"]
    assert np.allclose(rc["facility_w"], tl["facility_w"], rtol=1e-6, atol=1e-3)
    assert np.allclose(rc["carbon_g"], tl["carbon_g"], rtol=1e-6, atol=1e-6)
    for i, p in enumerate(report["pools"]):
        assert np.allclose(rc["busy_gpus"][i], tl["busy_gpus"][p["name"]], atol=1e-6), p["name"]


def test_a_job_that_moved_pools_lists_the_pool_of_every_slot() -> None:
    job = Job("a", "t", "training", 0.0, 16, 8 * 900.0, checkpoint_interval_s=900.0)
    res = run_simulation(SITE, [job], energy(16), Mover(), n_slots=12)
    report = build_report(res)
    (entry,) = report["jobs"]
    n = len(entry["slots"])
    assert entry["slot_pools"][:3] == [PUB] * 3 and entry["slot_pools"][3:] == [SEC] * (n - 3)
    assert entry["pool"] == SEC  # the pool of its last slot
    check_against_timeline(report)
    # the 16 GPUs are in the public pool's busy count in slots 0-2 and in the secret pool's afterwards
    assert report["timeline"]["busy_gpus"][PUB][:3] == [16.0] * 3
    assert report["timeline"]["busy_gpus"][SEC][3] == 16.0 and report["timeline"]["busy_gpus"][PUB][3] == 0.0


@pytest.mark.parametrize("seed", range(6))
def test_records_recompute_the_timeline_with_failures_and_moves(seed: int) -> None:
    """Seeded workloads with node failures (work restarts wherever it fits, often in the other pool)."""
    rng = random.Random(seed)
    jobs = [Job(f"j{i}", "t", rng.choice(["training", "training", "batch"]), rng.uniform(0, 4 * 3600.0),
                rng.choice([1, 2, 4, 8]), rng.uniform(0.3, 3.0) * 3600.0, preemptible=rng.random() < 0.8,
                checkpoint_interval_s=900.0) for i in range(30)]  # fmt: skip
    events = [NodeEvent(rng.randint(1, 20), rng.choice([PUB, SEC]), rng.randint(0, 1)) for _ in range(3)]
    n = 40
    res = run_simulation(SITE, jobs, energy(n + 8), get_policy(rng.choice(["backfill", "greedy-green"])),
                         n_slots=n, node_events=events, horizon_slots=16)  # fmt: skip
    report = build_report(res)
    check_against_timeline(report)
    for e in report["jobs"]:
        if "slot_pools" in e:
            assert len(e["slot_pools"]) == len(e["slots"]) and e["pool"] == e["slot_pools"][-1]
