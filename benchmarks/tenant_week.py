"""The tenants' week (issue 5, "How we will know"): five tenants on one site, driven by the control loop.

A simulated week on ``rotterdam-100k`` (the test, tests/integration/test_tenant_week.py, runs a day on the
1,024-GPU site ``benchmarks/sites/itp-1024.yaml``) with the reference tenant mix:

* ``defence`` (priority 3): sovereign work; clearance ``secret``, jurisdictions ``[nl]``; its jobs require
  the ``jurisdiction=nl,clearance=secret`` pool (traces.ASSIGNMENT_RULE);
* ``science`` (priority 2) and ``education`` (priority 2): commitments of pre-ordered GPU-hours per day
  (:data:`SCIENCE_COMMIT_SHARE` / :data:`EDUCATION_COMMIT_SHARE` of the site's GPUs around the clock);
* ``public-services`` (priority 4): the inference service (clearance ``internal``);
* ``companies`` (priority 0): best effort on what remains (a quota of half the site).

Workload: the real ITP cluster04 trace (tenants, deadlines and preemptibility by traces.ASSIGNMENT_RULE,
amplified by ``site GPUs / 1024`` with traces.amplify on a bigger site) plus the Azure LLM inference service
(10 % of the site). Every job goes through the server's admission (``scheduler.auth.admit_job``: clearance,
jurisdictions, quota, a pool that can hold it; refused jobs are counted with their reason) and so carries
its tenant's ``pools_allowed``. Real NL energy (../shared/data, read in place), perfect forecast.

Each tick the control loop builds ``Snapshot.tenant_info`` with ``scheduler.accounting.tenant_info`` from the
loop's own usage accounting (``ControlLoop.tenant_usage``: GPU-seconds per tenant per UTC day, as the
state store keeps them), so the ``windward`` planner sees ``priority``, ``quota_gpus`` and
``commitment_owed_gpu_h`` exactly as under ``windward server``.

Checks, per policy:

* commitments: for each committed tenant and each whole UTC day, ``delivered >= min(commitment, demand)``
  where ``demand`` is the GPU-hours the tenant could have used that day: the sum over ticks of what its
  queued and running jobs could use in that slot at full power (GPUs times the slot, or times the work
  left when less), capped at its quota;
* sovereignty: every slot every job ran, its pool satisfied the job's own requirements (pool selector,
  jurisdiction, clearance) and lay within its tenant's clearance and jurisdictions;
* zero cap violations against actual wind and caps; inference served (%).

Run: ``.venv/bin/python benchmarks/tenant_week.py [--site rotterdam-100k] [--days 7]
[--policy windward --policy backfill] [--slot-minutes 15] [--horizon-hours 24]``; prints one JSON object.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from scheduler import accounting, signals, traces
from scheduler.auth import admit_job, tenant_pools
from scheduler.control import ControlLoop, run_simulation, slots_for_days
from scheduler.errors import InputError
from scheduler.jobs import Job, pool_matches
from scheduler.models import CLEARANCE_LEVELS, Site, Tenant, load_site
from scheduler.paths import nl_energy_csv
from scheduler.policies import get_policy
from scheduler.policies.base import Policy
from scheduler.report import summary

HERE = Path(__file__).resolve().parent
START = datetime(2023, 1, 9, tzinfo=UTC)  # a Monday: the week is one ISO week
#: Commitments, as a share of the site's GPUs held around the clock.
SCIENCE_COMMIT_SHARE = 0.06
EDUCATION_COMMIT_SHARE = 0.025


def make_tenants(site: Site) -> list[Tenant]:
    """The five reference tenants, sized to ``site`` (tokens are placeholders: no server runs here)."""

    def tok(name: str) -> str:
        return hashlib.sha256(f"windward-bench-{name}".encode()).hexdigest()

    total = site.total_gpus
    secret = sum(p.gpus for p in site.pools if p.labels.get("clearance") == "secret")
    return [
        Tenant(name="defence", token_sha256=tok("defence"), priority=3, quota_gpus=max(secret, 1) * 2,
               clearance="secret", jurisdictions=("nl",)),
        Tenant(name="science", token_sha256=tok("science"), priority=2,
               commitment_gpu_hours_per_day=round(SCIENCE_COMMIT_SHARE * total * 24), fair_share_weight=2.0,
               clearance="confidential", jurisdictions=("eu", "nl")),
        Tenant(name="education", token_sha256=tok("education"), priority=2,
               commitment_gpu_hours_per_day=round(EDUCATION_COMMIT_SHARE * total * 24), clearance="public",
               jurisdictions=("eu",)),
        Tenant(name="public-services", token_sha256=tok("public-services"), priority=4, clearance="internal",
               jurisdictions=("eu", "nl")),
        Tenant(name="companies", token_sha256=tok("companies"), priority=0, quota_gpus=total // 2,
               clearance="public", jurisdictions=("eu",)),
    ]  # fmt: skip


def admit(site: Site, tenants: Sequence[Tenant], jobs: Sequence[Job]) -> tuple[list[Job], dict[str, int]]:
    """Every job through the server's admission; returns (admitted jobs, refusals counted by reason)."""
    by_name = {t.name: t for t in tenants}
    out: list[Job] = []
    refused: dict[str, int] = {}
    for j in jobs:
        t = by_name.get(j.tenant)
        if t is None:
            refused[f"unknown tenant {j.tenant}"] = refused.get(f"unknown tenant {j.tenant}", 0) + 1
            continue
        try:
            out.append(admit_job(site, t, j))
        except InputError as e:
            key = f"{j.tenant}: {str(e).split(':')[0]}"
            refused[key] = refused.get(key, 0) + 1
    return out, refused


@dataclass
class TenantWeek:
    """``Snapshot.tenant_info`` from the loop's accounting each tick, and each tenant's demand per day."""

    site: Site
    tenants: Sequence[Tenant]
    epoch_unix_s: float
    slot_s: float
    pools: dict[str, tuple[str, ...]] = field(default_factory=dict)
    demand_gpu_s: dict[tuple[str, str], float] = field(default_factory=dict)  # (tenant, day) -> GPU-s
    quota_breach_ticks: int = 0

    def __post_init__(self) -> None:
        self.pools = {t.name: tenant_pools(self.site, t) for t in self.tenants}
        self._by_name = {t.name: t for t in self.tenants}

    def __call__(self, loop: ControlLoop) -> Mapping[str, Any]:
        now_unix = self.epoch_unix_s + loop.clock.now_s()
        u = loop.tenant_usage()
        day = datetime.fromtimestamp(now_unix, UTC).date().isoformat()
        for name, gpu_s in u["slot_demand_gpu_s"].items():
            t = self._by_name.get(name)
            cap = gpu_s if t is None or t.quota_gpus is None else min(gpu_s, t.quota_gpus * self.slot_s)
            self.demand_gpu_s[(name, day)] = self.demand_gpu_s.get((name, day), 0.0) + cap
        if accounting.quota_breaches(u["running_gpus"], self._by_name):
            self.quota_breach_ticks += 1
        accts = accounting.accounts(self.site, list(self.tenants), u["totals"], u["daily"], u["running_gpus"],
                                    u["demand_gpus"], now_unix)  # fmt: skip
        return accounting.tenant_info(accts, self._by_name, self.pools)


def commitment_days(week: TenantWeek, loop: ControlLoop, days: int) -> list[dict[str, Any]]:
    """Per committed tenant and whole day: commitment, demand, delivered (GPU-hours) and whether it held."""
    rows = []
    start = datetime.fromtimestamp(week.epoch_unix_s, UTC).date()
    for t in week.tenants:
        if t.commitment_gpu_hours_per_day <= 0:
            continue
        for d in range(days):
            day = start.fromordinal(start.toordinal() + d).isoformat()
            demand_h = week.demand_gpu_s.get((t.name, day), 0.0) / 3600.0
            delivered_h = loop.usage.get((t.name, day), [0.0])[0] / 3600.0
            due_h = min(t.commitment_gpu_hours_per_day, demand_h)
            rows.append({
                "tenant": t.name, "day": day, "commitment_gpu_h": t.commitment_gpu_hours_per_day,
                "demand_gpu_h": round(demand_h, 1), "delivered_gpu_h": round(delivered_h, 1),
                "delivered": delivered_h >= due_h * (1 - 1e-9) - 1e-6,
            })  # fmt: skip
    return rows


def sovereignty_breaches(site: Site, tenants: Sequence[Tenant], loop: ControlLoop) -> list[str]:
    """Jobs that ran in a pool their own requirements or their tenant's clearance / jurisdictions forbid."""
    by_name = {t.name: t for t in tenants}
    pools = {p.name: p for p in site.pools}
    out = []
    for rec in loop.records.values():
        t = by_name[rec.job.tenant]
        for name in set(rec.pools_by_slot):
            p = pools[name]
            level = CLEARANCE_LEVELS.index(p.labels.get("clearance", "public"))
            own = pool_matches(p, rec.job) and p.gpus >= rec.job.gpus
            cleared = level <= CLEARANCE_LEVELS.index(t.clearance) and (
                not t.jurisdictions or p.labels.get("jurisdiction") in t.jurisdictions
            )
            if not (own and cleared):
                out.append(f"{rec.job.job_id} ({t.name}) ran in {name}")
    return out


def run_week(
    site: Site,
    days: int,
    policy: str | Policy,
    *,
    start: datetime = START,
    amplify: float | None = None,
    horizon_hours: float = 24.0,
    policy_kw: Mapping[str, Any] | None = None,
    trace_start_s: float = 0.0,
) -> dict[str, Any]:
    """One policy over ``days`` whole days; returns the checks and the run's summary. ``trace_start_s``
    picks the window of the ITP trace (jobs submitted in ``[trace_start_s, trace_start_s + days)``)."""
    actual = signals.load_energy(str(nl_energy_csv()), site, start, days + horizon_hours / 24.0 + 1)
    jobs, desc = traces.load_workload("itp:cluster04", site, days, start_s=trace_start_s, start_utc=start)
    factor = amplify if amplify is not None else 1.0
    if factor != 1.0:
        train = [j for j in jobs if j.kind != "inference"]
        inf = [j for j in jobs if j.kind == "inference"]
        jobs = sorted([*traces.amplify(train, factor, seed=0), *inf], key=lambda j: (j.submit_s, j.job_id))
        desc += f"; training amplified x{factor:.2f} (traces.amplify)"
    tenants = make_tenants(site)
    admitted, refused = admit(site, tenants, jobs)
    week = TenantWeek(site, tenants, start.timestamp(), float(site.slot_s))
    kw = dict(policy_kw or {})
    kw.setdefault("horizon_hours", horizon_hours)
    pol = get_policy(policy, **kw) if isinstance(policy, str) else policy
    t0 = time.perf_counter()
    res = run_simulation(site, admitted, actual, pol, n_slots=slots_for_days(site, days),
                         horizon_slots=round(horizon_hours * 3600 / site.slot_s), tenant_info_fn=week)  # fmt: skip
    wall = time.perf_counter() - t0
    s = summary(res, clairvoyant=False)  # none of its clairvoyant-bound keys is returned: no LP solved for them
    commits = commitment_days(week, res.loop, days)
    breaches = sovereignty_breaches(site, tenants, res.loop)
    delivered: dict[str, float] = {}
    for (tenant, _day), u in res.loop.usage.items():
        delivered[tenant] = delivered.get(tenant, 0.0) + u[0] / 3600.0
    return {
        "policy": policy if isinstance(policy, str) else policy.name,
        "site": site.name,
        "gpus": site.total_gpus,
        "days": days,
        "start_utc": start.isoformat(),
        "workload": desc,
        "jobs": len(jobs),
        "admitted": len(admitted),
        "refused": refused,
        "simulate_s": round(wall, 2),
        "policy_s": round(s["policy_s"], 2),
        "commitments": commits,
        "commitments_delivered": all(r["delivered"] for r in commits),
        "sovereignty_breaches": len(breaches),
        "sovereignty_examples": breaches[:5],
        "cap_violations": s["cap_violations"],
        "inference_served_pct": s["inference_served_pct"],
        "quota_breach_ticks": week.quota_breach_ticks,
        "gpu_h_by_tenant": {k: round(v) for k, v in sorted(delivered.items())},
        "grid_carbon_kg": round(s["grid_carbon_kg"]),
        "jobs_done": s["jobs_done"],
        "deadline_misses": s["deadline_misses"],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--site", default="rotterdam-100k", help="built-in site name or a site YAML path")
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--policy", action="append", help="policy (repeatable); default: windward and backfill")
    ap.add_argument("--horizon-hours", type=float, default=24.0)
    ap.add_argument("--start", default=START.isoformat(), help="ISO start of the energy data (UTC midnight)")
    ap.add_argument("--trace-day", type=float, default=0.0, help="first day of the ITP trace window")
    a = ap.parse_args(argv)
    site = load_site(a.site)
    start = datetime.fromisoformat(a.start.replace("Z", "+00:00"))
    factor = site.total_gpus / 1024.0 if site.total_gpus > 2048 else None
    out = [run_week(site, a.days, p, start=start, amplify=factor, horizon_hours=a.horizon_hours,
                    trace_start_s=a.trace_day * 86400.0)
           for p in (a.policy or ["windward", "backfill"])]  # fmt: skip
    json.dump({"cases": out}, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
