"""Tenants' rights hold under every policy (scheduler.rules, issue 12): quotas, owed commitments, weighted fair
share. Each property is checked on families of seeded workloads through the real control loop and the
simulated executor, for windward, backfill and greedy-green; the pure rule is also checked alone."""

from __future__ import annotations

import hashlib
import math
import random
from datetime import UTC, datetime

import numpy as np
import pytest

from scheduler.accounting import LoopTenantInfo
from scheduler.control import run_simulation
from scheduler.energy import EnergySeries
from scheduler.jobs import Job, eligible_pools
from scheduler.models import Tenant, load_site
from scheduler.policies import get_policy
from scheduler.policies.base import Assignment, TenantInfo
from scheduler.rules import enforce_rules, entitlements

SITE = load_site("demo")  # two pools of 16 GPUs (nodes of 8)
POOLS = [p.name for p in SITE.pools]
POLICIES = ["backfill", "greedy-green", "windward"]
START = datetime(2023, 1, 9, tzinfo=UTC)


def energy(n: int) -> EnergySeries:
    """Plenty of power (caps never bind: the rules alone decide who runs)."""
    return EnergySeries(start_utc=START, slot_s=900, wind_w=np.full(n, 60_000.0),
                        carbon_g_per_kwh=np.full(n, 300.0), price_eur_per_mwh=np.full(n, 50.0),
                        grid_cap_w=np.full(n, 60_000.0), site_max_w=np.full(n, 80_000.0), source="test")  # fmt: skip


def tenant(name: str, **kw: object) -> Tenant:
    tok = hashlib.sha256(name.encode()).hexdigest()
    return Tenant(name=name, token_sha256=tok, clearance="secret", **kw)  # type: ignore[arg-type]


def backlog(rng: random.Random, tenant_name: str, n: int, gpus: tuple[int, ...], hours: tuple[float, float],
            submit_s: float = 0.0, prefix: str = "") -> list[Job]:  # fmt: skip
    return [
        Job(f"{prefix or tenant_name}-{i}", tenant_name, "training", submit_s + i, rng.choice(gpus),
            rng.uniform(*hours) * 3600.0, preemptible=True, checkpoint_interval_s=900.0)
        for i in range(n)
    ]  # fmt: skip


def run(policy: str, jobs: list[Job], tenants: list[Tenant], n_slots: int):  # noqa: ANN201
    pol = get_policy(policy, horizon_hours=6.0)
    return run_simulation(SITE, jobs, energy(n_slots + 32), pol, n_slots=n_slots, horizon_slots=24,
                          tenant_info_fn=LoopTenantInfo(SITE, tenants, START.timestamp()))  # fmt: skip


def gpus_per_slot(res, tenant_name: str, n_slots: int) -> np.ndarray:  # noqa: ANN001
    """Running GPUs of a tenant in each slot (share of the slot it ran), from the per-job records alone."""
    out = np.zeros(n_slots)
    for rec in res.loop.records.values():
        if rec.job.tenant == tenant_name and not rec.job.must_run:
            for s, rf in zip(rec.slots, rec.run_fractions):
                if s < n_slots:
                    out[s] += rec.job.gpus * rf
    return out


# ------------------------------------------------------------------------------------- quotas


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_quota_holds_in_every_slot(policy: str, seed: int) -> None:
    rng = random.Random(seed)
    quota = rng.choice([4, 8, 12])
    tenants = [tenant("capped", quota_gpus=quota), tenant("free")]
    jobs = backlog(rng, "capped", 20, (1, 2, 4), (0.5, 2.0)) + backlog(rng, "free", 4, (1, 2), (0.5, 1.0))
    n = 24
    res = run(policy, jobs, tenants, n)
    capped = gpus_per_slot(res, "capped", n)
    assert capped.max() <= quota + 1e-9, (policy, seed, quota, capped.tolist())
    assert capped.max() >= quota - 4  # it did run, up to (about) its quota: the rule caps, it does not starve
    assert not res.loop.violations


# ------------------------------------------------------------------------------- fair share


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_weighted_fair_share_under_contention(policy: str, seed: int) -> None:
    """Weights 3:1, both tenants backlogged well past the window: over the window (slots 2..16: the first
    slots let running work reach its split) tenant a gets 3/4 of the GPU-hours within one largest job's
    share of the 32 GPUs (2/32), and in every slot of it each tenant is within one largest job of its
    entitlement."""
    rng = random.Random(100 + seed)
    tenants = [tenant("a", fair_share_weight=3.0), tenant("b", fair_share_weight=1.0)]
    # b submits first: a FIFO policy alone would give b the whole site
    jobs = backlog(rng, "b", 40, (1, 2), (3.0, 6.0)) + backlog(rng, "a", 60, (1, 2), (3.0, 6.0), submit_s=60.0)
    n = 16
    res = run(policy, jobs, tenants, n)
    a, b = gpus_per_slot(res, "a", n)[2:], gpus_per_slot(res, "b", n)[2:]
    share = a.sum() / (a.sum() + b.sum())
    assert share == pytest.approx(0.75, abs=2 / 32 + 1e-9), (policy, seed, a.tolist(), b.tolist())
    total = a + b
    assert np.all(np.abs(a - 0.75 * total) <= 2 + 1e-9), (a.tolist(), b.tolist())


def test_entitlements_water_fill() -> None:
    rng = random.Random(7)
    for _ in range(200):
        n = rng.randint(1, 5)
        w = {f"t{i}": rng.choice([0.5, 1.0, 2.0, 3.0]) for i in range(n)}
        d = {t: float(rng.randint(0, 40)) for t in w}
        cap = float(rng.randint(0, 64))
        e = entitlements(w, d, cap)
        assert sum(e.values()) <= min(cap, sum(d.values())) + 1e-6
        assert sum(e.values()) == pytest.approx(min(cap, sum(d.values())), abs=1e-6)
        for t in w:
            assert e[t] <= d[t] + 1e-9
        # a tenant below its demand gets at least its weighted share of what unsatisfied tenants hold
        short = [t for t in w if e[t] < d[t] - 1e-6]
        for t in short:
            for u in w:
                if e[u] > 1e-9:
                    assert e[t] / w[t] >= e[u] / w[u] - 1e-6


# ------------------------------------------------------------------------------- commitments


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_owed_commitment_is_delivered(policy: str, seed: int) -> None:
    """``big`` fills the site with long work first; ``owed`` (a commitment of more GPU-hours a day than its
    whole demand) then submits: every GPU-hour it asks for is delivered within the run, starting at once
    (the rules count GPUs per pool; the loop starts larger gangs first and makes node room for owed work)."""
    rng = random.Random(200 + seed)
    tenants = [tenant("big"), tenant("owed", commitment_gpu_hours_per_day=200.0)]
    jobs = backlog(rng, "big", 30, (2, 4), (8.0, 10.0))
    owed = backlog(rng, "owed", 6, (1, 2, 4), (1.0, 2.0), submit_s=1800.0)
    n = 24  # 6 hours
    res = run(policy, jobs + owed, tenants, n)
    demand_gpu_h = sum(j.gpus * j.duration_s for j in owed) / 3600.0
    delivered = gpus_per_slot(res, "owed", n).sum() * 0.25
    assert delivered >= demand_gpu_h - 1e-6, (policy, seed, delivered, demand_gpu_h)
    for j in owed:  # started at the first tick after its submission
        first = res.loop.records[j.job_id].slots[0]
        assert first == math.ceil(j.submit_s / 900), (j.job_id, res.loop.records[j.job_id].slots[:3])


# ------------------------------------------------------------------------------ the rule alone


def _elig(job: Job) -> list[int]:
    return eligible_pools(SITE, job)


@pytest.mark.parametrize("seed", range(20))
def test_rules_alone_respect_quota_sovereignty_and_capacity(seed: int) -> None:
    """Random decisions (any policy could make them) and random tenant settings: after the rules every quota
    holds (except running non-preemptible work, which cannot be stopped), no pool holds more than its GPUs
    unless the policy's own decision already did, and every job the rules started is in an eligible pool."""
    rng = random.Random(seed)
    names = ["x", "y", "z"]
    info = {t: TenantInfo(quota_gpus=rng.choice([None, 4, 8]), fair_share_weight=rng.choice([1.0, 2.0, 3.0]),
                          commitment_owed_gpu_h=rng.choice([0.0, 0.0, 5.0])) for t in names}  # fmt: skip
    jobs: dict[str, Job] = {}
    for i in range(rng.randint(5, 30)):
        t = rng.choice(names)
        pool = rng.choice([None, None, POOLS[0], POOLS[1]])
        jobs[f"j{i}"] = Job(f"j{i}", t, "training", float(i), rng.choice([1, 2, 4]), 3600.0,
                            preemptible=rng.random() < 0.8, pool=pool, priority=rng.randint(0, 2))  # fmt: skip
    run_: dict[str, Assignment] = {}
    running: dict[str, str] = {}
    used = dict.fromkeys(POOLS, 0)
    for jid, j in jobs.items():
        if rng.random() < 0.5:
            p = POOLS[rng.choice(_elig(j))]
            if used[p] + j.gpus <= 16:
                used[p] += j.gpus
                run_[jid] = Assignment(p, 1.0)
                if rng.random() < 0.5:
                    running[jid] = p
    queued = [j for jid, j in jobs.items() if jid not in running]
    res = enforce_rules(run_, jobs, running, queued, dict.fromkeys(POOLS, 16), info, _elig, POOLS, 900.0)
    per_pool = dict.fromkeys(POOLS, 0)
    per_tenant = dict.fromkeys(names, 0)
    fixed = dict.fromkeys(names, 0)
    for jid, a in res.run.items():
        j = jobs[jid]
        per_pool[a.pool] += j.gpus
        per_tenant[j.tenant] += j.gpus
        if jid in running and not j.preemptible:
            fixed[j.tenant] += j.gpus
        if jid not in run_:
            assert POOLS.index(a.pool) in _elig(j)
    for p in POOLS:
        assert per_pool[p] <= max(16, used[p])
    for t in names:
        q = info[t].quota_gpus
        if q is not None:
            assert per_tenant[t] <= max(q, fixed[t]), (t, per_tenant, info[t])
    for jid in run_:
        if jid in running and not jobs[jid].preemptible:
            assert jid in res.run  # running non-preemptible work is never stopped


def test_no_tenant_info_changes_nothing() -> None:
    j = Job("j", "t", "training", 0.0, 4, 3600.0)
    run_ = {"j": Assignment(POOLS[0], 0.7)}
    assert enforce_rules(run_, {"j": j}, {}, [j], dict.fromkeys(POOLS, 16), {}, _elig, POOLS, 900.0).run == run_
