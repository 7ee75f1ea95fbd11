"""The policy interface: an immutable snapshot in, decisions for the current slot out (pure request -> reply).

Baselines (``backfill``, ``greedy-green``) and the optimiser-backed ``windward`` policy implement it; the
same control loop calls it for the simulated and the Ray executor.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from scheduler.energy import EnergySeries
from scheduler.jobs import Job
from scheduler.models import Site


@dataclass(frozen=True, slots=True)
class JobState:
    """A job the scheduler still has to deal with (queued, or running now)."""

    job: Job
    state: str  # "queued" | "running"
    work_done_s: float = 0.0  # work done so far, in seconds at full speed (from reported progress)
    checkpoint_work_s: float = 0.0  # work safe in the last checkpoint; preempting now loses the rest
    pool: str | None = None  # where it runs (running) or last ran
    power_fraction: float = 1.0
    nodes: tuple[int, ...] = ()

    @property
    def remaining_s(self) -> float:
        return max(self.job.duration_s - self.work_done_s, 0.0)


@dataclass(frozen=True, slots=True)
class TenantInfo:
    """What the control plane knows of one tenant at a tick (``Snapshot.tenant_info`` values; built by
    :func:`scheduler.accounting.tenant_info`). The policy may use it; :mod:`scheduler.rules` enforces quota,
    owed commitment and fair share on every policy's decisions whatever the policy did with it."""

    priority: int = 0  # priority class (0..10), added to each job's priority
    quota_gpus: int | None = None  # max concurrent non-inference GPUs; None: no quota
    commitment_owed_gpu_h: float = 0.0  # pre-ordered GPU-hours still owed now (0 without demand)
    commitment_period: str | None = None  # "day" | "week" | None
    commitment_gpu_h: float = 0.0  # pre-ordered GPU-hours per period
    delivered_gpu_h: float = 0.0  # GPU-hours used in the current period
    fair_share_weight: float = 1.0  # weight in the fair share of what inference and commitments leave
    fair_share: float = 0.0  # weight / sum of weights of tenants with demand (0..1)
    running_gpus: int = 0
    demand_gpus: int = 0
    clearance: str = "public"
    jurisdictions: tuple[str, ...] = ()
    pools_allowed: tuple[str, ...] = ()  # sovereignty: the pools its work may land on


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything a policy may look at, frozen at the start of a tick.

    ``forecast`` starts at the current slot and spans the planning horizon: it is a *forecast* of wind and
    carbon (the policy never sees actuals); caps in it are the contract plus known congestion events.
    ``now_s`` is seconds since the run's epoch (simulation or service start), ``slot`` the current slot.
    """

    now_s: float
    slot: int
    site: Site
    jobs: tuple[JobState, ...]
    healthy_gpus: Mapping[str, int]
    forecast: EnergySeries
    tenant_info: Mapping[str, TenantInfo] = field(default_factory=dict)  # quotas, commitments (control plane)
    # Expected inference demand per pool over the horizon: pool name -> (T,) GPUs, index 0 = the current
    # slot, safety margin included (scheduler.control.InferenceReserve). Inference arrives slot by slot, so
    # policies never see next slot's inference jobs: non-preemptible work must leave these GPUs free (the
    # control loop holds back starts that would not), and a planner can treat them as must-run load.
    # Empty: no reserve known.
    inference_reserve_gpus: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Assignment:
    pool: str
    power_fraction: float = 1.0


@dataclass(frozen=True, slots=True)
class Decisions:
    """Jobs to run in the current slot and at which pool / power fraction.

    A running job that is absent is to be preempted (checkpoint, then stop). ``plan`` carries the
    optimiser result when there is one (dual prices, gap, iterations) for reports and metrics.
    """

    run: Mapping[str, Assignment]
    plan: Any | None = None
    #: inference the plan sheds in the current slot (its cap cannot hold all the must-run inference:
    #: kernels.check.inference_shed), and running non-preemptible jobs the plan's inference displaces from their
    #: pool (kernels.check.displaced): the loop does not start them or keep them running
    #: (scheduler.pipeline.sanitize_run)
    shed: frozenset[str] = frozenset()
    # the plan's per-job schedule over the horizon (job id -> scheduler.reasons.PlannedRun), for
    # "when will it run" (planned_start in /v1/queue); None: the policy has no plan beyond this slot
    schedule: Mapping[str, Any] | None = None


class Policy(Protocol):
    name: str

    def decide(self, snapshot: Snapshot) -> Decisions: ...
