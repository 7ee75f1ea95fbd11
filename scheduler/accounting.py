"""Usage accounting per tenant and per job, commitments owed and delivered, quotas, fair shares.

Units: ``gpu_s`` GPU-seconds, ``energy_j`` facility joules (PUE included), ``carbon_g`` grams CO2-eq.

How one running job's usage over an interval of ``dt_s`` seconds is attributed (DESIGN section 2, through
:mod:`kernels.power`):

* ``gpu_s = gpus * dt_s``
* ``energy_j = pue * gpus * (f * tdp_w + host_w_per_gpu) * dt_s`` — its GPUs at their power fraction plus
  their hosts' always-on share (idle GPUs and idle hosts stay with the site, not with a tenant).
* ``carbon_g = energy_j / 3.6e6 * carbon_g_per_kwh * grid_share`` where ``grid_share = grid_import_w /
  facility_w`` of the whole site over the interval (wind carries no operational carbon, so each joule is
  as green as the site's mix at that moment).

Commitments (DESIGN section 7): ``commitment_gpu_hours_per_day`` (period: the UTC day) or ``_per_week``
(period: the ISO week, Monday 00:00 UTC), delivered *whenever the tenant has demand*: what is owed now is
``max(commitment - delivered_this_period, 0)`` while the tenant has queued or running work, and 0 while it
has none. A tenant with both figures is held to the daily one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from kernels import power as kpower
from scheduler.models import Site, Tenant
from scheduler.state import JobProgress, UsageDelta


@dataclass(frozen=True, slots=True)
class SitePower:
    """Site power over an interval from what runs (kernels.power): the basis of carbon attribution."""

    facility_w: float
    it_w: float
    grid_import_w: float
    busy_gpus: Mapping[str, int]

    @property
    def grid_share(self) -> float:
        return self.grid_import_w / self.facility_w if self.facility_w > 0 else 0.0


def site_power(
    site: Site,
    running: Sequence[tuple[str, int, float]],
    healthy_gpus: Mapping[str, int],
    wind_w: float,
) -> SitePower:
    """Facility power and grid import for ``running`` = ``[(pool, gpus, power_fraction), ...]``."""
    names = [p.name for p in site.pools]
    idx = {n: i for i, n in enumerate(names)}
    active = np.zeros((len(names), 1))
    busy = np.zeros((len(names), 1))
    tdp = np.array([p.tdp_w for p in site.pools])
    for pool, gpus, f in running:
        i = idx[pool]
        active[i, 0] += gpus * f * tdp[i]
        busy[i, 0] += gpus
    healthy = np.array([float(healthy_gpus.get(p.name, p.gpus)) for p in site.pools])
    it = kpower.it_power_w(
        active, busy, healthy, np.array([p.idle_w for p in site.pools]), np.array([p.host_w_per_gpu for p in site.pools])
    )
    fac = float(site.pue * it[0])
    imp = float(kpower.grid_import_w(fac, wind_w))
    return SitePower(fac, float(it[0]), imp, {n: int(busy[idx[n], 0]) for n in names})


def job_usage(
    site: Site,
    progress: Sequence[JobProgress],
    gpus_by_job: Mapping[str, int],
    tenant_by_job: Mapping[str, str],
    dt_s: float,
    grid_share: float,
    carbon_g_per_kwh: float,
) -> list[UsageDelta]:
    """Usage of each running job over ``dt_s`` seconds (module docstring for the attribution rule)."""
    if dt_s <= 0:
        return []
    pools = {p.name: p for p in site.pools}
    out = []
    for p in progress:
        pool = pools[p.pool]
        g = gpus_by_job[p.job_id]
        energy_j = site.pue * g * (p.power_fraction * pool.tdp_w + pool.host_w_per_gpu) * dt_s
        carbon_g = energy_j / 3.6e6 * carbon_g_per_kwh * grid_share
        out.append(UsageDelta(p.job_id, tenant_by_job[p.job_id], g * dt_s, energy_j, carbon_g))
    return out


# ------------------------------------------------------------------------------------ commitments


def commitment_period(tenant: Tenant) -> tuple[str, float] | None:
    """``("day", gpu_h)`` or ``("week", gpu_h)``; None when the tenant has no commitment."""
    if tenant.commitment_gpu_hours_per_day > 0:
        return "day", tenant.commitment_gpu_hours_per_day
    if tenant.commitment_gpu_hours_per_week > 0:
        return "week", tenant.commitment_gpu_hours_per_week
    return None


def period_start(kind: str, now_unix_s: float) -> datetime:
    t = datetime.fromtimestamp(now_unix_s, UTC)
    day = t.replace(hour=0, minute=0, second=0, microsecond=0)
    if kind == "day":
        return day
    return day - timedelta(days=day.weekday())


def day_key(unix_s: float) -> str:
    """The ``usage_daily`` key of an instant: its UTC date."""
    return datetime.fromtimestamp(unix_s, UTC).date().isoformat()


@dataclass(frozen=True, slots=True)
class TenantAccount:
    """One tenant's standing (the fields of ``scheduler.metrics.TenantUsage``, plus the period)."""

    tenant: str
    gpu_s: float
    energy_j: float
    carbon_g: float
    running_gpus: int
    demand_gpus: int
    quota_gpus: int | None
    commitment_period: str | None  # "day" | "week" | None
    commitment_gpu_s: float  # pre-ordered for the current period
    commitment_delivered_gpu_s: float  # used in the current period (counts towards the commitment)
    commitment_owed_gpu_s: float  # still owed in this period while the tenant has demand, else 0
    fair_share_weight: float
    fair_share: float  # weighted share of the GPUs not held by commitments, among tenants with demand

    def view(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "gpu_s": self.gpu_s,
            "gpu_hours": self.gpu_s / 3600.0,
            "energy_j": self.energy_j,
            "energy_kwh": self.energy_j / 3.6e6,
            "carbon_g": self.carbon_g,
            "running_gpus": self.running_gpus,
            "demand_gpus": self.demand_gpus,
            "quota_gpus": self.quota_gpus,
            "quota_used": (self.running_gpus / self.quota_gpus) if self.quota_gpus else None,
            "commitment": None
            if self.commitment_period is None
            else {
                "period": self.commitment_period,
                "gpu_hours": self.commitment_gpu_s / 3600.0,
                "delivered_gpu_hours": self.commitment_delivered_gpu_s / 3600.0,
                "owed_gpu_hours": self.commitment_owed_gpu_s / 3600.0,
            },
            "fair_share_weight": self.fair_share_weight,
            "fair_share": self.fair_share,
        }


def accounts(
    site: Site,
    tenants: Sequence[Tenant],
    totals: Mapping[str, Mapping[str, float]],
    daily: Sequence[Mapping[str, Any]],
    running_gpus: Mapping[str, int],
    demand_gpus: Mapping[str, int],
    now_unix_s: float,
) -> list[TenantAccount]:
    """Every tenant's standing now. ``totals``: state.usage_by_tenant(); ``daily``: state.usage_daily()."""
    per_tenant_days: dict[str, dict[str, float]] = {}
    for row in daily:
        per_tenant_days.setdefault(str(row["tenant"]), {})[str(row["day"])] = float(row["gpu_s"])
    committed_gpus = 0.0
    info: list[tuple[Tenant, str | None, float, float, float]] = []
    for t in tenants:
        cp = commitment_period(t)
        if cp is None:
            info.append((t, None, 0.0, 0.0, 0.0))
            continue
        kind, gpu_h = cp
        start = period_start(kind, now_unix_s).date().isoformat()
        delivered = sum(v for d, v in per_tenant_days.get(t.name, {}).items() if d >= start)
        commit_s = gpu_h * 3600.0
        owed = max(commit_s - delivered, 0.0) if demand_gpus.get(t.name, 0) > 0 else 0.0
        committed_gpus += gpu_h / (24.0 if kind == "day" else 168.0)
        info.append((t, kind, commit_s, delivered, owed))
    with_demand = [t for t in tenants if demand_gpus.get(t.name, 0) > 0]
    weight_sum = sum(t.fair_share_weight for t in with_demand)
    out = []
    for t, kind, commit_s, delivered, owed in info:
        tot = totals.get(t.name, {})
        share = t.fair_share_weight / weight_sum if (weight_sum > 0 and t in with_demand) else 0.0
        out.append(
            TenantAccount(
                tenant=t.name,
                gpu_s=float(tot.get("gpu_s", 0.0)),
                energy_j=float(tot.get("energy_j", 0.0)),
                carbon_g=float(tot.get("carbon_g", 0.0)),
                running_gpus=int(running_gpus.get(t.name, 0)),
                demand_gpus=int(demand_gpus.get(t.name, 0)),
                quota_gpus=t.quota_gpus,
                commitment_period=kind,
                commitment_gpu_s=commit_s,
                commitment_delivered_gpu_s=delivered,
                commitment_owed_gpu_s=owed,
                fair_share_weight=t.fair_share_weight,
                fair_share=share,
            )
        )
    return out


def tenant_info(accts: Sequence[TenantAccount], tenants: Mapping[str, Tenant], pools: Mapping[str, tuple[str, ...]]) -> dict[str, dict[str, Any]]:
    """The ``Snapshot.tenant_info`` mapping the service passes to the policy (one entry per tenant)::

        {"<tenant>": {
            "priority": 2,                      # priority class (0..10), added to each job's priority
            "quota_gpus": 512,                  # max concurrent GPUs; None: no quota
            "commitment_owed_gpu_h": 120.0,     # pre-ordered GPU-hours still owed now (0 without demand)
            "commitment_period": "day",         # "day" | "week" | None
            "commitment_gpu_h": 2000.0,         # pre-ordered GPU-hours per period
            "delivered_gpu_h": 1880.0,          # GPU-hours used in the current period
            "fair_share_weight": 1.0,           # weight in the fair share of what commitments leave
            "fair_share": 0.25,                 # that share now, among tenants with demand (0..1)
            "running_gpus": 64, "demand_gpus": 96,
            "clearance": "public", "jurisdictions": ["nl", "eu"],
            "pools_allowed": ["h100-eu-public"]}}   # sovereignty: the pools its work may land on
    """
    out: dict[str, dict[str, Any]] = {}
    for a in accts:
        t = tenants[a.tenant]
        out[a.tenant] = {
            "priority": t.priority,
            "quota_gpus": t.quota_gpus,
            "commitment_owed_gpu_h": a.commitment_owed_gpu_s / 3600.0,
            "commitment_period": a.commitment_period,
            "commitment_gpu_h": a.commitment_gpu_s / 3600.0,
            "delivered_gpu_h": a.commitment_delivered_gpu_s / 3600.0,
            "fair_share_weight": a.fair_share_weight,
            "fair_share": a.fair_share,
            "running_gpus": a.running_gpus,
            "demand_gpus": a.demand_gpus,
            "clearance": t.clearance,
            "jurisdictions": list(t.jurisdictions),
            "pools_allowed": list(pools.get(a.tenant, ())),
        }
    return out


def quota_breaches(running_gpus: Mapping[str, int], tenants: Mapping[str, Tenant]) -> dict[str, int]:
    """Tenants holding more GPUs than their quota now, with the excess (empty: every quota kept)."""
    out = {}
    for name, n in running_gpus.items():
        t = tenants.get(name)
        if t is not None and t.quota_gpus is not None and n > t.quota_gpus:
            out[name] = n - t.quota_gpus
    return out
