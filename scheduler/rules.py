"""Tenants' rights, enforced by the control loop after ANY policy's decision (issue 12).

A policy (``windward``, ``backfill``, ``greedy-green`` or one of your own) decides what runs this slot; the
loop then makes the decision respect every tenant's rights before the power caps and the executor see it.
A baseline policy may be slower or dirtier than the optimiser, but it can never break these:

1. **Sovereignty** (pool eligibility) is checked earlier, by ``scheduler.control.sanitize_run``; every job
   this module adds goes only to a pool of :func:`scheduler.jobs.eligible_pools`.
2. **Quotas** (``quota_gpus``: most GPUs a tenant's non-inference work may hold at once). Over quota, the
   tenant's new starts are dropped first, then its preemptible running work is preempted; lowest priority
   and latest submitted first. Inference counts against no quota (as in the planner); running
   non-preemptible work cannot be stopped and is never dropped.
3. **Owed commitments** (``commitment_owed_gpu_h`` > 0: the tenant pre-ordered GPU-hours for the period,
   has not had them yet, and has demand). Its queued work the policy left out starts now, in the eligible
   pool with the most room, up to what is owed (GPU-hours of one slot) and its quota; where GPUs are short,
   new starts and then preemptible running work of tenants that are owed nothing make room (lowest priority
   first).
4. **Weighted fair share under contention.** The GPUs left after inference and owed commitments are shared
   among tenants with demand (queued or running non-inference work) in proportion to
   ``fair_share_weight``, water-filled (a tenant that wants less than its share gets what it wants, the
   rest is shared among the others): its *entitlement* in GPUs. When a tenant below its entitlement has
   queued work that does not fit the free GPUs of its pools (contention), the loop starts it and makes room
   by dropping new starts / preempting preemptible work of tenants above their entitlement, one job at a
   time, and only if the move brings the allocation strictly closer to the entitlements (the sum of
   squared deviations falls), so no move is undone by the next and the loop never oscillates. Where GPUs
   are free, starting or deferring work stays the policy's choice (a green policy may wait for wind).

   The guarantee (tested in tests/unit/test_rules.py, for every policy): while every tenant has a backlog,
   each tenant's running GPUs in every slot are within one largest job of its entitlement, so its share
   of the GPU-hours over any window of slots is within ``max job GPUs / shared GPUs`` of
   ``weight / sum of weights``.

Everything here is pure (no executor, no clock): decisions in, decisions out, with what was changed.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from scheduler.jobs import Job
from scheduler.policies.base import Assignment, TenantInfo

#: Sort key of victims: lowest priority first, new starts before running work, latest submitted first.
_VictimKey = Callable[[str], tuple[int, bool, float, str]]


@dataclass(frozen=True, slots=True)
class RulesResult:
    """The decisions after the rules, and what the rules changed (job ids)."""

    run: dict[str, Assignment]
    over_quota: tuple[str, ...] = ()  # new starts dropped / running work preempted to keep a quota
    owed_started: tuple[str, ...] = ()  # queued work of tenants owed a commitment, started by the rules
    fair_started: tuple[str, ...] = ()  # queued work of tenants below their fair share, started by the rules
    displaced: tuple[str, ...] = ()  # new starts dropped / running work preempted to make room for those


def entitlements(weights: Mapping[str, float], demand_gpus: Mapping[str, float], capacity_gpus: float) -> dict[str, float]:
    """Weighted max-min fair shares of ``capacity_gpus`` (water-filling): each tenant with demand gets
    ``weight / sum(weights) * capacity``, but never more than it demands; what it leaves is shared again."""
    out = {t: 0.0 for t in demand_gpus}
    open_ = {t for t, d in demand_gpus.items() if d > 0 and weights.get(t, 1.0) > 0}
    left = max(float(capacity_gpus), 0.0)
    while open_ and left > 1e-9:
        wsum = sum(weights.get(t, 1.0) for t in open_)
        sat = {t for t in open_ if demand_gpus[t] - out[t] <= left * weights.get(t, 1.0) / wsum + 1e-9}
        if not sat:
            for t in open_:
                out[t] += left * weights.get(t, 1.0) / wsum
            break
        for t in sat:
            left -= demand_gpus[t] - out[t]
            out[t] = float(demand_gpus[t])
        open_ -= sat
    return out


def enforce_rules(
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
    """Apply the rules of the module docstring to ``run`` (job id -> pool and power fraction).

    ``jobs``: every active job by id; ``running``: ids of jobs running now (membership only); ``queued``:
    the queued jobs (candidates the rules may start); ``eligible(job)``: pool indices into ``pool_names``;
    ``exclude``: ids the rules must not start (refused or held back for the inference reserve);
    ``reserve_gpus``: pool -> GPUs kept for inference (a non-preemptible job is started by the rules only
    where it leaves them free). Without any tenant info the decisions pass unchanged.
    """
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

    # candidates: queued, not decided, not excluded, non-inference, highest priority then oldest first, grouped
    # by kind (tenant, pools, size, preemptible): jobs alike fail alike (see below), so the steps visit a kind
    # again only after a move, and a long queue is neither sorted whole nor walked job by job
    cands = _Candidates(queued, out, excluded, tenant_info, eligible)

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
        # (a job skipped for its tenant's quota or commitment is skipped with its kind too: only a move changes
        # what those tests see; _Candidates.visit skips a failed kind until the next move)
        for job, kind in cands.visit(owed):
            t = job.tenant
            if job.gpus > quota_left(t) or given.get(t, 0.0) >= tenant_info[t].commitment_owed_gpu_h:
                cands.fail(kind)
                continue
            got = place(job, lambda v: removable(v) and jobs[v].tenant not in owed)
            if got is None:
                cands.fail(kind)
                continue
            pool, victims = got
            for v in victims:
                remove(v)
                displaced.append(v)
            add(job, pool)
            owed_started.append(job.job_id)
            given[t] = given.get(t, 0.0) + job.gpus * slot_h
            cands.moved()

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

        # as for commitments: one attempt per kind of job until a move succeeds (a tenant at its entitlement or
        # quota stays there until a move)
        for job, kind in cands.visit(ent):
            t = job.tenant
            if job.job_id in out:
                continue
            if alloc.get(t, 0) >= ent[t] or job.gpus > quota_left(t):
                cands.fail(kind)
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
                cands.fail(kind)
                continue
            pool, victims = got
            for v in victims:
                remove(v)
                displaced.append(v)
            add(job, pool)
            fair_started.append(job.job_id)
            cands.moved()
    return RulesResult(out, tuple(over_quota), tuple(owed_started), tuple(fair_started), tuple(displaced))


_Kind = tuple[str, tuple[int, ...], int, bool]


class _Candidates:
    """The queued jobs the rules may start (not decided, not excluded, non-inference, of a tenant with info),
    in the order the rules consider them (highest priority, then oldest, then id), one heap per kind of job
    (tenant, eligible pools, GPUs, preemptible).

    :meth:`visit` yields the jobs of the given tenants in that order, except those of a kind marked failed
    (:meth:`fail`) since the last :meth:`moved`: the same jobs, in the same order, that a walk over the
    whole sorted queue would reach when it skips a failed kind, at a cost per visit, not per queued job.
    """

    __slots__ = ("_heaps", "_failed", "_front", "_at")

    def __init__(self, queued: Iterable[Job], out: Collection[str], excluded: Collection[str],
                 tenants: Collection[str], eligible: Callable[[Job], Sequence[int]]) -> None:  # fmt: skip
        heaps: dict[_Kind, list[tuple[int, float, str, int, Job]]] = {}
        get = heaps.get
        for i, j in enumerate(queued):  # i: a job listed twice is visited twice, as by the sorted walk
            jid = j.job_id
            if j.tenant not in tenants or jid in out or jid in excluded or j.must_run:
                continue
            kind = (j.tenant, tuple(eligible(j)), j.gpus, j.preemptible)
            h = get(kind)
            if h is None:
                h = heaps[kind] = []
            h.append((-j.priority, j.submit_s, jid, i, j))
        for h in heaps.values():
            heapq.heapify(h)
        self._heaps = heaps
        self._failed: list[_Kind] = []
        self._front: list[tuple[tuple[int, float, str], _Kind]] = []
        self._at: tuple[int, float, str] | None = None  # the order key of the job visited last

    def _push(self, kind: _Kind, after: tuple[int, float, str] | None = None) -> None:
        h = self._heaps[kind]
        if after is not None:  # jobs of a failed kind the walk passed are behind it: skipped for good
            while h and h[0][:3] < after:
                heapq.heappop(h)
        if h:
            p, s, jid, _, _ = h[0]
            heapq.heappush(self._front, ((p, s, jid), kind))

    def visit(self, tenants: Collection[str]) -> Iterator[tuple[Job, _Kind]]:
        self._failed = []
        self._front = []
        self._at = None
        for kind in self._heaps:
            if kind[0] in tenants:
                self._push(kind)
        front = self._front
        while front:
            self._at, kind = heapq.heappop(front)
            job = heapq.heappop(self._heaps[kind])[4]
            yield job, kind
            if not self._failed or self._failed[-1] is not kind:
                self._push(kind)

    def fail(self, kind: _Kind) -> None:
        """Skip the rest of ``kind`` until the next move (call once per visit, for the job just visited)."""
        self._failed.append(kind)

    def moved(self) -> None:
        """A move changed the decisions: every failed kind is considered again."""
        failed, self._failed = self._failed, []
        for kind in failed:
            self._push(kind, self._at)
