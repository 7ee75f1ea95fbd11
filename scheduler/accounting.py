"""Usage accounting per tenant and per job, commitments owed and delivered, quotas, fair shares.

Units: ``gpu_s`` GPU-seconds, ``energy_j`` facility joules (PUE included), ``carbon_g`` grams CO2-eq.

How one running job's usage over an interval of ``dt_s`` seconds is attributed (DESIGN section 2, through
:mod:`kernels.power`; computed in one place, :func:`integrate`):

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
from numpy.typing import NDArray

from kernels import power as kpower
from scheduler.models import Site, Tenant
from scheduler.policies.base import TenantInfo
from scheduler.policies.capacity import SitePower as CapacitySitePower


@dataclass(frozen=True, slots=True)
class IntervalUsage:
    """Site power and usage over one interval of ``dt_s`` seconds (:func:`integrate`). Powers are the
    interval's mean; per-job arrays follow the rows given to :func:`integrate`."""

    dt_s: float
    facility_w: float
    grid_import_w: float
    wind_w: float
    carbon_g: float
    busy_gpus: NDArray[Any]  # (P,) mean busy GPUs per pool
    job_energy_j: NDArray[np.float64]  # (m,) facility joules of each job (its GPUs at f plus their hosts)
    job_carbon_g: NDArray[np.float64]  # (m,) its share of the interval's grid carbon
    job_gpu_s: NDArray[np.float64]  # (m,) GPU-seconds

    @property
    def energy_wind_j(self) -> float:
        return min(self.facility_w, self.wind_w) * self.dt_s

    @property
    def energy_grid_j(self) -> float:
        return self.grid_import_w * self.dt_s


def integrate(
    power: CapacitySitePower,
    pool: NDArray[np.int64],
    gpus: NDArray[np.float64],
    power_fraction: NDArray[np.float64],
    run_fraction: NDArray[np.float64],
    healthy_gpus: NDArray[np.float64],
    wind_w: float,
    carbon_g_per_kwh: float,
    dt_s: float,
) -> IntervalUsage:
    """THE energy and carbon integrator (DESIGN section 2, through :func:`kernels.power.facility_timeline`):
    the simulation's slots, the service's ticks, the reports and the metrics all account through it.

    Rows are the jobs that ran in the interval: pool index, GPUs, power fraction, and the share of the
    interval each ran (``run_fraction``: 1, or less for a job that finished or stopped inside it). Per job
    (module docstring): ``energy_j = pue * gpus * (f * tdp_w + host_w_per_gpu) * run_fraction * dt_s`` and
    ``carbon_g`` = that energy's share of the site's facility energy times the interval's grid carbon."""
    n_p = len(power.names)
    active_w = gpus * power_fraction * power.tdp_w[pool]
    active = np.bincount(pool, weights=active_w * run_fraction, minlength=n_p)
    busy = np.bincount(pool, weights=gpus * run_fraction, minlength=n_p)
    tl = kpower.facility_timeline(
        power.pue, dt_s, active[:, None], busy[:, None], healthy_gpus[:, None], power.idle_w, power.host_w_per_gpu,
        np.array([wind_w]), np.array([carbon_g_per_kwh]),
    )  # fmt: skip
    fac = float(tl["facility_w"][0])
    carbon = float(tl["carbon_g"][0])
    job_w = power.pue * gpus * (power_fraction * power.tdp_w[pool] + power.host_w_per_gpu[pool]) * run_fraction
    job_c = carbon * job_w / fac if fac > 0 else np.zeros(job_w.shape[0])
    return IntervalUsage(
        dt_s=float(dt_s), facility_w=fac, grid_import_w=float(tl["grid_import_w"][0]), wind_w=float(wind_w),
        carbon_g=carbon, busy_gpus=busy, job_energy_j=job_w * dt_s, job_carbon_g=job_c,
        job_gpu_s=gpus * run_fraction * dt_s,
    )  # fmt: skip


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
    """Every tenant's standing now. ``totals``: state.usage_by_tenant(); ``daily``: state.usage_daily(), rows
    of (tenant, day) that may repeat (the server adds what its tick accounted and has not written yet):
    repeated rows are summed."""
    per_tenant_days: dict[str, dict[str, float]] = {}
    for row in daily:
        days = per_tenant_days.setdefault(str(row["tenant"]), {})
        day = str(row["day"])
        days[day] = days.get(day, 0.0) + float(row["gpu_s"])
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
    for t, period, commit_s, delivered, owed in info:
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
                commitment_period=period,
                commitment_gpu_s=commit_s,
                commitment_delivered_gpu_s=delivered,
                commitment_owed_gpu_s=owed,
                fair_share_weight=t.fair_share_weight,
                fair_share=share,
            )
        )
    return out


def tenant_info(
    accts: Sequence[TenantAccount], tenants: Mapping[str, Tenant], pools: Mapping[str, tuple[str, ...]]
) -> dict[str, TenantInfo]:
    """``Snapshot.tenant_info``: one :class:`~scheduler.policies.base.TenantInfo` per tenant, from its
    standing (``accts``), its settings (``tenants``) and the pools it may use (``pools``, sovereignty)."""
    out: dict[str, TenantInfo] = {}
    for a in accts:
        t = tenants[a.tenant]
        out[a.tenant] = TenantInfo(
            priority=t.priority,
            quota_gpus=t.quota_gpus,
            commitment_owed_gpu_h=a.commitment_owed_gpu_s / 3600.0,
            commitment_period=a.commitment_period,
            commitment_gpu_h=a.commitment_gpu_s / 3600.0,
            delivered_gpu_h=a.commitment_delivered_gpu_s / 3600.0,
            fair_share_weight=a.fair_share_weight,
            fair_share=a.fair_share,
            running_gpus=a.running_gpus,
            demand_gpus=a.demand_gpus,
            clearance=t.clearance,
            jurisdictions=tuple(t.jurisdictions),
            pools_allowed=tuple(pools.get(a.tenant, ())),
        )
    return out


class LoopTenantInfo:
    """``Snapshot.tenant_info`` for a :class:`~scheduler.control.ControlLoop` (its ``tenant_info_fn``), from the
    loop's own usage accounting (``ControlLoop.tenant_usage``), so that a simulation sees quotas, owed
    commitments and fair shares exactly as ``windward server`` computes them from its store.
    ``epoch_unix_s``: the Unix time of the loop's time 0 (commitment periods are UTC days / ISO weeks)."""

    def __init__(self, site: Site, tenants: Sequence[Tenant], epoch_unix_s: float) -> None:
        from scheduler.auth import tenant_pools

        self.site = site
        self.tenants = list(tenants)
        self.by_name = {t.name: t for t in self.tenants}
        self.pools = {t.name: tenant_pools(site, t) for t in self.tenants}
        self.epoch_unix_s = float(epoch_unix_s)

    def __call__(self, loop: Any) -> dict[str, TenantInfo]:
        now_unix = self.epoch_unix_s + loop.clock.now_s()
        u = loop.tenant_usage()
        accts = accounts(self.site, self.tenants, u["totals"], u["daily"], u["running_gpus"], u["demand_gpus"],
                         now_unix)  # fmt: skip
        return tenant_info(accts, self.by_name, self.pools)


def quota_breaches(running_gpus: Mapping[str, int], tenants: Mapping[str, Tenant]) -> dict[str, int]:
    """Tenants holding more GPUs than their quota now, with the excess (empty: every quota kept)."""
    out = {}
    for name, n in running_gpus.items():
        t = tenants.get(name)
        if t is not None and t.quota_gpus is not None and n > t.quota_gpus:
            out[name] = n - t.quota_gpus
    return out
