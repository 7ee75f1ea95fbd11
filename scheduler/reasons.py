"""Why a queued job waits, and when the plan starts it (issue 15 item 1): the one source of truth.

:class:`HoldReason` is the closed set of reasons ``/v1/queue``, ``/v1/jobs`` and ``windward queue`` / ``status``
show (DESIGN section 7; docs/contracts.md lists them). A reason is never guessed: :func:`explain` reads what
held the job in the last tick, from the tick's own record (:class:`~scheduler.control.TickReport`: what the
reserve held, what the rules dropped, what the fast path dropped, which starts found no GPUs), the gate
(:func:`gate`: dependencies and ``begin``, held by the loop before the policy sees the job) and the plan
(:func:`planned_runs`: the first slot the policy's plan runs the job). In order of precedence:

========================  ===================================================================================
reason                    the job did not start in the last tick because ...
========================  ===================================================================================
``new``                   it was submitted after the last tick (no tick has considered it yet)
``waiting_on_dependency``  a dependency (``afterok`` ...) has not ended as required yet (held by the loop)
``not_before``            its ``begin`` time has not come (held by the loop)
``no_eligible_pool``      the policy placed it in a pool it may not use (sovereignty, labels): refused
``inference_reserve``     a non-preemptible start would take GPUs the expected inference needs
``quota``                 its tenant is at its GPU quota (:mod:`scheduler.rules`)
``fair_share``            dropped to make room for tenants owed a commitment or below their fair share
``grid_cap``              this slot's power budget (grid cap + wind, site maximum) has no room for it: the
                          fast path dropped it, or the policy left it out with GPUs free but no power left
``pool_full``             no eligible pool has enough free healthy GPUs now (or the executor found none)
``deferred_for_wind``     GPUs and power are free now, but the policy waits for cleaner energy (more wind,
                          a lower grid carbon intensity): ``planned_start`` says when (null: beyond the horizon)
========================  ===================================================================================

``planned_start`` / ``planned_end`` (ISO 8601, UTC) come from the current plan of an optimising policy (the
``windward`` policy's horizon); null when the plan does not run the job within its horizon or the policy has
no plan (the baseline policies decide one slot at a time). Pure, except :class:`WhyBoard` (a lock).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:  # types only: the loop imports this module
    from scheduler.control import TickReport
    from scheduler.policies.capacity import SitePower


class HoldReason(StrEnum):
    """Why a queued job waits (module docstring: the table, in order of precedence)."""

    NEW = "new"
    WAITING_ON_DEPENDENCY = "waiting_on_dependency"
    NOT_BEFORE = "not_before"
    NO_ELIGIBLE_POOL = "no_eligible_pool"
    INFERENCE_RESERVE = "inference_reserve"
    QUOTA = "quota"
    FAIR_SHARE = "fair_share"
    GRID_CAP = "grid_cap"
    POOL_FULL = "pool_full"
    DEFERRED_FOR_WIND = "deferred_for_wind"


@dataclass(frozen=True, slots=True)
class PlannedRun:
    """Where a plan runs one job: slots are offsets from the plan's first slot (0 = the tick's slot)."""

    start_slot: int  # first slot the plan runs it
    end_slot: int  # one past the last slot it runs
    pool: str
    mean_power_fraction: float
    next_start_slot: int | None = None  # first slot >= 1 it runs (for a job held in slot 0); None: none


@dataclass(frozen=True, slots=True)
class Why:
    reason: HoldReason
    detail: str = ""
    planned: PlannedRun | None = None


class _PlanIndexLike(Protocol):
    @property
    def job_ids(self) -> Sequence[str]: ...

    @property
    def pool_names(self) -> Sequence[str]: ...

    @property
    def n_real(self) -> int: ...


def planned_runs(result: Any, index: _PlanIndexLike) -> dict[str, PlannedRun]:
    """Per job of a plan (a kernels ``PlanResult`` and its ``PlanIndex``): its first and last slot, pool and
    mean power fraction; jobs the plan never runs are absent. Vectorised over jobs."""
    run = np.asarray(getattr(result, "run", np.zeros((0, 0), dtype=bool)), dtype=bool)
    n = index.n_real
    if run.ndim != 2 or run.shape[0] < n or run.shape[1] == 0 or n == 0:
        return {}
    run = run[:n]
    T = run.shape[1]
    any_run = run.any(axis=1)
    first = np.argmax(run, axis=1)
    last = T - 1 - np.argmax(run[:, ::-1], axis=1)
    later = run[:, 1:]
    has_later: np.ndarray = np.asarray(later.any(axis=1)) if T > 1 else np.zeros(n, dtype=bool)
    nxt: np.ndarray = (np.argmax(later, axis=1) + 1) if T > 1 else np.zeros(n, dtype=np.int64)
    frac = np.asarray(result.power_fraction, dtype=np.float64)[:n]
    n_on = np.maximum(run.sum(axis=1), 1)
    mean_f = np.where(run, frac, 0.0).sum(axis=1) / n_on
    pool = np.asarray(result.pool)[:n]
    out: dict[str, PlannedRun] = {}
    for j in np.flatnonzero(any_run & (pool >= 0)).tolist():
        out[index.job_ids[j]] = PlannedRun(
            int(first[j]), int(last[j]) + 1, index.pool_names[int(pool[j])], float(mean_f[j]),
            int(nxt[j]) if has_later[j] else None,
        )  # fmt: skip
    return out


class LazySchedule(Mapping[str, PlannedRun]):
    """:func:`planned_runs` computed row by row on demand: a policy attaches one to every decision at no cost
    (nothing is computed until someone asks when a job runs)."""

    def __init__(self, result: Any, index: _PlanIndexLike) -> None:
        self._result, self._index = result, index
        self._rows: dict[str, int] | None = None

    def _row_of(self) -> dict[str, int]:
        if self._rows is None:
            n = self._index.n_real
            self._rows = {jid: j for j, jid in enumerate(self._index.job_ids[:n])}
        return self._rows

    def __getitem__(self, job_id: str) -> PlannedRun:
        j = self._row_of()[job_id]  # KeyError: not in the plan
        run = np.asarray(self._result.run[j], dtype=bool)
        p = int(self._result.pool[j])
        on = np.flatnonzero(run)
        if on.size == 0 or p < 0:
            raise KeyError(job_id)
        frac = np.asarray(self._result.power_fraction[j], dtype=np.float64)
        later = on[on >= 1]
        return PlannedRun(int(on[0]), int(on[-1]) + 1, self._index.pool_names[p], float(frac[on].mean()),
                          int(later[0]) if later.size else None)  # fmt: skip

    def __iter__(self) -> Any:
        return iter(planned_runs(self._result, self._index))

    def __len__(self) -> int:
        return len(planned_runs(self._result, self._index))


def schedule_of(decisions: Any) -> Mapping[str, PlannedRun]:
    """The plan's per-job schedule carried by ``Decisions.schedule`` (empty when the policy has no plan)."""
    # ``is None``, not ``or``: the truth of a LazySchedule is its length, which computes the whole schedule
    # (0.4 s a tick at 50,000 jobs) when nothing may ever ask for it
    s = getattr(decisions, "schedule", None)
    return {} if s is None else s


# ------------------------------------------------------------------------------------------ the gate


@dataclass(frozen=True, slots=True)
class GateItem:
    """What the gate needs of a queued job: its dependencies ``(kind, job_id)`` and its ``begin`` time."""

    job_id: str
    dependencies: tuple[tuple[str, str], ...] = ()
    begin_unix_s: float | None = None
    tenant: str = ""  # a dependency must be a job of the same tenant


#: Public job states (DESIGN section 7) the gate reads: terminal ones, and what counts as "started".
_TERMINAL = frozenset({"finished", "done", "failed", "cancelled"})
_OK = frozenset({"finished", "done"})
_NOT_OK = frozenset({"failed", "cancelled"})


def gate(
    items: Iterable[GateItem], now_unix_s: float, state_of: Callable[[str, str], str | None]
) -> tuple[dict[str, Why], dict[str, str]]:
    """Dependencies and ``begin``, held by the control loop before the policy sees a job.

    Returns ``(held, failed)``: ``held`` job id -> :class:`Why` (``waiting_on_dependency`` or ``not_before``),
    kept out of the snapshot; ``failed`` job id -> the detail to record it ``failed`` with (a dependency that
    can never be satisfied: ``afterok`` on a job that failed or was cancelled, ``afternotok`` on one that
    finished, or no such job). ``state_of(job_id, tenant)``: the job's public state, None when ``tenant`` has
    no such job. A job with no dependencies and no future ``begin`` is in neither."""
    held: dict[str, Why] = {}
    failed: dict[str, str] = {}
    for it in items:
        waiting: list[str] = []
        bad: str | None = None
        for kind, dep in it.dependencies:
            st = state_of(dep, it.tenant)
            if st is None:
                bad = f"dependency {kind}:{dep}: no such job"
            elif kind == "afterok":
                if st in _NOT_OK:
                    bad = f"dependency afterok:{dep} can never be met: {dep} is {st}"
                elif st not in _OK:
                    waiting.append(f"afterok:{dep} ({st})")
            elif kind == "afternotok":
                if st in _OK:
                    bad = f"dependency afternotok:{dep} can never be met: {dep} finished OK"
                elif st not in _NOT_OK:
                    waiting.append(f"afternotok:{dep} ({st})")
            elif kind == "afterany":
                if st not in _TERMINAL:
                    waiting.append(f"afterany:{dep} ({st})")
            elif kind == "after":
                if st == "queued":
                    waiting.append(f"after:{dep} (queued)")
            else:
                bad = f"dependency {kind}:{dep}: unknown kind; allowed: after, afterany, afterok, afternotok"
            if bad:
                break
        if bad:
            failed[it.job_id] = bad
        elif waiting:
            held[it.job_id] = Why(HoldReason.WAITING_ON_DEPENDENCY, "waiting on " + ", ".join(waiting))
        elif it.begin_unix_s is not None and it.begin_unix_s > now_unix_s:
            held[it.job_id] = Why(HoldReason.NOT_BEFORE, f"not before {iso_utc(it.begin_unix_s)}")
    return held, failed


def gate_item(job: Any, epoch_unix_s: float) -> GateItem | None:
    """The gate's view of a :class:`~scheduler.jobs.Job` (its ``dependencies`` and ``begin_s``, seconds since
    the epoch); None when it has neither (most jobs: nothing to check)."""
    deps = getattr(job, "dependencies", ())
    begin_s = getattr(job, "begin_s", None)
    if not deps and begin_s is None:
        return None
    return GateItem(job.job_id, tuple(deps), None if begin_s is None else epoch_unix_s + begin_s, job.tenant)


# ------------------------------------------------------------------------------------------ explain


class Explainer:
    """What one tick tells about its queued jobs, built once from the tick (cost: the lengths of the report's
    lists), asked per job (:meth:`why`) only when someone looks (the API), so a tick with 50,000 queued jobs
    pays nothing for reasons nobody reads. Arguments as :func:`explain`."""

    def __init__(
        self,
        report: TickReport,
        power: SitePower,
        elig: Callable[[Any], Sequence[int]],
        *,
        schedule: Mapping[str, PlannedRun] | None = None,
        gated: Mapping[str, Why] | None = None,
        quota_room: Mapping[str, float] | None = None,
    ) -> None:
        self.schedule = {} if schedule is None else schedule  # not ``or``: see schedule_of
        self.quota_room = quota_room or {}  # tenant -> GPUs its quota leaves after the tick (absent: no quota)
        self.gated = gated or {}
        self.power, self.elig = power, elig
        self.sets = [
            (frozenset(report.refused), HoldReason.NO_ELIGIBLE_POOL, "the policy placed it in a pool it may not use"),
            (frozenset(report.held), HoldReason.INFERENCE_RESERVE, "its GPUs are kept for the expected inference"),
            (frozenset(report.over_quota), HoldReason.QUOTA, "its tenant is at its GPU quota"),
            (frozenset(report.displaced), HoldReason.FAIR_SHARE, "room was given to tenants owed a commitment or "
                                                                 "below their fair share"),
            (frozenset(report.dropped), HoldReason.GRID_CAP, "this slot's power budget (grid cap + wind, site "
                                                             "maximum) has no room for it"),
            (frozenset(report.start_failed), HoldReason.POOL_FULL, "the executor found no free GPUs for it"),
        ]  # fmt: skip
        self.names = list(power.names)
        self.free = {n: float(report.healthy_gpus.get(n, 0)) - float(report.busy_gpus.get(n, 0.0)) for n in self.names}
        budget_w = min(float(report.site_max_w), float(report.grid_cap_w) + float(report.wind_w))
        self.headroom_w = budget_w - float(report.facility_peak_w)
        self.min_f = np.asarray(power.min_power_fraction, dtype=np.float64)

    def planned(self, job_id: str) -> PlannedRun | None:
        planned = self.schedule.get(job_id)
        if planned is not None and planned.start_slot == 0:  # the plan ran it now but it was held: next run
            return (
                PlannedRun(planned.next_start_slot, planned.end_slot, planned.pool, planned.mean_power_fraction)
                if planned.next_start_slot is not None else None
            )  # fmt: skip
        return planned

    def why(self, job: Any) -> Why:
        """Why the queued ``job`` (a :class:`~scheduler.jobs.Job`) did not start in the tick."""
        jid = job.job_id
        planned = self.planned(jid)
        g = self.gated.get(jid)
        if g is not None:
            return Why(g.reason, g.detail, planned)
        for ids, reason, detail in self.sets:
            if jid in ids:
                return Why(reason, detail, planned)
        room = self.quota_room.get(job.tenant)
        if room is not None and not job.must_run and job.gpus > room:
            return Why(HoldReason.QUOTA, f"needs {job.gpus} GPUs; its tenant's quota leaves {max(int(room), 0)}",
                       planned)  # fmt: skip
        names, free = self.names, self.free
        pools = [p for p in self.elig(job) if 0 <= p < len(names)]
        fits = [p for p in pools if free[names[p]] >= job.gpus]
        if not fits:
            most = max((free[names[p]] for p in pools), default=0.0)
            return Why(HoldReason.POOL_FULL, f"needs {job.gpus} GPUs; the most free in an eligible pool is "
                                             f"{max(int(most), 0)}", planned)  # fmt: skip
        need_w = min(job.gpus * self.power.gpu_w(p, float(self.min_f[p])) for p in fits)
        if self.headroom_w < need_w:
            return Why(HoldReason.GRID_CAP, f"needs {need_w / 1e3:.0f} kW at its lowest power; "
                                            f"{max(self.headroom_w, 0.0) / 1e3:.0f} kW left under this slot's budget",
                       planned)  # fmt: skip
        return Why(HoldReason.DEFERRED_FOR_WIND, "GPUs and power are free now; the policy waits for cleaner energy",
                   planned)  # fmt: skip


def explain(
    report: TickReport,
    queued: Iterable[Any],
    power: SitePower,
    elig: Callable[[Any], Sequence[int]],
    *,
    schedule: Mapping[str, PlannedRun] | None = None,
    gated: Mapping[str, Why] | None = None,
    quota_room: Mapping[str, float] | None = None,
) -> dict[str, Why]:
    """Why each job in ``queued`` (the :class:`~scheduler.jobs.Job` of every job still queued after the
    tick's apply, gated ones included) did not start in the tick ``report`` describes (module docstring:
    the reasons in order of precedence). ``power``: the tick's :class:`SitePower`; ``elig``: pool indices a
    job may use; ``schedule``: :func:`planned_runs` of the policy's plan; ``gated``: :func:`gate`'s held;
    ``quota_room``: per tenant with a quota, the GPUs it leaves after the tick (a job the policy left out that
    needs more waits for ``quota`` whatever the pools have free)."""
    ex = Explainer(report, power, elig, schedule=schedule, gated=gated, quota_room=quota_room)
    return {j.job_id: ex.why(j) for j in queued}


# ------------------------------------------------------------------------------------------ the board


def iso_utc(unix_s: float) -> str:
    return datetime.fromtimestamp(unix_s, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class WhyBoard:
    """The last tick's reasons and plan, for the API threads. :meth:`publish` swaps, under a lock, the tick's
    :class:`Explainer` and the Job of each job queued after it (a dict the tick hands over and no longer
    touches); :meth:`fields` works a job's reason out on first read (then cached for that tick)."""

    _NULL: dict[str, Any] = {"reason": None, "reason_detail": None, "planned_start": None, "planned_end": None,
                             "planned_pool": None, "planned_power_fraction": None}  # fmt: skip

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._explainer: Explainer | None = None
        self._queued: Mapping[str, Any] = {}
        self._cache: dict[str, Why] = {}
        self._slot = 0
        self._epoch_unix_s = 0.0
        self._slot_s = 1.0
        #: tick published so far: while it is the same, :meth:`fields` answers the same (a page cache's key)
        self.version = 0

    def publish(self, explainer: Explainer, queued: Mapping[str, Any], *, slot: int, epoch_unix_s: float,
                slot_s: float) -> None:  # fmt: skip
        """``queued``: job id -> Job of every job queued after the tick (gated ones included)."""
        with self._lock:
            self._explainer, self._queued, self._cache = explainer, queued, {}
            self._slot, self._epoch_unix_s, self._slot_s = slot, epoch_unix_s, slot_s
            self.version += 1  # after the swap: a reader that read the old number builds its page again

    def get(self, job_id: str) -> Why | None:
        with self._lock:
            w = self._cache.get(job_id)
            if w is None and self._explainer is not None and job_id in self._queued:
                w = self._cache[job_id] = self._explainer.why(self._queued[job_id])
            return w

    def _iso(self, slot_offset: int, slot: int, epoch: float, slot_s: float) -> str:
        return iso_utc(epoch + (slot + slot_offset) * slot_s)

    def fields(self, job_id: str, state: str) -> dict[str, Any]:
        """The JSON fields of a job's view: a queued job's reason (``new`` when no tick has seen it) and planned
        run; a running job's planned end (where the plan runs it on); nulls otherwise."""
        if state not in ("queued", "running"):
            return dict(self._NULL)
        w = self.get(job_id) if state == "queued" else None
        with self._lock:
            ex = self._explainer
            slot, epoch, slot_s = self._slot, self._epoch_unix_s, self._slot_s
        if state == "running":
            p = ex.schedule.get(job_id) if ex is not None else None
            if p is None or p.start_slot != 0:
                return dict(self._NULL)
            return {**self._NULL, "planned_end": self._iso(p.end_slot, slot, epoch, slot_s), "planned_pool": p.pool,
                    "planned_power_fraction": p.mean_power_fraction}  # fmt: skip
        if w is None:
            return {**self._NULL, "reason": HoldReason.NEW.value, "reason_detail": "submitted after the last tick"}
        p = w.planned
        return {
            "reason": w.reason.value,
            "reason_detail": w.detail,
            "planned_start": self._iso(p.start_slot, slot, epoch, slot_s) if p else None,
            "planned_end": self._iso(p.end_slot, slot, epoch, slot_s) if p else None,
            "planned_pool": p.pool if p else None,
            "planned_power_fraction": p.mean_power_fraction if p else None,
        }
