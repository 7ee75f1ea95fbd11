"""The simulated executor: a virtual clock and per-node free-GPU arrays, any scale, no Ray.

State per pool is two numpy arrays over its nodes (``free`` GPUs as int32, ``up`` as bool), so a
100,000-GPU site is 12,500 integers, never per-GPU objects. Running jobs are small records keyed by job id.

Semantics (DESIGN sections 2 and 4):

- Gang placement, all or nothing. A job of ``g <= gpus_per_node`` GPUs packs on one node, best fit (the
  node with the fewest free GPUs that still holds it, lowest index on ties). A larger job needs
  ``ceil(g / gpus_per_node)`` *whole* free nodes; it uses ``gpus_per_node`` GPUs on each but the last, and
  the remainder of the last node stays free for others.
- Inference (``job.must_run``) is a service of independent replicas, not a gang: its GPUs may come from any
  nodes of the pool (still all or nothing), the most occupied nodes first so whole nodes stay free for
  training gangs. Node fragmentation therefore never keeps inference out of a pool with enough free GPUs.
- Progress: a job at power fraction ``f`` in pool ``p`` does ``speed_p(f) * dt`` seconds of full-speed work
  in ``dt`` seconds (``kernels.power.speed``). It is finished when its work reaches ``duration_s``; the
  ``finished`` event carries the exact completion time inside the step.
- Checkpoints are taken every ``checkpoint_interval_s`` of *work* (at work = k * interval) and when the job
  finishes; a preemption or a node failure loses the work since the last checkpoint (``lost_s``).
- ``fail_node`` / ``repair_node`` inject failures: jobs on a failed node stop, lose the work since their
  checkpoint and are reported as ``failed`` events (the control loop requeues them).

Events produced between steps (failures, repairs, preemptions) are queued and returned by the next
``step`` call; ``step(0.0)`` returns them without letting time pass. ``event_log`` keeps every event.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from kernels.power import speed
from scheduler.errors import ExecutorError, InputError
from scheduler.executors.base import ExecutorEvent, Placement, RunningInfo
from scheduler.jobs import Job
from scheduler.models import Site

log = logging.getLogger(__name__)

#: Work (seconds) below which a job counts as finished, to absorb float rounding.
_EPS_S = 1e-6


class VirtualClock:
    """A clock that only moves when told to (the Clock protocol of executors.base)."""

    def __init__(self, start_s: float = 0.0) -> None:
        self._now_s = float(start_s)

    def now_s(self) -> float:
        return self._now_s

    def advance(self, dt_s: float) -> None:
        if not dt_s >= 0.0:
            raise ValueError(f"VirtualClock.advance: dt_s must be >= 0, got {dt_s!r}")
        self._now_s += float(dt_s)


@dataclass(slots=True)
class _PoolState:
    name: str
    gpus_per_node: int
    free: NDArray[np.int32]  # (nodes,) free GPUs per node; 0 on nodes that are down
    up: NDArray[np.bool_]  # (nodes,)
    curve_f: NDArray[np.float64]
    curve_s: NDArray[np.float64]
    min_power_fraction: float


@dataclass(slots=True)
class _Run:
    """A running job's record inside the executor; its progress lives in :class:`_Progress` row ``row``."""

    job: Job
    pool: str
    nodes: tuple[int, ...]
    per_node: tuple[int, ...]
    power_fraction: float
    row: int
    started_s: float


class _Progress:
    """Progress of the running jobs as arrays (one row per job), advanced by one vectorised step."""

    _FIELDS = ("used", "work", "ckpt", "speed", "duration", "interval")

    def __init__(self) -> None:
        cap = 1024
        self.used = np.zeros(cap, dtype=bool)
        self.work = np.zeros(cap)
        self.ckpt = np.zeros(cap)
        self.speed = np.zeros(cap)
        self.duration = np.zeros(cap)
        self.interval = np.ones(cap)
        self.ids: list[str | None] = [None] * cap
        self.free_rows: list[int] = []
        self.n = 0

    def add(self, job_id: str, work: float, speed: float, duration: float, interval: float) -> int:
        if self.free_rows:
            r = self.free_rows.pop()
        else:
            if self.n == self.used.shape[0]:
                cap = 2 * self.n
                for name in self._FIELDS:
                    a = getattr(self, name)
                    b = np.ones(cap, dtype=a.dtype) if name == "interval" else np.zeros(cap, dtype=a.dtype)
                    b[: a.shape[0]] = a
                    setattr(self, name, b)
                self.ids.extend([None] * (cap - len(self.ids)))
            r = self.n
            self.n += 1
        self.used[r] = True
        self.work[r] = self.ckpt[r] = work
        self.speed[r] = speed
        self.duration[r] = duration
        self.interval[r] = interval
        self.ids[r] = job_id
        return r

    def remove(self, r: int) -> None:
        self.used[r] = False
        self.ids[r] = None
        self.free_rows.append(r)


class SimulatedExecutor:
    """Executor on a virtual clock. ``step(dt)`` advances the clock it was given (a :class:`VirtualClock`)."""

    def __init__(self, site: Site, clock: VirtualClock) -> None:
        self.site = site
        self.clock = clock
        self._pools: dict[str, _PoolState] = {}
        for p in site.pools:
            self._pools[p.name] = _PoolState(
                name=p.name,
                gpus_per_node=p.gpus_per_node,
                free=np.full(p.nodes, p.gpus_per_node, dtype=np.int32),
                up=np.ones(p.nodes, dtype=np.bool_),
                curve_f=np.array([c[0] for c in p.speed_curve], dtype=np.float64),
                curve_s=np.array([c[1] for c in p.speed_curve], dtype=np.float64),
                min_power_fraction=p.min_power_fraction,
            )
        self._runs: dict[str, _Run] = {}
        self._prog = _Progress()
        self._pending: list[ExecutorEvent] = []
        self.event_log: list[ExecutorEvent] = []
        self._speed_cache: dict[tuple[str, float], float] = {}

    # ------------------------------------------------------------------------------------ queries

    def _pool(self, pool: str) -> _PoolState:
        try:
            return self._pools[pool]
        except KeyError:
            raise InputError(f"unknown pool {pool!r}; this site has {sorted(self._pools)}") from None

    def healthy_gpus(self) -> dict[str, int]:
        return {name: int(ps.up.sum()) * ps.gpus_per_node for name, ps in self._pools.items()}

    def free_gpus_by_node(self, pool: str) -> NDArray[np.int32]:
        return self._pool(pool).free.copy()

    def running(self) -> Mapping[str, RunningInfo]:
        pg = self._prog
        return {
            jid: RunningInfo(
                job_id=jid,
                pool=r.pool,
                nodes=r.nodes,
                power_fraction=r.power_fraction,
                work_done_s=float(pg.work[r.row]),
                checkpoint_work_s=float(pg.ckpt[r.row]),
            )
            for jid, r in self._runs.items()
        }

    def measured_gpu_power_w(self) -> None:
        """Nothing is measured here: the simulated site's power is the model (DESIGN section 2)."""
        return None

    def progress(self, job_id: str) -> tuple[float, float]:
        """(work done, work safe in the last checkpoint) of a running job, in seconds at full speed: the
        cheap form of ``running()[job_id]`` that the control loop uses every slot."""
        r = self._runs[job_id].row
        return float(self._prog.work[r]), float(self._prog.ckpt[r])

    def is_running(self, job_id: str) -> bool:
        return job_id in self._runs

    def node_of(self, job_id: str) -> tuple[int, ...]:
        return self._runs[job_id].nodes

    def _speed(self, pool: str, f: float) -> float:
        key = (pool, f)
        s = self._speed_cache.get(key)
        if s is None:
            ps = self._pools[pool]
            s = float(speed(ps.curve_f, ps.curve_s, f))
            if len(self._speed_cache) < 100_000:
                self._speed_cache[key] = s
        return s

    def _check_fraction(self, pool: str, power_fraction: float, job_id: str) -> None:
        ps = self._pools[pool]
        if not (ps.min_power_fraction - 1e-9 <= power_fraction <= 1.0 + 1e-9):
            raise ExecutorError(
                f"job {job_id!r}: power_fraction {power_fraction!r} outside pool {pool!r}'s allowed range "
                f"[{ps.min_power_fraction}, 1.0]"
            )

    # ------------------------------------------------------------------------------------ actions

    def _record(self, ev: ExecutorEvent) -> None:
        self._pending.append(ev)
        self.event_log.append(ev)

    def start(self, job: Job, pool: str, power_fraction: float, work_done_s: float) -> Placement | None:
        if job.job_id in self._runs:
            raise ExecutorError(f"job {job.job_id!r} is already running in pool {self._runs[job.job_id].pool!r}")
        ps = self._pool(pool)
        self._check_fraction(pool, power_fraction, job.job_id)
        if not (0.0 <= work_done_s < job.duration_s):
            raise ExecutorError(
                f"job {job.job_id!r}: work_done_s {work_done_s!r} must lie in [0, duration_s={job.duration_s})"
            )
        g, gpn = job.gpus, ps.gpus_per_node
        if job.must_run and g > 1:
            # an inference service is replicas, not a gang: its GPUs may come from any nodes of the pool.
            # Take the most occupied nodes first, so whole nodes stay free for training gangs.
            have = np.flatnonzero(ps.free > 0)
            if int(ps.free[have].sum()) < g:
                return None
            order = have[np.argsort(ps.free[have], kind="stable")]
            take = np.minimum(ps.free[order], np.maximum(g - (np.cumsum(ps.free[order]) - ps.free[order]), 0))
            used = take > 0
            nodes = tuple(int(x) for x in order[used])
            per_node = tuple(int(x) for x in take[used])
        elif g <= gpn:
            cand = ps.free >= g
            if not cand.any():
                return None
            # best fit: the fewest free GPUs that still hold the job (argmin returns the lowest index on ties)
            masked = np.where(cand, ps.free, np.iinfo(np.int32).max)
            node = int(np.argmin(masked))
            nodes = (node,)
            per_node = (g,)
        else:
            n = math.ceil(g / gpn)
            whole = np.flatnonzero(ps.free == gpn)
            if whole.shape[0] < n:
                return None
            chosen = whole[:n]
            nodes = tuple(int(x) for x in chosen)
            per_node = tuple([gpn] * (n - 1) + [g - (n - 1) * gpn])
        for nd, k in zip(nodes, per_node):
            ps.free[nd] -= k
        now = self.clock.now_s()
        # resumed from a checkpoint: the work done so far is the work that is safe
        row = self._prog.add(job.job_id, float(work_done_s), self._speed(pool, float(power_fraction)),
                             float(job.duration_s), float(job.checkpoint_interval_s))  # fmt: skip
        self._runs[job.job_id] = _Run(
            job=job,
            pool=pool,
            nodes=nodes,
            per_node=per_node,
            power_fraction=float(power_fraction),
            row=row,
            started_s=now,
        )
        if work_done_s > 0:
            self.event_log.append(ExecutorEvent("resumed", now, job.job_id, pool, nodes[0]))
        return Placement(job_id=job.job_id, pool=pool, nodes=nodes, gpus_per_node=per_node)

    def _lost(self, r: _Run) -> float:
        return max(float(self._prog.work[r.row] - self._prog.ckpt[r.row]), 0.0)

    def _release(self, r: _Run) -> None:
        self._prog.remove(r.row)
        ps = self._pools[r.pool]
        for nd, k in zip(r.nodes, r.per_node):
            if ps.up[nd]:
                ps.free[nd] += k

    def preempt(self, job_id: str, reason: str) -> float:
        r = self._runs.pop(job_id, None)
        if r is None:
            raise ExecutorError(f"cannot preempt job {job_id!r}: it is not running")
        lost = self._lost(r)
        self._release(r)
        self._record(
            ExecutorEvent("preempted", self.clock.now_s(), job_id, r.pool, r.nodes[0], lost_s=lost, detail=reason)
        )
        return lost

    def set_power_fraction(self, job_id: str, power_fraction: float) -> None:
        r = self._runs.get(job_id)
        if r is None:
            raise ExecutorError(f"cannot set the power of job {job_id!r}: it is not running")
        self._check_fraction(r.pool, power_fraction, job_id)
        r.power_fraction = float(power_fraction)
        self._prog.speed[r.row] = self._speed(r.pool, float(power_fraction))

    def fail_node(self, pool: str, node: int) -> list[ExecutorEvent]:
        """Take ``node`` of ``pool`` down. Jobs on it stop, losing the work since their last checkpoint."""
        ps = self._pool(pool)
        if not (0 <= node < ps.up.shape[0]):
            raise InputError(f"pool {pool!r} has nodes 0..{ps.up.shape[0] - 1}, got node {node}")
        if not ps.up[node]:
            return []
        now = self.clock.now_s()
        events = [ExecutorEvent("node_down", now, None, pool, node)]
        victims = [jid for jid, r in self._runs.items() if r.pool == pool and node in r.nodes]
        ps.up[node] = False
        ps.free[node] = 0
        for jid in victims:
            r = self._runs.pop(jid)
            lost = self._lost(r)
            work = float(self._prog.work[r.row])
            self._release(r)
            events.append(
                ExecutorEvent("failed", now, jid, pool, node, lost_s=lost, detail=f"node {pool}/{node} went down",
                              work_done_s=work)  # fmt: skip
            )
        for ev in events:
            self._record(ev)
        log.info("node %s/%d down; %d job(s) stopped", pool, node, len(victims))
        return events

    def repair_node(self, pool: str, node: int) -> list[ExecutorEvent]:
        ps = self._pool(pool)
        if not (0 <= node < ps.up.shape[0]):
            raise InputError(f"pool {pool!r} has nodes 0..{ps.up.shape[0] - 1}, got node {node}")
        if ps.up[node]:
            return []
        ps.up[node] = True
        ps.free[node] = ps.gpus_per_node
        ev = ExecutorEvent("node_up", self.clock.now_s(), None, pool, node)
        self._record(ev)
        return [ev]

    def step(self, dt_s: float) -> list[ExecutorEvent]:
        """Advance the virtual clock by ``dt_s``; return queued events plus the finishes inside the step."""
        if not dt_s >= 0.0:
            raise ValueError(f"step: dt_s must be >= 0, got {dt_s!r}")
        events = self._pending
        self._pending = []
        if dt_s > 0.0:
            t0 = self.clock.now_s()
            pg = self._prog
            m = pg.n
            used = pg.used[:m]
            work, ckpt, spd, dur, ci = pg.work[:m], pg.ckpt[:m], pg.speed[:m], pg.duration[:m], pg.interval[:m]
            rem = dur - work
            gain = spd * dt_s
            fin = used & (gain >= rem - _EPS_S)
            go = used & ~fin
            with np.errstate(divide="ignore", invalid="ignore"):
                t_end = np.where(fin, t0 + rem / np.where(spd > 0, spd, 1.0), np.inf)
            work[go] += gain[go]
            ck = np.floor(work[go] / ci[go]) * ci[go]
            ckpt[go] = np.maximum(ckpt[go], ck)
            work[fin] = dur[fin]
            ckpt[fin] = dur[fin]
            rows = np.flatnonzero(fin)
            done = sorted((float(t_end[r]), pg.ids[r]) for r in rows.tolist())
            for t_end_s, jid in done:
                assert jid is not None
                r = self._runs.pop(jid)
                self._release(r)
                ev = ExecutorEvent("finished", min(t_end_s, t0 + dt_s), jid, r.pool, r.nodes[0])
                events.append(ev)
                self.event_log.append(ev)
            self.clock.advance(dt_s)
        return events

    def close(self) -> None:
        for r in list(self._runs.values()):
            self._prog.remove(r.row)
        self._runs.clear()
        self._pending.clear()
