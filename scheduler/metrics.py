"""Every Windward metric, in one prometheus-client registry (DESIGN section 6).

One :class:`Metrics` object owns a private :class:`~prometheus_client.CollectorRegistry` (never the global
default one) built when the object is built, never at import time. The service serves ``/metrics`` from
``Metrics.registry`` (:meth:`Metrics.exposition`); the control loop feeds it once per tick through
:meth:`Metrics.observe_tick`, the state store through :meth:`Metrics.observe_jobs` and the accounting
through :meth:`Metrics.observe_usage`.

Naming: ``windward_<thing>_<unit>`` with Prometheus base units (``_watts``, ``_joules_total``,
``_seconds``, ``_grams_total``); counts carry no unit. Labels are low-cardinality only: :data:`METRIC_LABELS`
(``pool``, ``tenant``, ``state``, ``source``, ``reason``, ``mode``) — never a job id.

Conventions
-----------
* Power gauges hold the value of the *current* tick. Energy and carbon counters add what the tick report
  accounted (:func:`scheduler.accounting.integrate`, the one integrator): the simulation's slot, or the
  service's time since its previous tick, so a tick that comes early (on a submission) counts nothing twice.
* ``source`` is ``wind`` or ``grid``: the wind share of facility power is ``min(facility_w, wind_w)``,
  the grid share is ``grid_import_w = max(0, facility_w - wind_w)`` (kernels.power). Wind energy carries
  no operational carbon in the model of DESIGN section 2, so ``windward_carbon_grams_total{source="wind"}``
  exists and stays 0; it is exported so that dashboards can stack both sources.
* Headroom is ``cap - draw``: ``windward_grid_headroom_watts = grid_cap_w - grid_import_w``,
  ``windward_site_headroom_watts = site_max_w - facility_w``, and ``windward_cap_headroom_watts`` the
  smaller of the two (negative means a cap is broken).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from scheduler.models import Site

if TYPE_CHECKING:
    from scheduler.control import TickReport
from scheduler.power_devices import POWER_BACKENDS

logger = logging.getLogger(__name__)

#: Content type of :meth:`Metrics.exposition` (the text format Prometheus scrapes).
METRICS_CONTENT_TYPE = CONTENT_TYPE_LATEST

#: Job states the gauges always carry (a state with no job reads 0 rather than vanishing).
JOB_STATES: tuple[str, ...] = ("queued", "running", "done", "failed", "cancelled")

#: Reasons a running job is stopped early. ``power_cap`` is the fast path (actual power would break a
#: cap), ``plan`` the planner deferring preemptible work, ``node_down`` a node failure, ``cancelled`` a
#: tenant's cancel. Unknown reasons reported by an executor are exported as they are.
PREEMPTION_REASONS: tuple[str, ...] = ("plan", "power_cap", "node_down", "cancelled")

#: Cap-violation reasons: the grid contract or the substation limit.
VIOLATION_REASONS: tuple[str, ...] = ("grid_cap", "site_max")
#: windward_power_control_mode{mode}: how GPU power limits are applied (scheduler.power_devices' backends).
POWER_CONTROL_MODES: tuple[str, ...] = POWER_BACKENDS

ENERGY_SOURCES: tuple[str, ...] = ("wind", "grid")

#: Every label name a Windward metric may carry (all low-cardinality: pools, tenants, the fixed state,
#: source, reason and mode sets above; never a job id). The one list tests and reviews check against.
METRIC_LABELS: frozenset[str] = frozenset({"pool", "tenant", "state", "source", "reason", "mode", "version",
                                          "git_sha"})  # fmt: skip
#: ``version`` and ``git_sha`` appear only on ``windward_build_info`` (one series per process).

_TICK_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_PLAN_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


@dataclass(frozen=True, slots=True)
class TenantUsage:
    """One tenant's standing as the accounting knows it (``scheduler.accounting.TenantAccount`` has these
    fields and may be passed as is).

    ``gpu_s, energy_j, carbon_g`` are cumulative since the service's state began. ``commitment_gpu_s`` is
    what the tenant pre-ordered for the current ``commitment_period`` (``"day"`` or ``"week"``, None: no
    commitment), ``commitment_delivered_gpu_s`` what it used of it so far in the period, and
    ``commitment_owed_gpu_s`` what is still owed now (0 while the tenant has no demand). ``fair_share``
    is the tenant's weighted share of the GPUs that commitments leave (0..1), ``running_gpus`` what it
    holds now, ``demand_gpus`` what its queued and running work asks for, ``quota_gpus`` its concurrency
    cap (None: no cap).
    """

    tenant: str
    gpu_s: float = 0.0
    energy_j: float = 0.0
    carbon_g: float = 0.0
    running_gpus: int = 0
    quota_gpus: int | None = None
    commitment_owed_gpu_s: float = 0.0
    commitment_delivered_gpu_s: float = 0.0
    fair_share: float = 0.0
    demand_gpus: int = 0
    commitment_period: str | None = None
    commitment_gpu_s: float = 0.0


#: Length of a commitment period in seconds.
COMMITMENT_PERIOD_S: dict[str, float] = {"day": 86400.0, "week": 7 * 86400.0}


class _GaugeWhileMeasured:
    """One unlabelled gauge that is exported only while it holds a value (a custom collector): a
    measurement that is not there must be absent, not 0, so that PromQL's ``or`` falls back to the model."""

    def __init__(self, name: str, documentation: str) -> None:
        self.name = name
        self.documentation = documentation
        self.value: float | None = None

    def describe(self) -> list[GaugeMetricFamily]:
        return [GaugeMetricFamily(self.name, self.documentation)]

    def collect(self) -> Iterable[GaugeMetricFamily]:
        v = self.value
        if v is not None:
            yield GaugeMetricFamily(self.name, self.documentation, value=v)


#: Cumulative per-tenant usage as counters (``_total``): GPU-seconds, facility energy in joules, operational
#: carbon in grams -- all time, from the state store (the gauges ``windward_tenant_usage_gpu_seconds`` etc. hold
#: the same values and stay for dashboards that read them).
TENANT_COUNTERS: tuple[tuple[str, str, str], ...] = (
    ("windward_tenant_gpu_seconds", "gpu_s", "GPU-seconds used by a tenant (all time)."),
    ("windward_tenant_facility_energy_joules", "energy_j", "Facility energy (joules) attributed to a tenant (all time)."),
    ("windward_tenant_operational_carbon_grams", "carbon_g", "Operational CO2-eq (grams) attributed to a tenant "
                                                            "(all time)."),
)  # fmt: skip


class _TenantCounters:
    """The accounting's cumulative per-tenant totals exported as counters (a custom collector: the values are
    the store's all-time sums, monotonic across restarts, so they are exported as they are, never re-added)."""

    def __init__(self) -> None:
        self.totals: dict[str, dict[str, float]] = {}

    def describe(self) -> list[CounterMetricFamily]:
        return [CounterMetricFamily(name, doc, labels=["tenant"]) for name, _, doc in TENANT_COUNTERS]

    def collect(self) -> Iterable[CounterMetricFamily]:
        totals = dict(self.totals)
        for name, key, doc in TENANT_COUNTERS:
            fam = CounterMetricFamily(name, doc, labels=["tenant"])
            for t, v in sorted(totals.items()):
                fam.add_metric([t], v[key])
            yield fam


_BUILD: dict[str, str] = {}


def build_info() -> dict[str, str]:
    """``{"version", "git_sha"}`` of this process: the package version, and the commit from
    ``$WINDWARD_GIT_SHA`` or the checkout it runs from (``unknown`` where neither says). Cached."""
    if not _BUILD:
        import os
        import subprocess
        from pathlib import Path

        from scheduler import __version__

        sha = os.environ.get("WINDWARD_GIT_SHA", "")
        if not sha:
            try:
                sha = subprocess.run(["git", "-C", str(Path(__file__).resolve().parent), "rev-parse", "--short=12",
                                      "HEAD"], capture_output=True, text=True, timeout=5, check=True).stdout.strip()  # fmt: skip
            except (OSError, subprocess.SubprocessError):
                sha = ""
        _BUILD.update(version=__version__, git_sha=sha or "unknown")
    return dict(_BUILD)


class Metrics:
    """All metrics of one Windward process. Build one per service (or per simulation run).

    ``site`` fixes the pools whose per-pool gauges exist from the start (0 until the first tick);
    ``wall_clock`` gives Unix seconds for the ``*_timestamp_seconds`` gauges that alert rules compare with
    PromQL's ``time()`` (injected so tests can drive it).
    """

    def __init__(self, site: Site | None = None, wall_clock: Callable[[], float] = time.time) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._wall_clock = wall_clock
        self._site = site
        r = self.registry

        # --- power, caps and signals (gauges, current tick)
        self.facility_power = Gauge(
            "windward_facility_power_watts", "Facility power (PUE x IT) drawn now.", registry=r
        )
        self.it_power = Gauge("windward_it_power_watts", "IT power (GPUs + hosts) drawn now.", registry=r)
        self.measured_facility_power = _GaugeWhileMeasured(
            "windward_measured_facility_power_watts",
            "Facility power (PUE x IT) with the GPU draw measured (NVML) where the executor measures it, the "
            "model elsewhere; absent while nothing is measured. The cap alerts take the larger of this and the "
            "model's windward_facility_power_watts.",
        )
        r.register(self.measured_facility_power)
        self.site_max = Gauge(
            "windward_site_max_watts", "Substation limit on facility power (site cap).", registry=r
        )
        self.grid_cap = Gauge(
            "windward_grid_cap_watts",
            "Grid import allowed now (firm + time blocks, lowered by congestion events).",
            registry=r,
        )
        self.wind_available = Gauge(
            "windward_wind_available_watts", "Wind power delivered to the site now (actual).", registry=r
        )
        self.grid_import = Gauge(
            "windward_grid_import_watts", "Grid import now: max(0, facility - wind).", registry=r
        )
        self.carbon_intensity = Gauge(
            "windward_carbon_intensity_grams_per_kwh", "Carbon intensity of grid electricity now.", registry=r
        )
        self.cap_headroom = Gauge(
            "windward_cap_headroom_watts",
            "The smaller of grid and site headroom (negative: a cap is broken).",
            registry=r,
        )
        self.grid_headroom = Gauge(
            "windward_grid_headroom_watts", "grid_cap - grid_import (negative: contract broken).", registry=r
        )
        self.site_headroom = Gauge(
            "windward_site_headroom_watts", "site_max - facility (negative: substation overloaded).", registry=r
        )

        # --- energy and carbon (counters, by source)
        self.energy = Counter(
            "windward_energy_joules", "Facility energy used, by source (wind, grid).", ["source"], registry=r
        )
        self.carbon = Counter(
            "windward_carbon_grams",
            "Operational CO2-eq emitted, by source (wind carries none in the model).",
            ["source"],
            registry=r,
        )

        # --- GPUs and nodes per pool
        self.gpus = Gauge("windward_gpus", "GPUs per pool by state (busy, idle, down).", ["pool", "state"], registry=r)
        self.nodes = Gauge("windward_nodes", "Nodes per pool by state (up, down).", ["pool", "state"], registry=r)
        self.power_fraction = Gauge(
            "windward_gpu_power_fraction",
            "Mean power of busy GPUs as a fraction of TDP, site-wide (0 when none is busy): IT power less "
            "idle and host power, over the busy GPUs' TDP.",
            registry=r,
        )

        # --- jobs
        self.jobs = Gauge("windward_jobs", "Jobs by state and tenant.", ["state", "tenant"], registry=r)
        self.job_starts = Counter("windward_job_starts", "Jobs started or resumed.", registry=r)
        self.job_finishes = Counter("windward_job_finishes", "Jobs finished.", registry=r)
        self.preemptions = Counter(
            "windward_preemptions", "Running jobs stopped before they finished, by reason.", ["reason"], registry=r
        )
        self.work_lost = Counter(
            "windward_work_lost_seconds",
            "Job run time (at full speed) lost to preemption (done since the last checkpoint), by reason.",
            ["reason"],
            registry=r,
        )

        # --- tenants (mirrored from the accounting; see observe_usage)
        self.tenant_gpu_s = Gauge(
            "windward_tenant_usage_gpu_seconds", "GPU-seconds used by a tenant so far.", ["tenant"], registry=r
        )
        self.tenant_energy_j = Gauge(
            "windward_tenant_energy_joules", "Facility energy attributed to a tenant so far.", ["tenant"], registry=r
        )
        self.tenant_carbon_g = Gauge(
            "windward_tenant_carbon_grams", "Carbon attributed to a tenant so far.", ["tenant"], registry=r
        )
        self.tenant_running_gpus = Gauge(
            "windward_tenant_running_gpus", "GPUs a tenant holds now.", ["tenant"], registry=r
        )
        self.tenant_quota_gpus = Gauge(
            "windward_tenant_quota_gpus", "A tenant's concurrency quota (absent: no quota).", ["tenant"], registry=r
        )
        self.tenant_demand_gpus = Gauge(
            "windward_tenant_demand_gpus", "GPUs a tenant's queued and running work asks for.", ["tenant"], registry=r
        )
        self.commitment = Gauge(
            "windward_commitment_gpu_seconds",
            "GPU-seconds a tenant pre-ordered for the current commitment period.",
            ["tenant"],
            registry=r,
        )
        self.commitment_rate = Gauge(
            "windward_commitment_rate_gpus",
            "GPUs a tenant's commitment amounts to on average (pre-ordered GPU-seconds / period length).",
            ["tenant"],
            registry=r,
        )
        self.commitment_owed = Gauge(
            "windward_commitment_owed_gpu_seconds",
            "GPU-seconds still owed to a tenant in the current period (0 while it has no demand).",
            ["tenant"],
            registry=r,
        )
        self.commitment_delivered = Gauge(
            "windward_commitment_delivered_gpu_seconds",
            "GPU-seconds delivered against the commitment in the current period.",
            ["tenant"],
            registry=r,
        )
        self.fair_share = Gauge(
            "windward_tenant_fair_share_ratio",
            "A tenant's weighted fair share of the uncommitted GPUs (0..1).",
            ["tenant"],
            registry=r,
        )

        # --- inference
        self.inference_demand = Gauge(
            "windward_inference_demand_gpus", "GPUs demanded by inference services now (site).", registry=r
        )
        self.inference_served = Gauge(
            "windward_inference_served_gpus", "GPUs serving inference now (site).", registry=r
        )

        # --- grid events and violations
        self.congestion_events = Counter(
            "windward_congestion_events", "Congestion events announced by the grid operator.", registry=r
        )
        self.congestion_active = Gauge(
            "windward_congestion_active", "1 while a congestion event lowers the grid cap.", registry=r
        )
        self.cap_violations = Counter(
            "windward_cap_violations",
            "Ticks whose actual power broke a cap, by reason (grid_cap, site_max).",
            ["reason"],
            registry=r,
        )
        self.cap_violation_watts = Gauge(
            "windward_cap_violation_watts", "How far a cap is broken now (0: kept), by reason.", ["reason"], registry=r
        )

        # --- the scheduler itself
        self.tick_duration = Histogram(
            "windward_tick_duration_seconds", "Wall time of one control-loop tick.", buckets=_TICK_BUCKETS_S, registry=r
        )
        self.ticks = Counter("windward_ticks", "Control-loop ticks.", registry=r)
        self.last_tick_ts = Gauge(
            "windward_last_tick_timestamp_seconds", "Unix time of the last tick.", registry=r
        )
        self.slot = Gauge("windward_slot", "Index of the current slot since the run's start.", registry=r)
        self.plan_duration = Histogram(
            "windward_plan_duration_seconds",
            "Wall time of one planning call (policy.decide).",
            buckets=_PLAN_BUCKETS_S,
            registry=r,
        )
        self.plans = Counter("windward_plans", "Planning calls that returned decisions.", registry=r)
        self.last_plan_ts = Gauge(
            "windward_last_plan_timestamp_seconds", "Unix time of the last successful plan.", registry=r
        )
        self.plan_iterations = Gauge(
            "windward_plan_iterations", "Optimiser iterations of the last plan (0 for heuristic policies).", registry=r
        )
        self.plan_gap = Gauge(
            "windward_plan_gap_ratio",
            "Relative gap between the last plan's carbon and its lower bound (0 for heuristic policies).",
            registry=r,
        )
        self.plan_infeasible = Gauge(
            "windward_plan_infeasible",
            "1 when the last optimiser call returned infeasible and the policy's fallback decided (inference and "
            "running non-preemptible work kept, the rest stopped or left queued), else 0 (0 for heuristic policies).",
            registry=r,
        )
        self.plan_infeasible_slots = Gauge(
            "windward_plan_infeasible_slots",
            "Slots of the last plan's horizon that no schedule meets in full: the idle floor alone breaks a cap (a "
            "congestion event below what the idle site draws: nothing runs there), or the must-run inference on "
            "top of it does (the inference that fits runs, the rest is shed there) (0 for heuristic policies).",
            registry=r,
        )
        self.info_site = Gauge(
            "windward_site_info", "Constant 1, labelled with the pools of the site.", ["pool"], registry=r
        )
        self.power_control_mode = Gauge(
            "windward_power_control_mode",
            "GPU nodes whose power limits are set by each mode: nvml (real limits on real GPUs) or simulated "
            "(the DESIGN power model; nothing on a real GPU changes).",
            ["mode"],
            registry=r,
        )

        # --- cumulative per-tenant usage (counters), live signals, the build, the process
        self.tenant_counters = _TenantCounters()
        r.register(self.tenant_counters)
        self.signal_staleness = Gauge(
            "windward_signal_staleness_seconds",
            "Age of the last good fetch of each live energy-signal source (+Inf before any; scheduler.sources).",
            ["source"],
            registry=r,
        )
        self.build = Gauge("windward_build_info", "Constant 1, labelled with the version and git commit.",
                           ["version", "git_sha"], registry=r)  # fmt: skip
        self.build.labels(**build_info()).set(1)
        ProcessCollector(registry=r)  # process_cpu_seconds_total, process_resident_memory_bytes, ...

        self._pools: list[str] = []
        self._tenants_seen: set[str] = set()
        self._job_keys: set[tuple[str, str]] = set()
        self._init_label_sets()

    # ------------------------------------------------------------------------------------ set-up

    def _init_label_sets(self) -> None:
        """Create every fixed label combination at 0, so series exist from the first scrape."""
        for s in ENERGY_SOURCES:
            self.energy.labels(source=s)
            self.carbon.labels(source=s)
        for reason in PREEMPTION_REASONS:
            self.preemptions.labels(reason=reason)
            self.work_lost.labels(reason=reason)
        for reason in VIOLATION_REASONS:
            self.cap_violations.labels(reason=reason)
            self.cap_violation_watts.labels(reason=reason).set(0.0)
        for mode in POWER_CONTROL_MODES:
            self.power_control_mode.labels(mode=mode).set(0)
        if self._site is not None:
            for pool in self._site.pools:
                self._ensure_pool(pool.name)
                self.gpus.labels(pool=pool.name, state="idle").set(pool.gpus)
                self.nodes.labels(pool=pool.name, state="up").set(pool.nodes)
                self.site_max.set(self._site.site_max_mw * 1e6)

    def _ensure_pool(self, pool: str) -> None:
        if pool in self._pools:
            return
        self._pools.append(pool)
        self.info_site.labels(pool=pool).set(1)
        for state in ("busy", "idle", "down"):
            self.gpus.labels(pool=pool, state=state)
        for state in ("up", "down"):
            self.nodes.labels(pool=pool, state=state)

    # ------------------------------------------------------------------------------------ feeding

    def observe_tick(self, report: TickReport, tick_duration_s: float | None = None) -> None:
        """Publish one control-loop tick: the one :class:`scheduler.control.TickReport`, from the simulation's
        loop (a whole slot that has passed) or from the service (the power drawn from now on, and what was
        accounted since the previous tick). Energy and carbon are the report's own (``energy_wind_j``,
        ``energy_grid_j``, ``carbon_g``: computed once, by :func:`scheduler.accounting.integrate`), added to
        the counters as they are; the caps are checked against ``facility_peak_w`` / ``grid_import_peak_w``.
        ``tick_duration_s`` overrides the report's ``tick_s``.
        """
        site = self._site
        facility_w = float(report.facility_w)
        wind_w = float(report.wind_w)
        grid_import_w = float(report.grid_import_w)
        grid_cap_w = float(report.grid_cap_w)
        site_max_w = float(report.site_max_w)
        ci = float(report.carbon_g_per_kwh)

        # --- energy and carbon
        self.energy.labels(source="wind").inc(max(float(report.energy_wind_j), 0.0))
        self.energy.labels(source="grid").inc(max(float(report.energy_grid_j), 0.0))
        self.carbon.labels(source="grid").inc(max(float(report.carbon_g), 0.0))

        # --- power, caps, headroom (against the peak where the report has one)
        peak_w = float(report.facility_peak_w)
        peak_import_w = float(report.grid_import_peak_w)
        self.facility_power.set(facility_w)
        measured_w = report.measured_facility_w
        self.measured_facility_power.value = float(measured_w) if measured_w is not None else None
        self.it_power.set(facility_w / (site.pue if site else 1.0))
        self.wind_available.set(wind_w)
        self.grid_import.set(grid_import_w)
        self.grid_cap.set(grid_cap_w)
        self.site_max.set(site_max_w)
        self.carbon_intensity.set(ci)
        grid_room = grid_cap_w - peak_import_w
        site_room = site_max_w - peak_w
        self.grid_headroom.set(grid_room)
        self.site_headroom.set(site_room)
        self.cap_headroom.set(min(grid_room, site_room))
        self.slot.set(int(report.slot))
        tol_w = 1e-6 * max(site_max_w, 1.0)  # the control loop's own tolerance
        for reason, over in (("grid_cap", -grid_room), ("site_max", -site_room)):
            broken = over > tol_w
            self.cap_violation_watts.labels(reason=reason).set(over if broken else 0.0)
            if broken:
                self.cap_violations.labels(reason=reason).inc()

        # --- pools
        busy = dict(report.busy_gpus)
        healthy = dict(report.healthy_gpus)
        for name in [p.name for p in site.pools] if site else sorted(set(busy) | set(healthy)):
            self._ensure_pool(name)
            pool = site.pool(name) if site else None
            total = pool.gpus if pool else int(healthy.get(name, 0))
            per_node = pool.gpus_per_node if pool else 1
            h = float(healthy.get(name, total))
            b = float(busy.get(name, 0.0))
            self.gpus.labels(pool=name, state="busy").set(b)
            self.gpus.labels(pool=name, state="idle").set(max(h - b, 0.0))
            self.gpus.labels(pool=name, state="down").set(max(total - h, 0.0))
            down_nodes = math.ceil(max(total - h, 0.0) / per_node)
            self.nodes.labels(pool=name, state="down").set(down_nodes)
            self.nodes.labels(pool=name, state="up").set(max(total // per_node - down_nodes, 0))
        if site is not None:
            it_now_w = facility_w / site.pue
            busy_tdp_w = sum(float(busy.get(p.name, 0.0)) * p.tdp_w for p in site.pools)
            fixed_w = sum(
                max(float(healthy.get(p.name, p.gpus)) - float(busy.get(p.name, 0.0)), 0.0) * p.idle_w
                + float(healthy.get(p.name, p.gpus)) * p.host_w_per_gpu
                for p in site.pools
            )
            frac = (it_now_w - fixed_w) / busy_tdp_w if busy_tdp_w > 0 else 0.0
            self.power_fraction.set(min(max(frac, 0.0), 1.0))
        self.inference_demand.set(float(report.inference_demand_gpus))
        self.inference_served.set(float(report.inference_served_gpus))

        # --- job events (ids only: counted, never exported as labels)
        self.job_starts.inc(len(report.starts))
        self.job_finishes.inc(len(report.finishes))
        preempted = tuple(report.preemptions)
        if preempted:
            by_fast_path = set(report.dropped)
            n_cap = sum(1 for j in preempted if j in by_fast_path)
            n_plan = len(preempted) - n_cap
            lost_s = max(float(report.lost_work_s), 0.0)
            # the report gives the work lost in total: shared out by the number of jobs of each reason
            for reason, n in (("power_cap", n_cap), ("plan", n_plan)):
                if n:
                    self.preemptions.labels(reason=reason).inc(n)
                    self.work_lost.labels(reason=reason).inc(lost_s * n / len(preempted))
        n_failed = len(report.failures)
        if n_failed:
            self.preemptions.labels(reason="node_down").inc(n_failed)
        active = report.congestion_active
        if active is not None:
            self.congestion_active.set(1.0 if active else 0.0)

        # --- planning and the tick itself
        wall = float(self._wall_clock())
        self.plan_duration.observe(float(report.decide_s))
        self.plans.inc()
        self.last_plan_ts.set(wall)
        self.observe_plan(report.plan)
        tick_s = tick_duration_s if tick_duration_s is not None else report.tick_s
        if tick_s is not None:
            self.tick_duration.observe(float(tick_s))
        self.ticks.inc()
        self.last_tick_ts.set(wall)

    def observe_plan(self, plan: Any) -> None:
        """Optimiser diagnostics: ``iterations``, ``gap``, ``status`` and the count of ``infeasible_slots`` of a
        dict from ``scheduler.control.plan_diagnostics`` (a tick report's), or of the ``kernels.problem.PlanResult``
        (or object with those attributes) it is made from. A heuristic policy has none and reads 0."""
        from scheduler.control import plan_diagnostics  # (control's report types name this module: bound here)

        d = plan if isinstance(plan, Mapping) else plan_diagnostics(plan)
        it, gap = d.get("iterations"), d.get("gap")
        self.plan_iterations.set(float(it) if isinstance(it, (int, float)) else 0.0)
        g = float(gap) if isinstance(gap, (int, float)) else 0.0
        self.plan_gap.set(g if math.isfinite(g) else 0.0)
        self.plan_infeasible.set(1.0 if d.get("status") == "infeasible" else 0.0)
        n = d.get("infeasible_slots")
        self.plan_infeasible_slots.set(float(n) if isinstance(n, int) else 0.0)

    def observe_congestion(self, n_events: int = 1, active: bool = True) -> None:
        """A congestion event was announced (the service calls this from ``POST /v1/congestion``)."""
        self.congestion_events.inc(n_events)
        self.congestion_active.set(1.0 if active else 0.0)

    def observe_jobs(self, counts: Mapping[tuple[str, str], int] | Iterable[tuple[str, str, int]]) -> None:
        """Set the jobs gauge from ``{(state, tenant): n}`` (or ``(state, tenant, n)`` rows).

        Every (state, tenant) pair seen before and absent now reads 0; every tenant carries every state
        of :data:`JOB_STATES`, so ``sum by (state)`` never loses a state.
        """
        rows = counts.items() if isinstance(counts, Mapping) else (((s, t), n) for s, t, n in counts)
        current: dict[tuple[str, str], int] = {}
        for (state, tenant), n in rows:
            current[(str(state), str(tenant))] = current.get((str(state), str(tenant)), 0) + int(n)
        tenants = {t for _, t in current} | self._tenants_seen
        self._tenants_seen |= tenants
        keys = {(s, t) for s in JOB_STATES for t in tenants} | set(current) | self._job_keys
        for state, tenant in keys:
            self.jobs.labels(state=state, tenant=tenant).set(current.get((state, tenant), 0))
        self._job_keys = keys

    def observe_usage(self, usage: Sequence[Any]) -> None:
        """Mirror the accounting's per-tenant standing (:class:`TenantUsage` or
        ``scheduler.accounting.TenantAccount``)."""
        for u in usage:
            t = str(u.tenant)
            self._tenants_seen.add(t)
            self.tenant_gpu_s.labels(tenant=t).set(u.gpu_s)
            self.tenant_energy_j.labels(tenant=t).set(u.energy_j)
            self.tenant_carbon_g.labels(tenant=t).set(u.carbon_g)
            self.tenant_counters.totals[t] = {"gpu_s": float(u.gpu_s), "energy_j": float(u.energy_j),
                                              "carbon_g": float(u.carbon_g)}  # fmt: skip
            self.tenant_running_gpus.labels(tenant=t).set(u.running_gpus)
            self.tenant_demand_gpus.labels(tenant=t).set(getattr(u, "demand_gpus", 0))
            if u.quota_gpus is not None:
                self.tenant_quota_gpus.labels(tenant=t).set(u.quota_gpus)
            period_s = COMMITMENT_PERIOD_S.get(getattr(u, "commitment_period", None) or "", 0.0)
            committed_gpu_s = float(getattr(u, "commitment_gpu_s", 0.0))
            self.commitment.labels(tenant=t).set(committed_gpu_s)
            self.commitment_rate.labels(tenant=t).set(committed_gpu_s / period_s if period_s else 0.0)
            self.commitment_owed.labels(tenant=t).set(u.commitment_owed_gpu_s)
            self.commitment_delivered.labels(tenant=t).set(u.commitment_delivered_gpu_s)
            self.fair_share.labels(tenant=t).set(u.fair_share)

    def observe_signals(self, staleness_s: Mapping[str, float]) -> None:
        """Seconds since each live signal source's last good fetch (``Refresher.staleness_s()``)."""
        for source, age in staleness_s.items():
            self.signal_staleness.labels(source=source).set(float(age))

    def observe_power_control(self, nodes_by_mode: Mapping[str, int]) -> None:
        """How many GPU nodes each power-control mode drives (``RayExecutor.power_control_modes``)."""
        for mode in POWER_CONTROL_MODES:
            self.power_control_mode.labels(mode=mode).set(int(nodes_by_mode.get(mode, 0)))

    # ------------------------------------------------------------------------------------ serving

    def exposition(self) -> bytes:
        """The registry in Prometheus' text format (serve with :data:`METRICS_CONTENT_TYPE`)."""
        return generate_latest(self.registry)

    def names(self) -> set[str]:
        """Every sample name this registry exports or will export once a label set is first used
        (``_total``, ``_bucket``, ``_sum``, ``_count`` included)."""
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
        out: set[str] = set()
        for fam in self.registry.collect():
            out |= {fam.name + sfx for sfx in suffixes.get(fam.type, ("",))}
            out |= {s.name for s in fam.samples}
        out.add(self.measured_facility_power.name)  # exported while the executor measures power
        return out
