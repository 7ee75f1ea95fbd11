"""The control loop's job ledger: one :class:`LoopJob` per job (its state machine: pending -> queued ->
running -> finished | expired | cancelled, back to queued when preempted or its node fails), where and how
it ran as run segments, and the running jobs as arrays (:class:`RunTable`) for the per-slot accounting.
Mutable, owned by :class:`scheduler.control.ControlLoop`; nothing here calls an executor.

The journal seam (:class:`Journal`): the loop writes the *intent* of every executor action before it acts
and the *outcome* after (:class:`Intent`, :class:`Outcome`), and reports job stops that no action caused
(finished, node failure, expired inference). The simulation journals nothing (``journal=None``); the server
journals into SQLite (``scheduler.service``), which is how its crash recovery knows what was under way."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from scheduler.jobs import Job
from scheduler.policies.base import JobState


@dataclass(slots=True)
class LoopJob:
    """The control loop's bookkeeping for one job (mutable state, owned by the loop).

    Where and how the job ran is kept as run segments ``(first slot, n slots, power fraction, pool)``, not
    one entry per slot; ``slots``, ``fractions``, ``run_fractions`` and ``pools_by_slot`` expand them (the
    segment of a job running now reaches up to the loop's current slot)."""

    job: Job
    state: str = "pending"  # pending | queued | running | finished | expired | cancelled
    work_done_s: float = 0.0
    checkpoint_work_s: float = 0.0
    pool: str | None = None
    power_fraction: float = 1.0
    nodes: tuple[int, ...] = ()
    first_start_s: float | None = None
    end_s: float | None = None
    preemptions: int = 0
    failures: int = 0
    lost_work_s: float = 0.0
    energy_j: float = 0.0
    carbon_g: float = 0.0
    segments: list[tuple[int, int, float, str]] = field(default_factory=list)
    last_run_fraction: float = 1.0  # the share of its final slot a finished job ran
    _js: JobState | None = None
    _open: tuple[int, float, str] | None = None  # (first slot, fraction, pool) of the segment running now
    _now: list[int] | None = None  # the loop's current slot, shared by its records

    def job_state(self) -> JobState:
        js = self._js
        if js is None:
            js = JobState(
                job=self.job,
                state="running" if self.state == "running" else "queued",
                work_done_s=self.work_done_s,
                checkpoint_work_s=self.checkpoint_work_s,
                pool=self.pool,
                power_fraction=self.power_fraction,
                nodes=self.nodes,
            )
            self._js = js
        return js

    def touch(self) -> None:
        self._js = None

    def _all_segments(self) -> list[tuple[int, int, float, str]]:
        segs = list(self.segments)
        if self._open is not None and self._now is not None:
            first, f, pool = self._open
            if self._now[0] > first:
                segs.append((first, self._now[0] - first, f, pool))
        return segs

    @property
    def slots(self) -> list[int]:
        return [t for first, n, _, _ in self._all_segments() for t in range(first, first + n)]

    @property
    def fractions(self) -> list[float]:
        return [f for _, n, f, _ in self._all_segments() for _ in range(n)]

    @property
    def pools_by_slot(self) -> list[str]:
        return [p for _, n, _, p in self._all_segments() for _ in range(n)]

    @property
    def run_fractions(self) -> list[float]:
        out = [1.0] * sum(n for _, n, _, _ in self._all_segments())
        if out and self.state == "finished":
            out[-1] = self.last_run_fraction
        return out


@dataclass(frozen=True, slots=True)
class Intent:
    """An executor action the loop is about to take: ``kind`` start | preempt | set_power."""

    kind: str
    job_id: str
    params: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of an action (``action``: the journal's handle of its :class:`Intent`) or of a job without
    one (``action`` None: finished, failed with its node, expired).

    ``kind``: ``started`` (the job runs in ``pool`` on ``nodes`` at ``power_fraction``), ``stopped`` (the
    job's state is now ``final_state``: queued (it resumes from ``resume_work_s``), finished, failed or
    cancelled, having lost ``lost_s`` of work), or any other word for an action that changed no job's state
    (``ok``, ``error``, ``no_fit``, ``stopped_after_cancel``) with ``data``."""

    action: Any
    job_id: str
    kind: str
    pool: str = ""
    nodes: tuple[int, ...] = ()
    power_fraction: float = 1.0
    final_state: str = ""
    lost_s: float = 0.0
    detail: str = ""
    resume_work_s: float | None = None
    data: Mapping[str, Any] = field(default_factory=dict)


class Journal(Protocol):
    """Where the loop writes intents before it acts and outcomes after (module docstring)."""

    def intend(self, intents: Sequence[Intent]) -> Sequence[Any]:
        """Make the intents durable before any is carried out; returns one handle per intent, in order."""
        ...

    def record(self, outcomes: Sequence[Outcome]) -> Sequence[str]:
        """Record outcomes (one batch). Returns the ids of jobs reported ``started`` that may no longer run
        (cancelled meanwhile): the loop stops them again at once."""
        ...


class RunTable:
    """The running jobs as arrays (one row each), for the per-slot power and usage accounting."""

    def __init__(self) -> None:
        self.row: dict[str, int] = {}
        self.free_rows: list[int] = []
        self.n = 0
        cap = 1024
        self.used = np.zeros(cap, dtype=bool)
        self.gpus = np.zeros(cap)
        self.pool = np.zeros(cap, dtype=np.int64)
        self.frac = np.zeros(cap)
        self.tenant = np.zeros(cap, dtype=np.int64)
        self.energy_j = np.zeros(cap)  # since the last flush into the record
        self.carbon_g = np.zeros(cap)

    def _grow(self) -> None:
        cap = self.used.shape[0] * 2
        for name in ("used", "gpus", "pool", "frac", "tenant", "energy_j", "carbon_g"):
            a = getattr(self, name)
            b = np.zeros(cap, dtype=a.dtype)
            b[: a.shape[0]] = a
            setattr(self, name, b)

    def add(self, job_id: str, gpus: int, pool: int, frac: float, tenant: int) -> None:
        if self.free_rows:
            r = self.free_rows.pop()
        else:
            if self.n == self.used.shape[0]:
                self._grow()
            r = self.n
            self.n += 1
        self.row[job_id] = r
        self.used[r] = True
        self.gpus[r], self.pool[r], self.frac[r], self.tenant[r] = gpus, pool, frac, tenant
        self.energy_j[r] = 0.0
        self.carbon_g[r] = 0.0

    def remove(self, job_id: str) -> tuple[float, float]:
        """Free the job's row; returns its energy and carbon since the last flush."""
        r = self.row.pop(job_id)
        self.used[r] = False
        self.free_rows.append(r)
        return float(self.energy_j[r]), float(self.carbon_g[r])


class StatesOf(Mapping[str, JobState]):
    """``records`` seen as job id -> JobState (cached per record), without building a dict each tick."""

    __slots__ = ("_records",)

    def __init__(self, records: Mapping[str, LoopJob]) -> None:
        self._records = records

    def __getitem__(self, job_id: str) -> JobState:
        return self._records[job_id].job_state()

    def get(self, job_id: str, default: JobState | None = None) -> JobState | None:  # type: ignore[override]
        rec = self._records.get(job_id)
        return rec.job_state() if rec is not None else default

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._records

    def __iter__(self) -> Iterator[str]:
        return iter(self._records)

    def __len__(self) -> int:
        return len(self._records)


class JobsOf(Mapping[str, Job]):
    """``records`` seen as job id -> Job, without building a dict each tick."""

    __slots__ = ("_records",)

    def __init__(self, records: Mapping[str, LoopJob]) -> None:
        self._records = records

    def __getitem__(self, job_id: str) -> Job:
        return self._records[job_id].job

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._records

    def __iter__(self) -> Iterator[str]:
        return iter(self._records)

    def __len__(self) -> int:
        return len(self._records)
