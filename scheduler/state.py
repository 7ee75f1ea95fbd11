"""The persistent store of the control plane: jobs, actions (intent / outcome), placements (audit), usage,
congestion events, the signals observed for the deferral price (scheduler.deferral). SQLite in WAL mode with
``synchronous=FULL``: a submission is acknowledged only after its row is on disk, so a ``kill -9`` at any
moment loses nothing that was acknowledged. The one source of truth: the service's in-memory views are rebuilt
from it on every start.

Concurrency: one write connection guarded by a lock (SQLite allows one writer) and one read connection per
thread (WAL readers never block the writer). A commit with ``synchronous=FULL`` costs one fsync (about 4 ms
on the development VM), so writes are batched: :class:`SubmitQueue` commits every submission that arrived
while the previous fsync ran in one transaction (group commit; each is durable before it is acknowledged),
and the service journals a tick's actions as one transaction of intents and one of outcomes
(:meth:`StateStore.intend_many`, :meth:`StateStore.record_outcomes`).

Job counts by (state, tenant) are kept in memory (:meth:`StateStore.counts`), built by one aggregate query
at open and moved by every committed state change, so metrics never scan the jobs table.

Times: ``*_utc`` columns are ISO 8601 UTC strings for people and exports; ``*_unix_s`` columns are the
same instants as Unix seconds for arithmetic. The store never reads a clock: callers pass ``now_unix_s``.

Job states::

    queued --start--> running --finish--> finished
       ^                 |  \\--fail----> failed
       |--preempt/crash--/   \\--cancel--> cancelled      (queued --cancel--> cancelled)

Every executor action is journalled: an ``actions`` row with the intent is committed *before* the
executor is asked, and its outcome is written after. On restart, intents without an outcome are the
actions a crash interrupted; :meth:`StateStore.recover` reconciles them with what the executor still runs.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import queue
import secrets
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from scheduler.errors import InputError, WindwardError
from scheduler.jobs import Job, job_extras
from scheduler.models import JobSpec

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1

ACTIVE_STATES = ("queued", "running")
FINAL_STATES = ("finished", "failed", "cancelled")
JOB_STATES = ACTIVE_STATES + FINAL_STATES

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    tenant TEXT NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    gpus INTEGER NOT NULL,
    duration_s REAL NOT NULL,
    deadline_unix_s REAL,
    preemptible INTEGER NOT NULL,
    checkpoint_interval_s REAL NOT NULL,
    pool_selector TEXT,
    jurisdiction TEXT,
    clearance TEXT,
    entrypoint TEXT,
    priority INTEGER NOT NULL,
    spec_json TEXT NOT NULL,
    spec_sha256 TEXT NOT NULL,
    idempotency_key TEXT,
    state TEXT NOT NULL,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    pool TEXT,
    nodes_json TEXT NOT NULL DEFAULT '[]',
    power_fraction REAL NOT NULL DEFAULT 0,
    work_done_s REAL NOT NULL DEFAULT 0,
    checkpoint_work_s REAL NOT NULL DEFAULT 0,
    lost_work_s REAL NOT NULL DEFAULT 0,
    starts INTEGER NOT NULL DEFAULT 0,
    gpu_s REAL NOT NULL DEFAULT 0,
    energy_j REAL NOT NULL DEFAULT 0,
    carbon_g REAL NOT NULL DEFAULT 0,
    submitted_unix_s REAL NOT NULL,
    started_unix_s REAL,
    ended_unix_s REAL,
    updated_unix_s REAL NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_idem ON jobs(tenant, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state);
-- the job counts by (state, tenant) read at every open (_COUNTS_SQL) from this index alone, not the rows: a state
-- with 300,000 finished jobs opened in 0.5 s of CPU scanning them, 0.04 s with it (built once on an older state)
CREATE INDEX IF NOT EXISTS jobs_state_tenant ON jobs(state, tenant);
CREATE INDEX IF NOT EXISTS jobs_tenant_seq ON jobs(tenant, seq);
-- paging of the active jobs (/v1/queue) and of every job (/v1/jobs) in submission order, without a sort
CREATE INDEX IF NOT EXISTS jobs_seq ON jobs(seq);
CREATE INDEX IF NOT EXISTS jobs_active_seq ON jobs(seq) WHERE state IN ('queued', 'running');
CREATE INDEX IF NOT EXISTS jobs_active_tenant_seq ON jobs(tenant, seq) WHERE state IN ('queued', 'running');
CREATE TABLE IF NOT EXISTS actions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT,
    kind TEXT NOT NULL,
    params_json TEXT NOT NULL,
    intent_unix_s REAL NOT NULL,
    outcome TEXT,
    outcome_json TEXT,
    outcome_unix_s REAL
);
CREATE INDEX IF NOT EXISTS actions_open ON actions(outcome) WHERE outcome IS NULL;
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL,
    tenant TEXT NOT NULL,
    pool TEXT NOT NULL,
    labels_json TEXT NOT NULL,
    nodes_json TEXT NOT NULL,
    jurisdiction_required TEXT,
    clearance_required TEXT,
    time_unix_s REAL NOT NULL,
    time_utc TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS usage_daily (
    tenant TEXT NOT NULL,
    day TEXT NOT NULL,
    gpu_s REAL NOT NULL DEFAULT 0,
    energy_j REAL NOT NULL DEFAULT 0,
    carbon_g REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, day)
);
CREATE TABLE IF NOT EXISTS congestion (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    cap_mw REAL NOT NULL,
    start_unix_s REAL NOT NULL,
    end_unix_s REAL NOT NULL,
    created_by TEXT NOT NULL,
    created_unix_s REAL NOT NULL,
    reason TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS observed_signals (
    slot INTEGER PRIMARY KEY,
    slot_s REAL NOT NULL,
    wind_w REAL NOT NULL,
    carbon_g_per_kwh REAL NOT NULL,
    grid_cap_w REAL NOT NULL,
    site_max_w REAL NOT NULL
);
"""


def iso_utc(unix_s: float | None) -> str | None:
    """Unix seconds -> ISO 8601 UTC with a ``Z`` (None stays None)."""
    if unix_s is None:
        return None
    return _iso_utc(unix_s)


@functools.lru_cache(maxsize=4096)
def _iso_utc(unix_s: float) -> str:
    # cached: every row of one group commit (and of one tick) carries the same instant
    return datetime.fromtimestamp(unix_s, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def spec_digest(spec: JobSpec) -> str:
    """sha256 of the canonical JSON of a validated spec: the same job written differently has one digest."""
    return _canonical(spec)[1]


def _canonical(spec: JobSpec) -> tuple[str, str]:
    """(canonical JSON, its sha256): one dump serves both the stored spec and the idempotency digest."""
    canon = json.dumps(spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return canon, hashlib.sha256(canon.encode()).hexdigest()


class IdempotencyConflict(WindwardError):
    """The same Idempotency-Key was used by the same tenant for a different job spec."""


@dataclass(frozen=True, slots=True)
class JobRecord:
    """One row of ``jobs`` (what the API shows, what the service turns into a :class:`Job`)."""

    id: str
    seq: int
    tenant: str
    name: str
    kind: str
    gpus: int
    duration_s: float
    deadline_unix_s: float | None
    preemptible: bool
    checkpoint_interval_s: float
    pool_selector: str | None
    jurisdiction: str | None
    clearance: str | None
    entrypoint: str | None
    priority: int
    spec_json: str
    state: str
    cancel_requested: bool
    pool: str | None
    nodes: tuple[int, ...]
    power_fraction: float
    work_done_s: float
    checkpoint_work_s: float
    lost_work_s: float
    starts: int
    gpu_s: float
    energy_j: float
    carbon_g: float
    submitted_unix_s: float
    started_unix_s: float | None
    ended_unix_s: float | None
    updated_unix_s: float
    detail: str
    idempotency_key: str | None = None

    def to_job(self, epoch_unix_s: float, pools_allowed: tuple[str, ...] = ()) -> Job:
        """The internal :class:`Job` with times in seconds since the service epoch.

        ``priority`` is the spec's priority within the tenant's class; the class itself reaches the planner
        through ``Snapshot.tenant_info``. ``pools_allowed`` is the tenant's sovereignty restriction.
        """
        return _job(
            self.id, self.tenant, self.kind, self.submitted_unix_s, self.gpus, self.duration_s, self.deadline_unix_s,
            self.preemptible, self.pool_selector, self.priority, self.checkpoint_interval_s, self.jurisdiction,
            self.clearance, self.entrypoint, self.spec_json, epoch_unix_s, pools_allowed,
        )  # fmt: skip

    def view(self, spec: bool = True) -> dict[str, Any]:
        """The API shape of a job (DESIGN section 7: state, pool, progress, energy and carbon so far).
        ``spec`` False: without its last key, ``spec`` (see :meth:`view_json`)."""
        out = {
            "id": self.id,
            "tenant": self.tenant,
            "name": self.name,
            "kind": self.kind,
            "state": self.state,
            "cancel_requested": self.cancel_requested,
            "gpus": self.gpus,
            "pool": self.pool,
            "nodes": list(self.nodes),
            "power_fraction": self.power_fraction,
            "duration_s": self.duration_s,
            "work_done_s": self.work_done_s,
            "checkpoint_work_s": self.checkpoint_work_s,
            "progress": min(self.work_done_s / self.duration_s, 1.0) if self.duration_s > 0 else 0.0,
            "lost_work_s": self.lost_work_s,
            "starts": self.starts,
            "gpu_s": self.gpu_s,
            "energy_j": self.energy_j,
            "carbon_g": self.carbon_g,
            "priority": self.priority,
            "submitted_utc": iso_utc(self.submitted_unix_s),
            "started_utc": iso_utc(self.started_unix_s),
            "ended_utc": iso_utc(self.ended_unix_s),
            "detail": self.detail,
        }
        if spec:
            out["spec"] = json.loads(self.spec_json)
        return out

    def view_json_parts(self, dumps: Callable[[Any], bytes]) -> tuple[bytes, bytes]:
        """:meth:`view_json` without extra keys, cut where they go: the view up to ``detail`` (its object
        open) and ``,"spec":...}``. ``head + b"," + dumps(extra)[1:-1] + tail`` is ``view_json(dumps, extra)``
        for a non-empty ``extra`` whose keys the view has not (what a page cache keeps of a row)."""
        return dumps(self.view(spec=False))[:-1], b',"spec":' + self.spec_json.encode() + b"}"

    def view_json(self, dumps: Callable[[Any], bytes], extra: Mapping[str, Any] | None = None) -> bytes:
        """:meth:`view` (with ``extra`` keys) as JSON (``dumps``: the encoder of the reply), its ``spec``
        spliced in as stored (the canonical JSON of a validated spec), not parsed and encoded again: the same
        document, cheaper on the submission path and in every page of a list."""
        head = dumps(self.view(spec=False) | dict(extra) if extra else self.view(spec=False))
        return head[:-1] + b',"spec":' + self.spec_json.encode() + b"}"


_JOB_COLS = (
    "id, seq, tenant, name, kind, gpus, duration_s, deadline_unix_s, preemptible, checkpoint_interval_s, "
    "pool_selector, jurisdiction, clearance, entrypoint, priority, spec_json, state, cancel_requested, pool, "
    "nodes_json, power_fraction, work_done_s, checkpoint_work_s, lost_work_s, starts, gpu_s, energy_j, "
    "carbon_g, submitted_unix_s, started_unix_s, ended_unix_s, updated_unix_s, detail, idempotency_key"
)


_JOB_COL_NAMES = [c.strip() for c in _JOB_COLS.split(",")]
#: Where a row of ``_JOB_COLS`` (:meth:`StateStore.active_page_rows`) holds the job's id and state.
ROW_ID = _JOB_COL_NAMES.index("id")
ROW_STATE = _JOB_COL_NAMES.index("state")


#: The job counts by state and tenant, read at every open: from the covering index, so a long history of
#: finished jobs costs a restart an index scan, not a read of every row.
_COUNTS_SQL = "SELECT state, tenant, COUNT(*) FROM jobs INDEXED BY jobs_state_tenant GROUP BY state, tenant"


#: A new job's row (:meth:`StateStore._new_row`), state ``queued``.
_INSERT_JOB_SQL = (
    "INSERT INTO jobs (id, seq, tenant, name, kind, gpus, duration_s, deadline_unix_s, preemptible, "
    "checkpoint_interval_s, pool_selector, jurisdiction, clearance, entrypoint, priority, spec_json, "
    "spec_sha256, idempotency_key, state, submitted_unix_s, updated_unix_s) "
    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,'queued',?,?)"
)


#: The columns :func:`_job` reads, in its order (the one mapping of a row to a :class:`Job`).
_JOB_INPUT_COLS = (
    "id, tenant, kind, submitted_unix_s, gpus, duration_s, deadline_unix_s, preemptible, pool_selector, priority, "
    "checkpoint_interval_s, jurisdiction, clearance, entrypoint, spec_json"
)


def _job(
    job_id: str, tenant: str, kind: str, submitted_unix_s: float, gpus: int, duration_s: float,
    deadline_unix_s: float | None, preemptible: Any, pool_selector: str | None, priority: int,
    checkpoint_interval_s: float, jurisdiction: str | None, clearance: str | None, entrypoint: str | None,
    spec_json: str, epoch_unix_s: float, pools_allowed: tuple[str, ...],
) -> Job:  # fmt: skip
    """A stored job as the internal :class:`Job` (:meth:`JobRecord.to_job` and :meth:`StateStore.active_for_restart`)."""
    return Job(
        job_id=job_id,
        tenant=tenant,
        kind=kind,
        submit_s=max(submitted_unix_s - epoch_unix_s, 0.0),
        gpus=gpus,
        duration_s=duration_s,
        deadline_s=None if deadline_unix_s is None else max(deadline_unix_s - epoch_unix_s, 0.0),
        preemptible=bool(preemptible),
        pool=pool_selector,
        priority=priority,
        checkpoint_interval_s=checkpoint_interval_s,
        jurisdiction=jurisdiction,
        clearance=clearance,
        entrypoint=entrypoint,
        pools_allowed=pools_allowed,
        **job_extras(spec_json, epoch_unix_s),  # env, args, workdir, dependencies, begin (C, issue 15)
    )


class ActiveRow(NamedTuple):
    """What a restart needs of one active job (:meth:`StateStore.active_for_restart`): the :class:`Job` and
    where it stands; a tuple, not a :class:`JobRecord` (30,000 of them are built before the server is ready)."""

    job: Job
    seq: int
    state: str
    cancel_requested: bool
    pool: str | None
    nodes: tuple[int, ...]
    power_fraction: float
    work_done_s: float
    checkpoint_work_s: float
    started_unix_s: float | None  # when it first started, if it ever did (inference once served never expires)


def _nodes(nodes_json: str) -> tuple[int, ...]:
    # most rows are queued jobs on no node: skip the JSON parser for them (a restart reads every active row)
    return () if nodes_json == "[]" else tuple(json.loads(nodes_json))


def _record(r: Sequence[Any]) -> JobRecord:
    """The :class:`JobRecord` of a row of ``_JOB_COLS``."""
    return JobRecord(
        id=r[0], seq=r[1], tenant=r[2], name=r[3], kind=r[4], gpus=r[5], duration_s=r[6],
        deadline_unix_s=r[7], preemptible=bool(r[8]), checkpoint_interval_s=r[9], pool_selector=r[10],
        jurisdiction=r[11], clearance=r[12], entrypoint=r[13], priority=r[14], spec_json=r[15], state=r[16],
        cancel_requested=bool(r[17]), pool=r[18], nodes=_nodes(r[19]), power_fraction=r[20],
        work_done_s=r[21], checkpoint_work_s=r[22], lost_work_s=r[23], starts=r[24], gpu_s=r[25],
        energy_j=r[26], carbon_g=r[27], submitted_unix_s=r[28], started_unix_s=r[29], ended_unix_s=r[30],
        updated_unix_s=r[31], detail=r[32], idempotency_key=r[33],
    )  # fmt: skip


#: The :class:`JobRecord` of a row of :meth:`StateStore.active_page_rows`.
job_record = _record


@dataclass(frozen=True, slots=True)
class SubmitResult:
    record: JobRecord
    created: bool  # False: an earlier submission with the same Idempotency-Key


@dataclass(frozen=True, slots=True)
class SubmitRequest:
    """One submission waiting for the group commit."""

    tenant: str
    spec: JobSpec
    idempotency_key: str | None


@dataclass(frozen=True, slots=True)
class ActionIntent:
    """An executor action about to be taken (``kind``: start | preempt | set_power)."""

    kind: str
    job_id: str | None
    params: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class StartOutcome:
    """A start that the executor made: the job becomes ``running`` and the placement is audited."""

    action_id: int | None
    job_id: str
    pool: str
    pool_labels: Mapping[str, str]
    nodes: tuple[int, ...]
    power_fraction: float


@dataclass(frozen=True, slots=True)
class StopOutcome:
    """A running job stopped: ``new_state`` queued (preempted / its node failed: it resumes from
    ``checkpoint_work_s``, None: the stored checkpoint), finished, failed or cancelled."""

    action_id: int | None
    job_id: str
    new_state: str
    lost_work_s: float
    detail: str = ""
    checkpoint_work_s: float | None = None


@dataclass(frozen=True, slots=True)
class PlainOutcome:
    """The outcome of any other action (a power change, a start that did not fit, an executor error)."""

    action_id: int
    outcome: str
    data: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class UsageDelta:
    """Usage accrued by one job over one interval (written by the service loop after each tick)."""

    job_id: str
    tenant: str
    gpu_s: float
    energy_j: float
    carbon_g: float


class ObservedSignal(NamedTuple):
    """The signals a tick observed in its slot (slot 0 of its forecast) at absolute ``slot`` of the service's
    timeline: the deferral price's history (scheduler.deferral), kept for ``--defer-history-days`` so a
    restarted server resumes with it (table ``observed_signals``)."""

    slot: int
    slot_s: float
    wind_w: float
    carbon_g_per_kwh: float
    grid_cap_w: float
    site_max_w: float


@dataclass(frozen=True, slots=True)
class JobProgress:
    """What the executor reports for a running job."""

    job_id: str
    pool: str
    nodes: tuple[int, ...]
    power_fraction: float
    work_done_s: float
    checkpoint_work_s: float


@dataclass(frozen=True, slots=True)
class Congestion:
    id: int
    cap_mw: float
    start_unix_s: float
    end_unix_s: float
    created_by: str
    created_unix_s: float
    reason: str = ""

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "cap_mw": self.cap_mw,
            "start_utc": iso_utc(self.start_unix_s),
            "end_utc": iso_utc(self.end_unix_s),
            "created_by": self.created_by,
            "created_utc": iso_utc(self.created_unix_s),
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class OpenAction:
    id: int
    job_id: str | None
    kind: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    """What :meth:`StateStore.recover` did on start-up."""

    adopted: tuple[str, ...]  # running jobs the executor still runs
    requeued: tuple[str, ...]  # running jobs the executor lost: back to queued from their checkpoint
    lost_work_s: float
    open_actions: int  # intents a crash left without an outcome (now closed as "interrupted")
    orphans: tuple[str, ...] = ()  # jobs the executor runs that the store holds as finished / unknown: stop them


class StateStore:
    """SQLite (WAL, synchronous=FULL) store. Thread-safe; one writer at a time."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            parent = Path(self.path).parent
            try:
                parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise InputError(f"--state {self.path}: cannot create directory {parent}: {e.strerror}") from e
        self._write_lock = threading.RLock()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        try:
            self._w = self._connect()
            with self._write_lock:
                self._w.executescript(_SCHEMA)
                row = self._w.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
                if row is None:
                    self._w.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                elif int(row[0]) != SCHEMA_VERSION:
                    raise InputError(
                        f"--state {self.path}: schema version {row[0]}, this Windward reads {SCHEMA_VERSION}"
                    )
                seq = self._w.execute("SELECT COALESCE(MAX(seq), 0) FROM jobs").fetchone()[0]
        except sqlite3.DatabaseError as e:
            raise InputError(f"--state {self.path}: not a usable SQLite database: {e}") from e
        self._seq = int(seq)
        self._closed = False
        self._moves: list[tuple[str, str | None, str]] = []  # (tenant, from state, to state) in the open tx
        self._counts_lock = threading.Lock()
        # committed write transactions: every one, and every one that may have changed a row already there
        # (all but submit_many's inserts); see :meth:`versions`
        self._commits = 0
        self._changes = 0
        self._counts: dict[tuple[str, str], int] = {
            (str(st), str(t)): int(n)
            for st, t, n in self._w.execute(_COUNTS_SQL)
        }

    # -------------------------------------------------------------------------------- plumbing

    def _connect(self) -> sqlite3.Connection:
        c = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30.0)
        c.execute("PRAGMA journal_mode=WAL")
        c.execute("PRAGMA synchronous=FULL")  # an acknowledged commit is on disk
        c.execute("PRAGMA busy_timeout=30000")
        return c

    def _reader(self) -> sqlite3.Connection:
        if self.path == ":memory:":
            return self._w
        c = getattr(self._local, "conn", None)
        if c is None:
            c = self._connect()
            c.execute("PRAGMA query_only=1")
            self._local.conn = c
            with self._readers_lock:
                self._readers.append(c)
        return c

    @contextmanager
    def _tx(self, inserts_only: bool = False) -> Iterator[sqlite3.Connection]:
        """One write transaction: all of it commits or none of it (nothing half-applied). State moves noted
        with :meth:`_move` reach the in-memory counts only when the transaction commits. ``inserts_only``:
        the transaction adds new jobs (each after every job there) and changes no row already there, so
        :meth:`versions`' first number stays (the default, False, is the safe one: any change counts)."""
        with self._write_lock:
            self._w.execute("BEGIN IMMEDIATE")
            self._moves = []
            try:
                yield self._w
            except BaseException:
                self._moves = []
                self._w.execute("ROLLBACK")
                raise
            self._w.execute("COMMIT")
            # after the commit, never before: a reader that sees the old numbers may have read the new rows
            # (its page is built again next time), one that sees the new numbers has read them
            self._commits += 1
            if not inserts_only:
                self._changes += 1
            if self._moves:
                with self._counts_lock:
                    for tenant, old, new in self._moves:
                        if old is not None:
                            self._counts[(old, tenant)] = self._counts.get((old, tenant), 0) - 1
                        self._counts[(new, tenant)] = self._counts.get((new, tenant), 0) + 1
                self._moves = []

    def versions(self) -> tuple[int, int]:
        """``(changes, commits)``: the number of committed write transactions that may have changed a job
        already stored (anything but :meth:`submit_many`'s inserts), and of all of them. Read them before
        reading jobs: while ``changes`` is the same, every stored job reads the same (new jobs only come after
        the last one, in ``seq`` order); while ``commits`` is the same, nothing at all changed (what a page
        cache needs: scheduler.api)."""
        return self._changes, self._commits

    def _move(self, tenant: str, old: str | None, new: str) -> None:
        if old != new:
            self._moves.append((tenant, old, new))

    def counts(self) -> dict[tuple[str, str], int]:
        """Committed jobs by ``(state, tenant)`` (no query: kept in memory)."""
        with self._counts_lock:
            return {k: v for k, v in self._counts.items() if v}

    def count(self, state: str, tenant: str) -> int:
        """Committed jobs of ``tenant`` in ``state`` (one entry of :meth:`counts`, without copying them all:
        the queued-jobs limit asks at every submission)."""
        with self._counts_lock:
            return self._counts.get((state, tenant), 0)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._readers_lock:
            for c in self._readers:
                c.close()
            self._readers.clear()
        with self._write_lock:
            self._w.close()

    def check(self) -> bool:
        """Is the store open and answering? (for /readyz)"""
        try:
            self._reader().execute("SELECT 1").fetchone()
            return True
        except sqlite3.Error:
            return False

    # ------------------------------------------------------------------------------------- meta

    def meta(self, key: str) -> str | None:
        row = self._reader().execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self._tx() as c:
            c.execute("INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value", (key, value))

    def epoch_unix_s(self, default_unix_s: float) -> float:
        """The service epoch (time 0 of the control loop), fixed at the first start and kept across restarts."""
        with self._tx() as c:
            row = c.execute("SELECT value FROM meta WHERE key='epoch_unix_s'").fetchone()
            if row is not None:
                return float(row[0])
            c.execute("INSERT INTO meta VALUES ('epoch_unix_s', ?)", (repr(float(default_unix_s)),))
            return float(default_unix_s)

    # ------------------------------------------------------------------------------------- jobs

    def submit(
        self, tenant: str, spec: JobSpec, idempotency_key: str | None, now_unix_s: float
    ) -> SubmitResult:
        """Insert a job (state ``queued``) and commit it to disk before returning.

        With an ``idempotency_key``: the same key from the same tenant returns the job it created first
        (``created=False``); the same key with a different spec raises :class:`IdempotencyConflict`.
        """
        res = self.submit_many([SubmitRequest(tenant, spec, idempotency_key)], now_unix_s)[0]
        if isinstance(res, BaseException):
            raise res
        return res

    def submit_many(
        self, requests: Sequence[SubmitRequest], now_unix_s: float
    ) -> list[SubmitResult | IdempotencyConflict]:
        """Insert many submissions in ONE transaction (one fsync); each result is durable on return.

        Per request: a :class:`SubmitResult`, or the :class:`IdempotencyConflict` it raised (the others are
        unaffected). A key repeated inside the batch behaves exactly as if the requests came one by one.
        """
        prepared = [(r, *_canonical(r.spec)) for r in requests]
        out: list[SubmitResult | IdempotencyConflict] = []
        with self._tx(inserts_only=True) as c:
            seq0 = self._seq
            try:
                # every key of the batch looked up at once, and every new row inserted at once: each SQLite
                # call lets the interpreter go and takes it back, which waits for the event loop when it computes
                # (two calls a submission were ~4 hand-offs each; now a few per batch)
                known = self._known_keys(c, {(r.tenant, r.idempotency_key) for r in requests if r.idempotency_key is not None})
                rows: list[tuple[Any, ...]] = []
                for req, canon, digest in prepared:
                    key = req.idempotency_key
                    if key is not None:
                        hit = known.get((req.tenant, key))
                        if hit is not None:
                            if hit[1] != digest:
                                out.append(IdempotencyConflict(
                                    f"Idempotency-Key {key!r} was used for a different job spec (job {hit[0].id}); "
                                    "use a new key for a new job"
                                ))  # fmt: skip
                            else:
                                out.append(SubmitResult(hit[0], created=False))
                            continue
                    rec, row = self._new_row(req, canon, digest, now_unix_s)
                    rows.append(row)
                    if key is not None:
                        known[(req.tenant, key)] = (rec, digest)  # a key repeated later in the batch finds it
                    out.append(SubmitResult(rec, created=True))
                if rows:
                    c.executemany(_INSERT_JOB_SQL, rows)
            except BaseException:
                self._seq = seq0
                raise
        return out

    @staticmethod
    def _known_keys(
        c: sqlite3.Connection, keys: set[tuple[str, str]], chunk: int = 400
    ) -> dict[tuple[str, str], tuple[JobRecord, str]]:
        """The committed jobs under these (tenant, Idempotency-Key) pairs, with their spec digests: one
        query per tenant and ``chunk`` keys (the unique index ``jobs_idem``)."""
        by_tenant: dict[str, list[str]] = {}
        for tenant, key in keys:
            by_tenant.setdefault(tenant, []).append(key)
        found: dict[tuple[str, str], tuple[JobRecord, str]] = {}
        for tenant, ks in by_tenant.items():
            for i in range(0, len(ks), chunk):
                part = ks[i : i + chunk]
                for row in c.execute(
                    # (IN alone: SQLite looks each key up in the partial index; an added "IS NOT NULL" term made
                    # it a range scan of the tenant's keyed rows, EXPLAIN QUERY PLAN)
                    f"SELECT {_JOB_COLS}, spec_sha256 FROM jobs WHERE tenant=? "
                    f"AND idempotency_key IN ({','.join('?' * len(part))})",
                    (tenant, *part),
                ):
                    rec = _record(row[:-1])
                    found[(tenant, rec.idempotency_key or "")] = (rec, row[-1])
        return found

    def _new_row(self, req: SubmitRequest, canon: str, digest: str, now: float) -> tuple[JobRecord, tuple[Any, ...]]:
        """A new job's record and its row for :data:`_INSERT_JOB_SQL` (the next sequence number; the state move
        is noted for the counts, which see it when the transaction commits)."""
        spec = req.spec
        self._seq += 1
        job_id = "job-" + secrets.token_hex(8)
        deadline = spec.deadline.timestamp() if spec.deadline is not None else None
        row = (
            job_id, self._seq, req.tenant, spec.name, spec.kind, spec.gpus, spec.duration_s, deadline,
            int(spec.preemptible), spec.checkpoint_interval_s, spec.pool, spec.requires.jurisdiction,
            spec.requires.clearance, spec.entrypoint, spec.priority, canon, digest,
            req.idempotency_key, now, now,
        )  # fmt: skip
        self._move(req.tenant, None, "queued")
        # the row as stored, without reading it back (the defaults of the table, as in _SCHEMA)
        rec = JobRecord(
            id=job_id, seq=self._seq, tenant=req.tenant, name=spec.name, kind=spec.kind, gpus=spec.gpus,
            duration_s=float(spec.duration_s), deadline_unix_s=deadline, preemptible=bool(spec.preemptible),
            checkpoint_interval_s=float(spec.checkpoint_interval_s), pool_selector=spec.pool,
            jurisdiction=spec.requires.jurisdiction, clearance=spec.requires.clearance, entrypoint=spec.entrypoint,
            priority=spec.priority, spec_json=canon, state="queued", cancel_requested=False, pool=None, nodes=(),
            power_fraction=0.0, work_done_s=0.0, checkpoint_work_s=0.0, lost_work_s=0.0, starts=0, gpu_s=0.0,
            energy_j=0.0, carbon_g=0.0, submitted_unix_s=now, started_unix_s=None, ended_unix_s=None,
            updated_unix_s=now, detail="", idempotency_key=req.idempotency_key,
        )  # fmt: skip
        return rec, row

    def idempotency_known(self, tenant: str, key: str) -> bool:
        """Has ``tenant`` a committed job under this Idempotency-Key? (one lookup in the unique index: the
        API asks it only where a limit would refuse, so that a retry of an accepted job is never refused)"""
        row = self._reader().execute(
            "SELECT 1 FROM jobs WHERE tenant=? AND idempotency_key=?", (tenant, key)
        ).fetchone()
        return row is not None

    def get(self, job_id: str) -> JobRecord | None:
        row = self._reader().execute(f"SELECT {_JOB_COLS} FROM jobs WHERE id=?", (job_id,)).fetchone()
        return None if row is None else _record(row)

    def list_jobs(
        self,
        tenant: str | None = None,
        states: Iterable[str] | None = None,
        limit: int | None = None,
        after_seq: int = 0,
    ) -> list[JobRecord]:
        """Jobs in submission order; ``tenant`` None: all tenants (operator view)."""
        q = f"SELECT {_JOB_COLS} FROM jobs WHERE seq > ?"
        args: list[Any] = [after_seq]
        if tenant is not None:
            q += " AND tenant = ?"
            args.append(tenant)
        st = list(states) if states is not None else None
        if st is not None:
            q += f" AND state IN ({','.join('?' * len(st))})"
            args.extend(st)
        q += " ORDER BY seq"
        if limit is not None:
            q += " LIMIT ?"
            args.append(int(limit))
        return [_record(r) for r in self._reader().execute(q, args)]

    def active_page(self, tenant: str | None, after_seq: int, limit: int) -> tuple[list[JobRecord], int, bool]:
        """One page of the active (queued and running) jobs in submission order: at most ``limit`` jobs with
        ``seq > after_seq`` (``tenant`` None: every tenant's), the number of queued jobs before the page (so a
        queued job's position is that plus its rank among the page's queued jobs), and whether more follow.
        Bounded work per page (partial indexes on the active rows), never a read of the whole queue."""
        rows, before, more = self.active_page_rows(tenant, after_seq, limit)
        return [_record(r) for r in rows], before, more

    def active_page_rows(self, tenant: str | None, after_seq: int, limit: int) -> tuple[list[Any], int, bool]:
        """:meth:`active_page` with the page's jobs as rows (tuples in ``_JOB_COLS`` order, ``ROW_ID`` and
        ``ROW_STATE`` where the id and state are; :func:`job_record` makes the record of one): a page cache
        keeps what it made of a row by the row's values."""
        # the literal state list must match the partial indexes' WHERE for SQLite to use them
        active = "state IN ('queued', 'running')"
        where = f"{active} AND seq > ?"
        args: list[Any] = [after_seq]
        if tenant is not None:
            where += " AND tenant = ?"
            args.append(tenant)
        c = self._reader()
        # named: without statistics SQLite takes jobs_state and sorts every active row (48 ms at 30,000)
        index = "jobs_active_seq" if tenant is None else "jobs_active_tenant_seq"
        rows = c.execute(
            f"SELECT {_JOB_COLS} FROM jobs INDEXED BY {index} WHERE {where} ORDER BY seq LIMIT ?", [*args, limit + 1]
        ).fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        q = "SELECT COUNT(*) FROM jobs WHERE state IN ('queued', 'running') AND state = 'queued' AND seq <= ?"
        qargs: list[Any] = [after_seq]
        if tenant is not None:
            q += " AND tenant = ?"
            qargs.append(tenant)
        before = int(c.execute(q, qargs).fetchone()[0]) if after_seq > 0 else 0
        return rows, before, more

    def active_jobs(self) -> list[JobRecord]:
        return self.list_jobs(states=ACTIVE_STATES)

    @property
    def last_seq(self) -> int:
        """The sequence number of the last job committed (0: none)."""
        return self._seq

    def active_for_restart(self, epoch_unix_s: float, pools_allowed: Mapping[str, tuple[str, ...]]) -> list[ActiveRow]:
        """The active (queued and running) jobs in submission order as :class:`ActiveRow`, for the service's
        start: one read of the active rows through their partial index, only the columns a restart needs
        (finished jobs, the bulk of a long-lived state, are not read at all; neither are the columns only the
        API shows). ``pools_allowed``: tenant -> the pools it may use (sovereignty)."""
        rows = self._reader().execute(
            f"SELECT {_JOB_INPUT_COLS}, seq, state, cancel_requested, pool, nodes_json, power_fraction, work_done_s, "
            "checkpoint_work_s, started_unix_s FROM jobs INDEXED BY jobs_active_seq WHERE state IN ('queued', 'running') ORDER BY seq"
        ).fetchall()
        no_pools: tuple[str, ...] = ()
        return [
            ActiveRow(
                _job(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12], r[13], r[14],
                     epoch_unix_s, pools_allowed.get(r[1], no_pools)),
                r[15], r[16], bool(r[17]), r[18],
                _nodes(r[19]), r[20], r[21], r[22], r[23],
            )
            for r in rows
        ]  # fmt: skip

    def queued_after(
        self, after_seq: int, epoch_unix_s: float, pools_allowed: Mapping[str, tuple[str, ...]]
    ) -> tuple[list[Job], int]:
        """The jobs committed after ``after_seq`` that are still queued, in submission order, as :class:`Job`
        (the service's inbox, every tick), and the last sequence number read (``after_seq`` if none): only
        the columns a :class:`Job` needs, straight through :func:`_job`, no :class:`JobRecord` per row (at
        1,000 submissions/s a tick reads hundreds of new rows). ``pools_allowed``: tenant -> its pools."""
        rows = self._reader().execute(
            f"SELECT {_JOB_INPUT_COLS}, seq, state FROM jobs WHERE seq > ? ORDER BY seq", (after_seq,)
        ).fetchall()
        if not rows:
            return [], after_seq
        no_pools: tuple[str, ...] = ()
        jobs = [
            _job(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12], r[13], r[14],
                 epoch_unix_s, pools_allowed.get(r[1], no_pools))
            for r in rows
            if r[16] == "queued"
        ]  # fmt: skip
        return jobs, max(after_seq, rows[-1][15])

    def count_by_state(self, tenant: str | None = None) -> dict[str, int]:
        q = "SELECT state, COUNT(*) FROM jobs"
        args: tuple[Any, ...] = ()
        if tenant is not None:
            q += " WHERE tenant=?"
            args = (tenant,)
        out = dict.fromkeys(JOB_STATES, 0)
        for s, n in self._reader().execute(q + " GROUP BY state", args):
            out[s] = int(n)
        return out

    def request_cancel(self, job_id: str, now_unix_s: float) -> JobRecord:
        """Cancel: a queued job becomes ``cancelled`` at once; a running one is flagged and the service loop
        stops it (journalled) on its next tick. A finished / failed / cancelled job is left as it is."""
        with self._tx() as c:
            row = c.execute("SELECT state, tenant FROM jobs WHERE id=?", (job_id,)).fetchone()
            if row is None:
                raise KeyError(job_id)
            if row[0] == "queued":
                c.execute(
                    "UPDATE jobs SET state='cancelled', cancel_requested=1, ended_unix_s=?, updated_unix_s=?, "
                    "detail='cancelled while queued' WHERE id=?",
                    (now_unix_s, now_unix_s, job_id),
                )
                self._move(row[1], "queued", "cancelled")
            elif row[0] == "running":
                c.execute(
                    "UPDATE jobs SET cancel_requested=1, updated_unix_s=? WHERE id=?", (now_unix_s, job_id)
                )
            out = c.execute(f"SELECT {_JOB_COLS} FROM jobs WHERE id=?", (job_id,)).fetchone()
        return _record(out)

    # ----------------------------------------------------------------- journalled executor actions

    def intend(self, kind: str, job_id: str | None, params: dict[str, Any], now_unix_s: float) -> int:
        """Write the intent of an executor action (committed before the action is taken)."""
        return self.intend_many([ActionIntent(kind, job_id, params)], now_unix_s)[0]

    def intend_many(self, intents: Sequence[ActionIntent], now_unix_s: float) -> list[int]:
        """Write the intents of a tick's actions in one transaction (committed before any is taken);
        returns their action ids in order."""
        if not intents:
            return []
        with self._tx() as c:
            first = c.execute("SELECT COALESCE(MAX(id), 0) FROM actions").fetchone()[0] + 1
            # AUTOINCREMENT ids are consecutive inside one write transaction (we hold the only writer)
            c.executemany(
                "INSERT INTO actions (id, job_id, kind, params_json, intent_unix_s) VALUES (?,?,?,?,?)",
                [
                    (first + i, a.job_id, a.kind, json.dumps(a.params, sort_keys=True), now_unix_s)
                    for i, a in enumerate(intents)
                ],
            )
        return [first + i for i in range(len(intents))]

    def record_outcome(self, action_id: int, outcome: str, data: dict[str, Any], now_unix_s: float) -> None:
        self.record_outcomes(plain=[PlainOutcome(action_id, outcome, data)], now_unix_s=now_unix_s)

    def record_started(
        self,
        action_id: int,
        job_id: str,
        pool: str,
        pool_labels: dict[str, str],
        nodes: tuple[int, ...],
        power_fraction: float,
        now_unix_s: float,
    ) -> None:
        """Outcome of a start: job -> running, placement appended to the audit log, in one transaction."""
        gone = self.record_outcomes(
            started=[StartOutcome(action_id, job_id, pool, pool_labels, nodes, power_fraction)], now_unix_s=now_unix_s
        )
        if gone:
            raise KeyError(job_id)

    def record_stopped(
        self,
        action_id: int | None,
        job_id: str,
        new_state: str,
        lost_work_s: float,
        now_unix_s: float,
        detail: str = "",
    ) -> None:
        """A running job stopped: ``queued`` (preempted: resumes from its checkpoint), ``finished``,
        ``failed`` or ``cancelled``; its progress falls back to the checkpoint when work was lost."""
        self.record_outcomes(stopped=[StopOutcome(action_id, job_id, new_state, lost_work_s, detail)], now_unix_s=now_unix_s)

    def record_outcomes(
        self,
        *,
        started: Sequence[StartOutcome] = (),
        stopped: Sequence[StopOutcome] = (),
        plain: Sequence[PlainOutcome] = (),
        now_unix_s: float,
    ) -> list[str]:
        """The outcomes of a tick's actions in ONE transaction: stops first, then starts (a job moved to
        another pool is stopped, then started), then the rest.

        A start of a job that is no longer queued or running (cancelled while the tick ran, or unknown)
        changes no job and writes no audit row; its id is returned so the caller stops what the executor
        started, and its intent is closed as ``started_then_cancelled``.
        """
        for st in stopped:
            if st.new_state not in JOB_STATES or st.new_state == "running":
                raise ValueError(
                    f"record_stopped: new_state {st.new_state!r} is not one of queued/finished/failed/cancelled"
                )
        gone: list[str] = []
        with self._tx() as c:
            outcomes: list[tuple[str, str, float, int]] = []
            for st in stopped:
                row = c.execute("SELECT state, tenant FROM jobs WHERE id=?", (st.job_id,)).fetchone()
                if row is None:
                    raise KeyError(st.job_id)
                self._stop(c, st, row[0], row[1], now_unix_s)
                if st.action_id is not None:
                    outcomes.append((st.new_state, json.dumps({"lost_work_s": st.lost_work_s}), now_unix_s, st.action_id))
            audit: list[tuple[Any, ...]] = []
            for so in started:
                row = c.execute(
                    "SELECT state, tenant, jurisdiction, clearance FROM jobs WHERE id=?", (so.job_id,)
                ).fetchone()
                if row is None or row[0] not in ACTIVE_STATES:
                    gone.append(so.job_id)
                    if so.action_id is not None:
                        outcomes.append(("started_then_cancelled", json.dumps({"pool": so.pool}), now_unix_s, so.action_id))
                    continue
                nodes_json = json.dumps(list(so.nodes))
                c.execute(
                    "UPDATE jobs SET state='running', pool=?, nodes_json=?, power_fraction=?, starts=starts+1, "
                    "started_unix_s=COALESCE(started_unix_s, ?), updated_unix_s=? WHERE id=?",
                    (so.pool, nodes_json, so.power_fraction, now_unix_s, now_unix_s, so.job_id),
                )
                self._move(row[1], row[0], "running")
                audit.append((
                    so.job_id, row[1], so.pool, json.dumps(dict(so.pool_labels), sort_keys=True), nodes_json,
                    row[2], row[3], now_unix_s, iso_utc(now_unix_s),
                ))  # fmt: skip
                if so.action_id is not None:
                    outcomes.append(
                        ("started", json.dumps({"nodes": list(so.nodes), "pool": so.pool}), now_unix_s, so.action_id)
                    )
            c.executemany(
                "INSERT INTO audit (job_id, tenant, pool, labels_json, nodes_json, jurisdiction_required, "
                "clearance_required, time_unix_s, time_utc) VALUES (?,?,?,?,?,?,?,?,?)",
                audit,
            )
            outcomes.extend((o.outcome, json.dumps(dict(o.data), sort_keys=True), now_unix_s, o.action_id) for o in plain)
            c.executemany("UPDATE actions SET outcome=?, outcome_json=?, outcome_unix_s=? WHERE id=?", outcomes)
        return gone

    def _stop(self, c: sqlite3.Connection, st: StopOutcome, old: str, tenant: str, now: float) -> None:
        ended = now if st.new_state in FINAL_STATES else None
        ckpt = st.checkpoint_work_s
        if st.new_state == "queued":
            c.execute(
                "UPDATE jobs SET state='queued', pool=NULL, nodes_json='[]', power_fraction=0, "
                "checkpoint_work_s=MIN(COALESCE(?, checkpoint_work_s), duration_s), "
                "work_done_s=MIN(COALESCE(?, checkpoint_work_s), duration_s), "
                "lost_work_s=lost_work_s+?, updated_unix_s=?, detail=? WHERE id=?",
                (ckpt, ckpt, st.lost_work_s, now, st.detail, st.job_id),
            )
        elif st.new_state == "finished":
            c.execute(
                "UPDATE jobs SET state='finished', work_done_s=duration_s, checkpoint_work_s=duration_s, "
                "power_fraction=0, ended_unix_s=?, updated_unix_s=?, detail=? WHERE id=?",
                (ended, now, st.detail, st.job_id),
            )
        else:
            c.execute(
                "UPDATE jobs SET state=?, power_fraction=0, lost_work_s=lost_work_s+?, ended_unix_s=?, "
                "updated_unix_s=?, detail=? WHERE id=?",
                (st.new_state, st.lost_work_s, ended, now, st.detail, st.job_id),
            )
        self._move(tenant, old, st.new_state)

    def record_progress(
        self,
        progress: Sequence[JobProgress],
        usage: Sequence[UsageDelta],
        day: str,
        now_unix_s: float,
        *,
        tenant_usage: Sequence[UsageDelta] | None = None,
        meta: Mapping[str, str] | None = None,
        signal: ObservedSignal | None = None,
        signals_from_slot: int | None = None,
    ) -> None:
        """After a tick, in one transaction: the executor's progress of running jobs, the usage accrued per
        job (``usage``) and per tenant and day (``tenant_usage``; None: summed from ``usage``), meta keys, and
        the signals the tick observed (``signal``, replacing a row of the same slot), the observed signals
        before ``signals_from_slot`` or of another slot length deleted (the history is bounded)."""
        with self._tx() as c:
            if signal is not None:
                c.execute("INSERT OR REPLACE INTO observed_signals VALUES (?,?,?,?,?,?)", tuple(signal))
                if signals_from_slot is not None:
                    c.execute("DELETE FROM observed_signals WHERE slot < ? OR slot_s != ?",
                              (signals_from_slot, signal.slot_s))
            c.executemany(
                "UPDATE jobs SET pool=?, nodes_json=?, power_fraction=?, work_done_s=?, checkpoint_work_s=?, "
                "updated_unix_s=? WHERE id=? AND state='running'",
                [
                    (p.pool, json.dumps(list(p.nodes)), p.power_fraction, p.work_done_s, p.checkpoint_work_s,
                     now_unix_s, p.job_id)
                    for p in progress
                ],
            )  # fmt: skip
            c.executemany(
                "UPDATE jobs SET gpu_s=gpu_s+?, energy_j=energy_j+?, carbon_g=carbon_g+? WHERE id=?",
                [(u.gpu_s, u.energy_j, u.carbon_g, u.job_id) for u in usage],
            )
            per_tenant: dict[str, list[float]] = {}
            for u in usage if tenant_usage is None else tenant_usage:
                acc = per_tenant.setdefault(u.tenant, [0.0, 0.0, 0.0])
                acc[0] += u.gpu_s
                acc[1] += u.energy_j
                acc[2] += u.carbon_g
            c.executemany(
                "INSERT INTO usage_daily (tenant, day, gpu_s, energy_j, carbon_g) VALUES (?,?,?,?,?) "
                "ON CONFLICT(tenant, day) DO UPDATE SET gpu_s=gpu_s+excluded.gpu_s, "
                "energy_j=energy_j+excluded.energy_j, carbon_g=carbon_g+excluded.carbon_g",
                [(t, day, a[0], a[1], a[2]) for t, a in per_tenant.items()],
            )
            if meta:
                c.executemany(
                    "INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                    list(meta.items()),
                )

    def observed_signals(self, slot_s: float, from_slot: int) -> list[ObservedSignal]:
        """The observed signals kept (:meth:`record_progress`) of slot length ``slot_s`` from absolute slot
        ``from_slot`` on, oldest first."""
        q = ("SELECT slot, slot_s, wind_w, carbon_g_per_kwh, grid_cap_w, site_max_w FROM observed_signals "
             "WHERE slot >= ? AND slot_s = ? ORDER BY slot")
        return [ObservedSignal(*r) for r in self._reader().execute(q, (from_slot, slot_s))]

    def open_actions(self) -> list[OpenAction]:
        rows = self._reader().execute(
            "SELECT id, job_id, kind, params_json FROM actions WHERE outcome IS NULL ORDER BY id"
        ).fetchall()
        return [OpenAction(int(r[0]), r[1], r[2], json.loads(r[3])) for r in rows]

    def recover(
        self,
        executor_running: Iterable[str] | Mapping[str, Any],
        now_unix_s: float,
        pool_labels: Mapping[str, Mapping[str, str]] | None = None,
    ) -> RecoveryReport:
        """Reconcile the store with the executor after a (re)start, in one transaction.

        ``executor_running``: ids of the jobs the executor still runs (Ray re-adopts live placement groups;
        a fresh simulated executor runs nothing), or a mapping id -> ``RunningInfo``. A job recorded
        ``running`` that the executor still runs is adopted; one it lost goes back to ``queued`` and resumes
        from its last checkpoint (the work since is counted as lost). With a mapping, a job recorded
        ``queued`` that the executor runs (a crash between a start and its outcome) is adopted as running
        and its placement audited; jobs the executor runs that the store holds as finished, failed,
        cancelled or not at all are returned as ``orphans`` for the caller to stop. Intents a crash left
        without an outcome are closed as ``interrupted``: the reconciliation above decided their effect, so
        no action is ever applied twice.
        """
        info = executor_running if isinstance(executor_running, Mapping) else None
        alive = set(executor_running)
        adopted: list[str] = []
        requeued: list[str] = []
        orphans: list[str] = []
        lost = 0.0
        with self._tx() as c:
            rows = c.execute(
                "SELECT id, work_done_s, checkpoint_work_s, tenant FROM jobs WHERE state='running'"
            ).fetchall()
            for job_id, work, ckpt, tenant in rows:
                if job_id in alive:
                    adopted.append(job_id)
                    continue
                loss = max(float(work) - float(ckpt), 0.0)
                lost += loss
                requeued.append(job_id)
                c.execute(
                    "UPDATE jobs SET state='queued', pool=NULL, nodes_json='[]', power_fraction=0, "
                    "work_done_s=checkpoint_work_s, lost_work_s=lost_work_s+?, updated_unix_s=?, "
                    "detail='resumed from checkpoint after a restart' WHERE id=?",
                    (loss, now_unix_s, job_id),
                )
                self._move(tenant, "running", "queued")
            known = set(adopted)
            for job_id in sorted(alive - known):
                row = c.execute(
                    "SELECT state, tenant, jurisdiction, clearance FROM jobs WHERE id=?", (job_id,)
                ).fetchone()
                ri = info.get(job_id) if info is not None else None
                if row is None or row[0] != "queued" or ri is None:
                    orphans.append(job_id)
                    continue
                nodes_json = json.dumps(list(ri.nodes))
                c.execute(
                    "UPDATE jobs SET state='running', pool=?, nodes_json=?, power_fraction=?, starts=starts+1, "
                    "started_unix_s=COALESCE(started_unix_s, ?), updated_unix_s=?, "
                    "detail='adopted after a restart' WHERE id=?",
                    (ri.pool, nodes_json, ri.power_fraction, now_unix_s, now_unix_s, job_id),
                )
                labels = dict((pool_labels or {}).get(ri.pool, {}))
                c.execute(
                    "INSERT INTO audit (job_id, tenant, pool, labels_json, nodes_json, jurisdiction_required, "
                    "clearance_required, time_unix_s, time_utc) VALUES (?,?,?,?,?,?,?,?,?)",
                    (job_id, row[1], ri.pool, json.dumps(labels, sort_keys=True), nodes_json, row[2], row[3],
                     now_unix_s, iso_utc(now_unix_s)),
                )  # fmt: skip
                # the interrupted start of this job did happen: close its intent as such
                c.execute(
                    "UPDATE actions SET outcome='started', outcome_json=?, outcome_unix_s=? "
                    "WHERE id=(SELECT MAX(id) FROM actions WHERE job_id=? AND kind='start' AND outcome IS NULL)",
                    (json.dumps({"adopted": True, "pool": ri.pool}), now_unix_s, job_id),
                )
                self._move(row[1], "queued", "running")
                adopted.append(job_id)
            # Cancellations that the crash interrupted on jobs that are no longer running complete now.
            for job_id, tenant in c.execute(
                "SELECT id, tenant FROM jobs WHERE state='queued' AND cancel_requested=1"
            ).fetchall():
                c.execute(
                    "UPDATE jobs SET state='cancelled', ended_unix_s=?, updated_unix_s=? WHERE id=?",
                    (now_unix_s, now_unix_s, job_id),
                )
                self._move(tenant, "queued", "cancelled")
            n_open = c.execute(
                "UPDATE actions SET outcome='interrupted', outcome_json='{}', outcome_unix_s=? WHERE outcome IS NULL",
                (now_unix_s,),
            ).rowcount
        return RecoveryReport(tuple(adopted), tuple(requeued), lost, int(n_open), tuple(orphans))

    # ------------------------------------------------------------------------------------ usage

    def usage_by_tenant(self, since_day: str | None = None) -> dict[str, dict[str, float]]:
        q = "SELECT tenant, SUM(gpu_s), SUM(energy_j), SUM(carbon_g) FROM usage_daily"
        args: tuple[Any, ...] = ()
        if since_day is not None:
            q += " WHERE day >= ?"
            args = (since_day,)
        q += " GROUP BY tenant"
        return {
            t: {"gpu_s": float(g or 0), "energy_j": float(e or 0), "carbon_g": float(cg or 0)}
            for t, g, e, cg in self._reader().execute(q, args)
        }

    def usage_daily(self, tenant: str | None = None, since_day: str | None = None) -> list[dict[str, Any]]:
        q = "SELECT tenant, day, gpu_s, energy_j, carbon_g FROM usage_daily WHERE 1=1"
        args: tuple[Any, ...] = ()
        if tenant is not None:
            q += " AND tenant=?"
            args += (tenant,)
        if since_day is not None:
            q += " AND day >= ?"
            args += (since_day,)
        return [
            {"tenant": t, "day": d, "gpu_s": g, "energy_j": e, "carbon_g": cg}
            for t, d, g, e, cg in self._reader().execute(q + " ORDER BY day, tenant", args)
        ]

    def running_gpus_by_tenant(self) -> dict[str, int]:
        return {
            t: int(n)
            for t, n in self._reader().execute("SELECT tenant, SUM(gpus) FROM jobs WHERE state='running' GROUP BY tenant")
        }

    def demand_gpus_by_tenant(self) -> dict[str, int]:
        """GPUs asked for by each tenant's queued and running jobs (its demand right now)."""
        return {
            t: int(n)
            for t, n in self._reader().execute(
                "SELECT tenant, SUM(gpus) FROM jobs WHERE state IN ('queued','running') GROUP BY tenant"
            )
        }

    # ------------------------------------------------------------------------------------ audit

    def audit(
        self, since_unix_s: float | None = None, limit: int | None = None, after_id: int = 0
    ) -> list[dict[str, Any]]:
        """Placements in order of their ``id``: those after ``after_id`` (a page's cursor: the id of the
        previous page's last row), at most ``limit`` (the primary key: bounded work per page)."""
        q = (
            "SELECT id, job_id, tenant, pool, labels_json, nodes_json, jurisdiction_required, clearance_required, "
            "time_unix_s, time_utc FROM audit WHERE id > ?"
        )
        args: list[Any] = [int(after_id)]
        if since_unix_s is not None:
            q += " AND time_unix_s >= ?"
            args.append(since_unix_s)
        q += " ORDER BY id"
        if limit is not None:
            q += " LIMIT ?"
            args.append(int(limit))
        return [
            {
                "id": r[0], "job_id": r[1], "tenant": r[2], "pool": r[3], "labels": json.loads(r[4]),
                "nodes": json.loads(r[5]), "jurisdiction_required": r[6], "clearance_required": r[7],
                "time_utc": r[9],
            }
            for r in self._reader().execute(q, args)
        ]  # fmt: skip

    # ------------------------------------------------------------------------------- congestion

    def add_congestion(
        self, cap_mw: float, start_unix_s: float, end_unix_s: float, created_by: str, now_unix_s: float, reason: str
    ) -> Congestion:
        with self._tx() as c:
            cur = c.execute(
                "INSERT INTO congestion (cap_mw, start_unix_s, end_unix_s, created_by, created_unix_s, reason) "
                "VALUES (?,?,?,?,?,?)",
                (cap_mw, start_unix_s, end_unix_s, created_by, now_unix_s, reason),
            )
            cid = int(cur.lastrowid or 0)
        return Congestion(cid, cap_mw, start_unix_s, end_unix_s, created_by, now_unix_s, reason)

    def congestion_events(self, active_after_unix_s: float | None = None) -> list[Congestion]:
        q = "SELECT id, cap_mw, start_unix_s, end_unix_s, created_by, created_unix_s, reason FROM congestion"
        args: tuple[Any, ...] = ()
        if active_after_unix_s is not None:
            q += " WHERE end_unix_s > ?"
            args = (active_after_unix_s,)
        return [Congestion(*r) for r in self._reader().execute(q + " ORDER BY id", args)]


# ==================================================================================== group commit


class SubmitQueue:
    """Group commit for submissions: one committer thread writes every submission waiting in its queue in
    ONE transaction (:meth:`StateStore.submit_many`), so N concurrent clients share one fsync instead of
    queueing for N. Each future resolves only after its transaction has committed (durable), so the API
    acknowledges nothing that a ``kill -9`` could lose. Batching is natural: whatever arrives while one
    commit runs goes into the next one; nothing waits for a timer.

    ``now_unix_s`` gives the submission time written for a batch; ``on_commit`` is called (on the
    committer thread) with each batch's results, e.g. to wake the control loop.
    """

    def __init__(
        self,
        store: StateStore,
        now_unix_s: Callable[[], float],
        *,
        max_batch: int = 1024,
        on_commit: Callable[[Sequence[SubmitResult | IdempotencyConflict]], None] | None = None,
    ) -> None:
        self._store = store
        self._now = now_unix_s
        self._max_batch = int(max_batch)
        self._on_commit = on_commit
        # each item: the request and its waiter, a concurrent Future or (event loop, asyncio Future)
        self._q: queue.SimpleQueue[tuple[SubmitRequest, Any] | None] = queue.SimpleQueue()
        self._closed = False
        self.batches = 0
        self.submissions = 0
        self._thread = threading.Thread(target=self._run, name="windward-submit-commit", daemon=True)
        self._thread.start()

    def put(self, req: SubmitRequest) -> Future[SubmitResult]:
        """Queue a submission; the future holds its :class:`SubmitResult` (or raises its error)."""
        fut: Future[SubmitResult] = Future()
        if self._closed:
            fut.set_exception(WindwardError("the server is shutting down; retry with the same Idempotency-Key"))
            return fut
        self._q.put((req, fut))
        return fut

    def put_async(self, req: SubmitRequest, loop: asyncio.AbstractEventLoop) -> asyncio.Future[SubmitResult]:
        """Like :meth:`put` for a caller on an event loop: the committer settles every waiter of one loop
        with a single ``call_soon_threadsafe`` per batch (one wake-up of the loop, not one per request)."""
        fut: asyncio.Future[SubmitResult] = loop.create_future()
        if self._closed:
            fut.set_exception(WindwardError("the server is shutting down; retry with the same Idempotency-Key"))
            return fut
        self._q.put((req, (loop, fut)))
        return fut

    def close(self) -> None:
        """Commit what is queued, then stop the thread."""
        if self._closed:
            return
        self._closed = True
        self._q.put(None)
        self._thread.join(timeout=30)

    def _run(self) -> None:
        stop = False
        while not stop:
            item = self._q.get()
            if item is None:
                break
            batch = [item]
            while len(batch) < self._max_batch:
                try:
                    nxt = self._q.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            failed = False
            try:
                results: list[Any] = list(self._store.submit_many([r for r, _ in batch], self._now()))
            except BaseException as e:  # noqa: BLE001 - every waiting client gets the reason
                log.exception("group commit of %d submission(s) failed", len(batch))
                results = [e] * len(batch)
                failed = True
            else:
                self.batches += 1
                self.submissions += len(batch)
            by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any]]] = {}
            for (_, waiter), res in zip(batch, results):
                if isinstance(waiter, Future):
                    if isinstance(res, BaseException):
                        waiter.set_exception(res)
                    else:
                        waiter.set_result(res)
                else:
                    by_loop.setdefault(waiter[0], []).append((waiter[1], res))
            for loop, items in by_loop.items():
                try:
                    loop.call_soon_threadsafe(_settle, items)
                except RuntimeError:  # the loop is closed: nobody waits any more
                    pass
            if self._on_commit is not None and not failed:
                try:
                    self._on_commit(results)
                except Exception:  # noqa: BLE001 - a hook must not stop the committer
                    log.exception("on_commit hook failed")


def _settle(items: list[tuple[asyncio.Future[Any], Any]]) -> None:
    """On the event loop: resolve the waiters of one committed batch."""
    for fut, res in items:
        if fut.done():
            continue
        if isinstance(res, BaseException):
            fut.set_exception(res)
        else:
            fut.set_result(res)
