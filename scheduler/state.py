"""The persistent store of the control plane: jobs, actions (intent / outcome), placements (audit), usage,
congestion events. SQLite in WAL mode with ``synchronous=FULL``: a submission is acknowledged only after
its row is on disk, so a ``kill -9`` at any moment loses nothing that was acknowledged. The one source of
truth: the service's in-memory views are rebuilt from it on every start.

Concurrency: one write connection guarded by a lock (SQLite allows one writer; a commit with fsync costs
~0.2 ms here) and one read connection per thread (WAL readers never block the writer).

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

import hashlib
import json
import logging
import secrets
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from scheduler.errors import InputError, WindwardError
from scheduler.jobs import Job
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
CREATE INDEX IF NOT EXISTS jobs_tenant_seq ON jobs(tenant, seq);
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
"""


def iso_utc(unix_s: float | None) -> str | None:
    """Unix seconds -> ISO 8601 UTC with a ``Z`` (None stays None)."""
    if unix_s is None:
        return None
    return datetime.fromtimestamp(unix_s, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def spec_digest(spec: JobSpec) -> str:
    """sha256 of the canonical JSON of a validated spec: the same job written differently has one digest."""
    canon = json.dumps(spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canon.encode()).hexdigest()


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
        return Job(
            job_id=self.id,
            tenant=self.tenant,
            kind=self.kind,
            submit_s=max(self.submitted_unix_s - epoch_unix_s, 0.0),
            gpus=self.gpus,
            duration_s=self.duration_s,
            deadline_s=None if self.deadline_unix_s is None else max(self.deadline_unix_s - epoch_unix_s, 0.0),
            preemptible=self.preemptible,
            pool=self.pool_selector,
            priority=self.priority,
            checkpoint_interval_s=self.checkpoint_interval_s,
            jurisdiction=self.jurisdiction,
            clearance=self.clearance,
            entrypoint=self.entrypoint,
            pools_allowed=pools_allowed,
        )

    def view(self) -> dict[str, Any]:
        """The API shape of a job (DESIGN section 7: state, pool, progress, energy and carbon so far)."""
        return {
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
            "spec": json.loads(self.spec_json),
        }


_JOB_COLS = (
    "id, seq, tenant, name, kind, gpus, duration_s, deadline_unix_s, preemptible, checkpoint_interval_s, "
    "pool_selector, jurisdiction, clearance, entrypoint, priority, spec_json, state, cancel_requested, pool, "
    "nodes_json, power_fraction, work_done_s, checkpoint_work_s, lost_work_s, starts, gpu_s, energy_j, "
    "carbon_g, submitted_unix_s, started_unix_s, ended_unix_s, updated_unix_s, detail, idempotency_key"
)


def _record(r: Sequence[Any]) -> JobRecord:
    return JobRecord(
        id=r[0], seq=r[1], tenant=r[2], name=r[3], kind=r[4], gpus=r[5], duration_s=r[6],
        deadline_unix_s=r[7], preemptible=bool(r[8]), checkpoint_interval_s=r[9], pool_selector=r[10],
        jurisdiction=r[11], clearance=r[12], entrypoint=r[13], priority=r[14], spec_json=r[15], state=r[16],
        cancel_requested=bool(r[17]), pool=r[18], nodes=tuple(json.loads(r[19])), power_fraction=r[20],
        work_done_s=r[21], checkpoint_work_s=r[22], lost_work_s=r[23], starts=r[24], gpu_s=r[25],
        energy_j=r[26], carbon_g=r[27], submitted_unix_s=r[28], started_unix_s=r[29], ended_unix_s=r[30],
        updated_unix_s=r[31], detail=r[32], idempotency_key=r[33],
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class SubmitResult:
    record: JobRecord
    created: bool  # False: an earlier submission with the same Idempotency-Key


@dataclass(frozen=True, slots=True)
class UsageDelta:
    """Usage accrued by one job over one interval (written by the service loop after each tick)."""

    job_id: str
    tenant: str
    gpu_s: float
    energy_j: float
    carbon_g: float


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
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: all of it commits or none of it (nothing half-applied)."""
        with self._write_lock:
            self._w.execute("BEGIN IMMEDIATE")
            try:
                yield self._w
            except BaseException:
                self._w.execute("ROLLBACK")
                raise
            self._w.execute("COMMIT")

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
        digest = spec_digest(spec)
        spec_json = spec.model_dump_json()
        with self._tx() as c:
            if idempotency_key is not None:
                row = c.execute(
                    f"SELECT {_JOB_COLS}, spec_sha256 FROM jobs WHERE tenant=? AND idempotency_key=?",
                    (tenant, idempotency_key),
                ).fetchone()
                if row is not None:
                    if row[-1] != digest:
                        raise IdempotencyConflict(
                            f"Idempotency-Key {idempotency_key!r} was used for a different job spec "
                            f"(job {row[0]}); use a new key for a new job"
                        )
                    return SubmitResult(_record(row[:-1]), created=False)
            self._seq += 1
            job_id = "job-" + secrets.token_hex(8)
            deadline = spec.deadline.timestamp() if spec.deadline is not None else None
            try:
                c.execute(
                    "INSERT INTO jobs (id, seq, tenant, name, kind, gpus, duration_s, deadline_unix_s, preemptible, "
                    "checkpoint_interval_s, pool_selector, jurisdiction, clearance, entrypoint, priority, spec_json, "
                    "spec_sha256, idempotency_key, state, submitted_unix_s, updated_unix_s) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,'queued',?,?)",
                    (
                        job_id, self._seq, tenant, spec.name, spec.kind, spec.gpus, spec.duration_s, deadline,
                        int(spec.preemptible), spec.checkpoint_interval_s, spec.pool, spec.requires.jurisdiction,
                        spec.requires.clearance, spec.entrypoint, spec.priority, spec_json, digest,
                        idempotency_key, now_unix_s, now_unix_s,
                    ),
                )  # fmt: skip
            except BaseException:
                self._seq -= 1
                raise
            row = c.execute(f"SELECT {_JOB_COLS} FROM jobs WHERE id=?", (job_id,)).fetchone()
        return SubmitResult(_record(row), created=True)

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

    def active_jobs(self) -> list[JobRecord]:
        return self.list_jobs(states=ACTIVE_STATES)

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
            row = c.execute("SELECT state FROM jobs WHERE id=?", (job_id,)).fetchone()
            if row is None:
                raise KeyError(job_id)
            if row[0] == "queued":
                c.execute(
                    "UPDATE jobs SET state='cancelled', cancel_requested=1, ended_unix_s=?, updated_unix_s=?, "
                    "detail='cancelled while queued' WHERE id=?",
                    (now_unix_s, now_unix_s, job_id),
                )
            elif row[0] == "running":
                c.execute(
                    "UPDATE jobs SET cancel_requested=1, updated_unix_s=? WHERE id=?", (now_unix_s, job_id)
                )
            out = c.execute(f"SELECT {_JOB_COLS} FROM jobs WHERE id=?", (job_id,)).fetchone()
        return _record(out)

    # ----------------------------------------------------------------- journalled executor actions

    def intend(self, kind: str, job_id: str | None, params: dict[str, Any], now_unix_s: float) -> int:
        """Write the intent of an executor action (committed before the action is taken)."""
        with self._tx() as c:
            cur = c.execute(
                "INSERT INTO actions (job_id, kind, params_json, intent_unix_s) VALUES (?,?,?,?)",
                (job_id, kind, json.dumps(params, sort_keys=True), now_unix_s),
            )
            return int(cur.lastrowid or 0)

    def _outcome(self, c: sqlite3.Connection, action_id: int, outcome: str, data: dict[str, Any], now: float) -> None:
        c.execute(
            "UPDATE actions SET outcome=?, outcome_json=?, outcome_unix_s=? WHERE id=?",
            (outcome, json.dumps(data, sort_keys=True), now, action_id),
        )

    def record_outcome(self, action_id: int, outcome: str, data: dict[str, Any], now_unix_s: float) -> None:
        with self._tx() as c:
            self._outcome(c, action_id, outcome, data, now_unix_s)

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
        with self._tx() as c:
            row = c.execute("SELECT tenant, jurisdiction, clearance FROM jobs WHERE id=?", (job_id,)).fetchone()
            if row is None:
                raise KeyError(job_id)
            c.execute(
                "UPDATE jobs SET state='running', pool=?, nodes_json=?, power_fraction=?, starts=starts+1, "
                "started_unix_s=COALESCE(started_unix_s, ?), updated_unix_s=? WHERE id=?",
                (pool, json.dumps(list(nodes)), power_fraction, now_unix_s, now_unix_s, job_id),
            )
            c.execute(
                "INSERT INTO audit (job_id, tenant, pool, labels_json, nodes_json, jurisdiction_required, "
                "clearance_required, time_unix_s, time_utc) VALUES (?,?,?,?,?,?,?,?,?)",
                (
                    job_id, row[0], pool, json.dumps(pool_labels, sort_keys=True), json.dumps(list(nodes)),
                    row[1], row[2], now_unix_s, iso_utc(now_unix_s),
                ),
            )  # fmt: skip
            self._outcome(c, action_id, "started", {"pool": pool, "nodes": list(nodes)}, now_unix_s)

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
        if new_state not in JOB_STATES or new_state == "running":
            raise ValueError(f"record_stopped: new_state {new_state!r} is not one of queued/finished/failed/cancelled")
        ended = now_unix_s if new_state in FINAL_STATES else None
        with self._tx() as c:
            if new_state == "queued":
                c.execute(
                    "UPDATE jobs SET state='queued', pool=NULL, nodes_json='[]', power_fraction=0, "
                    "work_done_s=checkpoint_work_s, lost_work_s=lost_work_s+?, updated_unix_s=?, detail=? WHERE id=?",
                    (lost_work_s, now_unix_s, detail, job_id),
                )
            elif new_state == "finished":
                c.execute(
                    "UPDATE jobs SET state='finished', work_done_s=duration_s, checkpoint_work_s=duration_s, "
                    "power_fraction=0, ended_unix_s=?, updated_unix_s=?, detail=? WHERE id=?",
                    (ended, now_unix_s, detail, job_id),
                )
            else:
                c.execute(
                    "UPDATE jobs SET state=?, power_fraction=0, lost_work_s=lost_work_s+?, ended_unix_s=?, "
                    "updated_unix_s=?, detail=? WHERE id=?",
                    (new_state, lost_work_s, ended, now_unix_s, detail, job_id),
                )
            if action_id is not None:
                self._outcome(c, action_id, new_state, {"lost_work_s": lost_work_s}, now_unix_s)

    def record_progress(
        self, progress: Sequence[JobProgress], usage: Sequence[UsageDelta], day: str, now_unix_s: float
    ) -> None:
        """After a tick: the executor's progress of running jobs and the usage accrued, in one transaction."""
        with self._tx() as c:
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
            for u in usage:
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

    def open_actions(self) -> list[OpenAction]:
        rows = self._reader().execute(
            "SELECT id, job_id, kind, params_json FROM actions WHERE outcome IS NULL ORDER BY id"
        ).fetchall()
        return [OpenAction(int(r[0]), r[1], r[2], json.loads(r[3])) for r in rows]

    def recover(self, executor_running: Iterable[str], now_unix_s: float) -> RecoveryReport:
        """Reconcile the store with the executor after a (re)start, in one transaction.

        ``executor_running``: ids of the jobs the executor still runs (Ray re-adopts live placement groups;
        a fresh simulated executor runs nothing). A job recorded ``running`` that the executor still runs is
        adopted; one it lost goes back to ``queued`` and resumes from its last checkpoint (the work since is
        counted as lost). Intents a crash left without an outcome are closed as ``interrupted``: the
        reconciliation above decided their effect, so no action is ever applied twice.
        """
        alive = set(executor_running)
        adopted: list[str] = []
        requeued: list[str] = []
        lost = 0.0
        with self._tx() as c:
            rows = c.execute(
                "SELECT id, work_done_s, checkpoint_work_s, cancel_requested FROM jobs WHERE state='running'"
            ).fetchall()
            for job_id, work, ckpt, _cancel in rows:
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
            # Cancellations that the crash interrupted on jobs that are no longer running complete now.
            c.execute(
                "UPDATE jobs SET state='cancelled', ended_unix_s=?, updated_unix_s=? "
                "WHERE state='queued' AND cancel_requested=1",
                (now_unix_s, now_unix_s),
            )
            n_open = c.execute(
                "UPDATE actions SET outcome='interrupted', outcome_json='{}', outcome_unix_s=? WHERE outcome IS NULL",
                (now_unix_s,),
            ).rowcount
        return RecoveryReport(tuple(adopted), tuple(requeued), lost, int(n_open))

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

    def usage_daily(self, tenant: str | None = None) -> list[dict[str, Any]]:
        q = "SELECT tenant, day, gpu_s, energy_j, carbon_g FROM usage_daily"
        args: tuple[Any, ...] = ()
        if tenant is not None:
            q += " WHERE tenant=?"
            args = (tenant,)
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

    def audit(self, since_unix_s: float | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        q = (
            "SELECT id, job_id, tenant, pool, labels_json, nodes_json, jurisdiction_required, clearance_required, "
            "time_unix_s, time_utc FROM audit"
        )
        args: list[Any] = []
        if since_unix_s is not None:
            q += " WHERE time_unix_s >= ?"
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
