"""scheduler.rules.enforce_rules walks the queue per kind of job (``_Candidates``: one heap per kind, a failed
kind skipped until a move) instead of sorting and walking every queued job: the same decisions, the same
changes in the same order as the walk it replaced (kept here as the reference), on seeded families of
queues with quotas, owed commitments and fair share in contention, priorities, tied submit times,
exclusions, non-preemptible work and an inference reserve."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping, Sequence

import pytest

from scheduler.jobs import Job, eligible_pools
from scheduler.models import load_site
from scheduler.policies.base import Assignment, TenantInfo
from scheduler.rules import RulesResult, _Candidates, enforce_rules, entitlements

SITE = load_site("demo")  # two pools of 16 GPUs
POOLS = [p.name for p in SITE.pools]
TENANTS = ["a", "b", "c", "d", "e"]


def _elig(job: Job) -> list[int]:
    return eligible_pools(SITE, job)


def _case(seed: int) -> tuple[dict[str, Assignment], dict[str, Job], dict[str, str], list[Job], dict[str, int],
                              dict[str, TenantInfo], set[str], dict[str, float]]:  # fmt: skip
    """Decisions, jobs, running, queued, healthy GPUs, tenant info, excluded ids, reserve: a random family."""
    rng = random.Random(seed)
    owed = rng.choice([(0.0,), (0.0, 0.0, 0.0, 2.0, 50.0)])
    info = {t: TenantInfo(quota_gpus=rng.choice([None, None, 4, 8, 16]), fair_share_weight=rng.choice([1.0, 2.0, 3.0]),
                          commitment_owed_gpu_h=rng.choice(owed))
            for t in rng.sample(TENANTS, rng.randint(1, 5))}  # fmt: skip
    n = rng.choice([5, 40, 300, 1500])
    ties = rng.random() < 0.5  # batch submissions share one submit time: the id breaks the tie
    jobs: dict[str, Job] = {}
    for i in range(n):
        t = rng.choice(TENANTS)  # some tenants without info
        kind = "inference" if rng.random() < 0.05 else rng.choice(["training", "batch"])
        jid = f"j{rng.randrange(10**6):06d}-{i}"
        jobs[jid] = Job(jid, t, kind, 0.0 if ties else float(rng.randrange(n)), rng.choice([1, 2, 4, 8]), 3600.0,
                        preemptible=rng.random() < 0.8, pool=rng.choice([None, None, None, POOLS[0], POOLS[1]]),
                        priority=rng.choice([0, 0, 1, 2]))  # fmt: skip
    healthy = {p: rng.choice([8, 16, 16]) for p in POOLS}
    run_: dict[str, Assignment] = {}
    running: dict[str, str] = {}
    used = dict.fromkeys(POOLS, 0)
    hog = rng.choice(TENANTS) if rng.random() < 0.5 else None  # one tenant holds the pools: fair share moves
    for jid, j in jobs.items():
        if rng.random() < (0.9 if j.tenant == hog else 0.02 if hog else rng.choice([0.02, 0.2, 0.5])):
            el = _elig(j)
            if not el:
                continue
            p = POOLS[rng.choice(el)]
            if used[p] + j.gpus <= healthy[p] or rng.random() < 0.05:  # a policy may overfill
                used[p] += j.gpus
                run_[jid] = Assignment(p, rng.choice([1.0, 0.7]))
                if rng.random() < 0.5:
                    running[jid] = p
    queued = [j for jid, j in jobs.items() if jid not in running]
    rng.shuffle(queued)
    excluded = {j.job_id for j in queued if rng.random() < 0.05}
    reserve = {p: float(rng.choice([0, 0, 4])) for p in POOLS}
    return run_, jobs, running, queued, healthy, info, excluded, reserve


@pytest.mark.parametrize("seed", range(80))
def test_grouped_walk_equals_the_sorted_walk(seed: int) -> None:
    run_, jobs, running, queued, healthy, info, excluded, reserve = _case(seed)
    for slot_s in (900.0, 3600.0):
        args = (run_, jobs, running, queued, healthy, info, _elig, POOLS, slot_s)
        want = _reference_enforce_rules(*args, exclude=excluded, reserve_gpus=reserve)
        got = enforce_rules(*args, exclude=excluded, reserve_gpus=reserve)
        assert got == want


def test_the_families_exercise_every_step() -> None:
    """The cases above start owed and fair-share work, displace and cut to quota (else they prove little)."""
    seen = {"over_quota": 0, "owed_started": 0, "fair_started": 0, "displaced": 0}
    for seed in range(80):
        run_, jobs, running, queued, healthy, info, excluded, reserve = _case(seed)
        res = enforce_rules(run_, jobs, running, queued, healthy, info, _elig, POOLS, 900.0, exclude=excluded,
                            reserve_gpus=reserve)  # fmt: skip
        for k in seen:
            seen[k] += bool(getattr(res, k))
    assert all(v >= 3 for v in seen.values()), seen


@pytest.mark.parametrize("seed", range(40))
def test_candidates_visit_as_the_sorted_walk_skipping_failed_kinds(seed: int) -> None:
    """_Candidates alone, driven by a random script of failures and moves: it visits the same jobs in the same
    order as the whole queue sorted and walked, a kind skipped from its failure to the next move."""
    rng = random.Random(seed)
    run_, jobs, running, queued, healthy, info, excluded, reserve = _case(seed)
    tenants = set(info)
    cands = _Candidates(queued, run_, excluded, info, _elig)
    ref = sorted((j for j in queued if j.tenant in info and j.job_id not in run_ and j.job_id not in excluded
                  and not j.must_run), key=lambda j: (-j.priority, j.submit_s, j.job_id))  # fmt: skip
    script = [rng.random() for _ in range(len(ref))]
    got: list[str] = []
    for job, kind in cands.visit(tenants):
        got.append(job.job_id)
        r = script[len(got) - 1]
        if r < 0.6:
            cands.fail(kind)
        elif r < 0.75:
            cands.moved()
    want: list[str] = []
    failed: set[tuple[object, ...]] = set()
    for job in ref:
        kind = (job.tenant, tuple(_elig(job)), job.gpus, job.preemptible)
        if kind in failed:
            continue
        want.append(job.job_id)
        r = script[len(want) - 1]
        if r < 0.6:
            failed.add(kind)
        elif r < 0.75:
            failed.clear()
    assert got == want


# ------------------------------------------------------------------ the reference: the walk before


def _reference_enforce_rules(
    run: Mapping[str, Assignment],
    jobs: Mapping[str, Job],
    running: Mapping[str, object],
    queued: Iterable[Job],
    healthy_gpus: Mapping[str, int],
    tenant_info: Mapping[str, TenantInfo],
    eligible: Callable[[Job], Sequence[int]],
    pool_names: Sequence[str],
    slot_s: float,
    *,
    exclude: Iterable[str] = (),
    reserve_gpus: Mapping[str, float] | None = None,
) -> RulesResult:
    """scheduler.rules.enforce_rules as it was before the candidates were grouped by kind (4f97cfa)."""
    out = dict(run)
    if not tenant_info:
        return RulesResult(out)
    excluded = set(exclude)
    reserve = reserve_gpus or {}
    used: dict[str, int] = {}  # pool -> GPUs decided
    alloc: dict[str, int] = {}  # tenant -> non-inference GPUs decided
    for jid, a in out.items():
        j = jobs[jid]
        used[a.pool] = used.get(a.pool, 0) + j.gpus
        if not j.must_run:
            alloc[j.tenant] = alloc.get(j.tenant, 0) + j.gpus

    def victim_key(jid: str) -> tuple[int, bool, float, str]:
        j = jobs[jid]
        return (j.priority, jid in running, -j.submit_s, jid)

    def removable(jid: str) -> bool:
        j = jobs[jid]
        return not j.must_run and (jid not in running or j.preemptible)

    def remove(jid: str) -> None:
        a = out.pop(jid)
        j = jobs[jid]
        used[a.pool] -= j.gpus
        alloc[j.tenant] -= j.gpus

    def add(job: Job, pool: str) -> None:
        out[job.job_id] = Assignment(pool, 1.0)
        used[pool] = used.get(pool, 0) + job.gpus
        alloc[job.tenant] = alloc.get(job.tenant, 0) + job.gpus

    # 2. quotas (a baseline policy may decide thousands of starts a quota cuts to a few: grouped, dropped at once)
    over_quota: list[str] = []
    over_q = {t for t, i in tenant_info.items() if i.quota_gpus is not None and alloc.get(t, 0) > i.quota_gpus}
    if over_q:
        by_tenant: dict[str, list[str]] = {t: [] for t in over_q}
        for jid in out:
            lst = by_tenant.get(jobs[jid].tenant)
            if lst is not None and removable(jid):
                lst.append(jid)
        for tenant in sorted(over_q):
            excess = alloc[tenant] - int(tenant_info[tenant].quota_gpus or 0)
            for jid in sorted(by_tenant[tenant], key=victim_key):
                if excess <= 0:
                    break
                over_quota.append(jid)
                excess -= jobs[jid].gpus
        gone = set(over_quota)
        for jid in over_quota:
            a, j = out[jid], jobs[jid]
            used[a.pool] -= j.gpus
            alloc[j.tenant] -= j.gpus
        out = {jid: a for jid, a in out.items() if jid not in gone}

    def quota_left(tenant: str) -> float:
        info = tenant_info.get(tenant)
        q = info.quota_gpus if info is not None else None
        return float("inf") if q is None else q - alloc.get(tenant, 0)

    # candidates: queued, not decided, not excluded, non-inference, highest priority then oldest first
    cands = sorted(
        (j for j in queued if j.job_id not in out and j.job_id not in excluded and not j.must_run),
        key=lambda j: (-j.priority, j.submit_s, j.job_id),
    )

    def place(job: Job, may_take: Callable[[str], bool], accept: Callable[[list[str], str], bool] | None = None
              ) -> tuple[str, list[str]] | None:  # fmt: skip
        """The pool where ``job`` fits with the fewest victims (free GPUs first), and the victims."""
        best: tuple[int, int, str, list[str]] | None = None
        for p in eligible(job):
            name = pool_names[p]
            cap = int(healthy_gpus.get(name, 0))
            if not job.preemptible:
                cap -= int(reserve.get(name, 0))  # non-preemptible work keeps the inference reserve free
            free = cap - used.get(name, 0)
            victims: list[str] = []
            if free < job.gpus:
                for v in sorted((j for j in out if out[j].pool == name and may_take(j)), key=victim_key):
                    victims.append(v)
                    free += jobs[v].gpus
                    if free >= job.gpus:
                        break
                if free < job.gpus:
                    continue
            if accept is not None and not accept(victims, name):
                continue
            key = (len(victims), -free)
            if best is None or key < (best[0], best[1]):
                best = (key[0], key[1], name, victims)
        return None if best is None else (best[2], best[3])

    # 3. owed commitments
    owed = {t for t, i in tenant_info.items() if i.commitment_owed_gpu_h > 0}
    owed_started: list[str] = []
    displaced: list[str] = []
    if owed:
        slot_h = slot_s / 3600.0
        given: dict[str, float] = {}
        # jobs alike (tenant, pools, size, preemptible) fail alike until a move changes the decisions: a
        # failure is remembered, so a long queue costs one placement attempt per kind of job, not per job
        failed: set[tuple[object, ...]] = set()
        for job in cands:
            t = job.tenant
            if t not in owed or job.gpus > quota_left(t):
                continue
            if given.get(t, 0.0) >= tenant_info[t].commitment_owed_gpu_h:
                continue
            kind = (t, tuple(eligible(job)), job.gpus, job.preemptible)
            if kind in failed:
                continue
            got = place(job, lambda v: removable(v) and jobs[v].tenant not in owed)
            if got is None:
                failed.add(kind)
                continue
            pool, victims = got
            for v in victims:
                remove(v)
                displaced.append(v)
            add(job, pool)
            owed_started.append(job.job_id)
            given[t] = given.get(t, 0.0) + job.gpus * slot_h
            failed.clear()

    # 4. weighted fair share under contention
    fair_started: list[str] = []
    shared = [t for t in tenant_info if t not in owed]
    demand: dict[str, float] = {t: 0.0 for t in shared}
    for j in jobs.values():
        if not j.must_run and j.tenant in demand:
            demand[j.tenant] += j.gpus
    if sum(1 for t in shared if demand[t] > 0) >= 2:
        capacity = float(sum(int(v) for v in healthy_gpus.values()))
        for jid in out:
            j = jobs[jid]
            if j.must_run or j.tenant in owed:
                capacity -= j.gpus
        ent = entitlements({t: tenant_info[t].fair_share_weight for t in shared}, demand, capacity)

        def dev2(t: str, delta: int = 0) -> float:
            return (alloc.get(t, 0) + delta - ent.get(t, 0.0)) ** 2

        failed = set()  # as for commitments: one attempt per kind of job until a move succeeds
        for job in cands:
            t = job.tenant
            if t not in ent or job.job_id in out or alloc.get(t, 0) >= ent[t] or job.gpus > quota_left(t):
                continue
            kind = (t, tuple(eligible(job)), job.gpus, job.preemptible)
            if kind in failed:
                continue

            def over(v: str, t: str = t) -> bool:
                vt = jobs[v].tenant
                return removable(v) and vt != t and vt in ent and alloc.get(vt, 0) > ent[vt]

            def better(victims: list[str], pool: str, job: Job = job, t: str = t) -> bool:
                if not victims:
                    return False  # free GPUs: no contention, the policy's choice
                loss: dict[str, int] = {}
                for v in victims:
                    loss[jobs[v].tenant] = loss.get(jobs[v].tenant, 0) + jobs[v].gpus
                before = dev2(t) + sum(dev2(u) for u in loss)
                after = dev2(t, job.gpus) + sum(dev2(u, -g) for u, g in loss.items())
                return after < before - 1e-9

            got = place(job, over, better)
            if got is None:
                failed.add(kind)
                continue
            pool, victims = got
            for v in victims:
                remove(v)
                displaced.append(v)
            add(job, pool)
            fair_started.append(job.job_id)
            failed.clear()
    return RulesResult(out, tuple(over_quota), tuple(owed_started), tuple(fair_started), tuple(displaced))
