"""The simulation driver: replay jobs on a site against actual energy with the simulated executor on a
virtual clock, through the one control loop (:class:`scheduler.control.ControlLoop`)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from scheduler.energy import EnergySeries
from scheduler.errors import InputError
from scheduler.jobs import Job
from scheduler.models import Site
from scheduler.policies.base import Policy, TenantInfo
from scheduler.signals import PerfectForecaster

if TYPE_CHECKING:
    from scheduler.control import ControlLoop, InferenceReserve, TickObserver, TickReport


@dataclass(frozen=True, slots=True)
class NodeEvent:
    """A node failure or repair injected before the tick of ``slot``."""

    slot: int
    pool: str
    node: int
    kind: str = "fail"  # fail | repair


@dataclass
class SimulationResult:
    site: Site
    policy: str
    loop: ControlLoop
    energy: EnergySeries
    n_slots: int
    horizon_slots: int
    forecast: str
    wall_s: float
    reports: list[TickReport]


def run_simulation(
    site: Site,
    jobs: Sequence[Job],
    actual: EnergySeries,
    policy: Policy,
    *,
    n_slots: int | None = None,
    forecaster: Any | None = None,
    forecast_name: str = "perfect",
    horizon_slots: int = 96,
    node_events: Sequence[NodeEvent] = (),
    observers: Iterable[TickObserver] = (),
    progress: Callable[[int, int], None] | None = None,
    timer: Callable[[], float] = time.perf_counter,
    tenant_info_fn: Callable[[ControlLoop], Mapping[str, TenantInfo]] | None = None,
    reserve: InferenceReserve | None = None,
) -> SimulationResult:
    """Replay ``jobs`` on ``site`` against ``actual`` energy with the simulated executor and ``policy``.

    ``forecaster.forecast(slot, horizon_slots)`` gives what the policy sees (perfect when None). Input is
    checked before anything runs: slot length, energy length, job ids, pool eligibility.
    """
    from scheduler.control import ControlLoop
    from scheduler.executors.simulated import SimulatedExecutor, VirtualClock

    if actual.slot_s != site.slot_s:
        raise InputError(
            f"energy series has slot_s={actual.slot_s} but site {site.name!r} has slot_minutes={site.slot_minutes}"
        )
    n = actual.n_slots if n_slots is None else int(n_slots)
    if n <= 0 or n > actual.n_slots:
        raise InputError(f"n_slots={n}: must be in 1..{actual.n_slots} (the energy series length)")
    if horizon_slots < 1:
        raise InputError(f"horizon_slots={horizon_slots}: must be >= 1")
    pools = {p.name: p.nodes for p in site.pools}
    for ev in node_events:
        if ev.pool not in pools or not (0 <= ev.node < pools[ev.pool]) or ev.kind not in ("fail", "repair"):
            raise InputError(f"node event {ev}: unknown pool/node or kind (pools: {pools}, kinds: fail, repair)")
    fc = forecaster if forecaster is not None else PerfectForecaster(actual)
    clock = VirtualClock(0.0)
    ex = SimulatedExecutor(site, clock)
    loop = ControlLoop(site, ex, policy, clock, jobs=jobs, observers=observers, timer=timer,
                       tenant_info_fn=tenant_info_fn, reserve=reserve)  # fmt: skip
    by_slot: dict[int, list[NodeEvent]] = {}
    for ev in node_events:
        by_slot.setdefault(ev.slot, []).append(ev)
    t_start = timer()
    for s in range(n):
        for ev in by_slot.get(s, ()):
            (ex.fail_node if ev.kind == "fail" else ex.repair_node)(ev.pool, ev.node)
        loop.tick(actual.window(s, 1), fc.forecast(s, horizon_slots))
        if progress is not None:
            progress(s + 1, n)
    loop.flush_usage()
    wall = timer() - t_start
    name = getattr(policy, "name", type(policy).__name__)
    return SimulationResult(site, name, loop, actual, n, horizon_slots, forecast_name, wall, loop.reports)


def slots_for_days(site: Site, days: float) -> int:
    return int(math.ceil(days * 86400 / site.slot_s))
